"""The serial bridge: the accelerator behind a UART, speaking the protocol of
:mod:`xnorflow.hw.tops.protocol`.

:class:`SerialBridge` is what a board top instantiates (``rx``/``tx`` pins of the board's USB
serial chip). It is a :class:`~xnorflow.hw.blocks.uart.UARTRx` and a
:class:`~xnorflow.hw.blocks.uart.UARTTx` around a :class:`PacketEngine`, which speaks the protocol
on byte streams and holds the :class:`~xnorflow.hw.tops.network.Network`, either on the engine's
clock or (``network_domain``, as on the boards) in a clock domain of its own, joined to the
engine's by clock-domain crossings (:class:`PacketEngine`, Clock domains).
:class:`DualClockBridge` is the two-clock bridge with its own reset synchronizer, as the simulated
board runs it. Tests drive the engine's byte streams directly (fast) or the bridge's pins
bit-serially.
"""

from types import SimpleNamespace

from amaranth.hdl import (
    Cat,
    ClockDomain,
    ClockSignal,
    Const,
    DomainRenamer,
    Module,
    Mux,
    ResetSignal,
    Signal,
    Value,
)
from amaranth.lib import data, stream, wiring
from amaranth.lib.cdc import FFSynchronizer, ResetSynchronizer
from amaranth.lib.fifo import AsyncFIFO, SyncFIFOBuffered
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from xnorflow.hw.blocks.uart import UARTRx, UARTTx
from xnorflow.hw.compiler.rules import BRIDGE_BUFFER_STYLES, bridge_buffer_style
from xnorflow.hw.tops.network import Network
from xnorflow.hw.tops.protocol import (
    BENCH_CRC,
    BENCH_CYCLE_BITS,
    BENCH_REPORT_BYTES,
    BENCH_REQUEST_BYTES,
    BITS_PER_BYTE,
    CRC,
    DEFAULT_GAP_BITS,
    ERROR_BYTES,
    HEADER_BYTES,
    INFO_BYTES,
    MAX_BENCH_REPEAT,
    MIN_GAP_BITS,
    OVERHEAD,
    REPLY_QUEUE_DEPTH,
    BenchReport,
    BenchRequest,
    Command,
    DeviceInfo,
    ErrorCode,
    ErrorPayload,
    Header,
    InfoPayload,
    ResultStatus,
    Sync,
    bench_cycles,
    result_layout,
)

__all__ = ["BRIDGE_BUFFER_STYLES", "MAX_BAUD_ERROR", "NETWORK_DOMAIN", "RESULT_FIFO_DEPTH",
           "DualClockBridge", "PacketEngine", "SerialBridge", "bridge_buffer_style"]

#: Largest relative difference allowed between the asked baud rate and ``clk_hz / divisor``.
MAX_BAUD_ERROR = 0.02

#: The clock domain of the accelerator in a two-clock bridge (:class:`DualClockBridge`, the board
#: tops): the bridge runs in ``sync``.
NETWORK_DOMAIN = "accel"

#: Entries of the asynchronous FIFO that carries results from the accelerator's domain to the
#: bridge's (two-clock engines only). The serial link drains one result per frame-time, far
#: slower than the FIFO's round trip; the network's own output FIFO holds more.
RESULT_FIFO_DEPTH = 2

#: An INFO or ERROR reply waiting to be sent (internal; the wire format is protocol's).
_REPLY = data.StructLayout({"info": 1, "id": 8, "error": ErrorPayload})


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _check_domain(domain):
    if domain is not None and (not isinstance(domain, str) or not domain.isidentifier()
                               or domain == "sync"):
        raise ValueError(f"network_domain ({domain!r}) must be None or the name of a clock "
                         "domain other than 'sync'")


def _check_range(name, value, lo, hi):
    if not _is_int(value) or not lo <= value <= hi:
        raise ValueError(f"{name} ({value!r}) must be an integer in [{lo}, {hi}]")


def _device_info(network, *, model_hash, clk_hz, divisor, gap_bits, slots, bench=True):
    """Check the parameters of a PacketEngine; what its INFO says."""
    if not isinstance(network, Network):
        raise TypeError(f"network ({network!r}) must be a xnorflow.hw.tops.network.Network")
    plan = network.plan
    n0 = plan.layers[0].in_features
    if n0 > 0xFFFF:
        raise ValueError(f"N0 ({n0}) does not fit the protocol's u16 length")
    if network.classes > 256:
        raise ValueError(f"classes ({network.classes}) do not fit the protocol's u8 index")
    score = network.score_shape
    if network.with_scores and score.width > 16:
        raise ValueError(f"scores of {score.width} bits do not fit the protocol's 16 bits")
    own = bytes.fromhex(plan.model_hash)
    if model_hash is None:
        model_hash = own
    if not isinstance(model_hash, bytes) or len(model_hash) != 32:
        raise ValueError(f"model_hash ({model_hash!r}) must be 32 bytes (a SHA-256 digest)")
    if model_hash != own:
        raise ValueError(f"model_hash ({model_hash.hex()}) is not the network's model "
                         f"({plan.model_hash})")
    _check_range("clk_hz", clk_hz, 1, 2**32 - 1)
    _check_range("divisor", divisor, 1, 2**32 - 1)
    _check_range("gap_bits", gap_bits, MIN_GAP_BITS, 0xFFFF)
    _check_range("slots", slots, 1, 255)
    return DeviceInfo(
        capacity=slots, n0=n0, classes=network.classes,
        score_bits=score.width if network.with_scores else 0,
        with_scores=network.with_scores,
        signed_scores=network.with_scores and score.signed,
        gap_bits=gap_bits, clk_hz=clk_hz, divisor=divisor, model_hash=model_hash,
        bench=bool(bench))


def bench_chunk_bytes(word_bytes: int, period: int) -> int:
    """Bytes of a result word the benchmark's CRC takes per cycle: the fewest that divide the word
    into at most ``period`` (the network's cycles per frame) pieces, so the CRC keeps up."""
    return next(k for k in range(1, word_bytes + 1)
                if word_bytes % k == 0 and word_bytes // k <= period)


class PacketEngine(wiring.Component):
    """The protocol on byte streams, with the accelerator inside: request bytes in, reply bytes out.

    Parameters
    ----------
    network : Network
        The accelerator (elaborated as a submodule of this engine). N0 at most 65535, at most
        256 classes, and with scores at most 16 bits per score (the protocol's limits).
    model_hash : bytes or None
        The 32-byte SHA-256 of the model, sent in INFO; None: the network's own
        (``network.plan.model_hash``). A hash that differs from the network's is an error.
    clk_hz, divisor : int
        The clock frequency and the UART's clock cycles per bit; reported in INFO, and the unit of
        the timeout (``divisor`` = 1 for a byte-stream-only engine, then the timeout is in cycles).
    gap_bits : int
        The inter-byte timeout in bit-times, :data:`~xnorflow.hw.tops.protocol.MIN_GAP_BITS` to
        65535 (:data:`~xnorflow.hw.tops.protocol.DEFAULT_GAP_BITS`): a packet is abandoned when no
        byte has arrived for ``gap_bits * divisor`` cycles.
    slots : int
        Frame buffers, 1 to 255: the capacity K of the protocol (default 2, enough to keep the
        link busy). The buffer is one ``lib.memory`` of ``slots * N0/SIMD0`` words of
        ``8 * SIMD0`` bits.
    buffer : "block", "distributed" or "logic"
        The frame buffer's ``ram_style`` (default ``"block"``; ``"distributed"``, LUT RAM, exists
        on ECP5 only).
    network_domain : str or None
        None (default): one clock; the network runs in ``sync`` with the engine. A domain name
        (e.g. :data:`NETWORK_DOMAIN`): the network and the feeder run in that domain, on a clock
        of their own, unrelated to ``sync`` (see Clock domains). The domain is the caller's to
        define, with its reset synchronized to its clock.
    network_clk_hz : int or None
        The network domain's clock frequency, sent as REPORT's ``clock_hz`` (required with
        ``network_domain``; None or ``clk_hz`` in a one-clock engine).
    bench : bool
        Take BENCH, the on-device benchmark (default True; INFO's ``BENCH`` flag). False leaves
        its logic out (BENCH is then UNKNOWN_CMD).

    Ports
    -----
    i_stream : In(stream.Signature(8))
        Request bytes (from the UART receiver); always ready.
    o_stream : Out(stream.Signature(8))
        Reply bytes (to the UART transmitter). ``valid`` and the byte are functions of registers
        and hold until accepted.
    line_error : In(1)
        Pulse per byte the UART dropped for a bad stop bit (for RESULT's ``LINE_ERROR`` status).
    frame_error : Out(1)
        The network's sticky ``frame_error`` (0 unless the bridge is faulty).
    bench_busy : Out(1)
        A BENCH run holds the engine: from its acceptance (the BENCH's crc byte) to the last
        byte of its REPORT (0 without ``bench``). The lines may be quiet all that time.

    Behaviour
    ---------
    As the device rules of :mod:`xnorflow.hw.tops.protocol` say. A FRAME's payload is written into a
    free slot as it arrives; when its crc checks out the slot is marked full and its id queued;
    a feeder streams full slots in order into ``s_axis`` (one ``SIMD0``-pixel beat per cycle,
    ``tlast`` on the last); each ``m_axis`` result is sent as a RESULT with the oldest queued id
    (the network keeps frame order, so ids and results pair up). INFO and ERROR replies go through
    a queue of :data:`~xnorflow.hw.tops.protocol.REPLY_QUEUE_DEPTH` and are sent before pending
    results.

    On-device benchmark
    -------------------
    As the protocol's docstring says (BENCH). A BENCH is accepted when its ``frames`` F is 1 to
    ``slots`` and at most the frames committed since reset, its ``repeat`` R is 1 to
    :data:`~xnorflow.hw.tops.protocol.MAX_BENCH_REPEAT`, and nothing is outstanding (no full
    slot, no id queued, no run). Then, in the network's domain, the feeder replays the F slots
    committed last (the slot ring's ``wr_slot - F ... wr_slot - 1``) R times: it reads one beat
    per cycle whenever ``s_axis`` takes one, jumping from a pass's last beat to the first
    slot's first beat with no cycle lost, and after the last pass stands at ``wr_slot`` again,
    where the ring expects it. The results go to a CRC-32 (:data:`~xnorflow.hw.tops.protocol.
    BENCH_CRC`) instead of the reply side: each ``m_axis_tdata`` word is fed to the CRC
    straight from ``m_axis``, ``k`` bytes per cycle, and taken (``m_axis_tready``) with its last
    piece, ``W / (8k)`` cycles after it became valid, ``k`` the fewest bytes that make that at
    most :attr:`bench_period` (:func:`bench_chunk_bytes`), so the output FIFO is empty again
    before the next result and the network is never held back. A 48-bit counter counts the
    network's cycles from the handshake of the run's first ``s_axis`` beat to the first cycle
    the run's last result is valid on ``m_axis`` (the ends of the network's latency), found by
    a count of the frames read out and not yet taken; the run ends when that result has been
    checksummed. :meth:`bench_cycles` gives the count: ``network.latency + (F*R - 1) *
    max(network.ii, N0/SIMD0)``, exactly (both clocks; tests/test_hw_bridge.py).

    Crossings: the request (F, R, the first slot and its address, the REPORT's id) is held in
    ``sync`` registers from its acceptance to the REPORT's last byte; a toggle carries the start
    through an ``FFSynchronizer`` to the network's domain, which reads the request two of its
    cycles later (stable by then). The end comes back the same way, a toggle through an
    ``FFSynchronizer``; the count and the checksum are network-domain registers that stay put
    until the next run, which cannot start before the REPORT has been sent. No FIFO, no memory.

    Clock domains
    -------------
    With ``network_domain`` set, the engine is two clock domains joined by clock-domain crossings
    that are safe for any ratio of the two clocks:

    * the frame buffer is a dual-clock memory (``lib.memory`` with its write port in ``sync``,
      its read port in the network's domain): a frame's pixels cross in the memory itself, so no
      FIFO as wide as an ``s_axis`` beat (``8 * SIMD0 + 1`` bits, ~4 flip-flops and ~3 LUTs per
      bit and entry on an iCE40) is spent on them;
    * a committed slot's index crosses to the feeder through an ``AsyncFIFO`` (Gray-coded
      pointers through 2-flip-flop synchronizers, Cummings' "style #2"), written at the commit,
      long after the slot's last pixel was written; the feeder, now in the network's domain,
      streams the slot into ``s_axis`` and sends the slot's index back through a second
      ``AsyncFIFO`` when it has read its last beat, which clears the slot's ``full`` bit (so the
      parser never writes a slot that is being read);
    * results cross back through an ``AsyncFIFO`` of :data:`RESULT_FIFO_DEPTH` entries of
      ``m_axis_tdata``;
    * the network's sticky ``frame_error`` (a level) through an ``FFSynchronizer``.

    Each ``AsyncFIFO`` is reset by the reset of its write domain; both domains are expected to be
    reset together (as the board tops and :class:`DualClockBridge` do, from one source through a
    ``ResetSynchronizer`` per domain). The Timing below then holds only for the bridge's own
    cycles: the crossings add a few cycles of each clock (2 synchronizer stages and up to 2
    cycles of the FIFO each way) that depend on the clocks' phase.

    Timing
    ------
    Bytes are taken one per cycle. :attr:`result_latency` (one clock only): cycles from the
    handshake of a FRAME's crc byte to the first byte of its RESULT being valid on ``o_stream``,
    when the network is empty and nothing else is being sent: ``3 + network.latency`` (commit 1,
    feeder 1, network, sender 1). :attr:`reply_latency`: 3 cycles, the same for an INFO or
    ERROR reply from the byte that decides it (the crc byte; the header's last byte for a length
    above N0; for TIMEOUT the cycle the gap expires). Replies queue behind a packet being sent.
    """

    def __init__(self, network, *, model_hash=None, clk_hz, divisor,
                 gap_bits=DEFAULT_GAP_BITS, slots=2, buffer="block", network_domain=None,
                 network_clk_hz=None, bench=True):
        if not isinstance(bench, bool):
            raise ValueError(f"bench ({bench!r}) must be a bool")
        self._info = _device_info(network, model_hash=model_hash, clk_hz=clk_hz, divisor=divisor,
                                  gap_bits=gap_bits, slots=slots, bench=bench)
        if buffer not in BRIDGE_BUFFER_STYLES:
            raise ValueError(f"buffer ({buffer!r}) must be one of "
                             f"{', '.join(BRIDGE_BUFFER_STYLES)}")
        _check_domain(network_domain)
        if network_domain is None:
            if network_clk_hz is not None and network_clk_hz != clk_hz:
                raise ValueError(f"network_clk_hz ({network_clk_hz!r}) differs from clk_hz "
                                 f"({clk_hz}) in a one-clock engine")
            network_clk_hz = clk_hz
        else:
            _check_range("network_clk_hz", network_clk_hz, 1, 2**32 - 1)
        self._buffer = buffer
        self._network = network
        self._network_domain = network_domain
        self._network_clk_hz = network_clk_hz
        self._bench = bench
        super().__init__({
            "i_stream": In(stream.Signature(8)),
            "o_stream": Out(stream.Signature(8)),
            "line_error": In(1),
            "frame_error": Out(1),
            "bench_busy": Out(1),
        })

    # Parameters (read-only).

    @property
    def network(self) -> Network:
        return self._network

    @property
    def info(self) -> DeviceInfo:
        """What this engine's INFO reply says."""
        return self._info

    @property
    def slots(self) -> int:
        return self._info.capacity

    @property
    def network_domain(self) -> str | None:
        """The network's clock domain; None: ``sync``, the engine's (one clock)."""
        return self._network_domain

    @property
    def network_clk_hz(self) -> int:
        """The network's clock (``clk_hz`` in a one-clock engine): REPORT's ``clock_hz``."""
        return self._network_clk_hz

    @property
    def bench(self) -> bool:
        """The engine takes BENCH (see On-device benchmark)."""
        return self._bench

    @property
    def bench_period(self) -> int:
        """Cycles per frame of a BENCH replay: ``max(network.ii, N0/SIMD0)``."""
        return max(self._network.ii, self._network.beats_per_frame)

    def bench_cycles(self, frames: int, repeat: int) -> int:
        """The ``cycles`` a REPORT gives for ``frames`` x ``repeat`` (see On-device benchmark):
        :func:`~xnorflow.hw.tops.protocol.bench_cycles` of the network."""
        net = self._network
        return bench_cycles(net.latency, net.ii, net.beats_per_frame, frames, repeat)

    @property
    def gap_cycles(self) -> int:
        """Cycles without a byte after which a packet is abandoned."""
        return self._info.gap_bits * self._info.divisor

    @property
    def result_latency(self) -> int:
        """Cycles from a FRAME's crc byte to its RESULT's first byte (see Timing); one clock
        only (with ``network_domain`` it depends on both clocks: a ``ValueError``)."""
        if self._network_domain is not None:
            raise ValueError("result_latency is exact only for a one-clock engine; this one "
                             f"runs the network in domain {self._network_domain!r}")
        return 3 + self._network.latency

    @property
    def reply_latency(self) -> int:
        """Cycles from the byte that decides an INFO/ERROR reply to its first byte."""
        return 3

    def elaborate(self, platform):
        m = Module()
        net = self._network
        nd = self._network_domain
        info = self._info
        lanes, beats, slots = net.lanes, net.beats_per_frame, info.capacity
        if nd is None:
            m.submodules.network = net
            m.d.comb += self.frame_error.eq(net.frame_error)
        else:
            m.submodules.network = DomainRenamer(nd)(net)
            m.submodules.frame_error_sync = FFSynchronizer(net.frame_error, self.frame_error)

        # Frame buffer: `slots` frames of `beats` words, one s_axis beat per word. Written in
        # `sync`, read in the feeder's domain (with two clocks: a dual-clock memory).
        m.submodules.buffer = buffer = Memory(shape=8 * lanes, depth=slots * beats, init=[],
                                              attrs={"ram_style": self._buffer})
        wport = buffer.write_port(granularity=8)
        rport = buffer.read_port(domain=nd or "sync")
        full = Signal(slots)                  # slot holds a whole frame not yet fed
        set_full = Signal(slots)
        clear_full = Signal(slots)
        m.d.sync += full.eq((full | set_full) & ~clear_full)
        # Slots committed (sync -> feeder) and slots read out (feeder -> sync), by index.
        committed = freed = None
        if nd is not None:
            depth = max(2, slots)             # never full: at most `slots` tokens in flight
            m.submodules.committed = committed = AsyncFIFO(
                width=max(1, (slots - 1).bit_length()), depth=depth, w_domain="sync",
                r_domain=nd)
            m.submodules.freed = freed = AsyncFIFO(
                width=max(1, (slots - 1).bit_length()), depth=depth, w_domain=nd,
                r_domain="sync")
            m.d.comb += freed.r_en.eq(1)
            with m.If(freed.r_rdy):
                m.d.comb += clear_full.eq(Const(1, slots) << freed.r_data)

        # Ids of the frames committed and not yet answered, in order.
        m.submodules.ids = ids = SyncFIFOBuffered(width=8, depth=slots + 1)
        # INFO/ERROR replies waiting.
        m.submodules.replies = replies = SyncFIFOBuffered(width=_REPLY.size,
                                                          depth=REPLY_QUEUE_DEPTH)
        reply = Signal(_REPLY)
        reply_valid = Signal()
        dropped = Signal()                    # sticky: a reply found the queue full
        line_seen = Signal()                  # sticky: the UART dropped a byte
        m.d.comb += [
            replies.w_data.eq(reply),
            replies.w_en.eq(reply_valid & replies.w_rdy),
        ]

        bench = None
        if self._bench:
            # The benchmark's state. `sync`: the request (stable from its acceptance to the
            # REPORT's last byte, so the network's domain reads it directly), `busy` over that
            # span, `report` once the run is over, `go` toggled to start a run. Network domain:
            # `run` to the run's end, `done` toggled at the end, `cycles` and the checksum
            # (stable from then until the next run, so `sync` reads them directly).
            bench = SimpleNamespace(
                busy=Signal(), report=Signal(), frames=Signal(8),
                repeat=Signal(range(MAX_BENCH_REPEAT + 1)), id=Signal(8),
                start_slot=Signal(range(slots)), start_addr=Signal(range(slots * beats)),
                go=Signal(), done=Signal(), run=Signal(), crc_ready=Signal(),
                cycles=Signal(BENCH_CYCLE_BITS), checksum=Signal(32))
            m.d.comb += self.bench_busy.eq(bench.busy)
        self._elaborate_parser(m, info, lanes, beats, slots, wport, full, set_full, ids, reply,
                               reply_valid, committed, bench)
        self._elaborate_feeder(m, net, beats, slots, rport, full, clear_full, committed, freed,
                               bench)
        self._elaborate_sender(m, net, info, ids, replies, line_seen, dropped, bench)
        # After the sender, whose snapshot clears the sticky flags: a new event wins.
        with m.If(reply_valid & ~replies.w_rdy):
            m.d.sync += dropped.eq(1)
        with m.If(self.line_error):
            m.d.sync += line_seen.eq(1)
        return m

    def _elaborate_parser(self, m, info, lanes, beats, slots, wport, full, set_full, ids, reply,
                          reply_valid, committed, bench):
        rx = self.i_stream
        byte = rx.payload
        got = rx.valid
        m.d.comb += rx.ready.eq(1)
        m.submodules.rx_crc = crc = CRC.create()
        m.d.comb += crc.data.eq(byte)

        hdr = Signal(Header)                  # the header bytes read so far (sync not stored)
        hdr_now = Signal(Header)              # ... with the byte of this cycle
        hpos = Signal(range(HEADER_BYTES))    # index of the next header byte
        m.d.comb += hdr_now.eq(hdr)
        with m.Switch(hpos):
            for k in range(1, HEADER_BYTES):
                with m.Case(k):
                    m.d.comb += Value.cast(hdr_now)[8 * k:8 * k + 8].eq(byte)

        limit = max(info.n0, BENCH_REQUEST_BYTES) if bench else info.n0  # longest payload
        count = Signal(range(limit + 1))      # payload bytes read
        store = Signal()                      # this packet's pixels go to slot wr_slot
        wr_slot = Signal(range(slots))
        wr_base = Signal(range(slots * beats))
        w_addr = Signal(range(slots * beats))
        w_lanes = Signal(lanes, init=1)       # one-hot: the byte lane of the next pixel
        quiet = Signal(range(self.gap_cycles))  # cycles since the last byte
        timeout = Signal()
        m.d.comb += timeout.eq(~got & (quiet == self.gap_cycles - 1))
        m.d.sync += quiet.eq(Mux(got, 0, quiet + 1))

        frame_ok = Signal()                   # a FRAME with the right length (from hdr)
        m.d.comb += frame_ok.eq((hdr.cmd == Command.FRAME) & (hdr.length == info.n0))
        hdr_busy = Signal()                   # a BENCH run held the buffers when the header ended
        stored = Signal(range(slots + 1))     # frames committed since reset, at most `slots`
        arg = Signal(8 * BENCH_REQUEST_BYTES)  # the last payload bytes, the first at bit 0
        bench_busy = bench.busy if bench else Const(0)
        m.d.comb += [
            wport.addr.eq(w_addr),
            wport.data.eq(Cat(*[byte] * lanes)),
        ]

        def error(code, header):
            m.d.comb += [
                reply_valid.eq(1),
                reply.info.eq(0),
                reply.id.eq(header.id),
                reply.error.code.eq(code),
                reply.error.cmd.eq(header.cmd.as_value()),
            ]

        def start_header():
            m.d.comb += crc.start.eq(1)
            m.d.sync += [hpos.eq(1), hdr.eq(0)]
            m.next = "HEADER"

        with m.FSM(name="parser"):
            with m.State("HUNT"):
                with m.If(got & (byte == Sync.HOST.value)):
                    start_header()
            with m.State("HEADER"):
                with m.If(got):
                    m.d.comb += crc.valid.eq(1)
                    m.d.sync += [hdr.eq(hdr_now), hpos.eq(hpos + 1)]
                    with m.If(hpos == HEADER_BYTES - 1):
                        is_frame = (hdr_now.cmd == Command.FRAME) & (hdr_now.length == info.n0)
                        room = ~full.bit_select(wr_slot, 1) & ids.w_rdy & ~bench_busy
                        m.d.sync += [
                            hdr_busy.eq(bench_busy),
                            store.eq(is_frame & room),
                            count.eq(0),
                            w_addr.eq(wr_base),
                            w_lanes.eq(1),
                        ]
                        with m.If(hdr_now.length > limit):
                            error(ErrorCode.BAD_LENGTH, hdr_now)
                            m.next = "HUNT"
                        with m.Elif(hdr_now.length == 0):
                            m.next = "CHECK"
                        with m.Else():
                            m.next = "PAYLOAD"
                with m.Elif(timeout):
                    m.next = "HUNT"
            with m.State("PAYLOAD"):
                with m.If(got):
                    m.d.comb += crc.valid.eq(1)
                    m.d.sync += [count.eq(count + 1), arg.eq(Cat(arg[8:], byte))]
                    with m.If(store):
                        m.d.comb += wport.en.eq(w_lanes)
                        m.d.sync += w_lanes.eq(w_lanes.rotate_left(1))
                        with m.If(w_lanes[-1]):
                            m.d.sync += w_addr.eq(w_addr + 1)
                    with m.If(count == hdr.length - 1):
                        m.next = "CHECK"
                with m.Elif(timeout):
                    error(ErrorCode.TIMEOUT, hdr)
                    m.next = "HUNT"
            with m.State("CHECK"):
                with m.If(got):
                    m.next = "HUNT"
                    with m.If(byte != crc.crc):
                        error(ErrorCode.BAD_CRC, hdr)
                        with m.If(byte == Sync.HOST.value):
                            start_header()
                    with m.Elif((hdr.cmd == Command.HELLO) & (hdr.length == 0)):
                        m.d.comb += [reply_valid.eq(1), reply.info.eq(1), reply.id.eq(hdr.id)]
                    with m.Elif(frame_ok & store):
                        # Commit: the slot is full, its id queued, the next slot is written next.
                        m.d.comb += [
                            set_full.eq(Const(1, slots) << wr_slot),
                            ids.w_en.eq(1),
                            ids.w_data.eq(hdr.id),
                        ]
                        if committed is not None:
                            m.d.comb += [committed.w_en.eq(1), committed.w_data.eq(wr_slot)]
                        last = wr_slot == slots - 1
                        m.d.sync += [
                            wr_slot.eq(Mux(last, 0, wr_slot + 1)),
                            wr_base.eq(Mux(last, 0, wr_base + beats)),
                        ]
                        with m.If(stored != slots):
                            m.d.sync += stored.eq(stored + 1)
                    with m.Elif(frame_ok & hdr_busy):
                        error(ErrorCode.BUSY, hdr)
                    with m.Elif(frame_ok):
                        error(ErrorCode.OVERFLOW, hdr)
                    if bench is not None:
                        with m.Elif((hdr.cmd == Command.BENCH)
                                    & (hdr.length == BENCH_REQUEST_BYTES)):
                            self._bench_request(m, bench, arg, hdr, stored, full, ids, wr_slot,
                                                wr_base, slots, beats, error)
                    with m.Elif((hdr.cmd == Command.HELLO) | (hdr.cmd == Command.FRAME)
                                | (Const(bench is not None) & (hdr.cmd == Command.BENCH))):
                        error(ErrorCode.BAD_LENGTH, hdr)
                    with m.Else():
                        error(ErrorCode.UNKNOWN_CMD, hdr)
                with m.Elif(timeout):
                    error(ErrorCode.TIMEOUT, hdr)
                    m.next = "HUNT"

    def _bench_request(self, m, bench, arg, hdr, stored, full, ids, wr_slot, wr_base, slots,
                       beats, error):
        """A whole BENCH packet: reject it (BAD_BENCH, BUSY) or start the run (toggle ``go``,
        the request held in registers that stay put until the REPORT has been sent)."""
        req = data.View(BenchRequest, arg)
        frames, repeat = req.frames, req.repeat
        with m.If((frames == 0) | (frames > slots) | (frames > stored) | (repeat == 0)
                  | (repeat > MAX_BENCH_REPEAT)):
            error(ErrorCode.BAD_BENCH, hdr)
        with m.Elif(bench.busy | (full != 0) | (ids.level != 0)):
            error(ErrorCode.BUSY, hdr)
        with m.Else():
            m.d.sync += [
                bench.busy.eq(1),
                bench.frames.eq(frames),
                bench.repeat.eq(repeat),
                bench.id.eq(hdr.id),
                bench.go.eq(~bench.go),
            ]
            # The F frames committed last: slots wr_slot - F ... wr_slot - 1 of the ring.
            with m.Switch(frames):
                for f in range(1, slots + 1):
                    with m.Case(f):
                        m.d.sync += [
                            bench.start_slot.eq(Mux(wr_slot >= f, wr_slot - f,
                                                    wr_slot + (slots - f))),
                            bench.start_addr.eq(Mux(wr_base >= f * beats, wr_base - f * beats,
                                                    wr_base + (slots - f) * beats)),
                        ]

    def _elaborate_feeder(self, m, net, beats, slots, rport, full, clear_full, committed, freed,
                          bench):
        """Full slots, in order, into s_axis: a registered read per beat, held while stalled.
        With two clocks it runs in the network's domain; a slot is full when its index has come
        through ``committed``, and is handed back through ``freed`` after its last beat."""
        fd = m.d[self._network_domain or "sync"]
        # The slots lie end to end in the buffer, so the read address just counts through
        # it. It is a register of its own (not slot base + beat): it drives every cell of a
        # frame buffer that may be hundreds of LUT-RAM cells wide.
        rd_slot = Signal(range(slots))
        rd_beat = Signal(range(beats))
        rd_addr = Signal(range(slots * beats))
        out_valid = Signal()
        out_last = Signal()
        advance = Signal()
        have = Signal()
        waiting = full.bit_select(rd_slot, 1) if committed is None else committed.r_rdy
        if bench is not None:
            feed = Signal()                   # replaying (network domain)
            in_pass = Signal(range(slots))    # frame of the current pass
            pass_left = Signal(range(MAX_BENCH_REPEAT + 1))  # passes left, this one included
            frame_fed = Signal()              # a replayed frame's last beat read this cycle
            waiting = Mux(bench.run, feed, waiting)
        m.d.comb += [
            advance.eq(~out_valid | net.s_axis_tready),
            have.eq(waiting),
            rport.en.eq(advance),
            rport.addr.eq(rd_addr),
            net.s_axis_tdata.eq(rport.data),
            net.s_axis_tvalid.eq(out_valid),
            net.s_axis_tlast.eq(out_last),
        ]
        with m.If(advance):
            fd += [out_valid.eq(have), out_last.eq(rd_beat == beats - 1)]
            with m.If(have):
                with m.If(rd_beat == beats - 1):
                    last = rd_slot == slots - 1
                    fd += [
                        rd_beat.eq(0),
                        rd_slot.eq(Mux(last, 0, rd_slot + 1)),
                        rd_addr.eq(Mux(last, 0, rd_addr + 1)),
                    ]
                    if bench is not None:
                        with m.If(feed):
                            # A replayed frame: nothing to hand back. After the pass's last
                            # frame, back to its first, except after the last pass: then on
                            # to the slot after the stored frames, where the feeder stood.
                            m.d.comb += frame_fed.eq(1)
                            with m.If(in_pass + 1 == bench.frames):
                                fd += in_pass.eq(0)
                                with m.If(pass_left == 1):
                                    fd += feed.eq(0)
                                with m.Else():
                                    fd += [pass_left.eq(pass_left - 1),
                                           rd_slot.eq(bench.start_slot),
                                           rd_addr.eq(bench.start_addr)]
                            with m.Else():
                                fd += in_pass.eq(in_pass + 1)
                    with m.If(Const(1) if bench is None else ~bench.run):
                        if committed is None:
                            m.d.comb += clear_full.eq(Const(1, slots) << rd_slot)
                        else:
                            m.d.comb += [committed.r_en.eq(1),
                                         freed.w_en.eq(1), freed.w_data.eq(committed.r_data)]
                with m.Else():
                    fd += [rd_beat.eq(rd_beat + 1), rd_addr.eq(rd_addr + 1)]
        if bench is not None:
            self._elaborate_bench(m, net, fd, bench, feed, in_pass, pass_left, frame_fed,
                                  rd_slot, rd_addr, rd_beat)

    def _elaborate_bench(self, m, net, fd, bench, feed, in_pass, pass_left, frame_fed, rd_slot,
                         rd_addr, rd_beat):
        """The benchmark in the network's domain: start on ``go``, count cycles and frames in
        flight, checksum the results, toggle ``done`` at the end."""
        domain = self._network_domain or "sync"
        go = Signal()
        go_seen = Signal()
        m.submodules.bench_go_sync = FFSynchronizer(bench.go, go, o_domain=domain)
        start = Signal()
        m.d.comb += start.eq(go != go_seen)
        first = Signal()                      # the first beat's handshake is still to come
        counting = Signal()
        ending = Signal()                     # the last result has been checksummed
        # Replayed frames read out, results not yet taken: at most about latency / period + 2
        # (the feeder is held to one frame a period, the checksum never holds results back).
        pending = Signal(range(2 * (net.latency // self.bench_period) + 16))
        s_hs = net.s_axis_tvalid & net.s_axis_tready
        valid = Signal()                      # a result of the run on m_axis
        result = Signal()                     # ... taken
        m.d.comb += [valid.eq(bench.run & net.m_axis_tvalid),
                     result.eq(valid & net.m_axis_tready)]
        # A replayed frame counts from the cycle after its last beat is read (frame_fed
        # registered: the count's adder then starts at flip-flops, not at the network's ready).
        # Until it counts, the run is not over.
        fed = Signal()
        fd += fed.eq(frame_fed)
        last = Signal()                       # ... and it is the run's last
        m.d.comb += last.eq(valid & ~feed & ~fed & (pending == 1))
        fd += pending.eq(pending + fed - result)
        with m.If(first & s_hs):
            fd += [first.eq(0), counting.eq(1), bench.cycles.eq(0)]
        with m.Elif(counting):
            fd += bench.cycles.eq(bench.cycles + 1)
        with m.If(last):     # the count stops when the last result is valid (taken at once
            fd += counting.eq(0)  # when the checksum takes a word in one cycle)
        with m.If(last & result):
            fd += ending.eq(1)

        # The checksum: each result word straight from m_axis into the CRC, `chunk` bytes per
        # cycle, the word taken with its last piece (in at most `bench_period` cycles, so the
        # checksum never holds the network back).
        width = len(net.m_axis_tdata)
        chunk = bench_chunk_bytes(width // 8, self.bench_period)
        pieces = width // 8 // chunk
        crc = BENCH_CRC(data_width=8 * chunk).create()
        m.submodules.bench_crc = DomainRenamer(domain)(crc) if domain != "sync" else crc
        m.d.comb += [
            crc.start.eq(start),
            crc.valid.eq(valid),
            bench.checksum.eq(crc.crc),
        ]
        if pieces == 1:
            m.d.comb += [crc.data.eq(net.m_axis_tdata), bench.crc_ready.eq(1)]
        else:
            piece = Signal(range(pieces))     # the piece of the word on m_axis checksummed now
            m.d.comb += [crc.data.eq(net.m_axis_tdata.word_select(piece, 8 * chunk)),
                         bench.crc_ready.eq(piece == pieces - 1)]
            with m.If(valid):
                fd += piece.eq(Mux(piece == pieces - 1, 0, piece + 1))
        with m.If(ending):
            fd += [ending.eq(0), bench.run.eq(0), bench.done.eq(~bench.done)]
        with m.If(start):
            fd += [
                go_seen.eq(go), bench.run.eq(1), feed.eq(1), first.eq(1), counting.eq(0),
                ending.eq(0), pending.eq(0), fed.eq(0), in_pass.eq(0), pass_left.eq(bench.repeat),
                rd_slot.eq(bench.start_slot), rd_addr.eq(bench.start_addr), rd_beat.eq(0),
            ]

    def _elaborate_sender(self, m, net, info, ids, replies, line_seen, dropped, bench):
        """One reply packet at a time onto o_stream: queued INFO/ERROR first, then results (from
        ``m_axis``, or with two clocks from the result FIFO that ``m_axis`` fills)."""
        o = self.o_stream
        m.submodules.tx_crc = crc = CRC.create()
        pending = data.View(_REPLY, replies.r_data)
        nd = self._network_domain
        # During a BENCH run the network's results go to the run's checksum, not to RESULTs.
        bench_run = Const(0) if bench is None else bench.run
        crc_ready = Const(0) if bench is None else bench.crc_ready
        if nd is None:
            res_valid, res_data, res_take = Signal(), net.m_axis_tdata, Signal()
            m.d.comb += [
                res_valid.eq(net.m_axis_tvalid & ~bench_run),
                net.m_axis_tready.eq(Mux(bench_run, crc_ready, res_take)),
            ]
        else:
            m.submodules.results = results = AsyncFIFO(
                width=len(net.m_axis_tdata), depth=RESULT_FIFO_DEPTH, w_domain=nd,
                r_domain="sync")
            m.d.comb += [
                results.w_data.eq(net.m_axis_tdata),
                results.w_en.eq(net.m_axis_tvalid & ~bench_run),
                net.m_axis_tready.eq(Mux(bench_run, crc_ready, results.w_rdy)),
            ]
            res_valid, res_data, res_take = results.r_rdy, results.r_data, results.r_en
        am_layout = net.plan.argmax.output_layout
        am = data.View(am_layout, res_data[:am_layout.size])
        res_layout = result_layout(info.classes, info.with_scores, info.signed_scores)

        status = Signal(ResultStatus)
        result = Signal(res_layout)
        m.d.comb += [result.index.eq(am.index), result.status.eq(status)]
        if info.with_scores:
            for k in range(info.classes):
                m.d.comb += result.scores[k].eq(am.scores[k])

        def packet(cmd, id, payload, length):
            header = Signal(Header, name=f"{cmd.name.lower()}_header")
            m.d.comb += [header.sync.eq(Sync.DEVICE), header.cmd.eq(cmd), header.id.eq(id),
                         header.length.eq(length)]
            return Cat(header, payload), HEADER_BYTES + length

        info_const = InfoPayload.const(info.fields())
        packets = {
            "info": packet(Command.INFO, pending.id, info_const, INFO_BYTES),
            "error": packet(Command.ERROR, pending.id, pending.error, ERROR_BYTES),
            "result": packet(Command.RESULT, ids.r_data, result, res_layout.size // 8),
        }
        is_report = Signal()
        if bench is not None:
            # The run's end crosses back as the toggle `done`; the request, the count and the
            # checksum are stable registers by then (until the REPORT's last byte).
            done = Signal()
            done_seen = Signal()
            m.submodules.bench_done_sync = FFSynchronizer(bench.done, done)
            with m.If(done != done_seen):
                m.d.sync += [done_seen.eq(done), bench.report.eq(1)]
            report = Signal(BenchReport)
            m.d.comb += [
                report.frames.eq(bench.frames),
                report.repeat.eq(bench.repeat),
                report.cycles.eq(bench.cycles),
                report.checksum.eq(bench.checksum),
                report.clock_hz.eq(self._network_clk_hz),
            ]
            packets["report"] = packet(Command.REPORT, bench.id, report, BENCH_REPORT_BYTES)
        longest = max(length for _, length in packets.values())

        busy = Signal()
        is_result = Signal()
        index = Signal(range(longest + 1))    # byte of the packet being offered
        out = Signal(8)
        # The byte offered, from a register: byte `index + 1` is selected while byte `index` is
        # offered, so that the byte multiplexer never feeds the crc and the transmitter in the
        # same cycle. Every packet starts with the SYNC byte; the crc byte comes from the crc.
        data_byte = Signal(8, init=Sync.DEVICE.value)
        next_byte = Signal(8)
        last = Signal()                        # the crc byte
        m.d.comb += [o.valid.eq(busy), o.payload.eq(out),
                     out.eq(Mux(last, crc.crc, data_byte))]

        def select(name):
            bits, length = packets[name]
            m.d.comb += last.eq(index == length)
            m.d.comb += next_byte.eq(bits.word_select(index + 1, 8))
        with m.If(is_result):
            select("result")
        if bench is not None:
            with m.Elif(is_report):
                select("report")
        with m.Elif(pending.info):
            select("info")
        with m.Else():
            select("error")

        with m.If(~busy):
            m.d.sync += data_byte.eq(Sync.DEVICE)
            with m.If(replies.r_rdy):
                m.d.sync += [busy.eq(1), is_result.eq(0), is_report.eq(0), index.eq(0)]
            with m.Elif(bench.report if bench is not None else Const(0)):
                m.d.sync += [busy.eq(1), is_result.eq(0), is_report.eq(1), index.eq(0)]
            with m.Elif(res_valid & ids.r_rdy):
                m.d.sync += [
                    busy.eq(1), is_result.eq(1), is_report.eq(0), index.eq(0),
                    Value.cast(status).eq(
                        Mux(self.frame_error, ResultStatus.FRAME_ERROR.value, 0)
                        | Mux(line_seen, ResultStatus.LINE_ERROR.value, 0)
                        | Mux(dropped, ResultStatus.REPLY_DROPPED.value, 0)),
                    line_seen.eq(0),
                    dropped.eq(0),
                ]
        with m.If(o.valid & o.ready):
            m.d.sync += [index.eq(index + 1), data_byte.eq(next_byte)]
            m.d.comb += [
                crc.data.eq(out),
                crc.start.eq(index == 0),
                crc.valid.eq((index != 0) & ~last),
            ]
            with m.If(last):
                m.d.sync += busy.eq(0)
                with m.If(is_result):
                    m.d.comb += [res_take.eq(1), ids.r_en.eq(1)]
                if bench is not None:
                    with m.Elif(is_report):
                        m.d.sync += [bench.report.eq(0), bench.busy.eq(0)]
                with m.Else():
                    m.d.comb += replies.r_en.eq(1)


class SerialBridge(wiring.Component):
    """The accelerator on a UART: the board top's serial link, protocol of
    :mod:`xnorflow.hw.tops.protocol`.

    Parameters
    ----------
    network : Network
        The accelerator.
    clk_hz : int
        The clock frequency.
    baud : int
        The link's bit rate. ``divisor = round(clk_hz / baud)`` clock cycles per bit, at least 4,
        and ``clk_hz / divisor`` within :data:`MAX_BAUD_ERROR` (2 %) of ``baud``.
    model_hash, gap_bits, slots, buffer, network_domain, bench
        As for :class:`PacketEngine`: with ``network_domain`` the network runs on a clock of its
        own (the UART and the engine stay in ``sync``, at ``clk_hz``).
    network_clk_hz : int or None
        The network domain's clock frequency (required with ``network_domain``, else None): for
        :attr:`frame_cycles`, :attr:`frames_per_second` and REPORT's ``clock_hz``.

    Ports
    -----
    rx : In(1), idle 1
        The line from the host (asynchronous; synchronized inside).
    tx : Out(1), idle 1
        The line to the host, from a register.
    bench_busy : Out(1)
        The engine's (a BENCH run in progress).

    Inside: a :class:`~xnorflow.hw.blocks.uart.UARTRx` -> :attr:`engine` (its
    ``i_stream``/``o_stream`` are the packet-level byte streams) -> a
    :class:`~xnorflow.hw.blocks.uart.UARTTx`; framing errors of the receiver go to the engine's
    ``line_error``.

    Throughput
    ----------
    A FRAME is ``N0 + 6`` bytes of 10 bit-times, a RESULT ``R + 6`` bytes with ``R = 2 + 2 *
    classes`` (with scores) or 2. With a host that keeps at least two frames in flight (K =
    ``slots`` >= 2), one frame per :attr:`frame_cycles` = ``max(10 * divisor * (N0 + 6), 10 *
    divisor * (R + 6), network.ii, N0/SIMD0)`` cycles, that is :attr:`frames_per_second`: the
    UART's ``baud / (10 * (N0 + 6))`` in practice (14.6 frames/s for MNIST at 115200 baud,
    126.6 at 1 Mbaud, 379.7 at 3 Mbaud). With two clocks the network's terms are converted from
    its clock: ``ceil(max(network.ii, N0/SIMD0) * clk_hz / network_clk_hz)``.

    Latency
    -------
    From the cycle the start bit of a FRAME's crc byte reaches ``rx`` to the first cycle of its
    RESULT's start bit on ``tx``: :attr:`result_latency` = ``divisor // 2 + 9 * divisor + 3``
    (the receiver) ``+ 3 + network.latency`` (the engine) ``+ 1`` (the transmitter) cycles,
    when the network is empty and nothing else is being sent; the RESULT then takes ``10 *
    divisor * (R + 6)`` cycles. One clock only: with two, the crossings add a few cycles that
    depend on the clocks' phase (:class:`PacketEngine`, Clock domains).

    Errors
    ------
    See the device rules in :mod:`xnorflow.hw.tops.protocol`: frames run only from whole packets
    with a good crc; bad packets are answered with ERROR (BAD_CRC, BAD_LENGTH, UNKNOWN_CMD,
    OVERFLOW, TIMEOUT) when their header was read; the parser resynchronises on SYNC, after the gap
    timeout of ``gap_bits`` bit-times and after a bad crc. A byte with a bad stop bit is dropped by
    the receiver (its packet then fails by crc or timeout) and flagged in the next RESULT's status.
    """

    def __init__(self, network, *, clk_hz, baud, model_hash=None, gap_bits=DEFAULT_GAP_BITS,
                 slots=2, buffer="block", network_domain=None, network_clk_hz=None, bench=True):
        _check_range("clk_hz", clk_hz, 1, 2**32 - 1)
        _check_domain(network_domain)
        if network_domain is None and network_clk_hz is not None:
            raise ValueError("network_clk_hz applies to a network in a domain of its own "
                             "(network_domain)")
        if network_domain is not None:
            _check_range("network_clk_hz", network_clk_hz, 1, 2**32 - 1)
        if not _is_int(baud) or baud < 1:
            raise ValueError(f"baud ({baud!r}) must be a positive integer")
        divisor = round(clk_hz / baud)
        if divisor < UARTRx.MIN_DIVISOR:
            raise ValueError(f"baud ({baud}) is too fast for clk_hz ({clk_hz}): the UART needs "
                             f"at least {UARTRx.MIN_DIVISOR} clock cycles per bit")
        error = abs(clk_hz / divisor - baud) / baud
        if error > MAX_BAUD_ERROR:
            raise ValueError(f"baud ({baud}) is {error:.1%} off clk_hz / {divisor} = "
                             f"{clk_hz / divisor:.0f}; at most {MAX_BAUD_ERROR:.0%} allowed")
        if not isinstance(bench, bool):
            raise ValueError(f"bench ({bench!r}) must be a bool")
        self._info = _device_info(network, model_hash=model_hash, clk_hz=clk_hz,
                                  divisor=divisor, gap_bits=gap_bits, slots=slots, bench=bench)
        if buffer not in BRIDGE_BUFFER_STYLES:
            raise ValueError(f"buffer ({buffer!r}) must be one of "
                             f"{', '.join(BRIDGE_BUFFER_STYLES)}")
        self._buffer = buffer
        self._network = network
        self._baud = baud
        self._network_domain = network_domain
        self._network_clk_hz = network_clk_hz
        self._bench = bench
        self._engine = None
        super().__init__({
            "rx": In(1, init=1),
            "tx": Out(1, init=1),
            "bench_busy": Out(1),
        })

    @property
    def engine(self) -> PacketEngine:
        """The protocol engine inside (made on first use, so that a bridge that is only inspected
        leaves no unused elaboratable behind)."""
        if self._engine is None:
            info = self._info
            self._engine = PacketEngine(self._network, model_hash=info.model_hash,
                                        clk_hz=info.clk_hz, divisor=info.divisor,
                                        gap_bits=info.gap_bits, slots=info.capacity,
                                        buffer=self._buffer,
                                        network_domain=self._network_domain,
                                        network_clk_hz=self.network_clk_hz, bench=self._bench)
        return self._engine

    @property
    def network_domain(self) -> str | None:
        return self._network_domain

    @property
    def network_clk_hz(self) -> int | None:
        """The network's clock (``clk_hz`` when it shares the bridge's; see Parameters)."""
        return self._info.clk_hz if self._network_domain is None else self._network_clk_hz

    @property
    def network(self) -> Network:
        return self._network

    @property
    def info(self) -> DeviceInfo:
        return self._info

    @property
    def baud(self) -> int:
        return self._baud

    @property
    def divisor(self) -> int:
        return self._info.divisor

    @property
    def frame_cycles(self) -> int:
        """Clock cycles per frame in the steady state (see Throughput)."""
        info, net = self.info, self.network
        per_byte = BITS_PER_BYTE * info.divisor
        compute = max(net.ii, net.beats_per_frame)
        if self._network_domain is not None:
            compute = -(-compute * info.clk_hz // self._network_clk_hz)
        return max(per_byte * (info.n0 + OVERHEAD), per_byte * (info.result_bytes + OVERHEAD),
                   compute)

    @property
    def frames_per_second(self) -> float:
        return self.info.clk_hz / self.frame_cycles

    @property
    def result_latency(self) -> int:
        """Cycles from the start bit of a FRAME's crc byte at ``rx`` to the start bit of its RESULT
        at ``tx`` (see Latency); one clock only (else a ``ValueError``)."""
        if self._network_domain is not None:
            raise ValueError("result_latency is exact only for a one-clock bridge; this one "
                             f"runs the network in domain {self._network_domain!r}")
        d = self._info.divisor
        return d // 2 + 9 * d + 3 + 3 + self._network.latency + 1

    def elaborate(self, platform):
        m = Module()
        m.submodules.uart_rx = rx = UARTRx(self.divisor)
        m.submodules.engine = engine = self.engine
        m.submodules.uart_tx = tx = UARTTx(self.divisor)
        wiring.connect(m, rx.o_stream, engine.i_stream)
        wiring.connect(m, engine.o_stream, tx.i_stream)
        m.d.comb += [
            rx.rx.eq(self.rx),
            engine.line_error.eq(rx.framing_error),
            self.tx.eq(tx.tx),
            self.bench_busy.eq(engine.bench_busy),
        ]
        return m


class DualClockBridge(wiring.Component):
    """A :class:`SerialBridge` whose network runs on a clock of its own: the board tops' two clock
    domains without the board (the simulated board of :mod:`xnorflow.sim.board` runs this).

    The UART and the packet engine run in ``sync`` (the component's ``clk`` and ``rst``); the
    network in :data:`NETWORK_DOMAIN` (``accel``), clocked by the ``accel_clk`` port, any
    frequency, unrelated in phase. The network domain's reset comes from ``sync``'s reset through
    a ``ResetSynchronizer`` (asserted at once, released on the second edge of ``accel_clk``
    after ``rst`` falls), so one reset input resets both domains, as in the board tops. The
    crossings are :class:`PacketEngine`'s (Clock domains).

    Parameters
    ----------
    network, clk_hz, baud, model_hash, gap_bits, slots, buffer, bench
        As for :class:`SerialBridge` (``clk_hz``: the bridge's clock).
    network_clk_hz : int
        The frequency of ``accel_clk``.

    Ports
    -----
    rx, tx, bench_busy : as for :class:`SerialBridge`.
    accel_clk : In(1)
        The network's clock.
    """

    def __init__(self, network, *, clk_hz, baud, network_clk_hz, model_hash=None,
                 gap_bits=DEFAULT_GAP_BITS, slots=2, buffer="block", bench=True):
        self._bridge = SerialBridge(network, clk_hz=clk_hz, baud=baud, model_hash=model_hash,
                                    gap_bits=gap_bits, slots=slots, buffer=buffer,
                                    network_domain=NETWORK_DOMAIN,
                                    network_clk_hz=network_clk_hz, bench=bench)
        super().__init__({
            "rx": In(1, init=1),
            "tx": Out(1, init=1),
            "accel_clk": In(1),
            "bench_busy": Out(1),
        })

    @property
    def bridge(self) -> SerialBridge:
        return self._bridge

    @property
    def info(self) -> DeviceInfo:
        return self._bridge.info

    def elaborate(self, platform):
        m = Module()
        m.domains.accel = ClockDomain(NETWORK_DOMAIN)
        m.d.comb += ClockSignal(NETWORK_DOMAIN).eq(self.accel_clk)
        m.submodules.accel_reset = ResetSynchronizer(ResetSignal("sync"), domain=NETWORK_DOMAIN)
        m.submodules.bridge = bridge = self._bridge
        m.d.comb += [bridge.rx.eq(self.rx), self.tx.eq(bridge.tx),
                     self.bench_busy.eq(bridge.bench_busy)]
        return m

# amaranth: UnusedElaboratable=no
"""The serial bridge in Amaranth's simulator: the protocol engine on byte streams (fast, with
stalls on both sides) and the whole bridge on its pins, driven bit-serially by the line model of
test_hw_uart.py.

The host side here is the test's own: packets are built and replies parsed with code written from
the docstring of hw/tops/protocol.py (offsets by hand, a bitwise CRC), not with the protocol module,
and results are checked against the golden model."""

import itertools
import zlib
from collections import deque
from dataclasses import dataclass
from itertools import pairwise

import numpy as np
import pytest
from amaranth.sim import Simulator
from hwsim import pauses
from test_hw_protocol import bitwise_crc8
from test_hw_uart import LineDriver, LineMonitor

from xnorflow.data import load
from xnorflow.golden import GoldenModel
from xnorflow.hw.build.pll import pll_config
from xnorflow.hw.tops.board import BOARDS
from xnorflow.hw.tops.bridge import PacketEngine, SerialBridge
from xnorflow.hw.tops.network import Network
from xnorflow.model import Model
from xnorflow.models import MODELS_DIR
from xnorflow.sim.fixtures import folding, random_model

HELLO, FRAME, INFO, RESULT, ERROR = 0x01, 0x02, 0x81, 0x82, 0xFF
BAD_CRC, BAD_LENGTH, UNKNOWN_CMD, OVERFLOW, TIMEOUT = 1, 2, 3, 4, 5
LINE_ERROR, REPLY_DROPPED = 0x02, 0x04

# --- Models -------------------------------------------------------------------------------------


# name: (topology, folding, with_scores)
CASES = {
    "lanes4": ((20, 12, 5), folding((3, 4), (1, 6)), True),
    "lanes1": ((20, 12, 5), folding((1, 1), (5, 12)), True),
    "lanes20": ((20, 12, 5), folding((12, 20), (5, 12)), True),
    "no-scores": ((20, 12, 5), folding((3, 4), (1, 6)), False),
    "single-signed": ((20, 5), folding((5, 10)), True),  # one layer on pixels: signed scores
}


def make(case, frames=8, seed=0):
    topology, fold_cfg, with_scores = CASES[case]
    model = random_model(topology, seed)
    rng = np.random.default_rng(seed + 1)
    x = rng.integers(0, 256, (frames, topology[0]))
    x[0, :] = 0xA5  # a frame full of SYNC bytes
    return model, Network(model, fold_cfg, with_scores=with_scores), x


# --- The test's host: packets, replies --------------------------------------------------------


def packet(cmd, id, payload=b"", length=None):
    """A host packet by the docstring's table: A5, cmd, id, length (LE), payload, crc."""
    length = len(payload) if length is None else length
    body = bytes([cmd, id, length & 0xFF, length >> 8]) + bytes(payload)
    return bytes([0xA5]) + body + bytes([bitwise_crc8(body)])


def frame_packet(id, pixels):
    return packet(FRAME, id, bytes(int(p) for p in pixels))


@dataclass
class Reply:
    cmd: int
    id: int
    payload: bytes
    first: int  # cycle of its first byte (accepted; on pins: its start bit)
    last: int   # cycle of its last byte

    def error(self):
        assert self.cmd == ERROR and len(self.payload) == 2
        return self.payload[0], self.payload[1]  # code, cmd


class ReplyParser:
    """Device packets from a byte stream: strict, since the device sends nothing else."""

    def __init__(self):
        self.buf = []

    def feed(self, item):
        cycle, byte = item
        self.buf.append(item)
        raw = bytes(b for _, b in self.buf)
        assert raw[0] == 0x5A, f"cycle {cycle}: reply does not start with SYNC: {raw.hex()}"
        if len(raw) < 5 or len(raw) < 6 + (raw[3] | raw[4] << 8):
            return None
        length = raw[3] | raw[4] << 8
        assert raw[5 + length] == bitwise_crc8(raw[1:5 + length]), f"bad crc: {raw.hex()}"
        reply = Reply(raw[1], raw[2], raw[5:5 + length], self.buf[0][0], cycle)
        self.buf = []
        return reply


def decode_result(payload, classes, with_scores, signed):
    """index u8, scores u16/i16 LE, status u8."""
    assert len(payload) == (2 + 2 * classes if with_scores else 2)
    scores = [int.from_bytes(payload[1 + 2 * k:3 + 2 * k], "little", signed=signed)
              for k in range(classes)] if with_scores else []
    return payload[0], scores, payload[-1]


@dataclass
class Step:
    """One thing the host sends: ``data`` after ``idle`` quiet cycles. ``awaits``: the id whose
    reply the host waits for (counted against its window); ``bad_stop``: byte indexes sent with
    a zero stop bit (pins only)."""
    data: bytes
    awaits: int | None = None
    idle: int = 0
    bad_stop: tuple = ()


class ByteLink:
    """The engine's byte streams, each side with a pause pattern; checks that a reply byte holds
    while not accepted."""

    def __init__(self, engine, in_pause="none", out_pause="none"):
        self.i, self.o = engine.i_stream, engine.o_stream
        self.queue = deque()
        self.presenting = None
        self.in_pauses = pauses(in_pause, 3) if isinstance(in_pause, str) else in_pause
        self.out_pauses = pauses(out_pause, 4) if isinstance(out_pause, str) else out_pause
        self.sent = []  # cycle of each request byte
        self.held = None

    @property
    def busy(self):
        return bool(self.queue) or self.presenting is not None

    def send(self, step, cycle):
        self.queue.extend([None] * step.idle + list(step.data))

    def drive(self, ctx):
        if self.presenting is None and self.queue:
            if self.queue[0] is None:
                self.queue.popleft()
            elif not next(self.in_pauses):
                self.presenting = self.queue.popleft()
        ctx.set(self.i.valid, self.presenting is not None)
        if self.presenting is not None:
            ctx.set(self.i.payload, self.presenting)
        ctx.set(self.o.ready, not next(self.out_pauses))

    def sampled(self):
        return (self.i.valid, self.i.ready, self.o.valid, self.o.ready, self.o.payload)

    def observe(self, cycle, i_valid, i_ready, o_valid, o_ready, o_payload):
        """Returns (cycle, byte) for the reply byte accepted in this cycle, or None."""
        if i_valid and i_ready:
            self.sent.append(cycle)
            self.presenting = None
        if self.held is not None:
            assert o_valid and o_payload == self.held, f"cycle {cycle}: reply byte did not hold"
        self.held = o_payload if o_valid and not o_ready else None
        return (cycle, o_payload) if o_valid and o_ready else None


class PinLink:
    """The bridge's pins: ``rx`` driven by the line model, ``tx`` decoded by it."""

    def __init__(self, bridge):
        self.bridge = bridge
        self.driver = LineDriver(bridge.divisor)
        self.monitor = LineMonitor(bridge.divisor)
        self.sent = []  # cycle in which each request byte's start bit begins
        self._cycle = 0

    @property
    def busy(self):
        return self.driver.busy

    def send(self, step, cycle):
        d = self.bridge.divisor
        start = cycle + len(self.driver._levels) - self.driver._next + step.idle
        self.driver.idle(step.idle)
        for k, byte in enumerate(step.data):
            self.sent.append(start + 10 * d * k)
            self.driver.send([byte], stop=0 if k in step.bad_stop else 1)

    def drive(self, ctx):
        ctx.set(self.bridge.rx, self.driver.level())

    def sampled(self):
        return (self.bridge.tx,)

    def observe(self, cycle, tx):
        """Returns (cycle of its start bit, byte) when a byte has been read, else None."""
        count = len(self.monitor.bytes)
        self.monitor.sample(cycle, tx)
        assert not self.monitor.errors, f"cycle {cycle}: bad stop bit on tx"
        if len(self.monitor.bytes) > count:
            return self.monitor.starts[-1], self.monitor.bytes[-1]
        return None


def run_host(dut, link, steps, *, replies, window=2, timeout=5000, drain=None,
             accel_period=None, period=1e-6):
    """Send ``steps`` (a step that awaits a reply only while fewer than ``window`` awaited
    replies are outstanding), collect replies until there are ``replies`` of them, then ``drain``
    more quiet cycles (no more replies may come). Fails after ``timeout`` cycles in which nothing
    was sent or received while replies are missing. Returns (replies, the cycle each step
    started). ``period``: the clock period (s); ``accel_period``: the period of a second clock,
    for the ``accel`` domain of a two-clock engine or bridge (the testbench's cycles are
    ``sync``'s)."""
    parser = ReplyParser()
    got, started = [], []
    drain = timeout if drain is None else drain

    async def testbench(ctx):
        outstanding = set()
        step = 0
        idle = 0
        for cycle in itertools.count():
            if not link.busy and step < len(steps):
                s = steps[step]
                if s.awaits is None or len(outstanding) < window:
                    link.send(s, cycle)
                    started.append(cycle)
                    if s.awaits is not None:
                        outstanding.add(s.awaits)
                    step += 1
            link.drive(ctx)
            _, _, *values = await ctx.tick().sample(*link.sampled())
            byte = link.observe(cycle, *values)
            idle = 0 if byte is not None or link.busy else idle + 1
            if byte is not None:
                reply = parser.feed(byte)
                if reply is not None:
                    got.append(reply)
                    outstanding.discard(reply.id)
            if len(got) >= replies and step == len(steps) and not link.busy:
                if idle >= drain:
                    break
            elif idle >= timeout:
                raise TimeoutError(
                    f"cycle {cycle}: nothing sent or received for {timeout} cycles; sent {step} "
                    f"of {len(steps)} steps, got {len(got)} of {replies} replies: "
                    f"{[(r.cmd, r.id) for r in got]}")

    sim = Simulator(dut)
    sim.add_clock(period)
    if accel_period is not None:
        sim.add_clock(accel_period, domain="accel")
    sim.add_testbench(testbench)
    sim.run()
    assert len(got) == replies, [(r.cmd, r.id, r.payload.hex()) for r in got]
    assert not parser.buf, "a partial reply was left"
    return got, started


def check_results(replies, ids, model, network, frames):
    """The RESULTs, in order, carry ``ids`` and the golden class and scores of ``frames``."""
    golden = GoldenModel(model).run(frames)
    results = [r for r in replies if r.cmd == RESULT]
    assert [r.id for r in results] == list(ids)
    signed = network.with_scores and network.score_shape.signed
    for k, r in enumerate(results):
        index, scores, status = decode_result(r.payload, model.classes, network.with_scores,
                                              signed)
        assert index == golden.classes[k], f"frame {k} (id {r.id}): class"
        if network.with_scores:
            assert scores == list(golden.scores[k]), f"frame {k} (id {r.id}): scores"
        assert status == 0
    return results


def check_info(payload, network, *, slots, gap_bits, clk_hz, divisor, model_hash, bench=True):
    """INFO by the docstring's offsets."""
    assert len(payload) == 50
    flags = (1 if network.with_scores else 0) | (
        2 if network.with_scores and network.score_shape.signed else 0) | (4 if bench else 0)
    assert payload[0] == 2 and payload[1] == flags and payload[2] == slots
    assert payload[3] == (network.score_shape.width if network.with_scores else 0)
    assert int.from_bytes(payload[4:6], "little") == network.plan.layers[0].in_features
    assert int.from_bytes(payload[6:8], "little") == network.classes
    assert int.from_bytes(payload[8:10], "little") == gap_bits
    assert int.from_bytes(payload[10:14], "little") == clk_hz
    assert int.from_bytes(payload[14:18], "little") == divisor
    assert payload[18:50] == model_hash


# --- The engine on byte streams ------------------------------------------------------------------

GAP = 40  # bit-times; with divisor 1 the engine's timeout is 40 cycles


def engine(network, slots=2):
    return PacketEngine(network, clk_hz=1_000_000, divisor=1, gap_bits=GAP, slots=slots)


@pytest.mark.parametrize(("case", "in_pause", "out_pause"), [
    ("lanes4", "none", "none"),
    ("lanes4", "fixed", "random"),
    ("lanes4", "random", "fixed"),
    ("lanes1", "random", "random"),
    ("lanes20", "none", "random"),
    ("no-scores", "random", "none"),
    ("single-signed", "fixed", "fixed"),
])
def test_engine_frames_match_golden(case, in_pause, out_pause):
    """HELLO, then 8 FRAMEs with ids wrapping 254, 255, 0, ...; two in flight."""
    model, network, frames = make(case)
    dut = engine(network)
    ids = [(254 + k) % 256 for k in range(len(frames))]
    steps = [Step(packet(HELLO, 9), awaits=9)]
    steps += [Step(frame_packet(i, f), awaits=i) for i, f in zip(ids, frames, strict=True)]
    replies, _ = run_host(dut, ByteLink(dut, in_pause, out_pause), steps,
                          replies=1 + len(frames), drain=300)
    assert (replies[0].cmd, replies[0].id) == (INFO, 9)
    check_info(replies[0].payload, network, slots=2, gap_bits=GAP, clk_hz=1_000_000,
               divisor=1, model_hash=bytes.fromhex(model.content_hash))
    assert replies[0].payload == dut.info.to_payload()
    check_results(replies[1:], ids, model, network, frames)


@pytest.mark.parametrize("slots", [1, 3])
def test_engine_slots_are_the_capacity(slots):
    """With K = slots frame buffers, a host keeping K frames outstanding never sees OVERFLOW,
    even with the reply side stalling."""
    model, network, frames = make("lanes4", frames=7, seed=slots)
    dut = engine(network, slots=slots)
    steps = [Step(frame_packet(k, f), awaits=k) for k, f in enumerate(frames)]
    replies, _ = run_host(dut, ByteLink(dut, "none", "random"), steps, replies=len(frames),
                          window=slots, drain=300)
    assert dut.info.capacity == slots
    check_results(replies, range(len(frames)), model, network, frames)


# Two clocks: the network's faster, slower, and neither a multiple of the other (periods in us).
ACCEL_PERIODS = {"faster": 0.37, "slower": 2.3}


@pytest.mark.parametrize(("case", "clock", "in_pause", "out_pause"), [
    ("lanes4", "faster", "none", "none"),
    ("lanes4", "faster", "random", "random"),
    ("lanes4", "slower", "fixed", "random"),
    ("lanes20", "faster", "none", "random"),
    ("single-signed", "slower", "random", "none"),
])
def test_engine_two_clocks(case, clock, in_pause, out_pause):
    """The network in a domain of its own (frame buffer read, slot tokens, results and
    frame_error crossing between the clocks): every frame's result, in order, with both sides
    stalling; one slot and three slots keep their capacity."""
    for slots in (1, 3) if clock == "faster" and in_pause == "none" else (2,):
        model, network, frames = make(case, frames=7, seed=11 + slots)
        dut = PacketEngine(network, clk_hz=1_000_000, divisor=1, gap_bits=GAP, slots=slots,
                           network_domain="accel",
                           network_clk_hz=round(1 / ACCEL_PERIODS[clock] * 1e6))
        assert dut.network_domain == "accel"
        ids = [(250 + k) % 256 for k in range(len(frames))]
        steps = [Step(packet(HELLO, 9), awaits=9)]
        steps += [Step(frame_packet(i, f), awaits=i) for i, f in zip(ids, frames, strict=True)]
        replies, _ = run_host(dut, ByteLink(dut, in_pause, out_pause), steps,
                              replies=1 + len(frames), window=slots, drain=300,
                              accel_period=ACCEL_PERIODS[clock] * 1e-6)
        assert replies[0].payload == dut.info.to_payload()
        check_results(replies[1:], ids, model, network, frames)  # status 0 included
    with pytest.raises(ValueError, match="exact only for a one-clock engine"):
        _ = dut.result_latency


def test_engine_latency():
    """No stalls: INFO starts reply_latency cycles after the HELLO's crc byte, a RESULT
    result_latency cycles after its FRAME's crc byte (network empty, nothing else sent)."""
    model, network, frames = make("lanes4", frames=1)
    dut = engine(network)
    hello, frame = packet(HELLO, 1), frame_packet(2, frames[0])
    link = ByteLink(dut)
    steps = [Step(hello, awaits=1), Step(frame, awaits=2, idle=100)]
    replies, _ = run_host(dut, link, steps, replies=2, drain=100)
    assert replies[0].first - link.sent[len(hello) - 1] == dut.reply_latency == 3
    assert replies[1].first - link.sent[-1] == dut.result_latency == 3 + network.latency
    check_results(replies, [2], model, network, frames)


def test_engine_overflow_is_answered_never_silent():
    """A host that ignores K while the reply side is blocked: frames that find no free buffer get
    OVERFLOW; replies that find the reply queue full are dropped and flagged in the next RESULT;
    every RESULT is right and in order, and no id is answered twice."""
    model, network, frames = make("lanes4", frames=14, seed=3)
    dut = engine(network)
    blocked = itertools.chain([True] * 700, pauses("random", 5))
    ids = list(range(20, 20 + len(frames)))
    steps = [Step(frame_packet(i, f)) for i, f in zip(ids[:12], frames[:12], strict=True)]
    # After the burst, the host waits, then sends two more.
    steps += [Step(frame_packet(ids[12], frames[12]), awaits=ids[12], idle=1500),
              Step(frame_packet(ids[13], frames[13]), awaits=ids[13])]
    replies = run_until_quiet(dut, ByteLink(dut, "none", blocked), steps)
    answered = [r.id for r in replies]
    assert len(answered) == len(set(answered)), "an id was answered twice"
    results = [r for r in replies if r.cmd == RESULT]
    errors = [r for r in replies if r.cmd == ERROR]
    assert all(r.error() == (OVERFLOW, FRAME) for r in errors)
    assert errors, "the burst should overflow"
    run_ids = [r.id for r in results]
    assert run_ids == sorted(run_ids) and run_ids[-2:] == ids[-2:]
    golden = GoldenModel(model).run(frames)
    dropped = 0
    for r in results:
        k = ids.index(r.id)
        index, scores, status = decode_result(r.payload, model.classes, True, False)
        assert (index, scores) == (golden.classes[k], list(golden.scores[k]))
        dropped += bool(status & REPLY_DROPPED)
        assert status & ~REPLY_DROPPED == 0
    missing = len(ids) - len(replies)
    assert missing > 0  # more OVERFLOWs than the reply queue holds
    # The first RESULT after the drops says so, the last (nothing dropped since) does not.
    assert dropped >= 1 and not results[-1].payload[-1] & REPLY_DROPPED


def run_until_quiet(dut, link, steps, quiet=2000):
    """Like run_host without a window or an expected count: until no reply byte for ``quiet``
    cycles after the last step."""
    parser = ReplyParser()
    got = []

    async def testbench(ctx):
        step = 0
        idle = 0
        for cycle in itertools.count():
            if not link.busy and step < len(steps):
                link.send(steps[step], cycle)
                step += 1
            link.drive(ctx)
            _, _, *values = await ctx.tick().sample(*link.sampled())
            byte = link.observe(cycle, *values)
            idle = 0 if byte is not None or link.busy else idle + 1
            if byte is not None:
                reply = parser.feed(byte)
                if reply is not None:
                    got.append(reply)
            if step == len(steps) and idle >= quiet:
                break

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(testbench)
    sim.run()
    assert not parser.buf
    return got


def test_engine_length_and_command_errors():
    """BAD_LENGTH after the crc (HELLO with a payload, FRAME one pixel short), BAD_LENGTH at once
    for a length above N0 (the rest of that packet is then garbage), UNKNOWN_CMD for an unknown
    code and for a device code sent to the device; a good FRAME after each is answered right."""
    model, network, frames = make("lanes4", frames=5)
    n0 = 20
    dut = engine(network)
    long_frame = packet(FRAME, 3, bytes(range(1, n0 + 2)))  # N0 + 1 bytes, no 0xA5 among them
    steps = [
        Step(packet(HELLO, 1, b"\x00"), awaits=1),
        Step(frame_packet(50, frames[0]), awaits=50),
        Step(packet(FRAME, 2, bytes(n0 - 1)), awaits=2),
        Step(frame_packet(51, frames[1]), awaits=51),
        Step(long_frame, awaits=3),
        Step(frame_packet(52, frames[2]), awaits=52),
        Step(packet(0x33, 4, b"\x01\x02\x03"), awaits=4),
        Step(frame_packet(53, frames[3]), awaits=53),
        Step(packet(RESULT, 5), awaits=5),
        Step(frame_packet(54, frames[4]), awaits=54),
    ]
    link = ByteLink(dut, "fixed", "random")
    replies, started = run_host(dut, link, steps, replies=10, window=1, drain=200)
    errors = {r.id: r.error() for r in replies if r.cmd == ERROR}
    assert errors == {1: (BAD_LENGTH, HELLO), 2: (BAD_LENGTH, FRAME), 3: (BAD_LENGTH, FRAME),
                      4: (UNKNOWN_CMD, 0x33), 5: (UNKNOWN_CMD, RESULT)}
    # The over-long FRAME is answered as soon as its header is read, before its payload ends.
    bad = next(r for r in replies if r.id == 3)
    first_byte = sum(len(s.data) for s in steps[:4])
    assert bad.first - link.sent[first_byte + 4] >= dut.reply_latency
    assert bad.first < link.sent[first_byte + 10]
    check_results(replies, [50, 51, 52, 53, 54], model, network, frames)


@pytest.mark.parametrize("clocks", ["one", "two"])
def test_engine_tfc_mnist(clocks):
    """The shipped TFC on two MNIST test images; INFO carries the model's hash. Two clocks: the
    network at 2.5 times the engine's clock, as on the iCEBreaker (30 MHz beside 12 MHz)."""
    model = Model.load(MODELS_DIR / "tfc.npz")
    frames = load(None, "test").images[[0, 300]].reshape(2, -1)
    network = Network(model, folding((16, 49, "bram"), (8, 32, "lut"), (32, 16, "bram"),
                                     (5, 16, "lut")))
    if clocks == "one":
        dut, accel_period = engine(network), None
    else:
        dut = PacketEngine(network, clk_hz=1_000_000, divisor=1, gap_bits=GAP,
                           network_domain="accel", network_clk_hz=2_500_000)
        accel_period = 0.4e-6
    steps = [Step(packet(HELLO, 0), awaits=0)]
    steps += [Step(frame_packet(k + 1, f), awaits=k + 1) for k, f in enumerate(frames)]
    replies, _ = run_host(dut, ByteLink(dut), steps, replies=3, drain=200,
                          accel_period=accel_period)
    check_info(replies[0].payload, network, slots=2, gap_bits=GAP, clk_hz=1_000_000, divisor=1,
               model_hash=bytes.fromhex(model.content_hash))
    check_results(replies[1:], [1, 2], model, network, frames)


# --- The bridge on its pins ----------------------------------------------------------------------

CLK_HZ, BAUD = 1_000_000, 250_000   # divisor 4
PIN_GAP = 30                         # bit-times: 120 cycles


def bridge(network, slots=2):
    return SerialBridge(network, clk_hz=CLK_HZ, baud=BAUD, gap_bits=PIN_GAP, slots=slots)


def test_bridge_hello_and_frames_in_flight():
    """HELLO -> INFO; 6 FRAMEs sent back to back with two in flight: RESULTs in order with their
    ids and the golden results; the RESULT of a FRAME starts result_latency cycles after its crc
    byte's start bit, and in the steady state one RESULT every frame_cycles."""
    model, network, frames = make("lanes4", frames=6, seed=7)
    dut = bridge(network)
    assert dut.divisor == 4
    steps = [Step(packet(HELLO, 200), awaits=200)]
    steps += [Step(frame_packet(k, f), awaits=k) for k, f in enumerate(frames)]
    link = PinLink(dut)
    replies, started = run_host(dut, link, steps, replies=7, drain=200)
    assert (replies[0].cmd, replies[0].id) == (INFO, 200)
    check_info(replies[0].payload, network, slots=2, gap_bits=PIN_GAP, clk_hz=CLK_HZ,
               divisor=4, model_hash=bytes.fromhex(model.content_hash))
    results = check_results(replies[1:], range(6), model, network, frames)
    # Two frames in flight: each FRAME (from the second) starts before the previous RESULT ends.
    assert all(started[k + 1] < results[k - 1].last for k in range(1, 6))
    # The link is the bottleneck: N0 + 6 bytes of 10 bit-times per frame.
    assert dut.frame_cycles == 10 * 4 * (20 + 6)
    assert [b.first - a.first for a, b in pairwise(results)][-3:] == [dut.frame_cycles] * 3
    crc_bytes = np.cumsum([len(s.data) for s in steps]) - 1
    last = results[-1]
    assert last.first - link.sent[crc_bytes[-1]] == dut.result_latency
    assert dut.result_latency == 4 // 2 + 9 * 4 + 7 + network.latency
    assert dut.frames_per_second == pytest.approx(CLK_HZ / 1040)


@pytest.mark.parametrize("name", list(BOARDS))
def test_bridge_board_clocks_and_default_rate(name):
    """Each board's two clocks at their real periods (the bridge's clock and the accelerator's
    PLL output at the board's default target) and its default bit rate (3 Mbaud: divisor 4 from
    the iCEBreaker's 12 MHz, 20 from the ULX3S's 60 MHz CLKOS), on the pins: HELLO and 4 FRAMEs
    with two in flight, every RESULT golden; the steady state is the link's frame time, within
    the crossings' jitter."""
    board = BOARDS[name]
    pll = pll_config(board.family, board.clock_mhz, board.default_mhz,
                     bridge_baud=board.default_baud)
    model, network, frames = make("lanes4", frames=4, seed=21)
    dut = SerialBridge(network, clk_hz=pll.bridge_hz, baud=board.default_baud,
                       gap_bits=PIN_GAP, network_domain="accel", network_clk_hz=pll.clk_hz)
    assert dut.divisor == {"ice40": 4, "ecp5": 20}[board.family]
    assert pll.bridge_hz / dut.divisor == board.default_baud == 3_000_000
    steps = [Step(packet(HELLO, 7), awaits=7)]
    steps += [Step(frame_packet(k, f), awaits=k) for k, f in enumerate(frames)]
    replies, _ = run_host(dut, PinLink(dut), steps, replies=5, drain=200,
                          period=1 / pll.bridge_hz, accel_period=1 / pll.clk_hz)
    assert replies[0].payload == dut.info.to_payload()
    results = check_results(replies[1:], range(4), model, network, frames)
    assert dut.frame_cycles == 10 * dut.divisor * (20 + 6)
    # One RESULT per frame time; the crossings add a cycle or so of phase-dependent jitter.
    gaps = [b.first - a.first for a, b in pairwise(results)][-2:]
    assert all(abs(gap - dut.frame_cycles) <= 2 for gap in gaps), gaps
    assert dut.frames_per_second == pytest.approx(3_000_000 / 260)


def corrupt(data, index, mask=0x10):
    data = bytearray(data)
    data[index] ^= mask
    return bytes(data)


def drop(data, index):
    return data[:index] + data[index + 1:]


def scenario(name, frames):
    """(steps, expected replies, the indexes of the frames that run). An expected reply is
    ``(RESULT, id)`` or ``(ERROR, id, codes, cmd)`` with ``codes`` the allowed error codes."""
    good = [frame_packet(10 + k, f) for k, f in enumerate(frames)]
    quiet = 4 * (PIN_GAP + 10)  # cycles: the gap timeout and a byte more
    if name == "corrupt-byte":
        steps = [Step(good[0], 10), Step(corrupt(good[1], 9), 11), Step(good[2], 12)]
        return steps, [(RESULT, 10), (ERROR, 11, {BAD_CRC}, FRAME), (RESULT, 12)], [0, 2]
    if name == "short-then-gap":
        # One payload byte lost, then the line is quiet: TIMEOUT, then the next frame.
        steps = [Step(drop(good[0], 12), 10), Step(good[1], 11, idle=quiet)]
        return steps, [(ERROR, 10, {TIMEOUT}, FRAME), (RESULT, 11)], [1]
    if name == "short-back-to-back":
        # One payload byte lost, the next packet at once: its SYNC lands on the crc position,
        # BAD_CRC, and that SYNC starts the next packet.
        assert good[0][-1] != 0xA5
        steps = [Step(drop(good[0], 12), 10), Step(good[1], 11)]
        return steps, [(ERROR, 10, {BAD_CRC}, FRAME), (RESULT, 11)], [1]
    if name == "garbage":
        # Noise without SYNC is skipped; noise with a false SYNC (a FRAME header of id 7)
        # times out, answered as documented, and the next frame after the gap is right.
        steps = [Step(bytes.fromhex("00 FF 13 5A 77 81"), None), Step(good[0], 10),
                 Step(bytes.fromhex("A5 02 07 14 00 11 22"), 7), Step(good[1], 11, idle=quiet)]
        return steps, [(RESULT, 10), (ERROR, 7, {TIMEOUT}, FRAME), (RESULT, 11)], [0, 1]
    if name == "unknown-command":
        steps = [Step(packet(0x42, 9), 9), Step(good[0], 10)]
        return steps, [(ERROR, 9, {UNKNOWN_CMD}, 0x42), (RESULT, 10)], [0]
    if name == "framing-error":
        # A payload byte with a zero stop bit: the receiver drops it and, the next start bit
        # following at once, loses byte alignment for a while, so the rest of that packet is
        # garbage (BAD_CRC or TIMEOUT, as the garbage falls). After a quiet gap the next frames
        # run; the first RESULT after the error has LINE_ERROR, the one after it is clean.
        steps = [Step(good[0], 10, bad_stop=(9,)), Step(good[1], 11, idle=quiet),
                 Step(good[2], 12)]
        return steps, [(ERROR, 10, {BAD_CRC, TIMEOUT}, FRAME), (RESULT, 11), (RESULT, 12)], [1, 2]
    raise ValueError(name)


@pytest.mark.parametrize("name", ["corrupt-byte", "short-then-gap", "short-back-to-back",
                                  "garbage", "unknown-command", "framing-error"])
def test_bridge_errors_and_resync(name):
    model, network, frames = make("lanes4", frames=3, seed=11)
    dut = bridge(network)
    steps, expected, run = scenario(name, frames)
    link = PinLink(dut)
    replies, _ = run_host(dut, link, steps, replies=len(expected), window=2, drain=600)
    assert [(r.cmd, r.id) for r in replies] == [e[:2] for e in expected]
    for r, e in zip(replies, expected, strict=True):
        if r.cmd == ERROR:
            code, cmd = r.error()
            assert code in e[2] and cmd == e[3], (r, e)
    golden = GoldenModel(model).run(frames[run])
    results = [r for r in replies if r.cmd == RESULT]
    for k, r in enumerate(results):
        index, scores, status = decode_result(r.payload, 5, True, False)
        assert (index, scores) == (golden.classes[k], list(golden.scores[k]))
        line_error = name == "framing-error" and k == 0
        assert status == (LINE_ERROR if line_error else 0)
    if name == "short-then-gap":
        # The TIMEOUT starts gap_bits bit-times after the last byte was received (the receiver's
        # latency), plus the reply latency and the transmitter's cycle.
        last_byte = link.sent[len(steps[0].data) - 1]
        received = last_byte + 4 // 2 + 9 * 4 + 3
        assert replies[0].first == received + PIN_GAP * 4 + 3 + 1


# --- Parameters ---------------------------------------------------------------------------------


def test_parameter_checks():
    model, network, _ = make("lanes4")
    with pytest.raises(ValueError, match=r"^baud \(300000\) is too fast for clk_hz \(1000000\): "
                                         r"the UART needs at least 4 clock cycles per bit$"):
        SerialBridge(network, clk_hz=1_000_000, baud=300_000)
    with pytest.raises(ValueError, match=r"^baud \(115200\) is 3\.5% off clk_hz / 9 = 111111; "
                                         r"at most 2% allowed$"):
        SerialBridge(network, clk_hz=1_000_000, baud=115_200)
    with pytest.raises(ValueError, match=r"^slots \(0\) must be an integer in \[1, 255\]$"):
        SerialBridge(network, clk_hz=12_000_000, baud=115_200, slots=0)
    with pytest.raises(ValueError, match=r"^gap_bits \(19\) must be an integer in "
                                         r"\[20, 65535\]$"):
        PacketEngine(network, clk_hz=1, divisor=1, gap_bits=19)
    with pytest.raises(ValueError, match=r"^model_hash \(b'\\x00'\) must be 32 bytes"):
        PacketEngine(network, clk_hz=1, divisor=1, model_hash=b"\x00")
    with pytest.raises(ValueError, match=r"^model_hash \(00+\) is not the network's model "
                                         r"\([0-9a-f]{64}\)$"):
        PacketEngine(network, clk_hz=1, divisor=1, model_hash=bytes(32))
    with pytest.raises(TypeError, match=r"^network \(3\) must be a xnorflow\.hw\.tops\.network\."
                                        r"Network$"):
        PacketEngine(3, clk_hz=1, divisor=1)
    for domain in ("sync", "", 3):
        with pytest.raises(ValueError, match=r"^network_domain \(.*\) must be None or the name of "
                                             r"a clock domain other than 'sync'$"):
            PacketEngine(network, clk_hz=1, divisor=1, network_domain=domain)
    with pytest.raises(ValueError, match=r"^network_clk_hz \(None\) must be an integer in "):
        SerialBridge(network, clk_hz=1_000_000, baud=250_000, network_domain="accel")
    with pytest.raises(ValueError, match=r"^network_clk_hz applies to a network in a domain of "
                                         r"its own \(network_domain\)$"):
        SerialBridge(network, clk_hz=1_000_000, baud=250_000, network_clk_hz=2_000_000)
    assert network.ii == 20
    for accel_hz, cycles in ((400_000, 10 * 4 * 26), (15_000, 1334)):
        two = SerialBridge(network, clk_hz=1_000_000, baud=250_000, network_domain="accel",
                           network_clk_hz=accel_hz)
        # The link's 1040 cycles, or the network's II of 20 of its cycles in the bridge's
        # (at 15 kHz: ceil(20 * 1e6 / 15e3) = 1334).
        assert two.network_clk_hz == accel_hz and two.frame_cycles == cycles
        assert two.frames_per_second == 1_000_000 / cycles
    with pytest.raises(ValueError, match=r"exact only for a one-clock bridge"):
        _ = two.result_latency
    wide = Network(random_model((300, 5), 1), folding((5, 100)))  # scores up to 255 * 300
    with pytest.raises(ValueError, match=r"^scores of 18 bits do not fit the protocol's 16 "
                                         r"bits$"):
        PacketEngine(wide, clk_hz=1, divisor=1)
    PacketEngine(Network(random_model((300, 5), 1), folding((5, 100)), with_scores=False),
                 clk_hz=1, divisor=1)
    ok = SerialBridge(network, clk_hz=12_000_000, baud=115_200)
    assert (ok.divisor, ok.info.capacity, ok.info.gap_bits) == (104, 2, 1000)
    assert ok.info.model_hash == bytes.fromhex(model.content_hash)


# --- The on-device benchmark (BENCH -> REPORT) ---------------------------------------------------

BENCH, REPORT = 0x03, 0x83
BAD_BENCH, BUSY = 6, 7


def bench_packet(id, frames, repeat):
    """BENCH by the docstring: frames u8, repeat u32 LE."""
    return packet(BENCH, id, bytes([frames]) + repeat.to_bytes(4, "little"))


def decode_report(payload):
    """REPORT by the docstring: frames u8, repeat u32, cycles u64, checksum u32, clock_hz u32."""
    assert len(payload) == 21
    return (payload[0], int.from_bytes(payload[1:5], "little"),
            int.from_bytes(payload[5:13], "little"), int.from_bytes(payload[13:17], "little"),
            int.from_bytes(payload[17:21], "little"))


def expected_checksum(model, network, frames, repeat):
    """zlib's CRC-32 over the golden results of ``frames`` repeated ``repeat`` times, each as the
    result word by the Network docstring (index at bit 0 in ceil(log2(classes)) bits, then each
    score in S bits, two's complement; little endian, whole bytes, at least one)."""
    golden = GoldenModel(model).run(frames)
    index_bits = (model.classes - 1).bit_length()
    s = network.score_shape.width if network.with_scores else 0
    used = index_bits + model.classes * s
    nbytes = max(1, -(-used // 8))
    block = b""
    for k in range(len(frames)):
        word = int(golden.classes[k])
        for c in range(model.classes if s else 0):
            word |= (int(golden.scores[k][c]) % (1 << s)) << (index_bits + c * s)
        block += word.to_bytes(nbytes, "little")
    return zlib.crc32(block * repeat)


def bench_session(dut, model, network, frames, runs, *, accel_period=None, after=None):
    """Load ``frames`` as FRAMEs (one at a time), then one BENCH per ``(frames, repeat)`` of
    ``runs`` (the last ``frames`` loaded), then ``after`` more frames as FRAMEs. Checks every
    RESULT and REPORT; returns the REPORTs."""
    after = [] if after is None else list(after)
    ids = list(range(len(frames)))
    steps = [Step(frame_packet(i, f), awaits=i) for i, f in zip(ids, frames, strict=True)]
    for k, _ in enumerate(runs):
        steps.append(Step(bench_packet(100 + k, *runs[k]), awaits=100 + k))
    steps += [Step(frame_packet(200 + k, f), awaits=200 + k) for k, f in enumerate(after)]
    longest = max(dut.bench_cycles(f, r) for f, r in runs)
    if accel_period is not None:
        longest = int(longest * accel_period / 1e-6) + 100
    replies, _ = run_host(dut, ByteLink(dut), steps, replies=len(steps), window=1,
                          timeout=longest + 1000, drain=100, accel_period=accel_period)
    reports = [r for r in replies if r.cmd == REPORT]
    assert [r.id for r in reports] == [100 + k for k in range(len(runs))]
    check_results([r for r in replies if r.cmd == RESULT], ids + [200 + k for k in
                                                                  range(len(after))],
                  model, network, np.concatenate([frames] + ([np.array(after)] if after else [])))
    out = []
    for (f, r), rep in zip(runs, reports, strict=True):
        frames_, repeat, cycles, checksum, clock_hz = decode_report(rep.payload)
        assert (frames_, repeat) == (f, r)
        assert clock_hz == dut.network_clk_hz
        assert checksum == expected_checksum(model, network, frames[len(frames) - f:], r)
        out.append(cycles)
    return out


# (frames, repeat) per BENCH of a session: one frame, both, a frame again, several passes.
RUNS = [(2, 1), (1, 1), (2, 3), (1, 4)]


def bench_engine(network, clock):
    """``(engine, network clock period in s or None)``: the engine on one clock (``clock``
    None) or with the network on its own clock of :data:`ACCEL_PERIODS`."""
    if clock is None:
        return engine(network), None
    accel_period = ACCEL_PERIODS[clock] * 1e-6
    return PacketEngine(network, clk_hz=1_000_000, divisor=1, gap_bits=GAP,
                        network_domain="accel", network_clk_hz=round(1 / accel_period)), \
        accel_period


@pytest.mark.parametrize(("case", "clock"), [
    ("lanes4", None),
    ("lanes1", None),          # one pixel a beat, II 240
    ("lanes20", None),         # a whole frame a beat
    ("no-scores", None),
    ("single-signed", None),
    ("lanes4", "faster"),
    ("lanes4", "slower"),
    ("lanes20", "faster"),
])
def test_engine_bench_cycles_exact(case, clock):
    """BENCH after loading two frames: every REPORT's cycles (counted in the network's clock)
    equal ``latency + (F*R - 1) * max(II, N0/SIMD0)`` exactly, its checksum is zlib's CRC-32 of
    the golden result words, and FRAMEs after the runs still get their own results (the feeder
    is back where the ring expects it)."""
    model, network, frames = make(case, frames=5, seed=5)
    dut, accel_period = bench_engine(network, clock)
    period = max(network.ii, network.beats_per_frame)
    assert dut.bench_period == period
    cycles = bench_session(dut, model, network, frames[:2], RUNS, accel_period=accel_period,
                           after=frames[2:])
    assert cycles == [network.latency + (f * r - 1) * period for f, r in RUNS]
    assert cycles == [dut.bench_cycles(f, r) for f, r in RUNS]


def test_engine_bench_three_slots_wrap():
    """Three slots, five frames loaded (the ring has wrapped): BENCH replays the last F."""
    model, network, frames = make("lanes4", frames=6, seed=8)
    dut = engine(network, slots=3)
    runs = [(3, 2), (2, 2), (1, 1)]
    cycles = bench_session(dut, model, network, frames[:5], runs, after=frames[5:])
    assert cycles == [dut.bench_cycles(f, r) for f, r in runs]


def test_engine_bench_large_repeat_rate():
    """R = 200: frames per cycle within 1 % of 1 / II."""
    model, network, frames = make("lanes4", frames=2, seed=9)
    dut = engine(network)
    (cycles,) = bench_session(dut, model, network, frames, [(2, 200)])
    assert cycles == network.latency + 399 * network.ii
    assert 400 / cycles == pytest.approx(1 / network.ii, rel=0.01)


def test_engine_bench_errors():
    """BAD_BENCH for F = 0, F > K, F above the frames stored and R out of [1, 2**24 - 1];
    BAD_LENGTH for a short BENCH; BUSY for a BENCH while a frame is outstanding and for a FRAME
    during a run; HELLO is answered during a run; the run's REPORT is still right."""
    model, network, frames = make("lanes4", frames=4, seed=4)
    dut = engine(network)
    steps = [
        Step(bench_packet(1, 1, 1), awaits=1),           # nothing stored yet
        Step(frame_packet(10, frames[0]), awaits=10),
        Step(bench_packet(2, 2, 1), awaits=2),           # one frame stored
        Step(frame_packet(11, frames[1]), awaits=11),
        Step(bench_packet(3, 0, 1), awaits=3),
        Step(bench_packet(4, 3, 1), awaits=4),
        Step(bench_packet(5, 2, 0), awaits=5),
        Step(bench_packet(6, 2, 1 << 24), awaits=6),
        Step(packet(BENCH, 7, b"\x02\x01\x00\x00"), awaits=7),
        # A frame and, at once, a BENCH: the frame is still outstanding.
        Step(frame_packet(12, frames[2])),
        Step(bench_packet(8, 1, 1), awaits=8),
        # A long run; a FRAME and a HELLO arrive during it.
        Step(bench_packet(9, 2, 30), idle=200),
        Step(frame_packet(13, frames[3]), awaits=13),
        Step(packet(HELLO, 14), awaits=14),
    ]
    link = ByteLink(dut)
    replies, _ = run_host(dut, link, steps, replies=14, window=4, timeout=3000, drain=200)
    by_id = {r.id: r for r in replies}
    errors = {r.id: r.error() for r in replies if r.cmd == ERROR}
    assert errors == {1: (BAD_BENCH, BENCH), 2: (BAD_BENCH, BENCH), 3: (BAD_BENCH, BENCH),
                      4: (BAD_BENCH, BENCH), 5: (BAD_BENCH, BENCH), 6: (BAD_BENCH, BENCH),
                      7: (BAD_LENGTH, BENCH), 8: (BUSY, BENCH), 13: (BUSY, FRAME)}
    assert by_id[14].cmd == INFO and by_id[9].cmd == REPORT
    # The HELLO and the FRAME were answered during the run, before its REPORT.
    assert by_id[14].last < by_id[9].first and by_id[13].last < by_id[9].first
    check_results([r for r in replies if r.cmd == RESULT], [10, 11, 12], model, network,
                  frames[:3])
    f, r, cycles, checksum, clock_hz = decode_report(by_id[9].payload)
    # The frames committed last are frames 1 and 2.
    assert (f, r, cycles) == (2, 30, dut.bench_cycles(2, 30))
    assert checksum == expected_checksum(model, network, frames[1:3], 30)
    assert clock_hz == 1_000_000


def test_engine_without_bench():
    """bench=False: INFO has no BENCH flag and BENCH is an unknown command."""
    model, network, frames = make("lanes4", frames=1)
    dut = PacketEngine(network, clk_hz=1_000_000, divisor=1, gap_bits=GAP, bench=False)
    assert not dut.info.bench and not dut.bench
    steps = [Step(packet(HELLO, 1), awaits=1), Step(frame_packet(2, frames[0]), awaits=2),
             Step(bench_packet(3, 1, 1), awaits=3)]
    replies, _ = run_host(dut, ByteLink(dut), steps, replies=3, window=1, drain=200)
    check_info(replies[0].payload, network, slots=2, gap_bits=GAP, clk_hz=1_000_000, divisor=1,
               model_hash=bytes.fromhex(model.content_hash), bench=False)
    assert replies[2].error() == (UNKNOWN_CMD, BENCH)


@pytest.mark.parametrize("clock", [None, "faster"])
def test_engine_bench_conv_net(clock):
    """A small convolutional net (conv, pool, conv+pool, dense): the same exact law."""
    from xnorflow.sim.fixtures import random_net

    model = random_net("8x8x1-c4k3-p2-c4k3p-5", 3)
    network = Network(model)
    frames = np.random.default_rng(1).integers(0, 256, (3, 64))
    dut, accel_period = bench_engine(network, clock)
    runs = [(2, 1), (1, 2), (2, 3)]
    cycles = bench_session(dut, model, network, frames[:2], runs, accel_period=accel_period,
                           after=frames[2:])
    assert cycles == [network.latency + (f * r - 1) * network.ii for f, r in runs]

"""The host driver: frames to the accelerator over a transport, results back, nothing lost.

The driver speaks the protocol of :mod:`xnorflow.hw.tops.protocol` (packets built and parsed only
with that module's definitions) over a :class:`Transport`, an abstract byte pipe. The same
:class:`Accelerator` code runs against

* :class:`SerialTransport`: a board's USB serial port through pyserial (or any pyserial URL:
  ``socket://host:port``, ``loop://``, ``rfc2217://...``);
* :class:`SimTransport`: the simulated board of :mod:`xnorflow.sim.board`, the generated
  :class:`~xnorflow.hw.tops.bridge.SerialBridge` (UART, packet engine, frame buffers and the
  network of a model) compiled with Verilator and run under cocotb, its ``rx``/``tx`` pins
  driven and decoded bit by bit. Only the wire is simulated: every byte the driver writes
  crosses the bridge's real UART receiver.

Transport contract
    ``write(data)`` sends all of ``data``; ``read(n, timeout)`` returns once ``n`` bytes have
    arrived or after ``timeout`` seconds with what arrived by then (fewer, possibly none);
    ``flush()`` returns when what was written has left (no-op where that cannot be known);
    ``close()``; a context manager. ``reply_timeout`` and ``resync_quiet`` (seconds or None) are
    hints: how long a reply may take, and how long the line must stay quiet before the driver
    trusts that nothing more is coming (None: derived from the baud rate the device reports).

Session (:class:`Accelerator`)
    Opening (or :meth:`Accelerator.connect`): the driver stays quiet and discards input until the
    line has been quiet for the resync time, sends HELLO and waits for INFO (bounded retries);
    it checks the protocol version (:class:`ProtocolVersionError`) and, when a model is given,
    that the device's model hash is the model's content hash (:class:`ModelMismatch`, naming
    both). :meth:`Accelerator.infer` then streams frames: each FRAME carries an id (u8, never
    one in use), at most ``K`` frames are outstanding (``K`` = the device's capacity from INFO,
    or ``max_in_flight`` when smaller), and each RESULT is matched by id to its frame; the report
    lists results in input order.

Retry and resynchronisation policy
    A RESULT is accepted only when its crc is right, its id is that of an outstanding FRAME and
    its length is the one INFO implies; then it is that frame's result (the device never gives a
    frame another frame's result). Everything else is handled by one of two moves:

    *retry* the frame: send it again under a new id. On an ERROR reply (valid crc) whose id is an
    outstanding FRAME's (BAD_CRC, TIMEOUT, OVERFLOW, BAD_LENGTH, UNKNOWN_CMD: the device ran
    nothing for it), and for every FRAME sent before a frame whose RESULT arrives while they have
    had no reply (RESULTs come in FRAME order and ERRORs overtake RESULTs, so those packets were
    lost on the way: ``no_reply``).

    *resync*: stop sending, discard input until the line has been quiet for the resync time
    (the device has then finished or abandoned everything it held), reset the packet decoder, and
    send every outstanding frame again, in order, under new ids. On a reply with a bad crc, bytes
    outside any packet (a damaged sync byte or length), a RESULT or INFO whose id matches no
    outstanding request of its kind, a reply of the wrong length or an unknown command, and on a
    timeout: no reply for ``timeout`` seconds counted from when the oldest outstanding frame
    was sent or from the latest reply, whichever is later (replies come in order, so that is
    the wait for one reply).

    Ids given up on (a frame retried or resent, a HELLO repeated) are *retired*: the last 64 are
    remembered and not used again meanwhile, and a late reply carrying one is stale: counted
    (``stale_reply``) and ignored, never accepted. So a resync whose quiet time turned out too
    short costs nothing more than the stale bytes.

    Each retry or resync is a *fault* of one frame (the frame retried; for a resync the oldest
    outstanding one; the others are sent again without a fault). A frame with more than
    ``retries`` faults ends the call: :class:`DeviceTimeout` when its last fault was a timeout,
    else :class:`FrameFailed`, both naming the frame index, its id and attempts. ERROR replies
    for ids that are not outstanding (the device may answer noise) are counted and ignored.
    RESULT status: FRAME_ERROR (the device says its results may be misaligned) raises
    :class:`DeviceError`; LINE_ERROR and REPLY_DROPPED are counted.

    :class:`InferenceReport` counts every event by kind (``errors``) and the frames sent again
    (``retries``). The kinds: ``device_bad_crc``, ``device_bad_length``, ``device_unknown_cmd``,
    ``device_overflow``, ``device_timeout`` (ERROR replies), ``no_reply`` (found lost by order),
    ``timeout``, ``reply_bad_crc``, ``reply_garbage``, ``reply_unexpected_id``,
    ``reply_bad_length``, ``reply_bad_status``, ``reply_unknown_cmd`` (faults); ``resync``;
    ``stale_reply``, ``stray_error``, ``stray_info`` (ignored); ``line_error``,
    ``reply_dropped`` (RESULT status flags).

Simulation
    :func:`~xnorflow.sim.board.build_sim_device` builds the bridge of a model and folding once
    per Verilog text in the simulator build cache (:mod:`xnorflow.sim.cache`, shared with
    ``xnorflow simulate``, locked against other processes), giving a
    :class:`~xnorflow.sim.board.SimDevice` (both names are importable from here too); every
    :class:`SimTransport` on it is a fresh simulation of the reset device
    (:class:`xnorflow.sim.board.SimLink`: sessions, speed).

Platforms
    This module imports nothing POSIX-only (the cache's lock imports ``fcntl`` or ``msvcrt``
    when it is taken), so the serial transport and the driver work on Windows as on Linux and
    macOS.

Bit rate
    A board's bridge runs at the rate it was built for (its manifest's ``baud``; INFO reports it
    too). :func:`connect` finds it when not told: it opens the port at each rate of
    :data:`PROBE_BAUDS` in turn, sends one HELLO and keeps the first rate that an INFO answers
    (a bridge that sees bytes at the wrong rate answers nothing, or garbage, and drops the
    packet by its gap timeout and crc).

On-device benchmark
    :meth:`Accelerator.bench` measures the accelerator at its own rate, which the serial link
    hides: it stores F <= K frames on the device (as FRAMEs, one at a time), sends BENCH with a
    repeat count R, and gets back the device's count of accelerator cycles for the F*R replayed
    frames and a CRC-32 of their results, which it checks against the golden model's
    (:class:`BenchMeasurement`; protocol docstring, On-device benchmark).

:func:`run_accelerator` is the body of ``xnorflow run``: a model file, a board port or the
simulator, test frames, and a JSON-ready report; :func:`bench_accelerator` that of
``xnorflow run --bench``.
"""

from __future__ import annotations

import abc
import heapq
import itertools
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from xnorflow.hw.tops.protocol import (
    BENCH_REPORT_BYTES,
    BITS_PER_BYTE,
    ERROR_BYTES,
    HEADER_BYTES,
    INFO_BYTES,
    MAX_BENCH_REPEAT,
    OVERHEAD,
    PROTOCOL_VERSION,
    BenchResult,
    Command,
    DeviceInfo,
    ErrorCode,
    ErrorReply,
    Header,
    InfoPayload,
    Packet,
    PacketDecoder,
    ProtocolError,
    Result,
    ResultStatus,
    Sync,
    bench_checksum,
    bench_cycles,
    encode_bench,
    encode_hello,
    encode_packet,
    from_bytes,
    result_word_bytes,
)
from xnorflow.sim.board import SimDevice, SimLink, build_sim_device

__all__ = [
    "Accelerator",
    "BenchMeasurement",
    "BenchRefused",
    "DeviceError",
    "DeviceTimeout",
    "DriverError",
    "FrameError",
    "FrameFailed",
    "InferenceReport",
    "NetworkTiming",
    "ModelMismatch",
    "ProtocolVersionError",
    "SerialTransport",
    "SimDevice",
    "SimTransport",
    "Transport",
    "TransportError",
    "PROBE_BAUDS",
    "bench_accelerator",
    "build_sim_device",
    "connect",
    "run_accelerator",
]

#: The bit rates :func:`connect` tries, in order, when not given one: the boards' default
#: (3 Mbaud on every board: :data:`xnorflow.hw.tops.board.DEFAULT_BAUD`) first, then the earlier
#: reference builds' 1 Mbaud, the iCEBreaker FT2232H's 12 Mbaud limit (a build with a bridge
#: clock that reaches it) and the usual serial default.
PROBE_BAUDS = (3_000_000, 1_000_000, 12_000_000, 115_200)
#: Seconds one probing HELLO waits for INFO (INFO is 6 + 54 bytes: 5 ms at 115,200 baud).
PROBE_TIMEOUT = 0.5

#: Ids remembered as given up on (not reused while remembered).
_RETIRED_IDS = 64


# --- Errors ---------------------------------------------------------------------------------------


class DriverError(RuntimeError):
    """Base of the driver's errors (not of :class:`FrameError`, a ValueError)."""


class TransportError(DriverError):
    """The transport failed: a port that cannot be opened, a simulation that ended."""


class DeviceError(DriverError):
    """The device reported a fault or answered outside the protocol in a way no retry fixes."""


class ProtocolVersionError(DeviceError):
    """The device speaks another protocol version."""


class ModelMismatch(DeviceError):
    """The device holds another model than the one the driver was given."""

    def __init__(self, expected: str, device: str):
        self.expected, self.device = expected, device
        super().__init__(f"the device holds model {device}, but the driver was given model "
                         f"{expected}: program the device with the bitstream of that model, or "
                         "give the driver the device's model file")


class FrameFailed(DriverError):
    """A frame still had no result after ``retries`` retries."""

    def __init__(self, message: str, *, frame: int | None, id: int | None, attempts: int,
                 waited: float | None = None):
        self.frame, self.id, self.attempts, self.waited = frame, id, attempts, waited
        super().__init__(message)


class DeviceTimeout(FrameFailed):
    """No reply in time (the last fault of the frame, or of the HELLO, was a timeout)."""


class BenchRefused(DeviceError):
    """The device answered BENCH with ERROR (``code``: BAD_BENCH, BUSY, ...)."""

    def __init__(self, message: str, code):
        self.code = code
        super().__init__(message)


class FrameError(ValueError):
    """Frames (or labels) the device cannot take: wrong shape, not 8-bit pixels."""


# --- Transports -----------------------------------------------------------------------------------


class Transport(abc.ABC):
    """A byte pipe to a device (see the module docstring for the contract)."""

    #: Longest wait for one reply, in seconds (None: the driver derives it from the link rate).
    reply_timeout: float | None = None
    #: Quiet time after which nothing more is coming, in seconds (None: derived likewise).
    resync_quiet: float | None = None
    #: The fewest accelerator cycles the device runs per second of wall time, for the wait for a
    #: BENCH's REPORT (a simulator is far slower than a board).
    min_cycles_per_s: float = 1e6

    @abc.abstractmethod
    def write(self, data: bytes) -> None:
        """Send all of ``data``."""

    @abc.abstractmethod
    def read(self, n: int, timeout: float) -> bytes:
        """Up to ``n`` bytes: returns when ``n`` have arrived or ``timeout`` seconds have
        passed."""

    def flush(self) -> None:
        """Wait until what was written has left (default: nothing to wait for)."""
        return None

    @abc.abstractmethod
    def close(self) -> None:
        """Release the link; later calls do nothing."""

    def describe(self) -> str:
        """One line naming the link, for reports."""
        return type(self).__name__

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


class SerialTransport(Transport):
    """A serial port (``/dev/ttyUSB1``, ``COM3``) or a pyserial URL (``socket://127.0.0.1:7000``,
    ``loop://``), opened with :func:`serial.serial_for_url` at ``baud``, 8N1, no flow control.
    ``options`` go to pyserial. :meth:`flush` waits until the output has been sent."""

    def __init__(self, port: str, baud: int = 115200, *, write_timeout: float | None = 10.0,
                 **options):
        import serial

        if not isinstance(baud, int) or isinstance(baud, bool) or baud < 1:
            raise ValueError(f"baud ({baud!r}) must be a positive integer")
        self.port, self.baud = port, baud
        try:
            self._serial = serial.serial_for_url(port, baudrate=baud, timeout=0,
                                                 write_timeout=write_timeout, **options)
        except (serial.SerialException, ValueError) as exc:
            raise TransportError(f"cannot open serial port {port!r} at {baud} baud: "
                                 f"{exc}") from exc
        self._timeout = 0.0

    def write(self, data: bytes) -> None:
        import serial

        try:
            self._serial.write(bytes(data))
        except serial.SerialException as exc:
            raise TransportError(f"writing to {self.port!r} failed: {exc}") from exc

    def read(self, n: int, timeout: float) -> bytes:
        import serial

        deadline = time.monotonic() + max(0.0, timeout)
        buf = bytearray()
        try:
            while len(buf) < n:
                remaining = max(0.0, deadline - time.monotonic())
                if abs(remaining - self._timeout) > 1e-3:
                    self._serial.timeout = self._timeout = remaining
                buf += self._serial.read(n - len(buf))
                if remaining == 0.0:
                    break
        except serial.SerialException as exc:
            raise TransportError(f"reading from {self.port!r} failed: {exc}") from exc
        return bytes(buf)

    def flush(self) -> None:
        self._serial.flush()

    def close(self) -> None:
        self._serial.close()

    def describe(self) -> str:
        return f"serial:{self.port}@{self.baud}"


# --- Simulated board ------------------------------------------------------------------------------


class SimTransport(SimLink, Transport):
    """The simulated board as a :class:`Transport`: :class:`xnorflow.sim.board.SimLink` (the
    bridge of a :class:`~xnorflow.sim.board.SimDevice`, or of a model, in Verilator; its
    arguments and :attr:`~xnorflow.sim.board.SimLink.stats`), failing with
    :class:`TransportError`. ``min_cycles_per_s``: 2,000 (Verilator on a busy machine)."""

    error = TransportError
    min_cycles_per_s = 2_000.0


def _load_model(model):
    from xnorflow.model import Model

    return model if isinstance(model, Model) else Model.load(model)


# --- The accelerator ------------------------------------------------------------------------------


@dataclass
class InferenceReport:
    """What :meth:`Accelerator.infer` returns; results in input order."""

    predictions: np.ndarray  #: int64 (B,)
    scores: np.ndarray | None  #: int64 (B, classes) when the device sends scores
    frames: int
    accuracy: float | None  #: with labels
    frames_per_s: float  #: frames / wall time of the call
    wall_s: float
    errors: dict[str, int] = field(default_factory=dict)  #: events by kind
    retries: int = 0  #: frames sent again
    in_flight: int = 0  #: the window used (at most the device's capacity)
    discarded_bytes: int = 0  #: received bytes thrown away while resynchronising

    def to_dict(self) -> dict:
        return {
            "frames": self.frames,
            "predictions": [int(p) for p in self.predictions],
            "scores": None if self.scores is None else self.scores.tolist(),
            "accuracy": self.accuracy,
            "frames_per_s": round(self.frames_per_s, 3),
            "wall_s": round(self.wall_s, 3),
            "errors": dict(self.errors),
            "retries": self.retries,
            "in_flight": self.in_flight,
            "discarded_bytes": self.discarded_bytes,
        }


@dataclass(frozen=True)
class NetworkTiming:
    """A network's ``latency``, ``ii`` and ``beats_per_frame`` (N0/SIMD0), as
    :class:`~xnorflow.hw.tops.network.Network` and the manifest give them: the prediction of
    :meth:`Accelerator.bench`."""

    latency: int
    ii: int
    beats_per_frame: int

    @classmethod
    def of(cls, model, folding=None, *, with_scores: bool = True) -> NetworkTiming:
        """The timing of ``model`` (a Model or its file) with ``folding`` (None: the default)."""
        from xnorflow.hw.compiler import compile_plan, predict_ii, predict_latency

        plan = compile_plan(_load_model(model), folding, with_scores=with_scores)
        return cls(predict_latency(plan), predict_ii(plan), plan.input_beats)


@dataclass
class BenchMeasurement:
    """What :meth:`Accelerator.bench` returns: the device's REPORT and what the host expected.

    ``cycles`` are the accelerator's clock cycles from the handshake of the first replayed
    frame's first input beat to the first cycle its last result is valid (protocol docstring,
    On-device benchmark); ``frames_per_s = frames * repeat * clock_hz / cycles``. With a prediction
    (``latency``, ``ii``, ``beats`` of the network), ``predicted_cycles = latency + (frames *
    repeat - 1) * max(ii, beats)``, ``cycles_difference = cycles - predicted_cycles`` (0 when the
    device runs as its model says), ``predicted_frames_per_s = clock_hz / max(ii, beats)`` and
    ``ratio = frames_per_s / predicted_frames_per_s``."""

    frames: int  #: F, the frames stored and replayed
    repeat: int  #: R
    cycles: int
    checksum: int  #: the device's CRC-32 of the F*R result words
    expected_checksum: int  #: the host's, from ``expected_from``'s results
    expected_from: str  #: "golden" (the model's golden results) or "device" (the loads' RESULTs)
    clock_hz: int  #: the accelerator's clock, the unit of ``cycles``
    predicted_cycles: int | None = None
    period_cycles: int | None = None  #: max(II, N0/SIMD0) of the prediction
    wall_s: float = 0.0  #: the BENCH request to its REPORT, on the host's clock

    @property
    def total_frames(self) -> int:
        return self.frames * self.repeat

    @property
    def checksum_ok(self) -> bool:
        return self.checksum == self.expected_checksum

    @property
    def frames_per_s(self) -> float:
        return self.total_frames * self.clock_hz / self.cycles if self.cycles else 0.0

    @property
    def cycles_difference(self) -> int | None:
        return None if self.predicted_cycles is None else self.cycles - self.predicted_cycles

    @property
    def predicted_frames_per_s(self) -> float | None:
        return None if self.period_cycles is None else self.clock_hz / self.period_cycles

    @property
    def ratio(self) -> float | None:
        predicted = self.predicted_frames_per_s
        return None if not predicted else self.frames_per_s / predicted

    def to_dict(self) -> dict:
        def rounded(v, digits):
            return None if v is None else round(v, digits)
        return {
            "frames": self.frames, "repeat": self.repeat, "total_frames": self.total_frames,
            "cycles": self.cycles, "predicted_cycles": self.predicted_cycles,
            "cycles_difference": self.cycles_difference,
            "checksum": f"{self.checksum:08x}",
            "expected_checksum": f"{self.expected_checksum:08x}",
            "expected_from": self.expected_from, "checksum_ok": self.checksum_ok,
            "clock_hz": self.clock_hz, "frames_per_s": round(self.frames_per_s, 3),
            "predicted_frames_per_s": rounded(self.predicted_frames_per_s, 3),
            "ratio": rounded(self.ratio, 6), "wall_s": round(self.wall_s, 3),
        }


@dataclass
class _InFlight:
    frame: int  #: frame index (-1 for HELLO)
    id: int
    sent_at: float


class _Resync(Exception):
    """Internal: the transfer resynchronised; drop what was being handled."""


class Accelerator:
    """The accelerator behind ``transport`` (see the module docstring).

    Parameters
    ----------
    transport : Transport
    model : Model, path or None
        When given, the device must hold it (checked by hash on connect) and frames are checked
        against its input size.
    timeout : float or None
        Seconds to wait for one reply (None: ``transport.reply_timeout``, else derived from the
        link rate: ``max(1, 4 * (K + 1) * packet time + 0.5)``).
    max_in_flight : int or None
        At most this many frames outstanding; None or more than the device's capacity K: K.
    retries : int
        Faults allowed per frame (and per HELLO) before the call fails.
    connect : bool
        Do the handshake now (else call :meth:`connect`).
    """

    def __init__(self, transport: Transport, *, model=None, timeout: float | None = None,
                 max_in_flight: int | None = None, retries: int = 3, connect: bool = True):
        if not isinstance(transport, Transport):
            raise TypeError(f"transport ({transport!r}) must be a xnorflow.host.driver.Transport")
        if timeout is not None and not timeout > 0:
            raise ValueError(f"timeout ({timeout!r}) must be a positive number of seconds")
        if max_in_flight is not None and (not isinstance(max_in_flight, int)
                                          or max_in_flight < 1):
            raise ValueError(f"max_in_flight ({max_in_flight!r}) must be a positive integer")
        if not isinstance(retries, int) or retries < 0:
            raise ValueError(f"retries ({retries!r}) must be a non-negative integer")
        self.transport = transport
        self.model = None if model is None else _load_model(model)
        self._timeout = timeout
        self._max_in_flight = max_in_flight
        self.retries = retries
        self._info: DeviceInfo | None = None
        self._ids = itertools.count()
        #: Ids given up on (their frame sent again, or their HELLO repeated), newest last: a
        #: late reply with one of them is stale and ignored; they are not used again meanwhile.
        self._retired: deque[int] = deque(maxlen=_RETIRED_IDS)
        self._dirty = False
        self._set_decoder(INFO_BYTES)
        #: Events of the whole session by kind (each report has its own count too).
        self.errors: Counter = Counter()
        if connect:
            self.connect()

    # -- the byte level --------------------------------------------------------------------------

    def _set_decoder(self, max_payload: int):
        self._decoder = PacketDecoder(Sync.DEVICE, max_payload=max_payload)
        self._tail = bytearray()
        self._tail_keep = max_payload + OVERHEAD

    def _need(self) -> int:
        """Bytes that complete the header or the packet the decoder holds."""
        pending = self._decoder.pending
        if pending < HEADER_BYTES:
            return HEADER_BYTES - pending
        held = bytes(self._tail[len(self._tail) - pending:])
        length = from_bytes(Header, held[:HEADER_BYTES])["length"]
        return max(1, HEADER_BYTES + length + 1 - pending)

    def _receive(self, deadline: float) -> tuple[list[Packet], int]:
        """Packets completed by the bytes that arrive before ``deadline``, and the bytes skipped
        as outside any packet."""
        chunk = self.transport.read(self._need(), max(0.0, deadline - time.monotonic()))
        if not chunk:
            return [], 0
        self._tail += chunk
        del self._tail[:-self._tail_keep]
        before = self._decoder.skipped
        packets = self._decoder.feed(chunk)
        return packets, self._decoder.skipped - before

    def _new_id(self, busy) -> int:
        while True:
            candidate = next(self._ids) % 256
            if candidate not in busy and candidate not in self._retired:
                return candidate

    def _quiet(self) -> float:
        if self.transport.resync_quiet is not None:
            return self.transport.resync_quiet
        info = self._info
        if info is None:
            return 0.05
        return max(0.05, 2 * info.gap_bits / info.baud + 2 * self._packet_seconds())

    def _packet_seconds(self) -> float:
        info = self._info
        return (max(info.n0, info.result_bytes, INFO_BYTES) + OVERHEAD) * BITS_PER_BYTE \
            / info.baud

    def reply_timeout(self) -> float:
        """The timeout in use (see the parameter)."""
        if self._timeout is not None:
            return self._timeout
        if self.transport.reply_timeout is not None:
            return self.transport.reply_timeout
        if self._info is None:
            return 1.0
        return max(1.0, 4 * (self._window() + 1) * self._packet_seconds() + 0.5)

    def _drain(self) -> int:
        """Discard input until the line has been quiet for the resync time; reset the decoder.
        Returns the bytes discarded."""
        self.transport.flush()
        quiet = self._quiet()
        start = last = time.monotonic()
        limit = start + 20 * quiet + 2 * self.reply_timeout()
        discarded = 0
        while True:
            now = time.monotonic()
            if now - last >= quiet:
                break
            if now > limit:
                raise DeviceError(f"the device kept sending for {now - start:.1f} s ({discarded} "
                                  f"bytes); no quiet gap of {quiet} s to resynchronise on")
            chunk = self.transport.read(4096, min(0.02, quiet - (now - last)))
            if chunk:
                discarded += len(chunk)
                last = time.monotonic()
        self._set_decoder(self._decoder_payload())
        return discarded

    def _decoder_payload(self) -> int:
        if self._info is None:
            return INFO_BYTES
        return max(INFO_BYTES, ERROR_BYTES, BENCH_REPORT_BYTES, self._info.result_bytes)

    # -- handshake -------------------------------------------------------------------------------

    @property
    def info(self) -> DeviceInfo:
        """The device's INFO (after :meth:`connect`)."""
        if self._info is None:
            raise DriverError("not connected: call connect() first")
        return self._info

    def connect(self) -> DeviceInfo:
        """Quiet line, HELLO, INFO; check the protocol version and the model."""
        self._drain()
        info = self.hello()
        if self.model is not None:
            expected = self.model.content_hash
            if info.model_hash.hex() != expected:
                raise ModelMismatch(expected, info.model_hash.hex())
            if (info.n0, info.classes) != (self.model.in_features, self.model.classes):
                raise DeviceError(f"the device takes {info.n0} pixels and gives {info.classes} "
                                  f"classes, the model {self.model.in_features} and "
                                  f"{self.model.classes}")
        self._info = info
        self._set_decoder(self._decoder_payload())
        return info

    def hello(self) -> DeviceInfo:
        """Send HELLO and return the device's INFO (retried like a frame)."""
        timeout = self.reply_timeout()
        waited = 0.0
        attempts = self.retries + 1
        faults = []
        for _ in range(attempts):
            id = self._new_id(())
            self.transport.write(encode_hello(id))
            sent = time.monotonic()
            deadline = sent + timeout
            fault = "timeout"
            while time.monotonic() < deadline:
                packets, skipped = self._receive(deadline)
                for p in packets:
                    if not p.crc_ok:
                        fault = "reply_bad_crc"
                        break
                    if p.cmd == Command.INFO and p.id == id:
                        return self._parse_info(p.payload)
                    self.errors["stray_reply"] += 1
                else:
                    if skipped:
                        fault = "reply_garbage"
                if fault != "timeout":
                    break
            waited = time.monotonic() - sent
            self.errors[fault] += 1
            faults.append(fault)
            self._retired.append(id)
            self._drain()
        cls = DeviceTimeout if fault == "timeout" else FrameFailed
        raise cls(
            f"no INFO reply to HELLO (last id {id:#04x}) in {attempts} attempts (faults: "
            f"{', '.join(faults)}); waited {waited:.2f} s (timeout {timeout} s) on "
            f"{self.transport.describe()}: is the device an xnorflow accelerator, powered, and "
            "on this port at this baud rate?",
            frame=None, id=id, attempts=attempts, waited=waited)

    @staticmethod
    def _parse_info(payload: bytes) -> DeviceInfo:
        version_at = InfoPayload.as_shape()["version"].offset // 8
        if len(payload) > version_at and payload[version_at] != PROTOCOL_VERSION:
            raise ProtocolVersionError(f"the device speaks protocol version "
                                       f"{payload[version_at]}, this driver version "
                                       f"{PROTOCOL_VERSION}")
        if len(payload) != INFO_BYTES:
            raise DeviceError(f"INFO of {len(payload)} bytes, the protocol's is {INFO_BYTES}")
        return DeviceInfo.from_payload(payload)

    # -- inference -------------------------------------------------------------------------------

    def _window(self) -> int:
        k = self.info.capacity
        return k if self._max_in_flight is None else min(k, self._max_in_flight)

    def check_frames(self, frames) -> np.ndarray:
        """Frames as ``uint8 (B, N0)``: ``(B, N0)``, ``(N0,)`` or ``(B, *input_shape)`` of
        integers in [0, 255]; :class:`FrameError` otherwise."""
        n0 = self.info.n0
        x = np.asarray(frames)
        if x.ndim == 1:
            x = x[None, :]
        elif x.ndim > 2 and int(np.prod(x.shape[1:])) == n0:
            x = x.reshape(len(x), n0)
        if x.ndim != 2 or x.shape[1] != n0:
            raise FrameError(f"frames must have shape (B, {n0}) (or ({n0},), or (B, H, W) with "
                             f"H*W = {n0}): the device takes {n0} pixels; got {x.shape}")
        if x.dtype == np.uint8:
            return np.ascontiguousarray(x)
        if x.dtype == np.bool_ or not np.issubdtype(x.dtype, np.integer):
            raise FrameError(f"frames must be integer pixels in [0, 255], got dtype {x.dtype}")
        if x.size and (x.min() < 0 or x.max() > 255):
            bad = np.argwhere((x < 0) | (x > 255))[0]
            raise FrameError(f"pixel out of range [0, 255]: frame {bad[0]}, pixel {bad[1]} = "
                             f"{int(x[tuple(bad)])}")
        return np.ascontiguousarray(x.astype(np.uint8))

    def infer(self, frames, labels=None,
              progress: Callable[[int, int], None] | None = None) -> InferenceReport:
        """Run ``frames`` (see :meth:`check_frames`) on the device; ``labels`` (B,) adds the
        accuracy; ``progress(done, total)`` is called after each result."""
        x = self.check_frames(frames)
        n = len(x)
        y = None
        if labels is not None:
            y = np.asarray(labels)
            if y.shape != (n,) or not np.issubdtype(y.dtype, np.integer):
                raise FrameError(f"labels must be {n} integers (one per frame), got "
                                 f"{y.dtype} {y.shape}")
        if self._dirty:  # a call that failed may have left replies coming
            self._drain()
            self._dirty = False
        transfer = _Transfer(self, x, progress)
        start = time.perf_counter()
        try:
            results = transfer.run() if n else []
        except BaseException:
            # Whatever is outstanding is given up on: late replies to it are stale.
            self._retired.extend(transfer.outstanding)
            self._dirty = True
            self.errors.update(transfer.errors)
            raise
        wall = time.perf_counter() - start
        info = self.info
        predictions = np.array([r.index for r in results], dtype=np.int64)
        scores = None
        if info.with_scores:
            scores = np.array([r.scores for r in results], dtype=np.int64).reshape(
                n, info.classes)
        accuracy = None
        if y is not None and n:
            accuracy = float((predictions == y.astype(np.int64)).mean())
        self.errors.update(transfer.errors)
        return InferenceReport(
            predictions=predictions, scores=scores, frames=n, accuracy=accuracy,
            frames_per_s=n / wall if wall > 0 else 0.0, wall_s=wall,
            errors=dict(sorted(transfer.errors.items())),
            retries=sum(transfer.attempts) - n, in_flight=self._window(),
            discarded_bytes=transfer.discarded)


    # -- the on-device benchmark -----------------------------------------------------------------

    def bench(self, frames, repeat: int, *, network=None, timeout: float | None = None,
              loads: int = 3) -> BenchMeasurement:
        """The on-device benchmark (protocol docstring, On-device benchmark): store ``frames``
        (F of them, 1 to the device's capacity K; see :meth:`check_frames`) in the device's
        frame buffers by running them as FRAMEs one at a time (so that they are committed in
        order, each once: a load that needed a retry is done again, up to ``loads`` times), then
        BENCH: the device replays them ``repeat`` times (1 to
        :data:`~xnorflow.hw.tops.protocol.MAX_BENCH_REPEAT`) at the accelerator's own rate and
        reports the cycles and the checksum of the results.

        The expected checksum is computed from the golden model's results when the driver has a
        model (``expected_from = "golden"``), else from the RESULTs of the loads (``"device"``).
        ``network``: anything with the network's ``latency``, ``ii`` and ``beats_per_frame``
        (a :class:`~xnorflow.hw.tops.network.Network` of the device's model and folding), for
        the prediction. ``timeout``: seconds to wait for the REPORT (None: the reply timeout
        plus the predicted cycles, or 10,000 cycles per replayed frame without a prediction, at
        the transport's ``min_cycles_per_s``). Raises :class:`BenchRefused` on an ERROR reply (the
        message names the problem), :class:`DeviceTimeout` without a REPORT, and
        :class:`DeviceError` when the device has no BENCH."""
        info = self.info
        if not info.bench:
            raise DeviceError("the device does not take BENCH (its INFO has no BENCH flag): "
                              "build its bitstream with the on-device benchmark (protocol "
                              f"version {PROTOCOL_VERSION})")
        x = self.check_frames(frames)
        count = len(x)
        if not 1 <= count <= info.capacity:
            raise ValueError(f"frames: {count} given; the device stores 1 to {info.capacity} "
                             f"(its frame buffers, K = {info.capacity})")
        if not isinstance(repeat, int) or isinstance(repeat, bool) \
                or not 1 <= repeat <= MAX_BENCH_REPEAT:
            raise ValueError(f"repeat ({repeat!r}) must be an integer in [1, "
                             f"{MAX_BENCH_REPEAT}]")
        if not isinstance(loads, int) or loads < 1:
            raise ValueError(f"loads ({loads!r}) must be a positive integer")
        window = self._max_in_flight
        self._max_in_flight = 1
        try:
            for _ in range(loads):
                loaded = self.infer(x)
                if loaded.retries == 0:
                    break
            else:
                raise DeviceError(f"loading {count} frames needed retries {loads} times in a "
                                  "row: the frames stored are not known to be the ones sent")
        finally:
            self._max_in_flight = window
        if self.model is not None:
            from xnorflow.golden import GoldenModel

            golden = GoldenModel(self.model).run(x)
            indexes, scores, source = golden.classes, golden.scores, "golden"
        else:
            indexes, scores, source = loaded.predictions, loaded.scores, "device"
        block = b"".join(result_word_bytes(indexes[k], () if scores is None else scores[k], info)
                         for k in range(count))
        expected = bench_checksum(block, repeat)

        predicted = period = None
        if network is not None:
            period = max(network.ii, network.beats_per_frame)
            predicted = bench_cycles(network.latency, network.ii, network.beats_per_frame,
                                     count, repeat)
        if timeout is None:
            cycles = 10_000 * count * repeat if predicted is None else predicted
            timeout = self.reply_timeout() + cycles / self.transport.min_cycles_per_s
        id = self._new_id(())
        start = time.monotonic()
        self.transport.write(encode_bench(id, count, repeat))
        deadline = start + timeout
        self._dirty = True
        report = None
        while report is None:
            if time.monotonic() >= deadline:
                self._retired.append(id)
                raise DeviceTimeout(f"no REPORT for BENCH (id {id:#04x}, {count} frames x "
                                    f"{repeat}) within {timeout:.1f} s on "
                                    f"{self.transport.describe()}",
                                    frame=None, id=id, attempts=1, waited=timeout)
            packets, _ = self._receive(deadline)
            for p in packets:
                if p.id != id or not p.crc_ok:
                    self.errors["stray_reply" if p.crc_ok else "reply_bad_crc"] += 1
                    continue
                if p.cmd == Command.ERROR and len(p.payload) == ERROR_BYTES:
                    self._dirty = False
                    raise self._bench_refused(ErrorReply.from_payload(p.payload), count, repeat)
                if p.cmd != Command.REPORT or len(p.payload) != BENCH_REPORT_BYTES:
                    raise DeviceError(f"BENCH (id {id:#04x}) answered by command {p.cmd!r} "
                                      f"with {len(p.payload)} bytes, not a REPORT")
                report = BenchResult.from_payload(p.payload)
        wall = time.monotonic() - start
        self._dirty = False
        if (report.frames, report.repeat) != (count, repeat):
            raise DeviceError(f"the REPORT is for {report.frames} frames x {report.repeat}, "
                              f"the BENCH asked {count} x {repeat}")
        return BenchMeasurement(
            frames=count, repeat=repeat, cycles=report.cycles, checksum=report.checksum,
            expected_checksum=expected, expected_from=source, clock_hz=report.clock_hz,
            predicted_cycles=predicted, period_cycles=period, wall_s=wall)

    def _bench_refused(self, error: ErrorReply, count: int, repeat: int) -> BenchRefused:
        code = error.code
        what = {
            ErrorCode.BAD_BENCH: f"frames ({count}) or repeat ({repeat}) out of range: frames "
                                 f"must be 1 to the device's capacity ({self.info.capacity}) "
                                 "and at most the frames it has stored since reset, repeat 1 "
                                 f"to {MAX_BENCH_REPEAT}",
            ErrorCode.BUSY: "the device is busy: frames still outstanding or a BENCH run not "
                            "yet reported",
            ErrorCode.BAD_LENGTH: "the device took the BENCH packet's length for a wrong one",
            ErrorCode.UNKNOWN_CMD: "the device does not know BENCH",
        }.get(code, "")
        name = code.name if isinstance(code, ErrorCode) else f"code {code}"
        return BenchRefused(f"the device refused BENCH ({count} frames x {repeat}) with ERROR "
                            f"{name}" + (f": {what}" if what else ""), code)


class _Transfer:
    """One :meth:`Accelerator.infer` call: the window, the matching and the retry policy."""

    def __init__(self, acc: Accelerator, frames: np.ndarray, progress):
        self.acc, self.frames, self.progress = acc, frames, progress
        self.info = acc.info
        self.n = len(frames)
        self.window = acc._window()
        self.timeout = acc.reply_timeout()
        self.queue = list(range(self.n))  # a heap: the lowest frame index is sent first
        self.outstanding: dict[int, _InFlight] = {}  # by id, in send order
        self.results: list[Result | None] = [None] * self.n
        self.attempts = [0] * self.n
        self.faults = [0] * self.n
        self.history: list[list[str]] = [[] for _ in range(self.n)]
        self.errors: Counter = Counter()
        self.discarded = 0  # bytes thrown away while resynchronising
        self.done = 0
        self.last_reply = time.monotonic()

    def run(self) -> list[Result]:
        while self.done < self.n:
            try:
                self._step()
            except _Resync:
                continue
        return self.results

    def _step(self):
        while self.queue and len(self.outstanding) < self.window:
            self._send(heapq.heappop(self.queue))
        oldest = next(iter(self.outstanding.values()))
        since = max(oldest.sent_at, self.last_reply)
        deadline = since + self.timeout
        if time.monotonic() >= deadline:
            waited = time.monotonic() - since
            self._fault(oldest, "timeout",
                        f"no reply within {self.timeout} s (waited {waited:.2f} s)",
                        waited=waited)
            self._resync(None)
        packets, skipped = self.acc._receive(deadline)
        for packet in packets:
            self._handle(packet)
        if skipped:
            self._resync("reply_garbage", f"{skipped} bytes outside any packet")

    def _send(self, frame: int):
        id = self.acc._new_id(self.outstanding)
        self.acc.transport.write(encode_packet(Command.FRAME, id, self.frames[frame].tobytes()))
        self.outstanding[id] = _InFlight(frame, id, time.monotonic())
        self.attempts[frame] += 1

    def _describe(self, f: _InFlight) -> str:
        return (f"frame {f.frame} (FRAME id {f.id:#04x}, attempt {self.attempts[f.frame]} of "
                f"{self.acc.retries + 1})")

    def _fault(self, f: _InFlight, kind: str, detail: str, *, waited: float | None = None):
        """Count a fault of ``f``'s frame; fail the call when it has had too many."""
        self.errors[kind] += 1
        self.faults[f.frame] += 1
        self.history[f.frame].append(kind)
        if self.faults[f.frame] > self.acc.retries:
            cls = DeviceTimeout if kind == "timeout" else FrameFailed
            raise cls(f"{self._describe(f)}: {detail}; giving up after "
                      f"{self.attempts[f.frame]} attempts (faults: "
                      f"{', '.join(self.history[f.frame])}) on {self.acc.transport.describe()}",
                      frame=f.frame, id=f.id, attempts=self.attempts[f.frame], waited=waited)

    def _retry(self, f: _InFlight, kind: str, detail: str):
        """``f`` will get no RESULT: send its frame again."""
        del self.outstanding[f.id]
        self.acc._retired.append(f.id)
        self._fault(f, kind, detail)
        heapq.heappush(self.queue, f.frame)

    def _resync(self, kind: str | None, detail: str = ""):
        """Quiet line, fresh decoder, every outstanding frame sent again; raises _Resync. The
        oldest outstanding frame takes the fault of ``kind`` (None: counted already)."""
        victims = list(self.outstanding.values())
        if kind is not None:
            if victims:
                self._fault(victims[0], kind, detail)
            else:
                self.errors[kind] += 1
        self.errors["resync"] += 1
        self.acc._retired.extend(self.outstanding)
        self.outstanding.clear()
        for f in victims:
            heapq.heappush(self.queue, f.frame)
        self.discarded += self.acc._drain()
        self.last_reply = time.monotonic()
        raise _Resync

    def _handle(self, p: Packet):
        if not p.crc_ok:
            self._resync("reply_bad_crc", f"a reply (cmd {p.cmd!r}, id {p.id}) with a bad crc")
        f = self.outstanding.get(p.id)
        if f is None and p.id in self.acc._retired:
            self.errors["stale_reply"] += 1  # for a request given up on: never used
            return
        if p.cmd == Command.RESULT:
            if f is None:
                self._resync("reply_unexpected_id",
                             f"a RESULT with id {p.id:#04x}, which no outstanding FRAME has")
            if len(p.payload) != self.info.result_bytes:
                self._resync("reply_bad_length", f"a RESULT of {len(p.payload)} bytes, "
                             f"expected {self.info.result_bytes}")
            try:
                result = Result.from_payload(p.payload, self.info)
            except ProtocolError as exc:
                self._resync("reply_bad_status", str(exc))
            # RESULTs come in FRAME order and ERRORs overtake them: frames sent before this one
            # without a reply yet were lost on the way.
            for older in list(self.outstanding.values()):
                if older.id == p.id:
                    break
                self._retry(older, "no_reply", f"no reply, while the later {self._describe(f)} "
                            "got its RESULT")
            del self.outstanding[p.id]
            self.last_reply = time.monotonic()
            if result.status & ResultStatus.FRAME_ERROR:
                raise DeviceError(f"the device reports FRAME_ERROR in the RESULT of "
                                  f"{self._describe(f)}: its results may be misaligned; "
                                  "reset the device")
            if result.status & ResultStatus.LINE_ERROR:
                self.errors["line_error"] += 1
            if result.status & ResultStatus.REPLY_DROPPED:
                self.errors["reply_dropped"] += 1
            self.results[f.frame] = result
            self.done += 1
            if self.progress is not None:
                self.progress(self.done, self.n)
        elif p.cmd == Command.ERROR:
            if len(p.payload) != ERROR_BYTES:
                self._resync("reply_bad_length", f"an ERROR of {len(p.payload)} bytes")
            error = ErrorReply.from_payload(p.payload)
            if f is None:
                self.errors["stray_error"] += 1  # noise the device answered; not ours
                return
            self.last_reply = time.monotonic()
            code = error.code.name.lower() if isinstance(error.code, ErrorCode) \
                else f"code_{error.code}"
            self._retry(f, f"device_{code}", f"the device answered ERROR {code.upper()}")
        elif p.cmd == Command.INFO:
            if f is not None:
                self._resync("reply_unexpected_id",
                             f"an INFO with id {p.id:#04x}, which is an outstanding FRAME's")
            self.errors["stray_info"] += 1
        else:
            self._resync("reply_unknown_cmd", f"a reply with command {p.cmd!r}")


# --- xnorflow run ---------------------------------------------------------------------------------


def connect(open_at: Callable[[int], Transport], baud: int | None = None, *,
            rates=PROBE_BAUDS, model=None, timeout: float | None = None,
            probe_timeout: float = PROBE_TIMEOUT) -> Accelerator:
    """A connected :class:`Accelerator` on the transport ``open_at(rate)`` opens (e.g.
    ``lambda rate: SerialTransport(port, rate)``): at ``baud``, or, with ``baud`` None, at the
    first of ``rates`` at which one HELLO gets an INFO within ``probe_timeout`` seconds (see the
    module docstring). The transports of the rates that got no answer are closed; the caller
    closes the returned accelerator's ``transport``. Raises :class:`DeviceTimeout` naming every
    rate tried when none answered; a device that answers but holds another model raises
    :class:`ModelMismatch` at once."""
    if baud is not None:
        rates, probe_timeout = (baud,), None
    tried = []
    for rate in rates:
        transport = open_at(rate)
        try:
            if probe_timeout is not None:
                probe = Accelerator(transport, timeout=probe_timeout, retries=0, connect=False)
                try:
                    probe.hello()
                except FrameFailed as exc:    # nothing, or garbage, at this rate
                    what = "no reply" if isinstance(exc, DeviceTimeout) else "garbage"
                    tried.append(f"{rate:,} ({what})")
                    transport.close()
                    continue
            return Accelerator(transport, model=model, timeout=timeout)
        except BaseException:
            transport.close()
            raise
    raise DeviceTimeout(f"no INFO reply to HELLO at any bit rate tried: {', '.join(tried)} "
                        f"baud; is the device an xnorflow accelerator, powered, and on this "
                        f"port? (give its rate with --baud if it is another)",
                        frame=None, id=None, attempts=len(tried))


def _info_dict(info: DeviceInfo) -> dict:
    return {
        "version": info.version, "capacity": info.capacity, "n0": info.n0,
        "classes": info.classes, "with_scores": info.with_scores,
        "signed_scores": info.signed_scores, "score_bits": info.score_bits,
        "gap_bits": info.gap_bits, "clk_hz": info.clk_hz, "divisor": info.divisor,
        "baud": round(info.baud, 3), "model_hash": info.model_hash.hex(),
        "link_frames_per_s": round(info.frames_per_second, 3), "bench": info.bench,
    }


def run_accelerator(model_path, *, port: str | None = None, baud: int | None = None,
                    sim: bool = False, data=None, frames: int = 100, folding=None,
                    progress: Callable[[int, int], None] | None = None,
                    timeout: float | None = None, build_root=None) -> dict:
    """``xnorflow run``: ``frames`` test frames of ``data`` (None or ``"embedded"``: the
    embedded subset; a directory of MNIST IDX files), spread evenly over the test split, through
    the accelerator on a board (``port``; ``baud``, None: found by :func:`connect`) or in the
    simulator (``sim=True``, with
    ``folding``: None, a folding file, its JSON object or a Folding), checked against the golden
    model. Returns a JSON-ready dict: ``frames``, ``accuracy``, ``golden_accuracy``,
    ``golden_agreement`` (fraction of predictions equal to the golden model's),
    ``scores_agreement`` (with scores), ``frames_per_s``, ``errors``, ``retries``,
    ``predictions``, ``labels``, ``model_hash``, ``transport``, ``device_info`` and, in the
    simulator, ``sim`` (the session's statistics)."""
    from xnorflow.data import load
    from xnorflow.golden import GoldenModel

    if sim == (port is not None):
        raise ValueError("give either a port (a board) or sim=True (the simulator), not "
                         f"{'both' if sim else 'neither'}")
    if folding is not None and not sim:
        raise ValueError("folding applies to the simulator only; a board runs the bitstream "
                         "it was programmed with")
    if not isinstance(frames, int) or isinstance(frames, bool) or frames < 1:
        raise ValueError(f"frames ({frames!r}) must be a positive integer")
    model = _load_model(model_path)
    dataset = load(data, "test").spread(frames)
    x, y = dataset.frames_for(model.input_shape), dataset.labels
    golden = GoldenModel(model).run(x)
    acc, device = _connect_to(model, port=port, baud=baud, sim=sim, folding=folding,
                              timeout=timeout, build_root=build_root)
    transport = acc.transport
    with transport:
        report = acc.infer(x, y, progress)
        info = acc.info
    out = {
        "frames": report.frames,
        "accuracy": report.accuracy,
        "golden_accuracy": float((golden.classes == y).mean()),
        "golden_agreement": float((report.predictions == golden.classes).mean()),
        "frames_per_s": round(report.frames_per_s, 3),
        "wall_s": round(report.wall_s, 3),
        "errors": report.errors,
        "retries": report.retries,
        "in_flight": report.in_flight,
        "discarded_bytes": report.discarded_bytes,
        "predictions": report.predictions.tolist(),
        "labels": y.astype(np.int64).tolist(),
        "model_hash": model.content_hash,
        "transport": transport.describe(),
        "device_info": _info_dict(info),
        "data": dataset.name,
    }
    if report.scores is not None:
        out["scores_agreement"] = float((report.scores == golden.scores).all(axis=1).mean())
    if device is not None:
        out["sim"] = {**(transport.stats or {}), "build_dir": str(device.build_dir),
                      "build_cached": device.cached, "verilog_sha256": device.verilog_sha256}
    return out


def _connect_to(model, *, port, baud, sim, folding, timeout, build_root):
    """``(Accelerator, SimDevice or None)``: :func:`connect` to the board on ``port`` (at
    ``baud``, None: found by HELLO) or, with ``sim``, to a simulated board of ``model`` and
    ``folding`` (at its own rate unless ``baud`` is given)."""
    device = None
    if sim:
        device = build_sim_device(model, folding, build_root=build_root)

        def open_at(rate):
            return SimTransport(device, baud=rate)

        rate = device.info.clk_hz // device.info.divisor if baud is None else baud
    else:
        def open_at(rate):
            return SerialTransport(port, rate)

        rate = baud
    return connect(open_at, rate, model=model, timeout=timeout), device


def bench_accelerator(model_path, *, port: str | None = None, baud: int | None = None,
                      sim: bool = False, data=None, frames: int | None = None,
                      repeat: int = 200, folding=None, timeout: float | None = None,
                      build_root=None) -> dict:
    """``xnorflow run --bench``: the on-device benchmark (:meth:`Accelerator.bench`) of
    ``frames`` test frames of ``data`` (None: the device's capacity K), replayed ``repeat`` times,
    on a board (``port``) or in the simulator (``sim=True``); the checksum checked against the
    golden model. The prediction comes from the network of the model with ``folding`` (None:
    the default folding; on a board give the folding of its bitstream). Returns a JSON-ready
    dict: :meth:`BenchMeasurement.to_dict`, ``ii_cycles``, ``latency_cycles``,
    ``beats_per_frame``, ``folding`` ("given" or "default"), ``model_hash``, ``transport``,
    ``device_info``, ``data`` and, in the simulator, ``sim`` (the session's statistics; the
    clock is then the simulated network clock)."""
    from xnorflow.data import load
    from xnorflow.sim.board import _load_folding

    if sim == (port is not None):
        raise ValueError("give either a port (a board) or sim=True (the simulator), not "
                         f"{'both' if sim else 'neither'}")
    if frames is not None and (not isinstance(frames, int) or isinstance(frames, bool)
                               or frames < 1):
        raise ValueError(f"frames ({frames!r}) must be a positive integer")
    model = _load_model(model_path)
    network = NetworkTiming.of(model, _load_folding(folding, model))
    acc, device = _connect_to(model, port=port, baud=baud, sim=sim, folding=folding,
                              timeout=timeout, build_root=build_root)
    transport = acc.transport
    with transport:
        info = acc.info
        count = info.capacity if frames is None else frames
        dataset = load(data, "test").spread(count)
        x = dataset.frames_for(model.input_shape)
        measured = acc.bench(x, repeat, network=network)
    out = {
        **measured.to_dict(),
        "ii_cycles": network.ii, "latency_cycles": network.latency,
        "beats_per_frame": network.beats_per_frame,
        "folding": "default" if folding is None else "given",
        "model_hash": model.content_hash, "transport": transport.describe(),
        "device_info": _info_dict(info), "data": dataset.name,
    }
    if device is not None:
        out["sim"] = {**(transport.stats or {}), "build_dir": str(device.build_dir),
                      "build_cached": device.cached, "verilog_sha256": device.verilog_sha256}
    return out

"""The host driver: frames to the accelerator over a transport, results back, nothing lost.

The driver speaks the protocol of :mod:`xnorflow.hw.tops.protocol` (packets built and parsed only with
that module's definitions) over a :class:`Transport`, an abstract byte pipe. The same
:class:`Accelerator` code runs against

* :class:`SerialTransport`: a board's USB serial port through pyserial (or any pyserial URL:
  ``socket://host:port``, ``loop://``, ``rfc2217://...``);
* :class:`SimTransport`: the generated :class:`~xnorflow.hw.tops.bridge.SerialBridge` (UART, packet
  engine, frame buffers and the network of a model) compiled with Verilator and run under cocotb,
  its ``rx``/``tx`` pins driven and decoded bit by bit by the testbench
  :mod:`xnorflow.sim.tb_uart_bridge`, which carries the bytes to and from this process over a
  TCP connection on 127.0.0.1. Only the wire is simulated: every byte the driver writes crosses
  the bridge's real UART receiver.

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
    :func:`build_sim_device` generates the bridge for a model and folding and builds it with
    Verilator once per Verilog text: ``<build root>/uart-bridge-verilator-<16 hex digits of the
    Verilog's SHA-256>/`` (build root: the argument, else ``$XNORFLOW_SIM_CACHE``, else
    ``~/.cache/xnorflow/sim``), under a file lock. Every :class:`SimTransport` on a
    :class:`SimDevice` is a fresh simulation (reset device) of that build in a process group of
    its own (``python -m xnorflow.sim.tb_uart_bridge``, which runs cocotb's runner, which runs
    the simulator): closing the transport closes the socket, the testbench sees the end of file
    and finishes, and the process is waited for (killed, with its group, after
    ``close_timeout``). The simulated device runs at ``clk_hz`` (1 MHz) with ``divisor`` (4)
    cycles per bit, so INFO reports 250,000 baud, and a FRAME of an MNIST model takes
    ``10 * 4 * 790`` = 31,600 cycles on the line. Measured on a shared 2-core machine: about
    150,000 to 250,000 simulated cycles per second, so 4 to 8 frames/s through the bit-level
    UART (the simulated link itself would carry 31.6); a session starts in about a second.

:func:`run_accelerator` is the body of ``xnorflow run``: a model file, a board port or the
simulator, test frames, and a JSON-ready report.
"""

from __future__ import annotations

import abc
import contextlib
import fcntl
import hashlib
import heapq
import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import weakref
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from xnorflow.hw.tops.protocol import (
    BITS_PER_BYTE,
    ERROR_BYTES,
    HEADER_BYTES,
    INFO_BYTES,
    OVERHEAD,
    PROTOCOL_VERSION,
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
    encode_hello,
    encode_packet,
    from_bytes,
)

__all__ = [
    "SIM_TOP",
    "Accelerator",
    "DeviceError",
    "DeviceTimeout",
    "DriverError",
    "FrameError",
    "FrameFailed",
    "InferenceReport",
    "ModelMismatch",
    "ProtocolVersionError",
    "SerialTransport",
    "SimDevice",
    "SimTransport",
    "Transport",
    "TransportError",
    "build_sim_device",
    "run_accelerator",
]

#: Verilog module name of the simulated bridge.
SIM_TOP = "uart_bridge"
#: The cocotb testbench of :class:`SimTransport`.
SIM_TESTBENCH = "xnorflow.sim.tb_uart_bridge"
_CACHE_ENV = "XNORFLOW_SIM_CACHE"
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


class FrameError(ValueError):
    """Frames (or labels) the device cannot take: wrong shape, not 8-bit pixels."""


# --- Transports -----------------------------------------------------------------------------------


class Transport(abc.ABC):
    """A byte pipe to a device (see the module docstring for the contract)."""

    #: Longest wait for one reply, in seconds (None: the driver derives it from the link rate).
    reply_timeout: float | None = None
    #: Quiet time after which nothing more is coming, in seconds (None: derived likewise).
    resync_quiet: float | None = None

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


# --- Simulated device -----------------------------------------------------------------------------


def _default_build_root() -> Path:
    if os.environ.get(_CACHE_ENV):
        return Path(os.environ[_CACHE_ENV])
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "xnorflow" / "sim"


@dataclass(frozen=True)
class SimDevice:
    """A :class:`~xnorflow.hw.tops.bridge.SerialBridge` compiled for Verilator (see
    :func:`build_sim_device`); any number of :class:`SimTransport` sessions run on it."""

    sim_build: Any  #: :class:`xnorflow.sim.runner.SimBuild`
    info: DeviceInfo  #: what its INFO reply says
    verilog_sha256: str
    quiet_cycles: int  #: both lines this quiet: nothing can happen until the next byte
    period_ps: int  #: clock period
    cached: bool  #: the build existed already
    build_seconds: float

    @property
    def build_dir(self) -> Path:
        return self.sim_build.build_dir


def _load_model(model):
    from xnorflow.model import Model

    return model if isinstance(model, Model) else Model.load(model)


def _load_folding(folding, model):
    from xnorflow.hw.compiler import Folding

    if folding is None or isinstance(folding, Folding):
        return folding
    if isinstance(folding, dict):
        return Folding.from_dict(folding, model.layers)
    return Folding.load(folding, model.layers)


def build_sim_device(model, folding=None, *, with_scores: bool = True,
                     clk_hz: int = 1_000_000, divisor: int = 4, gap_bits: int = 1000,
                     slots: int = 2, build_root=None) -> SimDevice:
    """Generate the serial bridge of ``model`` (a Model or a model file) with ``folding`` (None:
    the default; a Folding, its JSON object or a folding file) and build it for Verilator, or
    reuse the build of the same Verilog (see the module docstring). ``clk_hz`` must be a
    multiple of ``divisor``, its period a whole, even number of picoseconds."""
    from xnorflow.hw.build.verilog import write_verilog
    from xnorflow.hw.tops.bridge import SerialBridge
    from xnorflow.hw.tops.network import Network
    from xnorflow.sim.runner import build

    model = _load_model(model)
    if not isinstance(divisor, int) or isinstance(divisor, bool) or divisor < 4:
        raise ValueError(f"divisor ({divisor!r}) must be an integer of at least 4")
    if not isinstance(clk_hz, int) or clk_hz < 1 or clk_hz % divisor \
            or 10**12 % clk_hz or (10**12 // clk_hz) % 2:
        raise ValueError(f"clk_hz ({clk_hz!r}) must be a multiple of the divisor ({divisor}) "
                         "with a period of an even number of picoseconds (e.g. 1000000)")
    network = Network(model, _load_folding(folding, model), with_scores=with_scores)
    bridge = SerialBridge(network, clk_hz=clk_hz, baud=clk_hz // divisor, gap_bits=gap_bits,
                          slots=slots)
    assert bridge.divisor == divisor
    with tempfile.TemporaryDirectory(prefix="xnorflow-bridge-") as tmp:
        text = write_verilog(bridge, tmp, name=SIM_TOP).read_text()
    digest = hashlib.sha256(text.encode()).hexdigest()
    root = Path(build_root) if build_root is not None else _default_build_root()
    build_dir = root / f"uart-bridge-verilator-{digest[:16]}"
    build_dir.mkdir(parents=True, exist_ok=True)
    source = build_dir / f"{SIM_TOP}.v"
    with open(build_dir / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        cached = source.is_file() and source.read_text() == text \
            and (build_dir / SIM_TOP).is_file()  # the simulator's executable
        if not (source.is_file() and source.read_text() == text):
            source.write_text(text)
        start = time.monotonic()
        sim_build = build([source], toplevel=SIM_TOP, build_dir=build_dir)
        seconds = time.monotonic() - start
    # Both lines quiet this long: any packet in progress has timed out (gap), every frame held
    # has been computed (latency plus the frames ahead of it) and its reply has been sent.
    engine = bridge.engine
    quiet = 2 * (engine.gap_cycles + bridge.result_latency
                 + (slots + 1) * max(network.ii, network.beats_per_frame)) + 100
    return SimDevice(sim_build, bridge.info, digest, quiet, 10**12 // clk_hz, cached, seconds)


def _terminate_group(proc: subprocess.Popen) -> None:
    """Stop a session process that is still running, with its process group (the runner and
    the simulator it started), and reap it."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(5.0)


def _tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"(no log at {path})"


class SimTransport(Transport):
    """A simulated board: the bridge of :class:`SimDevice` ``device`` (or of a model, built with
    :func:`build_sim_device` and the keyword arguments ``folding``, ``with_scores``,
    ``build_root``) in Verilator, its UART pins driven bit by bit, reached over TCP on 127.0.0.1.

    The constructor listens on an ephemeral port of 127.0.0.1, starts the session process and
    waits (``start_timeout``) for the testbench to connect; the device has just come out of
    reset. :meth:`close` ends the simulation (see the module docstring); afterwards
    :attr:`stats` holds the testbench's summary (simulated cycles, wall time, simulated cycles
    per second while active, bytes each way). The run's files stay in :attr:`run_dir` when the
    session failed or ``keep_logs`` is set.

    ``reply_timeout`` and ``resync_quiet`` are the hints for the driver (the simulator is slower
    than the device it simulates; see :class:`Transport`).
    """

    _sessions = itertools.count()

    def __init__(self, device, *, folding=None, with_scores: bool = True, build_root=None,
                 start_timeout: float = 180.0, close_timeout: float = 30.0,
                 max_wall_s: float = 86400.0, poll_cycles: int = 64,
                 reply_timeout: float = 30.0, resync_quiet: float = 1.0,
                 write_timeout: float = 60.0, keep_logs: bool = False):
        if not isinstance(device, SimDevice):
            device = build_sim_device(device, folding, with_scores=with_scores,
                                      build_root=build_root)
        elif folding is not None:
            raise ValueError("folding applies when SimTransport builds the device; this "
                             "SimDevice is built already")
        self.device = device
        self.reply_timeout = reply_timeout
        self._resync_quiet = resync_quiet
        self._written = False
        self.close_timeout = close_timeout
        self.write_timeout = write_timeout
        self.keep_logs = keep_logs
        self.stats: dict | None = None
        self._closed = False
        self._sock: socket.socket | None = None
        self._proc: subprocess.Popen | None = None
        self.run_name = f"session-{os.getpid()}-{next(self._sessions)}"
        self.run_dir = device.build_dir / "runs" / self.run_name
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._summary = self.run_dir / "summary.json"
        self._summary.unlink(missing_ok=True)
        self._child_log = self.run_dir / "session.log"
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            listener.bind(("127.0.0.1", 0))
            listener.listen(1)
            listener.settimeout(0.25)
            port = listener.getsockname()[1]
            b = device.sim_build
            spec = {
                "build": {"simulator": b.simulator, "toplevel": b.toplevel,
                          "build_dir": str(b.build_dir),
                          "sources": [str(s) for s in b.sources]},
                "run_name": self.run_name,
                "params": {"port": port, "period_ps": device.period_ps,
                           "divisor": device.info.divisor,
                           "quiet_cycles": device.quiet_cycles, "poll_cycles": poll_cycles,
                           "connect_timeout_s": start_timeout, "max_wall_s": max_wall_s,
                           "summary": str(self._summary)},
            }
            with open(self._child_log, "w") as log:
                self._proc = subprocess.Popen(
                    [sys.executable, "-m", SIM_TESTBENCH, json.dumps(spec)],
                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                    start_new_session=True)
            self._finalizer = weakref.finalize(self, _terminate_group, self._proc)
            self._sock = self._accept(listener, start_timeout)
        except BaseException:
            if self._proc is not None:
                _terminate_group(self._proc)
            raise
        finally:
            listener.close()
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.started = time.monotonic()

    @property
    def resync_quiet(self) -> float:
        """``resync_quiet``; 0.1 s until the first write (a fresh device sends nothing)."""
        return self._resync_quiet if self._written else 0.1

    def _accept(self, listener: socket.socket, timeout: float) -> socket.socket:
        deadline = time.monotonic() + timeout
        while True:
            try:
                sock, _ = listener.accept()
                return sock
            except TimeoutError:
                pass
            if self._proc.poll() is not None:
                raise TransportError(
                    f"the simulation exited (status {self._proc.returncode}) before "
                    f"connecting; {self._logs()}")
            if time.monotonic() > deadline:
                raise TransportError(f"the simulation did not connect within {timeout} s; "
                                     f"{self._logs()}")

    def _logs(self) -> str:
        return (f"end of {self._child_log}:\n{_tail(self._child_log)}\nend of "
                f"{self.run_dir / 'run.log'}:\n{_tail(self.run_dir / 'run.log')}")

    def write(self, data: bytes) -> None:
        if self._closed:
            raise TransportError("write on a closed SimTransport")
        self._written = True
        self._sock.settimeout(self.write_timeout)
        try:
            self._sock.sendall(bytes(data))
        except TimeoutError as exc:
            raise TransportError(f"the simulation took no bytes for {self.write_timeout} s; "
                                 f"{self._logs()}") from exc
        except OSError as exc:
            raise TransportError(f"the simulation is gone ({exc}); {self._logs()}") from exc

    def read(self, n: int, timeout: float) -> bytes:
        if self._closed:
            raise TransportError("read on a closed SimTransport")
        deadline = time.monotonic() + max(0.0, timeout)
        buf = bytearray()
        while len(buf) < n:
            remaining = deadline - time.monotonic()
            self._sock.settimeout(max(remaining, 0.0) or 1e-6)
            try:
                chunk = self._sock.recv(n - len(buf))
            except TimeoutError:
                break
            except OSError as exc:
                raise TransportError(f"the simulation is gone ({exc}); "
                                     f"{self._logs()}") from exc
            if not chunk:
                raise TransportError(f"the simulation closed the connection; {self._logs()}")
            buf += chunk
        return bytes(buf)

    def close(self, *, check: bool = True) -> None:
        """End the session; with ``check``, raise :class:`TransportError` when the testbench
        failed or had to be killed."""
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()
        failure = None
        try:
            status = self._proc.wait(self.close_timeout)
        except subprocess.TimeoutExpired:
            _terminate_group(self._proc)
            status = self._proc.returncode
            failure = f"did not end within {self.close_timeout} s after the connection closed"
        self._finalizer.detach()
        if self._summary.is_file():
            self.stats = json.loads(self._summary.read_text())
            self.stats["session_wall_s"] = round(time.monotonic() - self.started, 3)
        if failure is None and status != 0:
            failure = f"failed (exit status {status})"
        if failure is None and not self.keep_logs:
            shutil.rmtree(self.run_dir, ignore_errors=True)
        if failure is not None and check:
            raise TransportError(f"the simulation session {self.run_name} {failure}; "
                                 f"{self._logs()}")

    def __exit__(self, exc_type, exc, tb):
        self.close(check=exc_type is None)
        return False

    def describe(self) -> str:
        info = self.device.info
        return (f"sim:verilator (SerialBridge at {info.clk_hz} Hz, divisor {info.divisor}, "
                f"{info.baud:.0f} baud)")


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
        return max(INFO_BYTES, ERROR_BYTES, self._info.result_bytes)

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


def _spread(count: int, total: int) -> np.ndarray:
    """``count`` indexes spread evenly over ``range(total)`` (the first ``count`` of a split
    ordered by class would all be one digit)."""
    if count >= total:
        return np.arange(total)
    return np.linspace(0, total - 1, count).round().astype(np.int64)


def _info_dict(info: DeviceInfo) -> dict:
    return {
        "version": info.version, "capacity": info.capacity, "n0": info.n0,
        "classes": info.classes, "with_scores": info.with_scores,
        "signed_scores": info.signed_scores, "score_bits": info.score_bits,
        "gap_bits": info.gap_bits, "clk_hz": info.clk_hz, "divisor": info.divisor,
        "baud": round(info.baud, 3), "model_hash": info.model_hash.hex(),
        "link_frames_per_s": round(info.frames_per_second, 3),
    }


def run_accelerator(model_path, *, port: str | None = None, baud: int = 115200,
                    sim: bool = False, data=None, frames: int = 100, folding=None,
                    progress: Callable[[int, int], None] | None = None,
                    timeout: float | None = None, build_root=None) -> dict:
    """``xnorflow run``: ``frames`` test frames of ``data`` (None or ``"embedded"``: the
    embedded subset; a directory of MNIST IDX files), spread evenly over the test split, through
    the accelerator on a board (``port``, ``baud``) or in the simulator (``sim=True``, with
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
    dataset = load(data, "test")
    index = _spread(frames, len(dataset))
    x, y = dataset.images[index], dataset.labels[index]
    golden = GoldenModel(model).run(x)
    device = None
    if sim:
        device = build_sim_device(model, folding, build_root=build_root)
        transport = SimTransport(device)
    else:
        transport = SerialTransport(port, baud)
    with transport:
        acc = Accelerator(transport, model=model, timeout=timeout)
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

"""The simulated board: the generated serial bridge of a model in Verilator, reached over TCP.

This is the simulation side of the host driver's simulated transport
(:class:`xnorflow.host.driver.SimTransport`, which is :class:`SimLink` as a driver
``Transport``): the driver code that talks to a board talks to this simulation unchanged.

:func:`build_sim_device` generates the :class:`~xnorflow.hw.tops.bridge.DualClockBridge` of a
model (the board tops' two clock domains: UART, packet engine and frame buffers in ``sync``, the
network in ``accel`` on a clock of its own, joined by the bridge's clock-domain crossings; the
``accel`` reset synchronized from ``rst``) and builds it with Verilator through
the build cache (:func:`xnorflow.sim.cache.cached_build`: once per Verilog text, under a lock
that other processes building the same design wait on; the cache root is the argument, else
``$XNORFLOW_SIM_CACHE``, else ``~/.cache/xnorflow/sim``). The result is a :class:`SimDevice`.

Every :class:`SimLink` on a :class:`SimDevice` is a fresh simulation (reset device) of that build
in a process group of its own (``python -m xnorflow.sim.tb_uart_bridge``, which runs cocotb's
runner, which runs the simulator), its ``rx``/``tx`` pins driven and decoded bit by bit by the
testbench :mod:`xnorflow.sim.tb_uart_bridge`, which carries the bytes to and from this process
over a TCP connection on 127.0.0.1. Only the wire is simulated: every byte written crosses the
bridge's real UART receiver. Closing the link closes the socket, the testbench sees the end of
file and finishes, and the process is waited for (killed, with its group, after
``close_timeout``). Sessions run where Verilator and cocotb do (Linux, macOS); the module imports
anywhere, so that the board driver that imports it loads on Windows too.

A :class:`SimLink` keeps the driver's transport contract (:class:`xnorflow.host.driver.Transport`:
``write``, ``read(n, timeout)``, ``flush``, ``close``, ``describe``, the ``reply_timeout`` and
``resync_quiet`` hints, a context manager); its failures raise :attr:`SimLink.error`
(:class:`SimLinkError` here, the driver's ``TransportError`` in ``SimTransport``).

Benchmark
    The bridge takes BENCH (the on-device benchmark, :meth:`xnorflow.host.driver.Accelerator.
    bench`); while a run lasts both lines are quiet, and the testbench keeps simulated time
    running as long as the design's ``bench_busy`` output is high. REPORT's ``clock_hz`` is
    ``accel_clk_hz``, the simulated network clock.

Clocks
    The testbench drives two clocks: the bridge's ``clk_hz`` (1 MHz) and the network's
    ``accel_clk_hz`` (1.28 MHz by default: neither equal to the bridge's nor a multiple of it,
    32/25, so the crossings see every phase relation of the two). Both periods are whole, even
    numbers of picoseconds.

Speed
    The simulated bridge runs at ``clk_hz`` (1 MHz) with ``divisor`` (4) cycles per bit, so INFO
    reports 250,000 baud, and a FRAME of an MNIST model takes ``10 * 4 * 790`` = 31,600 cycles
    on the line. The UART only sees its divisor: a board's rate is simulated by its divisor
    (3 Mbaud from the iCEBreaker's 12 MHz is divisor 4, the default here; from a ULX3S's 60 MHz
    ``CLKOS``, divisor 20). Measured on a shared 2-core machine (one clock, before the
    network had its own): about 150,000 to 250,000 simulated cycles per second, so 4 to 8
    frames/s through the bit-level UART (the simulated link itself would carry 31.6); a session
    starts in about a second.
"""

from __future__ import annotations

import contextlib
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
from dataclasses import dataclass
from pathlib import Path

from xnorflow.hw.build.tools import log_tail
from xnorflow.hw.tops.protocol import DeviceInfo
from xnorflow.sim.cache import cached_build
from xnorflow.sim.runner import SimBuild

__all__ = ["SIM_TESTBENCH", "SIM_TOP", "SimDevice", "SimLink", "SimLinkError",
           "build_sim_device"]

#: Verilog module name of the simulated bridge.
SIM_TOP = "uart_bridge"
#: The cocotb testbench that runs a :class:`SimLink` session.
SIM_TESTBENCH = "xnorflow.sim.tb_uart_bridge"


class SimLinkError(RuntimeError):
    """The simulation session failed: it did not start, ended, or stopped taking bytes."""


@dataclass(frozen=True)
class SimDevice:
    """A :class:`~xnorflow.hw.tops.bridge.SerialBridge` compiled for Verilator (see
    :func:`build_sim_device`); any number of :class:`SimLink` sessions run on it."""

    sim_build: SimBuild
    info: DeviceInfo  #: what its INFO reply says
    verilog_sha256: str
    quiet_cycles: int  #: both lines this quiet: nothing can happen until the next byte
    period_ps: int  #: the bridge's clock period
    accel_period_ps: int  #: the network's clock period
    cached: bool  #: the build was in the cache already
    build_seconds: float  #: waiting for the cache's lock and building

    @property
    def build_dir(self) -> Path:
        return self.sim_build.build_dir


def _load_folding(folding, model):
    from xnorflow.hw.compiler import Folding

    if folding is None or isinstance(folding, Folding):
        return folding
    if isinstance(folding, dict):
        return Folding.from_dict(folding, model.layers)
    return Folding.load(folding, model.layers)


def _check_clock(name, hz):
    if not isinstance(hz, int) or isinstance(hz, bool) or hz < 1 or 10**12 % hz \
            or (10**12 // hz) % 2:
        raise ValueError(f"{name} ({hz!r}) must be a frequency in Hz with a period of a whole, "
                         "even number of picoseconds (e.g. 1000000)")


def build_sim_device(model, folding=None, *, with_scores: bool = True,
                     clk_hz: int = 1_000_000, divisor: int = 4, gap_bits: int = 1000,
                     slots: int = 2, accel_clk_hz: int = 1_280_000,
                     build_root=None) -> SimDevice:
    """Generate the two-clock serial bridge of ``model`` (a Model or a model file) with
    ``folding`` (None: the default; a Folding, its JSON object or a folding file) and build it
    for Verilator, or reuse the build of the same Verilog (see the module docstring).
    ``clk_hz`` (the bridge's clock) must be a multiple of ``divisor``; its period and that of
    ``accel_clk_hz`` (the network's clock) whole, even numbers of picoseconds."""
    from xnorflow.hw.build.verilog import write_verilog
    from xnorflow.hw.tops.bridge import DualClockBridge
    from xnorflow.hw.tops.network import Network
    from xnorflow.model import Model

    if not isinstance(model, Model):
        model = Model.load(model)
    if not isinstance(divisor, int) or isinstance(divisor, bool) or divisor < 4:
        raise ValueError(f"divisor ({divisor!r}) must be an integer of at least 4")
    if not isinstance(clk_hz, int) or clk_hz % divisor:
        raise ValueError(f"clk_hz ({clk_hz!r}) must be a multiple of the divisor ({divisor})")
    _check_clock("clk_hz", clk_hz)
    _check_clock("accel_clk_hz", accel_clk_hz)
    network = Network(model, _load_folding(folding, model), with_scores=with_scores)
    top = DualClockBridge(network, clk_hz=clk_hz, baud=clk_hz // divisor, gap_bits=gap_bits,
                          slots=slots, network_clk_hz=accel_clk_hz)
    bridge = top.bridge
    assert bridge.divisor == divisor
    with tempfile.TemporaryDirectory(prefix="xnorflow-bridge-") as tmp:
        text = write_verilog(top, tmp, name=SIM_TOP).read_text()
    made = cached_build(text, toplevel=SIM_TOP, root=build_root)
    # Both lines quiet this long: any packet in progress has timed out (gap), every frame held
    # has been computed (latency plus the frames ahead of it) and its reply has been sent. In
    # bridge cycles: the receiver, engine and transmitter (as SerialBridge.result_latency), the
    # network's cycles converted from its clock, and 32 for the crossings (a few each way).
    engine = bridge.engine
    d = divisor
    network_cycles = network.latency + (slots + 1) * max(network.ii, network.beats_per_frame)
    latency = d // 2 + 9 * d + 7 + -(-network_cycles * clk_hz // accel_clk_hz) + 32
    quiet = 2 * (engine.gap_cycles + latency) + 100
    return SimDevice(made.sim_build, bridge.info, made.verilog_sha256, quiet, 10**12 // clk_hz,
                     10**12 // accel_clk_hz, made.cached, made.seconds)


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



class SimLink:
    """A session on a simulated board: the bridge of :class:`SimDevice` ``device`` (or of a
    model, built with :func:`build_sim_device` and the keyword arguments ``folding``,
    ``with_scores``, ``build_root``) in Verilator, its UART pins driven bit by bit, reached over
    TCP on 127.0.0.1.

    The constructor listens on an ephemeral port of 127.0.0.1, starts the session process and
    waits (``start_timeout``) for the testbench to connect; the device has just come out of
    reset. :meth:`close` ends the simulation (see the module docstring); afterwards
    :attr:`stats` holds the testbench's summary (simulated cycles, wall time, simulated cycles
    per second while active, bytes each way). The run's files stay in :attr:`run_dir` when the
    session failed or ``keep_logs`` is set.

    ``reply_timeout`` and ``resync_quiet`` are the hints for the driver (the simulator is slower
    than the device it simulates; see :class:`xnorflow.host.driver.Transport`). ``baud``: the
    host's bit rate (None: the device's); at another rate the testbench drives and samples the
    pins with that bit time, so the device sees what a serial port set to the wrong rate sends.
    """

    #: Raised when the session fails (the module docstring).
    error: type[Exception] = SimLinkError
    _sessions = itertools.count()

    def __init__(self, device, *, folding=None, with_scores: bool = True, build_root=None,
                 start_timeout: float = 180.0, close_timeout: float = 30.0,
                 max_wall_s: float = 86400.0, poll_cycles: int = 64,
                 reply_timeout: float = 30.0, resync_quiet: float = 1.0,
                 write_timeout: float = 60.0, keep_logs: bool = False,
                 baud: int | None = None):
        if not isinstance(device, SimDevice):
            device = build_sim_device(device, folding, with_scores=with_scores,
                                      build_root=build_root)
        elif folding is not None:
            raise ValueError(f"folding applies when {type(self).__name__} builds the device; this "
                             "SimDevice is built already")
        self.device = device
        clk_hz = device.info.clk_hz
        if baud is not None and (not isinstance(baud, int) or isinstance(baud, bool)
                                 or not 1 <= baud <= clk_hz // 2):
            raise ValueError(f"baud ({baud!r}) must be an integer from 1 to half the simulated "
                             f"clock ({clk_hz} Hz)")
        #: The host's bit time in device clock cycles (the device's own divisor by default).
        self.host_divisor = device.info.divisor if baud is None else round(clk_hz / baud)
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
                           "accel_period_ps": device.accel_period_ps,
                           "divisor": self.host_divisor,
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
                raise self.error(
                    f"the simulation exited (status {self._proc.returncode}) before "
                    f"connecting; {self._logs()}")
            if time.monotonic() > deadline:
                raise self.error(f"the simulation did not connect within {timeout} s; "
                                     f"{self._logs()}")

    def _logs(self) -> str:
        return (f"end of {self._child_log}:\n{log_tail(self._child_log, 25)}\nend of "
                f"{self.run_dir / 'run.log'}:\n{log_tail(self.run_dir / 'run.log', 25)}")

    def write(self, data: bytes) -> None:
        if self._closed:
            raise self.error(f"write on a closed {type(self).__name__}")
        self._written = True
        self._sock.settimeout(self.write_timeout)
        try:
            self._sock.sendall(bytes(data))
        except TimeoutError as exc:
            raise self.error(f"the simulation took no bytes for {self.write_timeout} s; "
                                 f"{self._logs()}") from exc
        except OSError as exc:
            raise self.error(f"the simulation is gone ({exc}); {self._logs()}") from exc

    def read(self, n: int, timeout: float) -> bytes:
        if self._closed:
            raise self.error(f"read on a closed {type(self).__name__}")
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
                raise self.error(f"the simulation is gone ({exc}); "
                                     f"{self._logs()}") from exc
            if not chunk:
                raise self.error(f"the simulation closed the connection; {self._logs()}")
            buf += chunk
        return bytes(buf)

    def flush(self) -> None:
        """Nothing to wait for: :meth:`write` hands every byte to the simulation's socket."""

    def close(self, *, check: bool = True) -> None:
        """End the session; with ``check``, raise :attr:`error` when the testbench failed or had
        to be killed."""
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
            raise self.error(f"the simulation session {self.run_name} {failure}; "
                                 f"{self._logs()}")

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        self.close(check=exc_type is None)
        return False

    def describe(self) -> str:
        info = self.device.info
        host = ("" if self.host_divisor == info.divisor
                else f", host at {info.clk_hz / self.host_divisor:.0f} baud")
        return (f"sim:verilator (SerialBridge at {info.clk_hz} Hz, divisor {info.divisor}, "
                f"{info.baud:.0f} baud{host}; network at "
                f"{10**12 // self.device.accel_period_ps} Hz)")



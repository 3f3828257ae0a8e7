"""cocotb testbench that puts the simulated serial bridge on a TCP socket: the simulation side of
:class:`xnorflow.sim.board.SimLink`.

The design is a :class:`~xnorflow.hw.tops.bridge.DualClockBridge` (ports ``clk``, ``rst``, ``rx``,
``tx``, ``accel_clk``, the network's clock, and ``bench_busy``) compiled for Verilator; the
testbench drives both clocks (``period_ps``, ``accel_period_ps``) and resets the design through
``rst`` (the network domain's reset follows through the design's own reset synchronizer). One
cocotb test, :func:`uart_bridge_session`, connects to ``127.0.0.1:<port>`` (the host process
listens there), then moves bytes between the socket and the bridge's pins bit by bit: bytes read
from the socket are driven on ``rx`` as 8N1 at the bridge's bit time
(:class:`~xnorflow.sim.uart_model.UartLineDriver`), and every byte decoded on ``tx``
(:class:`~xnorflow.sim.uart_model.UartLineMonitor`) is written to the socket at once. The testbench
knows nothing of the packets: it is the wire.

Time
    While bytes are being driven, or the device may still act (a packet in progress, a frame being
    computed, a reply being sent), simulated time runs as fast as the simulator goes; the socket is
    polled every ``poll_cycles`` cycles (without blocking) and new bytes follow the previous ones
    back to back when they are already there. Once both lines have been quiet for ``quiet_cycles``
    cycles, which the host chooses longer than the bridge's gap timeout plus the time to compute
    and answer everything it holds, and the design's ``bench_busy`` output is low (no BENCH run in
    progress, which may last any number of cycles with both lines quiet), nothing can happen inside
    the device until the next byte arrives; the testbench then blocks on the socket without
    advancing simulated time (an idle line lasting longer), so an idle session costs no CPU.

Shutdown
    The session ends, and the test passes, when the host closes its end of the connection (end
    of file; ``end`` is ``"eof"``) or when the connection breaks (the host went away, or closed
    while the device was still sending: ``"broken"``). It fails when ``connect_timeout_s`` passes
    without a connection or after ``max_wall_s`` of wall time (a safety net; the host closes
    long before).

Parameters (:func:`~xnorflow.sim.runner.tb_params`)
    ``port`` (required), ``period_ps`` (clock period, default 1,000,000: 1 MHz),
    ``accel_period_ps`` (the network's clock period, required), ``divisor``
    (clock cycles per bit, required), ``quiet_cycles`` (required), ``poll_cycles`` (default 64),
    ``reset_cycles`` (default 4), ``connect_timeout_s`` (default 60), ``max_wall_s`` (default
    86400), ``summary`` (optional path of a JSON file written at the end: ``sim_cycles``,
    ``wall_s``, ``blocked_wall_s`` (waiting on an idle line), ``active_cycles_per_s``,
    ``rx_bytes``, ``tx_bytes``, ``tx_framing_errors``, ``end``).

Run as a script (``python -m xnorflow.sim.tb_uart_bridge SPEC``, SPEC a JSON object with
``build`` (the :class:`~xnorflow.sim.runner.SimBuild` fields), ``params`` and ``run_name``), it
runs this testbench on that build through :func:`~xnorflow.sim.runner.run_tests`; that is how
:class:`~xnorflow.sim.board.SimLink` starts a session in a process of its own.
"""

from __future__ import annotations

import json
import select
import socket
import sys
import time
from pathlib import Path

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, FallingEdge, Timer
from cocotb.utils import get_sim_steps, get_sim_time

from xnorflow.sim.runner import tb_params
from xnorflow.sim.uart_model import UartLineDriver, UartLineMonitor

PARAMS = tb_params()
HOST = "127.0.0.1"
#: Longest single wait on the socket while the line is idle (then the wall limit is checked).
_BLOCK_S = 0.1
_RECV_BYTES = 1 << 16


class _HostGone(Exception):
    """The connection broke: the host went away without closing (or while the device was still
    sending). The session ends; this is not a failure of the simulation."""


class _Link:
    """The socket side: non-blocking polls, blocking sends with a timeout."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.broken: str | None = None

    def poll(self, wait_s: float) -> bytes | None:
        """Bytes from the host (``b""``: none yet); None at end of file."""
        ready, _, _ = select.select([self.sock], [], [], wait_s)
        if not ready:
            return b""
        try:
            data = self.sock.recv(_RECV_BYTES)
        except (ConnectionResetError, BrokenPipeError) as exc:
            raise _HostGone(f"connection reset by the host ({exc})") from exc
        return data or None

    def send(self, byte: int) -> None:
        if self.broken:
            return
        try:
            self.sock.sendall(bytes([byte]))
        except OSError as exc:  # the host went away or stopped reading for the send timeout
            self.broken = f"sending to the host failed ({exc})"


@cocotb.test()
async def uart_bridge_session(dut):
    """Bridge the socket to the pins until the host closes the connection."""
    p = PARAMS
    period = get_sim_steps(int(p.get("period_ps", 1_000_000)), "ps")
    divisor = int(p["divisor"])
    bit_steps = period * divisor
    quiet_steps = int(p["quiet_cycles"]) * period
    poll_steps = int(p.get("poll_cycles", 64)) * period
    max_wall = float(p.get("max_wall_s", 86400))

    Clock(dut.clk, period, "step").start(start_high=False)
    Clock(dut.accel_clk, get_sim_steps(int(p["accel_period_ps"]), "ps"), "step").start(
        start_high=False)
    dut.rx.value = 1
    dut.rst.value = 1
    await ClockCycles(dut.clk, int(p.get("reset_cycles", 4)))
    dut.rst.value = 0
    # Every edge the driver makes falls half a cycle away from the rising edges.
    await FallingEdge(dut.clk)

    sock = socket.create_connection((HOST, int(p["port"])),
                                    timeout=float(p.get("connect_timeout_s", 60)))
    link = _Link(sock)
    driver = UartLineDriver(dut.rx, bit_steps)
    monitor = UartLineMonitor(dut.tx, bit_steps, link.send)
    monitor_task = cocotb.start_soon(monitor.run())
    wall_start = time.perf_counter()
    blocked = 0.0
    start_steps = last_rx = int(get_sim_time("step"))
    end = "eof"
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(30.0)  # for sends; receives only follow a select()
        dut._log.info("session on %s:%s: divisor %d, quiet after %d cycles", HOST, p["port"],
                      divisor, int(p["quiet_cycles"]))
        while True:
            if link.broken:
                raise _HostGone(link.broken)
            if time.perf_counter() - wall_start > max_wall:
                end = "wall_limit"
                raise AssertionError(f"session still open after max_wall_s ({max_wall} s)")
            now = int(get_sim_time("step"))
            quiet_for = now - max(last_rx, monitor.last_steps)
            # A BENCH run keeps the device busy with both lines quiet.
            running = bool(int(dut.bench_busy.value))
            idle = not monitor.busy and not running and quiet_for >= quiet_steps
            t0 = time.perf_counter()
            data = link.poll(_BLOCK_S if idle else 0.0)
            if idle:
                blocked += time.perf_counter() - t0
            if data is None:
                break
            if data:
                await driver.write(data)
                last_rx = int(get_sim_time("step"))
            elif not idle:
                await Timer(max(period, min(poll_steps, quiet_steps - quiet_for)), "step")
    except _HostGone as exc:
        end = "broken"
        dut._log.info("the connection broke: %s", exc)
    finally:
        monitor_task.cancel()
        sock.close()
        wall = time.perf_counter() - wall_start
        cycles = (int(get_sim_time("step")) - start_steps) // period
        active = wall - blocked
        summary = {
            "sim_cycles": cycles, "wall_s": round(wall, 3), "blocked_wall_s": round(blocked, 3),
            "active_cycles_per_s": round(cycles / active, 1) if active > 0 else None,
            "rx_bytes": driver.bytes_sent, "tx_bytes": monitor.bytes_received,
            "tx_framing_errors": monitor.framing_errors, "end": end,
        }
        if p.get("summary"):
            Path(p["summary"]).write_text(json.dumps(summary) + "\n")
        dut._log.info("session end (%s): %d cycles in %.2f s (%.2f s blocked on an idle line), "
                      "%s active cycles/s, %d bytes in, %d bytes out", end, cycles, wall,
                      blocked, summary["active_cycles_per_s"], summary["rx_bytes"],
                      summary["tx_bytes"])


def main(argv: list[str] | None = None) -> int:
    """Run one session on a build (see the module docstring); exit status 0 when it passed."""
    from xnorflow.sim.runner import SimBuild, SimError, run_tests

    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m xnorflow.sim.tb_uart_bridge SPEC_JSON", file=sys.stderr)
        return 2
    spec = json.loads(argv[0])
    b = spec["build"]
    sim_build = SimBuild(simulator=b["simulator"], toplevel=b["toplevel"],
                         build_dir=Path(b["build_dir"]),
                         sources=tuple(Path(s) for s in b["sources"]), waves=False, seconds=0.0,
                         log_file=Path(b["build_dir"]) / "build.log")
    try:
        run_tests(sim_build, "xnorflow.sim.tb_uart_bridge", params=spec["params"],
                  run_name=spec["run_name"])
    except SimError as exc:
        print(f"simulation session failed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

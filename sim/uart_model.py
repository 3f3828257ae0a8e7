"""A UART line model for cocotb testbenches: 8N1 bytes to and from a 1-bit pin.

Written from the definition of the line alone (no gateware code): the line idles at 1; a byte is
a start bit (0), eight data bits least significant first, and a stop bit (1), each ``bit_steps``
simulator time steps long. The testbench gives the bit time in steps (``clock period * divisor``)
so that every edge this model makes falls at the same phase of the clock.

:class:`UartLineDriver` drives a pin with bytes; it sleeps through runs of equal bits (one timer
per level change, not per bit or per clock cycle). :class:`UartLineMonitor` decodes a pin: it
waits for a falling edge, samples each bit in its middle and hands every byte with a good stop
bit to a callback; bytes with a zero stop bit are counted (:attr:`UartLineMonitor.framing_errors`)
and dropped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from cocotb.triggers import FallingEdge, RisingEdge, Timer
from cocotb.utils import get_sim_time

__all__ = ["BITS_PER_BYTE", "UartLineDriver", "UartLineMonitor", "line_runs"]

#: Start bit, 8 data bits, stop bit.
BITS_PER_BYTE = 10


def line_runs(data: Iterable[int]) -> list[tuple[int, int]]:
    """The line levels of ``data`` sent back to back, as runs ``(level, bits)`` of equal bits
    (the idle level after the last stop bit is not included)."""
    runs: list[tuple[int, int]] = []
    for byte in data:
        if not 0 <= byte <= 255:
            raise ValueError(f"byte {byte!r} is not in [0, 255]")
        bits = [0, *((byte >> k) & 1 for k in range(8)), 1]
        for bit in bits:
            if runs and runs[-1][0] == bit:
                runs[-1] = (bit, runs[-1][1] + 1)
            else:
                runs.append((bit, 1))
    return runs


class UartLineDriver:
    """Drives ``signal`` (a 1-bit handle) as a UART transmitter of ``bit_steps`` steps per bit.

    The line is set to idle (1) on construction. :meth:`write` returns when the last stop bit has
    ended; bytes of one call go out back to back. ``bytes_sent`` counts the bytes written."""

    def __init__(self, signal: Any, bit_steps: int):
        if not isinstance(bit_steps, int) or bit_steps < 2:
            raise ValueError(f"bit_steps ({bit_steps!r}) must be an integer of at least 2")
        self.signal = signal
        self.bit_steps = bit_steps
        self.bytes_sent = 0
        # One timer per run length (1 to 10 bits), made once: triggers can be awaited again.
        self._timers = [None] + [Timer(k * bit_steps, "step") for k in range(1, 11)]
        signal.value = 1

    async def write(self, data: bytes) -> None:
        signal, timers = self.signal, self._timers
        for level, bits in line_runs(data):
            signal.value = level
            await timers[bits]
        self.bytes_sent += len(data)


class UartLineMonitor:
    """Decodes the UART line on ``signal`` at ``bit_steps`` steps per bit.

    Run :meth:`run` as a task. Each byte with a good stop bit is passed to ``on_byte(byte)`` when
    the middle of its stop bit is reached. ``busy`` is True from a start edge to that point;
    ``last_steps`` is the simulator time (in steps) of the latest start edge or stop-bit sample,
    for a testbench that wants to know how long the line has been quiet."""

    def __init__(self, signal: Any, bit_steps: int, on_byte: Callable[[int], None]):
        if not isinstance(bit_steps, int) or bit_steps < 2:
            raise ValueError(f"bit_steps ({bit_steps!r}) must be an integer of at least 2")
        self.signal = signal
        self.bit_steps = bit_steps
        self.on_byte = on_byte
        self.busy = False
        self.last_steps = 0
        self.bytes_received = 0
        self.framing_errors = 0
        self.glitches = 0

    def _level(self) -> int:
        return int(self.signal.value)

    async def run(self) -> None:
        half = self.bit_steps // 2
        while True:
            if self._level() == 0:
                await RisingEdge(self.signal)  # a held-low line: wait for idle first
            await FallingEdge(self.signal)
            self.busy = True
            self.last_steps = int(get_sim_time("step"))
            await Timer(half, "step")
            if self._level() != 0:
                self.glitches += 1
                self.busy = False
                continue
            byte = 0
            for k in range(8):
                await Timer(self.bit_steps, "step")
                byte |= self._level() << k
            await Timer(self.bit_steps, "step")
            stop = self._level()
            self.last_steps = int(get_sim_time("step"))
            self.busy = False
            if stop != 1:
                self.framing_errors += 1
                continue
            self.bytes_received += 1
            self.on_byte(byte)

# amaranth: UnusedElaboratable=no
"""Simulation tests of the 8N1 UART against a line model written here from the 8N1 definition
(start bit 0, 8 data bits LSB first, stop bit 1, idle 1). The model shares no code with the DUT;
test_hw_bridge.py drives the bridge's pins with it too."""

import random
from itertools import pairwise

import pytest
from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.sim import Simulator
from hwsim import PAUSE_KINDS, Sink, Source, run_streams

from xnorflow.hw.blocks.uart import UARTRx, UARTTx

# --- The line model -----------------------------------------------------------------------------


def line_bits(byte, stop=1):
    """The 10 levels of one byte on the line: start, data LSB first, stop."""
    return [0] + [(byte >> i) & 1 for i in range(8)] + [stop]


class LineDriver:
    """Levels for a pin, one per clock cycle: ``send`` queues bytes (each bit ``divisor``
    cycles), ``idle`` queues high cycles; :meth:`level` gives the next cycle's level (1 when
    nothing is queued)."""

    def __init__(self, divisor):
        self.divisor = divisor
        self._levels = []
        self._next = 0

    def send(self, data, stop=1):
        for byte in data:
            for bit in line_bits(byte, stop):
                self._levels += [bit] * self.divisor

    def idle(self, cycles):
        self._levels += [1] * cycles

    @property
    def busy(self):
        return self._next < len(self._levels)

    def level(self):
        if self._next < len(self._levels):
            self._next += 1
            return self._levels[self._next - 1]
        return 1


class LineMonitor:
    """Decodes a line sampled once per clock cycle: a falling edge in cycle ``c`` starts a byte,
    bit ``k`` (0 the start bit, 9 the stop bit) is read in cycle ``c + divisor // 2 + k *
    divisor``. Records each byte, the cycle of its falling edge, and stop-bit errors."""

    def __init__(self, divisor):
        self.divisor = divisor
        self.bytes = []
        self.starts = []
        self.errors = []  # cycles of bytes whose start bit was not 0 at its middle or stop not 1
        self._start = None
        self._bits = []
        self._previous = 1

    def sample(self, cycle, level):
        d = self.divisor
        if self._start is None:
            if self._previous == 1 and level == 0:
                self._start, self._bits = cycle, []
        elif (cycle - self._start - d // 2) % d == 0:
            self._bits.append(level)
            if len(self._bits) == 10:
                if self._bits[0] == 0 and self._bits[9] == 1:
                    self.bytes.append(sum(b << i for i, b in enumerate(self._bits[1:9])))
                    self.starts.append(self._start)
                else:
                    self.errors.append(self._start)
                self._start = None
        self._previous = level


# --- Loopback ------------------------------------------------------------------------------------


class Loopback(wiring.Component):
    """TX wired to RX."""

    def __init__(self, divisor):
        self.tx = UARTTx(divisor)
        self.rx = UARTRx(divisor)
        super().__init__({})

    def elaborate(self, platform):
        m = Module()
        m.submodules.tx, m.submodules.rx = self.tx, self.rx
        m.d.comb += self.rx.rx.eq(self.tx.tx)
        return m


class Pulses:
    """A passive port for ``run_streams``: cycles in which a 1-bit signal was 1."""

    beats = ()
    expected = 0
    done = True

    def __init__(self, *signals):
        self.signals = signals
        self.cycles = {s.name: [] for s in signals}

    def drive(self, ctx, *, force_ready=False):
        pass

    def sampled(self):
        return self.signals

    def observe(self, cycle, *values):
        for signal, value in zip(self.signals, values, strict=True):
            if value:
                self.cycles[signal.name].append(cycle)
        return False


@pytest.mark.parametrize("divisor", [4, 5, 8, 13])
@pytest.mark.parametrize("pause", PAUSE_KINDS)
def test_loopback_random_bytes(divisor, pause):
    rng = random.Random(divisor)
    data = [0x00, 0xFF, 0x55, 0xAA] + [rng.randrange(256) for _ in range(12)]
    dut = Loopback(divisor)
    source = Source(dut.tx.i_stream, data, pause, seed=1)
    sink = Sink(dut.rx.o_stream, len(data), pause, seed=2)
    errors = Pulses(dut.rx.framing_error, dut.rx.overrun)
    run_streams(dut, [source], [sink, errors], timeout=12 * divisor, drain=12 * divisor)
    assert sink.beats == data
    assert errors.cycles == {"framing_error": [], "overrun": []}
    if pause == "none":
        # Back to back: exactly 10 bit-times per byte at both ends.
        assert {b - a for a, b in pairwise(source.cycles)} == {10 * divisor}
        assert {b - a for a, b in pairwise(sink.cycles)} == {10 * divisor}


# --- TX against the line model -------------------------------------------------------------------


@pytest.mark.parametrize("divisor", [1, 4, 7])
def test_tx_waveform_is_lsb_first(divisor):
    """The exact levels, cycle by cycle: 0x01 then 0xC4, offered back to back."""
    dut = UARTTx(divisor)
    levels = []

    async def testbench(ctx):
        ctx.set(dut.i_stream.valid, 1)
        sent = 0
        for _ in range(25 * divisor + 5):
            ctx.set(dut.i_stream.payload, [0x01, 0xC4][min(sent, 1)])
            ctx.set(dut.i_stream.valid, sent < 2)
            _, _, ready, tx = await ctx.tick().sample(dut.i_stream.ready, dut.tx)
            levels.append(tx)
            sent += ready and sent < 2

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(testbench)
    sim.run()
    # Accepted in cycle 0: the start bit from cycle 1. 0x01: bit 0 (first data bit) is 1.
    expected = [1] + [level for byte in (0x01, 0xC4) for level in line_bits(byte)
                      for _ in range(divisor)]
    expected += [1] * (len(levels) - len(expected))
    assert levels == expected
    assert line_bits(0x01)[:3] == [0, 1, 0]


# --- RX from the line model ----------------------------------------------------------------------


def run_rx(divisor, drive, cycles, ready=lambda cycle: True):
    """Simulate a UARTRx whose pin is set by the async ``drive(ctx, rx)``; return the bytes
    received with their cycles, and the cycles of framing_error and overrun pulses."""
    dut = UARTRx(divisor)
    got, framing, overrun = [], [], []

    async def monitor(ctx):
        for cycle in range(cycles):
            ctx.set(dut.o_stream.ready, ready(cycle))
            _, _, valid, rdy, payload, ferr, ovr = await ctx.tick().sample(
                dut.o_stream.valid, dut.o_stream.ready, dut.o_stream.payload,
                dut.framing_error, dut.overrun)
            if valid and rdy:
                got.append((cycle, payload))
            if ferr:
                framing.append(cycle)
            if ovr:
                overrun.append(cycle)

    async def driver(ctx):
        await drive(ctx, dut.rx)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(monitor)
    sim.add_testbench(driver, background=True)
    sim.run()
    return got, framing, overrun


def timed_driver(levels, bit_time, phase):
    """Sets the pin to each level in turn for ``bit_time`` seconds, after ``phase`` seconds."""
    async def drive(ctx, pin):
        await ctx.delay(phase)
        for level in levels:
            ctx.set(pin, level)
            await ctx.delay(bit_time)
        ctx.set(pin, 1)
    return drive


@pytest.mark.parametrize("divisor", [4, 8, 16, 20])
@pytest.mark.parametrize("rate_error", [-0.02, 0.0, 0.02])
def test_rx_asynchronous_line(divisor, rate_error):
    """Bytes back to back from a transmitter up to 2 % off the nominal rate, its edges anywhere
    within a clock cycle (not at the clock edges). Divisors 4 and 20: the boards' 3 Mbaud
    links (iCEBreaker 12 MHz, ULX3S 60 MHz CLKOS)."""
    rng = random.Random(divisor)
    data = [0x01, 0x80, 0xA5, 0x5A] + [rng.randrange(256) for _ in range(8)]
    levels = [level for byte in data for level in line_bits(byte)]
    bit_time = divisor * 1e-6 * (1 + rate_error)
    got, framing, overrun = run_rx(divisor, timed_driver(levels, bit_time, 3.37e-6),
                                   int(10 * divisor * (len(data) + 2) * 1.05))
    assert [byte for _, byte in got] == data
    assert framing == overrun == []


def test_rx_latency():
    """The byte is valid in cycle divisor // 2 + 9 * divisor + 3, counting from the cycle in which
    the start bit's falling edge reaches the pin (the edge just after a clock edge)."""
    for divisor in (4, 5, 9):
        got, _, _ = run_rx(divisor, timed_driver(line_bits(0x3C), divisor * 1e-6, 5.01e-6),
                           12 * divisor + 10)
        # The pin falls 0.01 us into cycle 5.
        assert got == [(5 + divisor // 2 + 9 * divisor + 3, 0x3C)]


def test_rx_framing_error_and_break():
    """A zero stop bit: one framing_error pulse, the byte dropped, the next byte fine. A break
    (the line held low for 30 bit-times): one framing error, not one per byte-time."""
    d = 6
    levels = (line_bits(0x11, stop=0) + [1] * 3 + line_bits(0x22)
              + [0] * 30 + [1] * 2 + line_bits(0x33))
    got, framing, overrun = run_rx(d, timed_driver(levels, d * 1e-6, 0.5e-6),
                                   d * (len(levels) + 4))
    assert [byte for _, byte in got] == [0x22, 0x33]
    assert len(framing) == 2 and overrun == []


def test_rx_ignores_glitch():
    """A low pulse shorter than half a bit is no start bit."""
    d = 8
    async def drive(ctx, pin):
        await ctx.delay(4.5e-6)
        ctx.set(pin, 0)
        await ctx.delay(2e-6)
        ctx.set(pin, 1)
        await ctx.delay(20e-6)
        await timed_driver(line_bits(0x96), d * 1e-6, 0)(ctx, pin)
    got, framing, _ = run_rx(d, drive, 140)
    assert [byte for _, byte in got] == [0x96] and framing == []


def test_rx_overrun_keeps_the_waiting_byte():
    d = 4
    levels = line_bits(0x12) + line_bits(0x34) + line_bits(0x56)
    # Not ready until cycle 95 (after the second byte completed): 0x34 is lost, 0x56 arrives.
    got, framing, overrun = run_rx(d, timed_driver(levels, d * 1e-6, 0.2e-6), 140,
                                   ready=lambda cycle: cycle >= 95)
    assert [byte for _, byte in got] == [0x12, 0x56]
    assert len(overrun) == 1 and framing == []


def test_line_model_self_check():
    """The test's own driver and monitor agree (so the bridge tests can trust them)."""
    driver, monitor = LineDriver(5), LineMonitor(5)
    driver.send(b"\x00\xff\xa5")
    driver.idle(7)
    driver.send(b"\x01", stop=0)
    driver.idle(3)
    driver.send(b"\x02")
    cycle = 0
    while driver.busy:
        monitor.sample(cycle, driver.level())
        cycle += 1
    assert monitor.bytes == [0x00, 0xFF, 0xA5, 0x02]
    assert monitor.starts[:3] == [0, 50, 100] and len(monitor.errors) == 1


# --- Parameters ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("cls", "divisor", "message"), [
    (UARTRx, 3, r"^divisor \(3\) must be an integer of at least 4 \(clock cycles per bit\)$"),
    (UARTRx, 4.0, r"^divisor \(4\.0\) must be an integer of at least 4"),
    (UARTTx, 0, r"^divisor \(0\) must be an integer of at least 1 \(clock cycles per bit\)$"),
    (UARTTx, True, r"^divisor \(True\) must be an integer"),
])
def test_divisor_checks(cls, divisor, message):
    with pytest.raises(ValueError, match=message):
        cls(divisor)
    assert cls(9).divisor == 9

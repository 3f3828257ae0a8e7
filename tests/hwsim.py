"""Small stream helpers for Amaranth simulator tests of the gateware blocks.

A :class:`Source` drives a ``stream.Interface`` (``payload``/``valid``/``ready``) with a list of
raw payload integers, a :class:`Sink` accepts beats from one; each takes a pause pattern
(:func:`pauses`). :func:`run_streams` simulates a component with any number of sources and sinks
in one async testbench, samples every handshake at the clock edge, and fails with
:class:`TimeoutError` when no handshake happens for ``timeout`` cycles while work is pending.
After the expected beats it keeps the sinks ready for ``drain`` more cycles, so that a unit that
emits too many beats is caught: every sink must end up with exactly ``expected`` beats.

Payloads are raw bit patterns (``int``), whatever the stream's payload shape: tests decode them
with their own code, never with the device's layouts.
"""

import itertools
import random

from amaranth.hdl import Value
from amaranth.sim import Simulator

__all__ = ["PAUSE_KINDS", "Sink", "Source", "pauses", "run_streams"]

#: The three pause patterns every stream test is crossed with.
PAUSE_KINDS = ("none", "fixed", "random")

# 13 cycles long: a prime, so that a unit with a periodic output does not always miss its pauses.
_FIXED_PATTERN = (False, False, True, False, True, True, False, False, False, True, True, True,
                  False)


def pauses(kind, seed=0):
    """An endless iterator of booleans, True meaning "pause in this cycle".

    ``"none"``: never. ``"fixed"``: a fixed irregular pattern (``seed`` rotates it, so that two
    sides of a unit do not pause in lockstep). ``"random"``: pauses with probability 0.4 from a
    ``random.Random(seed)``.
    """
    if kind == "none":
        return itertools.repeat(False)
    if kind == "fixed":
        rotation = seed % len(_FIXED_PATTERN)
        return itertools.cycle(_FIXED_PATTERN[rotation:] + _FIXED_PATTERN[:rotation])
    if kind == "random":
        rng = random.Random(seed)
        return (rng.random() < 0.4 for _ in itertools.count())
    raise ValueError(f"unknown pause kind {kind!r}")


class Source:
    """Drives ``stream`` with ``beats`` (raw payload ints) in order.

    A beat, once presented (``valid`` = 1), is held until it is accepted; pauses are only
    inserted between beats. ``cycles`` records the cycle of each handshake.
    """

    def __init__(self, stream, beats, pause="none", seed=0):
        self.stream = stream
        self.beats = list(beats)
        self.cycles = []
        self._pauses = pauses(pause, seed)
        self._presenting = False

    @property
    def done(self):
        return len(self.cycles) == len(self.beats)

    def drive(self, ctx):
        if not self._presenting and not self.done and not next(self._pauses):
            self._presenting = True
            ctx.set(Value.cast(self.stream.payload), self.beats[len(self.cycles)])
        ctx.set(self.stream.valid, self._presenting)

    def sampled(self):
        return (self.stream.valid, self.stream.ready)

    def observe(self, cycle, valid, ready):
        """Returns True when a beat was accepted."""
        assert valid == self._presenting
        if valid and ready:
            self.cycles.append(cycle)
            self._presenting = False
            return True
        return False


class Sink:
    """Accepts beats from ``stream``; ``ready`` follows the pause pattern.

    ``beats`` and ``cycles`` record each accepted payload (raw int) and its cycle;
    ``valid_cycles`` records every cycle in which ``valid`` was 1. It also checks the stream rule
    that a payload holds while ``valid & ~ready``.
    """

    def __init__(self, stream, expected, pause="none", seed=0):
        self.stream = stream
        self.expected = expected
        self.beats = []
        self.cycles = []
        self.valid_cycles = []
        self._pauses = pauses(pause, seed)
        self._ready = False
        self._held = None

    @property
    def done(self):
        return len(self.beats) >= self.expected

    def drive(self, ctx, *, force_ready=False):
        self._ready = force_ready or not next(self._pauses)
        ctx.set(self.stream.ready, self._ready)

    def sampled(self):
        return (self.stream.valid, self.stream.ready, Value.cast(self.stream.payload))

    def observe(self, cycle, valid, ready, payload):
        if self._held is not None:
            assert valid, f"cycle {cycle}: valid fell before the beat was accepted"
            assert payload == self._held, f"cycle {cycle}: payload changed while not accepted"
        if valid:
            self.valid_cycles.append(cycle)
        if valid and ready:
            self.beats.append(payload)
            self.cycles.append(cycle)
            self._held = None
            return True
        self._held = payload if valid else None
        return False


def run_streams(dut, sources, sinks, *, timeout=200, drain=50):
    """Simulate ``dut`` until every source is drained and every sink has its expected beats.

    Cycles are counted from 0 (the first clock cycle after the simulation starts); a handshake
    "in cycle c" means ``valid & ready`` were sampled at the clock edge that ends cycle ``c``.
    Raises :class:`TimeoutError` when ``timeout`` cycles pass without any handshake while work is
    pending. Then runs ``drain`` more cycles with every sink ready and asserts that no sink got
    more beats than it expected.
    """
    sampled = []
    for port in (*sources, *sinks):
        sampled.extend(port.sampled())

    async def testbench(ctx):
        cycle = 0
        idle = 0
        extra = 0
        while extra < drain:
            finished = all(s.done for s in sources) and all(s.done for s in sinks)
            for source in sources:
                source.drive(ctx)
            for sink in sinks:
                sink.drive(ctx, force_ready=finished)
            _, _, *values = await ctx.tick().sample(*sampled)
            progress = False
            for port in (*sources, *sinks):
                count = len(port.sampled())
                progress |= port.observe(cycle, *values[:count])
                values = values[count:]
            if finished:
                extra += 1
            elif progress:
                idle = 0
            else:
                idle += 1
                if idle >= timeout:
                    raise TimeoutError(
                        f"no handshake for {timeout} cycles at cycle {cycle}: sources sent "
                        f"{[len(s.cycles) for s in sources]} of {[len(s.beats) for s in sources]}"
                        f" beats, sinks got {[len(s.beats) for s in sinks]} of "
                        f"{[s.expected for s in sinks]}")
            cycle += 1

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(testbench)
    sim.run()
    for sink in sinks:
        assert len(sink.beats) == sink.expected, (
            f"sink got {len(sink.beats)} beats, expected {sink.expected}")

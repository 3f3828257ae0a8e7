"""Stream source and sink helpers for cocotb testbenches (cocotb 2).

A :class:`StreamSource` drives a design's input stream and a :class:`StreamSink` takes its output
stream. Both bind to a stream by name, with either naming:

* Amaranth's, for ports generated from ``stream.Signature``: ``<name>__payload``,
  ``<name>__valid``, ``<name>__ready``;
* AXI4-Stream's, as on the generated top: ``<name>_tdata``, ``<name>_tvalid``, ``<name>_tready``
  and, when the design has it, ``<name>_tlast``.

Timing model. Every clock cycle each helper updates what it drives just after the rising edge and
samples the handshake at the falling edge, when the design's combinational outputs have settled
(the clock must be a 50% duty cycle :class:`cocotb.clock.Clock`, as :func:`start_clock` makes).
A beat is transferred at the rising edge that follows a falling edge where ``valid & ready`` was
seen. Each transferred beat is stamped with that edge's cycle number,
``floor(sim time / clock period)``: one time base shared by all helpers of a clock, so sink minus
source cycles is a latency and the difference between consecutive sink cycles is an initiation
interval.

Pauses. Each helper takes a *pause generator*: an iterator of booleans, one per clock cycle
(``True`` = pause this cycle), such as :func:`no_pause`, :func:`fixed_pause` or
:func:`random_pause`. A paused source drives ``valid`` low (it never pauses while it must hold a
beat that was not accepted: ``valid`` stays high and the payload holds); a paused sink drives
``ready`` low. A sink is always ready only with :func:`no_pause`.

Sleeping. Per cycle each helper wakes twice (after the rising edge, at the falling edge), which
costs far more than the simulation of most designs. Two waits skip that work: a source holding a
beat that is not taken sleeps until ``ready`` (or the reset) changes, which is exactly equivalent
(nothing it drives changes meanwhile; the pause generator still advances one step per cycle and
the stalled cycles are counted); a sink made with ``idle_sleep=True`` sleeps while ``valid`` is low
until ``valid`` (or the reset) changes, then sets ``ready`` for the current cycle from its pause
generator (also advanced one step per cycle). The one difference: a sleeping sink's ``ready``
holds its last value instead of following the pauses while no beat is offered, so use
``idle_sleep`` only where the design must ignore ``ready`` while its ``valid`` is low (the stream
rules). Both assume that the design's ``ready``/``valid`` (and the reset) change only in the time
step of a rising edge (synchronous designs driven by these helpers), as the per-cycle sampling
does, and check it: a sleeping helper woken by a change at any other time raises
:class:`StreamProtocolError` rather than sample a cycle late.

Checks. Every wait has a timeout in clock cycles and raises :class:`StreamTimeout` with what
the stream was doing. The sink checks the stream rules on what it receives: once ``valid`` is
seen without ``ready``, ``valid`` must stay high and the payload (and ``last``) must hold until the
transfer; a violation, or an unknown (X/Z) ``valid`` or payload, raises
:class:`StreamProtocolError` from the sink's task, which fails the running cocotb test.
"""

from __future__ import annotations

import itertools
import random
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import (
    Event,
    FallingEdge,
    First,
    RisingEdge,
    SimTimeoutError,
    with_timeout,
)
from cocotb.utils import get_sim_steps, get_sim_time

__all__ = [
    "DEFAULT_TIMEOUT",
    "Beat",
    "StreamPorts",
    "StreamProtocolError",
    "StreamSink",
    "StreamSource",
    "StreamTB",
    "StreamTimeout",
    "cycle_now",
    "fixed_pause",
    "no_pause",
    "pause_from_spec",
    "random_pause",
    "reset",
    "start_clock",
]

#: Default timeout of every wait, in clock cycles without progress.
DEFAULT_TIMEOUT = 10_000


class StreamTimeout(AssertionError):
    """A wait on a stream took longer than its timeout (in clock cycles)."""


class StreamProtocolError(AssertionError):
    """A stream broke the valid/ready rules, or carried an unknown (X/Z) value."""


# --- pause generators ----------------------------------------------------------------------------


def no_pause() -> Iterator[bool]:
    """Never pause: a source offers a beat every cycle it has one, a sink is always ready."""
    return itertools.repeat(False)


def fixed_pause(pattern: Iterable[bool | int]) -> Iterator[bool]:
    """Repeat ``pattern`` (truthy = pause) forever, one element per clock cycle.

    The pattern must hold at least one non-pause cycle, or the stream could never move.
    """
    cycle = [bool(p) for p in pattern]
    if not cycle:
        raise ValueError("Pause pattern must not be empty")
    if all(cycle):
        raise ValueError(f"Pause pattern {pattern!r} pauses every cycle: the stream would stall")
    return itertools.cycle(cycle)


def random_pause(p: float, seed: int) -> Iterator[bool]:
    """Pause each cycle with probability ``p`` (``0 <= p < 1``), from a generator seeded by
    ``seed``: the same seed gives the same pattern, independent of cocotb's random seed."""
    if not 0 <= p < 1:
        raise ValueError(f"Pause probability ({p!r}) must be at least 0 and less than 1")
    rng = random.Random(seed)

    def pauses() -> Iterator[bool]:
        while True:
            yield rng.random() < p

    return pauses()


def pause_from_spec(spec: str | Mapping[str, Any] | None) -> Iterator[bool]:
    """A pause generator from a JSON-friendly description, as testbench parameters carry them.

    ``None``, ``"none"`` or ``{"kind": "none"}``: :func:`no_pause`;
    ``{"kind": "fixed", "pattern": [0, 1, 1]}``: :func:`fixed_pause`;
    ``{"kind": "random", "p": 0.3, "seed": 1}``: :func:`random_pause`.
    """
    if spec is None or spec == "none":
        return no_pause()
    if not isinstance(spec, Mapping) or "kind" not in spec:
        raise ValueError(f"Pause spec {spec!r} must be None, 'none' or a mapping with a 'kind'")
    kind = spec["kind"]
    expected = {"none": set(), "fixed": {"pattern"}, "random": {"p", "seed"}}
    if kind not in expected:
        raise ValueError(f"Pause kind {kind!r} must be one of {', '.join(expected)}")
    keys = set(spec) - {"kind"}
    if keys != expected[kind]:
        raise ValueError(
            f"Pause spec {dict(spec)!r}: kind {kind!r} takes exactly "
            f"{sorted(expected[kind]) or 'no other keys'}"
        )
    if kind == "fixed":
        return fixed_pause(spec["pattern"])
    if kind == "random":
        return random_pause(float(spec["p"]), int(spec["seed"]))
    return no_pause()


# --- clock and reset -----------------------------------------------------------------------------


def start_clock(dut: Any, *, clk: str = "clk", period_ns: int = 10) -> Clock:
    """Start a 50% duty cycle clock of ``period_ns`` nanoseconds on ``dut.<clk>`` and return it."""
    if period_ns <= 0 or period_ns % 2:
        raise ValueError(f"Clock period ({period_ns!r} ns) must be a positive even integer")
    clock = Clock(getattr(dut, clk), period_ns, unit="ns")
    clock.start(start_high=False)
    return clock


async def reset(dut: Any, cycles: int = 2, *, clk: str = "clk", rst: str = "rst") -> None:
    """Hold the synchronous, active-high reset ``dut.<rst>`` for ``cycles`` rising edges of
    ``dut.<clk>`` (which must be running); returns just after the edge that ends the reset."""
    if cycles < 1:
        raise ValueError(f"Reset must last at least one cycle, not {cycles!r}")
    clock, reset_signal = getattr(dut, clk), getattr(dut, rst)
    reset_signal.value = 1
    for _ in range(cycles):
        await RisingEdge(clock)
    reset_signal.value = 0


# --- binding to ports ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Beat:
    """One stream transfer: ``data`` (the payload as an unsigned integer), ``last`` (``tlast``;
    always False on streams without one) and ``cycle``, the clock cycle of the transfer
    (set by the helpers on beats they transferred, ``None`` on beats to send)."""

    data: int
    last: bool = False
    cycle: int | None = None

    @staticmethod
    def frame(values: Iterable[int]) -> list[Beat]:
        """Beats carrying ``values``, with ``last`` set on the final one only."""
        values = list(values)
        if not values:
            raise ValueError("A frame needs at least one beat")
        return [Beat(v, last=i == len(values) - 1) for i, v in enumerate(values)]


class StreamPorts:
    """The handles of one stream of ``dut``, found by ``name`` under either naming.

    ``naming`` is ``"amaranth"`` (``<name>__payload/__valid/__ready``), ``"axis"``
    (``<name>_tdata/_tvalid/_tready``, optional ``_tlast``) or ``"auto"`` (whichever the design
    has). Attributes: ``data``, ``valid``, ``ready``, ``last`` (``None`` when absent), ``width``.
    """

    _SUFFIXES = {
        "amaranth": ("__payload", "__valid", "__ready", None),
        "axis": ("_tdata", "_tvalid", "_tready", "_tlast"),
    }

    def __init__(self, dut: Any, name: str, naming: str = "auto"):
        if naming not in ("auto", *self._SUFFIXES):
            raise ValueError(f"Naming {naming!r} must be 'auto', 'amaranth' or 'axis'")
        candidates = list(self._SUFFIXES) if naming == "auto" else [naming]
        for style in candidates:
            data, valid, ready, last = self._SUFFIXES[style]
            if all(hasattr(dut, name + s) for s in (data, valid, ready)):
                self.naming = style
                self.data = getattr(dut, name + data)
                self.valid = getattr(dut, name + valid)
                self.ready = getattr(dut, name + ready)
                has_last = last is not None and hasattr(dut, name + last)
                self.last = getattr(dut, name + last) if has_last else None
                self.width = len(self.data)
                self.name = name
                return
        tried = " or ".join(
            "/".join(name + suffix for suffix in self._SUFFIXES[s][:3]) for s in candidates
        )
        raise AttributeError(f"Design {dut._name!r} has no stream {name!r} (looked for {tried})")


def _cycle_now(period_steps: int) -> int:
    return int(get_sim_time("step")) // period_steps


def cycle_now(clock: Clock) -> int:
    """The current cycle number of ``clock`` on the helpers' time base (see the module doc)."""
    return _cycle_now(get_sim_steps(clock.period, clock.unit))


def _show(beat: Beat) -> str:
    return f"payload {beat.data:#x}" + (", last" if beat.last else "")


def _bit(handle: Any, what: str) -> int:
    value = handle.value
    try:
        return int(value)
    except ValueError:
        raise StreamProtocolError(f"{what} is unknown ({value})") from None


def _word(handle: Any, what: str) -> int:
    value = handle.value
    try:
        return value.to_unsigned() if hasattr(value, "to_unsigned") else int(value)
    except ValueError:
        raise StreamProtocolError(f"{what} has unknown bits ({value}) while valid") from None


class _StreamHelper:
    def __init__(
        self,
        dut: Any,
        name: str,
        clock: Clock,
        *,
        pause: Iterator[bool] | None,
        timeout: int,
        naming: str,
        reset: Any | None,
    ):
        if timeout < 1:
            raise ValueError(f"Timeout ({timeout!r} cycles) must be at least 1")
        self.ports = StreamPorts(dut, name, naming)
        self.name = name
        self.timeout = timeout
        self._clock = clock
        self._clk = clock.signal
        self._period_steps = get_sim_steps(clock.period, clock.unit)
        self._reset = reset
        self._pause: Iterator[bool] = pause if pause is not None else no_pause()
        self._event = Event()
        #: Sim time (steps) of some rising edge of the clock, once one has passed.
        self._rise_step: int | None = None
        #: While sleeping: the sim time up to which the pause generator has been advanced.
        self._sleep_from: int | None = None

    def set_pause(self, pause: Iterator[bool] | None) -> None:
        """Replace the pause generator (``None``: :func:`no_pause`) from the next cycle on."""
        if self._sleep_from is not None:
            self._catch_up()
        self._pause = pause if pause is not None else no_pause()

    def _rising_edges(self, after: int, upto: int) -> int:
        """Rising edges of the clock in the sim time interval ``(after, upto]`` (steps)."""
        period, rise = self._period_steps, self._rise_step
        return (upto - rise) // period - (after - rise) // period

    def _catch_up(self) -> bool | None:
        """Advance the pause generator one step per rising edge passed while sleeping, as the
        per-cycle loop would have; return the last pause drawn (None when no edge passed)."""
        now = int(get_sim_time("step"))
        last = None
        for _ in range(self._rising_edges(self._sleep_from, now)):
            last = next(self._pause)
        self._sleep_from = now
        return last

    async def _sleep_until_change(self, handle: Any) -> bool | None:
        """Sleep until ``handle`` or the reset changes; return as :meth:`_catch_up`."""
        self._sleep_from = int(get_sim_time("step"))
        trigger = handle.value_change
        if self._reset is not None:
            trigger = First(trigger, self._reset.value_change)
        await trigger
        now = int(get_sim_time("step"))
        if self._rise_step is not None and (now - self._rise_step) % self._period_steps:
            what = handle._name + (" or the reset" if self._reset is not None else "")
            raise StreamProtocolError(
                f"stream {self.name!r}: {what} changed between rising edges (sim step {now}, "
                f"cycle {_cycle_now(self._period_steps)}); these helpers need ready, valid and "
                "the reset to change only at rising edges of the clock")
        last = self._catch_up()
        self._sleep_from = None
        return last

    def _in_reset(self) -> bool:
        return self._reset is not None and bool(_bit(self._reset, "reset"))

    def _describe(self) -> str:
        valid, ready = self.ports.valid.value, self.ports.ready.value
        state = f"valid={valid}, ready={ready} at cycle {_cycle_now(self._period_steps)}"
        if self._reset is not None and str(self._reset.value) != "0":
            state += f"; reset is {self._reset.value}, not released"
        return state

    async def _wait_progress(self, waiting_for: str) -> None:
        """Wait for the next transfer, at most ``timeout`` cycles."""
        self._event.clear()
        try:
            await with_timeout(self._event.wait(), self.timeout * self._period_steps, "step")
        except SimTimeoutError:
            raise StreamTimeout(
                f"{type(self).__name__} {self.name!r}: {waiting_for}, no transfer in "
                f"{self.timeout} clock cycles ({self._describe()})"
            ) from None


class StreamSource(_StreamHelper):
    """Drives the stream ``name`` of ``dut`` (the design's input) with queued beats.

    ``clock`` is the running :class:`cocotb.clock.Clock` of the stream's domain; ``pause`` a
    pause generator (default :func:`no_pause`); ``timeout`` the longest wait, in cycles without a
    transfer; ``reset``, if given, a reset handle: while it is high, ``valid`` is held low.
    ``sent`` lists the transferred beats with their cycles.
    """

    def __init__(
        self,
        dut: Any,
        name: str,
        clock: Clock,
        *,
        pause: Iterator[bool] | None = None,
        timeout: int = DEFAULT_TIMEOUT,
        naming: str = "auto",
        reset: Any | None = None,
    ):
        super().__init__(
            dut, name, clock, pause=pause, timeout=timeout, naming=naming, reset=reset
        )
        self.sent: list[Beat] = []
        self._queue: deque[Beat] = deque()
        self._offered: Beat | None = None
        self._accepted = False
        self._stalled_cycles = 0
        #: While sleeping on a beat not taken: the falling edge (sim steps) where that was seen.
        self._blocked_from: int | None = None
        self.ports.valid.value = 0
        self._task = cocotb.start_soon(self._run())

    @property
    def stalled_cycles(self) -> int:
        """Cycles in which a beat was offered but not taken (backpressure seen by this source)."""
        if self._blocked_from is None:
            return self._stalled_cycles
        now = int(get_sim_time("step"))
        return self._stalled_cycles + (now - self._blocked_from) // self._period_steps

    def _beat(self, beat: int | Beat) -> Beat:
        if isinstance(beat, Beat):
            if beat.last and self.ports.last is None:
                raise ValueError(f"Stream {self.name!r} has no last signal to carry last=True")
        elif isinstance(beat, int) and not isinstance(beat, bool):
            beat = Beat(beat)
        else:
            raise TypeError(f"A beat is an int or a Beat, not {beat!r}")
        if not 0 <= beat.data < 1 << self.ports.width:
            raise ValueError(
                f"Beat {beat.data:#x} does not fit the {self.ports.width}-bit stream {self.name!r}"
            )
        return beat

    def send_nowait(self, beats: Iterable[int | Beat]) -> None:
        """Queue ``beats`` (ints or :class:`Beat`) and return at once."""
        self._queue.extend([self._beat(b) for b in beats])

    async def send(self, beats: Iterable[int | Beat]) -> None:
        """Queue ``beats`` and return once all of them (and all queued before) are transferred.

        Raises :class:`StreamTimeout` when no beat is transferred for ``timeout`` cycles.
        """
        self.send_nowait(beats)
        await self.wait_idle()

    async def wait_idle(self) -> None:
        """Wait until nothing is queued or offered (with the timeout, per transfer)."""
        while not self.idle():
            pending = len(self._queue) + (self._offered is not None)
            await self._wait_progress(f"{pending} beats still to send")

    def idle(self) -> bool:
        """True when no beat is queued and none is being offered."""
        return not self._queue and self._offered is None

    async def _run(self) -> None:
        ports = self.ports
        woke = False
        while True:
            if woke:
                # Woken by a change of ready (or the reset) while holding a beat that was not
                # taken: the rising edges meanwhile changed nothing but the pause generator.
                woke = False
            else:
                await RisingEdge(self._clk)
                if self._rise_step is None:
                    self._rise_step = int(get_sim_time("step"))
                if self._offered is not None and self._accepted:
                    self.sent.append(replace(self._offered, cycle=_cycle_now(self._period_steps)))
                    self._offered = None
                    self._event.set()
                pause = next(self._pause)
                if self._in_reset():
                    if self._offered is not None:
                        self._queue.appendleft(self._offered)
                        self._offered = None
                    ports.valid.value = 0
                elif self._offered is None:
                    if self._queue and not pause:
                        self._offered = self._queue.popleft()
                        ports.data.value = self._offered.data
                        if ports.last is not None:
                            ports.last.value = int(self._offered.last)
                        ports.valid.value = 1
                    else:
                        ports.valid.value = 0
            await FallingEdge(self._clk)
            if self._offered is not None and not self._in_reset():
                self._accepted = bool(_bit(ports.ready, f"stream {self.name!r}: ready"))
                self._stalled_cycles += not self._accepted
            else:
                self._accepted = False
            if self._offered is not None and not self._accepted and not self._in_reset():
                self._blocked_from = int(get_sim_time("step"))
                await self._sleep_until_change(ports.ready)
                self._stalled_cycles = self.stalled_cycles
                self._blocked_from = None
                woke = True


class StreamSink(_StreamHelper):
    """Takes beats from the stream ``name`` of ``dut`` (the design's output).

    ``ready`` follows ``pause`` (default :func:`no_pause`, the only always-ready case).
    Transferred beats, stamped with their cycles, queue up for :meth:`recv` and are also kept
    in ``received`` (all of them, read or not). ``reset``, if given: while it is high nothing is
    taken and nothing is checked.
    """

    def __init__(
        self,
        dut: Any,
        name: str,
        clock: Clock,
        *,
        pause: Iterator[bool] | None = None,
        timeout: int = DEFAULT_TIMEOUT,
        naming: str = "auto",
        reset: Any | None = None,
        idle_sleep: bool = False,
    ):
        super().__init__(
            dut, name, clock, pause=pause, timeout=timeout, naming=naming, reset=reset
        )
        #: Sleep while ``valid`` is low (see the module docstring); may be changed at any time.
        self.idle_sleep = bool(idle_sleep)
        self.received: list[Beat] = []
        self._queue: deque[Beat] = deque()
        self._taking: Beat | None = None
        self._stalled: Beat | None = None
        #: Cycles in which a beat was offered but this sink was not ready (backpressure applied).
        self.stalled_cycles = 0
        self.ports.ready.value = 0
        self._task = cocotb.start_soon(self._run())

    def empty(self) -> bool:
        """True when every received beat has been read by :meth:`recv`."""
        return not self._queue

    def count(self) -> int:
        """Number of received beats not yet read."""
        return len(self._queue)

    def recv_nowait(self) -> Beat | None:
        """The oldest unread beat, or ``None`` when there is none."""
        return self._queue.popleft() if self._queue else None

    async def recv(self) -> Beat:
        """The oldest unread beat, waiting for one at most ``timeout`` cycles."""
        while not self._queue:
            await self._wait_progress(f"waiting for beat {len(self.received) + 1}")
        return self._queue.popleft()

    async def recv_many(self, n: int) -> list[Beat]:
        """The next ``n`` beats (the timeout applies to each)."""
        return [await self.recv() for _ in range(n)]

    async def _run(self) -> None:
        ports = self.ports
        where = f"stream {self.name!r}"
        woke = False
        while True:
            if woke:
                woke = False
            else:
                await RisingEdge(self._clk)
                if self._rise_step is None:
                    self._rise_step = int(get_sim_time("step"))
                if self._taking is not None:
                    beat = replace(self._taking, cycle=_cycle_now(self._period_steps))
                    self._taking = None
                    self.received.append(beat)
                    self._queue.append(beat)
                    self._event.set()
                ports.ready.value = 0 if next(self._pause) else 1
            await FallingEdge(self._clk)
            if self._in_reset():
                self._stalled = None
                continue
            valid = _bit(ports.valid, f"{where}: valid")
            ready = _bit(ports.ready, f"{where}: ready")
            seen = None
            if valid:
                data = _word(ports.data, f"{where}: payload")
                last = bool(_bit(ports.last, f"{where}: last")) if ports.last is not None else False
                seen = Beat(data, last)
            if self._stalled is not None and seen != self._stalled:
                now = "valid low" if seen is None else f"it changed to {_show(seen)}"
                raise StreamProtocolError(
                    f"{where}: {_show(self._stalled)} was offered without ready, then {now} at "
                    f"cycle {_cycle_now(self._period_steps)} before a transfer (valid must stay "
                    "high and the payload hold until ready)"
                )
            self._stalled = seen if valid and not ready else None
            self.stalled_cycles += self._stalled is not None
            if valid and ready:
                self._taking = seen
            elif not valid and self.idle_sleep:
                # Nothing offered: sleep until valid (or the reset) changes, then set ready for
                # the current cycle as the per-cycle loop would have.
                pause = await self._sleep_until_change(ports.valid)
                if pause is not None:
                    ports.ready.value = 0 if pause else 1
                woke = True


class StreamTB:
    """Testbench base in the style of cocotbext-axi: owns the clock, the reset, one source and
    one sink. Subclass it to add the design's own checks.

    The design is held in reset from construction until :meth:`reset` releases it.
    ``source``/``sink`` name the input and output streams (``None`` to leave one out);
    ``source_pause``/``sink_pause`` are pause generators; ``naming`` as for
    :class:`StreamPorts`; ``timeout`` (cycles) applies to every wait of both helpers.
    """

    def __init__(
        self,
        dut: Any,
        *,
        source: str | None = "i_stream",
        sink: str | None = "o_stream",
        clk: str = "clk",
        rst: str = "rst",
        period_ns: int = 10,
        source_pause: Iterator[bool] | None = None,
        sink_pause: Iterator[bool] | None = None,
        naming: str = "auto",
        timeout: int = DEFAULT_TIMEOUT,
    ):
        self.dut = dut
        self._clk_name, self._rst_name = clk, rst
        self.clock = start_clock(dut, clk=clk, period_ns=period_ns)
        rst_handle = getattr(dut, rst)
        rst_handle.value = 1
        self.source = (
            StreamSource(
                dut, source, self.clock,
                pause=source_pause, timeout=timeout, naming=naming, reset=rst_handle,
            )
            if source is not None
            else None
        )
        self.sink = (
            StreamSink(
                dut, sink, self.clock,
                pause=sink_pause, timeout=timeout, naming=naming, reset=rst_handle,
            )
            if sink is not None
            else None
        )

    async def reset(self, cycles: int = 2) -> None:
        """Hold the reset for ``cycles`` rising edges (see :func:`reset`)."""
        await reset(self.dut, cycles, clk=self._clk_name, rst=self._rst_name)

    def cycle_now(self) -> int:
        """The current cycle number, on the time base of the helpers' cycle stamps."""
        return cycle_now(self.clock)

    async def cycles(self, n: int) -> None:
        """Wait ``n`` rising edges of the clock."""
        for _ in range(n):
            await RisingEdge(self.clock.signal)

    async def drain(self, cycles: int) -> list[Beat]:
        """Wait ``cycles`` rising edges, then take every beat the sink received meanwhile (and
        not yet read): the beats that came when nothing more was expected."""
        await self.cycles(cycles)
        extra = []
        while not self.sink.empty():
            extra.append(self.sink.recv_nowait())
        return extra

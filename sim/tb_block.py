"""Generic cocotb testbench of one gateware block with one input and one output stream.

Run through :func:`xnorflow.sim.runner.run_tests` on a Verilator (or Icarus) build of any
:class:`amaranth.lib.wiring.Component` that has an ``i_stream`` and an ``o_stream``
(:mod:`amaranth.lib.stream`, so the ports are ``i_stream__payload/__valid/__ready`` and
``o_stream__payload/__valid/__ready``) and a ``sync`` domain (``clk``, ``rst``), as
``tests/test_sim_blocks.py`` does. Payloads are flat integers, whatever their Amaranth shape or
layout: the caller packs the input beats and the expected output beats with its own reference,
never with the block's code.

Several blocks can share one build (one Verilator compile instead of one per block): a wrapper
with the blocks side by side, each on its own pair of streams (``<name>__payload/__valid/__ready``
for any stream names), a common ``clk`` and ``rst``; ``blocks`` then lists each block's
parameters with its ``name`` and the names of its ``source`` and ``sink`` streams, and the blocks
run at once, each checked as below on its own.

One cocotb test, :func:`test_block`:

1. Reset, then every input beat through a :class:`~xnorflow.sim.streams.StreamSource` pausing by
   ``source_pause``, into a :class:`~xnorflow.sim.streams.StreamSink` pausing by ``sink_pause``.
2. Exactly ``len(expected)`` output beats are received; each is compared bit-exact and in order
   with ``expected``. The first mismatch is reported with its index, the expected and the received
   payload in hex (and the number of mismatches).
3. Drain: the sink stops pausing for ``drain`` cycles and no further beat may come; the sink must
   be empty and the source idle. Unless ``end_idle`` is false, at the end ``o_stream__valid``
   must be 0 and ``i_stream__ready`` 1 (nothing left inside the block).
4. Backpressure: when the sink pauses, it must have held back at least one offered beat
   (``valid & ~ready`` seen); when it does not, it never may have.
5. Timing, only when neither side pauses: the cycle stamps of the helpers (the rising edge that
   completes each transfer; the sink is always ready, so an output beat's stamp is the first
   cycle it is valid, plus the one cycle that every stamp carries) give

   * for each entry of ``latency``: output beat ``out_beat``'s stamp minus input beat
     ``in_beat``'s stamp must equal ``cycles``;
   * with ``ii``: the gaps between the first output beats of consecutive frames
     (``out_beats_per_frame`` beats each), from frame ``ii_skip_frames`` on, must all equal
     ``ii`` (a burst: the whole input is queued at once);
   * with ``out_beat_gap``: every gap between consecutive output beats must equal it.

Parameters (:func:`~xnorflow.sim.runner.tb_params`, a JSON object)
------------------------------------------------------------------
``inputs`` (required)
    The input beats, integers (the raw ``i_stream__payload`` bits).
``expected`` (required)
    The expected output beats, integers (the raw ``o_stream__payload`` bits), in order.
``source_pause``, ``sink_pause``
    Pause specs for :func:`~xnorflow.sim.streams.pause_from_spec` (default none).
``in_width``, ``out_width``
    If given, the payload widths the ports must have (checked first, with a clear message).
``latency``
    ``{"cycles": L, "in_beat": i, "out_beat": j}`` or a list of such (``in_beat`` and
    ``out_beat`` default to the last input beat and the first output beat of the first frame;
    ``in_beats_per_frame`` gives the former, default all inputs).
``in_beats_per_frame``, ``out_beats_per_frame``
    Beats per frame at the input and the output (defaults: all inputs, 1).
``ii``, ``ii_skip_frames``, ``out_beat_gap``
    Expected frame period at the output (cycles), the frames to skip before measuring it
    (default 0: every frame gap), expected gap between output beats.
``timeout``
    The longest wait for any transfer, in cycles (default 1000). The whole test is also limited
    to ``timeout * (len(expected) + 2) + drain`` cycles.
``drain``
    Cycles of the drain (default 100).
``end_idle``
    Check ``o_stream__valid == 0`` and ``i_stream__ready == 1`` after the drain (default true).
``blocks``
    Instead of the keys above (except ``summary``): a list of objects, one per block, each with
    the keys above and ``name`` (its own), ``source`` and ``sink`` (its stream names). The drain
    is the longest of theirs.
``summary``
    Where to write a JSON summary (optional; with ``blocks``, ``{"blocks": {name: summary},
    "passed", "failures"}``, each failure prefixed by its block's name): ``received``,
    ``mismatches``, ``first_mismatch``, ``extra``, ``end_state``, ``latency`` (the measured cycles,
    per entry), ``frame_gaps``, ``beat_gaps``, ``in_cycles`` and ``out_cycles`` (the cycle stamps of
    every transfer), ``source_stalled_cycles``, ``sink_stalled_cycles``, ``timed``, ``passed``,
    ``failures``. It is written before the verdict, also when the test fails.
"""

from __future__ import annotations

import json
from itertools import pairwise
from pathlib import Path

import cocotb
from cocotb.triggers import FallingEdge, RisingEdge

from xnorflow.sim.runner import tb_params
from xnorflow.sim.streams import (
    StreamSink,
    StreamSource,
    StreamTimeout,
    no_pause,
    pause_from_spec,
    reset,
    start_clock,
)

PARAMS = tb_params()
PERIOD_NS = 10


def _pausing(spec) -> bool:
    return not (spec is None or spec == "none" or spec.get("kind") == "none")


def _block_specs(params: dict) -> list[dict]:
    """One entry per block: ``blocks`` as given, or the parameters themselves for the one block
    on ``i_stream`` / ``o_stream``."""
    if "blocks" in params:
        return [dict(b) for b in params["blocks"]]
    return [dict(params, name=None, source="i_stream", sink="o_stream")]


def _time_limit_ns(params: dict) -> int | None:
    """A limit on the whole test (simulated time): what the per-wait timeouts allow, plus margin
    (the blocks run side by side, so the longest of them)."""
    if not params:
        return None
    try:
        cycles = max(int(b.get("timeout", 1000)) * (len(b["expected"]) + 2)
                     + int(b.get("drain", 100)) for b in _block_specs(params)) + 1000
    except (KeyError, TypeError, ValueError, AttributeError):
        return None  # the test itself reports what is wrong with the parameters
    return cycles * PERIOD_NS


def _hex(value: int, width: int) -> str:
    return f"{value:#0{(width + 3) // 4 + 2}x}"


def _latency_checks(params: dict) -> list[dict]:
    spec = params.get("latency")
    if spec is None:
        return []
    entries = spec if isinstance(spec, list) else [spec]
    last_in = int(params.get("in_beats_per_frame", len(params["inputs"]))) - 1
    return [{"cycles": int(e["cycles"]), "in_beat": int(e.get("in_beat", last_in)),
             "out_beat": int(e.get("out_beat", 0))} for e in entries]


class _Block:
    """One block under test: its source and sink, its transfers and its verdict."""

    def __init__(self, dut, clock, params: dict):
        self.dut, self.params = dut, params
        self.name = params.get("name")
        self.source_name, self.sink_name = params["source"], params["sink"]
        self.inputs = [int(v) for v in params["inputs"]]
        self.expected = [int(v) for v in params["expected"]]
        self.source_spec, self.sink_spec = params.get("source_pause"), params.get("sink_pause")
        self.timed = not _pausing(self.source_spec) and not _pausing(self.sink_spec)
        timeout = int(params.get("timeout", 1000))
        self.source = StreamSource(dut, self.source_name, clock, timeout=timeout,
                                   naming="amaranth", reset=dut.rst,
                                   pause=pause_from_spec(self.source_spec))
        self.sink = StreamSink(dut, self.sink_name, clock, timeout=timeout, naming="amaranth",
                               reset=dut.rst, pause=pause_from_spec(self.sink_spec))
        self.in_width, self.out_width = self.source.ports.width, self.sink.ports.width
        where = f"{self.name}: " if self.name else ""
        for key, want, got in (("in_width", params.get("in_width"), self.in_width),
                               ("out_width", params.get("out_width"), self.out_width)):
            assert want is None or int(want) == got, (
                f"{where}{key}: the design's payload is {got} bits, the test expects {want}")
        if not self.expected:
            raise ValueError(f"{where}no expected output beats: the test would check nothing")
        self.failures: list[str] = []
        self.received = []

    async def run(self) -> None:
        """Send every input beat, take exactly the expected number of output beats."""
        self.source.send_nowait(self.inputs)
        try:
            for _ in self.expected:
                self.received.append(await self.sink.recv())
            await self.source.wait_idle()
        except StreamTimeout as exc:
            self.failures.append(f"after {len(self.received)} of {len(self.expected)} output "
                                 f"beats ({len(self.source.sent)} of {len(self.inputs)} input "
                                 f"beats sent): {exc}")

    def end_state(self) -> dict:
        return {f"{self.sink_name}__valid": int(self.dut_port(self.sink_name, "valid")),
                f"{self.source_name}__ready": int(self.dut_port(self.source_name, "ready"))}

    def dut_port(self, stream: str, member: str) -> int:
        return int(getattr(self.dut, f"{stream}__{member}").value)

    def verdict(self, extra, end_state) -> dict:
        """Every check of the module docstring; the summary (``failures`` empty: passed)."""
        params, expected, out_width = self.params, self.expected, self.out_width
        failures = self.failures
        got = [b.data for b in self.received]
        mismatches = [i for i, (e, g) in enumerate(zip(expected, got, strict=False)) if e != g]
        first = None
        if mismatches:
            i = mismatches[0]
            first = {"index": i, "expected": _hex(expected[i], out_width),
                     "got": _hex(got[i], out_width)}
            failures.append(f"{len(mismatches)} of {len(got)} output beats differ; first at "
                            f"beat {i}: expected {first['expected']}, got {first['got']}")
        if len(got) != len(expected):
            failures.append(f"{len(got)} output beats received, {len(expected)} expected")
        if extra:
            failures.append(f"{len(extra)} extra output beats after the expected ones (first: "
                            f"{_hex(extra[0].data, out_width)} at cycle {extra[0].cycle})")
        if not self.sink.empty() or not self.source.idle():
            failures.append("beats left over in the sink or the source after the drain")
        idle = {f"{self.sink_name}__valid": 0, f"{self.source_name}__ready": 1}
        if params.get("end_idle", True) and end_state != idle:
            failures.append(f"not idle after the drain: {end_state}")

        sink_stalled = self.sink.stalled_cycles
        if _pausing(self.sink_spec) and sink_stalled == 0:
            failures.append("the sink pauses but never held back an offered beat")
        if not _pausing(self.sink_spec) and sink_stalled != 0:
            failures.append(f"the sink never pauses but held back beats for {sink_stalled} "
                            "cycles")

        # Timing (no pauses on either side): the cycle stamps of the transfers.
        in_cycles = [b.cycle for b in self.source.sent]
        out_cycles = [b.cycle for b in self.received]
        beat_gaps = [b - a for a, b in pairwise(out_cycles)]
        per_frame = int(params.get("out_beats_per_frame", 1))
        frame_gaps = [b - a for a, b in pairwise(out_cycles[::per_frame])]
        measured_latency = []
        if self.timed and len(got) == len(expected) and len(in_cycles) == len(self.inputs):
            for check in _latency_checks(params):
                cycles = out_cycles[check["out_beat"]] - in_cycles[check["in_beat"]]
                measured_latency.append(dict(check, measured=cycles))
                if cycles != check["cycles"]:
                    failures.append(f"latency from input beat {check['in_beat']} to output beat "
                                    f"{check['out_beat']}: {cycles} cycles, expected "
                                    f"{check['cycles']}")
            if params.get("ii") is not None:
                steady = frame_gaps[int(params.get("ii_skip_frames", 0)):]
                if not steady:
                    failures.append("too few frames to measure the II")
                elif any(g != int(params["ii"]) for g in steady):
                    failures.append(f"II: frame gaps {frame_gaps} cycles, expected "
                                    f"{params['ii']}")
            if params.get("out_beat_gap") is not None:
                if any(g != int(params["out_beat_gap"]) for g in beat_gaps):
                    failures.append(f"output beat gaps {beat_gaps} cycles, expected all "
                                    f"{params['out_beat_gap']}")
        self.dut._log.info("%s%d/%d beats, %d mismatches; latency %s; frame gaps %s; stalls "
                           "source %d sink %d", f"{self.name}: " if self.name else "", len(got),
                           len(expected), len(mismatches), measured_latency, frame_gaps,
                           self.source.stalled_cycles, sink_stalled)
        return {
            "received": len(got), "expected": len(expected), "mismatches": len(mismatches),
            "first_mismatch": first, "extra": len(extra), "end_state": end_state,
            "timed": self.timed, "latency": measured_latency, "frame_gaps": frame_gaps,
            "beat_gaps": beat_gaps, "in_cycles": in_cycles, "out_cycles": out_cycles,
            "source_stalled_cycles": self.source.stalled_cycles,
            "sink_stalled_cycles": sink_stalled, "passed": not failures,
            "failures": list(failures),
        }


@cocotb.test(timeout_time=_time_limit_ns(PARAMS), timeout_unit="ns")
async def test_block(dut):
    """All input beats in, exactly the expected output beats out (bit-exact, in order), nothing
    more after a drain, nothing left inside; II and latency as expected when nothing pauses.
    Every block of ``blocks`` at once, each on its own streams."""
    params = PARAMS
    clock = start_clock(dut, period_ns=PERIOD_NS)
    dut.rst.value = 1
    blocks = [_Block(dut, clock, spec) for spec in _block_specs(params)]
    names = [b.name for b in blocks]
    if len(blocks) > 1 and (None in names or len(set(names)) != len(names)):
        raise ValueError(f"every block needs a name of its own, not {names}")
    await reset(dut)
    tasks = [cocotb.start_soon(block.run()) for block in blocks]
    for task in tasks:
        await task

    # Drain: nothing more may come out, even with the sinks always ready.
    for block in blocks:
        block.sink.set_pause(no_pause())
    for _ in range(max(int(b.params.get("drain", 100)) for b in blocks)):
        await RisingEdge(clock.signal)
    await FallingEdge(clock.signal)
    summaries = {}
    for block in blocks:
        extra = []
        while not block.sink.empty():
            extra.append(block.sink.recv_nowait())
        summaries[block.name] = block.verdict(extra, block.end_state())

    failures = [f"{name}: {f}" if name else f
                for name, s in summaries.items() for f in s["failures"]]
    if params.get("summary"):
        if "blocks" in params:
            summary = {"blocks": summaries, "passed": not failures, "failures": failures}
        else:
            summary = summaries[None]
        Path(params["summary"]).write_text(json.dumps(summary) + "\n")
    assert not failures, "; ".join(failures)

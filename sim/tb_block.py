"""Generic cocotb testbench of one gateware block with one input and one output stream.

Run through :func:`xnorflow.sim.runner.run_tests` on a Verilator (or Icarus) build of any
:class:`amaranth.lib.wiring.Component` that has an ``i_stream`` and an ``o_stream``
(:mod:`amaranth.lib.stream`, so the ports are ``i_stream__payload/__valid/__ready`` and
``o_stream__payload/__valid/__ready``) and a ``sync`` domain (``clk``, ``rst``), as
``tests/test_sim_blocks.py`` does. Payloads are flat integers, whatever their Amaranth shape or
layout: the caller packs the input beats and the expected output beats with its own reference,
never with the block's code.

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
``summary``
    Where to write a JSON summary (optional): ``received``, ``mismatches``,
    ``first_mismatch``, ``extra``, ``end_state``, ``latency`` (the measured cycles, per entry),
    ``frame_gaps``, ``beat_gaps``, ``in_cycles`` and ``out_cycles`` (the cycle stamps of every
    transfer), ``source_stalled_cycles``, ``sink_stalled_cycles``, ``timed``, ``passed``,
    ``failures``. It is written before the verdict, also when the test fails.
"""

from __future__ import annotations

import json
from itertools import pairwise
from pathlib import Path

import cocotb
from cocotb.triggers import FallingEdge

from xnorflow.sim.runner import tb_params
from xnorflow.sim.streams import StreamTB, StreamTimeout, no_pause, pause_from_spec

PARAMS = tb_params()
PERIOD_NS = 10


def _pausing(spec) -> bool:
    return not (spec is None or spec == "none" or spec.get("kind") == "none")


def _time_limit_ns(params: dict) -> int | None:
    """A limit on the whole test (simulated time): what the per-wait timeouts allow, plus margin."""
    if not params:
        return None
    try:
        cycles = int(params.get("timeout", 1000)) * (len(params["expected"]) + 2)
        cycles += int(params.get("drain", 100)) + 1000
    except (KeyError, TypeError, ValueError):
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


@cocotb.test(timeout_time=_time_limit_ns(PARAMS), timeout_unit="ns")
async def test_block(dut):
    """All input beats in, exactly the expected output beats out (bit-exact, in order), nothing
    more after a drain, nothing left inside; II and latency as expected when nothing pauses."""
    params = PARAMS
    inputs = [int(v) for v in params["inputs"]]
    expected = [int(v) for v in params["expected"]]
    source_spec, sink_spec = params.get("source_pause"), params.get("sink_pause")
    timeout = int(params.get("timeout", 1000))
    drain = int(params.get("drain", 100))
    timed = not _pausing(source_spec) and not _pausing(sink_spec)

    tb = StreamTB(dut, source="i_stream", sink="o_stream", naming="amaranth",
                  period_ns=PERIOD_NS, source_pause=pause_from_spec(source_spec),
                  sink_pause=pause_from_spec(sink_spec), timeout=timeout)
    in_width, out_width = tb.source.ports.width, tb.sink.ports.width
    for name, want, got in (("in_width", params.get("in_width"), in_width),
                            ("out_width", params.get("out_width"), out_width)):
        assert want is None or int(want) == got, (
            f"{name}: the design's payload is {got} bits, the test expects {want}")
    if not expected:
        raise ValueError("no expected output beats: the test would check nothing")

    failures: list[str] = []
    await tb.reset()
    tb.source.send_nowait(inputs)
    received = []
    try:
        for _ in expected:
            received.append(await tb.sink.recv())
        await tb.source.wait_idle()
    except StreamTimeout as exc:
        failures.append(f"after {len(received)} of {len(expected)} output beats "
                        f"({len(tb.source.sent)} of {len(inputs)} input beats sent): {exc}")

    # Drain: nothing more may come out, even with the sink always ready.
    tb.sink.set_pause(no_pause())
    extra = await tb.drain(drain)
    await FallingEdge(tb.clock.signal)
    end_state = {"o_stream__valid": int(dut.o_stream__valid.value),
                 "i_stream__ready": int(dut.i_stream__ready.value)}

    got = [b.data for b in received]
    mismatches = [i for i, (e, g) in enumerate(zip(expected, got, strict=False)) if e != g]
    first = None
    if mismatches:
        i = mismatches[0]
        first = {"index": i, "expected": _hex(expected[i], out_width),
                 "got": _hex(got[i], out_width)}
        failures.append(f"{len(mismatches)} of {len(got)} output beats differ; first at beat "
                        f"{i}: expected {first['expected']}, got {first['got']}")
    if len(got) != len(expected):
        failures.append(f"{len(got)} output beats received, {len(expected)} expected")
    if extra:
        failures.append(f"{len(extra)} extra output beats after the expected ones (first: "
                        f"{_hex(extra[0].data, out_width)} at cycle {extra[0].cycle})")
    if not tb.sink.empty() or not tb.source.idle():
        failures.append("beats left over in the sink or the source after the drain")
    if params.get("end_idle", True) and end_state != {"o_stream__valid": 0,
                                                      "i_stream__ready": 1}:
        failures.append(f"not idle after the drain: {end_state}")

    sink_stalled = tb.sink.stalled_cycles
    if _pausing(sink_spec) and sink_stalled == 0:
        failures.append("the sink pauses but never held back an offered beat")
    if not _pausing(sink_spec) and sink_stalled != 0:
        failures.append(f"the sink never pauses but held back beats for {sink_stalled} cycles")

    # Timing (no pauses on either side): the cycle stamps of the transfers.
    in_cycles = [b.cycle for b in tb.source.sent]
    out_cycles = [b.cycle for b in received]
    beat_gaps = [b - a for a, b in pairwise(out_cycles)]
    per_frame = int(params.get("out_beats_per_frame", 1))
    frame_gaps = [b - a for a, b in pairwise(out_cycles[::per_frame])]
    measured_latency = []
    if timed and len(received) == len(expected) and len(in_cycles) == len(inputs):
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
                failures.append(f"II: frame gaps {frame_gaps} cycles, expected {params['ii']}")
        if params.get("out_beat_gap") is not None:
            if any(g != int(params["out_beat_gap"]) for g in beat_gaps):
                failures.append(f"output beat gaps {beat_gaps} cycles, expected all "
                                f"{params['out_beat_gap']}")
    dut._log.info("%d/%d beats, %d mismatches; latency %s; frame gaps %s; stalls source %d "
                  "sink %d", len(got), len(expected), len(mismatches), measured_latency,
                  frame_gaps, tb.source.stalled_cycles, sink_stalled)

    if params.get("summary"):
        summary = {
            "received": len(got), "expected": len(expected), "mismatches": len(mismatches),
            "first_mismatch": first, "extra": len(extra), "end_state": end_state,
            "timed": timed, "latency": measured_latency, "frame_gaps": frame_gaps,
            "beat_gaps": beat_gaps, "in_cycles": in_cycles, "out_cycles": out_cycles,
            "source_stalled_cycles": tb.source.stalled_cycles,
            "sink_stalled_cycles": sink_stalled, "passed": not failures, "failures": failures,
        }
        Path(params["summary"]).write_text(json.dumps(summary) + "\n")
    assert not failures, "; ".join(failures)

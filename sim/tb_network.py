"""cocotb testbench of the generated accelerator top (``xnorflow_top``) against the golden model.

Run through :func:`xnorflow.sim.runner.run_tests` on a build of the Verilog that
:func:`xnorflow.hw.tops.network.generate` writes (``xnorflow simulate`` and
``tests/test_sim_network.py`` do). One cocotb test, :func:`test_network`, in three phases:

1. **Latency.** Right after reset, no pauses on either side: frame 0 alone into the idle network;
   ``latency_cycles`` is the cycle of its result on ``m_axis`` (valid, and taken at once since
   ``m_axis_tready`` is high) minus the cycle of the handshake of its first ``s_axis`` beat, the
   manifest's definition (``performance.latency_definition``).
2. **Initiation interval.** Still no pauses: ``timing_frames`` frames back to back;
   ``ii_gaps`` are the cycles between consecutive result beats and ``ii_cycles`` the mean of
   the last three (or fewer) gaps, the steady state. Then a drain (below).
3. **Stream.** Every frame, as ``N0/SIMD0`` beats with ``tlast`` on each frame's last beat, through
   a :class:`~xnorflow.sim.streams.StreamSource` pausing by ``source_pause``, into a
   :class:`~xnorflow.sim.streams.StreamSink` pausing by ``sink_pause``; exactly one result per
   frame expected, then a **drain**: the sink stops pausing for ``2*II + latency + 20`` cycles
   and no further beat may come. At the end nothing may be left inside: ``s_axis_tready`` high,
   ``m_axis_tvalid`` low, ``frame_error`` low.

Every result (of all phases) is decoded by the manifest's ``m_axis_tdata`` layout and compared
bit-exact (class and every score; zero padding; ``m_axis_tlast`` 1) with
:class:`~xnorflow.golden.GoldenModel` run once, up front, on the same frames; see
:mod:`xnorflow.sim.network_results` for ``mismatches``, ``lost``, ``duplicated``, ``reordered``
and ``corrupted``. Measured II and latency must equal the manifest's predictions exactly: the
constant stated in :mod:`xnorflow.hw.tops.network` ("Both equal the simulated cycles exactly") is 0.

Per cycle the testbench adds no Python work to what the stream helpers do; it waits on their
events (one per result beat), and the helpers sleep through the cycles in which nothing can move
(the source while its beat is refused, the sink while no result is offered).

Parameters (:func:`~xnorflow.sim.runner.tb_params`, a JSON object)
------------------------------------------------------------------
``model`` (required)
    Path of the model file (``.npz``).
``manifest`` (required)
    Path of the ``manifest.json`` written with the Verilog, or the manifest itself (an object):
    the ``s_axis`` lanes and beats, the ``m_axis_tdata`` layout and
    ``performance.ii_cycles`` / ``latency_cycles``, the expected values. Its ``model_hash``
    must be the model's.
``frames``
    Path of a ``.npy`` file of ``uint8`` frames, shape ``(B, N0)``; or leave it out and give
    ``count`` (default: all) frames from ``data`` (``null`` or ``"embedded"``: the embedded test
    split; a directory: MNIST IDX files; ``"random"``: random pixels from ``seed``).
``labels``
    Path of a ``.npy`` of the frames' labels (optional; with ``data`` the dataset's labels):
    adds ``accuracy``, ``golden_accuracy`` and ``per_class_accuracy`` to the summary.
``source_pause``, ``sink_pause``
    Pause specs (:func:`~xnorflow.sim.streams.pause_from_spec`) of phase 3; default none.
``seed``
    Seed of ``data: "random"`` (default 0).
``timing_frames``
    Frames of phase 2 (default 8; taken from the first frames, repeated when fewer); 0 skips
    phases 1 and 2, and nothing is measured.
``timeout_cycles``
    The longest wait for any transfer (default: ``4*(latency + II + N0/SIMD0) + 1000``, scaled
    by the pauses). The whole test also has a time limit from the expected cycle count.
``sink_idle_sleep``
    Let the sink sleep while ``m_axis_tvalid`` is low (default true; see
    :mod:`xnorflow.sim.streams`): ``m_axis_tready`` then follows ``sink_pause`` only while a
    result is offered, which the stream rules allow and which makes long runs several times
    faster. False: it follows the pauses in every cycle.
``progress_every``
    Log ``xnorflow-progress <done>/<frames> frames`` every this many results (default: about
    every 2 % of the frames); ``xnorflow simulate`` follows the log.
``summary``
    Where to write the JSON summary (optional): ``frames``, ``received``, ``mismatches`` and the
    other counts, ``ii_cycles``, ``ii_gaps``, ``latency_cycles``, ``predicted_ii``,
    ``predicted_latency``, ``sim_cycles`` (after reset), ``transfers_sha256`` (a digest of every
    beat on both streams with its cycle counted from the end of the reset), ``wall_s`` (the
    test's wall time), ``sim_cycles_per_s``, ``end_state``, ``predictions`` (the RTL classes,
    in frame order), with labels ``accuracy``, ``golden_accuracy``, ``per_class_accuracy``;
    ``passed`` and ``failures``. It is written before the test's verdict, also when it fails.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from pathlib import Path

import cocotb
import numpy as np
from cocotb.triggers import FallingEdge

from xnorflow.sim.network_results import ResultLayout, compare, frame_beats
from xnorflow.sim.runner import tb_params
from xnorflow.sim.streams import (
    Beat,
    StreamTB,
    StreamTimeout,
    no_pause,
    pause_from_spec,
)

PARAMS = tb_params()
PERIOD_NS = 10
PROGRESS_TAG = "xnorflow-progress"


def _manifest(params: dict) -> dict:
    manifest = params["manifest"]
    if isinstance(manifest, dict):
        return manifest
    return json.loads(Path(manifest).read_text())


def _pause_fraction(spec) -> float:
    """The fraction of cycles a pause spec pauses (0 for none)."""
    if spec is None or spec == "none" or spec.get("kind") == "none":
        return 0.0
    if spec["kind"] == "random":
        return float(spec["p"])
    pattern = [bool(p) for p in spec["pattern"]]
    return sum(pattern) / len(pattern)


def _cycles_per_frame(manifest: dict, params: dict) -> float:
    """An upper estimate of the cycles per frame of phase 3 under its pauses."""
    perf, beats = manifest["performance"], manifest["s_axis"]["beats_per_frame"]
    p_in = _pause_fraction(params.get("source_pause"))
    p_out = _pause_fraction(params.get("sink_pause"))
    return max(perf["ii_cycles"], beats / (1 - p_in), 1 / (1 - p_out))


def _timeout_cycles(manifest: dict, params: dict) -> int:
    if "timeout_cycles" in params:
        return int(params["timeout_cycles"])
    perf, beats = manifest["performance"], manifest["s_axis"]["beats_per_frame"]
    slack = 1 / ((1 - _pause_fraction(params.get("source_pause")))
                 * (1 - _pause_fraction(params.get("sink_pause"))))
    return math.ceil(slack * (4 * (perf["latency_cycles"] + perf["ii_cycles"] + beats) + 1000))


def _test_time_limit_ns(params: dict) -> int | None:
    """A limit on the whole test in simulated ns: ten times the expected cycles plus margin."""
    if not params:
        return None
    try:
        manifest = _manifest(params)
        if params.get("frames"):
            count = np.load(params["frames"], mmap_mode="r").shape[0]
        else:
            count = int(params.get("count") or 10_000)
        perf = manifest["performance"]
        timing = int(params.get("timing_frames", 8))
        cycles = (count + timing + 2) * _cycles_per_frame(manifest, params) \
            + 3 * perf["latency_cycles"] + 4 * perf["ii_cycles"]
        return int(10 * cycles + 100_000) * PERIOD_NS
    except (OSError, KeyError, ValueError, TypeError):
        return None  # the test itself reports what is wrong with the parameters


def _load_frames(params: dict, model):
    """``(frames uint8 (B, N0), labels or None, source name)`` from the parameters."""
    from xnorflow.data import load

    labels = None
    if params.get("frames"):
        frames = np.load(params["frames"])
        if params.get("labels"):
            labels = np.load(params["labels"])
        source = Path(params["frames"]).name
    elif params.get("data") == "random":
        rng = np.random.default_rng(int(params.get("seed", 0)))
        frames = rng.integers(0, 256, (int(params["count"]), model.in_features), dtype=np.uint8)
        source = f"random (seed {int(params.get('seed', 0))})"
    else:
        data = params.get("data")
        ds = load(None if data in (None, "embedded") else data, "test")
        if params.get("count") is not None:
            ds = ds.subset(int(params["count"]))
        frames, labels, source = ds.images, ds.labels, ds.name
    if frames.dtype != np.uint8 or frames.ndim != 2 or frames.shape[1] != model.in_features:
        raise ValueError(f"frames must be uint8 of shape (B, {model.in_features}), got "
                         f"{frames.dtype} {frames.shape}")
    if len(frames) == 0:
        raise ValueError("no frames to simulate")
    if labels is not None and len(labels) != len(frames):
        raise ValueError(f"{len(labels)} labels for {len(frames)} frames")
    return frames, labels, source


class _Results:
    """Decodes the sink's beats and keeps the raw-word checks (tlast, padding)."""

    def __init__(self, layout: ResultLayout):
        self.layout = layout
        self.bad_tlast = 0
        self.bad_padding = 0

    def decode(self, beats: list[Beat]) -> list[tuple]:
        out = []
        for beat in beats:
            self.bad_tlast += not beat.last
            self.bad_padding += self.layout.padding(beat.data) != 0
            out.append(self.layout.decode(beat.data))
        return out


@cocotb.test(timeout_time=_test_time_limit_ns(PARAMS), timeout_unit="ns")
async def test_network(dut):
    """Frames through the generated top under pauses: bit-exact against the golden model, each
    frame out once and in order, nothing left inside, II and latency as predicted."""
    from xnorflow.golden import GoldenModel
    from xnorflow.model import Model

    wall_start = time.perf_counter()
    params = PARAMS
    model = Model.load(params["model"])
    manifest = _manifest(params)
    if manifest["model_hash"] != model.content_hash:
        raise ValueError(f"the manifest is for model {manifest['model_hash'][:16]}, the model "
                         f"file is {model.content_hash[:16]}")
    frames, labels, source_name = _load_frames(params, model)
    perf, s_axis = manifest["performance"], manifest["s_axis"]
    predicted_ii, predicted_latency = perf["ii_cycles"], perf["latency_cycles"]
    layout = ResultLayout.from_manifest(manifest)
    lanes, beats_per_frame = s_axis["lanes"], s_axis["beats_per_frame"]
    timing = int(params.get("timing_frames", 8))
    count = len(frames)
    every = int(params.get("progress_every") or max(1, count // 50))

    # Golden results once, up front; input words once.
    golden = GoldenModel(model).run(frames)
    expected = [(int(c), tuple(int(s) for s in row) if layout.with_scores else ())
                for c, row in zip(golden.classes, golden.scores, strict=True)]
    words = frame_beats(frames, lanes)
    assert all(len(w) == beats_per_frame for w in words)

    def beats_of(indices):
        return [Beat(w, last=k == beats_per_frame - 1)
                for i in indices for k, w in enumerate(words[i])]

    timeout = _timeout_cycles(manifest, params)
    drain = 2 * predicted_ii + predicted_latency + 20
    tb = StreamTB(dut, source="s_axis", sink="m_axis", naming="axis", period_ns=PERIOD_NS,
                  source_pause=no_pause(), sink_pause=no_pause(), timeout=timeout)
    tb.sink.idle_sleep = bool(params.get("sink_idle_sleep", True))
    results = _Results(layout)
    failures = []
    await tb.reset()
    start_cycle = tb.cycle_now()
    dut._log.info("%s: %d frames from %s; predicted II %d, latency %d cycles; timeout %d cycles",
                  manifest["top"], count, source_name, predicted_ii, predicted_latency, timeout)

    # Phases 1 and 2: latency of an isolated frame, II of a burst; no pauses.
    latency = ii = None
    gaps = []
    timing_cmp = None
    if timing:
        tb.source.send_nowait(beats_of([0]))
        first = await tb.sink.recv()
        latency = first.cycle - tb.source.sent[0].cycle
        await tb.source.wait_idle()
        await tb.cycles(2)
        burst = [i % count for i in range(timing)]
        tb.source.send_nowait(beats_of(burst))
        got = [await tb.sink.recv() for _ in burst]
        gaps = [b.cycle - a.cycle for a, b in zip(got, got[1:], strict=False)]
        tail = gaps[-3:]
        if tail:
            ii = sum(tail) / len(tail)
            ii = int(ii) if ii == int(ii) else round(ii, 3)
        extra = await tb.drain(drain)
        if extra:
            failures.append(f"{len(extra)} extra result beats after the timing burst")
        timing_cmp = compare([expected[0]] + [expected[i] for i in burst],
                             results.decode([first, *got, *extra]))
        if not timing_cmp.ok:
            failures.append(f"timing phase: {timing_cmp.mismatches} of {timing_cmp.frames} "
                            f"results wrong or missing ({timing_cmp.first_mismatch})")
        if latency != predicted_latency:
            failures.append(f"latency {latency} cycles, predicted {predicted_latency}")
        if tail and any(g != predicted_ii for g in tail):
            failures.append(f"II: last result gaps {tail} cycles, predicted {predicted_ii}")
        dut._log.info("latency %s cycles (predicted %d), II %s cycles (predicted %d), gaps %s",
                      latency, predicted_latency, ii, predicted_ii, gaps)

    # Phase 3: every frame under the pauses.
    tb.source.set_pause(pause_from_spec(params.get("source_pause")))
    tb.sink.set_pause(pause_from_spec(params.get("sink_pause")))
    sent_before = len(tb.source.sent)
    src_stall0, sink_stall0 = tb.source.stalled_cycles, tb.sink.stalled_cycles
    stream_start = tb.cycle_now()
    tb.source.send_nowait(beats_of(range(count)))
    got = []
    try:
        for done in range(1, count + 1):
            got.append(await tb.sink.recv())
            if done % every == 0 or done == count:
                dut._log.info("%s %d/%d frames", PROGRESS_TAG, done, count)
        await tb.source.wait_idle()
    except StreamTimeout as exc:
        failures.append(f"after {len(got)} of {count} results: {exc}")
    stream_cycles = tb.cycle_now() - stream_start
    tb.sink.set_pause(no_pause())
    extra = await tb.drain(drain)
    await FallingEdge(tb.clock.signal)
    end_state = {name: int(getattr(dut, name).value)
                 for name in ("s_axis_tready", "m_axis_tvalid", "frame_error")}
    sim_cycles = tb.cycle_now() - start_cycle

    received = results.decode(got + extra)
    cmp = compare(expected, received)
    if not cmp.ok:
        failures.append(f"{cmp.mismatches} of {count} frames wrong or missing "
                        f"({cmp.received} results: lost {cmp.lost}, duplicated "
                        f"{cmp.duplicated}, reordered {cmp.reordered}, corrupted "
                        f"{cmp.corrupted}); first: {cmp.first_mismatch}")
    if extra:
        failures.append(f"{len(extra)} result beats beyond one per frame (in the drain)")
    if len(tb.source.sent) - sent_before != count * beats_per_frame:
        failures.append(f"{len(tb.source.sent) - sent_before} input beats taken, "
                        f"{count * beats_per_frame} sent")
    if results.bad_tlast:
        failures.append(f"{results.bad_tlast} result beats with m_axis_tlast 0")
    if results.bad_padding:
        failures.append(f"{results.bad_padding} result beats with padding bits set")
    if end_state != {"s_axis_tready": 1, "m_axis_tvalid": 0, "frame_error": 0}:
        failures.append(f"left inside at the end: {end_state} (expected s_axis_tready 1, "
                        "m_axis_tvalid 0, frame_error 0)")

    # Every transfer on both streams with its cycle: equal digests, equal cycle-level behaviour
    # (how two builds of one design, e.g. with and without xnorflow.sim.fast_top, are compared).
    trace = hashlib.sha256()
    for side, beats in (("s", tb.source.sent), ("m", tb.sink.received)):
        for beat in beats:
            trace.update(f"{side} {beat.cycle - start_cycle} {beat.data:x} {int(beat.last)}\n"
                         .encode())
    wall = time.perf_counter() - wall_start
    predictions = [r[0] for r in received[:count]]
    summary = {
        "top": manifest["top"], "model_hash": model.content_hash, "source": source_name,
        **cmp.to_dict(),
        "extra_after_drain": len(extra),
        "timing_frames": timing if timing else 0,
        "timing_mismatches": timing_cmp.mismatches if timing_cmp else 0,
        "ii_cycles": ii, "ii_gaps": gaps, "latency_cycles": latency,
        "predicted_ii": predicted_ii, "predicted_latency": predicted_latency,
        "source_pause": params.get("source_pause"), "sink_pause": params.get("sink_pause"),
        "stream_cycles": stream_cycles,
        "source_stalled_cycles": tb.source.stalled_cycles - src_stall0,
        "sink_stalled_cycles": tb.sink.stalled_cycles - sink_stall0,
        "sim_cycles": sim_cycles, "transfers_sha256": trace.hexdigest(),
        "wall_s": round(wall, 3),
        "sim_cycles_per_s": round(sim_cycles / wall, 1) if wall > 0 else None,
        "end_state": end_state,
        "predictions": predictions,
    }
    if labels is not None:
        labels = np.asarray(labels, dtype=np.int64)
        rtl = np.full(count, -1, dtype=np.int64)
        rtl[:len(predictions)] = predictions
        summary["accuracy"] = float((rtl == labels).mean())
        summary["golden_accuracy"] = float((golden.classes == labels).mean())
        summary["per_class_accuracy"] = {
            str(int(c)): float((rtl[labels == c] == c).mean()) for c in np.unique(labels)}
    summary["passed"] = not failures
    summary["failures"] = failures
    if params.get("summary"):
        Path(params["summary"]).write_text(json.dumps(summary) + "\n")
    dut._log.info("%d frames, %d mismatches, %d sim cycles in %.1f s (%.0f cycles/s)", count,
                  cmp.mismatches, sim_cycles, wall, summary["sim_cycles_per_s"] or 0)
    assert not failures, "; ".join(failures)

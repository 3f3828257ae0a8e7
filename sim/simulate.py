"""Simulate the generated accelerator on real frames and check it against the golden model.

:func:`simulate` is ``xnorflow simulate``: it generates the Verilog of a model and a folding
(:func:`xnorflow.hw.build.verilog.generate`), builds it for a simulator (cached), runs the cocotb
testbench :mod:`xnorflow.sim.tb_network` on frames from a dataset with random stalls on both
streams, and returns one JSON-ready report: bit-exactness, frames lost, duplicated or reordered,
measured and predicted II and latency, RTL and golden accuracy, simulation speed.

Build cache
    The design is built in the simulator build cache (:mod:`xnorflow.sim.cache`) under
    ``build_dir`` when given, else ``$XNORFLOW_SIM_CACHE``, else ``~/.cache/xnorflow/sim``:
    once per Verilog text and simulator, under a lock that other processes building the same
    design wait on. Same model, folding and options give the same Verilog, so a later run of a
    design, in this process or another, reuses the build (``build_cached`` in the report).

Speed
    With Verilator the design is built with only its ports visible to the testbench
    (``access="ports"`` of :func:`xnorflow.sim.runner.build`, instead of cocotb's every signal)
    and behind the wrapper of :mod:`xnorflow.sim.fast_top`, which samples its inputs at the
    falling clock edge. The design and the cycle of every transfer are the same (the wrapper's
    conditions are checked as the testbench runs); Verilator optimizes inside the design and
    evaluates each part of it once per edge that feeds it. ``cnv`` (II 7,200, 30 % stalls on
    both sides) runs about 10x faster than a plain cocotb build of the same Verilog (measured
    back to back on two loaded cores: 1,598 -> 16,139 cycles/s with the ports only, 17,677
    with the wrapper too) and builds in half the time.

Runs
    Each run has its own directory ``<build>/runs/simulate-<hash of the model, frames and
    options>/``: ``frames.npy``, ``labels.npy``, ``params.json`` (see
    :mod:`xnorflow.sim.tb_network`; it holds the manifest), ``summary.json`` (the testbench's
    own summary), ``run.log`` and ``results.xml``. A run holds the lock ``<run dir>.lock``, so
    processes making the same run take turns.

Progress
    ``progress(phase, done, total)`` (optional) is called with ``phase`` ``"generate"``,
    ``"build"`` and ``"simulate"``; while simulating, ``done``/``total`` count result frames, read
    from the ``xnorflow-progress`` lines the testbench logs (the log is followed while the
    simulator runs), else both are None.

Errors
    :class:`~xnorflow.model.ModelFormatError` (model file), :class:`~xnorflow.hw.compiler.folding.
    FoldingError` (folding file, or a folding that does not fit the model),
    :class:`~xnorflow.data.DatasetError` (frames), ``ValueError`` (options),
    :class:`~xnorflow.sim.runner.SimulatorNotFound`, :class:`~xnorflow.sim.runner.BuildFailed`
    and :class:`~xnorflow.sim.runner.SimulationFailed` (the simulation ended without a summary:
    crashed, timed out, or the testbench broke), each with a one-line message naming what and
    where its log is. A simulation that ran but found mismatches or wrong timing is not an
    error: the report says so (``passed`` false, ``failures``).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from xnorflow.sim.cache import cache_dir, cached_build, locked
from xnorflow.sim.fast_top import sampled_top

__all__ = ["TESTBENCH", "simulate", "stall_specs"]

#: The cocotb test module that :func:`simulate` runs.
TESTBENCH = "xnorflow.sim.tb_network"
_PROGRESS = re.compile(r"xnorflow-progress (\d+)/(\d+) frames")

Progress = Callable[[str, "int | None", "int | None"], None]


def stall_specs(stall: float, seed: int) -> tuple[dict | None, dict | None]:
    """Pause specs of the source and the sink for ``--stall P --seed S``: random pauses with
    probability ``P`` on both sides, seeds ``2S+1`` and ``2S+2`` (none for ``P = 0``)."""
    if not isinstance(stall, (int, float)) or not 0 <= stall < 1:
        raise ValueError(f"stall probability ({stall!r}) must be at least 0 and less than 1")
    if stall == 0:
        return None, None
    return ({"kind": "random", "p": float(stall), "seed": 2 * seed + 1},
            {"kind": "random", "p": float(stall), "seed": 2 * seed + 2})


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class _LogFollower(threading.Thread):
    """Reads a growing log file and reports the testbench's progress lines."""

    def __init__(self, path: Path, progress: Progress):
        super().__init__(daemon=True)
        self.path, self.progress = path, progress
        self.stop = threading.Event()

    def run(self):
        handle = None
        pending = ""
        try:
            while True:
                stopping = self.stop.wait(0.25)
                if handle is None:
                    try:
                        handle = open(self.path, errors="replace")
                    except OSError:
                        if stopping:
                            return
                        continue
                pending += handle.read()
                *lines, pending = pending.split("\n")
                for line in lines:
                    match = _PROGRESS.search(line)
                    if match:
                        self.progress("simulate", int(match[1]), int(match[2]))
                if stopping:
                    return
        finally:
            if handle is not None:
                handle.close()


def simulate(model, *, folding=None, frames=None, labels=None, data=None,
             count: int | None = None, stall: float = 0.0, seed: int = 0,
             simulator: str = "verilator", build_dir=None, with_scores: bool = True,
             timing_frames: int = 8, progress: Progress | None = None) -> dict:
    """Run ``frames`` through the generated accelerator of ``model`` in a simulator.

    ``model``: a :class:`~xnorflow.model.Model` or the path of a model file. ``folding``: None
    (the default folding), a :class:`~xnorflow.hw.compiler.folding.Folding`, its JSON object, or
    the path of a folding file. Frames: ``frames`` (``uint8 (B, N0)``, with optional
    ``labels``), else the test split of ``data`` (None: the embedded subset; a directory: MNIST
    IDX files), ``count`` of them spread evenly over the split (default all). ``build_dir``: the
    root of the build cache (None: :func:`xnorflow.sim.cache.default_root`). ``stall``: pause
    probability of both streams (:func:`stall_specs`, seeded by ``seed``). ``timing_frames``: the
    burst that measures the II (0: measure nothing). Returns the report (module docstring); see
    ``docs`` of :mod:`xnorflow.sim.tb_network` for what is checked.
    """
    from xnorflow.data import load
    from xnorflow.hw.build.verilog import generate
    from xnorflow.hw.compiler import Folding, compile_plan
    from xnorflow.hw.tops.network import TOP_NAME
    from xnorflow.model import Model
    from xnorflow.sim.runner import BuildFailed, SimulationFailed, run_tests

    started = time.perf_counter()
    report_progress = progress or (lambda phase, done, total: None)
    source_pause, sink_pause = stall_specs(stall, seed)
    if not isinstance(count, (int, type(None))) or (count is not None and count < 1):
        raise ValueError(f"frame count ({count!r}) must be a positive integer")
    if timing_frames < 0:
        raise ValueError(f"timing frames ({timing_frames!r}) must be 0 or more")

    model_file = None
    if not isinstance(model, Model):
        model_file = Path(model).resolve()
        model = Model.load(model_file)
    if isinstance(folding, (str, os.PathLike)):
        folding = Folding.load(folding, model.layers)
    plan = compile_plan(model, folding, with_scores=with_scores)  # checks the folding

    # Frames.
    if frames is not None:
        frames = np.asarray(frames)
        dataset = "frames"
        if count is not None:
            frames, labels = frames[:count], None if labels is None else labels[:count]
    else:
        ds = load(data, "test")
        if count is not None:
            ds = ds.spread(count)
        frames, labels, dataset = ds.frames_for(model.input_shape), ds.labels, ds.name
    if frames.ndim != 2 or frames.shape[1] != model.in_features:
        raise ValueError(f"the model takes frames of {model.in_features} pixels, got frames of "
                         f"shape {frames.shape}")
    if frames.dtype != np.uint8:
        if not np.issubdtype(frames.dtype, np.integer) or frames.min() < 0 or frames.max() > 255:
            raise ValueError("frames must be integer pixels in [0, 255]")
        frames = frames.astype(np.uint8)
    if len(frames) == 0:
        raise ValueError("no frames to simulate")
    if labels is not None:
        labels = np.asarray(labels).astype(np.int64)
        if labels.shape != (len(frames),):
            raise ValueError(f"{labels.shape[0]} labels for {len(frames)} frames")

    report_progress("generate", None, None)
    with tempfile.TemporaryDirectory(prefix="xnorflow-generate-") as staging:
        manifest = generate(model, staging, plan.folding, with_scores=with_scores)
        verilog = (Path(staging) / manifest["verilog"]["file"]).read_text()

    report_progress("build", None, None)
    build_text, sim_top, access = verilog, TOP_NAME, "all"
    if simulator == "verilator":
        # The ports only, behind inputs sampled at the falling edge: the same cycles, many
        # times faster (module docstring).
        wrapper, sim_top = sampled_top(verilog, TOP_NAME)
        build_text, access = f"{verilog}\n{wrapper}", "ports"
    try:
        made = cached_build(build_text, toplevel=sim_top, simulator=simulator, root=build_dir,
                            access=access)
    except BuildFailed as exc:
        log = cache_dir(build_text, toplevel=sim_top, simulator=simulator, root=build_dir,
                        access=access)
        raise BuildFailed(f"building {TOP_NAME} with {simulator} failed: {_first_line(exc)} "
                          f"(log: {log / 'build.log'})") from None
    work = made.build_dir

    # Inputs of the run, in its own directory.
    digest = hashlib.sha256()
    digest.update(frames.tobytes())
    digest.update(b"" if labels is None else labels.tobytes())
    digest.update(json.dumps([manifest, source_pause, sink_pause, timing_frames],
                             sort_keys=True).encode())
    run_name = f"simulate-{digest.hexdigest()[:12]}"
    run_dir = work / "runs" / run_name
    run_dir.mkdir(parents=True, exist_ok=True)
    model_path = model_file
    summary_path = run_dir / "summary.json"
    log_path = run_dir / "run.log"
    report_progress("simulate", 0, len(frames))
    with locked(run_dir.with_name(f"{run_name}.lock")):
        np.save(run_dir / "frames.npy", frames)
        if labels is not None:
            np.save(run_dir / "labels.npy", labels)
        if model_path is None:
            model_path = model.save(run_dir / "model.npz").resolve()
        for stale in (summary_path, log_path):
            stale.unlink(missing_ok=True)
        params = {
            "model": str(model_path),
            "manifest": manifest,
            "frames": str(run_dir / "frames.npy"),
            "labels": None if labels is None else str(run_dir / "labels.npy"),
            "source_pause": source_pause,
            "sink_pause": sink_pause,
            "timing_frames": timing_frames,
            "progress_every": max(1, len(frames) // 100),
            "summary": str(summary_path),
        }
        follower = _LogFollower(log_path, report_progress)
        follower.start()
        try:
            result = run_tests(made.sim_build, TESTBENCH, params=params, run_name=run_name,
                               check=False)
        except SimulationFailed as exc:
            raise SimulationFailed(f"simulating {TOP_NAME} with {simulator} failed: "
                                   f"{_first_line(exc)} (log: {log_path})") from None
        finally:
            follower.stop.set()
            follower.join()
        if not summary_path.is_file():
            what = result.failures[0] if result.failures else "the testbench wrote no summary"
            raise SimulationFailed(f"simulating {TOP_NAME} with {simulator} failed: "
                                   f"{what.splitlines()[0]} (log: {log_path})", result)
        summary = json.loads(summary_path.read_text())

    perf = manifest["performance"]
    report = {
        "model": None if model_file is None else str(model_file),
        "model_hash": model.content_hash,
        "topology": model.topology,
        "folding": plan.folding.to_dict(),
        "dataset": dataset,
        "frames": summary["frames"],
        "received": summary["received"],
        "mismatches": summary["mismatches"],
        "class_mismatches": summary["class_mismatches"],
        "score_mismatches": summary["score_mismatches"],
        "lost": summary["lost"],
        "duplicated": summary["duplicated"],
        "reordered": summary["reordered"],
        "corrupted": summary["corrupted"],
        "extra_after_drain": summary["extra_after_drain"],
        "ii_cycles": summary["ii_cycles"],
        "predicted_ii": perf["ii_cycles"],
        "latency_cycles": summary["latency_cycles"],
        "predicted_latency": perf["latency_cycles"],
        "accuracy": summary.get("accuracy"),
        "golden_accuracy": summary.get("golden_accuracy"),
        "per_class_accuracy": summary.get("per_class_accuracy"),
        "stall": float(stall),
        "seed": seed,
        "simulator": simulator,
        "sim_cycles": summary["sim_cycles"],
        "sim_wall_s": summary["wall_s"],
        "sim_cycles_per_s": summary["sim_cycles_per_s"],
        "end_state": summary["end_state"],
        "passed": bool(summary["passed"]) and result.ok,
        "failures": summary["failures"] or list(result.failures),
        "build_dir": str(work),
        "build_cached": made.cached,
        "build_s": round(made.seconds, 2),
        "run_dir": str(run_dir),
        "wall_s": round(time.perf_counter() - started, 2),
    }
    return report

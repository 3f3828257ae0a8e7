"""The accelerator-versus-CPU benchmark (``xnorflow bench``).

Accelerator side
    The reference builds under ``bitstreams/<board>/<model>/``: ``manifest.json`` (written by the
    board flow) and ``report.json`` beside it. :func:`load_build` checks that the manifest's
    ``model_hash`` is the content hash of its ``model_file`` before it uses a single figure, then
    derives one :class:`AccelRow`: throughput ``clock_mhz * 1e6 / II`` at the clock the bitstream
    runs at, with the II *measured* in simulation (the manifest's ``simulation`` entry) or, when
    no simulation was recorded, the predicted one, flagged ``ii_source = "predicted"``; latency
    ``latency_cycles / clock_mhz`` µs; and, separately, the UART-limited frames/s at the board's
    baud rate.

CPU side
    Measured in the same run, on the same frames: for each implementation in
    :func:`xnorflow.cpu.implementations`, thread count and batch size (:func:`cpu_benchmark`).
    Every implementation is first checked against the golden model, on all the frames at once and
    frame by frame, so a fast wrong implementation cannot win. Timing: a warm-up, then
    ``repeats`` runs of at least ``min_seconds`` each; the row holds the median frames/s (and the
    slowest and fastest repeat) and the median wall time of one batch.

Comparison
    Per model and build: the accelerator's frames/s divided by the best CPU frames/s of that model
    (the best of all its CPU rows), and the accelerator's latency against the best batch-1 CPU
    latency (:func:`compare`).

:func:`run_bench` does all of it and returns a :class:`BenchResult`, which renders as rich tables
(:func:`print_tables`), Markdown (:func:`to_markdown`), JSON (:meth:`BenchResult.to_json`) and a
plot (:func:`plot`).
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import platform
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from xnorflow.cpu import implementations
from xnorflow.golden import GoldenModel
from xnorflow.model import Model

__all__ = [
    "AccelRow",
    "builds_markdown",
    "BenchError",
    "BenchResult",
    "CpuRow",
    "accel_row",
    "compare",
    "cpu_benchmark",
    "find_builds",
    "load_build",
    "machine_info",
    "make_result",
    "plot",
    "print_tables",
    "run_bench",
    "to_markdown",
]

#: The source checkout (``sw/..``); the default place of ``bitstreams/`` and of the MNIST files
#: beside it (``../shared/datasets/mnist``).
CHECKOUT = Path(__file__).resolve().parents[2]

#: Keys every reference build's ``manifest.json`` must have.
MANIFEST_KEYS = ("board", "device", "model", "model_file", "model_hash", "ii_cycles",
                 "latency_cycles", "clock_mhz", "fmax_mhz")
#: Keys every ``report.json`` beside it must have.
REPORT_KEYS = ("device", "luts", "luts_total", "brams", "brams_total")


class BenchError(ValueError):
    """A benchmark that cannot be run honestly: no builds, a build of another model, ..."""


# -- CPU ------------------------------------------------------------------------------------------

@dataclass
class CpuRow:
    """One CPU measurement: an implementation at a thread count and a batch size."""

    implementation: str
    threads: int
    batch: int
    frames_per_s: float  #: median over the repeats
    latency_ms: float  #: median wall time of one batch (of ``batch`` frames)
    model: str = ""
    frames_per_s_min: float | None = None  #: slowest repeat
    frames_per_s_max: float | None = None  #: fastest repeat
    repeats: int = 1

    def to_json(self) -> dict:
        return asdict(self)


def _usable_cores() -> int:
    """The cores this process may run on (its affinity), else every core."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _blas_limits(threads: int):
    """Limit NumPy's BLAS to ``threads`` (the golden model's first layer is a float matrix
    product) when threadpoolctl is available; a no-op otherwise."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn (mlxtend)
        return contextlib.nullcontext()
    return threadpool_limits(limits=threads, user_api="blas")


def _time(fn, frames: np.ndarray, batch: int, min_seconds: float,
          repeats: int = 1) -> tuple[float, float, list[float]]:
    """Median frames/s, median seconds per call and every repeat's frames/s of ``fn`` over
    ``frames`` cut into batches of ``batch``: a warm-up pass over a few batches, then
    ``repeats`` runs of at least ``min_seconds`` each (and at least one call)."""
    chunks = [frames[s:s + batch] for s in range(0, len(frames) - batch + 1, batch)]
    for c in chunks[:3]:  # warm-up: caches, allocator, BLAS threads
        fn(c)
    rates, per_call = [], []
    for _ in range(repeats):
        done = calls = 0
        t0 = time.perf_counter()
        elapsed = 0.0
        while elapsed < min_seconds or calls == 0:
            c = chunks[calls % len(chunks)]
            fn(c)
            done += len(c)
            calls += 1
            elapsed = time.perf_counter() - t0
        rates.append(done / elapsed)
        per_call.append(elapsed / calls)
    return statistics.median(rates), statistics.median(per_call), rates


def _check(name: str, impl, frames: np.ndarray, want: np.ndarray, single: int) -> None:
    """``impl`` must give the golden model's classes on all ``frames`` at once and on the first
    ``single`` frames one by one (the batch-1 path)."""
    got = np.asarray(impl.predict(frames))
    if got.shape != want.shape or not np.array_equal(got, want):
        bad = int((got != want).sum()) if got.shape == want.shape else len(want)
        raise AssertionError(f"{name} disagrees with the golden model on {bad} of {len(want)} "
                             "frames")
    one = np.concatenate([np.asarray(impl.predict(frames[i:i + 1])).reshape(-1)
                          for i in range(min(single, len(frames)))])
    if not np.array_equal(one, want[:len(one)]):
        raise AssertionError(f"{name} disagrees with the golden model on "
                             f"{int((one != want[:len(one)]).sum())} frames given one at a time")


def cpu_benchmark(model: Model, frames: np.ndarray, batches=(1, 256), threads=None,
                  min_seconds: float = 1.0, progress=None, *, repeats: int = 1,
                  name: str = "", announce=None) -> list[CpuRow]:
    """Frames/s of every CPU implementation × thread count × batch size, in that order.

    ``threads``: torch (and BLAS) thread counts, default 1 and every core. Each implementation is
    checked against the golden model first (``AssertionError`` naming it when it disagrees).
    ``min_seconds`` is the length of one of the ``repeats`` timed runs. ``progress(row)`` is called
    after each row, ``announce(text)`` before each measurement; ``name`` labels the rows.
    The thread settings are restored afterwards.
    """
    threads = threads or sorted({1, _usable_cores()})
    frames = np.ascontiguousarray(frames, dtype=np.uint8)
    want = GoldenModel(model).predict(frames)
    rows = []
    saved = torch.get_num_threads()
    try:
        for impl_name, impl in implementations(model).items():
            _check(impl_name, impl, frames, want, single=min(64, len(frames)))
            for t in threads:
                torch.set_num_threads(t)
                with _blas_limits(t):
                    for b in batches:
                        if b > len(frames):
                            continue
                        if announce:
                            announce(f"{name + ': ' if name else ''}{impl_name}, {t} thread"
                                     f"{'s' if t > 1 else ''}, batch {b}")
                        fps, per_call, rates = _time(impl.predict, frames, b, min_seconds,
                                                     repeats)
                        row = CpuRow(impl_name, t, b, round(fps, 1), round(1000 * per_call, 4),
                                     model=name, frames_per_s_min=round(min(rates), 1),
                                     frames_per_s_max=round(max(rates), 1), repeats=repeats)
                        rows.append(row)
                        if progress:
                            progress(row)
    finally:
        torch.set_num_threads(saved)
    return rows


# -- accelerator ----------------------------------------------------------------------------------

@dataclass
class AccelRow:
    """One accelerator build and the figures derived from it."""

    board: str
    device: str
    model: str
    model_hash: str
    luts: int
    luts_total: int
    brams: int
    brams_total: int
    ffs: int | None
    clock_mhz: float  #: the clock the design runs at (a bitstream's PLL clock)
    fmax_mhz: dict[str, float]  #: post-route, per clock
    ii_cycles: int
    ii_source: str  #: "simulation" (measured) or "predicted"
    predicted_ii: int
    latency_cycles: int
    latency_source: str
    predicted_latency: int
    frames_per_s: float  #: clock_mhz * 1e6 / ii_cycles
    latency_us: float  #: latency_cycles / clock_mhz
    baud: int | None = None
    uart_frames_per_s: float | None = None  #: through the board's serial bridge at ``baud``
    source: str = ""  #: the manifest, or where the figures came from

    @property
    def min_fmax_mhz(self) -> float | None:
        return min(self.fmax_mhz.values()) if self.fmax_mhz else None

    @property
    def timing_met(self) -> bool | None:
        f = self.min_fmax_mhz
        return None if f is None else self.clock_mhz <= f

    @property
    def frames_per_s_at_fmax(self) -> float | None:
        """The projection: post-route Fmax x 10^6 / II (what the design reaches with its clock
        at Fmax)."""
        f = self.min_fmax_mhz
        return None if f is None else round(f * 1e6 / self.ii_cycles, 1)

    def to_json(self) -> dict:
        d = asdict(self)
        d["min_fmax_mhz"] = self.min_fmax_mhz
        d["timing_met"] = self.timing_met
        d["frames_per_s_at_fmax"] = self.frames_per_s_at_fmax
        return d


def accel_row(*, board: str, device: str, model: str, model_hash: str, luts: int,
              luts_total: int, brams: int, brams_total: int, ffs: int | None, clock_mhz: float,
              fmax_mhz: dict[str, float], predicted_ii: int, predicted_latency: int,
              simulation: dict | None = None, baud: int | None = None,
              uart_frames_per_s: float | None = None, source: str = "") -> AccelRow:
    """An :class:`AccelRow` from the build's figures: II and latency from ``simulation`` (its
    ``ii_cycles`` / ``latency_cycles``, measured) where given, else the predicted ones."""
    if not clock_mhz or clock_mhz <= 0:
        raise BenchError(f"{source or model}: clock_mhz ({clock_mhz!r}) must be positive")
    sim = simulation or {}
    ii, ii_src = (sim["ii_cycles"], "simulation") if sim.get("ii_cycles") else \
        (predicted_ii, "predicted")
    lat, lat_src = (sim["latency_cycles"], "simulation") if sim.get("latency_cycles") else \
        (predicted_latency, "predicted")
    if not ii or ii <= 0:
        raise BenchError(f"{source or model}: II ({ii!r}) must be a positive number of cycles")
    return AccelRow(
        board=board, device=device, model=model, model_hash=model_hash, luts=int(luts),
        luts_total=int(luts_total), brams=int(brams), brams_total=int(brams_total),
        ffs=None if ffs is None else int(ffs), clock_mhz=float(clock_mhz),
        fmax_mhz={k: float(v) for k, v in (fmax_mhz or {}).items()}, ii_cycles=int(ii),
        ii_source=ii_src, predicted_ii=int(predicted_ii), latency_cycles=int(lat),
        latency_source=lat_src, predicted_latency=int(predicted_latency),
        frames_per_s=round(clock_mhz * 1e6 / ii, 1), latency_us=round(lat / clock_mhz, 3),
        baud=baud, uart_frames_per_s=None if uart_frames_per_s is None else
        round(float(uart_frames_per_s), 2), source=source)


def default_bitstreams() -> Path:
    """``bitstreams/`` of the source checkout, else of the working directory."""
    here = CHECKOUT / "bitstreams"
    return here if here.is_dir() else Path("bitstreams")


def find_builds(root: str | Path) -> list[Path]:
    """The reference builds' manifests: ``<root>/<board>/<model>/manifest.json``, sorted."""
    return sorted(Path(root).glob("*/*/manifest.json"))


def _read_json(path: Path, what: str) -> dict:
    try:
        obj = json.loads(path.read_text())
    except FileNotFoundError:
        raise BenchError(f"{path}: missing ({what})") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BenchError(f"{path}: not readable JSON ({what}): {e}") from None
    if not isinstance(obj, dict):
        raise BenchError(f"{path}: expected a JSON object ({what})")
    return obj


def _model_path(model_file: str, manifest: Path, root: Path) -> Path:
    """``model_file`` as written (repo-relative): from the repository holding ``root``
    (``<repo>/bitstreams``), else from the working directory."""
    p = Path(model_file)
    if p.is_absolute():
        return p
    for base in (root.resolve().parent, Path.cwd()):
        if (base / p).is_file():
            return base / p
    raise BenchError(f"{manifest}: model_file {model_file} not found (looked in "
                     f"{root.resolve().parent} and {Path.cwd()})")


def load_build(manifest_path: str | Path, root: str | Path | None = None) -> AccelRow:
    """One reference build as an :class:`AccelRow`, after checking that the manifest's
    ``model_hash`` is the content hash of its ``model_file`` (:class:`BenchError` naming both
    otherwise). ``root`` is the ``bitstreams`` directory (default: two levels up)."""
    manifest_path = Path(manifest_path)
    root = Path(root) if root is not None else manifest_path.parent.parent.parent
    m = _read_json(manifest_path, "reference build manifest")
    missing = [k for k in MANIFEST_KEYS if k not in m]
    if missing:
        raise BenchError(f"{manifest_path}: missing field(s) {', '.join(missing)}")
    report_path = manifest_path.parent / "report.json"
    r = _read_json(report_path, "synthesis report")
    missing = [k for k in REPORT_KEYS if k not in r]
    if missing:
        raise BenchError(f"{report_path}: missing field(s) {', '.join(missing)}")
    model_path = _model_path(m["model_file"], manifest_path, root)
    actual = Model.load(model_path).content_hash
    if m["model_hash"] != actual:
        raise BenchError(
            f"{manifest_path}: model_hash {str(m['model_hash'])[:16]}... does not match "
            f"{m['model_file']} ({model_path}), which hashes to {actual[:16]}...: the build is "
            "of another model; rebuild it or restore the model file")
    if r["device"] != m["device"]:
        raise BenchError(f"{report_path}: device {r['device']} differs from the manifest's "
                         f"{m['device']}")
    sim = m.get("simulation")
    if sim is not None and sim.get("mismatches"):
        raise BenchError(f"{manifest_path}: the recorded simulation has {sim['mismatches']} "
                         "mismatches against the golden model; not benchmarking a wrong design")
    fmax = m.get("fmax_mhz") or r.get("fmax_mhz") or {}
    accel = (m.get("domains") or {}).get("accel")
    if accel is not None:
        # A two-clock board build: the row is the accelerator's, so its clock's Fmax (the serial
        # bridge's slow clock has its own in the manifest's `domains`).
        fmax = {accel["clock"]: accel["fmax_mhz"]}
    try:
        rel = manifest_path.resolve().relative_to(root.resolve().parent)
    except ValueError:
        rel = manifest_path
    return accel_row(board=m["board"], device=m["device"], model=m["model"],
                     model_hash=actual, luts=r["luts"], luts_total=r["luts_total"],
                     brams=r["brams"], brams_total=r["brams_total"], ffs=r.get("ffs"),
                     clock_mhz=m["clock_mhz"], fmax_mhz=fmax, predicted_ii=m["ii_cycles"],
                     predicted_latency=m["latency_cycles"], simulation=sim, baud=m.get("baud"),
                     uart_frames_per_s=m.get("uart_frames_per_s"), source=str(rel))


# -- comparison -----------------------------------------------------------------------------------

def compare(accel: list[AccelRow], cpu: dict[str, list[CpuRow]]) -> list[dict]:
    """Per accelerator row: its frames/s ÷ the best CPU frames/s of its model (the best of all
    that model's CPU rows), the UART-limited frames/s ÷ the same, and the best batch-1 CPU latency
    ÷ the accelerator's latency (> 1: the accelerator answers sooner)."""
    out = []
    for a in accel:
        rows = cpu.get(a.model) or []
        if not rows:
            continue
        best = max(rows, key=lambda r: r.frames_per_s)
        ones = [r for r in rows if r.batch == 1]
        fastest = min(ones, key=lambda r: r.latency_ms) if ones else None
        cpu_lat = None if fastest is None else round(1000 * fastest.latency_ms, 3)
        out.append({
            "model": a.model, "board": a.board, "device": a.device,
            "accelerator_frames_per_s": a.frames_per_s, "ii_source": a.ii_source,
            "best_cpu_frames_per_s": best.frames_per_s,
            "best_cpu": {"implementation": best.implementation, "threads": best.threads,
                         "batch": best.batch},
            "speedup": round(a.frames_per_s / best.frames_per_s, 4),
            "accelerator_frames_per_s_at_fmax": a.frames_per_s_at_fmax,
            "speedup_at_fmax": None if a.frames_per_s_at_fmax is None else
            round(a.frames_per_s_at_fmax / best.frames_per_s, 4),
            "uart_frames_per_s": a.uart_frames_per_s,
            "uart_speedup": None if a.uart_frames_per_s is None else
            round(a.uart_frames_per_s / best.frames_per_s, 6),
            "accelerator_latency_us": a.latency_us,
            "cpu_latency_us": cpu_lat,
            "cpu_latency": None if fastest is None else
            {"implementation": fastest.implementation, "threads": fastest.threads},
            "latency_speedup": None if cpu_lat is None else round(cpu_lat / a.latency_us, 4),
        })
    return out


# -- the whole benchmark --------------------------------------------------------------------------

def machine_info() -> dict:
    """What the CPU figures were measured on."""
    cpu_model = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    usable = _usable_cores()
    load = None
    with contextlib.suppress(OSError, AttributeError):
        load = [round(v, 2) for v in os.getloadavg()]
    return {"cpu": cpu_model, "cores": os.cpu_count(), "usable_cores": usable,
            "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
            "numpy": np.__version__, "python": platform.python_version(),
            "platform": platform.platform(), "load_average": load,
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}


@dataclass
class BenchResult:
    """Everything one benchmark run measured (see the module docstring)."""

    command: str
    machine: dict
    dataset: dict
    models: dict[str, dict]  #: name -> {"file", "model_hash", "topology"}
    accelerator: list[AccelRow]
    cpu: dict[str, list[CpuRow]]
    ratios: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"command": self.command, "machine": self.machine, "dataset": self.dataset,
                "models": self.models, "accelerator": [a.to_json() for a in self.accelerator],
                "cpu": [r.to_json() for rows in self.cpu.values() for r in rows],
                "ratios": self.ratios, "notes": self.notes}


#: The order of the shipped models in the tables (smallest first).
DEFAULT_ORDER = ("tfc", "sfc", "lfc", "scnv")

#: Timing settings: (frames, repeats, seconds per repeat).
FULL = (2048, 5, 0.4)
QUICK = (256, 3, 0.03)


def bench_frames(data: str | Path | None, count: int) -> tuple[np.ndarray, str]:
    """``count`` test frames spread evenly over the test split (every class), and the dataset's
    name: the MNIST files in ``data``, else in ``$XNORFLOW_MNIST`` or
    ``<checkout>/../shared/datasets/mnist`` when present, else the embedded subset."""
    from xnorflow.data import load

    if data is None:
        for cand in (os.environ.get("XNORFLOW_MNIST"), CHECKOUT.parent / "shared/datasets/mnist"):
            if cand and Path(cand).is_dir():
                data = cand
                break
    ds = load(data, "test")
    index = np.linspace(0, len(ds) - 1, min(count, len(ds))).round().astype(int)
    return np.ascontiguousarray(ds.images[index]), ds.name


def run_bench(models: list[str] | None = None, bitstreams: str | Path | None = None,
              data: str | Path | None = None, quick: bool = False, progress=None,
              command: str = "xnorflow bench") -> BenchResult:
    """Read the reference builds of ``models`` (default: every shipped model) under
    ``bitstreams``, measure the CPU implementations on the same models now, compare.

    A model without a reference build gets its CPU figures only (a note says so).
    :class:`BenchError` when a name is not a shipped model or when a build does not match its
    model file."""
    from xnorflow.data import fit_frames
    from xnorflow.models import shipped

    say = progress or (lambda text: None)
    known = shipped()
    names = list(models) if models else \
        [n for n in DEFAULT_ORDER if n in known] + sorted(set(known) - set(DEFAULT_ORDER))
    unknown = [n for n in names if n not in known]
    if unknown:
        raise BenchError(f"unknown model {', '.join(map(repr, unknown))}: choose from "
                         f"{', '.join(known)}")
    root = Path(bitstreams) if bitstreams is not None else default_bitstreams()
    manifests = find_builds(root)
    built = {mp: str(_read_json(mp, "reference build manifest").get("model")) for mp in manifests}
    accel = [load_build(mp, root) for mp, name in built.items() if name in names]
    count, repeats, seconds = QUICK if quick else FULL
    machine = machine_info()  # before the timing: the load average says how busy the machine was
    frames, ds_name = bench_frames(data, count)
    cpu, info, notes = {}, {}, []
    for name in names:
        builds = [a for a in accel if a.model == name]
        path = known[name]
        model = Model.load(path)
        if builds and any(b.model_hash != model.content_hash for b in builds):
            # The CPU must run the very model the accelerator runs.
            other = next(b for b in builds if b.model_hash != model.content_hash)
            raise BenchError(f"{other.source}: built from model hash {other.model_hash[:16]}..., "
                             f"but the shipped {name} ({path}) hashes to "
                             f"{model.content_hash[:16]}...")
        if not builds:
            notes.append(f"{name}: no reference build under {root}; CPU figures only")
        info[name] = {"file": str(path), "model_hash": model.content_hash,
                      "topology": model.topology}
        say(f"{name} ({'-'.join(map(str, model.topology))}): checking the CPU implementations "
            f"against the golden model on {len(frames)} frames")
        cpu[name] = cpu_benchmark(model, fit_frames(frames, model.input_shape),
                                  min_seconds=seconds, repeats=repeats, name=name,
                                  announce=lambda text: say(f"  timing {text}"))
    for a in accel:
        if a.ii_source == "predicted":
            notes.append(f"{a.model} on {a.board}: II not measured in simulation; the predicted "
                         f"II ({a.ii_cycles} cycles) is used")
        if a.timing_met is False:
            notes.append(f"{a.model} on {a.board}: clock {a.clock_mhz} MHz is above the "
                         f"post-route Fmax {a.min_fmax_mhz} MHz")
    return make_result(accel, cpu, models=info, command=command, notes=notes, machine=machine,
                       dataset={"name": ds_name, "frames": len(frames), "repeats": repeats,
                                "seconds_per_repeat": seconds})


def make_result(accel: list[AccelRow], cpu: dict[str, list[CpuRow]], *, models: dict,
                dataset: dict, command: str, notes: list[str] | None = None,
                machine: dict | None = None) -> BenchResult:
    """A :class:`BenchResult` from rows measured elsewhere (the demo's own build, say): adds the
    machine information (:func:`machine_info`, now, unless given) and the ratios."""
    machine = machine or machine_info()
    notes = list(notes or [])
    load = (machine.get("load_average") or [0.0])[0]
    if load >= 1.0:
        notes.append(f"the machine was busy (1-minute load average {load} on "
                     f"{machine.get('usable_cores')} cores before the timing): the CPU figures "
                     "are lower and noisier than on an idle machine, the multi-thread rows the "
                     "most")
    return BenchResult(command=command, machine=machine, dataset=dataset, models=models,
                       accelerator=list(accel), cpu=cpu, ratios=compare(accel, cpu), notes=notes)


# -- output ---------------------------------------------------------------------------------------

def _n(v, digits: int = 0) -> str:
    if v is None:
        return "—"
    return f"{v:,.{digits}f}"


def _ratio(v) -> str:
    """``2.5×``, ``0.106×``; below 0.01 as ``1/20,211`` (the other side that many times faster)."""
    if v is None:
        return "—"
    return f"{v:.3g}×" if v >= 0.01 else f"1/{1 / v:,.0f}"


def _tables(result: BenchResult) -> list[tuple[str, list[str], list[list[str]]]]:
    """The three tables as (title, header, rows of cells): one text for the terminal and
    Markdown alike."""
    acc = []
    for a in result.accelerator:
        ii = f"{a.ii_cycles:,}" + ("" if a.ii_source == "simulation" else " (predicted; not "
                                    "measured)")
        uart = "—" if a.uart_frames_per_s is None else \
            f"{a.uart_frames_per_s:,.2f}" + (f" @ {a.baud:,} Bd" if a.baud else "")
        acc.append([a.model, a.board, a.device, f"{a.luts:,} / {a.luts_total:,}",
                    f"{a.brams} / {a.brams_total}", _n(a.clock_mhz, 1), _n(a.min_fmax_mhz, 1),
                    ii, _n(a.frames_per_s), _n(a.frames_per_s_at_fmax), _n(a.latency_us, 2),
                    uart])
    cpu = []
    for name, rows in result.cpu.items():
        for r in rows:
            spread = "" if r.frames_per_s_min is None else \
                f"{r.frames_per_s_min:,.0f} – {r.frames_per_s_max:,.0f}"
            cpu.append([name, r.implementation, str(r.threads), str(r.batch),
                        _n(r.frames_per_s), spread, _n(1000 * r.latency_ms, 1)])
    rat = []
    for c in result.ratios:
        b = c["best_cpu"]
        rat.append([c["model"], c["board"], _n(c["accelerator_frames_per_s"]),
                    _n(c["best_cpu_frames_per_s"]),
                    f"{b['implementation']}, {b['threads']} thr, batch {b['batch']}",
                    _ratio(c["speedup"]), _ratio(c["speedup_at_fmax"]), _ratio(c["uart_speedup"]),
                    _n(c["accelerator_latency_us"], 2), _n(c["cpu_latency_us"], 1),
                    _ratio(c["latency_speedup"])])
    # (title, header, how many leading text columns, rows)
    return [
        ("Accelerator", ["model", "board", "device", "LUTs", "BRAMs", "clock MHz", "Fmax MHz",
                         "II cycles", "frames/s", "frames/s at Fmax", "latency µs",
                         "UART frames/s"], 3, acc),
        ("CPU (same run, bit-exact against the golden model)",
         ["model", "implementation", "threads", "batch", "frames/s (median)",
          "slowest – fastest repeat", "µs per batch"], 2, cpu),
        ("Accelerator ÷ best CPU", ["model", "board", "accel. frames/s", "best CPU frames/s",
                                    "best CPU", "ratio", "ratio at Fmax", "UART ratio",
                                    "accel. µs",
                                    "CPU batch-1 µs", "latency ratio"], 2, rat),
    ]


def _context(result: BenchResult) -> str:
    m, d = result.machine, result.dataset
    load = "" if not m.get("load_average") else \
        f"; 1-minute load average {m['load_average'][0]} before the timing"
    return (f"CPU: {m['cpu']} ({m['cores']} cores), torch {m['torch']}, NumPy {m['numpy']}; "
            f"{d['frames']} frames of {d['name']}, median of {d['repeats']} repeats of "
            f"≥ {d['seconds_per_repeat']} s; {m['date']}{load}")


def print_tables(result: BenchResult, console=None) -> None:
    """The benchmark as rich tables (on stdout unless ``console`` is given)."""
    from rich.console import Console
    from rich.table import Table

    if console is None:
        console = Console()
        if not console.is_terminal:  # piped: no terminal width to respect, keep rows whole
            console = Console(width=200)
    for title, header, text, rows in _tables(result):
        if not rows:
            continue
        t = Table(title=title)
        for i, h in enumerate(header):
            t.add_column(h, justify="left" if i < text or h == "best CPU" else "right")
        for row in rows:
            t.add_row(*row)
        console.print(t)
    console.print(f"[dim]{_context(result)}[/]", highlight=False)
    for note in result.notes:
        console.print(f"[yellow]note:[/] {note}", highlight=False)


def to_markdown(result: BenchResult) -> str:
    """The benchmark as self-contained Markdown: the command, the machine, the three tables."""
    out = [f"Measured with `{result.command}`. {_context(result)}.", ""]
    for title, header, text, rows in _tables(result):
        if not rows:
            continue
        out += [f"**{title}**", "", "| " + " | ".join(header) + " |",
                "|" + "|".join("---" if i < text or h == "best CPU" else "---:"
                               for i, h in enumerate(header)) + "|"]
        out += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]
        out.append("")
    notes = [f"- {n}" for n in result.notes]
    notes.append("- Accelerator frames/s = clock × 10⁶ / II, the rate the bitstream runs at (II "
                 "measured in simulation unless marked predicted); frames/s at Fmax: the "
                 "projection post-route Fmax × 10⁶ / II; UART frames/s: what the "
                 "board's serial link carries at its baud rate; latency = latency cycles / clock. "
                 "Ratio: accelerator frames/s ÷ the best CPU frames/s of that model (at Fmax: "
                 "the projection ÷ the same; UART ratio: "
                 "the same with the UART-limited rate); latency ratio: the best batch-1 CPU "
                 "latency ÷ the accelerator's (above 1: the accelerator answers sooner).")
    out += notes
    return "\n".join(out) + "\n"


def builds_markdown(bitstreams: str | Path | None = None) -> str:
    """The reference builds under ``bitstreams`` (default :func:`default_bitstreams`) as the
    README's Markdown table: utilization, the accelerator's clock and post-route Fmax, the serial
    bridge's (a two-clock build's ``sync`` domain), II (measured / predicted), latency, frames/s
    at the clock, at Fmax and over the UART at the build's baud rate, and the build's tool time.
    Each build is read by :func:`load_build` (model hash checked)."""
    root = Path(bitstreams) if bitstreams is not None else default_bitstreams()
    manifests = find_builds(root)
    if not manifests:
        raise BenchError(f"{root}: no reference builds (<board>/<model>/manifest.json)")
    out = ["| model | board (device) | LUTs | FFs | BRAMs | clock MHz | Fmax MHz | "
           "bridge clock / Fmax MHz | II meas. / pred. | latency cycles | frames/s at clock | "
           "frames/s at Fmax | frames/s over UART | build |",
           "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for manifest in manifests:
        row = load_build(manifest, root)
        m = _read_json(manifest, "manifest")
        report = _read_json(manifest.parent / "report.json", "synthesis report")
        minutes = sum(report.get("seconds", {}).values()) / 60
        uart = "–" if row.uart_frames_per_s is None else (
            f"{row.uart_frames_per_s:,}" + (f" @ {row.baud / 1e6:g} Mbaud" if row.baud else ""))
        bridge = (m.get("domains") or {}).get("sync")
        bridge = "–" if bridge is None else f"{bridge['mhz']:.2f} / {bridge['fmax_mhz']:.1f}"
        out.append(
            f"| {row.model.upper()} | {row.board} ({row.device}) | {row.luts:,} / "
            f"{row.luts_total:,} | {'–' if row.ffs is None else f'{row.ffs:,}'} | {row.brams} / "
            f"{row.brams_total} | {row.clock_mhz:.2f} | **{row.min_fmax_mhz:.1f}** | {bridge} | "
            f"{row.ii_cycles} / {row.predicted_ii} | {row.latency_cycles} | "
            f"{row.frames_per_s:,.0f} | **{row.frames_per_s_at_fmax:,.0f}** | {uart} | "
            f"{max(1, round(minutes))} min |")
    return "\n".join(out) + "\n"


def plot(result: BenchResult, path: str | Path) -> Path:
    """Throughput (frames/s, log scale) against LUTs used: one marker per (model, board), the
    best CPU frames/s of each model as a horizontal line. PNG, SVG, PDF by the extension."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    fig, ax = plt.subplots(figsize=(7.5, 4.8), dpi=120)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    markers = "osD^vP*X"
    models = list(dict.fromkeys([*result.cpu, *(a.model for a in result.accelerator)]))
    boards = list(dict.fromkeys(a.board for a in result.accelerator))
    for a in result.accelerator:
        c = colors[models.index(a.model) % len(colors)]
        mk = markers[boards.index(a.board) % len(markers)]
        ax.scatter([a.luts], [a.frames_per_s], color=c, marker=mk, s=60, zorder=3,
                   label=f"{a.model} on {a.board} ({a.device}, {a.clock_mhz:g} MHz)")
        ax.annotate(f"{a.model} / {a.board}", (a.luts, a.frames_per_s), fontsize=7,
                    textcoords="offset points", xytext=(5, 4))
    for name, rows in result.cpu.items():
        if not rows:
            continue
        best = max(rows, key=lambda r: r.frames_per_s)
        c = colors[models.index(name) % len(colors)]
        ax.axhline(best.frames_per_s, color=c, linestyle="--", linewidth=1,
                   label=f"{name}: best CPU ({best.implementation}, {best.threads} thr, batch "
                         f"{best.batch})")
    ax.set_yscale("log")
    luts = [a.luts for a in result.accelerator]
    if luts and max(luts) > 10 * min(luts):
        ax.set_xscale("log")
    ax.set_xlabel("LUTs used")
    ax.set_ylabel("frames/s")
    ax.set_title("xnorflow: accelerator vs CPU throughput")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path

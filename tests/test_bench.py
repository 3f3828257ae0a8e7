"""``xnorflow bench``: the accelerator figures derived from a reference build's manifest and
report, the model-hash check, the CPU rows (timed only when bit-exact), the ratios and every
output (rich, JSON, Markdown, plot), and the CLI's errors.

The reference builds here are written by the tests into ``tmp_path`` (parser test data); the last
test runs the benchmark on the committed builds under ``bitstreams/`` once they exist.
"""

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from xnorflow.cli import main
from xnorflow.data import load
from xnorflow.host import bench
from xnorflow.host.bench import AccelRow, BenchError, CpuRow, compare, load_build
from xnorflow.model import Model
from xnorflow.models import shipped

REPO = Path(__file__).resolve().parent.parent


def write_build(root: Path, model_file: Path, *, board="icebreaker", model="tfc", simulation=True,
                **manifest_fields) -> Path:
    """A reference build as the board flow writes it: ``<root>/<board>/<model>/manifest.json``
    and ``report.json``; figures made up but consistent."""
    d = root / board / model
    d.mkdir(parents=True)
    manifest = {
        "board": board, "device": "iCE40UP5K", "model": model, "model_file": str(model_file),
        "model_hash": Model.load(model_file).content_hash, "folding": {"layers": []},
        "ii_cycles": 784, "latency_cycles": 900, "clock_mhz": 24.0,
        "fmax_mhz": {"sync": 31.25}, "baud": 115200, "uart_frames_per_s": 14.25,
        "frames_per_s": 30612.2, "seed": 1, "tools": {"yosys": "0.x"}, "files": {},
        "command": "xnorflow build ...",
    }
    if simulation is True:
        simulation = {"frames": 100, "ii_cycles": 800, "latency_cycles": 960, "mismatches": 0}
    if simulation:
        manifest["simulation"] = simulation
    manifest.update(manifest_fields)
    (d / "manifest.json").write_text(json.dumps(manifest))
    (d / "report.json").write_text(json.dumps({
        "device": "iCE40UP5K", "luts": 4300, "luts_total": 5280, "ffs": 1937, "brams": 29,
        "brams_total": 30, "fmax_mhz": {"sync": 31.25}, "bitstream": "top.bin"}))
    return d / "manifest.json"


@pytest.fixture
def tfc_file(tmp_path) -> Path:
    """A copy of the shipped TFC in a repository-like tree: ``<tmp>/sw/models/tfc.npz``."""
    dst = tmp_path / "sw" / "models" / "tfc.npz"
    dst.parent.mkdir(parents=True)
    shutil.copy(shipped()["tfc"], dst)
    return dst


# -- the accelerator figures ----------------------------------------------------------------------

def test_build_figures_from_manifest_and_report(tmp_path, tfc_file):
    mp = write_build(tmp_path / "bitstreams", Path("sw/models/tfc.npz"))  # repo-relative
    a = load_build(mp)
    assert (a.board, a.device, a.model) == ("icebreaker", "iCE40UP5K", "tfc")
    assert (a.luts, a.luts_total, a.brams, a.brams_total, a.ffs) == (4300, 5280, 29, 30, 1937)
    # the II and latency measured in simulation, not the predicted ones
    assert (a.ii_cycles, a.ii_source, a.predicted_ii) == (800, "simulation", 784)
    assert (a.latency_cycles, a.latency_source, a.predicted_latency) == (960, "simulation", 900)
    assert a.frames_per_s == 30000.0  # 24 MHz / 800 cycles
    assert a.latency_us == 40.0  # 960 cycles / 24 MHz
    assert (a.uart_frames_per_s, a.baud) == (14.25, 115200)
    assert a.min_fmax_mhz == 31.25 and a.timing_met is True
    assert a.frames_per_s_at_fmax == 39062.5  # 31.25 MHz / 800 cycles, the projection
    assert a.model_hash == Model.load(tfc_file).content_hash
    assert a.source == "bitstreams/icebreaker/tfc/manifest.json"


def test_two_clock_build_uses_the_accelerator_domain(tmp_path, tfc_file):
    """A board build with the accelerator and the serial bridge in two clock domains: the row's
    Fmax is the accelerator domain's, not the slowest clock's (the bridge runs at 12 MHz with an
    Fmax below the accelerator's 24 MHz clock and still meets its own)."""
    domains = {"accel": {"clock": "pll_clk", "mhz": 24.0, "fmax_mhz": 31.25, "timing_met": True},
               "sync": {"clock": "bridge.clk", "mhz": 12.0, "fmax_mhz": 20.0,
                        "timing_met": True}}
    mp = write_build(tmp_path / "bitstreams", tfc_file, domains=domains,
                     fmax_mhz={"pll_clk": 31.25, "bridge.clk": 20.0})
    a = load_build(mp)
    assert a.fmax_mhz == {"pll_clk": 31.25}
    assert a.min_fmax_mhz == 31.25 and a.timing_met is True
    assert a.frames_per_s_at_fmax == 39062.5


def test_predicted_ii_when_not_simulated(tmp_path, tfc_file):
    mp = write_build(tmp_path / "bitstreams", tfc_file, simulation=False, clock_mhz=12.0)
    a = load_build(mp)
    assert (a.ii_cycles, a.ii_source, a.latency_source) == (784, "predicted", "predicted")
    assert a.frames_per_s == round(12e6 / 784, 1)
    assert a.latency_us == 75.0
    assert a.to_json()["ii_source"] == "predicted"


def test_model_hash_mismatch_is_refused(tmp_path, tfc_file):
    mp = write_build(tmp_path / "bitstreams", tfc_file, model_hash="ab" * 32)
    with pytest.raises(BenchError, match=r"model_hash abababab.* does not match .*tfc\.npz"):
        load_build(mp)


def test_build_with_simulation_mismatches_is_refused(tmp_path, tfc_file):
    mp = write_build(tmp_path / "bitstreams", tfc_file,
                     simulation={"frames": 10, "ii_cycles": 784, "latency_cycles": 900,
                                 "mismatches": 3})
    with pytest.raises(BenchError, match="3 mismatches against the golden model"):
        load_build(mp)


def test_manifest_missing_field(tmp_path, tfc_file):
    mp = write_build(tmp_path / "bitstreams", tfc_file)
    m = json.loads(mp.read_text())
    del m["clock_mhz"]
    mp.write_text(json.dumps(m))
    with pytest.raises(BenchError, match=r"manifest.json: missing field\(s\) clock_mhz"):
        load_build(mp)


# -- the ratios -----------------------------------------------------------------------------------

def _accel(**kw) -> AccelRow:
    fields = dict(board="b", device="d", model="tfc", model_hash="h", luts=1, luts_total=2,
                  brams=0, brams_total=1, ffs=None, clock_mhz=50.0, fmax_mhz={"sync": 60.0},
                  predicted_ii=100, predicted_latency=500, baud=115200, uart_frames_per_s=20.0)
    fields.update(kw)
    return bench.accel_row(**fields)


def test_ratios():
    a = _accel()  # 50 MHz / 100 cycles = 500,000 frames/s; 500 cycles = 10 µs
    assert (a.frames_per_s, a.latency_us) == (500000.0, 10.0)
    rows = [CpuRow("golden", 1, 1, 4000.0, 0.25), CpuRow("torch", 2, 1, 5000.0, 0.2),
            CpuRow("torch", 1, 256, 250000.0, 1.024), CpuRow("golden", 2, 256, 100000.0, 2.56)]
    [r] = compare([a], {"tfc": rows, "sfc": [CpuRow("x", 1, 1, 1e9, 1e-6)]})
    assert r["best_cpu_frames_per_s"] == 250000.0
    assert r["best_cpu"] == {"implementation": "torch", "threads": 1, "batch": 256}
    assert r["speedup"] == 2.0
    # the projection at the post-route Fmax: 60 MHz / 100 cycles = 600,000 frames/s
    assert r["accelerator_frames_per_s_at_fmax"] == 600000.0
    assert r["speedup_at_fmax"] == 2.4
    assert r["uart_speedup"] == 20.0 / 250000.0
    assert r["cpu_latency_us"] == 200.0  # the fastest batch-1 row: 0.2 ms
    assert r["cpu_latency"] == {"implementation": "torch", "threads": 2}
    assert r["latency_speedup"] == 20.0
    assert compare([_accel(model="lfc")], {"tfc": rows}) == []  # no CPU rows, no ratio


def test_accel_row_rejects_a_zero_clock():
    with pytest.raises(BenchError, match="clock_mhz"):
        _accel(clock_mhz=0)


# -- the CPU rows ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def frames():
    ds = load(None, "test")
    return ds.images[np.linspace(0, len(ds) - 1, 96).round().astype(int)]


def test_cpu_rows_are_checked_frame_by_frame(frames, monkeypatch):
    """An implementation right on the whole batch but wrong on single frames (the batch-1
    path) is not timed."""
    m = Model.load(shipped()["tfc"])
    real = bench.implementations(m)["torch-float32"]

    class WrongAlone:
        def predict(self, x):
            got = real.predict(x)
            return (got + 1) % 10 if len(x) == 1 else got

    monkeypatch.setattr(bench, "implementations", lambda model: {"wrong-alone": WrongAlone()})
    with pytest.raises(AssertionError, match="wrong-alone disagrees with the golden model on "
                                             r"\d+ frames given one at a time"):
        bench.cpu_benchmark(m, frames, batches=(1,), threads=[1], min_seconds=0.01)


def test_cpu_rows_median_of_repeats(frames):
    m = Model.load(shipped()["tfc"])
    seen = []
    rows = bench.cpu_benchmark(m, frames, batches=(1, 32), threads=[1], min_seconds=0.01,
                               repeats=3, name="tfc", announce=seen.append)
    count = 2 * len(bench.implementations(m))
    assert len(rows) == count and len(seen) == count and "tfc: golden-numpy-bitpacked" in seen[0]
    for r in rows:
        assert r.model == "tfc" and r.repeats == 3
        assert 0 < r.frames_per_s_min <= r.frames_per_s <= r.frames_per_s_max


# -- the whole command ----------------------------------------------------------------------------

def test_cli_bench_json_markdown_plot(tmp_path, tfc_file, capsys):
    root = tmp_path / "bitstreams"
    write_build(root, Path("sw/models/tfc.npz"))
    write_build(root, Path("sw/models/tfc.npz"), board="ulx3s", simulation=False,
                device="LFE5U-85F", clock_mhz=50.0)
    (root / "ulx3s" / "tfc" / "report.json").write_text(json.dumps({
        "device": "LFE5U-85F", "luts": 9000, "luts_total": 83640, "brams": 12,
        "brams_total": 208, "fmax_mhz": {"sync": 70.0}, "bitstream": "top.bit"}))
    png = tmp_path / "bench.png"
    args = ["bench", "--bitstreams", str(root), "--models", "tfc", "--quick", "--data",
            "embedded"]
    assert main([*args, "--json", "--plot", str(png)]) == 0
    out = capsys.readouterr()
    assert "timing tfc: torch-float32" in out.err  # progress on stderr
    obj = json.loads(out.out)
    assert set(obj) == {"command", "machine", "dataset", "models", "accelerator", "cpu",
                        "ratios", "notes"}
    assert obj["command"] == "xnorflow bench --models tfc --data embedded --quick"
    assert {"cpu", "cores", "torch", "torch_threads", "numpy", "date",
            "load_average"} <= set(obj["machine"])
    assert obj["dataset"]["frames"] == 256
    assert obj["models"]["tfc"]["model_hash"] == Model.load(tfc_file).content_hash
    by_board = {a["board"]: a for a in obj["accelerator"]}
    assert by_board["icebreaker"]["frames_per_s"] == 30000.0
    assert by_board["icebreaker"]["ii_source"] == "simulation"
    assert by_board["ulx3s"]["ii_source"] == "predicted"
    assert by_board["ulx3s"]["frames_per_s"] == round(50e6 / 784, 1)
    assert any("II not measured" in n for n in obj["notes"])
    cpu = obj["cpu"]
    names = set(bench.implementations(Model.load(tfc_file)))
    assert {"golden-numpy-bitpacked", "torch-float32"} <= names
    assert {(r["implementation"], r["batch"]) for r in cpu} == {
        (i, b) for i in names for b in (1, 256)}
    assert {r["threads"] for r in cpu} == {1, obj["machine"]["usable_cores"]}
    assert all(r["model"] == "tfc" and r["frames_per_s"] > 0 for r in cpu)
    best = max(r["frames_per_s"] for r in cpu)
    for r in obj["ratios"]:
        a = by_board[r["board"]]
        assert r["best_cpu_frames_per_s"] == best
        assert r["speedup"] == round(a["frames_per_s"] / best, 4)
    assert png.stat().st_size > 1000 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    assert main([*args, "--markdown"]) == 0
    md = capsys.readouterr().out
    assert md.startswith("Measured with `xnorflow bench --models tfc --data embedded --quick`.")
    assert "| tfc | icebreaker | iCE40UP5K | 4,300 / 5,280 | 29 / 30 | 24.0 | 31.2 | 800 |" in md
    assert "784 (predicted; not measured)" in md
    fastest = max(obj["cpu"], key=lambda r: r["frames_per_s"])
    assert "**Accelerator ÷ best CPU**" in md
    assert f"| tfc | {fastest['implementation']} | {fastest['threads']} | " \
           f"{fastest['batch']} |" in md


def test_tables_plot_and_markdown_of_a_result(tmp_path):
    """The demo's path: rows measured elsewhere, one rendering for every output."""
    rows = [CpuRow("golden-numpy-bitpacked", 1, 1, 9000.0, 0.111, model="tfc (demo)"),
            CpuRow("torch-float32", 2, 256, 400000.0, 0.64, model="tfc (demo)")]
    res = bench.make_result([_accel(model="tfc (demo)")], {"tfc (demo)": rows},
                            models={}, dataset={"name": "embedded", "frames": 512, "repeats": 3,
                                                "seconds_per_repeat": 0.1},
                            command="xnorflow demo",
                            machine={**bench.machine_info(), "load_average": [3.5, 2.0, 1.0],
                                     "usable_cores": 2})
    assert "the machine was busy (1-minute load average 3.5 on 2 cores" in res.notes[0]
    buf = io.StringIO()
    bench.print_tables(res, Console(file=buf, width=250))
    text = buf.getvalue()
    assert "Accelerator ÷ best CPU" in text and "400,000" in text and "1.25×" in text
    md = bench.to_markdown(res)
    assert "Measured with `xnorflow demo`." in md and "| tfc (demo) | b | d |" in md
    svg = bench.plot(res, tmp_path / "p.svg")
    assert svg.read_text().lstrip().startswith("<?xml")


def test_cli_errors_exit_2(tmp_path, tfc_file, capsys):
    empty = tmp_path / "bitstreams"
    empty.mkdir()
    write_build(empty, tfc_file)
    assert main(["bench", "--bitstreams", str(empty), "--models", "tfc,xfc", "--quick"]) == 2
    assert "unknown model 'xfc': choose from" in capsys.readouterr().err

    mp = empty / "icebreaker" / "tfc" / "manifest.json"
    m = json.loads(mp.read_text())
    m["model_hash"] = "0" * 64
    mp.write_text(json.dumps(m))
    assert main(["bench", "--bitstreams", str(empty), "--quick"]) == 2
    e = capsys.readouterr().err
    assert "does not match" in e and "tfc.npz" in e and "Traceback" not in e


def test_models_without_builds_get_cpu_figures(tmp_path, capsys):
    """A model with no reference build is timed on the CPU, and the result says so."""
    assert main(["bench", "--bitstreams", str(tmp_path), "--models", "tfc", "--quick",
                 "--json"]) == 0
    obj = json.loads(capsys.readouterr().out)
    assert obj["accelerator"] == [] and obj["ratios"] == []
    assert any("tfc: no reference build" in note for note in obj["notes"])
    assert {row["implementation"] for row in obj["cpu"] if row["model"] == "tfc"} >= {
        "golden-numpy-bitpacked"}


def test_reference_builds(capsys):
    """The committed reference builds, benchmarked with --quick."""
    root = REPO / "bitstreams"
    manifests = bench.find_builds(root)
    assert manifests
    built = [json.loads(p.read_text()) for p in manifests]
    models = sorted({m["model"] for m in built})
    assert main(["bench", "--bitstreams", str(root), "--models", ",".join(models), "--quick",
                 "--json"]) == 0
    obj = json.loads(capsys.readouterr().out)
    assert len(obj["accelerator"]) == len(built) == len(obj["ratios"])
    for m in built:
        [a] = [a for a in obj["accelerator"] if (a["board"], a["model"]) == (m["board"],
                                                                            m["model"])]
        assert a["model_hash"] == m["model_hash"]
        assert a["frames_per_s"] == round(m["clock_mhz"] * 1e6 / a["ii_cycles"], 1)
        assert a["ii_source"] == ("simulation" if m.get("simulation") else "predicted")


def test_readme_reference_table_is_the_builds_table(capsys):
    """The README's table of reference builds is what ``xnorflow bench --builds`` prints from
    the committed builds, row for row."""
    readme = (REPO / "README.md").read_text()
    begin, end = "<!-- reference_table -->\n", "<!-- /reference_table -->"
    table = readme[readme.index(begin) + len(begin):readme.index(end)]
    assert main(["bench", "--builds", "--bitstreams", str(REPO / "bitstreams")]) == 0
    printed = capsys.readouterr().out
    assert printed.count("\n") == 2 + len(bench.find_builds(REPO / "bitstreams"))
    assert table == printed


def test_builds_table_without_builds(tmp_path, capsys):
    assert main(["bench", "--builds", "--bitstreams", str(tmp_path)]) == 2
    assert "no reference builds" in capsys.readouterr().err


def test_the_checkout_is_found_from_the_installed_module():
    """In a source checkout the bench finds bitstreams/ and the shared datasets beside it from
    its own file, whatever the working directory."""
    assert (bench.CHECKOUT / "pyproject.toml").is_file()
    assert bench.default_bitstreams() == bench.CHECKOUT / "bitstreams"

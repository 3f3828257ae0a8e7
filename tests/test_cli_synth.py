"""``xnorflow synth``: a real out-of-context build of a small generated accelerator."""

import json

import numpy as np
import pytest

from xnorflow.cli import main
from xnorflow.model import DenseLayer, Model, pack_bits


def small_model(path):
    rng = np.random.default_rng(7)
    layers = []
    sizes = (20, 12, 5)
    for i, (n, m) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        w = pack_bits(rng.integers(0, 2, (m, n)))
        last = i == len(sizes) - 2
        t = None if last else rng.integers(-100, 100, m).astype(np.int64)
        d = None if last else rng.choice([-1, 1], m).astype(np.int8)
        layers.append(DenseLayer(f"l{i}", n, m, 8 if i == 0 else 1, w, t, d))
    return Model(layers, (20,), {"dataset": "random"}).save(path)


@pytest.mark.synth
@pytest.mark.slow
def test_synth_json(tmp_path, capsys):
    model = small_model(tmp_path / "m.npz")
    assert main(["synth", str(model), "--device", "up5k", "--freq", "20",
                 "--build-dir", str(tmp_path / "build"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["device"] == "iCE40UP5K"
    assert 0 < out["luts"] <= out["luts_total"] == 5280
    assert 0 <= out["brams"] <= out["brams_total"] == 30
    assert out["ffs"] > 0 and out["bitstream"] is None
    (fmax,) = out["fmax_mhz"].values()
    assert fmax > 0
    assert out["frames_per_s_at_fmax"] == round(fmax * 1e6 / out["ii_cycles"], 1)
    assert out["model_hash"] == Model.load(model).content_hash


def test_synth_errors_are_one_line(tmp_path, capsys):
    model = small_model(tmp_path / "m.npz")
    folding = tmp_path / "f.json"
    folding.write_text(json.dumps({"layers": [{"pe": 5, "simd": 4}, {"pe": 1, "simd": 12}]}))
    assert main(["synth", str(model), "--device", "up5k", "--folding", str(folding)]) == 2
    assert "PE (5) must divide the output channels (12)" in capsys.readouterr().err
    assert main(["synth", str(model), "--device", "virtex7"]) == 2
    assert "error:" in capsys.readouterr().err

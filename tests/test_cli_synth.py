"""``xnorflow synth``: a real out-of-context build of a small generated accelerator."""

import json

import numpy as np
import pytest

from xnorflow.cli import main
from xnorflow.model import Model
from xnorflow.sim.fixtures import random_frames, random_model


def small_model(path):
    """A random valid 20-12-5 model (the sweep's builder), saved to ``path``."""
    rng = np.random.default_rng(7)
    return random_model((20, 12, 5), 7, random_frames(rng, 16, 20)).save(path)


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

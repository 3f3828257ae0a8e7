"""icnv, the convolutional network whose board design fits the iCEBreaker's iCE40UP5K: its
preset, the shipped model, and the resource model's estimate of its board design against the
trial build's figures (nextpnr's logic cells, Yosys' flip-flops and block RAMs); the logic cells
of the other measured iCEBreaker designs and of the TFC reference build."""

import json
from pathlib import Path

import numpy as np
import pytest

from xnorflow import spec as specs
from xnorflow.golden import GoldenModel
from xnorflow.hw.build.calibrate import ICE40_BOARD_BUILDS, board_errors
from xnorflow.hw.compiler import Folding, bridge_resources, compile_plan
from xnorflow.hw.compiler.autofold import ICE40_CELL_BUDGET, auto_folding, ice40_logic_cells
from xnorflow.hw.compiler.devices import get_device
from xnorflow.model import Model
from xnorflow.models import shipped

#: The trial build of the README (``xnorflow synth icnv --board icebreaker --target-fps 100
#: --seed 2 --baud 3000000 ...``): the folding's interval and the tools' counts of the whole
#: board design (network, serial bridge, on-device benchmark).
TRIAL = {"ii": 278784, "logic_cells": 4782, "luts": 3304, "ffs": 2471, "ebr": 21}


@pytest.fixture(scope="module")
def icnv():
    if "icnv" not in shipped():
        pytest.skip("icnv is not shipped")
    return Model.load(shipped()["icnv"])


def test_preset_shapes():
    s = specs.parse("icnv")
    assert [type(layer).__name__ for layer in s.layers] == ["Conv", "Conv", "Conv", "Pool",
                                                            "Dense"]
    first = s.layers[0]
    assert (first.kernel, first.stride, first.padding) == (3, 2, 0)
    assert [layer.out_shape for layer in s.layers[:4]] == [(13, 13, 32), (11, 11, 32),
                                                          (9, 9, 32), (3, 3, 32)]
    assert s.layers[-1].in_features == 288 and s.layers[-1].out_features == 10


def test_shipped_model_is_the_preset(icnv):
    assert icnv.topology == specs.parse("icnv").sizes
    assert [layer.kind for layer in icnv.layers].count("conv2d") == 3
    assert icnv.layers[0].stride == 2


def test_golden_model_on_the_embedded_frames(icnv):
    # Scores and classes of the integer model are deterministic; the embedded test split (the
    # first 500 MNIST training images of each digit, never seen as test images) is mostly right.
    from xnorflow.data import load

    ds = load(None, "test")
    r = GoldenModel(icnv).run(ds.images)
    assert r.scores.shape == (len(ds), 10)
    assert np.array_equal(r.classes, np.argmax(r.scores, axis=1))
    assert float((r.classes == ds.labels).mean()) >= 0.97


def test_board_folding_and_estimate_match_the_trial_build(icnv):
    chosen = auto_folding(icnv, "iCE40UP5K", freq_mhz=30, target_fps=100, board=True)
    assert chosen.ii == TRIAL["ii"]
    used = {name: value for name, value, _ in chosen.usage}
    # logic cells and flip-flops within 10 % of the build; block RAMs: the model counts one
    # more than Yosys (the score layer's 2,880 x 1 weight ROM, which Yosys folds into one
    # 2048 x 2 block), never fewer
    assert abs(used["logic cell"] - TRIAL["logic_cells"]) <= 0.10 * TRIAL["logic_cells"]
    assert abs(used["FF"] - TRIAL["ffs"]) <= 0.10 * TRIAL["ffs"]
    assert TRIAL["ebr"] <= used["block RAM"] <= TRIAL["ebr"] + 1
    # the estimate within the auto-folder's budget, and the build itself with at least 8 % of
    # the device's logic cells to spare, for later changes to the gateware
    cells = get_device("iCE40UP5K").luts
    assert used["logic cell"] <= ICE40_CELL_BUDGET * cells
    assert TRIAL["logic_cells"] <= 0.92 * cells


def test_measured_board_designs_within_ten_percent():
    rows = board_errors()
    assert len(rows) == len(ICE40_BOARD_BUILDS) >= 9
    for r in rows:
        est, measured = r["estimate"], r["measured"]
        assert abs(r["cell_error"]) <= 0.10, r
        assert abs(est["ffs"] - measured["ffs"]) <= 0.10 * measured["ffs"], r
        # block RAMs: exact, or above where Yosys folds a narrow ROM into wider words
        assert measured["brams"] <= est["brams"] <= measured["brams"] + 2, r


def test_tfc_reference_logic_cells():
    ref = Path(__file__).resolve().parent.parent / "bitstreams" / "icebreaker" / "tfc"
    if not (ref / "manifest.json").exists():
        pytest.skip("no TFC reference build")
    report = json.loads((ref / "report.json").read_text())
    model = Model.load(shipped()["tfc"])
    plan = compile_plan(model, Folding.from_dict(report["folding"], model.layers))
    first = plan.layers[0]
    est = plan.resources() + bridge_resources(first.in_features,
                                              first.in_features // first.input_beats, "ice40")
    cells = report["luts"]          # nextpnr's ICESTORM_LC of the board design
    assert abs(ice40_logic_cells(est) - cells) <= 0.10 * cells

"""Auto-folding: every folding it returns divides the layers, fits the device table by the
resource model, and is balanced (no layer has more lanes than its interval needs); targets and
impossible fits fail with messages that name what is short."""

from dataclasses import replace
from itertools import product

import numpy as np
import pytest

from xnorflow.hw.compiler import ConverterOp, FoldingError, bridge_resources, compile_plan
from xnorflow.hw.compiler.autofold import (
    ICE40_FF_CELLS,
    LUT_BUDGET,
    DoesNotFitError,
    _best_combination,
    _candidates,
    _fixed,
    auto_folding,
)
from xnorflow.hw.compiler.devices import get_device
from xnorflow.hw.compiler.folding import LayerFolding, layer_cycles, simd_choices
from xnorflow.hw.compiler.plan import lower
from xnorflow.model import Model
from xnorflow.sim.fixtures import random_model, random_net

MODELS = {name: Model.load(f"sw/models/{name}.npz") for name in ("tfc", "sfc", "lfc")}


def _check(model, result, device, board):
    device = get_device(device)
    family = device.family
    folding = result.folding
    folding.check(model.layers)  # PE divides M, SIMD divides N (raises otherwise)
    plan = compile_plan(model, folding)
    assert plan.ii == result.ii
    estimate = plan.resources()
    if board:  # the bridge sends the first layer's input beats: SIMD pixels, C where m*C
        first = plan.layers[0]
        estimate += bridge_resources(first.in_features, first.in_features // first.input_beats,
                                     family)
    assert estimate == result.estimate
    assert estimate.luts(family) <= LUT_BUDGET * device.luts
    assert estimate.brams(family) <= device.brams
    assert estimate.ff <= device.ffs
    assert all(used <= available for _, used, available in result.usage), result.usage
    if family == "ice40":  # logic cells: LUT4s and the flip-flops that need cells of their own
        assert [name for name, _, _ in result.usage][-1] == "logic cell"
    # Balanced: every layer meets the interval, and with the next smaller SIMD it would not
    # (or, weights in block RAM, the wider words pack them into fewer blocks).
    for op in plan.layers:
        assert layer_cycles(op, op.pe, op.simd) <= result.ii
        smaller = [d for d in simd_choices(op) if d < op.simd]
        if smaller and layer_cycles(op, op.pe, smaller[-1]) <= result.ii:
            assert op.storage == "bram", op.label
            narrow = op.folded(replace(op.layer_folding, simd=smaller[-1])).resources()
            assert narrow.brams(family) > op.resources().brams(family), op.label


@pytest.mark.parametrize("name,device,board", [
    ("tfc", "up5k", False), ("tfc", "up5k", True), ("sfc", "ecp5-25f", True),
    ("sfc", "ecp5-85f", True), ("lfc", "ecp5-85f", True), ("lfc", "ecp5-85f", False)])
def test_auto_folding_fits_and_is_balanced(name, device, board):
    model = MODELS[name]
    result = auto_folding(model, device, board=board)
    _check(model, result, device, board)
    # The fastest that fits: the interval is one the layers can reach, and no faster one fits
    # (checked for the next faster interval of the first layer).
    assert result.frames_per_s == pytest.approx(result.clock_mhz * 1e6 / result.ii)


def test_auto_folding_bigger_device_is_not_slower():
    model = MODELS["sfc"]
    iis = [auto_folding(model, dev, board=True).ii for dev in ("ecp5-25f", "ecp5-45f", "ecp5-85f")]
    assert iis == sorted(iis, reverse=True)


def test_lfc_on_85f_reaches_the_interval_of_200k_frames_per_second_near_100mhz():
    # LFC's 1024x1024 layers can only have power-of-two intervals; 512 is the fastest whose
    # weights fit the 208 block RAMs (1 Mbit per layer), 200,000 frames/s at 102.4 MHz.
    result = auto_folding(MODELS["lfc"], "ecp5-85f", board=True)
    assert result.ii == 512
    assert result.estimate.brams("ecp5") <= 208


def test_target_fps_takes_the_cheapest_folding_that_reaches_it():
    model = MODELS["sfc"]
    fastest = auto_folding(model, "ecp5-85f", board=True)
    slow = auto_folding(model, "ecp5-85f", board=True, target_fps=20_000, freq_mhz=100)
    assert slow.frames_per_s >= 20_000
    assert slow.ii >= fastest.ii
    assert slow.estimate.luts("ecp5") < fastest.estimate.luts("ecp5")
    _check(model, slow, "ecp5-85f", True)


@pytest.mark.parametrize("seed", range(6))
def test_auto_folding_random_models(seed):
    rng = np.random.default_rng(seed)
    topology = [int(rng.choice([36, 49, 64, 98])), *rng.choice([12, 20, 32, 48], 2).tolist(), 10]
    frames = rng.integers(0, 256, (8, topology[0]))
    model = random_model(topology, seed, frames)
    for device in ("up5k", "ecp5-25f"):
        result = auto_folding(model, device, board=seed % 2 == 0)
        _check(model, result, device, seed % 2 == 0)


CNV = "32x32x1-c64k3-c64k3-p2-c128k3-c128k3-p2-c256k3-c256k3-512-512-10"


@pytest.mark.parametrize("spec,device,board", [
    (CNV, "ecp5-85f", True), ("28x28x1-c32k3-p2-c64k3-c96k3-p3-10", "ecp5-25f", True),
    ("12x12x3-c8k3s2p-c12k3-p2-10", "up5k", False)])
def test_auto_folding_convolutional_networks(spec, device, board):
    model = random_net(spec, 3)
    result = auto_folding(model, device, board=board)
    _check(model, result, device, board)


def test_cnv_on_85f_reaches_9150_frames_per_second_at_100mhz():
    # BNN-PYNQ's CNV W1A1 rate; the resource model says the ECP5-85F holds it at 100 MHz.
    result = auto_folding(random_net(CNV, 1), "ecp5-85f", board=True, target_fps=9150,
                          freq_mhz=100)
    assert result.frames_per_s >= 9150
    _check(random_net(CNV, 1), result, "ecp5-85f", True)


def test_cnv_first_layer_takes_three_kernel_columns_a_beat():
    """The shipped CNV on the ECP5-85F at 75 MHz with the serial bridge: the first layer (one
    channel, K = 3) is no longer held to SIMD 1, its floor with SIMD dividing C; it takes
    SIMD = 3*C, three kernel columns a beat, and the network's II drops below that floor."""
    model = Model.load("sw/models/cnv.npz")
    result = auto_folding(model, "LFE5U-85F", freq_mhz=75, board=True)
    _check(model, result, "LFE5U-85F", True)
    first = lower(model).layers[0]
    floor = min(first.folded(LayerFolding(pe, 1)).cycles_per_frame for pe in (16, 32, 64))
    assert result.ii < floor
    assert result.folding.layers[0].simd == 3 * first.in_shape[2]
    assert compile_plan(model, result.folding).layers[0].in_width == 8


@pytest.mark.parametrize("spec,device,t,board", [
    ("10x10x1-c6k3-p2-12-10", "up5k", 2000, True),
    ("10x10x1-c6k3-p2-12-10", "up5k", 600, False),
    ("64-48-30-10", "ecp5-25f", 200, True)])
def test_combination_is_the_cheapest_of_all(spec, device, t, board):
    # The dynamic program against every combination of the layers' candidates.
    model = random_net(spec, 5)
    device = get_device(device)
    family = device.family
    ops = lower(model, with_scores=True).layers
    fixed = _fixed(model, True)
    options = [_candidates(op, t, family) for op in ops]
    best = None
    for combo in product(*options):
        total = fixed
        for _, res in combo:
            total += res
        # a layer's input beat: SIMD lanes, or a convolution's C where SIMD is m*C
        folded = [op.folded(lf) for op, (lf, _) in zip(ops, combo, strict=True)]
        for i in range(len(ops) - 1):
            pe, width = combo[i][0].pe, folded[i + 1].in_width
            if pe != width:
                total += ConverterOp(after=i, frame_bits=ops[i].out_features, in_width=pe,
                                     out_width=width).resources()
        if board:
            total += bridge_resources(ops[0].in_features,
                                      ops[0].in_features // folded[0].input_beats, family)
        cells = total.luts(family) + (-(-ICE40_FF_CELLS * total.ff // 1) if family == "ice40"
                                      else 0)
        if total.brams(family) <= device.brams and total.luts(family) <= LUT_BUDGET * device.luts:
            best = cells if best is None else min(best, cells)
    fits, usage, layers = _best_combination(ops, t, device, fixed, board)
    assert best is not None and fits
    used = {name: value for name, value, _ in usage}
    found = used["logic cell"] if family == "ice40" else used["LUT4"]
    assert found == best


def test_lfc_does_not_fit_the_up5k_and_says_why():
    with pytest.raises(DoesNotFitError, match=r"does not fit the iCE40UP5K.*block RAM: [\d,]+ "
                       r"needed, 30 available.*2,9\d\d,\d\d\d bits"):
        auto_folding(MODELS["lfc"], "up5k")
    assert issubclass(DoesNotFitError, FoldingError)


def test_unreachable_target_says_what_is_short():
    with pytest.raises(DoesNotFitError, match=r"reaches 1,000,000 frames/s on the iCE40UP5K at "
                       r"30 MHz.*short of"):
        auto_folding(MODELS["tfc"], "up5k", target_fps=1_000_000)
    with pytest.raises(DoesNotFitError, match="needs an interval of at most 0 cycles"):
        auto_folding(MODELS["tfc"], "up5k", target_fps=1e9)


def test_bad_arguments():
    with pytest.raises(ValueError, match="target_fps"):
        auto_folding(MODELS["tfc"], "up5k", target_fps=-1)
    with pytest.raises(ValueError, match="freq_mhz"):
        auto_folding(MODELS["tfc"], "up5k", freq_mhz=0)
    with pytest.raises(ValueError, match="Unknown device|unknown device|not a"):
        auto_folding(MODELS["tfc"], "xc7a35t")

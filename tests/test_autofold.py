"""Auto-folding: every folding it returns divides the layers, fits the device table by the
resource model, and is balanced (no layer has more lanes than its interval needs); targets and
impossible fits fail with messages that name what is short."""

import numpy as np
import pytest

from xnorflow.hw.compiler import FoldingError, bridge_resources, compile_plan
from xnorflow.hw.compiler.autofold import LUT_BUDGET, DoesNotFitError, auto_folding
from xnorflow.hw.compiler.devices import get_device
from xnorflow.model import Model
from xnorflow.sim.fixtures import random_model

MODELS = {name: Model.load(f"sw/models/{name}.npz") for name in ("tfc", "sfc", "lfc")}


def _check(model, result, device, board):
    device = get_device(device)
    family = device.family
    folding = result.folding
    folding.check(model.layers)  # PE divides M, SIMD divides N (raises otherwise)
    plan = compile_plan(model, folding)
    assert plan.ii == result.ii
    estimate = plan.resources()
    if board:
        estimate += bridge_resources(model.layers[0].in_features, folding.layers[0].simd,
                                     family)
    assert estimate == result.estimate
    assert estimate.luts(family) <= LUT_BUDGET * device.luts
    assert estimate.brams(family) <= device.brams
    assert estimate.ff <= device.ffs
    assert all(used <= available for _, used, available in result.usage), result.usage
    if family == "ice40":  # logic cells: LUT4s and the flip-flops that need cells of their own
        assert [name for name, _, _ in result.usage][-1] == "logic cell"
    # Balanced: every layer meets the interval, and with the next smaller SIMD it would not.
    for op in plan.layers:
        assert op.ii <= result.ii
        smaller = [d for d in range(1, op.simd) if op.in_features % d == 0]
        if smaller:
            assert op.nf * (op.in_features // smaller[-1]) > result.ii, op.label


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

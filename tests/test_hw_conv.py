# amaranth: UnusedElaboratable=no
"""Convolutional networks (convolutions, bit max-pooling, dense layers) in Amaranth's simulator
against the golden model, bit-exact, and their measured II and latency against the performance
model; the conv and pool ops against the golden model and their blocks; folding errors; Verilog."""

import json
from itertools import pairwise

import numpy as np
import pytest
from amaranth.hdl import Fragment, Value
from test_hw_network import check_results, simulate

from xnorflow.golden import GoldenModel
from xnorflow.hw.blocks import block_for
from xnorflow.hw.compiler import (
    Folding,
    FoldingError,
    compile_plan,
    fold,
    insert_converters,
    lower,
    size_fifos,
)
from xnorflow.hw.compiler.ops.conv import ConvOp
from xnorflow.hw.compiler.ops.pool import PoolOp
from xnorflow.hw.compiler.rules import window_cycles_per_frame
from xnorflow.hw.tops.network import Network
from xnorflow.sim.fixtures import folding, random_frames, random_net

# (spec, seed, folding): PE = SIMD = 1, a fully parallel one and a mixed one with converters.
CASES = {
    # conv 6x6x1 -> 4x4x4, pool 2 -> 2x2x4, padded conv -> 2x2x4, dense 16 -> 5
    "pool-pe1": ("6x6x1-c4k3-p2-c4k3p-5", 1, folding((1, 1), (1, 1), (1, 1), (1, 1))),
    "pool-parallel": ("6x6x1-c4k3-p2-c4k3p-5", 2,
                      folding((4, 1, "lut"), (4, 4), (4, 4, "lut"), (5, 16, "lut"))),
    # converters 2 -> 4, 4 -> 2 and 1 -> 4
    "pool-mixed": ("6x6x1-c4k3-p2-c4k3p-5", 3,
                   folding((2, 1), (4, 4), (1, 2, "bram"), (5, 4))),
    # strided padded conv on 3 channels 7x7x3 -> 4x4x4, conv k2 -> 3x3x6, dense 54 -> 6
    "stride-pe1": ("7x7x3-c4k3s2p-c6k2-6", 4, folding((1, 1), (1, 1), (1, 1))),
    "stride-parallel": ("7x7x3-c4k3s2p-c6k2-6", 5,
                        folding((4, 3, "lut"), (6, 4, "lut"), (6, 54, "lut"))),
    # converter 3 -> 6; a FIFO in front of the second conv
    "stride-mixed": ("7x7x3-c4k3s2p-c6k2-6", 6,
                     folding((2, 3), (3, 2, "bram", 3), (3, 6))),
}


def make(case, frames=4):
    spec, seed, fold_cfg = CASES[case]
    model = random_net(spec, seed)
    x = random_frames(np.random.default_rng(seed + 50), frames, model.layers[0].in_features)
    return model, fold_cfg, x


# --- The ops, without gateware ------------------------------------------------------------------


@pytest.mark.parametrize("spec", ["6x6x1-c4k3-p2-c4k3p-5", "7x7x3-c4k3s2p-c6k2-6",
                                  "8x8x3-c6k3p-p2-c5k3p-p2-7", "13x9x1-c4k1-c6k3s2-p2-c4k2-6",
                                  "9x9x2-c3k3pv7-c4k1-p3-5"])
@pytest.mark.parametrize("seed", [0, 1])
def test_every_pass_keeps_the_function(spec, seed):
    """``plan.execute`` after each pass equals the golden model, classes and scores."""
    model = random_net(spec, seed)
    frames = random_frames(np.random.default_rng(seed), 7, model.layers[0].in_features)
    golden = GoldenModel(model).run(frames)
    plan = lower(model)
    stages = [plan]
    plan = fold(plan, Folding.default(plan.layers))
    stages += [plan, insert_converters(plan), size_fifos(insert_converters(plan))]
    for stage in stages:
        classes, scores = stage.execute(frames)
        assert list(classes) == list(golden.classes), stage.passes
        assert np.array_equal(scores, golden.scores), stage.passes


def test_pools_take_the_directions_of_the_conv_before():
    model = random_net("8x8x3-c6k3p-p2-c5k3p-p2-7", 3)
    plan = lower(model)
    for before, op in pairwise(plan.layers):
        if isinstance(op, PoolOp):
            assert op.rising == tuple(bool(d > 0) for d in before.directions)
    rising = [r for op in plan.layers if isinstance(op, PoolOp) for r in op.rising]
    assert True in rising and False in rising  # OR and AND channels both


def test_conv_ii_bounds():
    """The conv's II is at least the window generator's and the unit's, and equals the larger
    where the unit is the bottleneck with room to spare."""
    model = random_net("8x8x3-c6k3p-p2-c5k3-7", 0)
    plan = lower(model)
    conv = plan.layers[0]
    for pe, simd in [(1, 1), (2, 3), (6, 3), (6, 1)]:
        op = conv.folded(folding((pe, simd)).layers[0])
        oh, ow, m = op.out_shape
        unit = oh * ow * (m // pe) * (op.window // simd)
        swg = window_cycles_per_frame(op.in_shape, op.kernel, op.stride, op.padding, simd)
        assert op.cycles_per_frame >= max(unit, swg)
        if unit > 2 * swg:
            assert op.cycles_per_frame == unit


@pytest.mark.parametrize(("entries", "message"), [
    ([(1, 2), (1, 1), (1, 1), (1, 1)],
     r"layer 0 \(conv0\): SIMD \(2\) must divide the input channels \(3\)"),
    ([(4, 1), (1, 1), (1, 1), (1, 1)],
     r"layer 0 \(conv0\): PE \(4\) must divide the output channels \(6\)"),
    ([(1, 1), (4, 1), (1, 1), (1, 1)],
     r"layer 1 \(pool1\): PE \(4\) must divide the output channels \(6\)"),
    ([(1, 1), (2, 1), (1, 1), (1, 1)],
     r"layer 1 \(pool1\): a pooling layer passes its channels through, SIMD per beat: PE \(2\) "
     r"must equal SIMD \(1\)"),
])
def test_folding_that_does_not_fit(entries, message):
    model = random_net("8x8x3-c6k3p-p2-c5k3-7", 0)
    with pytest.raises(FoldingError, match=message):
        compile_plan(model, folding(*entries))
    if "pooling layer passes" not in message:  # the model's layers check it alike
        with pytest.raises(FoldingError, match=message):
            Folding.from_dict(folding(*entries).to_dict(), model.layers)


@pytest.mark.parametrize("style", ["block", "logic", "distributed"])
def test_line_buffer_from_the_folding(style):
    model = random_net("8x8x3-c6k3p-p2-c5k3-7", 0)
    entries = [{"pe": 2, "simd": 3, "line_buffer": style}, {"pe": 2, "simd": 2},
               {"pe": 1, "simd": 2, "line_buffer": style}, {"pe": 1, "simd": 4}]
    chosen = Folding.from_dict({"layers": entries}, model.layers)
    assert chosen.to_dict()["layers"] == [{"storage": "bram", **e} for e in entries]
    plan = compile_plan(model, chosen)
    for op in (plan.layers[0], plan.layers[2]):
        assert op.line_buffer_style == style
        assert op.describe()["line_buffer"] == style
        block = block_for(op)
        Fragment.get(block, None)
        assert block.window.buffer == style
        assert (op.resources().brams("ecp5") > op.mvtu.resources().brams("ecp5")) == (
            style == "block")
    if style == "distributed":
        with pytest.raises(FoldingError, match="layer 0: line_buffer 'distributed' .LUT RAM. "
                                               "exists on ECP5 only, not on ice40"):
            chosen.check_family("ice40")


@pytest.mark.parametrize(("entry", "message"), [
    ({"pe": 2, "simd": 2, "line_buffer": "block"},
     r"layer 1 \(pool1\): line_buffer applies to a convolution only"),
    ({"pe": 2, "simd": 2, "line_buffer": "lutram"},
     r"layer 1 \(pool1\): line_buffer \('lutram'\) must be 'block', 'logic' or 'distributed'"),
])
def test_line_buffer_errors(entry, message):
    model = random_net("8x8x3-c6k3p-p2-c5k3-7", 0)
    entries = [{"pe": 2, "simd": 3}, entry, {"pe": 1, "simd": 2}, {"pe": 1, "simd": 4}]
    with pytest.raises(FoldingError, match=message):
        Folding.from_dict({"layers": entries}, model.layers)


def test_ops_match_the_blocks():
    model, fold_cfg, _ = make("pool-mixed")
    plan = compile_plan(model, fold_cfg)
    for op in plan.layers:
        block = block_for(op)
        Fragment.get(block, None)
        assert len(Value.cast(block.i_stream.payload)) == op.in_width, op.label
        assert len(Value.cast(block.o_stream.payload)) == op.out_width, op.label
        if isinstance(op, PoolOp):
            assert (op.latency, op.cycles_per_frame) == (block.latency, block.cycles_per_frame)
        elif isinstance(op, ConvOp):
            assert block.window.cycles_per_frame <= op.cycles_per_frame
            assert (block.unit.neuron_fold, block.unit.synapse_fold) == (op.nf, op.sf)
            assert block.unit.latency == op.mvtu.latency


# --- Networks in the simulator ------------------------------------------------------------------


@pytest.mark.parametrize(("source_pause", "sink_pause"),
                         [("none", "none"), ("random", "random"), ("fixed", "random")])
@pytest.mark.parametrize("case", list(CASES))
def test_conv_network_bit_exact(case, source_pause, sink_pause):
    """Every frame out once, in order, class and scores as the golden model's."""
    model, fold_cfg, frames = make(case)
    dut = Network(model, fold_cfg)
    _, sink, monitor = simulate(dut, frames, source_pause, sink_pause)
    check_results(dut, model, frames, sink)
    assert not any(monitor.frame_error)


@pytest.mark.parametrize("case", list(CASES))
def test_conv_network_ii_and_latency(case):
    """No stalls: the first frame's latency and the steady-state II equal the prediction."""
    model, fold_cfg, frames = make(case, frames=6)
    dut = Network(model, fold_cfg)
    source, sink, _ = simulate(dut, frames)
    check_results(dut, model, frames, sink)
    gaps = [b - a for a, b in pairwise(sink.cycles)]
    assert gaps[-2:] == [dut.ii] * 2, gaps
    assert sink.valid_cycles[0] - source.cycles[0] == dut.latency


def test_first_conv_sets_the_input():
    model, fold_cfg, _ = make("stride-mixed")
    dut = Network(model, fold_cfg)
    assert (dut.lanes, dut.beats_per_frame) == (3, 7 * 7)
    assert len(dut.s_axis_tdata) == 8 * 3
    manifest = dut.manifest()
    assert manifest["s_axis"]["beats_per_frame"] == 49
    assert [entry.get("kind") for entry in manifest["layers"]][:2] == ["conv2d", "conv2d"]
    json.dumps(manifest)


def test_generate_writes_verilog(tmp_path):
    from xnorflow.hw.build.verilog import generate

    model, fold_cfg, _ = make("pool-mixed")
    manifest = generate(model, tmp_path, fold_cfg)
    text = (tmp_path / manifest["verilog"]["file"]).read_text()
    assert "module xnorflow_top" in text
    assert manifest["layers"][0]["kind"] == "conv2d"
    assert manifest["layers"][1]["kind"] == "maxpool2d"
    assert json.loads((tmp_path / "manifest.json").read_text())["performance"]["ii_cycles"] == \
        compile_plan(model, fold_cfg).ii


# --- cocotb on the generated Verilog ------------------------------------------------------------


def test_conv_network_in_verilator_with_stalls(tmp_path):
    """``xnorflow simulate`` of a conv model (Verilator, cocotb): bit-exact with 30 % stalls on
    both streams, nothing lost, duplicated or reordered, measured II and latency as predicted."""
    from xnorflow.sim.simulate import simulate as simulate_verilog

    model, fold_cfg, _ = make("pool-parallel")
    frames = random_frames(np.random.default_rng(7), 12, model.layers[0].in_features)
    report = simulate_verilog(model, folding=fold_cfg, frames=frames, stall=0.3,
                              build_dir=tmp_path)
    assert report["passed"], report["failures"]
    assert (report["received"], report["mismatches"], report["lost"]) == (12, 0, 0)
    assert report["ii_cycles"] == report["predicted_ii"]
    assert report["latency_cycles"] == report["predicted_latency"]


def test_simulate_centres_the_dataset_images_in_a_larger_input(tmp_path):
    """A model on 32x32 frames simulated on the 28x28 test images: each image centred in the
    frame (docs/semantics.md section 1), as ``evaluate`` and the golden model take it."""
    from xnorflow.data import load
    from xnorflow.sim.simulate import simulate as simulate_verilog

    model = random_net("32x32x1-c3k3s2-p3-4", 4)
    report = simulate_verilog(model, count=3, build_dir=tmp_path, stall=0.0)
    assert report["passed"], report["failures"]
    frames = load(None, "test").spread(3).frames_for(model.input_shape)
    golden = GoldenModel(model).run(frames)
    assert report["received"] == 3 and report["golden_accuracy"] == pytest.approx(
        float((golden.classes == load(None, "test").spread(3).labels).mean()))

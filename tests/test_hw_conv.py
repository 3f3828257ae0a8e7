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
    # SIMD = m*C: the padded conv behind the pool 3 kernel columns a beat (SIMD 12 = 3*4, input
    # 4 lanes, no converter); the k2 conv 2 columns a beat (SIMD 8 = 2*4, converter 2 -> 4)
    "pool-columns": ("6x6x1-c4k3-p2-c4k3p-5", 7,
                     folding((2, 1), (4, 4), (2, 12), (5, 4))),
    "stride-columns": ("7x7x3-c4k3s2p-c6k2-6", 8,
                       folding((2, 3), (3, 8, "bram"), (3, 6))),
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
    for pe, simd in [(1, 1), (2, 3), (6, 3), (6, 1), (2, 9), (6, 9)]:
        op = conv.folded(folding((pe, simd)).layers[0])
        oh, ow, m = op.out_shape
        unit = oh * ow * (m // pe) * (op.window // simd)
        swg = window_cycles_per_frame(op.in_shape, op.kernel, op.stride, op.padding, simd)
        assert op.cycles_per_frame >= max(unit, swg)
        if unit > 2 * swg:
            assert op.cycles_per_frame == unit


@pytest.mark.parametrize(("entries", "message"), [
    ([(1, 2), (1, 1), (1, 1), (1, 1)],
     r"^layer 0 \(conv0\): SIMD \(2\) must divide the input channels \(3\) or be m\*C with "
     r"m > 1 dividing the kernel \(3\)$"),
    ([(1, 6), (1, 1), (1, 1), (1, 1)],   # 6 = 2*C, but 2 does not divide K = 3
     r"^layer 0 \(conv0\): SIMD \(6\) must divide the input channels \(3\) or be m\*C with "
     r"m > 1 dividing the kernel \(3\)$"),
    ([(1, 1), (1, 1), (1, 1), (1, 14)],  # a dense layer: divisors only
     r"^layer 3 \(fc3\): SIMD \(14\) must divide the input channels \(20\)$"),
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


# --- The convolution unit alone, several kernel columns a beat ----------------------------------


def _ref_conv(v, weights, thresholds, directions, kernel, stride, padding, pad_value, bits):
    """docs/semantics.md 3 and 5.2 with plain loops: the output bits of every position, row-major,
    channels fastest, for the map ``v[r][col][ch]``."""
    h, w, c = len(v), len(v[0]), len(v[0][0])

    def u(r, col, ch):
        r, col = r - padding, col - padding
        return v[r][col][ch] if 0 <= r < h and 0 <= col < w else pad_value

    out = []
    for y in range((h + 2 * padding - kernel) // stride + 1):
        for x in range((w + 2 * padding - kernel) // stride + 1):
            win = [u(y * stride + ky, x * stride + kx, ch)
                   for ky in range(kernel) for kx in range(kernel) for ch in range(c)]
            for row, t, d in zip(weights, thresholds, directions, strict=True):
                if bits == 1:
                    acc = sum(1 for wt, a in zip(row, win, strict=True) if wt == a)
                else:
                    acc = sum(a if wt else -a for wt, a in zip(row, win, strict=True))
                out.append(int(acc >= t) if d == 1 else int(acc <= t))
    return out


# (in_shape, M, K, S, P, V, bits, PE, SIMD): SIMD = m*C, m = 3 or 5 columns a beat
UNIT_CONFIGS = [
    pytest.param((6, 7, 1), 4, 3, 1, 1, 200, 8, 2, 3, id="6x7x1-k3p-px-m3"),
    pytest.param((7, 5, 1), 3, 3, 2, 0, 0, 8, 3, 3, id="7x5x1-k3s2-px-m3"),
    pytest.param((5, 5, 2), 4, 3, 1, 1, 1, 1, 4, 6, id="5x5x2-k3p-bits-m3"),
    pytest.param((7, 6, 3), 3, 3, 2, 1, 0, 1, 1, 9, id="7x6x3-k3s2p-bits-m3"),
    pytest.param((5, 6, 3), 2, 3, 1, 0, 1, 1, 2, 9, id="5x6x3-k3-bits-m3"),
    pytest.param((6, 7, 1), 2, 5, 1, 2, 7, 8, 1, 5, id="6x7x1-k5p-px-m5"),
]


def _unit_run(in_shape, m, kernel, stride, padding, pad_value, bits, pe, simd, source_pause,
              sink_pause, frames=3, seed=3):
    from hwsim import Sink, Source, run_streams

    from xnorflow.hw.blocks.conv import ConvUnit

    rng = np.random.default_rng(seed)
    h, w, c = in_shape
    n = kernel * kernel * c
    weights = rng.integers(0, 2, (m, n)).astype(bool)
    maps = rng.integers(0, 1 << bits, (frames, h, w, c))
    # thresholds inside the accumulator's range, both directions
    top = n if bits == 1 else 255 * n
    thresholds = rng.integers(-top // 4 if bits == 8 else n // 3, top // 4 if bits == 8
                              else 2 * n // 3 + 1, m)
    directions = np.where(np.arange(m) % 2 == 0, 1, -1)
    op = ConvOp(0, "conv0", in_shape, m, kernel, stride, padding, pad_value, bits, weights,
                thresholds.astype(np.int64), directions.astype(np.int64), pe, simd, "lut")
    assert op.columns == simd // c and op.in_lanes == c and op.in_width == c * bits
    dut = ConvUnit.from_op(op)
    inputs = [sum(int(x) << (bits * ch) for ch, x in enumerate(pixel))
              for v in maps for row in v for pixel in row]
    expected = []
    for v in maps:
        out = _ref_conv(v.tolist(), weights.astype(int).tolist(), thresholds.tolist(),
                        directions.tolist(), kernel, stride, padding, pad_value, bits)
        expected += [sum(b << i for i, b in enumerate(out[j:j + pe]))
                     for j in range(0, len(out), pe)]
    assert np.array_equal(op.execute(maps.reshape(frames, -1)).reshape(-1),
                          np.array([b >> i & 1 for b in expected for i in range(pe)]))
    source = Source(dut.i_stream, inputs, source_pause, seed=seed + 1)
    sink = Sink(dut.o_stream, len(expected), sink_pause, seed=seed + 2)
    run_streams(dut, [source], [sink], timeout=400, drain=60)
    assert sink.beats == expected
    return op, source, sink


@pytest.mark.parametrize("source_pause", ["none", "fixed", "random"])
@pytest.mark.parametrize(
    ("in_shape", "m", "kernel", "stride", "padding", "pad_value", "bits", "pe", "simd"),
    UNIT_CONFIGS)
def test_conv_unit_columns_timed(in_shape, m, kernel, stride, padding, pad_value, bits, pe,
                                 simd, source_pause):
    """SIMD = m*C, a source that pauses (or not) into a sink always ready: bit-exact against the
    plain-loop reference, and every output beat valid in the cycle the op's beat-level schedule
    (:func:`conv_schedule`) predicts from the cycles the input beats were taken, which are the
    schedule's too."""
    op, source, sink = _unit_run(in_shape, m, kernel, stride, padding, pad_value, bits, pe, simd,
                                 source_pause, "none")
    start = source.cycles[0]
    accepted, outputs = op.schedule(tuple(t - start for t in source.cycles))
    assert list(accepted) == [t - start for t in source.cycles]
    assert [t - start for t in sink.cycles] == list(outputs)
    if source_pause == "none":
        assert sink.valid_cycles[0] - start == op.latency
        per = op.output_beats
        assert sink.cycles[-1] - sink.cycles[-1 - per] == op.cycles_per_frame


@pytest.mark.parametrize(("source_pause", "sink_pause"),
                         [("none", "fixed"), ("random", "random"), ("fixed", "random")])
@pytest.mark.parametrize(
    ("in_shape", "m", "kernel", "stride", "padding", "pad_value", "bits", "pe", "simd"),
    UNIT_CONFIGS)
def test_conv_unit_columns_stalls(in_shape, m, kernel, stride, padding, pad_value, bits, pe,
                                  simd, source_pause, sink_pause):
    """SIMD = m*C under stalls on both sides: every beat once, in order, bit-exact."""
    _, _, sink = _unit_run(in_shape, m, kernel, stride, padding, pad_value, bits, pe, simd,
                           source_pause, sink_pause)
    assert len(sink.valid_cycles) > len(sink.beats)


def test_columns_fold_and_widths():
    """A folding of SIMD = m*C passes the checks, the conv takes one pixel a beat, the converter
    in front is sized from that width, and the window generator's buffer is m banks."""
    model, fold_cfg, _ = make("stride-columns")
    plan = compile_plan(model, fold_cfg)
    conv = plan.layers[1]
    assert (conv.simd, conv.columns, conv.in_lanes, conv.in_width) == (8, 2, 4, 4)
    assert conv.input_beats == 4 * 4 and conv.sf == 2 * 2 * 4 // 8
    converters = [op for op in plan.ops if op.kind == "converter"]
    assert [(op.in_width, op.out_width) for op in converters][0] == (2, 4)
    block = block_for(conv)
    Fragment.get(block, None)
    assert block.window.columns == 2 and len(Value.cast(block.i_stream.payload)) == 4
    assert len(Value.cast(block.window.o_stream.payload)) == 8
    assert block.unit.simd == 8


@pytest.mark.parametrize(("in_shape", "kernel", "stride", "bits", "simd"), [
    ((32, 32, 1), 3, 1, 8, 3), ((16, 16, 64), 3, 1, 1, 192), ((13, 11, 32), 3, 2, 1, 96),
    ((14, 14, 2), 5, 1, 1, 10), ((9, 7, 16), 4, 2, 1, 32), ((16, 16, 64), 3, 1, 1, 64)])
def test_line_buffer_banks_and_block_rams(in_shape, kernel, stride, bits, simd):
    """The window generator's line buffer in block RAM is m banks of (K+S) x ceil(W/m) pixels
    (one bank of (K+S) x W*C/SIMD words for m = 1), as the gateware elaborates them, and the
    op's estimate counts their block RAMs exactly, on both families."""
    from amaranth.hdl import Shape

    from xnorflow.hw.blocks.window import SlidingWindow
    from xnorflow.hw.compiler.resources import Resources

    h, w, c = in_shape
    n = kernel * kernel * c
    op = ConvOp(1, "conv", in_shape, 8, kernel, stride, 0, 0, bits,
                np.zeros((8, n), dtype=bool), np.zeros(8, dtype=np.int64),
                np.ones(8, dtype=np.int64), 1, simd, "bram", line_buffer="block")
    window = SlidingWindow(in_shape, kernel=kernel, stride=stride, lane_bits=bits, simd=simd,
                           buffer=op.line_buffer_style)
    module = window.elaborate(None)
    names = ["lines"] if op.columns == 1 else [f"lines{b}" for b in range(op.columns)]
    memories = [module.submodules[name] for name in names]
    Fragment.get(module, None)
    rows, per_bank = kernel + stride, -(-w // op.columns) * (c // op.in_lanes)
    assert [(mem.depth, Shape.cast(mem.shape).width) for mem in memories] == \
        [(rows * per_bank, op.in_width)] * op.columns
    built = Resources()
    for mem in memories:
        built += Resources.block_memory(mem.depth, Shape.cast(mem.shape).width)
    window_only = op.resources()
    for family in ("ice40", "ecp5"):
        assert window_only.brams(family) - op.mvtu.resources().brams(family) == \
            built.brams(family), family


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


@pytest.mark.parametrize(("source_pause", "sink_pause"), [("none", "none"), ("random", "random")])
def test_first_conv_with_kernel_columns(source_pause, sink_pause):
    """The frame's convolution folded with SIMD = 3*C (C = 1, three kernel columns a beat): the
    network takes one pixel per ``s_axis`` beat (its width, ``N0/SIMD_in`` beats a frame),
    computes what the golden model does, and with no stalls its latency and II are the
    prediction. (The beats are packed by the ``s_axis`` width here: the network top's ``lanes``
    still reads the first layer's SIMD.)"""
    from types import SimpleNamespace

    from amaranth.hdl import Cat
    from hwsim import Sink, Source, run_streams
    from test_hw_network import input_beats

    model = random_net("6x6x1-c4k3-p2-c4k3p-5", 9)
    frames = random_frames(np.random.default_rng(59), 5, model.layers[0].in_features)
    dut = Network(model, folding((2, 3), (4, 4), (2, 12), (5, 4)))
    lanes = len(dut.s_axis_tdata) // 8
    assert lanes == 1 and dut.beats_per_frame == 36
    s_axis = SimpleNamespace(payload=Cat(dut.s_axis_tdata, dut.s_axis_tlast),
                             valid=dut.s_axis_tvalid, ready=dut.s_axis_tready)
    m_axis = SimpleNamespace(payload=Cat(dut.m_axis_tdata, dut.m_axis_tlast),
                             valid=dut.m_axis_tvalid, ready=dut.m_axis_tready)
    source = Source(s_axis, [b for f in frames for b in input_beats(f, lanes)], source_pause,
                    seed=11)
    sink = Sink(m_axis, len(frames), sink_pause, seed=12)
    run_streams(dut, [source], [sink], timeout=4 * dut.ii + dut.latency + 50,
                drain=2 * dut.ii + dut.latency + 20)
    check_results(dut, model, frames, sink)
    if source_pause == sink_pause == "none":
        assert sink.valid_cycles[0] - source.cycles[0] == dut.latency
        gaps = [b - a for a, b in pairwise(sink.cycles)]
        assert gaps[-2:] == [dut.ii] * 2, gaps


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

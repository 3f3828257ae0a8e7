# amaranth: UnusedElaboratable=no
"""The generated network in Amaranth's simulator against the golden model, bit-exact, and its
measured II and latency against the performance model; the folding file and its errors."""

import itertools
import json
from itertools import pairwise
from types import SimpleNamespace

import numpy as np
import pytest
from amaranth.hdl import Cat, Fragment, Value
from hwsim import PAUSE_KINDS, Sink, Source, pauses, run_streams

from xnorflow.data import load
from xnorflow.golden import GoldenModel
from xnorflow.hw.blocks import block_for
from xnorflow.hw.compiler import (
    ArgMaxOp,
    ConverterOp,
    DenseOp,
    FifoOp,
    Folding,
    FoldingError,
    LayerFolding,
    compile_plan,
    fold,
    insert_converters,
    lower,
    predict_latency,
    size_fifos,
)
from xnorflow.hw.tops.network import Network, build
from xnorflow.model import Model
from xnorflow.models import MODELS_DIR
from xnorflow.sim.fixtures import folding, random_frames, random_model

# (topology, folding, frames)
CASES = {
    # PE = SIMD = 1 everywhere: no converters (1 -> 1), II = 12 * 20.
    "20-12-9-5-pe1": ((20, 12, 9, 5), folding((1, 1), (1, 1), (1, 1)), 3),
    # Converters 4 -> 6 (neither divides) and 3 -> 9, ArgMax PE 5, mixed storage.
    "20-12-9-5-mixed": ((20, 12, 9, 5),
                        folding((4, 5, "bram"), (3, 6, "lut"), (5, 9, "bram")), 6),
    # Fully parallel: II 1.
    "20-12-9-5-parallel": ((20, 12, 9, 5), folding((12, 20), (9, 12), (5, 9)), 8),
    # Converters 2 -> 4, 3 -> 9 and FIFOs in front of every layer (depths asked for).
    "20-12-9-5-fifos": ((20, 12, 9, 5),
                        folding((2, 10, "lut", 3), (3, 4, "bram", 4), (1, 9, "lut", 5)), 5),
    # Converters 9 -> 6 and 4 -> 6 (neither divides).
    "24-18-12-6-mixed": ((24, 18, 12, 6), folding((9, 8), (4, 6), (2, 6)), 5),
    # The last layer is the bottleneck; fully parallel producers push back through converters
    # 12 -> 4 and 9 -> 1.
    "20-12-9-5-slow-tail": ((20, 12, 9, 5), folding((12, 20), (9, 4), (1, 1)), 4),
    # Upsizing converters 1 -> 12 and 1 -> 3 after slow producers.
    "20-12-9-5-upsize": ((20, 12, 9, 5), folding((1, 4, "lut"), (1, 12), (5, 3)), 4),
    # One layer on pixels: signed scores, no hidden layer.
    "12-3-single": ((12, 3), folding((1, 4)), 5),
}


def make(case, *, with_scores=True, seed=0):
    topology, fold_cfg, frames = CASES[case]
    rng = np.random.default_rng(seed + 100)
    x = random_frames(rng, frames, topology[0])
    model = random_model(topology, seed, x)
    return model, fold_cfg, x


# --- Simulation harness -------------------------------------------------------------------------


def input_beats(frame, lanes, tlast=None):
    """Beat k: pixel k*lanes + l at bits 8l.. (docs/semantics.md 4); tlast above the data."""
    beats = []
    count = len(frame) // lanes
    for k in range(count):
        word = sum(int(frame[k * lanes + lane]) << (8 * lane) for lane in range(lanes))
        last = (k == count - 1) if tlast is None else tlast(k)
        beats.append(word | (int(last) << (8 * lanes)))
    return beats


def decode_result(raw, classes, score_width, signed, with_scores):
    """tlast at the top bit; index in bits 0..I-1, score k at I + k*S (documented layout)."""
    index_width = (classes - 1).bit_length()
    index = raw & ((1 << index_width) - 1)
    scores = []
    if with_scores:
        for k in range(classes):
            value = (raw >> (index_width + k * score_width)) & ((1 << score_width) - 1)
            if signed and value >> (score_width - 1):
                value -= 1 << score_width
            scores.append(value)
    return index, scores


class Monitor:
    """A passive port for ``run_streams``: records ``frame_error``, ``s_axis_tready`` and
    ``m_axis_tvalid`` in every cycle."""

    beats = ()
    expected = 0
    done = True

    def __init__(self, dut):
        self.dut = dut
        self.frame_error = []
        self.s_ready = []
        self.m_valid = []

    def drive(self, ctx, *, force_ready=False):
        pass

    def sampled(self):
        return (self.dut.frame_error, self.dut.s_axis_tready, self.dut.m_axis_tvalid)

    def observe(self, cycle, frame_error, s_ready, m_valid):
        self.frame_error.append(frame_error)
        self.s_ready.append(s_ready)
        self.m_valid.append(m_valid)
        return False


def simulate(dut, frames, source_pause="none", sink_pause="none", tlast=None, sink_pauses=None,
             timeout=None):
    """Stream ``frames`` through ``dut``; return (source, sink, monitor). ``sink_pauses``, an
    iterator of booleans, replaces the sink's pause pattern."""
    s_axis = SimpleNamespace(payload=Cat(dut.s_axis_tdata, dut.s_axis_tlast),
                             valid=dut.s_axis_tvalid, ready=dut.s_axis_tready)
    m_axis = SimpleNamespace(payload=Cat(dut.m_axis_tdata, dut.m_axis_tlast),
                             valid=dut.m_axis_tvalid, ready=dut.m_axis_tready)
    beats = [beat for frame in frames for beat in input_beats(frame, dut.lanes, tlast)]
    source = Source(s_axis, beats, source_pause, seed=11)
    sink = Sink(m_axis, len(frames), sink_pause, seed=12)
    if sink_pauses is not None:
        sink._pauses = sink_pauses
    monitor = Monitor(dut)
    run_streams(dut, [source], [sink, monitor], timeout=timeout or 4 * dut.ii + dut.latency + 50,
                drain=2 * dut.ii + dut.latency + 20)
    # Nothing left inside: at the end the input is ready and no result is pending.
    assert monitor.s_ready[-1] == 1 and monitor.m_valid[-1] == 0
    return source, sink, monitor


def check_results(dut, model, frames, sink):
    golden = GoldenModel(model).run(frames)
    shape = dut.score_shape
    width = dut.tdata_layout["width"]
    assert len(sink.beats) == len(frames)  # every frame out exactly once (and no more)
    for index, raw in enumerate(sink.beats):
        assert raw >> width == 1, f"frame {index}: m_axis_tlast must be 1"
        cls, scores = decode_result(raw & ((1 << width) - 1), model.classes, shape.width,
                                    shape.signed, dut.with_scores)
        assert cls == golden.classes[index], f"frame {index}: class"
        if dut.with_scores:
            assert scores == list(golden.scores[index]), f"frame {index}: scores"
        else:
            assert (raw & ((1 << width) - 1)) >> dut.index_width == 0


# --- Bit-exactness under stalls -----------------------------------------------------------------

@pytest.mark.parametrize("sink_pause", PAUSE_KINDS)
@pytest.mark.parametrize("source_pause", PAUSE_KINDS)
@pytest.mark.parametrize("case", list(CASES))
def test_network_bit_exact(case, source_pause, sink_pause):
    """Every frame out exactly once, in order, class and scores as the golden model's; a new
    random model for each pause pattern."""
    seed = 3 * PAUSE_KINDS.index(source_pause) + PAUSE_KINDS.index(sink_pause)
    model, fold_cfg, frames = make(case, seed=seed)
    dut = Network(model, fold_cfg)
    source, sink, monitor = simulate(dut, frames, source_pause, sink_pause)
    check_results(dut, model, frames, sink)
    assert not any(monitor.frame_error)


def test_network_deep_backpressure():
    """m_axis_tready low for 400 cycles, then random: the output FIFO, the ArgMax, every layer
    and finally s_axis_tready stall; nothing is lost once it flows again."""
    model, fold_cfg, _ = make("20-12-9-5-mixed", seed=21)
    frames = random_frames(np.random.default_rng(22), 40, 20)
    dut = Network(model, fold_cfg)
    blocked = itertools.chain(itertools.repeat(True, 400), pauses("random", 5))
    source, sink, monitor = simulate(dut, frames, "random", sink_pauses=blocked, timeout=500)
    check_results(dut, model, frames, sink)
    assert sink.cycles[0] >= 400 and sink.valid_cycles[0] < 400
    # The input stalled while beats were waiting: s_axis_tready fell and stayed low until the
    # sink woke; how many frames the network held meanwhile:
    last_ready = max(c for c in range(400) if monitor.s_ready[c])
    assert last_ready < 400 - 4 * dut.ii
    held = sum(1 for c in source.cycles if c < 400) // dut.beats_per_frame
    assert 4 < held < 40


def test_network_result_every_cycle_under_backpressure():
    """Fully parallel (II 1): a result per cycle into a randomly pausing sink."""
    model, fold_cfg, _ = make("20-12-9-5-parallel", seed=23)
    frames = random_frames(np.random.default_rng(24), 40, 20)
    dut = Network(model, fold_cfg)
    assert dut.ii == 1
    _, sink, _ = simulate(dut, frames, "none", "random")
    check_results(dut, model, frames, sink)
    assert len(sink.valid_cycles) > len(sink.beats)  # valid & ~ready happened


def test_network_without_scores():
    model, fold_cfg, frames = make("24-18-12-6-mixed", seed=5)
    dut = Network(model, fold_cfg, with_scores=False)
    assert dut.tdata_layout == {"width": 8, "index": {"offset": 0, "width": 3}, "scores": None,
                                "padding": {"offset": 3, "width": 5}}
    _, sink, _ = simulate(dut, frames, "random", "random")
    check_results(dut, model, frames, sink)


def test_network_default_folding():
    model, _, frames = make("20-12-9-5-mixed", seed=9)
    dut = Network(model)
    assert dut.plan.folding == Folding.default(model.layers)
    _, sink, _ = simulate(dut, frames, "fixed", "random")
    check_results(dut, model, frames, sink)


# --- Performance model against the simulation ---------------------------------------------------


@pytest.mark.parametrize("case", list(CASES))
def test_network_ii_and_latency(case):
    """No stalls: the first frame's latency and the steady-state II equal the prediction."""
    model, fold_cfg, frames = make(case)
    frames = np.concatenate([frames] * max(1, -(-6 // len(frames))))[:max(6, len(frames))]
    dut = Network(model, fold_cfg)
    source, sink, _ = simulate(dut, frames)
    check_results(dut, model, frames, sink)
    assert sink.valid_cycles[0] - source.cycles[0] == dut.latency
    gaps = [b - a for a, b in pairwise(sink.cycles)]
    assert gaps[-3:] == [dut.ii] * 3, gaps
    # The input side keeps up: every frame's first beat at most one II after the previous one's.
    starts = source.cycles[::dut.beats_per_frame]
    assert all(b - a <= dut.ii for a, b in pairwise(starts))


def test_network_latency_is_per_stage_sum():
    """The prediction by hand for 20-12-9-5 with PE = SIMD = 1: input 20 beats, each MVTU
    4 cycles (SIMD 1: no tree stage) + (NF-1)*SF, ArgMax 1, output FIFO 2."""
    model, fold_cfg, _ = make("20-12-9-5-pe1")
    plan = compile_plan(model, fold_cfg)
    expected = (20 - 1) + (4 + 11 * 20) + (4 + 8 * 12) + (4 + 4 * 9) + 1 + 2
    assert predict_latency(plan) == expected
    assert plan.ii == 12 * 20


def test_ops_match_the_blocks():
    """Each op's II, latency and widths are those its built component documents."""
    model, fold_cfg, _ = make("20-12-9-5-fifos")
    plan = compile_plan(model, fold_cfg)
    for op in plan.ops:
        block = block_for(op)
        Fragment.get(block, None)  # elaborated (blocks are made in hw/, out of this file's reach)
        assert op.latency == block.latency, op.label
        if isinstance(op, DenseOp):
            assert (op.ii, op.nf, op.sf) == (block.ii, block.neuron_fold, block.synapse_fold)
            assert len(Value.cast(block.i_stream.payload)) == op.in_width
        elif isinstance(op, ConverterOp):
            assert op.cycles_per_frame == block.cycles_per_frame
            assert op.capacity == block.capacity
        elif isinstance(op, ArgMaxOp):
            assert op.cycles_per_frame == block.ii
            assert op.output_layout == block.output_layout
            assert op.out_width == block.output_layout.size
        else:
            assert block.depth == op.depth and block.width == op.width


# --- TFC on real frames -------------------------------------------------------------------------


@pytest.mark.parametrize(("source_pause", "sink_pause"), [("none", "none"),
                                                          ("random", "fixed")])
def test_tfc_on_mnist_frames(source_pause, sink_pause):
    """The shipped TFC model (784-64-64-64-10) on 5 embedded MNIST test frames, converters
    16 -> 32, 8 -> 16 and 32 -> 16; without stalls also its latency and II."""
    model = Model.load(MODELS_DIR / "tfc.npz")
    images = load(None, "test").images
    frames = images[[0, 150, 300, 450, 600]]
    fold_cfg = folding((16, 49, "bram"), (8, 32, "lut"), (32, 16, "bram"), (5, 16, "lut"))
    dut = Network(model, fold_cfg)
    assert (dut.ii, dut.latency) == (64, 119)
    source, sink, _ = simulate(dut, frames, source_pause, sink_pause)
    check_results(dut, model, frames, sink)
    assert list(GoldenModel(model).predict(frames)) == [
        int(raw) & 0xF for raw in sink.beats]  # the class index in the low 4 bits
    if source_pause == sink_pause == "none":
        assert sink.valid_cycles[0] - source.cycles[0] == dut.latency
        assert [b - a for a, b in pairwise(sink.cycles)] == [dut.ii] * 4


# --- tlast ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", ["early", "missing"])
def test_tlast_mismatch_flags_and_keeps_counting(bad):
    """A wrong tlast sets the sticky frame_error; frames are still counted by beats, so every
    result stays correct and aligned."""
    model, fold_cfg, frames = make("20-12-9-5-mixed", seed=4)
    dut = Network(model, fold_cfg)
    beats = dut.beats_per_frame

    def tlast(k):
        if bad == "early":
            return k in (beats - 1, 0)  # an extra tlast on every frame's first beat
        return False  # never
    _, sink, monitor = simulate(dut, frames, "random", "random", tlast=tlast)
    check_results(dut, model, frames, sink)
    flagged = monitor.frame_error.index(1)
    assert all(monitor.frame_error[flagged:])  # sticky
    assert monitor.frame_error[0] == 0


# --- Passes -------------------------------------------------------------------------------------


def test_every_pass_keeps_the_function():
    """The plan's integer reference equals the golden model after every pass."""
    model, fold_cfg, frames = make("24-18-12-6-mixed")
    golden = GoldenModel(model).run(frames)
    plan = lower(model)
    stages = [plan]
    for step in (lambda p: fold(p, fold_cfg), insert_converters, size_fifos):
        stages.append(step(stages[-1]))
    assert [p.passes for p in stages] == [
        ("lower",), ("lower", "fold"), ("lower", "fold", "insert_converters"),
        ("lower", "fold", "insert_converters", "size_fifos")]
    for p in stages:
        classes, scores = p.execute(frames)
        assert (classes == golden.classes).all() and (scores == golden.scores).all()
    kinds = [op.kind for op in stages[-1].ops]
    assert kinds == ["dense", "converter", "dense", "converter", "dense", "argmax", "fifo"]
    conv = [op for op in stages[-1].ops if isinstance(op, ConverterOp)]
    assert [(c.in_width, c.out_width, c.frame_bits) for c in conv] == [(9, 6, 18), (4, 6, 12)]
    assert isinstance(stages[-1].ops[-1], FifoOp) and stages[-1].ops[-1].depth == 4
    with pytest.raises(ValueError, match=r"^plan has been through lower, fold; build needs"):
        build(stages[1])


def test_fifo_rule_and_overrides():
    model, fold_cfg, _ = make("20-12-9-5-fifos")
    plan = compile_plan(model, fold_cfg)
    fifos = [(op.before, op.width, op.depth) for op in plan.ops if isinstance(op, FifoOp)]
    # In front of each layer as asked (SIMD*input_bits wide), 4 results at the output.
    assert fifos == [("layer0", 80, 3), ("layer1", 4, 4), ("layer2", 9, 5),
                     ("m_axis", 3 + 5 * 4, 4)]
    plan = compile_plan(model, folding((2, 10), (3, 4), (1, 9)))
    assert [op.before for op in plan.ops if isinstance(op, FifoOp)] == ["m_axis"]


# --- Folding file and errors --------------------------------------------------------------------


def test_folding_file_roundtrip(tmp_path):
    model, _, _ = make("20-12-9-5-mixed")
    obj = {"layers": [{"pe": 4, "simd": 5, "storage": "bram"}, {"pe": 3, "simd": 6},
                      {"pe": 5, "simd": 9, "storage": "lut", "fifo_depth": 0}]}
    path = tmp_path / "fold.json"
    path.write_text(json.dumps(obj))
    f = Folding.load(path, model.layers)
    assert f.layers == (LayerFolding(4, 5, "bram"), LayerFolding(3, 6, "bram"),
                        LayerFolding(5, 9, "lut", 0))
    assert Folding.from_dict(f.to_dict()) == f


def _tfc_layers():
    return Model.load(MODELS_DIR / "tfc.npz").layers


def _sfc_layers():
    return Model.load(MODELS_DIR / "sfc.npz").layers


@pytest.mark.parametrize(("entries", "message"), [
    ([{"pe": 16, "simd": 49}, {"pe": 16, "simd": 16}, {"pe": 7, "simd": 16},
      {"pe": 10, "simd": 16}],
     r"^layer 2 \(hidden2\): PE \(7\) must divide the output channels \(256\)$"),
    ([{"pe": 16, "simd": 48}, {"pe": 16, "simd": 16}, {"pe": 16, "simd": 16},
      {"pe": 10, "simd": 16}],
     r"^layer 0 \(input\): SIMD \(48\) must divide the input channels \(784\)$"),
    ([{"pe": 16, "simd": 49}], r"^folding has 1 layer entries but the model has 4 layers$"),
    ([{"pe": 16, "simd": 49}, {"pe": 0, "simd": 16}],
     r"^layer 1 \(hidden1\): PE \(0\) must be a positive integer$"),
    ([{"pe": 16, "simd": "49"}], r"^layer 0 \(input\): SIMD \('49'\) must be a positive integer$"),
    ([{"pe": 16, "simd": 49, "storage": "dsp"}],
     r"^layer 0 \(input\): storage \('dsp'\) must be 'bram' or 'lut'$"),
    ([{"pe": 16}], r"^layer 0 \(input\): missing key 'simd'$"),
    ([{"pe": 16, "simd": 49, "pes": 2}],
     r"^layer 0 \(input\): unknown key 'pes' \(allowed: pe, simd, storage, fifo_depth, "
     r"buffer, line_buffer\)$"),
    ([{"pe": 16, "simd": 49, "fifo_depth": 2}],
     r"^layer 0 \(input\): fifo_depth \(2\) must be 0 \(no FIFO\) or at least 3$"),
    ([[16, 49]], r"^layer 0 \(input\): expected an object like"),
])
def test_folding_errors(entries, message):
    with pytest.raises(FoldingError, match=message):
        Folding.from_dict({"layers": entries}, _sfc_layers())


def test_folding_file_errors(tmp_path):
    layers = _tfc_layers()
    with pytest.raises(FoldingError, match=r"no such folding file$"):
        Folding.load(tmp_path / "missing.json", layers)
    bad = tmp_path / "bad.json"
    bad.write_text("{\"layers\": [")
    with pytest.raises(FoldingError, match=r"^bad\.json: not valid JSON"):
        Folding.load(bad, layers)
    bad.write_text("[]")
    with pytest.raises(FoldingError, match=r'^bad\.json: folding: expected a JSON object'):
        Folding.load(bad, layers)
    bad.write_text("{\"layer\": []}")
    with pytest.raises(FoldingError, match=r"^bad\.json: folding: missing key 'layers'$"):
        Folding.load(bad, layers)
    bad.write_text("{\"layers\": [], \"target\": 3}")
    with pytest.raises(FoldingError, match=r"unknown key 'target' \(allowed: layers\)$"):
        Folding.load(bad, layers)
    model, _, _ = make("20-12-9-5-mixed")
    with pytest.raises(FoldingError, match=r"^layer 1 \(fc1\): SIMD \(5\) must divide the "
                                           r"input channels \(12\)$"):
        Network(model, folding((4, 5), (3, 5), (5, 9)))


def test_default_folding_rule():
    """Target II = ceil(max N*M / 256); per layer the fewest lanes meeting it, larger SIMD on
    ties; block RAM from 64 words per PE."""
    f = Folding.default(_tfc_layers())
    # 784*64/256 = 196: 16 x 16 lanes (II 196), 1 x 32 (II 128), 1 x 32, 1 x 4 (II 160).
    assert f.layers == (LayerFolding(16, 16, "bram"), LayerFolding(1, 32, "bram"),
                        LayerFolding(1, 32, "bram"), LayerFolding(1, 4, "bram"))
    plan = compile_plan(Model.load(MODELS_DIR / "tfc.npz"))
    assert plan.ii == 196
    f = Folding.default(_tfc_layers(), target_ii=1)
    assert [(x.pe, x.simd, x.storage) for x in f.layers] == [
        (64, 784, "lut"), (64, 64, "lut"), (64, 64, "lut"), (10, 64, "lut")]
    with pytest.raises(FoldingError, match=r"^target II \(0\) must be a positive integer$"):
        Folding.default(_tfc_layers(), target_ii=0)


def test_resource_estimate_is_reported_per_layer():
    model, fold_cfg, _ = make("20-12-9-5-mixed")
    dut = Network(model, fold_cfg)
    manifest = dut.manifest()
    assert manifest["resources"]["calibrated"] is True
    total = manifest["resources"]["total"]
    per_stage = manifest["resources"]["per_stage"]
    assert set(per_stage) == {op.label for op in dut.plan.ops}
    for key in ("lut_ice40", "lut_ecp5"):  # plus the input counter
        assert total[key] > sum(s[key] for s in per_stage.values())
    # More lanes cost more LUTs; the same weights as LUTs instead of block RAM use no BRAM.
    big = compile_plan(model, folding((12, 20), (9, 12), (5, 9))).resources()
    small = compile_plan(model, folding((1, 1), (1, 1), (1, 1))).resources()
    assert big.luts("ecp5") > small.luts("ecp5")
    # Weights with "bram" storage are block RAM however small (the MVTU marks them so).
    for layer, op in zip(manifest["layers"], dut.plan.layers, strict=True):
        weight_bits = op.nf * op.sf * op.simd * op.pe
        assert (layer["resources"]["bram_bits"] >= weight_bits) == (op.storage == "bram"), layer

# amaranth: UnusedElaboratable=no
"""Simulation tests of ArgMax against a naive reference (docs/semantics.md section 3.3), and of
a score-layer MVTU feeding an ArgMax."""

import random
from itertools import pairwise

import numpy as np
import pytest
from amaranth.hdl import Module, signed, unsigned
from amaranth.lib import wiring
from hwsim import PAUSE_KINDS, Sink, Source, run_streams

from xnorflow.hw.blocks.argmax import ArgMax
from xnorflow.hw.blocks.mvtu import MVTU


def ref_argmax(scores):
    """The index of the largest score, ties to the lowest index."""
    best = 0
    for i in range(1, len(scores)):
        if scores[i] > scores[best]:
            best = i
    return best


def encode_scores(scores, width):
    """Score p at bits p*width.., two's complement."""
    word = 0
    for p, score in enumerate(scores):
        word |= (score & ((1 << width) - 1)) << (p * width)
    return word


def decode_output(raw, classes, width, signed_scores, with_scores):
    """index at bit 0 (ceil(log2(classes)) bits), then score i at bits index_width + i*width."""
    index_width = (classes - 1).bit_length()
    index = raw & ((1 << index_width) - 1)
    if not with_scores:
        assert raw >> index_width == 0
        return index, None
    scores = []
    for i in range(classes):
        value = (raw >> (index_width + i * width)) & ((1 << width) - 1)
        if signed_scores and value >> (width - 1):
            value -= 1 << width
        scores.append(value)
    return index, scores


def random_frames(rng, frames, classes, shape):
    """Scores from a narrow range (many ties) mixed with the shape's extremes."""
    if shape.signed:
        lo, hi = -(1 << (shape.width - 1)), (1 << (shape.width - 1)) - 1
    else:
        lo, hi = 0, (1 << shape.width) - 1
    result = []
    for _ in range(frames):
        centre = rng.randint(lo, hi - 3)
        result.append([rng.choice((lo, hi, rng.randint(centre, centre + 3),
                                   rng.randint(centre, centre + 3)))
                       for _ in range(classes)])
    # A frame of equal scores, and one whose maximum is the last class.
    result.append([lo + 1] * classes)
    result.append([lo] * (classes - 1) + [lo + 1])
    return result


# (classes, PE, score shape, with scores)
CONFIGS = [
    pytest.param(10, 1, unsigned(4), True, id="10-pe1-u4-scores"),
    pytest.param(10, 2, signed(13), False, id="10-pe2-s13"),
    pytest.param(10, 5, unsigned(7), True, id="10-pe5-u7-scores"),
    pytest.param(6, 6, signed(5), True, id="6-pe6-s5-scores"),
    pytest.param(7, 7, unsigned(3), False, id="7-pe7-u3"),
]


def run_argmax(classes, pe, shape, with_scores, source_pause="none", sink_pause="none",
               frames=5, seed=0):
    rng = random.Random(seed)
    inputs = random_frames(rng, frames, classes, shape)
    dut = ArgMax(classes, pe, shape, with_scores=with_scores)
    beats = [encode_scores(frame[f * pe:(f + 1) * pe], shape.width)
             for frame in inputs for f in range(classes // pe)]
    source = Source(dut.i_stream, beats, source_pause, seed=3)
    sink = Sink(dut.o_stream, len(inputs), sink_pause, seed=4)
    run_streams(dut, [source], [sink], timeout=100, drain=20)
    for frame, raw in zip(inputs, sink.beats, strict=True):
        index, scores = decode_output(raw, classes, shape.width, shape.signed, with_scores)
        assert index == ref_argmax(frame), frame
        if with_scores:
            assert scores == frame
    return dut, source, sink


@pytest.mark.parametrize("sink_pause", PAUSE_KINDS)
@pytest.mark.parametrize("source_pause", PAUSE_KINDS)
@pytest.mark.parametrize(("classes", "pe", "shape", "with_scores"), CONFIGS)
def test_argmax_stream(classes, pe, shape, with_scores, source_pause, sink_pause):
    _, _, sink = run_argmax(classes, pe, shape, with_scores, source_pause, sink_pause,
                            seed=classes * pe)
    # Backpressure really happened (valid & ~ready) whenever the sink pauses.
    assert (len(sink.valid_cycles) > len(sink.beats)) == (sink_pause != "none")


@pytest.mark.parametrize(("classes", "pe", "shape", "with_scores"), CONFIGS)
def test_argmax_ii_and_latency(classes, pe, shape, with_scores):
    dut, source, sink = run_argmax(classes, pe, shape, with_scores, frames=4, seed=1)
    nf = classes // pe
    assert (dut.ii, dut.latency) == (nf, 1)
    last_inputs = source.cycles[nf - 1::nf]
    assert [out - last for out, last in zip(sink.cycles, last_inputs, strict=True)] == [1] * 6
    assert [b - a for a, b in pairwise(sink.cycles)] == [nf] * 5


def test_argmax_ties_hand_checked():
    """Hand-computed: ties go to the lowest index, across and within beats."""
    dut = ArgMax(4, 2, unsigned(3))
    frames = [[5, 7, 7, 2], [6, 6, 6, 6], [1, 2, 3, 7], [7, 0, 0, 7]]
    beats = [encode_scores(frame[i:i + 2], 3) for frame in frames for i in (0, 2)]
    source = Source(dut.i_stream, beats)
    sink = Sink(dut.o_stream, 4)
    run_streams(dut, [source], [sink], drain=10)
    assert sink.beats == [1, 0, 3, 0]


def test_argmax_properties():
    dut = ArgMax(10, 5, signed(6), with_scores=True)
    assert (dut.classes, dut.pe, dut.folds, dut.with_scores) == (10, 5, 2, True)
    assert dut.score_shape == signed(6)
    assert dut.output_layout.size == 4 + 60
    with pytest.raises(AttributeError):
        dut.pe = 2


@pytest.mark.parametrize(("args", "message"), [
    ((10, 3, unsigned(4)), r"^PE \(3\) must divide the classes \(10\)$"),
    ((10, 0, unsigned(4)), r"^PE \(0\) must be a positive integer$"),
    ((0, 1, unsigned(4)), r"^Number of classes \(0\) must be a positive integer$"),
    ((10, 2, "wide"), r"^score_shape \('wide'\) must be a shape$"),
])
def test_argmax_parameter_messages(args, message):
    with pytest.raises(ValueError, match=message):
        ArgMax(*args)


@pytest.mark.parametrize("sink_pause", PAUSE_KINDS)
@pytest.mark.parametrize("source_pause", PAUSE_KINDS)
@pytest.mark.parametrize(("input_bits", "pe", "simd"), [(1, 2, 3), (8, 5, 2)])
def test_mvtu_into_argmax(input_bits, pe, simd, source_pause, sink_pause):
    """A score-layer MVTU connected to an ArgMax: the class of each frame, in order."""
    n, m = 12, 10
    rng = random.Random(input_bits)
    weights = np.array([[rng.randrange(2) for _ in range(n)] for _ in range(m)], dtype=np.uint8)
    top_max = 1 if input_bits == 1 else 255
    frames = [[rng.randint(0, top_max) for _ in range(n)] for _ in range(4)]
    mvtu = MVTU(weights, None, None, input_bits=input_bits, pe=pe, simd=simd)
    argmax = ArgMax(m, pe, mvtu.score_shape)
    top = Module()
    top.submodules.mvtu = mvtu
    top.submodules.argmax = argmax
    wiring.connect(top, mvtu.o_stream, argmax.i_stream)

    beats = []
    expected = []
    for frame in frames:
        for k in range(n // simd):
            beats.append(sum(frame[k * simd + lane] << (lane * input_bits)
                             for lane in range(simd)))
        scores = []
        for row in weights:
            pairs = zip(row, frame, strict=True)
            if input_bits == 1:
                scores.append(sum(1 for w, a in pairs if w == a))
            else:
                scores.append(sum(x if w else -x for w, x in pairs))
        expected.append(ref_argmax(scores))
    source = Source(mvtu.i_stream, beats, source_pause, seed=5)
    sink = Sink(argmax.o_stream, len(frames), sink_pause, seed=6)
    run_streams(top, [source], [sink], timeout=4 * mvtu.ii + 50, drain=mvtu.ii + 20)
    assert sink.beats == expected

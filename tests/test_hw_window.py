# amaranth: UnusedElaboratable=no
"""Simulation tests of the sliding-window generator against a naive reference written from
docs/semantics.md (sections 4, 5.1 and 5.2)."""

import random
from itertools import pairwise

import pytest
from hwsim import PAUSE_KINDS, Sink, Source, run_streams

from xnorflow.hw.blocks.window import SlidingWindow
from xnorflow.hw.compiler.rules import (
    window_cycles_per_frame,
    window_latency,
    window_timeline,
)

# --- The naive reference ------------------------------------------------------------------------


def random_map(rng, h, w, c, lane_bits):
    return [[[rng.randrange(1 << lane_bits) for _ in range(c)] for _ in range(w)]
            for _ in range(h)]


def pack(elements, simd, lane_bits):
    """Beats of ``simd`` elements, element ``l`` of a beat at bits ``l*lane_bits ...``."""
    assert len(elements) % simd == 0
    return [sum(e << (lane * lane_bits) for lane, e in enumerate(elements[i:i + simd]))
            for i in range(0, len(elements), simd)]


def map_beats(v, simd, lane_bits):
    """The map in stream order: row by row, pixel by pixel, channels fastest."""
    return pack([x for row in v for pixel in row for x in pixel], simd, lane_bits)


def ref_windows(v, kernel, stride, padding, pad_value):
    """The windows of section 5.2, each a list of K*K*C elements in the order ky, kx, ch."""
    h, w, c = len(v), len(v[0]), len(v[0][0])
    u = [[[pad_value] * c for _ in range(w + 2 * padding)] for _ in range(h + 2 * padding)]
    for r in range(h):
        for col in range(w):
            u[r + padding][col + padding] = list(v[r][col])
    oh = (h + 2 * padding - kernel) // stride + 1
    ow = (w + 2 * padding - kernel) // stride + 1
    windows = []
    for y in range(oh):
        for x in range(ow):
            windows.append([u[y * stride + ky][x * stride + kx][ch]
                            for ky in range(kernel) for kx in range(kernel) for ch in range(c)])
    return windows


def test_reference_by_hand():
    # docs/semantics.md 5.2, worked example: 2x3x1 map, K=2, S=1, P=0.
    v = [[[1], [0], [1]], [[1], [1], [0]]]
    assert ref_windows(v, 2, 1, 0, 0) == [[1, 0, 1, 1], [0, 1, 1, 0]]
    # Padding 1 around a 1x1 map with pad value 7: the centre is the pixel.
    assert ref_windows([[[5]]], 3, 1, 1, 7) == [[7, 7, 7, 7, 5, 7, 7, 7, 7]]
    assert pack([1, 0, 1, 1, 0, 0, 0, 0], 8, 1) == [0x0D]
    assert pack([0x12, 0x34], 2, 8) == [0x3412]


# (in_shape, kernel, stride, padding, pad_value, lane_bits, simd)
CONFIGS = [
    pytest.param((5, 7, 3), 3, 1, 1, 255, 8, 3, id="5x7x3-k3s1p1-px-simdC"),
    pytest.param((5, 5, 3), 3, 1, 0, 0, 8, 1, id="5x5x3-k3s1p0-px-simd1"),
    pytest.param((7, 5, 8), 5, 1, 2, 1, 1, 4, id="7x5x8-k5s1p2-bits"),
    pytest.param((7, 7, 1), 3, 2, 1, 0, 1, 1, id="7x7x1-k3s2p1-bits"),
    pytest.param((7, 5, 8), 3, 2, 0, 1, 1, 8, id="7x5x8-k3s2p0-bits-simdC"),
    pytest.param((5, 7, 1), 2, 2, 0, 0, 1, 1, id="5x7x1-k2s2p0-bits"),
    pytest.param((5, 3, 8), 2, 1, 1, 1, 1, 2, id="5x3x8-k2s1p1-bits"),
    pytest.param((3, 5, 3), 1, 1, 0, 0, 8, 3, id="3x5x3-k1s1-px"),
    pytest.param((5, 3, 8), 1, 2, 0, 0, 1, 4, id="5x3x8-k1s2-bits"),
    pytest.param((3, 3, 1), 3, 1, 0, 0, 8, 1, id="3x3x1-k3s1p0-one-window"),
    # SIMD = m*C: m kernel columns per output beat, one pixel per input beat
    pytest.param((5, 7, 1), 3, 1, 1, 7, 8, 3, id="5x7x1-k3s1p1-px-3cols"),
    pytest.param((7, 5, 1), 3, 2, 0, 200, 8, 3, id="7x5x1-k3s2p0-px-3cols"),
    pytest.param((6, 5, 2), 3, 1, 1, 1, 1, 6, id="6x5x2-k3s1p1-bits-3cols"),
    pytest.param((5, 7, 3), 3, 2, 1, 0, 1, 9, id="5x7x3-k3s2p1-bits-3cols"),
    pytest.param((5, 6, 3), 3, 1, 0, 1, 1, 9, id="5x6x3-k3s1p0-bits-3cols"),
    pytest.param((7, 6, 1), 5, 1, 2, 3, 8, 5, id="7x6x1-k5s1p2-px-5cols"),
    pytest.param((6, 7, 2), 4, 2, 0, 0, 1, 4, id="6x7x2-k4s2p0-bits-2cols"),
    pytest.param((3, 3, 1), 3, 1, 0, 0, 8, 3, id="3x3x1-k3s1p0-one-window-3cols"),
    # narrower than m (a bank holds no column), one row, W not a multiple of m
    pytest.param((3, 2, 1), 3, 1, 1, 5, 8, 3, id="3x2x1-k3s1p1-px-3cols-narrow"),
    pytest.param((2, 3, 2), 5, 1, 2, 1, 1, 10, id="2x3x2-k5s1p2-bits-5cols-narrow"),
    pytest.param((1, 4, 1), 3, 2, 1, 9, 8, 3, id="1x4x1-k3s2p1-px-3cols-one-row"),
]


def _run(in_shape, kernel, stride, padding, pad_value, lane_bits, simd, frames, source_pause,
         sink_pause, seed):
    rng = random.Random(seed)
    h, w, c = in_shape
    maps = [random_map(rng, h, w, c, lane_bits) for _ in range(frames)]
    # the input carries SIMD elements a beat where SIMD divides C, else one pixel (C elements)
    in_lanes = simd if c % simd == 0 else c
    beats = [b for v in maps for b in map_beats(v, in_lanes, lane_bits)]
    expected = [b for v in maps for window in ref_windows(v, kernel, stride, padding, pad_value)
                for b in pack(window, simd, lane_bits)]
    dut = SlidingWindow(in_shape, kernel=kernel, stride=stride, padding=padding,
                        pad_value=pad_value, lane_bits=lane_bits, simd=simd)
    source = Source(dut.i_stream, beats, source_pause, seed=seed + 1)
    sink = Sink(dut.o_stream, len(expected), sink_pause, seed=seed + 2)
    run_streams(dut, [source], [sink], timeout=100, drain=30)
    for index, (got, want) in enumerate(zip(sink.beats, expected, strict=True)):
        assert got == want, f"beat {index}: {got:#x} != {want:#x}"
    return dut, source, sink


@pytest.mark.parametrize("sink_pause", PAUSE_KINDS)
@pytest.mark.parametrize("source_pause", PAUSE_KINDS)
@pytest.mark.parametrize(
    ("in_shape", "kernel", "stride", "padding", "pad_value", "lane_bits", "simd"), CONFIGS)
def test_window_stream(in_shape, kernel, stride, padding, pad_value, lane_bits, simd,
                       source_pause, sink_pause):
    dut, source, sink = _run(in_shape, kernel, stride, padding, pad_value, lane_bits, simd, 3,
                             source_pause, sink_pause, seed=kernel * 10 + stride)
    assert (len(sink.valid_cycles) > len(sink.beats)) == (sink_pause != "none")


@pytest.mark.parametrize(
    ("in_shape", "kernel", "stride", "padding", "pad_value", "lane_bits", "simd"), CONFIGS)
def test_window_rate_and_latency(in_shape, kernel, stride, padding, pad_value, lane_bits, simd):
    """No pauses: the first output beat of every frame comes when the rule's timeline says, so
    the latency is the rule's and, from the second frame on, frames are the rule's II apart."""
    frames = 4
    dut, source, sink = _run(in_shape, kernel, stride, padding, pad_value, lane_bits, simd,
                             frames, "none", "none", seed=7)
    per_frame = len(sink.beats) // frames
    firsts = [sink.valid_cycles[0]] + [sink.cycles[f * per_frame] for f in range(1, frames)]
    start = source.cycles[0]
    assert [t - start for t in firsts] == window_timeline(in_shape, kernel, stride, padding,
                                                          simd, frames)
    assert firsts[0] - start == dut.latency == window_latency(in_shape, kernel, padding, simd)
    ii = window_cycles_per_frame(in_shape, kernel, stride, padding, simd)
    assert dut.cycles_per_frame == ii
    assert [b - a for a, b in pairwise(firsts[1:])] == [ii] * (frames - 2)
    h, w, c = in_shape
    oh, ow, n = dut.out_shape
    row_in = w if simd > c else w * c // simd       # input beats per row
    bound = max(h * row_in, oh * ow * n // simd)
    if padding or kernel <= stride:
        assert ii == bound
    else:  # the frame boundary's wait, hidden where the input is the bound
        low = bound if h * row_in >= oh * ow * n // simd else bound + 1
        assert low <= ii <= bound + (kernel - stride + (h - kernel) % stride) * row_in
    # Output beats of a frame leave back to back, one per cycle (unless they wait for input).
    assert (sink.cycles[per_frame - 1] - sink.cycles[0] == per_frame - 1 or kernel <= stride
            or ow * n // simd < stride * row_in)


def test_window_rule_bounds():
    """The II rule against its documented bounds over many small maps: exactly the larger of the
    input's and the output's beats per frame with padding or K <= S, else more by at most
    (K - S + (H - K) mod S) rows of input; and the timeline is periodic from the second frame."""
    for h in range(1, 8):
        for w in range(1, 8, 2):
            for kernel in (1, 2, 3, 4, 5):
                for stride in (1, 2):
                    for padding in sorted({0, kernel // 2}):
                        if kernel > h + 2 * padding or kernel > w + 2 * padding:
                            continue
                        oh = (h + 2 * padding - kernel) // stride + 1
                        ow = (w + 2 * padding - kernel) // stride + 1
                        # SIMD 1, and m kernel columns a beat for every m > 1 dividing K
                        for cols in [m for m in range(1, kernel + 1) if kernel % m == 0]:
                            bound = max(h * w, oh * ow * kernel * kernel // cols)
                            ii = window_cycles_per_frame((h, w, 1), kernel, stride, padding,
                                                         cols)
                            firsts = window_timeline((h, w, 1), kernel, stride, padding, cols,
                                                     6)
                            assert {b - a for a, b in pairwise(firsts[1:])} == {ii}
                            if padding or kernel <= stride:
                                assert ii == bound
                            else:  # the boundary's wait, hidden where the input is the bound
                                extra = (kernel - stride + (h - kernel) % stride) * w
                                low = bound + (h * w < bound)
                                assert low <= ii <= bound + extra


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"in_shape": (4, 4, 6), "kernel": 3, "simd": 4},
     r"^SIMD \(4\) must divide the channels \(6\) or be m\*C with m > 1 dividing the kernel "
     r"\(3\)$"),
    ({"in_shape": (4, 4, 2), "kernel": 3, "simd": 4},
     r"^SIMD \(4\) must divide the channels \(2\) or be m\*C with m > 1 dividing the kernel "
     r"\(3\)$"),
    ({"in_shape": (4, 4, 1), "kernel": 4, "simd": 3},
     r"^SIMD \(3\) must divide the channels \(1\) or be m\*C with m > 1 dividing the kernel "
     r"\(4\)$"),
    ({"in_shape": (4, 4, 6), "kernel": 3, "simd": 0},
     r"^SIMD \(0\) must be a positive integer$"),
    ({"in_shape": (4, 4), "kernel": 3},
     r"^in_shape \(\(4, 4\)\) must be a tuple \(H, W, C\) of positive integers$"),
    ({"in_shape": (4, 4, 1), "kernel": 0},
     r"^kernel \(0\) must be a positive integer$"),
    ({"in_shape": (4, 4, 1), "kernel": 3, "stride": 3},
     r"^stride \(3\) must be 1 or 2$"),
    ({"in_shape": (4, 4, 1), "kernel": 3, "padding": 2},
     r"^padding \(2\) must be 0 or kernel // 2 \(1\)$"),
    ({"in_shape": (2, 4, 1), "kernel": 3},
     r"^kernel \(3\) must not exceed the padded map \(2 x 4\)$"),
    ({"in_shape": (4, 4, 1), "kernel": 3, "lane_bits": 4},
     r"^lane_bits \(4\) must be 8 or 1$"),
    ({"in_shape": (4, 4, 1), "kernel": 3, "pad_value": 2},
     r"^pad_value \(2\) must be an integer in \[0, 1\]$"),
    ({"in_shape": (4, 4, 1), "kernel": 3, "lane_bits": 8, "pad_value": 256},
     r"^pad_value \(256\) must be an integer in \[0, 255\]$"),
    ({"in_shape": (4, 4, 1), "kernel": 3, "buffer": "bram"},
     r"^buffer \('bram'\) must be None, 'block', 'logic' or 'distributed'$"),
])
def test_window_parameter_messages(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SlidingWindow(**kwargs)


def test_window_properties():
    dut = SlidingWindow((5, 7, 4), kernel=3, stride=2, padding=1, pad_value=200, lane_bits=8,
                        simd=2)
    assert dut.in_shape == (5, 7, 4)
    assert (dut.kernel, dut.stride, dut.padding, dut.pad_value) == (3, 2, 1, 200)
    assert (dut.lane_bits, dut.simd) == (8, 2)
    assert dut.out_shape == (3, 4, 36)
    assert dut.rows == 5
    assert dut.window_beats == 18
    assert dut.buffer == "logic"  # 5 rows x 14 words x 16 bits
    assert SlidingWindow((32, 32, 64), kernel=3, simd=16).buffer == "block"
    assert SlidingWindow((4, 4, 1), kernel=3, buffer="distributed").buffer == "distributed"
    assert (dut.columns, dut.in_lanes) == (1, 2)
    wide = SlidingWindow((32, 32, 1), kernel=3, padding=1, lane_bits=8, simd=3)
    assert (wide.columns, wide.in_lanes, wide.window_beats) == (3, 1, 3)
    assert len(wide.i_stream.payload) == 8 and len(wide.o_stream.payload) == 24
    assert wide.latency == 2 * 32 + 1
    assert wide.cycles_per_frame == max(32 * 32, 32 * 32 * 3)
    assert wide.buffer == "logic"  # 4 rows x 3 banks x 11 words x 8 bits = 1,056 bits
    with pytest.raises(AttributeError):
        dut.kernel = 5

# amaranth: UnusedElaboratable=no
"""Simulation tests of the stream plumbing (width converter, FIFO) against naive references."""

import random
from itertools import pairwise

import pytest
from hwsim import PAUSE_KINDS, Sink, Source, run_streams

from xnorflow.hw.blocks.plumbing import StreamFIFO, WidthConverter

# --- The naive reference ------------------------------------------------------------------------


def ref_regroup(beats, in_width, out_width):
    """Element e is bit e % w of beat e // w on both sides (docs/semantics.md section 4)."""
    elements = [(beat >> bit) & 1 for beat in beats for bit in range(in_width)]
    assert len(elements) % out_width == 0
    return [sum(elements[k + bit] << bit for bit in range(out_width))
            for k in range(0, len(elements), out_width)]


# (in_width, out_width, frame_bits)
WIDTHS = [
    pytest.param(6, 4, 12, id="6to4"),
    pytest.param(4, 6, 24, id="4to6"),
    pytest.param(8, 2, 16, id="8to2"),
    pytest.param(2, 8, 8, id="2to8"),
    pytest.param(5, 5, 10, id="5to5"),
    pytest.param(9, 6, 18, id="9to6"),
    pytest.param(3, 7, 21, id="3to7"),
    pytest.param(1, 3, 3, id="1to3"),
    pytest.param(12, 1, 12, id="12to1"),
]


def _frames_of_beats(rng, in_width, frame_bits, frames):
    return [rng.randrange(1 << in_width) for _ in range(frames * frame_bits // in_width)]


@pytest.mark.parametrize("sink_pause", PAUSE_KINDS)
@pytest.mark.parametrize("source_pause", PAUSE_KINDS)
@pytest.mark.parametrize(("in_width", "out_width", "frame_bits"), WIDTHS)
def test_width_converter_stream(in_width, out_width, frame_bits, source_pause, sink_pause):
    rng = random.Random(in_width * 100 + out_width)
    frames = max(3, -(-30 * out_width // frame_bits))  # at least 30 output beats
    beats = _frames_of_beats(rng, in_width, frame_bits, frames)
    expected = ref_regroup(beats, in_width, out_width)
    dut = WidthConverter(in_width, out_width, frame_bits)
    source = Source(dut.i_stream, beats, source_pause, seed=1)
    sink = Sink(dut.o_stream, len(expected), sink_pause, seed=2)
    run_streams(dut, [source], [sink], timeout=50, drain=20)
    assert sink.beats == expected
    # Backpressure really happened (valid & ~ready) whenever the sink pauses.
    assert (len(sink.valid_cycles) > len(sink.beats)) == (sink_pause != "none")


@pytest.mark.parametrize(("in_width", "out_width", "frame_bits"), WIDTHS)
def test_width_converter_rate_and_latency(in_width, out_width, frame_bits):
    """No stalls: min(in, out) bits per cycle (the narrow side moves a beat every cycle), and an
    output beat is valid 1 cycle after the input beat that completes it."""
    rng = random.Random(5)
    frames = 4
    beats = _frames_of_beats(rng, in_width, frame_bits, frames)
    expected = ref_regroup(beats, in_width, out_width)
    dut = WidthConverter(in_width, out_width, frame_bits)
    assert dut.cycles_per_frame == frame_bits // min(in_width, out_width)
    source = Source(dut.i_stream, beats)
    sink = Sink(dut.o_stream, len(expected))
    run_streams(dut, [source], [sink], timeout=50, drain=20)
    assert sink.beats == expected
    if in_width <= out_width:
        assert [b - a for a, b in pairwise(source.cycles)] == [1] * (len(beats) - 1)
    if in_width >= out_width:
        assert [b - a for a, b in pairwise(sink.cycles)] == [1] * (len(expected) - 1)
    total = frames * frame_bits // min(in_width, out_width)
    assert sink.cycles[-1] - min(source.cycles[0], sink.cycles[0]) <= total + dut.latency
    for j, cycle in enumerate(sink.cycles):
        completing = ((j + 1) * out_width - 1) // in_width  # input beat holding its last bit
        assert cycle - source.cycles[completing] >= dut.latency
    assert sink.valid_cycles[0] - source.cycles[(out_width - 1) // in_width] == dut.latency


@pytest.mark.parametrize(("args", "message"), [
    ((0, 4, 8), r"^in_width \(0\) must be a positive integer$"),
    ((4, True, 8), r"^out_width \(True\) must be a positive integer$"),
    ((4, 2, 8.0), r"^frame_bits \(8\.0\) must be a positive integer$"),
    ((3, 4, 8), r"^in_width \(3\) must divide frame_bits \(8\)$"),
    ((4, 3, 8), r"^out_width \(3\) must divide frame_bits \(8\)$"),
])
def test_width_converter_parameter_messages(args, message):
    with pytest.raises(ValueError, match=message):
        WidthConverter(*args)


def test_width_converter_properties():
    dut = WidthConverter(6, 4, 12)
    assert (dut.in_width, dut.out_width, dut.frame_bits) == (6, 4, 12)
    assert dut.capacity == 6 + 4 + 4 - 1
    assert dut.cycles_per_frame == 3
    with pytest.raises(AttributeError):
        dut.in_width = 3


# --- FIFO ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("sink_pause", PAUSE_KINDS)
@pytest.mark.parametrize("source_pause", PAUSE_KINDS)
@pytest.mark.parametrize("depth", [1, 2, 3, 5])
def test_fifo_stream(depth, source_pause, sink_pause):
    rng = random.Random(depth)
    beats = [rng.randrange(1 << 11) for _ in range(40)]
    dut = StreamFIFO(11, depth)
    source = Source(dut.i_stream, beats, source_pause, seed=3)
    sink = Sink(dut.o_stream, len(beats), sink_pause, seed=4)
    run_streams(dut, [source], [sink], timeout=50, drain=20)
    assert sink.beats == beats
    assert (len(sink.valid_cycles) > len(sink.beats)) == (sink_pause != "none")


@pytest.mark.parametrize("depth", [1, 2, 3, 4, 8])
def test_fifo_rate_and_latency(depth):
    beats = list(range(20))
    dut = StreamFIFO(5, depth)
    source = Source(dut.i_stream, beats)
    sink = Sink(dut.o_stream, len(beats))
    run_streams(dut, [source], [sink], timeout=50, drain=20)
    assert sink.beats == beats
    assert sink.valid_cycles[0] - source.cycles[0] == dut.latency
    gaps = {b - a for a, b in pairwise(sink.cycles)}
    assert gaps == ({1} if depth >= StreamFIFO.FULL_RATE_DEPTH else {2})


def test_fifo_parameter_messages():
    with pytest.raises(ValueError, match=r"^FIFO depth \(0\) must be a positive integer$"):
        StreamFIFO(8, 0)
    with pytest.raises(ValueError, match=r"^FIFO depth \('4'\) must be a positive integer$"):
        StreamFIFO(8, "4")

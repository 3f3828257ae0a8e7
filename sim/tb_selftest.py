"""cocotb tests of the stream helpers themselves, on the design
:class:`~xnorflow.sim.selftest_dut.SelftestDut`.

Run through :func:`xnorflow.sim.runner.run_tests` on a build of ``SelftestDut`` (see
``tests/test_sim_runner.py``). Parameters (:func:`~xnorflow.sim.runner.tb_params`):

``source_pause``, ``sink_pause`` (required)
    Pause specs for :func:`~xnorflow.sim.streams.pause_from_spec`, applied to the source and
    sink of the data-path tests.
``beats`` (default 200)
    Beats sent per data-path test.
``seed`` (default 1)
    Seed of the random payloads.
``width``, ``depth`` (default 16, 4)
    The parameters the design was built with.
``deliberate_failure`` (default false)
    Enables a test that must fail, to check that failures reach the runner.
"""

import random
from itertools import pairwise

import cocotb
from cocotb.triggers import RisingEdge

from xnorflow.sim.runner import tb_params
from xnorflow.sim.selftest_dut import SelftestDut
from xnorflow.sim.streams import (
    Beat,
    StreamProtocolError,
    StreamSink,
    StreamTB,
    StreamTimeout,
    fixed_pause,
    no_pause,
    pause_from_spec,
)

PARAMS = tb_params()
BEATS = int(PARAMS.get("beats", 200))
WIDTH = int(PARAMS.get("width", 16))
DEPTH = int(PARAMS.get("depth", 4))
LATENCY = SelftestDut.LATENCY


def _pauses():
    """The source and sink pause generators named by the parameters (both required)."""
    return pause_from_spec(PARAMS["source_pause"]), pause_from_spec(PARAMS["sink_pause"])


def _pausing(side):
    spec = PARAMS[side]
    return spec not in (None, "none") and spec.get("kind") != "none"


def _check_transfers(tb, sent_values, received):
    """All beats out once, in order; cycle stamps consistent with the design's latency and with
    the pauses actually applied."""
    assert [b.data for b in received] == sent_values, "beats lost, duplicated or reordered"
    assert tb.sink.empty(), f"{tb.sink.count()} unexpected beats left in the sink"
    assert tb.source.idle()
    assert len(tb.source.sent) == len(sent_values)
    out_cycles = [b.cycle for b in received]
    assert all(b > a for a, b in pairwise(out_cycles)), "two beats in one cycle"
    for sent, got in zip(tb.source.sent, received, strict=True):
        assert got.cycle - sent.cycle >= LATENCY, (
            f"beat {sent.data:#x} out after {got.cycle - sent.cycle} cycles, "
            f"less than the design's latency {LATENCY}"
        )
    if _pausing("sink_pause"):
        assert tb.sink.stalled_cycles > 0, "the sink pause generator never held ready low"
    else:
        assert tb.sink.stalled_cycles == 0
    in_cycles = [b.cycle for b in tb.source.sent]
    gaps = sum(b - a > 1 for a, b in pairwise(in_cycles))
    if _pausing("source_pause"):
        assert gaps > 0, "the source pause generator never left a gap"
    elif not _pausing("sink_pause"):
        assert gaps == 0, "gaps in the source's beats with no pause on either side"


@cocotb.test(timeout_time=2, timeout_unit="ms")
async def test_amaranth_stream_all_beats_in_order(dut):
    """i_stream -> o_stream (Amaranth names), random payloads, pauses from the parameters."""
    source_pause, sink_pause = _pauses()
    tb = StreamTB(dut, source="i_stream", sink="o_stream", naming="amaranth",
                  source_pause=source_pause, sink_pause=sink_pause, timeout=500)
    assert tb.source.ports.naming == "amaranth" and tb.source.ports.width == WIDTH
    await tb.reset()
    rng = random.Random(PARAMS.get("seed", 1))
    values = [rng.getrandbits(WIDTH) for _ in range(BEATS)]
    tb.source.send_nowait(values)
    received = await tb.sink.recv_many(BEATS)
    await tb.source.wait_idle()
    await tb.cycles(2 * LATENCY)
    _check_transfers(tb, values, received)


@cocotb.test(timeout_time=2, timeout_unit="ms")
async def test_axis_stream_frames_with_last(dut):
    """s_axis -> m_axis (AXI4-Stream names, with tlast), frames of random lengths."""
    source_pause, sink_pause = _pauses()
    tb = StreamTB(dut, source="s_axis", sink="m_axis", source_pause=source_pause,
                  sink_pause=sink_pause, timeout=500)
    assert tb.source.ports.naming == "axis" and tb.sink.ports.last is not None
    await tb.reset()
    rng = random.Random(PARAMS.get("seed", 1) + 1)
    frames = []
    while sum(map(len, frames)) < BEATS:
        frames.append([rng.getrandbits(WIDTH) for _ in range(rng.randint(1, 9))])
    sending = cocotb.start_soon(tb.source.send([b for f in frames for b in Beat.frame(f)]))
    received = await tb.sink.recv_many(sum(map(len, frames)))
    await sending
    expected = [b for f in frames for b in Beat.frame(f)]
    assert [(b.data, b.last) for b in received] == [(b.data, b.last) for b in expected]
    _check_transfers(tb, [b.data for b in expected], received)


@cocotb.test(timeout_time=1, timeout_unit="ms")
async def test_ii_and_latency_without_pauses(dut):
    """With no pauses the cycle stamps show one beat per cycle and the exact latency."""
    tb = StreamTB(dut, source_pause=no_pause(), sink_pause=no_pause())
    await tb.reset()
    values = list(range(1, 65))
    tb.source.send_nowait(values)
    received = await tb.sink.recv_many(len(values))
    cycles_in = [b.cycle for b in tb.source.sent]
    cycles_out = [b.cycle for b in received]
    assert [b - a for a, b in pairwise(cycles_in)] == [1] * (len(values) - 1)
    assert [b - a for a, b in pairwise(cycles_out)] == [1] * (len(values) - 1)
    assert {o - i for i, o in zip(cycles_in, cycles_out, strict=True)} == {LATENCY}
    assert [b.data for b in received] == values and tb.sink.empty()


@cocotb.test(timeout_time=1, timeout_unit="ms")
async def test_fixed_pause_pattern_is_followed(dut):
    """A fixed sink pattern shows up beat for beat: ready low exactly on the pattern's 1s."""
    pattern = [0, 1, 1, 0, 1]
    tb = StreamTB(dut, source_pause=no_pause(), sink_pause=fixed_pause(pattern))
    await tb.reset()
    values = list(range(100, 140))
    tb.source.send_nowait(values)
    received = await tb.sink.recv_many(len(values))
    assert [b.data for b in received] == values
    # Once the pipe is full the sink takes a beat exactly in the cycles the pattern allows.
    phases = {b.cycle % len(pattern) for b in received[LATENCY + 2:]}
    assert len(phases) == pattern.count(0), phases
    assert tb.sink.empty() and tb.source.idle()


@cocotb.test()
async def test_unknown_stream_name_is_reported(dut):
    """Binding to a stream the design does not have names what was looked for."""
    tb = StreamTB(dut, source=None, sink=None)
    try:
        StreamSink(dut, "x_stream", tb.clock)
    except AttributeError as exc:
        assert "x_stream__payload/x_stream__valid/x_stream__ready" in str(exc), str(exc)
        assert "x_stream_tdata/x_stream_tvalid/x_stream_tready" in str(exc), str(exc)
    else:
        raise AssertionError("bound a sink to a stream that does not exist")


@cocotb.test(timeout_time=1, timeout_unit="ms")
async def test_sink_timeout_is_reported(dut):
    """recv() with nothing coming raises StreamTimeout after the timeout, not before."""
    tb = StreamTB(dut, timeout=20)
    await tb.reset()
    start = tb.cycle_now()
    try:
        await tb.sink.recv()
    except StreamTimeout as exc:
        assert "'o_stream'" in str(exc) and "20 clock cycles" in str(exc), str(exc)
    else:
        raise AssertionError("recv() returned a beat that was never sent")
    assert tb.cycle_now() - start == 20


@cocotb.test(timeout_time=1, timeout_unit="ms")
async def test_source_timeout_is_reported(dut):
    """send() into a design whose output is never taken stops with StreamTimeout once the design
    is full: the register stage and the FIFO hold depth + 1 beats."""
    tb = StreamTB(dut, sink=None, timeout=30)
    dut.o_stream__ready.value = 0
    await tb.reset()
    try:
        await tb.source.send(range(3 * DEPTH))
    except StreamTimeout as exc:
        assert "'i_stream'" in str(exc) and "ready=0" in str(exc), str(exc)
    else:
        raise AssertionError("send() completed although nothing leaves the design")
    assert len(tb.source.sent) == DEPTH + 1
    assert tb.source.stalled_cycles >= 30


@cocotb.test(timeout_time=1, timeout_unit="ms", expect_error=StreamProtocolError)
async def test_protocol_violation_is_caught(dut):
    """bad_stream drops valid without a transfer: the sink's check must fail the test."""
    tb = StreamTB(dut, source=None, sink=None)
    sink = StreamSink(dut, "bad_stream", tb.clock, pause=fixed_pause([1, 1, 0]), timeout=50,
                      reset=dut.rst)
    await tb.reset()
    for _ in range(20):
        await RisingEdge(dut.clk)
    raise AssertionError(f"no protocol error after {len(sink.received)} beats")


@cocotb.test(skip=not PARAMS.get("deliberate_failure", False))
async def test_deliberate_failure(dut):
    """Fails on purpose (only when asked), to check that the runner reports failures."""
    tb = StreamTB(dut)
    await tb.reset()
    tb.source.send_nowait([1])
    beat = await tb.sink.recv()
    assert beat.data == 2, f"deliberate failure: got {beat.data}, the test expects 2"

# amaranth: UnusedElaboratable=no
"""The convolution path's blocks in cocotb on their generated Verilog (Verilator), through the
generic testbench :mod:`xnorflow.sim.tb_block`: the sliding-window generator
(:class:`~xnorflow.hw.blocks.window.SlidingWindow`) over many geometries, the bit max-pool
(:class:`~xnorflow.hw.blocks.pool.BitMaxPool`) and the convolution unit
(:class:`~xnorflow.hw.blocks.conv.ConvUnit`).

All the blocks stand side by side in one wrapper, each on its own pair of streams, so that one
Verilator build serves every geometry; each pytest case runs them all at once under one pair of
pause kinds (none, fixed, random on the source x the same on the sink, the patterns of
:data:`xnorflow.sim.sweep.PAUSES`, shifted or reseeded per block), several frames back to back,
so that a lost, duplicated or reordered frame shows.

The expected beats come from the naive references below, written from docs/semantics.md
(sections 4, 5.1 to 5.3) with plain loops; they share no code with the blocks or the compiler.
The timing is checked against the compiler's predictions wherever one exists:

* no pauses: every block's latency and cycles per frame (the window generator's rules
  :func:`~xnorflow.hw.compiler.rules.window_latency`, ``window_cycles_per_frame`` and the first
  output beat of every frame against ``window_timeline``; :class:`~xnorflow.hw.compiler.ops.pool.
  PoolOp` and :class:`~xnorflow.hw.compiler.ops.conv.ConvOp` for the others);
* a pausing source into a sink that is always ready: the cycle of every output beat of the pool
  and the convolution unit, predicted by their ops from the cycles in which the input beats were
  taken (``PoolOp.advance``, ``ConvOp.schedule``);
* always: no output beat leaves before the input it is computed from could have reached it.
"""

import json
import random

import numpy as np
import pytest
from amaranth.hdl import Module
from amaranth.lib import wiring

from xnorflow.hw.blocks.conv import ConvUnit
from xnorflow.hw.blocks.pool import BitMaxPool
from xnorflow.hw.blocks.window import SlidingWindow
from xnorflow.hw.compiler.op import uneven
from xnorflow.hw.compiler.ops.conv import ConvOp, conv_schedule
from xnorflow.hw.compiler.ops.pool import PoolOp
from xnorflow.hw.compiler.rules import (
    window_cycles_per_frame,
    window_latency,
    window_timeline,
)
from xnorflow.sim.runner import build_component, run_tests
from xnorflow.sim.sweep import PAUSES

TB = "xnorflow.sim.tb_block"
PAUSE_KINDS = list(PAUSES)

# --- The naive references (docs/semantics.md) ---------------------------------------------------


def pack(elements, lane_bits):
    """One beat: element ``l`` at bits ``l*lane_bits ...`` (section 4)."""
    return sum(e << (lane * lane_bits) for lane, e in enumerate(elements))


def beats(elements, simd, lane_bits):
    """Beats of ``simd`` elements each, in order."""
    assert len(elements) % simd == 0
    return [pack(elements[i:i + simd], lane_bits) for i in range(0, len(elements), simd)]


def flatten(v):
    """A map ``v[r][c][ch]`` in stream order: row by row, pixel by pixel, channels fastest
    (section 5.1)."""
    return [x for row in v for pixel in row for x in pixel]


def output_size(size, kernel, stride, padding):
    return (size + 2 * padding - kernel) // stride + 1


def windows(v, kernel, stride, padding, pad_value):
    """Section 5.2: the windows of every output position, row-major, each ``K*K*C`` elements in
    the order ky, kx, ch; positions outside the map hold ``pad_value``."""
    h, w, c = len(v), len(v[0]), len(v[0][0])

    def u(r, col, ch):
        r, col = r - padding, col - padding
        return v[r][col][ch] if 0 <= r < h and 0 <= col < w else pad_value

    return [[u(y * stride + ky, x * stride + kx, ch)
             for ky in range(kernel) for kx in range(kernel) for ch in range(c)]
            for y in range(output_size(h, kernel, stride, padding))
            for x in range(output_size(w, kernel, stride, padding))]


def accumulator(row, window, input_bits):
    """Sections 3.1 and 5.2: popcount of the XNOR on bits, the sum of +-x on pixels."""
    if input_bits == 1:
        return sum(1 for wt, a in zip(row, window, strict=True) if wt == a)
    return sum(x if wt else -x for wt, x in zip(row, window, strict=True))


def threshold_bit(acc, t, d):
    """Section 3.2."""
    return int(acc >= t) if d == 1 else int(acc <= t)


def pooled(y, k, rising):
    """Section 5.3: the OR (rising channel) or the AND of every k x k square, row-major."""
    h, w, c = len(y), len(y[0]), len(y[0][0])
    out = []
    for py in range(h // k):
        for px in range(w // k):
            for ch in range(c):
                square = [y[py * k + i][px * k + j][ch] for i in range(k) for j in range(k)]
                out.append(int(any(square)) if rising[ch] else int(all(square)))
    return out


def test_references_by_hand():
    """The references against the worked examples of docs/semantics.md section 5 and
    hand-computed packings."""
    v = [[[1], [0], [1]], [[1], [1], [0]]]
    assert windows(v, 2, 1, 0, 0) == [[1, 0, 1, 1], [0, 1, 1, 0]]
    accs = [accumulator([1, 1, 0, 1], win, 1) for win in windows(v, 2, 1, 0, 0)]
    assert accs == [2, 1]
    assert [threshold_bit(a, 3, 1) for a in accs] == [0, 0]
    assert [threshold_bit(a, 1, -1) for a in accs] == [0, 1]
    y = [[[0, 0], [1, 1]], [[0, 0], [0, 0]]]
    assert pooled(y, 2, [True, False]) == [1, 0]
    assert windows([[[5]]], 3, 1, 1, 7) == [[7, 7, 7, 7, 5, 7, 7, 7, 7]]
    assert windows([[[1, 2], [3, 4]]], 1, 2, 0, 0) == [[1, 2]]
    assert beats([1, 0, 1, 1, 0, 1], 3, 1) == [0b101, 0b101]
    assert beats([0x12, 0x34, 0xFF], 3, 8) == [0xFF3412]
    assert accumulator([1, 0, 1], [255, 7, 0], 8) == 248


# --- The blocks, their stimuli and their predictions --------------------------------------------


def random_map(rng, h, w, c, lane_bits):
    if lane_bits == 1:
        return [[[rng.randrange(2) for _ in range(c)] for _ in range(w)] for _ in range(h)]
    return [[[rng.choice((0, 255, rng.randrange(256))) for _ in range(c)] for _ in range(w)]
            for _ in range(h)]


def in_elements(c, simd):
    """Elements per input beat: SIMD where it divides the channels, else (SIMD = m*C, m kernel
    columns per window beat) one pixel, C elements (docs/semantics.md section 5.2)."""
    return simd if c % simd == 0 else c


class Case:
    """One block: its component, input and expected beats, the testbench's timing parameters,
    ``earliest`` (for output beat ``j``, the input beat it needs and the fewest cycles between
    the two transfers) and ``predict`` (the output beats' cycles from the input beats' cycles,
    for a sink that never pauses, or None where the compiler has no such prediction)."""

    def __init__(self, name, dut, frames, inputs, expected, *, timing, earliest, predict=None,
                 timeline=None):
        self.name, self.dut, self.frames = name, dut, frames
        self.inputs, self.expected = inputs, expected
        self.timing, self.earliest, self.predict = timing, earliest, predict
        self.timeline = timeline


def window_case(name, in_shape, kernel, stride, padding, pad_value, lane_bits, simd, seed,
                frames=3):
    """Windows of ``frames`` random maps; prediction: the window generator's rules."""
    rng = random.Random(seed)
    h, w, c = in_shape
    maps = [random_map(rng, h, w, c, lane_bits) for _ in range(frames)]
    in_lanes = in_elements(c, simd)
    inputs = [b for v in maps for b in beats(flatten(v), in_lanes, lane_bits)]
    expected = [b for v in maps for win in windows(v, kernel, stride, padding, pad_value)
                for b in beats(win, simd, lane_bits)]
    dut = SlidingWindow(in_shape, kernel=kernel, stride=stride, padding=padding,
                        pad_value=pad_value, lane_bits=lane_bits, simd=simd)
    oh, ow = output_size(h, kernel, stride, padding), output_size(w, kernel, stride, padding)
    window_beats = kernel * kernel * c // simd
    out_per_frame = oh * ow * window_beats
    row_beats = w * c // in_lanes
    assert len(expected) == frames * out_per_frame

    def earliest(j):
        # Output row oy of frame f reads the input rows up to min(H, oy*S - P + K): its beats
        # issue the cycle after the last of them is taken and are valid the cycle after.
        f, rest = divmod(j, out_per_frame)
        oy = rest // (ow * window_beats)
        need = min(h, oy * stride - padding + kernel)
        return (f * h + need) * row_beats - 1, 2

    timing = {"in_beats_per_frame": h * row_beats, "out_beats_per_frame": out_per_frame,
              "latency": {"in_beat": 0, "out_beat": 0,
                          "cycles": window_latency(in_shape, kernel, padding, simd)},
              "ii": window_cycles_per_frame(in_shape, kernel, stride, padding, simd),
              "ii_skip_frames": 1}
    timeline = window_timeline(in_shape, kernel, stride, padding, simd, frames)
    return Case(name, dut, frames, inputs, expected, timing=timing, earliest=earliest,
                timeline=timeline)


def pool_case(name, in_shape, kernel, simd, seed, frames=3):
    """Pooled ``frames`` random bit maps, both directions; prediction: the PoolOp's."""
    rng = random.Random(seed)
    h, w, c = in_shape
    rising = [rng.random() < 0.5 for _ in range(c)]
    if c > 1:
        rising[:2] = [True, False]
    # Bits biased towards 1 for the AND channels and 0 for the OR ones in half the frames, so that
    # both results occur for both kinds of square.
    maps = []
    for f in range(frames):
        p = [0.5 if f % 2 else (0.25 if r else 0.8) for r in rising]
        maps.append([[[int(rng.random() < p[ch]) for ch in range(c)] for _ in range(w)]
                     for _ in range(h)])
    inputs = [b for y in maps for b in beats(flatten(y), simd, 1)]
    expected = [b for y in maps for b in beats(pooled(y, kernel, rising), simd, 1)]
    op = PoolOp(0, name, in_shape, kernel, tuple(rising), simd)
    dut = BitMaxPool.from_op(op)
    cb = c // simd
    in_per_frame, out_per_frame = h * w * cb, (h // kernel) * (w // kernel) * cb

    def completing(j):
        # The input beat that completes output beat j: the last pixel of its square.
        f, rest = divmod(j, out_per_frame)
        pixel, b = divmod(rest, cb)
        py, px = divmod(pixel, w // kernel)
        return f * in_per_frame + ((py * kernel + kernel - 1) * w + px * kernel + kernel - 1) \
            * cb + b

    def predict(in_cycles):
        out = []
        for f in range(frames):
            frame = in_cycles[f * in_per_frame:(f + 1) * in_per_frame]
            out += list(op.advance(uneven(frame)).beats)
        return out

    timing = {"in_beats_per_frame": in_per_frame, "out_beats_per_frame": out_per_frame,
              "latency": {"in_beat": 0, "out_beat": 0, "cycles": op.latency},
              "ii": op.cycles_per_frame}
    return Case(name, dut, frames, inputs, expected, timing=timing,
                earliest=lambda j: (completing(j), 1), predict=predict)


def conv_case(name, in_shape, out_channels, kernel, stride, padding, pad_value, input_bits, pe,
              simd, seed, frames=3, storage="lut"):
    """A convolution with thresholds of both directions and a constant channel; prediction: the
    ConvOp's beat-level schedule."""
    rng = random.Random(seed)
    h, w, c = in_shape
    n, m = kernel * kernel * c, out_channels
    weights = [[rng.randrange(2) for _ in range(n)] for _ in range(m)]
    maps = [random_map(rng, h, w, c, input_bits) for _ in range(frames)]
    accs = [[[accumulator(row, win, input_bits) for row in weights]
             for win in windows(v, kernel, stride, padding, pad_value)] for v in maps]
    directions = [1 if ch % 2 == 0 else -1 for ch in range(m)]
    # Each threshold at an accumulator that some position reaches, so both bits occur; the last
    # channel constant (d = +1 with T above every accumulator).
    seen = [[a[ch] for frame in accs for a in frame] for ch in range(m)]
    thresholds = [rng.choice(seen[ch]) for ch in range(m)]
    top = n if input_bits == 1 else 255 * n
    thresholds[-1], directions[-1] = top + 1, 1
    bits = [[[threshold_bit(a[ch], thresholds[ch], directions[ch]) for ch in range(m)]
             for a in frame] for frame in accs]
    in_lanes = in_elements(c, simd)
    inputs = [b for v in maps for b in beats(flatten(v), in_lanes, input_bits)]
    expected = [pack(pixel[f * pe:(f + 1) * pe], 1) for frame in bits for pixel in frame
                for f in range(m // pe)]
    op = ConvOp(0, name, in_shape, m, kernel, stride, padding, pad_value, input_bits,
                np.array(weights, dtype=bool), np.array(thresholds, dtype=np.int64),
                np.array(directions, dtype=np.int64), pe, simd, storage)
    dut = ConvUnit.from_op(op)
    oh, ow = output_size(h, kernel, stride, padding), output_size(w, kernel, stride, padding)
    nf, sf, row_beats = m // pe, n // simd, w * c // in_lanes
    out_per_frame, in_per_frame = oh * ow * nf, h * row_beats
    assert (op.nf, op.sf) == (nf, sf) and len(expected) == frames * out_per_frame

    def earliest(j):
        # The window generator's bound, then the window's SF beats into the unit and its
        # pipeline: at least SF + latency + 1 cycles after the last input row it reads.
        f, rest = divmod(j, out_per_frame)
        oy = rest // (ow * nf)
        need = min(h, oy * stride - padding + kernel)
        return (f * h + need) * row_beats - 1, sf + op.mvtu.latency + 1

    def predict(in_cycles):
        start = in_cycles[0]
        accepted, outputs = op.schedule(tuple(c - start for c in in_cycles))
        assert list(accepted) == [c - start for c in in_cycles], "inputs taken off schedule"
        return [start + t for t in outputs]

    timing = {"in_beats_per_frame": in_per_frame, "out_beats_per_frame": out_per_frame,
              "latency": {"in_beat": 0, "out_beat": 0, "cycles": op.latency},
              "ii": op.cycles_per_frame, "ii_skip_frames": 1}
    return Case(name, dut, frames, inputs, expected, timing=timing, earliest=earliest,
                predict=predict)


def cases():
    """Every block under test. The window generator: K 1, 2, 3 and 5, stride 1 and 2, padding 0
    and K // 2, pad bits 0 and 1 and a pad pixel, odd map sides, beats of 1, 3, 5 channels and of
    three 8-bit lanes, maps of 1, 3, 5 and 6 channels, a map with one window, maps whose last
    row no window reads; beats of m = 3 or 5 kernel columns (SIMD = m*C) on 8-bit pixels and on
    2 and 3 bit channels."""
    return [
        window_case("w_k3p_c3", (5, 7, 3), 3, 1, 1, 1, 1, 3, seed=1),
        window_case("w_k3s2_c1", (7, 5, 1), 3, 2, 0, 0, 1, 1, seed=2),
        window_case("w_k5p_c6", (5, 5, 6), 5, 1, 2, 0, 1, 3, seed=3),
        window_case("w_k5s2_px", (9, 7, 1), 5, 2, 0, 0, 8, 1, seed=4),
        window_case("w_k2s2p_c1", (7, 7, 1), 2, 2, 1, 1, 1, 1, seed=5),
        window_case("w_k2_c3", (3, 5, 3), 2, 1, 0, 0, 1, 1, seed=6),
        window_case("w_k1s2_px3", (3, 5, 3), 1, 2, 0, 0, 8, 3, seed=7),
        window_case("w_k3p_px1", (5, 7, 1), 3, 1, 1, 200, 8, 1, seed=8),
        window_case("w_k3s2p_c5", (9, 5, 5), 3, 2, 1, 1, 1, 5, seed=9),
        window_case("w_k3_one", (3, 3, 3), 3, 1, 0, 0, 8, 3, seed=10),
        window_case("w_k1s2_tail", (6, 5, 1), 1, 2, 0, 0, 1, 1, seed=20),
        pool_case("p_k2_c3", (6, 6, 3), 2, 3, seed=11),
        pool_case("p_k3_c5", (6, 9, 5), 3, 5, seed=12),
        pool_case("p_k2_c6", (4, 6, 6), 2, 2, seed=13),
        pool_case("p_k3_one", (3, 3, 1), 3, 1, seed=14, frames=8),
        pool_case("p_k1_c3", (3, 5, 3), 1, 1, seed=15),
        conv_case("c_k3p_c3", (5, 5, 3), 6, 3, 1, 1, 1, 1, 2, 3, seed=16),
        conv_case("c_k3s2p_px", (5, 7, 1), 4, 3, 2, 1, 0, 8, 4, 1, seed=17, storage="bram"),
        conv_case("c_k1_c4", (3, 5, 4), 6, 1, 1, 0, 0, 1, 2, 4, seed=18),
        conv_case("c_k2_c2", (4, 5, 2), 3, 2, 1, 0, 0, 1, 3, 1, seed=19),
        # the stride skips the last row: no output row reads it, the input still sends it
        conv_case("c_k3s2_tail", (6, 5, 3), 2, 3, 2, 0, 0, 1, 1, 3, seed=21),
        # SIMD = m*C: m kernel columns per window beat, one pixel per input beat
        window_case("w_k3p_px1_m3", (5, 7, 1), 3, 1, 1, 200, 8, 3, seed=22),
        window_case("w_k3s2_c2_m3", (7, 6, 2), 3, 2, 0, 0, 1, 6, seed=23),
        window_case("w_k5p_px1_m5", (6, 7, 1), 5, 1, 2, 9, 8, 5, seed=24),
        conv_case("c_k3p_px1_m3", (6, 7, 1), 4, 3, 1, 1, 0, 8, 2, 3, seed=25),
        conv_case("c_k3s2_c3_m3", (7, 5, 3), 3, 3, 2, 0, 0, 1, 1, 9, seed=26, storage="bram"),
        conv_case("c_k3p_c2_m3", (5, 5, 2), 4, 3, 1, 1, 1, 1, 4, 6, seed=27),
    ]


def test_conv_schedule_takes_every_input_beat():
    """The convolution's beat-level schedule accounts for every input beat it is offered, also
    the rows below the last output row's when the stride skips them (K=1 or K=3 with stride 2
    over an even map), each taken once, in order, no earlier than offered; the outputs do not
    depend on those rows."""
    for in_shape, kernel, stride, padding in [((4, 4, 2), 1, 2, 0), ((6, 5, 3), 3, 2, 0),
                                              ((7, 7, 1), 3, 1, 0), ((5, 6, 1), 2, 2, 1),
                                              ((8, 5, 1), 5, 2, 0)]:
        beats_per_frame = in_shape[0] * in_shape[1] * in_shape[2]
        for arrivals in [(0,) * (3 * beats_per_frame), tuple(range(0, 6 * beats_per_frame, 2))]:
            accepted, outputs = conv_schedule(in_shape, kernel, stride, padding, 1, 2, 5, False,
                                              arrivals)
            assert len(accepted) == len(arrivals), (in_shape, kernel, stride)
            assert all(b > a for a, b in zip(accepted, accepted[1:], strict=False))
            assert all(t >= a for t, a in zip(accepted, arrivals, strict=True))
            oh = output_size(in_shape[0], kernel, stride, padding)
            ow = output_size(in_shape[1], kernel, stride, padding)
            assert len(outputs) == 3 * oh * ow * 2


class Bundle(wiring.Component):
    """The blocks side by side, block ``name`` on the streams ``<name>_i`` and ``<name>_o``."""

    def __init__(self, blocks):
        self._blocks = dict(blocks)
        members = {}
        for name, block in self._blocks.items():
            members[f"{name}_i"] = block.signature.members["i_stream"]
            members[f"{name}_o"] = block.signature.members["o_stream"]
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        for name, block in self._blocks.items():
            m.submodules[name] = block
            wiring.connect(m, wiring.flipped(getattr(self, f"{name}_i")), block.i_stream)
            wiring.connect(m, block.o_stream, wiring.flipped(getattr(self, f"{name}_o")))
        return m


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    """The cases and their one build."""
    all_cases = cases()
    dut = Bundle({case.name: case.dut for case in all_cases})
    sim_build = build_component(dut, toplevel="conv_blocks",
                                build_dir=tmp_path_factory.mktemp("conv_blocks") / "build")
    return all_cases, sim_build


def pause_spec(kind, side, index):
    """The sweep's pause pattern of ``kind`` for ``side`` (0 source, 1 sink), shifted (fixed) or
    reseeded (random) per block, so that the blocks do not pause in step."""
    spec = PAUSES[kind][side]
    if spec is None:
        return None
    if spec["kind"] == "fixed":
        pattern = spec["pattern"]
        shift = index % len(pattern)
        return {"kind": "fixed", "pattern": pattern[shift:] + pattern[:shift]}
    return dict(spec, seed=spec["seed"] + 100 * (index + 1))


@pytest.mark.parametrize("sink_pause", PAUSE_KINDS)
@pytest.mark.parametrize("source_pause", PAUSE_KINDS)
def test_conv_blocks_verilator(bundle, tmp_path, source_pause, sink_pause):
    all_cases, sim_build = bundle
    blocks = []
    for index, case in enumerate(all_cases):
        blocks.append(dict(case.timing, name=case.name, source=f"{case.name}_i",
                           sink=f"{case.name}_o", inputs=case.inputs, expected=case.expected,
                           source_pause=pause_spec(source_pause, 0, index),
                           sink_pause=pause_spec(sink_pause, 1, index),
                           timeout=400, drain=60))
    summary_path = tmp_path / "summary.json"
    result = run_tests(sim_build, TB, params={"blocks": blocks, "summary": str(summary_path)},
                       run_name=f"conv-blocks-{source_pause}-{sink_pause}")
    assert result.passed == 1 and result.failed == 0
    summary = json.loads(summary_path.read_text())
    assert summary["passed"] and summary["failures"] == []
    timed = source_pause == sink_pause == "none"
    for case in all_cases:
        s = summary["blocks"][case.name]
        assert (s["received"], s["mismatches"], s["extra"]) == (len(case.expected), 0, 0)
        assert s["end_state"] == {f"{case.name}_o__valid": 0, f"{case.name}_i__ready": 1}
        assert (s["sink_stalled_cycles"] > 0) == (sink_pause != "none"), case.name
        ins, outs = s["in_cycles"], s["out_cycles"]
        assert len(ins) == len(case.inputs) and len(outs) == len(case.expected)
        # Whatever the pauses: no output beat before the input it needs could have reached it.
        early = [j for j, c in enumerate(outs)
                 if c - ins[case.earliest(j)[0]] < case.earliest(j)[1]]
        assert not early, f"{case.name}: output beats {early[:5]} out too soon"
        assert s["timed"] == timed
        if timed:
            # Latency and cycles per frame measured = predicted (stated constant: 0); the
            # testbench checked them, here they are read back.
            assert [c["measured"] for c in s["latency"]] == [case.timing["latency"]["cycles"]]
            skip = case.timing.get("ii_skip_frames", 0)
            assert s["frame_gaps"][skip:] == [case.timing["ii"]] * (case.frames - 1 - skip)
            if case.timeline is not None:
                per = case.timing["out_beats_per_frame"]
                assert [outs[f * per] - ins[0] for f in range(case.frames)] == case.timeline
        if sink_pause == "none" and case.predict is not None:
            # Every output beat when the op says, from the cycles the inputs were taken in.
            assert outs == case.predict(ins), case.name

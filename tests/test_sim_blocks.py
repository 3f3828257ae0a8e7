"""Each gateware block in cocotb on its generated Verilog (Verilator), through the generic
testbench :mod:`xnorflow.sim.tb_block`.

Four builds, one per block (module-scoped fixtures; every pause variant reruns on its build):

* an :class:`~xnorflow.hw.blocks.mvtu.MVTU` threshold layer on binary input (N=24, M=6, PE=2,
  SIMD=8, weights in block RAM), thresholds of both directions, the four constant-channel edges of
  the allowed range and frames that land exactly on a threshold;
* an MVTU score layer on 8-bit input (N=12, M=4, PE=2, SIMD=4, weights in LUTs), signed scores
  up to the ends of ``[-255*N, 255*N]``;
* a :class:`~xnorflow.hw.blocks.plumbing.WidthConverter` 6 -> 4 bits, frames of 24 bits;
* an :class:`~xnorflow.hw.blocks.argmax.ArgMax` of 6 signed 5-bit scores, PE=2, scores in the
  payload, with ties.

Each is crossed with no / fixed / seeded random pauses on the source and on the sink, several
frames back to back. The expected beats come from the references below, written from
docs/semantics.md and the blocks' documented payload layouts with plain Python loops; they share
no code with the blocks. Without pauses the testbench also measures the latency and the II on the
burst, which must equal the blocks' ``latency`` / ``ii`` properties (stated constant: 0), and
those properties are checked against the formulas in the docstrings.
"""

import json
import random

import pytest
from amaranth.hdl import signed

from xnorflow.hw.blocks.argmax import ArgMax
from xnorflow.hw.blocks.mvtu import MVTU
from xnorflow.hw.blocks.plumbing import WidthConverter
from xnorflow.sim.runner import SimulationFailed, build_component, run_tests
from xnorflow.sim.sweep import PAUSES

TB = "xnorflow.sim.tb_block"
PAUSE_KINDS = list(PAUSES)  # none, fixed, random; source and sink use different patterns

# --- The reference (docs/semantics.md, the blocks' documented payload layouts) ---------------


def pack_lanes(values, lane_bits):
    """Lane ``l`` at bits ``l*lane_bits ...`` (LSB first, semantics.md section 4); two's
    complement for negative values."""
    mask = (1 << lane_bits) - 1
    return sum((v & mask) << (lane * lane_bits) for lane, v in enumerate(values))


def unpack_lanes(word, count, lane_bits, is_signed):
    values = []
    for lane in range(count):
        v = (word >> (lane * lane_bits)) & ((1 << lane_bits) - 1)
        if is_signed and v >> (lane_bits - 1):
            v -= 1 << lane_bits
        values.append(v)
    return values


def chunks(frame, simd, lane_bits):
    """Chunk ``k`` carries elements ``k*SIMD ...``, element ``k*SIMD + l`` in lane ``l``."""
    return [pack_lanes(frame[k:k + simd], lane_bits) for k in range(0, len(frame), simd)]


def accumulator(row, frame, input_bits):
    """semantics.md 3.1: popcount(XNOR) for bits, sum of +-x for pixels."""
    if input_bits == 1:
        return sum(1 for w, a in zip(row, frame, strict=True) if w == a)
    return sum(x if w else -x for w, x in zip(row, frame, strict=True))


def threshold_bit(acc, t, d):
    """semantics.md 3.2."""
    return int(acc >= t) if d == 1 else int(acc <= t)


def signed_width(lo, hi):
    """Bits of the narrowest two's complement shape holding ``[lo, hi]``."""
    width = 1
    while not -(1 << (width - 1)) <= lo <= hi <= (1 << (width - 1)) - 1:
        width += 1
    return width


def argmax_lowest(scores):
    """semantics.md 3.3: index of the largest score, ties to the lowest index."""
    best = 0
    for i, s in enumerate(scores):
        if s > scores[best]:
            best = i
    return best


def regroup(beats, in_width, out_width):
    """Element ``e`` is bit ``e mod w`` of beat ``e div w`` on either side."""
    bits = [(beat >> b) & 1 for beat in beats for b in range(in_width)]
    return [pack_lanes(bits[k:k + out_width], 1) for k in range(0, len(bits), out_width)]


def test_reference_packing_by_hand():
    """The reference's packing against hand-computed vectors (semantics.md section 4)."""
    bits = [1, 0, 1, 1, 0, 0, 0, 0, 1, 1]
    assert chunks(bits + [0] * 6, 8, 1) == [0x0D, 0x03]
    assert chunks([1, 2, 3, 255], 2, 8) == [0x0201, 0xFF03]
    assert pack_lanes([-1, 2], 5) == 0b00010_11111
    assert unpack_lanes(0b00010_11111, 2, 5, True) == [-1, 2]
    assert regroup([0b111000, 0b000111], 6, 4) == [0b1000, 0b1111, 0b0001]
    assert signed_width(-3060, 3060) == 13 and signed_width(-16, 15) == 5
    assert argmax_lowest([3, 7, 7, 1]) == 1 and argmax_lowest([-2, -2]) == 0
    # The worked example of semantics.md: output byte 0x01.
    w, a = [[1, 0, 1, 1], [0, 0, 0, 0]], [1, 0, 0, 1]
    accs = [accumulator(row, a, 1) for row in w]
    assert accs == [3, 2]
    assert pack_lanes([threshold_bit(3, 3, 1), threshold_bit(2, 1, -1)], 1) == 0x01


# --- The blocks and their stimuli ---------------------------------------------------------------


class Case:
    """A built block and what the testbench needs: input beats, expected output beats, widths,
    beats per frame, and the expected timing. ``completing(j)`` is the input beat that completes
    the data of output beat ``j``: no output beat may be transferred earlier than ``latency``
    cycles after it, whatever the pauses."""

    def __init__(self, name, dut, sim_build, inputs, expected, *, in_width, out_width,
                 in_per_frame, out_per_frame, ii, latency, out_beat_gap, completing):
        self.name, self.dut, self.build = name, dut, sim_build
        self.completing = completing
        self.inputs, self.expected = inputs, expected
        self.in_width, self.out_width = in_width, out_width
        self.in_per_frame, self.out_per_frame = in_per_frame, out_per_frame
        self.ii, self.latency, self.out_beat_gap = ii, latency, out_beat_gap

    def params(self, source, sink, summary):
        return {
            "inputs": self.inputs, "expected": self.expected,
            "source_pause": PAUSES[source][0], "sink_pause": PAUSES[sink][1],
            "in_width": self.in_width, "out_width": self.out_width,
            "in_beats_per_frame": self.in_per_frame, "out_beats_per_frame": self.out_per_frame,
            "latency": self.latency, "ii": self.ii, "out_beat_gap": self.out_beat_gap,
            "timeout": 300, "drain": 2 * self.ii + 40, "summary": str(summary),
        }


def _build(dut, factory, name):
    return build_component(dut, toplevel=name, build_dir=factory.mktemp(name) / "build")


@pytest.fixture(scope="module")
def mvtu_threshold(tmp_path_factory):
    """Binary MVTU, N=24, M=6, PE=2, SIMD=8: NF=3, SF=3. Channels 0-3 are the constant edges of
    the allowed thresholds (d=+1: T=0 always 1, T=N+1 always 0; d=-1: T=-1 always 0, T=N always
    1), channels 4 (d=+1) and 5 (d=-1) have T=12, with frames at acc 11, 12 and 13 for each."""
    n, m, pe, simd = 24, 6, 2, 8
    rng = random.Random(24_6_2_8)
    weights = [[rng.randrange(2) for _ in range(n)] for _ in range(m)]
    thresholds = [0, n + 1, -1, n, 12, 12]
    directions = [1, 1, -1, -1, 1, -1]

    def agreeing(row, k):
        """A frame that agrees with ``row`` in exactly ``k`` random positions (acc = k)."""
        flip = set(rng.sample(range(n), n - k))
        return [1 - w if j in flip else w for j, w in enumerate(row)]

    frames = [weights[4][:], [1 - w for w in weights[4]],
              agreeing(weights[4], 12), agreeing(weights[4], 11),
              agreeing(weights[5], 12), agreeing(weights[5], 13),
              *([rng.randrange(2) for _ in range(n)] for _ in range(4))]
    accs = [[accumulator(row, a, 1) for row in weights] for a in frames]
    assert {12, 11} <= {acc[4] for acc in accs} and {12, 13} <= {acc[5] for acc in accs}
    bits = [[threshold_bit(acc[i], thresholds[i], directions[i]) for i in range(m)]
            for acc in accs]
    assert {b[4] for b in bits} == {b[5] for b in bits} == {0, 1}
    assert [b[:4] for b in bits] == [[1, 0, 0, 1]] * len(frames)
    inputs = [c for a in frames for c in chunks(a, simd, 1)]
    expected = [pack_lanes(b[f * pe:(f + 1) * pe], 1) for b in bits for f in range(m // pe)]

    dut = MVTU(weights, thresholds, directions, input_bits=1, pe=pe, simd=simd, storage="bram")
    nf, sf = m // pe, n // simd
    # Docstring: ii = NF*SF; latency = 4 + the popcount's: one group of at most 15 lanes, so
    # only the register after its full-adder count.
    assert (dut.ii, dut.latency) == (nf * sf, 4 + 1)
    latency = [{"in_beat": sf - 1, "out_beat": 0, "cycles": dut.latency},
               {"in_beat": 0, "out_beat": nf - 1, "cycles": dut.ii - 1 + dut.latency}]
    return Case("mvtu_threshold", dut, _build(dut, tmp_path_factory, "mvtu_threshold"),
                inputs, expected, in_width=simd, out_width=pe, in_per_frame=sf,
                out_per_frame=nf, ii=dut.ii, latency=latency, out_beat_gap=sf,
                completing=lambda j: (j // nf) * sf + sf - 1)


@pytest.fixture(scope="module")
def mvtu_score(tmp_path_factory):
    """8-bit-input score MVTU, N=12, M=4, PE=2, SIMD=4: NF=2, SF=3. Row 0 all +1 and row 1 all
    -1, so the all-255 frame reaches both ends of [-255*N, 255*N]."""
    n, m, pe, simd = 12, 4, 2, 4
    rng = random.Random(12_4_2_4)
    weights = [[1] * n, [0] * n, *([rng.randrange(2) for _ in range(n)] for _ in range(2))]
    frames = [[255] * n, [0] * n,
              *([rng.choice((0, 255, rng.randrange(256))) for _ in range(n)] for _ in range(6))]
    scores = [[accumulator(row, x, 8) for row in weights] for x in frames]
    assert scores[0][:2] == [255 * n, -255 * n]
    width = signed_width(-255 * n, 255 * n)
    inputs = [c for x in frames for c in chunks(x, simd, 8)]
    expected = [pack_lanes(s[f * pe:(f + 1) * pe], width) for s in scores
                for f in range(m // pe)]

    dut = MVTU(weights, None, None, input_bits=8, pe=pe, simd=simd, storage="lut")
    nf, sf = m // pe, n // simd
    assert (dut.ii, dut.latency) == (nf * sf, 4 + 1)
    latency = [{"in_beat": sf - 1, "out_beat": 0, "cycles": dut.latency},
               {"in_beat": 0, "out_beat": nf - 1, "cycles": dut.ii - 1 + dut.latency}]
    return Case("mvtu_score", dut, _build(dut, tmp_path_factory, "mvtu_score"),
                inputs, expected, in_width=8 * simd, out_width=pe * width, in_per_frame=sf,
                out_per_frame=nf, ii=dut.ii, latency=latency, out_beat_gap=sf,
                completing=lambda j: (j // nf) * sf + sf - 1)


@pytest.fixture(scope="module")
def width_converter(tmp_path_factory):
    """6 -> 4 bits, frames of 24 bits (4 beats in, 6 out): neither width divides the other."""
    in_width, out_width, frame_bits, frames = 6, 4, 24, 8
    rng = random.Random(6_4_24)
    inputs = [rng.randrange(1 << in_width) for _ in range(frames * frame_bits // in_width)]
    inputs[:4] = [0x3F, 0x00, 0x2A, 0x15]
    expected = regroup(inputs, in_width, out_width)
    dut = WidthConverter(in_width, out_width, frame_bits)
    # Docstring: min(in, out) bits per cycle, so a frame every 24/4 cycles and (in >= out) an
    # output beat every cycle; latency 1 from the input beat that completes an output beat.
    assert (dut.cycles_per_frame, dut.latency) == (frame_bits // out_width, 1)
    return Case("width_converter", dut, _build(dut, tmp_path_factory, "width_converter"),
                inputs, expected, in_width=in_width, out_width=out_width,
                in_per_frame=frame_bits // in_width, out_per_frame=frame_bits // out_width,
                ii=dut.cycles_per_frame,
                latency=[{"in_beat": 0, "out_beat": 0, "cycles": dut.latency}], out_beat_gap=1,
                completing=lambda j: ((j + 1) * out_width - 1) // in_width)


@pytest.fixture(scope="module")
def argmax(tmp_path_factory):
    """6 classes of signed 5-bit scores, PE=2 (3 beats per frame), scores in the payload:
    ``index`` at bit 0 (3 bits), score ``i`` at bits ``3 + 5*i``."""
    classes, pe, width = 6, 2, 5
    lo, hi = -(1 << (width - 1)), (1 << (width - 1)) - 1
    rng = random.Random(6_2_5)
    frames = [
        [0] * classes,                       # all tied: class 0
        [lo] * classes,                      # all at the minimum: class 0
        [lo, lo, lo, lo, lo, hi],            # the maximum in the last class
        [1, 9, 3, 4, 9, 2],                  # tie across beats: the lower index
        [-5, -1, -3, -1, -8, -2],            # negative scores only, tie within a beat pair
        [hi, lo, lo, lo, lo, hi],            # tie at both ends
        [-1, 0, -2, 0, 0, -16],              # signed compare: 0 beats -1
        *([rng.choice((lo, hi, rng.randint(-2, 2))) for _ in range(classes)]
          for _ in range(7)),
    ]
    index_width = (classes - 1).bit_length()
    inputs = [pack_lanes(s[f * pe:(f + 1) * pe], width) for s in frames
              for f in range(classes // pe)]
    expected = [argmax_lowest(s) | pack_lanes(s, width) << index_width for s in frames]
    assert [e & 0b111 for e in expected[:7]] == [0, 0, 5, 1, 1, 0, 1]

    dut = ArgMax(classes, pe, signed(width), with_scores=True)
    assert (dut.ii, dut.latency) == (classes // pe, 1)
    return Case("argmax", dut, _build(dut, tmp_path_factory, "argmax"), inputs, expected,
                in_width=pe * width, out_width=index_width + classes * width,
                in_per_frame=classes // pe, out_per_frame=1, ii=dut.ii,
                latency=[{"in_beat": classes // pe - 1, "out_beat": 0, "cycles": dut.latency}],
                out_beat_gap=dut.ii, completing=lambda j: j * (classes // pe) + classes // pe - 1)


BLOCKS = ["mvtu_threshold", "mvtu_score", "width_converter", "argmax"]


@pytest.mark.parametrize("sink_pause", PAUSE_KINDS)
@pytest.mark.parametrize("source_pause", PAUSE_KINDS)
@pytest.mark.parametrize("block", BLOCKS)
def test_block_verilator(request, tmp_path, block, source_pause, sink_pause):
    case = request.getfixturevalue(block)
    summary_path = tmp_path / "summary.json"
    result = run_tests(case.build, TB, params=case.params(source_pause, sink_pause, summary_path),
                       run_name=f"{block}-{source_pause}-{sink_pause}")
    assert result.passed > 0 and result.failed == 0
    s = json.loads(summary_path.read_text())
    assert s["passed"] and s["failures"] == []
    assert (s["received"], s["mismatches"], s["extra"]) == (len(case.expected), 0, 0)
    assert s["end_state"] == {"o_stream__valid": 0, "i_stream__ready": 1}
    assert (s["sink_stalled_cycles"] > 0) == (sink_pause != "none")
    # Whatever the pauses: no output beat before its data can have passed the pipeline.
    ins, outs = s["in_cycles"], s["out_cycles"]
    assert len(ins) == len(case.inputs) and len(outs) == len(case.expected)
    early = [j for j, c in enumerate(outs) if c - ins[case.completing(j)] < case.dut.latency]
    assert not early, f"output beats {early} out sooner than the latency after their input"
    timed = source_pause == sink_pause == "none"
    assert s["timed"] == timed
    if timed:
        # Measured = the block's properties, exactly.
        assert [c["measured"] for c in s["latency"]] == [c["cycles"] for c in case.latency]
        assert s["latency"][0]["measured"] == case.dut.latency
        assert s["frame_gaps"] == [case.ii] * (len(case.expected) // case.out_per_frame - 1)
        assert set(s["beat_gaps"]) == {case.out_beat_gap}


# --- The testbench catches what it should --------------------------------------------------------


def test_testbench_reports_mismatch_and_timing(width_converter, tmp_path):
    """A wrong beat is reported with its index and both payloads in hex; a missing expected beat,
    an extra one and a wrong latency or II fail the run too."""
    case = width_converter
    base = case.params("none", "none", tmp_path / "s.json")

    wrong = list(case.expected)
    wrong[7] ^= 0b0101
    message = rf"first at beat 7: expected {wrong[7]:#03x}, got {case.expected[7]:#03x}"
    with pytest.raises(SimulationFailed, match=message):
        run_tests(case.build, TB, params=dict(base, expected=wrong), run_name="bad-beat")

    with pytest.raises(SimulationFailed, match=r"1 extra output beats after the expected ones"):
        run_tests(case.build, TB, params=dict(base, expected=case.expected[:-1],
                                              ii=None, out_beat_gap=None),
                  run_name="bad-extra")

    with pytest.raises(SimulationFailed, match=rf"{len(case.expected)} output beats received, "
                                               rf"{len(case.expected) + 1} expected"):
        run_tests(case.build, TB, params=dict(base, expected=[*case.expected, 0], timeout=20),
                  run_name="bad-missing")

    late = [{"in_beat": 0, "out_beat": 0, "cycles": case.latency[0]["cycles"] + 1}]
    with pytest.raises(SimulationFailed, match=r"latency from input beat 0 to output beat 0: "
                                               r"1 cycles, expected 2.*II: frame gaps"):
        run_tests(case.build, TB, params=dict(base, latency=late, ii=case.ii + 1),
                  run_name="bad-timing")
    s = json.loads((tmp_path / "s.json").read_text())
    assert not s["passed"] and len(s["failures"]) == 2



def test_argmax_output_stall_reaches_input(argmax, tmp_path):
    """ArgMax refuses a frame's last beat while its result register is full and not taken (a
    combinational path from ``o_stream.ready`` to ``i_stream.ready``). The shared pause patterns
    rarely hold the sink for the ``ii`` cycles this needs; a sink ready one cycle in five does."""
    case = argmax
    params = dict(case.params("none", "none", tmp_path / "s.json"),
                  sink_pause={"kind": "fixed", "pattern": [0, 1, 1, 1, 1]})
    run_tests(case.build, TB, params=params, run_name="argmax-held-sink")
    s = json.loads((tmp_path / "s.json").read_text())
    assert s["passed"]
    assert (s["received"], s["mismatches"], s["extra"]) == (len(case.expected), 0, 0)
    assert s["source_stalled_cycles"] > 0 and s["sink_stalled_cycles"] > 0
    assert all(g % 5 == 0 for g in s["frame_gaps"])  # one result per ready cycle of the sink

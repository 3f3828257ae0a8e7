# amaranth: UnusedElaboratable=no
"""Simulation tests of the pipelined popcount and add/subtract trees against naive models."""

import random

import pytest
from amaranth.back import rtlil
from amaranth.hdl import ClockDomain, Module
from amaranth.sim import Simulator
from hwsim import PAUSE_KINDS, pauses

from xnorflow.hw.blocks.popcount import (
    AddSubTree,
    ComplementSumTrees,
    Popcount,
    complement_latency,
    popcount_latency,
    tree_latency,
)


def ref_popcount(word):
    return sum((word >> i) & 1 for i in range(word.bit_length()))


def ref_add_sub(data, signs, lanes, lane_bits):
    total = 0
    for lane in range(lanes):
        x = (data >> (lane * lane_bits)) & ((1 << lane_bits) - 1)
        total += x if (signs >> lane) & 1 else -x
    return total


def ref_complement_sums(data, signs, lanes, trees, lane_bits):
    """Per tree: the sum of lanes taken as they are (sign 1) or as ``max - x`` (sign 0), plus,
    with two trees or more, one for every pair of lanes (2i, 2i+1) whose first sign is 0; packed
    as the port is."""
    lane_max = (1 << lane_bits) - 1
    paired = trees >= 2
    top = (lanes // 2) * (2 * lane_max + 1) + (lanes % 2) * lane_max if paired else lanes * lane_max
    width = top.bit_length()
    packed = 0
    for t in range(trees):
        row = (signs >> (t * lanes)) & ((1 << lanes) - 1)
        total = 0
        for lane in range(lanes):
            x = (data >> (lane * lane_bits)) & lane_max
            total += x if (row >> lane) & 1 else lane_max - x
        if paired:
            total += sum(1 for i in range(0, lanes - 1, 2) if not (row >> i) & 1)
        packed |= total << (t * width)
    return packed


def run_pipeline(dut, inputs, output, model, en_pause, cycles=60, seed=0):
    """Drive random ``inputs`` (a dict port name -> width) every cycle with ``en`` following the
    pause pattern, and check ``output`` in every cycle against a shift register of ``dut.latency``
    enabled stages of ``model(values)``, from the cycle the first value reaches the output (the
    pipeline registers hold data only: their initial contents are not checked)."""
    rng = random.Random(seed)
    en_pauses = pauses(en_pause, seed)
    stalls = 0

    async def testbench(ctx):
        nonlocal stalls
        pipe = [None] * dut.latency
        for cycle in range(cycles):
            values = {port: rng.getrandbits(width) for port, width in inputs.items()}
            # Extreme inputs now and then: all ones, all zeros.
            if cycle % 7 == 3:
                values = {port: (1 << width) - 1 for port, width in inputs.items()}
            elif cycle % 7 == 5:
                values = {port: 0 for port in inputs}
            for port, value in values.items():
                target = getattr(dut, port)
                ctx.set(target.as_value() if hasattr(target, "as_value") else target, value)
            en = not next(en_pauses)
            stalls += not en
            ctx.set(dut.en, en)
            _, _, got = await ctx.tick().sample(output)
            expected = pipe[-1] if pipe else model(values)
            if expected is not None:  # None: the pipeline still holds its initial contents
                assert got == expected, f"cycle {cycle}"
            if en and pipe:
                pipe = [model(values)] + pipe[:-1]

    # A tree over one leaf has no registers; the explicit domain gives the testbench a clock.
    top = Module()
    top.domains.sync = ClockDomain()
    top.submodules.dut = dut
    sim = Simulator(top)
    sim.add_clock(1e-6)
    sim.add_testbench(testbench)
    sim.run()
    assert (stalls > 0) == (en_pause != "none")


@pytest.mark.parametrize("en_pause", PAUSE_KINDS)
@pytest.mark.parametrize("levels_per_stage", [1, 2, 3])
@pytest.mark.parametrize("width", [1, 2, 5, 12, 15, 16, 33, 47])
def test_popcount(width, levels_per_stage, en_pause):
    dut = Popcount(width, levels_per_stage=levels_per_stage)
    run_pipeline(dut, {"data": width}, dut.count,
                 lambda values: ref_popcount(values["data"]), en_pause, seed=width)


@pytest.mark.parametrize("en_pause", PAUSE_KINDS)
@pytest.mark.parametrize("levels_per_stage", [1, 2])
@pytest.mark.parametrize("lanes", [1, 3, 8, 13])
def test_add_sub_tree(lanes, levels_per_stage, en_pause):
    dut = AddSubTree(lanes, levels_per_stage=levels_per_stage)
    run_pipeline(dut, {"data": 8 * lanes, "signs": lanes}, dut.total,
                 lambda values: ref_add_sub(values["data"], values["signs"], lanes, 8),
                 en_pause, seed=lanes)


@pytest.mark.parametrize("en_pause", PAUSE_KINDS)
@pytest.mark.parametrize("levels_per_stage", [1, 2, 3])
@pytest.mark.parametrize(("lanes", "trees"), [(1, 1), (1, 2), (2, 3), (3, 1), (5, 2), (8, 4),
                                              (13, 3), (13, 1), (3, 17), (4, 40)])
def test_complement_sum_trees(lanes, trees, levels_per_stage, en_pause):
    dut = ComplementSumTrees(lanes, trees=trees, levels_per_stage=levels_per_stage)
    # Paired: two registers (three with more than 16 trees: the replicas), then a tree over the
    # pairs (and the odd lane); else one tree.
    paired = trees >= 2 and lanes >= 2
    assert dut.latency == (2 + (trees > 16) + tree_latency((lanes + 1) // 2, levels_per_stage)
                           if paired else tree_latency(lanes, levels_per_stage))
    run_pipeline(dut, {"data": 8 * lanes, "signs": lanes * trees}, dut.totals.as_value(),
                 lambda values: ref_complement_sums(values["data"], values["signs"], lanes,
                                                    trees, 8),
                 en_pause, seed=lanes * 7 + trees)


def test_complement_sum_trees_hand_checked():
    """x = (200, 100, 7). Signs 0b011: 200 + 100 + (255 - 7) = 548. Signs 0b100: (255 - 200) +
    (255 - 100) + 7 = 217, plus 1 (the pair's first sign is 0) = 218. Signs 0b010: 55 + 100 +
    248 + 1 = 404. The offsets: 0 for 0b011, 1 for 0b100 and 0b010."""
    dut = ComplementSumTrees(3, trees=3, levels_per_stage=1)
    assert dut.latency == 3  # pair sums, pair values, the adder of pair and odd lane
    assert [dut.offset([1, 1, 0]), dut.offset([0, 0, 1]), dut.offset([0, 1, 0])] == [0, 1, 1]
    assert ComplementSumTrees(3, trees=1).offset([0, 0, 1]) == 0

    async def testbench(ctx):
        ctx.set(dut.data, 200 | 100 << 8 | 7 << 16)
        ctx.set(dut.signs.as_value(), 0b011 | 0b100 << 3 | 0b010 << 6)
        await ctx.tick().repeat(3)
        assert [ctx.get(dut.totals[t]) for t in range(3)] == [548, 218, 404]

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(testbench)
    sim.run()


def test_complement_sum_trees_share_the_pair_sums():
    """The pair sums and differences are built once for all trees: 8 lanes, 4 trees: 4 pair
    sums and 4 differences, and per tree a 4-leaf tree of 3 adders."""
    dut = ComplementSumTrees(8, trees=4)
    assert dut.latency == complement_latency(8, 4, 2) == 3
    text = rtlil.convert(dut)
    assert text.count("wire width 9 \\pair") == 8
    # Sums, differences (max + a, then - b), and the trees' own adders.
    assert text.count("cell $add") == 4 + 4 + 4 * 3
    assert text.count("cell $sub") == 4


def test_add_sub_tree_hand_checked():
    """x = (200, 100, 7): signs 0b011 -> 200 + 100 - 7 = 293; 0b100 -> -200 - 100 + 7 = -293;
    0b000 with x = (255, 255, 255) -> -765, the most negative sum."""
    dut = AddSubTree(3, levels_per_stage=1)
    assert dut.latency == 2
    cases = [(200 | 100 << 8 | 7 << 16, 0b011, 293), (200 | 100 << 8 | 7 << 16, 0b100, -293),
             (0xFFFFFF, 0b000, -765), (0xFFFFFF, 0b111, 765)]

    async def testbench(ctx):
        for data, signs, _ in cases:
            ctx.set(dut.data, data)
            ctx.set(dut.signs, signs)
            await ctx.tick()
        # A value set in cycle c is the output in cycle c + latency; now is cycle len(cases).
        for *_, expected in cases[len(cases) - dut.latency:]:
            assert ctx.get(dut.total) == expected
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(testbench)
    sim.run()


@pytest.mark.parametrize(("leaves", "levels_per_stage", "latency"), [
    (1, 1, 0), (1, 3, 0), (2, 1, 1), (2, 2, 1), (3, 1, 2), (4, 2, 1), (5, 2, 2), (8, 2, 2),
    (9, 2, 2), (33, 2, 3), (33, 3, 2), (64, 4, 2), (784, 2, 5), (784, 3, 4),
])
def test_tree_latency(leaves, levels_per_stage, latency):
    """ceil(ceil(log2(leaves)) / levels_per_stage), hand-computed."""
    assert tree_latency(leaves, levels_per_stage) == latency
    assert AddSubTree(leaves, levels_per_stage=levels_per_stage).latency == latency


@pytest.mark.parametrize(("width", "levels_per_stage", "latency"), [
    (1, 1, 0), (1, 2, 0), (2, 1, 1), (15, 1, 1), (15, 3, 1), (16, 1, 2), (30, 2, 2),
    (31, 1, 3), (64, 1, 4), (64, 2, 3), (512, 1, 7), (512, 2, 4), (784, 2, 4), (1024, 3, 4),
])
def test_popcount_latency(width, levels_per_stage, latency):
    """1 (the groups' full-adder counts, registered) + ceil(ceil(log2(ceil(width / 15))) /
    levels_per_stage), hand-computed; 0 for one bit."""
    assert popcount_latency(width, levels_per_stage) == latency
    assert Popcount(width, levels_per_stage=levels_per_stage).latency == latency


def test_trees_have_one_adder_per_node():
    """A tree over n leaves has exactly n - 1 adders and named nodes: no expression is
    re-emitted, even at 64 lanes."""
    text = rtlil.convert(AddSubTree(64))
    assert text.count("cell $add") == 63
    assert text.count("cell $neg") == 64
    assert "wire width 10 signed \\as_l1_n31" in text
    # A popcount of 64 bits: four groups of 15 bits of 11 full adders each, and a group of 4
    # bits (a full adder and two half adders), then an adder tree over the five counts.
    text = rtlil.convert(Popcount(64, levels_per_stage=3))
    assert text.count("cell $add") == 4
    for group in range(4):
        assert f"wire width 1 \\pc_g{group}_fa10_s" in text
        assert f"\\pc_g{group}_fa11_s" not in text
        assert f"\\pc_g{group}_ha" not in text
    lines = text.splitlines()
    assert "  wire width 4 \\pc_g3" in lines
    assert "  wire width 3 \\pc_g4" in lines
    assert {"  wire width 1 \\pc_g4_fa0_s", "  wire width 1 \\pc_g4_ha1_s",
            "  wire width 1 \\pc_g4_ha2_c"} <= set(lines)
    assert "\\pc_g4_fa1_" not in text and "\\pc_g4_ha3_" not in text
    assert "wire width 7 \\pc_l3_n0" in text


@pytest.mark.parametrize(("make", "message"), [
    (lambda: Popcount(0), r"^Popcount width \(0\) must be a positive integer$"),
    (lambda: Popcount(8, levels_per_stage=0),
     r"^Levels per pipeline stage \(0\) must be a positive integer$"),
    (lambda: AddSubTree(0), r"^Number of lanes \(0\) must be a positive integer$"),
    (lambda: AddSubTree(4, lane_bits=0), r"^Lane width \(0\) must be a positive integer$"),
    (lambda: AddSubTree(4, levels_per_stage=1.5),
     r"^Levels per pipeline stage \(1\.5\) must be a positive integer$"),
])
def test_parameter_messages(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_complement_sum_trees_replicate_the_pair_values_per_group_of_16():
    """40 trees: three groups (16, 16, 8), each with a registered copy of every pair sum and
    difference and of the odd lane, named for the flow's `keep`; 16 trees: none."""
    text = rtlil.convert(ComplementSumTrees(5, trees=40))
    for g in range(3):
        for i in range(2):
            assert f"wire width 9 \\pair{i}_sum_g{g}_replica" in text
            assert f"wire width 9 \\pair{i}_diff_g{g}_replica" in text
        assert f"wire width 8 \\odd_lane_g{g}_replica" in text
    assert "_g3_replica" not in text
    assert "_replica" not in rtlil.convert(ComplementSumTrees(5, trees=16))

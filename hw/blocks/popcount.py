"""Pipelined reduction trees: the popcount of a bit vector and the signed sum of 8-bit lanes.

The sums are binary adder trees: level ``j`` adds pairs of the nodes of level ``j - 1`` (an odd
node out is carried to the next level unchanged). Every node is a named :class:`Signal`, so that
a node used twice is never re-emitted as a copy of its expression. Registers are placed after
every ``levels_per_stage`` adder levels and always after the last level, so a tree over ``n``
leaves has ``L = ceil(log2(n))`` adder levels and a latency of ``ceil(L / levels_per_stage)``
cycles (0 for a single leaf, which is passed through combinationally).

A popcount first counts groups of :data:`POPCOUNT_GROUP` (15) bits with full adders (3:2
counters: ``s = a ^ b ^ c``, ``carry = majority(a, b, c)``, a LUT3 each), 11 full adders per
group whose count fills four bits exactly; the groups' counts are registered and summed by an
adder tree. A full adder removes one bit for two LUTs, where the adders of 1- to 3-bit numbers at
the bottom of a binary tree remove fewer (three levels of a binary tree map to about 11 LUT4s
per 8 bits), and the 4-bit counts enter the adder tree where carry chains pay off. With the
XNORs in front, Yosys counts 2.41 LUT4s per lane at 64 lanes on ECP5 against 2.69 for a binary
tree from the leaves.

All pipeline registers update only while ``en`` is 1, which lets a user stall the whole tree
with one clock enable (the :class:`~xnorflow.hw.blocks.mvtu.MVTU` ties it to 1: its pipeline runs
free and takes backpressure by credits), and have no reset: they hold data, whose validity the user
tracks (a reset net to every register of the datapath would be one more net of tens of
thousands of loads).
"""

from amaranth.hdl import Cat, Module, Mux, Shape, Signal
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from xnorflow.hw.compiler.rules import (
    PAIR_REPLICA_TREES,
    POPCOUNT_GROUP,
    check_levels_per_stage,
    complement_latency,
    pair_replicas,
    pairs_shared,
    popcount_latency,
    tree_latency,
    tree_levels,
)

__all__ = ["POPCOUNT_GROUP", "AddSubTree", "ComplementSumTrees", "Popcount", "complement_latency",
           "popcount_latency", "tree_levels", "tree_latency"]

def _check_lanes(lanes, lane_bits, levels_per_stage):
    if not isinstance(lanes, int) or lanes < 1:
        raise ValueError(f"Number of lanes ({lanes!r}) must be a positive integer")
    if not isinstance(lane_bits, int) or lane_bits < 1:
        raise ValueError(f"Lane width ({lane_bits!r}) must be a positive integer")
    check_levels_per_stage(levels_per_stage)


def _adder_tree(m, leaves, *, levels_per_stage, en, name):
    """Build a pipelined adder tree in module ``m``.

    ``leaves`` is a list of ``(value, lo, hi)``: a value and the integer bounds it stays within.
    Returns the root value; its bounds are the sums of the leaves' bounds. A register follows
    every ``levels_per_stage``-th level and the last level:
    ``tree_latency(len(leaves), levels_per_stage)`` register stages.
    """
    nodes = list(leaves)
    depth = tree_levels(len(nodes))
    registered_levels = {*range(levels_per_stage, depth, levels_per_stage), depth}
    level = 0
    while len(nodes) > 1:
        level += 1
        registered = level in registered_levels
        pairs = [(nodes[i], nodes[i + 1]) for i in range(0, len(nodes) - 1, 2)]
        carried = nodes[-1] if len(nodes) % 2 else None
        next_nodes = []
        for index, ((a, a_lo, a_hi), (b, b_lo, b_hi)) in enumerate(pairs):
            lo, hi = a_lo + b_lo, a_hi + b_hi
            total = a + b
            node = Signal(range(lo, hi + 1), name=f"{name}_l{level}_n{index}", reset_less=True)
            if registered:
                with m.If(en):
                    m.d.sync += node.eq(total)
            else:
                m.d.comb += node.eq(total)
            next_nodes.append((node, lo, hi))
        if carried is not None:
            value, lo, hi = carried
            if registered:
                # The odd node out is delayed too, so that all nodes of a level stay aligned.
                node = Signal(range(lo, hi + 1), name=f"{name}_l{level}_n{len(pairs)}",
                              reset_less=True)
                with m.If(en):
                    m.d.sync += node.eq(value)
                next_nodes.append((node, lo, hi))
            else:
                next_nodes.append(carried)
        nodes = next_nodes
    root, lo, hi = nodes[0]
    return root


def _count_bits(m, bits, name):
    """The number of ones among ``bits`` (a list of 1-bit values), as a binary number built of
    full adders (and, where a column is left with two bits, a half adder): column by column
    from the least significant, the three shallowest bits of a column enter a full adder whose
    sum stays in the column and whose carry moves to the next, until one bit is left. Returns
    the bits of the count, least significant first."""
    columns = [[(bit, 0) for bit in bits]]
    count = []
    index = 0
    weight = 0
    while weight < len(columns):
        column = columns[weight]
        while len(column) > 1:
            column.sort(key=lambda item: item[1])
            if len(column) >= 3:
                (a, da), (b, db), (c, dc) = column[:3]
                del column[:3]
                total, carry = (Signal(name=f"{name}_fa{index}_s"),
                                Signal(name=f"{name}_fa{index}_c"))
                m.d.comb += [total.eq(a ^ b ^ c), carry.eq((a & b) | (c & (a ^ b)))]
                depth = max(da, db, dc) + 1
            else:
                (a, da), (b, db) = column
                del column[:]
                total, carry = (Signal(name=f"{name}_ha{index}_s"),
                                Signal(name=f"{name}_ha{index}_c"))
                m.d.comb += [total.eq(a ^ b), carry.eq(a & b)]
                depth = max(da, db) + 1
            index += 1
            column.append((total, depth))
            if weight + 1 == len(columns):
                columns.append([])
            columns[weight + 1].append((carry, depth))
        count.append(column[0][0])
        weight += 1
    return count


class Popcount(wiring.Component):
    """Pipelined population count of a ``width``-bit vector.

    Parameters
    ----------
    width : int
        Number of input bits (at least 1).
    levels_per_stage : int
        Adder levels between pipeline registers (at least 1; default 2).

    Ports
    -----
    data : In(width)
        The bit vector.
    en : In(1, init=1)
        Clock enable of every pipeline register: while 0 the tree holds its state (stall).
    count : Out(range(width + 1))
        The number of ones in ``data`` as it was ``latency`` enabled clock edges earlier
        (combinational, the same cycle, when ``latency`` is 0).

    Latency: :func:`popcount_latency` enabled cycles (see :attr:`latency`): groups of
    :data:`POPCOUNT_GROUP` bits are counted by full adders into a register, and the counts
    summed by an adder tree with a register after every ``levels_per_stage`` levels and after
    its last. A new vector is accepted every enabled cycle (initiation interval 1). There is no
    valid bit:
    a user that needs one delays it through a shift register of ``latency`` stages under the same
    ``en``.
    """

    def __init__(self, width, *, levels_per_stage=2):
        if not isinstance(width, int) or width < 1:
            raise ValueError(f"Popcount width ({width!r}) must be a positive integer")
        check_levels_per_stage(levels_per_stage)
        self._width = width
        self._levels_per_stage = levels_per_stage
        super().__init__({
            "data": In(width),
            "en": In(1, init=1),
            "count": Out(range(width + 1)),
        })

    @property
    def width(self):
        return self._width

    @property
    def levels_per_stage(self):
        return self._levels_per_stage

    @property
    def latency(self):
        """Pipeline latency in enabled clock cycles (:func:`popcount_latency`)."""
        return popcount_latency(self._width, self._levels_per_stage)

    def elaborate(self, platform):
        m = Module()
        if self._width == 1:
            m.d.comb += self.count.eq(self.data)
            return m
        leaves = []
        for group, start in enumerate(range(0, self._width, POPCOUNT_GROUP)):
            bits = [self.data[i] for i in range(start, min(self._width, start + POPCOUNT_GROUP))]
            total = Cat(*_count_bits(m, bits, f"pc_g{group}"))
            count = Signal(range(len(bits) + 1), name=f"pc_g{group}", reset_less=True)
            with m.If(self.en):
                m.d.sync += count.eq(total)
            leaves.append((count, 0, len(bits)))
        root = _adder_tree(m, leaves, levels_per_stage=self._levels_per_stage, en=self.en,
                           name="pc")
        m.d.comb += self.count.eq(root)
        return m


class AddSubTree(wiring.Component):
    """Pipelined signed sum of unsigned lanes, each added or subtracted.

    ``total = sum(x_l if signs[l] else -x_l for l in range(lanes))``, where lane ``l`` is the
    unsigned ``lane_bits``-bit value at bits ``l*lane_bits ... l*lane_bits + lane_bits - 1`` of
    ``data`` and ``signs[l] = 1`` means +1 (the weight bit convention of docs/semantics.md).

    Parameters
    ----------
    lanes : int
        Number of lanes (at least 1).
    lane_bits : int
        Width of one unsigned lane (default 8, the pixel width).
    levels_per_stage : int
        Adder levels between pipeline registers (at least 1; default 2).

    Ports
    -----
    data : In(lanes * lane_bits)
        The lanes, lane 0 in the least significant bits.
    signs : In(lanes)
        Bit ``l`` selects add (1) or subtract (0) for lane ``l``.
    en : In(1, init=1)
        Clock enable of every pipeline register (stall while 0).
    total : Out(signed)
        The signed sum, ``Shape.cast(range(-lanes*max, lanes*max + 1))`` with
        ``max = 2**lane_bits - 1``, as it was ``latency`` enabled clock edges earlier.

    Latency: ``ceil(ceil(log2(lanes)) / levels_per_stage)`` enabled cycles; the lane negation is
    combinational in front of the first level. Initiation interval 1.
    """

    def __init__(self, lanes, *, lane_bits=8, levels_per_stage=2):
        _check_lanes(lanes, lane_bits, levels_per_stage)
        self._lanes = lanes
        self._lane_bits = lane_bits
        self._levels_per_stage = levels_per_stage
        lane_max = (1 << lane_bits) - 1
        super().__init__({
            "data": In(lanes * lane_bits),
            "signs": In(lanes),
            "en": In(1, init=1),
            "total": Out(Shape.cast(range(-lanes * lane_max, lanes * lane_max + 1))),
        })

    @property
    def lanes(self):
        return self._lanes

    @property
    def lane_bits(self):
        return self._lane_bits

    @property
    def levels_per_stage(self):
        return self._levels_per_stage

    @property
    def latency(self):
        """Pipeline latency in enabled clock cycles."""
        return tree_latency(self._lanes, self._levels_per_stage)

    def elaborate(self, platform):
        m = Module()
        bits = self._lane_bits
        lane_max = (1 << bits) - 1
        leaves = []
        for lane in range(self._lanes):
            x = self.data[lane * bits:(lane + 1) * bits]
            term = Signal(range(-lane_max, lane_max + 1), name=f"term{lane}")
            m.d.comb += term.eq(Mux(self.signs[lane], x, -x))
            leaves.append((term, -lane_max, lane_max))
        root = _adder_tree(m, leaves, levels_per_stage=self._levels_per_stage, en=self.en,
                           name="as")
        m.d.comb += self.total.eq(root)
        return m


class ComplementSumTrees(wiring.Component):
    """``trees`` pipelined unsigned sums of the same lanes, each lane taken as it is or
    complemented by the tree's own sign bit, with lane pairs summed once for all trees.

    Tree ``t`` computes ``totals[t] = sum(c_l) + offset(signs[t])`` where ``c_l = x_l`` if
    ``signs[t][l]`` is 1 and ``max - x_l`` if it is 0 (``max = 2**lane_bits - 1``; the signed sum
    of :class:`AddSubTree` is ``sum(c_l) - max * zeros``, ``zeros`` the lanes with sign 0), and
    ``offset`` is :meth:`offset`: the number of lane pairs whose first sign is 0. The MVTU folds
    both constants into its thresholds (see :class:`~xnorflow.hw.blocks.mvtu.MVTU`).

    How: lanes ``2i`` and ``2i+1`` (``a``, ``b``) form a pair, and the trees share the pair's sum
    ``S = a + b`` and difference ``D = max + a - b`` (``lane_bits + 1`` bits each). With sign bits
    ``sa``, ``sb`` a tree takes ``(D if sa != sb else S) ^ (sa ? 0 : all ones)``, which is ``c_a +
    c_b``, plus 1 when ``sa`` is 0: one LUT4 per bit (four inputs: ``S``, ``D`` and the two sign
    bits), where a tree of complemented lanes needs a LUT4 per lane bit for the complement before
    its first adders. An odd last lane enters as ``c_l``. The shared sums and differences are
    registers, and so are the trees' pair values: the shared values drive every tree, and
    across a large unit their wires are long, so each of the two steps has a cycle of its own
    (their sign bits are delayed by one register to match). With more than 16 trees, each group
    of 16 takes the shared values through a registered copy of its own, placed near the group
    (:func:`~xnorflow.hw.compiler.rules.pair_replicas`; one more cycle). The latency is therefore
    ``2 + ceil(ceil(log2(ceil(lanes / 2))) / levels_per_stage)``, plus 1 with replicas
    (:func:`complement_latency`). A
    single tree (``trees = 1``) shares nothing and costs less without pairs (about 10 % fewer
    LUT4s by Yosys): it adds the complemented lanes directly, its offset is 0 and its latency
    that of a tree over ``lanes`` leaves (:attr:`paired`).

    Parameters
    ----------
    lanes : int
        Number of lanes (at least 1).
    trees : int
        Number of trees (sign vectors) sharing the lanes (at least 1).
    lane_bits : int
        Width of one unsigned lane (default 8, the pixel width).
    levels_per_stage : int
        Adder levels between pipeline registers (at least 1; default 2).

    Ports
    -----
    data : In(lanes * lane_bits)
        The lanes, lane 0 in the least significant bits.
    signs : In(data.ArrayLayout(lanes, trees))
        ``signs[t]`` bit ``l``: lane ``l`` as it is (1) or complemented (0) in tree ``t``.
    en : In(1, init=1)
        Clock enable of every pipeline register (stall while 0).
    totals : Out(data.ArrayLayout(range(top + 1), trees))
        Each tree's total as it was ``latency`` enabled clock edges earlier; ``top`` is
        :attr:`top`.

    Latency: :func:`complement_latency` enabled cycles, initiation interval 1.
    """

    def __init__(self, lanes, *, trees=1, lane_bits=8, levels_per_stage=2):
        _check_lanes(lanes, lane_bits, levels_per_stage)
        if not isinstance(trees, int) or trees < 1:
            raise ValueError(f"Number of trees ({trees!r}) must be a positive integer")
        self._lanes = lanes
        self._trees = trees
        self._lane_bits = lane_bits
        self._levels_per_stage = levels_per_stage
        super().__init__({
            "data": In(lanes * lane_bits),
            "signs": In(data.ArrayLayout(lanes, trees)),
            "en": In(1, init=1),
            "totals": Out(data.ArrayLayout(range(self.top + 1), trees)),
        })

    #: Whether trees of this many lanes share pairs (the rule of
    #: :func:`xnorflow.hw.compiler.rules.pairs_shared`).
    pairs_shared = staticmethod(pairs_shared)

    @property
    def paired(self):
        return self.pairs_shared(self._lanes, self._trees)

    @property
    def top(self):
        """The largest total: ``2*max + 1`` per pair and ``max`` for an odd last lane (or for
        every lane, unpaired)."""
        lane_max = (1 << self._lane_bits) - 1
        if not self.paired:
            return self._lanes * lane_max
        return (self._lanes // 2) * (2 * lane_max + 1) + (self._lanes % 2) * lane_max

    @property
    def latency(self):
        """Pipeline latency in enabled clock cycles (:func:`complement_latency`)."""
        return complement_latency(self._lanes, self._trees, self._levels_per_stage)

    def offset(self, signs):
        """``totals[t] - sum(c_l)`` for the sign bits ``signs`` (a sequence of 0/1, lane 0 first):
        the number of pairs ``(2i, 2i+1)`` whose first sign is 0 (0 when unpaired)."""
        signs = list(signs)
        if not self.paired:
            return 0
        return sum(1 for i in range(0, len(signs) - 1, 2) if not signs[i])

    def elaborate(self, platform):
        m = Module()
        bits = self._lane_bits
        lane_max = (1 << bits) - 1
        pair_max = 2 * lane_max + 1
        lanes = [self.data[lane * bits:(lane + 1) * bits] for lane in range(self._lanes)]
        if not self.paired:
            for t in range(self._trees):
                leaves = []
                for lane, x in enumerate(lanes):
                    leaf = Signal(bits, name=f"t{t}_term{lane}")
                    m.d.comb += leaf.eq(x ^ (~self.signs[t][lane]).replicate(bits))
                    leaves.append((leaf, 0, lane_max))
                root = _adder_tree(m, leaves, levels_per_stage=self._levels_per_stage,
                                   en=self.en, name=f"t{t}")
                m.d.comb += self.totals[t].eq(root)
            return m
        # Stage 1 (shared): the pairs' sums and differences, the odd lane's pixel; each tree's
        # sign bits delayed alongside. Stage 2 (per tree): the selected, complemented pair values.
        # Both are registers: the shared values drive every tree, spread over the die.
        en = self.en

        def register(value, shape, name):
            reg = Signal(shape, name=name, reset_less=True)
            with m.If(en):
                m.d.sync += reg.eq(value)
            return reg

        shared = []
        for i in range(self._lanes // 2):
            a, b = lanes[2 * i], lanes[2 * i + 1]
            shared.append((register(a + b, bits + 1, f"pair{i}_sum"),
                           register(lane_max + a - b, bits + 1, f"pair{i}_diff")))
        odd = register(lanes[-1], bits, "odd_lane") if self._lanes % 2 else None
        # Pipelined, replicated distribution: with many trees, each group of
        # PAIR_REPLICA_TREES takes the shared values through a register copy of its own, which
        # the placer puts near the group. The copies are identical logic; the names ending in
        # `_replica` are what the synthesis flow marks `keep` so that Yosys does not merge them
        # back into one (xnorflow.hw.build.flow).
        replicas = pair_replicas(self._lanes, self._trees)
        copies = [(shared, odd)]
        if replicas > 1:
            copies = [([(register(s, bits + 1, f"pair{i}_sum_g{g}_replica"),
                         register(d, bits + 1, f"pair{i}_diff_g{g}_replica"))
                        for i, (s, d) in enumerate(shared)],
                       None if odd is None else register(odd, bits, f"odd_lane_g{g}_replica"))
                      for g in range(replicas)]
        for t in range(self._trees):
            shared, odd = copies[t // PAIR_REPLICA_TREES] if replicas > 1 else copies[0]
            signs = register(self.signs[t], self._lanes, f"t{t}_signs")
            if replicas > 1:
                signs = register(signs, self._lanes, f"t{t}_signs_d")
            leaves = []
            for i, (s, d) in enumerate(shared):
                sa, sb = signs[2 * i], signs[2 * i + 1]
                leaf = register(Mux(sa ^ sb, d, s) ^ (~sa).replicate(bits + 1), bits + 1,
                                f"t{t}_pair{i}")
                leaves.append((leaf, 0, pair_max))
            if odd is not None:
                leaf = register(odd ^ (~signs[self._lanes - 1]).replicate(bits), bits,
                                f"t{t}_odd")
                leaves.append((leaf, 0, lane_max))
            root = _adder_tree(m, leaves, levels_per_stage=self._levels_per_stage, en=en,
                               name=f"t{t}")
            m.d.comb += self.totals[t].eq(root)
        return m

"""Pipelined reduction trees: the popcount of a bit vector and the signed sum of 8-bit lanes.

Both trees are binary adder trees: level ``j`` adds pairs of the nodes of level ``j - 1`` (an odd
node out is carried to the next level unchanged). Every node is a named :class:`Signal`, so that
a node used twice is never re-emitted as a copy of its expression.

Registers are placed after every ``levels_per_stage`` adder levels and always after the last
level, so a tree over ``n`` leaves has ``L = ceil(log2(n))`` adder levels and a latency of
``ceil(L / levels_per_stage)`` cycles (0 for a single leaf, which is passed through
combinationally). A popcount tree keeps at least its first three levels (which add numbers of one
to three bits) in its first stage: its first register follows level ``max(levels_per_stage, 3)``,
and the root is delayed by the stages this saves, so that the latency is the same. (Yosys maps
those three levels together into fewer LUT4s than level by level: about 16 instead of 19 per 8
inputs on ECP5, where adders of up to 4 result bits are LUT logic, not carry chains.) All
pipeline registers update only while ``en`` is 1, which lets the surrounding unit stall the whole
tree with one clock enable.
"""

from amaranth.hdl import Module, Mux, Shape, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["AddSubTree", "ComplementSumTree", "Popcount", "tree_levels", "tree_latency"]


def tree_levels(leaves):
    """Number of adder levels of a binary tree over ``leaves`` leaves: ``ceil(log2(leaves))``."""
    if not isinstance(leaves, int) or leaves < 1:
        raise ValueError(f"Number of leaves ({leaves!r}) must be a positive integer")
    return (leaves - 1).bit_length()


def tree_latency(leaves, levels_per_stage):
    """Pipeline latency in cycles of a tree over ``leaves`` leaves.

    ``ceil(tree_levels(leaves) / levels_per_stage)``: one register after every
    ``levels_per_stage`` levels and one after the last level.
    """
    _check_levels_per_stage(levels_per_stage)
    levels = tree_levels(leaves)
    return -(-levels // levels_per_stage)


def _check_levels_per_stage(levels_per_stage):
    if not isinstance(levels_per_stage, int) or levels_per_stage < 1:
        raise ValueError(
            f"Levels per pipeline stage ({levels_per_stage!r}) must be a positive integer")


def _register_plan(depth, stages, first_stage, levels_per_stage):
    """Where the registers of a tree of ``depth`` adder levels go, for ``stages`` pipeline stages.

    Returns ``(levels, padding)``: the set of levels followed by a register, and the number of
    extra delay registers after the root, ``len(levels) + padding == stages``. The first register
    follows level ``min(depth, first_stage)``, the next ones every ``levels_per_stage`` levels and
    the last level; stages left over delay the root.
    """
    if stages == 0:
        return set(), 0
    levels = {min(depth, first_stage)}
    level = min(depth, first_stage)
    while level < depth:
        level = min(depth, level + levels_per_stage)
        levels.add(level)
    if len(levels) > stages:
        raise AssertionError(f"{len(levels)} register stages for a latency of {stages}")
    return levels, stages - len(levels)


def _adder_tree(m, leaves, *, levels_per_stage, en, name, first_stage=None):
    """Build a pipelined adder tree in module ``m``.

    ``leaves`` is a list of ``(value, lo, hi)``: a value and the integer bounds it stays within.
    Returns the root value; its bounds are the sums of the leaves' bounds. The tree has
    ``tree_latency(len(leaves), levels_per_stage)`` register stages (see :func:`_register_plan`;
    ``first_stage`` levels before the first register, default ``levels_per_stage``).
    """
    nodes = list(leaves)
    depth = tree_levels(len(nodes))
    stages = tree_latency(len(nodes), levels_per_stage)
    if first_stage is None:
        first_stage = levels_per_stage
    registered_levels, padding = _register_plan(depth, stages, first_stage, levels_per_stage)
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
            node = Signal(range(lo, hi + 1), name=f"{name}_l{level}_n{index}")
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
                node = Signal(range(lo, hi + 1), name=f"{name}_l{level}_n{len(pairs)}")
                with m.If(en):
                    m.d.sync += node.eq(value)
                next_nodes.append((node, lo, hi))
            else:
                next_nodes.append(carried)
        nodes = next_nodes
    root, lo, hi = nodes[0]
    for index in range(padding):
        delayed = Signal(range(lo, hi + 1), name=f"{name}_delay{index}")
        with m.If(en):
            m.d.sync += delayed.eq(root)
        root = delayed
    return root


#: Popcount trees: adder levels before the first register, at least. The first three levels add
#: numbers of one to three bits; LUT mappers (Yosys' abc9) map them together into fewer LUT4s than
#: level by level, and on ECP5 adders of at most four result bits are LUT logic anyway.
_FIRST_STAGE = 3


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

    Latency: ``ceil(ceil(log2(width)) / levels_per_stage)`` enabled cycles (see :attr:`latency`).
    A new vector is accepted every enabled cycle (initiation interval 1). There is no valid bit:
    a user that needs one delays it through a shift register of ``latency`` stages under the same
    ``en``.
    """

    def __init__(self, width, *, levels_per_stage=2):
        if not isinstance(width, int) or width < 1:
            raise ValueError(f"Popcount width ({width!r}) must be a positive integer")
        _check_levels_per_stage(levels_per_stage)
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
        """Pipeline latency in enabled clock cycles."""
        return tree_latency(self._width, self._levels_per_stage)

    def elaborate(self, platform):
        m = Module()
        leaves = [(self.data[i], 0, 1) for i in range(self._width)]
        root = _adder_tree(m, leaves, levels_per_stage=self._levels_per_stage, en=self.en,
                           name="pc", first_stage=max(self._levels_per_stage, _FIRST_STAGE))
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
        if not isinstance(lanes, int) or lanes < 1:
            raise ValueError(f"Number of lanes ({lanes!r}) must be a positive integer")
        if not isinstance(lane_bits, int) or lane_bits < 1:
            raise ValueError(f"Lane width ({lane_bits!r}) must be a positive integer")
        _check_levels_per_stage(levels_per_stage)
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


class ComplementSumTree(wiring.Component):
    """Pipelined unsigned sum of lanes, each taken as it is or complemented.

    ``total = sum(x_l if signs[l] else (2**lane_bits - 1) - x_l for l in range(lanes))``: lane
    ``l`` is XORed with the complement of its sign bit broadcast over the lane, so that every
    leaf stays unsigned and the XOR falls into the first adders' LUTs (no negation adder per
    lane, as :class:`AddSubTree` needs). The signed sum of :class:`AddSubTree` is ``total -
    max * zeros``, ``zeros`` the number of lanes with sign 0: the MVTU folds that constant into
    its thresholds (see :class:`~xnorflow.hw.mvtu.MVTU`).

    Ports as :class:`AddSubTree`, except ``total : Out(range(lanes * max + 1))``. Latency
    ``ceil(ceil(log2(lanes)) / levels_per_stage)`` enabled cycles, initiation interval 1.
    """

    def __init__(self, lanes, *, lane_bits=8, levels_per_stage=2):
        if not isinstance(lanes, int) or lanes < 1:
            raise ValueError(f"Number of lanes ({lanes!r}) must be a positive integer")
        if not isinstance(lane_bits, int) or lane_bits < 1:
            raise ValueError(f"Lane width ({lane_bits!r}) must be a positive integer")
        _check_levels_per_stage(levels_per_stage)
        self._lanes = lanes
        self._lane_bits = lane_bits
        self._levels_per_stage = levels_per_stage
        lane_max = (1 << lane_bits) - 1
        super().__init__({
            "data": In(lanes * lane_bits),
            "signs": In(lanes),
            "en": In(1, init=1),
            "total": Out(range(lanes * lane_max + 1)),
        })

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
            term = Signal(bits, name=f"term{lane}")
            m.d.comb += term.eq(x ^ (~self.signs[lane]).replicate(bits))
            leaves.append((term, 0, lane_max))
        root = _adder_tree(m, leaves, levels_per_stage=self._levels_per_stage, en=self.en,
                           name="cs")
        m.d.comb += self.total.eq(root)
        return m

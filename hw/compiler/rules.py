"""The structural rules of the gateware, in one place: the compiler's performance and resource
models (:mod:`xnorflow.hw.compiler`) and the blocks that follow them (:mod:`xnorflow.hw.blocks`)
both read them from here, so a block's latency and its op's prediction cannot drift apart.

Each rule is a pure function of a block's parameters: the pipeline depth of the reduction trees,
where the memories of a matrix-vector-threshold unit live, how its pipeline takes backpressure,
and where the serial bridge keeps its frame buffer.
"""

__all__ = ["BRIDGE_BUFFER_STYLES", "BUFFER_LOGIC_MAX_BITS", "BUFFER_STYLES",
           "CREDIT_MIN_LANE_BITS", "MVTU_LATENCY_CONSTANT", "PIPELINE_STYLES", "POPCOUNT_GROUP",
           "THRESHOLD_BRAM_MIN_WORDS", "bridge_buffer_style", "buffer_style",
           "check_levels_per_stage", "complement_latency", "output_depth", "pairs_shared",
           "pipeline_style", "popcount_latency", "threshold_style", "tree_latency",
           "tree_levels"]


# --- Reduction trees (xnorflow.hw.blocks.popcount) ----------------------------------------------

#: Bits per first-stage group of a popcount, counted by full adders: ``2**4 - 1``, whose count
#: (0 to 15) fills four bits, so that the group needs full adders only (no half adders).
POPCOUNT_GROUP = 15


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
    check_levels_per_stage(levels_per_stage)
    levels = tree_levels(leaves)
    return -(-levels // levels_per_stage)


def popcount_latency(width, levels_per_stage):
    """Pipeline latency in cycles of :class:`Popcount` of ``width`` bits: 0 for one bit (passed
    through); otherwise the register after the groups' counts, plus the adder tree over the
    ``ceil(width / POPCOUNT_GROUP)`` counts when there are several:
    ``1 + tree_latency(ceil(width / 15), levels_per_stage)``."""
    if not isinstance(width, int) or width < 1:
        raise ValueError(f"Popcount width ({width!r}) must be a positive integer")
    check_levels_per_stage(levels_per_stage)
    if width == 1:
        return 0
    return 1 + tree_latency(-(-width // POPCOUNT_GROUP), levels_per_stage)


def complement_latency(lanes, trees, levels_per_stage):
    """Pipeline latency in cycles of :class:`ComplementSumTrees`: with pairs (``trees >= 2``
    and ``lanes >= 2``), the shared register, the pair-value register and a tree over
    ``ceil(lanes / 2)`` leaves, ``2 + tree_latency(ceil(lanes / 2), levels_per_stage)``;
    otherwise ``tree_latency(lanes, levels_per_stage)``."""
    if pairs_shared(lanes, trees):
        return 2 + tree_latency(-(-lanes // 2), levels_per_stage)
    return tree_latency(lanes, levels_per_stage)


def pairs_shared(lanes, trees):
    """Whether ``trees`` complement-sum trees of ``lanes`` lanes sum lane pairs once for all trees
    (at least two of each: see :class:`~xnorflow.hw.blocks.popcount.ComplementSumTrees`)."""
    return trees >= 2 and lanes >= 2


def check_levels_per_stage(levels_per_stage):
    if not isinstance(levels_per_stage, int) or levels_per_stage < 1:
        raise ValueError(
            f"Levels per pipeline stage ({levels_per_stage!r}) must be a positive integer")


# --- The matrix-vector-threshold unit (xnorflow.hw.blocks.mvtu) ------------------------------

#: Pipeline registers outside the reduction tree between the handshake of a frame's last input
#: beat and its first output beat being valid: the input buffer's fill state, the weight/input
#: memory read register, the register after it (stage 2) and the output register, which takes the
#: accumulated and thresholded result directly.
MVTU_LATENCY_CONSTANT = 4

#: Per-PE threshold tables of at least this many words go to block RAM (with "bram" storage).
THRESHOLD_BRAM_MIN_WORDS = 256
#: The ``buffer`` choices of :class:`MVTU` (None: :func:`buffer_style`).
BUFFER_STYLES = (None, "block", "logic", "distributed")
#: Input ping-pong buffers of at most this many bits are flip-flops and a multiplexer.
BUFFER_LOGIC_MAX_BITS = 2048
#: The ``pipeline`` choices of :class:`MVTU` (None: :func:`pipeline_style`).
PIPELINE_STYLES = (None, "enable", "credit")
#: Units of at least this many lane bits (``PE * SIMD * input_bits``) run their pipeline free,
#: with credits (:func:`pipeline_style`): there the clock enable of a stalled pipeline reaches
#: thousands of registers across the die, and its routing set the clock of the SFC reference
#: build (14 ns of routing from the enable's register to a far register of the first layer).
CREDIT_MIN_LANE_BITS = 1024


def threshold_style(nf, storage):
    """Where a PE's ``NF``-word threshold table lives: ``"block"`` RAM when the weights are in
    block RAM and the table has at least :data:`THRESHOLD_BRAM_MIN_WORDS` words, else
    ``"logic"``. Every memory of the unit has its mapping stated, so that the resource model
    (:meth:`xnorflow.hw.compiler.ops.dense.DenseOp.resources`) counts block RAMs exactly."""
    return "block" if storage == "bram" and nf >= THRESHOLD_BRAM_MIN_WORDS else "logic"


def buffer_style(sf, chunk_width):
    """Where the ``2*SF x chunk_width`` input buffer lives: ``"logic"`` up to
    :data:`BUFFER_LOGIC_MAX_BITS` bits, else ``"block"`` RAM."""
    return "logic" if 2 * sf * chunk_width <= BUFFER_LOGIC_MAX_BITS else "block"


def pipeline_style(pe, simd, input_bits):
    """How an :class:`MVTU`'s pipeline takes backpressure by default: ``"credit"`` (it runs
    free, with an output queue) from :data:`CREDIT_MIN_LANE_BITS` lane bits
    (``PE * SIMD * input_bits``), where one clock enable would fan out to thousands of
    registers; below, ``"enable"`` (one clock enable, one skid register), which needs no queue
    and so fewer LUTs."""
    return "credit" if pe * simd * input_bits >= CREDIT_MIN_LANE_BITS else "enable"


def output_depth(tree_latency, sf):
    """Beats the output queue of an :class:`MVTU` holds, its output register included: as many
    results as one issue after another can have in flight, ``ceil((3 + P) / SF) + 1`` (at least
    2) for a tree of latency ``P``, so that with the output ready the reader never waits for a
    credit (see the class docstring, Backpressure)."""
    return max(2, -(-(3 + tree_latency) // sf) + 1)


# --- The serial bridge (xnorflow.hw.tops.bridge) ----------------------------------------------

#: Where a frame buffer can live (its ``ram_style``).
BRIDGE_BUFFER_STYLES = ("block", "distributed", "logic")


def bridge_buffer_style(family: str, depth: int) -> str:
    """The frame buffer's place for a board of ``family``: ECP5 LUT RAM up to 64 words deep
    (far cheaper than block RAMs when ``8*SIMD0`` is wide), else block RAM."""
    return "distributed" if family == "ecp5" and depth <= 64 else "block"

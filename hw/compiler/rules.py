"""The structural rules of the gateware, in one place: the compiler's performance and resource
models (:mod:`xnorflow.hw.compiler`) and the blocks that follow them (:mod:`xnorflow.hw.blocks`)
both read them from here, so a block's latency and its op's prediction cannot drift apart.

Each rule is a pure function of a block's parameters: the pipeline depth of the reduction trees,
where the memories of a matrix-vector-threshold unit live, how its pipeline takes backpressure,
and where the serial bridge keeps its frame buffer, the window generator its line buffer.
"""

from xnorflow.model import conv_output_size

__all__ = ["BRIDGE_BUFFER_STYLES", "BUFFER_LOGIC_MAX_BITS", "BUFFER_STYLES",
           "CREDIT_MIN_LANE_BITS", "MVTU_LATENCY_CONSTANT", "PIPELINE_STYLES", "POPCOUNT_GROUP",
           "THRESHOLD_BRAM_MIN_WORDS", "bridge_buffer_style", "buffer_style",
           "check_levels_per_stage", "complement_latency", "output_depth", "pair_replicas",
           "pairs_shared",
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
    ``ceil(lanes / 2)`` leaves, ``2 + tree_latency(ceil(lanes / 2), levels_per_stage)``, plus 1
    for the replicas' register when there are several (:func:`pair_replicas`); otherwise
    ``tree_latency(lanes, levels_per_stage)``."""
    if pairs_shared(lanes, trees):
        replicated = pair_replicas(lanes, trees) > 1
        return 2 + replicated + tree_latency(-(-lanes // 2), levels_per_stage)
    return tree_latency(lanes, levels_per_stage)


#: Complement-sum trees served by one copy of the shared lane-pair values (see
#: :func:`pair_replicas`).
PAIR_REPLICA_TREES = 16


def pair_replicas(lanes, trees):
    """Registered copies of the shared lane-pair values of ``trees`` complement-sum trees: one per
    group of up to :data:`PAIR_REPLICA_TREES` trees when there are more (each copy placed near
    its group; one copy drove all 128 trees of an SFC first layer across the die, 14 ns of
    routing), 1 otherwise, 0 without pairs."""
    if not pairs_shared(lanes, trees):
        return 0
    return -(-trees // PAIR_REPLICA_TREES) if trees > PAIR_REPLICA_TREES else 1


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


# --- The sliding-window generator and the bit max-pool (xnorflow.hw.blocks.window, .pool) ------

__all__ += ["WINDOW_BUFFER_STYLES", "pool_cycles_per_frame", "pool_latency",
            "window_bank_words", "window_buffer_style", "window_columns",
            "window_cycles_per_frame", "window_in_lanes", "window_latency", "window_output_size",
            "window_rows", "window_simd_choices", "window_timeline"]

#: The ``buffer`` choices of :class:`SlidingWindow` (None: :func:`window_buffer_style`).
WINDOW_BUFFER_STYLES = (None, "block", "logic", "distributed")


#: Output rows (or columns) of a convolution (:func:`xnorflow.model.conv_output_size`).
window_output_size = conv_output_size


def window_rows(kernel, stride):
    """Rows of ``W*C`` elements in the line buffer of a :class:`SlidingWindow`: ``K + S``, the
    ``K`` rows that one output row reads and the ``S`` rows that the input writes meanwhile."""
    return kernel + stride


def window_columns(channels, simd):
    """Kernel columns per output beat of a :class:`SlidingWindow`: ``m = SIMD/C`` when SIMD is a
    multiple ``m > 1`` of the channels C (a beat then carries ``m`` consecutive kernel columns of
    one kernel row, all channels each), else 1 (SIMD divides C: a beat is part of one column)."""
    return simd // channels if simd > channels and simd % channels == 0 else 1


def window_in_lanes(channels, simd):
    """Elements per input beat of a :class:`SlidingWindow`: SIMD when SIMD divides C, else (SIMD
    a multiple ``m*C`` of C) C, one pixel per beat."""
    return channels if window_columns(channels, simd) > 1 else simd


def window_simd_choices(channels, kernel):
    """The SIMD values a convolution over ``channels`` input channels and a ``kernel x kernel``
    kernel accepts, ascending: every divisor of C, and ``m*C`` for every ``m > 1`` dividing
    K."""
    divisors = [d for d in range(1, channels + 1) if channels % d == 0]
    return divisors + [m * channels for m in range(2, kernel + 1) if kernel % m == 0]


def window_bank_words(width, channels, simd):
    """Words per row of each of the ``m`` (:func:`window_columns`) banks of a
    :class:`SlidingWindow`'s line buffer, one word per input beat: the pixels of column ``x``
    go to bank ``x mod m``, so ``ceil(W/m) * C/SIMD_in`` (``W*C/SIMD`` for ``m = 1``)."""
    m = window_columns(channels, simd)
    return -(-width // m) * (channels // window_in_lanes(channels, simd))


def window_buffer_style(rows, row_beats, width):
    """Where the line buffer of ``rows x row_beats`` words of ``width`` bits lives: ``"logic"``
    up to :data:`BUFFER_LOGIC_MAX_BITS` bits (as the input buffer of an MVTU), else ``"block"``
    RAM."""
    return "logic" if rows * row_beats * width <= BUFFER_LOGIC_MAX_BITS else "block"


def _window_need(oy, h, kernel, stride, padding):
    """Input rows of its frame that output row ``oy`` waits for: up to its lowest row,
    ``min(H, oy*S - P + K)``."""
    return min(h, oy * stride - padding + kernel)


def window_timeline(in_shape, kernel, stride, padding, simd, frames):
    """The cycle of the first output beat of each of ``frames`` frames of a
    :class:`SlidingWindow` whose source is always valid and whose sink is always ready, counted
    from the first input beat's handshake (cycle 0).

    The block works row by row. Input row ``x`` (counted over all frames) goes into row slot
    ``x mod (K + S)`` and starts once row ``x - 1`` is complete and its slot is free; its
    ``W*C/SIMD_in`` beats (:func:`window_in_lanes`) take one cycle each. Output row ``j``
    (``OW*K*K*C/SIMD`` beats, one per cycle) starts in the cycle after its last needed input
    row (:func:`_window_need`) is complete and after output row ``j - 1`` has issued its last
    beat; its first beat is valid one cycle later. When it has issued its last beat, the rows
    above the next output row's first row (all rows of the frame, after the frame's last output
    row) are free from the next cycle.
    """
    h, w, c = in_shape
    oh = window_output_size(h, kernel, stride, padding)
    ow = window_output_size(w, kernel, stride, padding)
    row_in = w * c // window_in_lanes(c, simd)
    row_out = ow * kernel * kernel * c // simd
    rows = window_rows(kernel, stride)
    in_end = []          # cycle of the last beat of each input row
    releases = []        # (rows freed, counted over all frames; cycle from which they are free)
    out_last = -1
    firsts = []
    x = 0
    for f in range(frames):
        for oy in range(oh):
            need = f * h + _window_need(oy, h, kernel, stride, padding)
            while x < need:  # write input rows up to the ones this output row needs
                # its slot is free from the first release of the row that was there before
                free_from = 0 if x < rows else next(
                    cycle for freed, cycle in releases if freed > x - rows)
                start = max(in_end[-1] + 1 if in_end else 0, free_from)
                in_end.append(start + row_in - 1)
                x += 1
            start = max(out_last + 1, in_end[need - 1] + 1)
            if oy == 0:
                firsts.append(start + 1)
            out_last = start + row_out - 1
            freed = (f + 1) * h if oy == oh - 1 else f * h + max(0, (oy + 1) * stride - padding)
            releases.append((freed, out_last + 1))
    return firsts


def window_cycles_per_frame(in_shape, kernel, stride, padding, simd):
    """Initiation interval of a :class:`SlidingWindow` in cycles per frame: frames back to back,
    source always valid, sink always ready, the steady-state distance between the first output
    beats of consecutive frames (:func:`window_timeline`). It is at least ``max(H*W*C/SIMD_in,
    OH*OW*K*K*C/SIMD)`` (``SIMD_in``: :func:`window_in_lanes`), equal to it when ``P = K // 2 >
    0`` or ``K <= S``, and otherwise more by at most ``(K - S + (H - K) mod S) * W*C/SIMD_in``
    (the next frame's first rows wait for the previous frame's last output row to free its
    rows)."""
    firsts = window_timeline(in_shape, kernel, stride, padding, simd, 4)
    return firsts[-1] - firsts[-2]


def window_latency(in_shape, kernel, padding, simd):
    """Cycles from the handshake of a frame's first input beat to its first output beat being
    valid (block idle, input back to back): the first output row waits for the input's first
    ``min(H, K - P)`` rows, then its first beat takes one cycle to issue and one to be read,
    ``min(H, K - P) * W*C/SIMD_in + 1`` (``SIMD_in``: :func:`window_in_lanes`)."""
    h, w, c = in_shape
    return min(h, kernel - padding) * w * c // window_in_lanes(c, simd) + 1


def pool_cycles_per_frame(in_shape, simd):
    """Initiation interval of a :class:`BitMaxPool` in cycles per frame: one input beat per
    cycle, ``H*W*C/SIMD``."""
    h, w, c = in_shape
    return h * w * c // simd


def pool_latency(in_shape, kernel, simd):
    """Cycles from the handshake of a frame's first input beat to its first output beat being
    valid (input back to back): that beat is complete with input beat
    ``((k-1)*W + k-1) * C/SIMD`` and valid one cycle after it, ``((k-1)*(W+1)) * C/SIMD + 1``."""
    h, w, c = in_shape
    return (kernel - 1) * (w + 1) * c // simd + 1

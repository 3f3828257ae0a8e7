"""The matrix-vector-threshold unit (MVTU): one dense layer of a binarized network.

The integer semantics are those of docs/semantics.md (section 3) and the stream packing that of
its section 4; :class:`MVTU` documents its ports, timing and backpressure behaviour.
"""

from __future__ import annotations

import numpy as np
from amaranth.hdl import Array, Cat, Const, Module, Mux, Shape, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from xnorflow.hw.blocks.popcount import AddSubTree, ComplementSumTrees, Popcount
from xnorflow.hw.blocks.registry import implements
from xnorflow.hw.compiler.ops.dense import DenseOp
from xnorflow.hw.compiler.rules import (
    BUFFER_LOGIC_MAX_BITS,
    BUFFER_STYLES,
    CREDIT_MIN_LANE_BITS,
    MVTU_LATENCY_CONSTANT,
    PIPELINE_STYLES,
    THRESHOLD_BRAM_MIN_WORDS,
    buffer_style,
    complement_latency,
    output_depth,
    pairs_shared,
    pipeline_style,
    popcount_latency,
    threshold_style,
    tree_latency,
)
from xnorflow.model import accumulator_range

__all__ = ["BUFFER_LOGIC_MAX_BITS", "BUFFER_STYLES", "CREDIT_MIN_LANE_BITS", "MVTU",
           "PIPELINE_STYLES", "THRESHOLD_BRAM_MIN_WORDS", "buffer_style", "output_depth",
           "pipeline_style", "threshold_style"]

#: Largest value of an 8-bit input lane (a pixel).
_PIXEL_MAX = 255

#: Address bits of a logic weight ROM read in one stage (one LUT4 per bit); a deeper ROM is
#: split across two (see :meth:`MVTU._weight_word`).
_LUT_ROM_DIRECT_BITS = 4

def _is_int(value):
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _load(m, en, register, value):
    """``register`` takes ``value`` at every clock edge, or only while ``en`` is 1 (``en`` None:
    a register of a free-running pipeline)."""
    if en is None:
        m.d.sync += register.eq(value)
    else:
        with m.If(en):
            m.d.sync += register.eq(value)


def _delay(m, values, en, prefix):
    """The ``(valid, first, last, fold)`` control of the next pipeline stage: registered under
    ``en`` (see :func:`_load`; constants pass through unregistered). Only ``valid`` is reset:
    the others are data."""
    delayed = []
    for name, value in zip(("valid", "first", "last", "fold"), values, strict=True):
        if isinstance(value, Const):
            delayed.append(value)
            continue
        register = Signal.like(value, name=f"{prefix}_{name}", reset_less=name != "valid")
        _load(m, en, register, value)
        delayed.append(register)
    return tuple(delayed)


def _bits_to_int(bits):
    """An integer whose bit ``l`` is ``bits[l]`` (LSB first)."""
    return sum(1 << index for index, bit in enumerate(bits) if bit)


@implements(DenseOp)
class MVTU(wiring.Component):
    """Matrix-vector-threshold unit for one dense layer of ``N`` inputs and ``M`` outputs.

    Computes, per frame, ``acc_i`` for each output channel ``i`` (docs/semantics.md section 3.1:
    the popcount of ``XNOR(w_i, a)`` for binary input, ``sum_j s_ij * x_j`` for 8-bit input),
    then either the threshold bit ``y_i`` (section 3.2) or, for a score layer, ``acc_i`` itself
    (section 3.3).

    ``PE`` processing elements each reduce ``SIMD`` lanes per cycle. PE ``p`` computes output
    channels ``f*PE + p`` for the folds ``f = 0 ... NF-1``, ``NF = M / PE``; each channel takes
    ``SF = N / SIMD`` cycles.

    Parameters
    ----------
    weights : array of bool or integer 0/1, shape (M, N)
        ``weights[i, j]`` is ``w_ij`` (1 means +1, 0 means -1).
    thresholds : integer array of shape (M,), or None
        ``T_i`` per channel; ``None`` makes a score (last) layer. Each must lie in the range that
        docs/semantics.md section 3.2 allows for its direction.
    directions : integer array of shape (M,) of +1/-1, or None
        ``d_i`` per channel; must be ``None`` exactly when ``thresholds`` is.
    input_bits : 1 or 8
        1: binary activations (``acc = popcount(XNOR)``), 8: unsigned 8-bit pixels
        (``acc = sum of +-x``).
    pe : int
        Processing elements; must divide ``M``.
    simd : int
        Lanes per processing element; must divide ``N``.
    storage : "bram" or "lut"
        ``"bram"``: the weights live in :class:`amaranth.lib.memory.Memory` ROMs, one per PE of
        ``NF*SF`` words of ``SIMD`` bits, word ``f*SF + k`` holding
        ``w[f*PE + p, k*SIMD ... k*SIMD + SIMD - 1]`` LSB first (see :meth:`weight_words`),
        marked ``ram_style = "block"`` so that Yosys maps them to block RAM even when small.
        ``"lut"``: the same words as ROMs marked ``ram_style = "logic"`` (constant logic). Both
        read with the same registered latency (weights: the read register and one more register,
        so that a block RAM's slow output never drives logic). The per-PE thresholds (``NF``
        words) are ROMs placed by :func:`threshold_style`.
    buffer : None, "block", "logic" or "distributed"
        Where the ``2*SF x SIMD*input_bits`` input buffer lives (its ``ram_style``): ``None``
        (default) chooses by :func:`buffer_style`; ``"distributed"`` (LUT RAM) exists on ECP5
        only (Yosys finds no mapping for it on iCE40).
    levels_per_stage : int
        Adder levels between pipeline registers of the popcount / add-subtract tree (default 2;
        see :mod:`xnorflow.hw.blocks.popcount` for the popcount's first stage).
    pipeline : None, "enable" or "credit"
        How the compute pipeline takes backpressure (see Backpressure): ``None`` (default)
        chooses by :func:`pipeline_style`.

    Ports
    -----
    i_stream : In(stream.Signature(SIMD * input_bits))
        ``SF`` beats per frame; beat ``k`` holds elements ``k*SIMD ... k*SIMD + SIMD - 1``,
        element ``k*SIMD + l`` at bits ``l*input_bits ...`` (LSB first).
    o_stream : Out(stream.Signature(...))
        ``NF`` beats per frame; beat ``f`` holds channels ``f*PE ... f*PE + PE - 1``. For a
        threshold layer the payload is ``unsigned(PE)``, channel ``f*PE + p`` at bit ``p``. For a
        score layer it is ``data.ArrayLayout(score_shape, PE)``, element ``p`` the score of channel
        ``f*PE + p``; :attr:`score_shape` is ``unsigned(ceil(log2(N+1)))`` for binary input and a
        signed shape holding ``[-255*N, 255*N]`` for 8-bit input.

    Timing
    ------
    Initiation interval (:attr:`ii`): ``NF * SF`` cycles per frame. The input vector is kept in a
    buffer of two frames: the first fold consumes chunks as they arrive (one cycle behind the
    input handshake), the later folds re-read the buffer, and the buffer accepts the next frame
    meanwhile, so with input always valid and output always ready the output has no bubbles
    between frames (one beat every ``SF`` cycles). In general the buffer is a ping-pong memory
    of two halves of ``SF`` chunks. When a frame is one chunk (``SF = 1``) and ``NF >= 3``, it is
    two registers instead (no memory, no read multiplexer): one takes the input beat and hands it
    to the second when the frame's first fold enters the pipeline, which frees it for the next
    frame.

    Latency (:attr:`latency`): ``4 + P`` cycles, where ``P`` (:attr:`tree_latency`) is the
    pipeline depth of the reduction tree: for binary input the popcount's
    (:func:`~xnorflow.hw.blocks.popcount.popcount_latency`), for 8-bit input
    ``ceil(ceil(log2(SIMD)) / levels_per_stage)`` (for an 8-bit threshold layer of several PEs,
    whose lane pairs take two registers first: ``2 + ceil(ceil(log2(ceil(SIMD / 2))) /
    levels_per_stage)``, one more with over 16 PEs, for the pair values' replicas). It is
    counted from the cycle in which the last input beat of a frame is accepted to the cycle in
    which that frame's first output beat is valid, for a unit that is not busy with an earlier
    frame and whose output is ready. With back-to-back input to an idle unit the last output beat
    of the frame is valid ``ii - 1 + latency`` cycles after its first input beat is accepted.

    Backpressure
    ------------
    ``i_stream.ready`` depends only on internal state: it is 1 while the buffer has room for
    the chunk (the ping-pong half being filled, or the first of the two registers). Chunks are
    written to the buffer independently of the compute pipeline, so input is accepted while the
    output is stalled until the buffer is full (with the two registers: until the second frame
    waits for the first to enter the pipeline). The compute pipeline (memory read registers, the
    registers after them, reduction tree, accumulators) takes backpressure in one of two ways
    (:attr:`pipeline`):

    * ``"credit"``: it runs free. Its registers have no clock enable and move every cycle, a
      valid bit travelling with the data; backpressure stops only the reader at the pipeline's
      entry, by credits. The results leave the pipeline into an output queue of
      :attr:`output_depth` beats (the output register and the registers behind it), and a
      fold's last chunk enters the pipeline only while fewer results than that are issued and
      not yet taken downstream, so the queue always has room for what the pipeline delivers.
      The depth covers the pipeline's round trip, so with the output ready the unit never waits
      for credits. No enable net fans out to the datapath's registers (thousands of them in a
      large unit).
    * ``"enable"``: it advances as one, under a clock enable that is a register,
      ``~skid_valid``. A result finished while the output register holds a beat that is not
      accepted goes into one skid register, which stops the pipeline from the next cycle until
      the output register has taken it. No queue: the cheaper form for a small unit.

    Either way nothing is lost, duplicated or reordered, no combinational path runs from
    ``o_stream.ready`` into the pipeline, ``o_stream.valid`` is a register and does not wait on
    ``o_stream.ready``, and the payload holds while ``valid & ~ready``.
    """

    @classmethod
    def from_op(cls, op: DenseOp) -> MVTU:
        """The block of a :class:`~xnorflow.hw.compiler.ops.dense.DenseOp`."""
        return cls(op.weights, op.thresholds, op.directions, input_bits=op.input_bits, pe=op.pe,
                   simd=op.simd, storage=op.storage, buffer=op.buffer,
                   levels_per_stage=op.levels_per_stage)

    def __init__(self, weights, thresholds, directions, *, input_bits, pe, simd, storage="bram",
                 buffer=None, levels_per_stage=2, pipeline=None):
        weights = np.asarray(weights)
        if weights.ndim != 2 or 0 in weights.shape:
            raise ValueError(
                f"weights must be a non-empty 2-D array of shape (M, N), not of shape "
                f"{weights.shape}")
        if weights.dtype != np.bool_ and not np.issubdtype(weights.dtype, np.integer):
            raise ValueError(f"weights must be bool or integer, not {weights.dtype}")
        if not np.all((weights == 0) | (weights == 1)):
            raise ValueError("weights must hold only 0 and 1 (1 means +1)")
        m, n = weights.shape

        if not _is_int(input_bits) or input_bits not in (1, 8):
            raise ValueError(f"input_bits ({input_bits!r}) must be 1 or 8")
        if not _is_int(pe) or pe < 1:
            raise ValueError(f"PE ({pe!r}) must be a positive integer")
        if m % pe:
            raise ValueError(f"PE ({pe}) must divide the output channels ({m})")
        if not _is_int(simd) or simd < 1:
            raise ValueError(f"SIMD ({simd!r}) must be a positive integer")
        if n % simd:
            raise ValueError(f"SIMD ({simd}) must divide the input channels ({n})")
        if storage not in ("bram", "lut"):
            raise ValueError(f"storage ({storage!r}) must be 'bram' or 'lut'")
        if buffer not in BUFFER_STYLES:
            raise ValueError(f"buffer ({buffer!r}) must be None, 'block', 'logic' or "
                             "'distributed'")
        if not _is_int(levels_per_stage) or levels_per_stage < 1:
            raise ValueError(
                f"levels_per_stage ({levels_per_stage!r}) must be a positive integer")
        if pipeline not in PIPELINE_STYLES:
            raise ValueError(f"pipeline ({pipeline!r}) must be None, 'enable' or 'credit'")

        acc_lo, acc_hi = accumulator_range(input_bits, n)

        if (thresholds is None) != (directions is None):
            raise ValueError(
                "thresholds and directions must both be given (threshold layer) or both be None "
                "(score layer)")
        if thresholds is not None:
            thresholds = np.asarray(thresholds)
            directions = np.asarray(directions)
            for name, array in (("thresholds", thresholds), ("directions", directions)):
                if array.shape != (m,):
                    raise ValueError(f"{name} must have shape ({m},), not {array.shape}")
                if not np.issubdtype(array.dtype, np.integer):
                    raise ValueError(f"{name} must be integers, not {array.dtype}")
            if not np.all((directions == 1) | (directions == -1)):
                raise ValueError("directions must hold only +1 and -1")
            for i in range(m):
                t, d = int(thresholds[i]), int(directions[i])
                lo, hi = (acc_lo, acc_hi + 1) if d == 1 else (acc_lo - 1, acc_hi)
                if not lo <= t <= hi:
                    raise ValueError(
                        f"threshold of channel {i} ({t}) is outside [{lo}, {hi}], the range "
                        f"allowed for direction {d:+d}")
            thresholds = thresholds.astype(np.int64)
            directions = directions.astype(np.int64)
            thresholds.flags.writeable = False
            directions.flags.writeable = False

        weights = weights.astype(np.bool_)
        weights.flags.writeable = False
        self._weights = weights
        self._thresholds = thresholds
        self._directions = directions
        self._m, self._n = m, n
        self._input_bits = int(input_bits)
        self._pe = int(pe)
        self._simd = int(simd)
        self._storage = storage
        self._buffer = buffer
        self._levels_per_stage = int(levels_per_stage)
        self._pipeline = pipeline or pipeline_style(self._pe, self._simd, self._input_bits)
        self._acc_range = (acc_lo, acc_hi)
        # 8-bit threshold layers sum complemented pixels, in lane pairs shared by the PEs when
        # there are several (ComplementSumTrees): the hardware's accumulator is u = acc + 255 * Z_i
        # + P_i, Z_i the -1 weights of channel i and P_i (0 unpaired) its pairs whose first weight
        # is -1, and the thresholds move by the same constant (see _hardware_thresholds).
        self._complement = input_bits == 8 and thresholds is not None
        self._paired = self._complement and pairs_shared(simd, pe)
        pairs = (n // simd) * (simd // 2) if self._paired else 0
        self._cmp_range = (0, _PIXEL_MAX * n + pairs) if self._complement else (acc_lo, acc_hi)
        # The input buffer is two plain registers (no read multiplexer) when a frame is a single
        # chunk that at least three folds re-read; see the class docstring (Timing).
        self._register_buffer = n == simd and m // pe >= 3
        self._acc_shape = Shape.cast(range(acc_lo, acc_hi + 1))

        if thresholds is None:
            o_shape = data.ArrayLayout(self._acc_shape, self._pe)
        else:
            o_shape = self._pe
        super().__init__({
            "i_stream": In(stream.Signature(self._simd * self._input_bits)),
            "o_stream": Out(stream.Signature(o_shape)),
        })

    # Parameters (read-only).

    @property
    def weights(self):
        """The weights, a read-only bool array of shape (M, N)."""
        return self._weights

    @property
    def thresholds(self):
        """The thresholds, a read-only int64 array of shape (M,), or None for a score layer."""
        return self._thresholds

    @property
    def directions(self):
        """The directions (+1/-1), a read-only int64 array of shape (M,), or None."""
        return self._directions

    @property
    def in_channels(self):
        """N, the number of inputs."""
        return self._n

    @property
    def out_channels(self):
        """M, the number of outputs."""
        return self._m

    @property
    def input_bits(self):
        return self._input_bits

    @property
    def pe(self):
        return self._pe

    @property
    def simd(self):
        return self._simd

    @property
    def storage(self):
        return self._storage

    @property
    def levels_per_stage(self):
        return self._levels_per_stage

    @property
    def pipeline(self):
        """``"enable"`` or ``"credit"``: how the pipeline takes backpressure (see
        Backpressure; the ``pipeline`` parameter, by default :func:`pipeline_style`)."""
        return self._pipeline

    @property
    def is_score_layer(self):
        """True when the unit outputs scores (no thresholds)."""
        return self._thresholds is None

    # Derived quantities.

    @property
    def neuron_fold(self):
        """NF = M / PE, the output beats per frame."""
        return self._m // self._pe

    @property
    def synapse_fold(self):
        """SF = N / SIMD, the input beats per frame."""
        return self._n // self._simd

    @property
    def acc_range(self):
        """``(lo, hi)``, the range of the accumulator (docs/semantics.md section 3.1)."""
        return self._acc_range

    @property
    def score_shape(self):
        """Shape of one score of a score layer (the accumulator's shape); None otherwise."""
        return self._acc_shape if self.is_score_layer else None

    @property
    def tree_latency(self):
        """P, the pipeline depth of the popcount / add-subtract tree
        (:func:`~xnorflow.hw.blocks.popcount.popcount_latency` for binary input,
        :func:`~xnorflow.hw.blocks.popcount.complement_latency` for an 8-bit threshold layer)."""
        if self._complement:
            return complement_latency(self._simd, self._pe, self._levels_per_stage)
        if self._input_bits == 1:
            return popcount_latency(self._simd, self._levels_per_stage)
        return tree_latency(self._simd, self._levels_per_stage)

    @property
    def output_depth(self):
        """Beats the output queue holds, the output register included
        (:func:`output_depth`)."""
        return output_depth(self.tree_latency, self.synapse_fold)

    @property
    def ii(self):
        """Initiation interval in cycles per frame: ``NF * SF``."""
        return self.neuron_fold * self.synapse_fold

    @property
    def latency(self):
        """``4 + tree_latency``: cycles from the last input beat of a frame being accepted to the
        frame's first output beat being valid (unit idle, output ready)."""
        return MVTU_LATENCY_CONSTANT + self.tree_latency

    # Memory images.

    def weight_words(self, pe):
        """The ``NF*SF`` weight words of processing element ``pe``, word ``f*SF + k`` holding
        ``w[f*PE + pe, k*SIMD + l]`` at bit ``l``."""
        nf, sf, simd = self.neuron_fold, self.synapse_fold, self._simd
        return [_bits_to_int(self._weights[f * self._pe + pe, k * simd:(k + 1) * simd])
                for f in range(nf) for k in range(sf)]

    def _hardware_thresholds(self):
        """``(T, direction)`` per channel on the accumulator the hardware computes: for an 8-bit
        threshold layer ``u = acc + 255*Z + P`` (``Z``: the channel's -1 weights, ``P``: its lane
        pairs whose first weight is -1, see
        :class:`~xnorflow.hw.blocks.popcount.ComplementSumTrees`),
        so ``acc >= T`` is ``u >= T + 255*Z + P`` (``<=`` alike), clamped to the ends of ``u``'s
        range where the comparison is constant anyway; else the thresholds as they are."""
        t = self._thresholds.astype(np.int64)
        d = self._directions
        if not self._complement:
            return t, d
        zeros = (~self._weights).sum(axis=1).astype(np.int64)
        t = t + _PIXEL_MAX * zeros
        if self._paired:
            chunks = self._weights.reshape(self._m, self._n // self._simd, self._simd)
            t = t + (~chunks[:, :, 0:2 * (self._simd // 2):2]).sum(axis=(1, 2)).astype(np.int64)
        top = self._cmp_range[1]
        t = np.where(d == 1, np.clip(t, 0, top + 1), np.clip(t, -1, top))
        return t, d

    def _threshold_words(self, pe, width):
        """Per fold: ``T' - 1`` (``width`` bits, two's complement) and, above it, the invert bit,
        where ``y = (acc >= T') ^ invert``: ``T' = T`` for direction +1, and ``T' = T + 1``,
        invert for direction -1 (``acc <= T`` is ``not acc >= T + 1``). The unit computes
        ``acc >= T'`` as the sign of ``(T' - 1) - acc``."""
        words = []
        thresholds, directions = self._hardware_thresholds()
        for f in range(self.neuron_fold):
            channel = f * self._pe + pe
            t, d = int(thresholds[channel]), int(directions[channel])
            adjusted, invert = (t, 0) if d == 1 else (t + 1, 1)
            words.append(((adjusted - 1) & ((1 << width) - 1)) | (invert << width))
        return words

    def _rom(self, m, name, shape, words, addr, en, *, style):
        """A registered read of ``words[addr]`` under ``en`` (None: every cycle): a Memory ROM
        that Yosys maps to
        block RAM (``style = "block"``) or to logic (``"logic"``: a multiplexer tree of constants
        and a register), never left to the tool's own choice (see :func:`threshold_style`)."""
        if len(words) == 1:
            return Const(words[0], shape)
        memory = Memory(shape=shape, depth=len(words), init=words, attrs={"ram_style": style})
        m.submodules[name] = memory
        port = memory.read_port()
        m.d.comb += port.addr.eq(addr)
        if en is not None:
            m.d.comb += port.en.eq(en)
        return port.data

    def _weight_word(self, m, p, addr, en):
        """The weight word at ``addr`` (stage 0) two enabled cycles later (stage 2).

        Block RAM: the memory's read register, then a register in the fabric, so that the block
        RAM's slow clock-to-output path (about 6 ns on an ECP5 of speed grade 6) ends in a
        flip-flop instead of running into the XNOR and the tree. Logic (``"lut"``): up to 16
        words, the address is registered first and the logic ROM's read register is the second
        stage; deeper, the ROM's multiplexer tree is split between the two stages.
        """
        words = self.weight_words(p)
        name = f"pe{p}_weights"
        if self._storage == "bram":
            data = self._rom(m, name, self._simd, words, addr, en, style="block")
            if len(words) == 1:
                return data
            word = Signal(self._simd, name=f"pe{p}_weight_word", reset_less=True)
            _load(m, en, word, data)
            return word
        if len(words) == 1:
            return Const(words[0], self._simd)
        bits = (len(words) - 1).bit_length()
        if bits <= _LUT_ROM_DIRECT_BITS:
            addr_s1 = Signal.like(addr, name=f"pe{p}_weight_addr_s1", reset_less=True)
            _load(m, en, addr_s1, addr)
            return self._rom(m, name, self._simd, words, addr_s1, en, style="logic")
        # A deep logic ROM is split across the two stages (the technique: a pipelined
        # multiplexer tree): stage 1 reads every sub-ROM of 2**low words at the low address
        # bits into its read register, beside a register of the high bits; stage 2 selects
        # among the sub-ROMs into the word register. Each stage has about half the tree's
        # logic levels, where an unsplit ROM has them all between two registers (on a
        # 640-word ROM, 8 levels of LUT4 on an iCE40).
        low = min((bits + _LUT_ROM_DIRECT_BITS + 1) // 2, bits - 1)
        subs = [self._rom(m, f"{name}{j}", self._simd, words[j << low:(j + 1) << low],
                          addr[:low], en, style="logic")
                for j in range(-(-len(words) >> low))]
        high = Signal(bits - low, name=f"pe{p}_weight_high_s1", reset_less=True)
        _load(m, en, high, addr[low:bits])
        word = Signal(self._simd, name=f"pe{p}_weight_word", reset_less=True)
        _load(m, en, word, Array(subs)[high])
        return word

    def _output_queue(self, m, result, produce, depth):
        """The output queue: ``o_stream``'s registers at its head and ``depth - 1`` registers
        behind them, in a circle. A result produced while the head is free and the rest empty
        goes straight to the head (one register, as the latency counts); otherwise it joins the
        rest, which hands its oldest to the head as the head frees. The credits guarantee room
        (nothing here checks it)."""
        o_stream = self.o_stream
        slots = depth - 1
        store = [Signal.like(result, name=f"queue{i}", reset_less=True) for i in range(slots)]
        head = Signal(range(max(2, slots)), name="queue_head")
        tail = Signal(range(max(2, slots)), name="queue_tail")
        count = Signal(range(slots + 1), name="queue_count")
        out_free = Signal()
        m.d.comb += out_free.eq(~o_stream.valid | o_stream.ready)
        empty = count == 0
        pop = Signal()
        push = Signal()
        m.d.comb += [
            pop.eq(out_free & ~empty),
            push.eq(produce & ~(out_free & empty)),
        ]
        with m.If(pop):
            if slots == 1:
                m.d.sync += o_stream.payload.eq(store[0])
            else:
                with m.Switch(head):
                    for i in range(slots):
                        with m.Case(i):
                            m.d.sync += o_stream.payload.eq(store[i])
                m.d.sync += head.eq(Mux(head == slots - 1, 0, head + 1))
            m.d.sync += o_stream.valid.eq(1)
        with m.Elif(out_free):
            m.d.sync += [o_stream.payload.eq(result), o_stream.valid.eq(produce)]
        with m.If(push):
            if slots == 1:
                m.d.sync += store[0].eq(result)
            else:
                with m.Switch(tail):
                    for i in range(slots):
                        with m.Case(i):
                            m.d.sync += store[i].eq(result)
                m.d.sync += tail.eq(Mux(tail == slots - 1, 0, tail + 1))
        with m.If(push & ~pop):
            m.d.sync += count.eq(count + 1)
        with m.Elif(pop & ~push):
            m.d.sync += count.eq(count - 1)

    def elaborate(self, platform):
        m = Module()
        nf, sf, pe = self.neuron_fold, self.synapse_fold, self._pe
        chunk_width = self._simd * self._input_bits
        i_stream, o_stream = self.i_stream, self.o_stream

        credits = self._pipeline == "credit"
        if credits:
            # Credits (see Backpressure): results issued (their fold's last chunk entered the
            # pipeline) and not yet taken from the output queue. The pipeline runs free.
            depth = self.output_depth
            pending = Signal(range(depth + 1))
            credit = Signal()
            m.d.comb += credit.eq(pending != depth)
            en = None
            advance = Const(1)
        else:
            # The pipeline's clock enable, a register (see Backpressure).
            skid_valid = Signal()
            en = advance = Signal()
            m.d.comb += advance.eq(~skid_valid)
            credit = Const(1)

        # Stage 0: the reader's position: chunk k of fold f (of the frame in buffer half r_half).
        k = Signal(range(sf), name="chunk")
        f = Signal(range(nf), name="fold")
        w_addr = Signal(range(nf * sf), name="weight_addr")
        k_last = Signal()
        f_last = Signal()
        can_read = Signal()
        issue = Signal()
        m.d.comb += [
            k_last.eq(k == sf - 1),
            f_last.eq(f == nf - 1),
            issue.eq(advance & can_read & (credit | ~k_last)),
        ]
        if sf == 1:
            m.d.comb += w_addr.eq(f)  # one chunk per fold: the weight word is the fold's
        else:
            with m.If(issue):
                m.d.sync += w_addr.eq(Mux(k_last & f_last, 0, w_addr + 1))
        with m.If(issue):
            with m.If(k_last):
                m.d.sync += k.eq(0)
                with m.If(f_last):
                    m.d.sync += f.eq(0)
                with m.Else():
                    m.d.sync += f.eq(f + 1)
            with m.Else():
                m.d.sync += k.eq(k + 1)

        # Stage 1: the memories' read registers. The control of a stage is (valid, first chunk
        # of its fold, last chunk of its fold, fold); with one chunk per fold first and last are
        # constant 1 and need no registers.
        if sf == 1:
            s1_control = _delay(m, (issue, Const(1), Const(1), f), en, "s1")
        else:
            s1_control = _delay(m, (issue, k == 0, k_last, f), en, "s1")
        s1_valid, s1_fold = s1_control[0], s1_control[3]

        if self._register_buffer:
            # SF = 1, NF >= 3: the buffer is two registers and needs no multiplexer. `held` takes
            # the input beat; `current` takes `held` when the frame's first fold leaves stage 1,
            # and is the chunk of stage 2 for all NF folds of the frame.
            held = Signal(chunk_width, name="ibuf_held", reset_less=True)
            held_full = Signal()
            current = Signal(chunk_width, name="ibuf_current", reset_less=True)
            m.d.comb += [
                i_stream.ready.eq(~held_full),
                can_read.eq(held_full | (f != 0)),
            ]
            take = Signal()
            m.d.comb += take.eq(advance & s1_valid & (s1_fold == 0))
            with m.If(i_stream.valid & i_stream.ready):
                m.d.sync += [held.eq(i_stream.payload), held_full.eq(1)]
            with m.If(take):
                m.d.sync += [current.eq(held), held_full.eq(0)]
            chunk = current
        else:
            # Ping-pong buffer of two halves of SF chunks. fill_b counts the chunks written to half
            # b; the reader may read chunk k of half b once fill_b > k and empties the half
            # (fill_b = 0) when it issues the last read of the frame's last fold.
            m.submodules.ibuf = ibuf = Memory(shape=chunk_width, depth=2 * sf, init=[],
                                              attrs={"ram_style": self._buffer
                                                     or buffer_style(sf, chunk_width)})
            ibuf_w = ibuf.write_port()
            ibuf_r = ibuf.read_port()
            fill = [Signal(range(sf + 1), name=f"fill{b}") for b in range(2)]
            w_half = Signal()
            w_fill = Signal(range(sf + 1))
            m.d.comb += w_fill.eq(Mux(w_half, fill[1], fill[0]))
            write = Signal()
            # `i_stream.ready` (the half being written is not full) is a register of its own,
            # loaded with its next value (the technique: a registered ready), so that upstream
            # logic it gates (a feeder's clock enables, hundreds of flip-flops) starts at a
            # flip-flop. full_b mirrors fill_b == SF.
            ready = Signal(init=1, name="ibuf_ready")
            full = [Signal(name=f"full{b}") for b in range(2)]
            m.d.comb += [
                i_stream.ready.eq(ready),
                write.eq(i_stream.valid & i_stream.ready),
                ibuf_w.addr.eq(Mux(w_half, sf + w_fill, w_fill)),
                ibuf_w.data.eq(i_stream.payload),
                ibuf_w.en.eq(write),
            ]
            with m.If(write):
                with m.If(w_half):
                    m.d.sync += fill[1].eq(fill[1] + 1)
                with m.Else():
                    m.d.sync += fill[0].eq(fill[0] + 1)
                with m.If(w_fill == sf - 1):
                    m.d.sync += w_half.eq(~w_half)

            r_half = Signal()
            r_fill = Signal(range(sf + 1))
            # The read address (chunk k of half r_half) is a register of its own, kept in step
            # with k and r_half: it drives every cell of the buffer (a wide LUT RAM is hundreds
            # of them), so no logic stands between it and its long routes.
            r_addr = Signal(range(2 * sf), name="ibuf_raddr")
            m.d.comb += [
                r_fill.eq(Mux(r_half, fill[1], fill[0])),
                can_read.eq(r_fill > k),
                ibuf_r.addr.eq(r_addr),
            ]
            with m.If(issue):
                with m.If(k_last & f_last):
                    m.d.sync += r_addr.eq(Mux(r_half, 0, sf))
                with m.Elif(k_last):
                    m.d.sync += r_addr.eq(Mux(r_half, sf, 0))
                with m.Else():
                    m.d.sync += r_addr.eq(r_addr + 1)
            if en is not None:
                m.d.comb += ibuf_r.en.eq(en)
            with m.If(issue & k_last & f_last):
                m.d.sync += r_half.eq(~r_half)
                with m.If(r_half):
                    m.d.sync += fill[1].eq(0)
                with m.Else():
                    m.d.sync += fill[0].eq(0)
            # A half fills with the write of its last chunk and empties when the reader clears
            # it; the cleared half is full, so no write lands in it in the same cycle.
            filled = write & (w_fill == sf - 1)
            full_next = [
                (full[b] & ~(issue & k_last & f_last & (r_half == b)))
                | (filled & (w_half == b))
                for b in range(2)
            ]
            m.d.sync += [
                full[0].eq(full_next[0]),
                full[1].eq(full_next[1]),
                ready.eq(~Mux(w_half ^ filled, full_next[1], full_next[0])),
            ]
            # Stage 2: the chunk in a register of its own (a block RAM's output is slow).
            chunk = Signal(chunk_width, name="chunk_s2", reset_less=True)
            _load(m, en, chunk, ibuf_r.data)

        # Stage 2: weight words and chunk in registers.
        stages = [s1_control]
        stages.append(_delay(m, stages[-1], en, "s2"))

        w_words = [self._weight_word(m, p, w_addr, en) for p in range(pe)]
        if self._complement:
            # One set of lane-pair sums for all PEs (see ComplementSumTrees).
            m.submodules.trees = trees = ComplementSumTrees(
                self._simd, trees=pe, lane_bits=8, levels_per_stage=self._levels_per_stage)
            m.d.comb += [trees.data.eq(chunk), trees.en.eq(advance)]
            m.d.comb += [trees.signs[p].eq(w_words[p]) for p in range(pe)]
            partials = [trees.totals[p] for p in range(pe)]
        else:
            partials = []
            for p, w_word in enumerate(w_words):
                if self._input_bits == 1:
                    xnor = Signal(self._simd, name=f"pe{p}_xnor")
                    m.d.comb += xnor.eq(~(w_word ^ chunk))
                    tree = Popcount(self._simd, levels_per_stage=self._levels_per_stage)
                    m.d.comb += [tree.data.eq(xnor), tree.en.eq(advance)]
                    partials.append(tree.count)
                else:
                    tree = AddSubTree(self._simd, lane_bits=8,
                                      levels_per_stage=self._levels_per_stage)
                    m.d.comb += [tree.data.eq(chunk), tree.signs.eq(w_word),
                                 tree.en.eq(advance)]
                    partials.append(tree.total)
                m.submodules[f"pe{p}_tree"] = tree

        # Delay the control through the tree's pipeline depth. `stages` holds the control of every
        # stage from 1 on; the last one is that of the tree's output.
        for stage in range(self.tree_latency):
            stages.append(_delay(m, stages[-1], en, f"t{stage}"))
        valid, first, last, fold = stages[-1]

        # Accumulate; a fold's last chunk makes a result (the scores, or the threshold bits),
        # which goes to the output queue (see _output_queue).
        result = Signal.like(o_stream.payload, name="result")
        produce = Signal()
        m.d.comb += produce.eq(advance & valid & last)
        if credits:
            self._output_queue(m, result, produce, depth)
            taken = o_stream.valid & o_stream.ready
            with m.If((issue & k_last) & ~taken):
                m.d.sync += pending.eq(pending + 1)
            with m.Elif(~(issue & k_last) & taken):
                m.d.sync += pending.eq(pending - 1)
        else:
            # The output register, and one skid register that stops the pipeline.
            skid = Signal.like(o_stream.payload, name="skid", reset_less=True)
            out_free = Signal()
            m.d.comb += out_free.eq(~o_stream.valid | o_stream.ready)
            with m.If(skid_valid):
                with m.If(out_free):
                    m.d.sync += [o_stream.payload.eq(skid), o_stream.valid.eq(1),
                                 skid_valid.eq(0)]
            with m.Elif(produce):
                with m.If(out_free):
                    m.d.sync += [o_stream.payload.eq(result), o_stream.valid.eq(1)]
                with m.Else():
                    m.d.sync += [skid.eq(result), skid_valid.eq(1)]
            with m.Elif(out_free):
                m.d.sync += o_stream.valid.eq(0)
        if self.is_score_layer:
            for p in range(pe):
                acc = Signal(self._acc_shape, name=f"pe{p}_acc", reset_less=True)
                acc_next = Signal(self._acc_shape, name=f"pe{p}_acc_next")
                m.d.comb += [acc_next.eq(Mux(first, 0, acc) + partials[p]),
                             result[p].eq(acc_next)]
                with m.If(advance & valid):
                    m.d.sync += acc.eq(acc_next)
            return m

        # Threshold layer: rem = (T' - 1) - acc, so that acc >= T' is the sign of rem. The word of
        # the fold at the tree's output is read one stage earlier from logic; from block RAM two
        # stages earlier, and the read register is followed by a register in the fabric (a block
        # RAM's slow clock-to-output path must not run into the subtraction).
        acc_lo, acc_hi = self._cmp_range
        t_shape = Shape.cast(range(acc_lo - 1, acc_hi + 1))
        rem_shape = Shape.cast(range(acc_lo - 1 - acc_hi, acc_hi - acc_lo + 1))
        t_style = threshold_style(nf, self._storage)
        registered = t_style == "block" and nf > 1
        if not registered:
            read_fold = stages[-2][3]
        elif len(stages) >= 3:
            read_fold = stages[-3][3]
        else:
            read_fold = f  # stage 0: the fold the next issue enters (see below)
        bits = []
        for p in range(pe):
            word = self._rom(m, f"pe{p}_thresholds", t_shape.width + 1,
                             self._threshold_words(p, t_shape.width), read_fold, en,
                             style=t_style)
            if registered:
                # Read from stage 0: `f` is the fold an issue of this cycle enters with, and it
                # changes only with an issue, so the word reaches stage 2 with that issue (and
                # while the enabled pipeline waits, the read register reloads the same word).
                word_s = Signal.like(word, name=f"pe{p}_threshold_word", reset_less=True)
                _load(m, en, word_s, word)
                word = word_s
            threshold = Signal(t_shape, name=f"pe{p}_threshold")
            invert = Signal(name=f"pe{p}_invert")
            rem = Signal(rem_shape, name=f"pe{p}_rem", reset_less=True)
            rem_next = Signal(rem_shape, name=f"pe{p}_rem_next")
            bit = Signal(name=f"pe{p}_y")
            m.d.comb += [
                threshold.eq(word[:t_shape.width]),
                invert.eq(word[t_shape.width]),
                rem_next.eq(Mux(first, threshold, rem) - partials[p]),
                bit.eq(rem_next[-1] ^ invert),
            ]
            with m.If(advance & valid):
                m.d.sync += rem.eq(rem_next)
            bits.append(bit)
        m.d.comb += result.eq(Cat(*bits))
        return m

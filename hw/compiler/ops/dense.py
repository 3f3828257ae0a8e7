"""The op of a dense layer: the matrix-vector-threshold unit's integer reference, cycles,
latency and resources (the gateware: :class:`xnorflow.hw.blocks.mvtu.MVTU`)."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from amaranth.hdl import Shape

from xnorflow.hw.compiler.folding import LayerFolding
from xnorflow.hw.compiler.op import Op, Timeline
from xnorflow.hw.compiler.ops.plumbing import FifoOp
from xnorflow.hw.compiler.resources import (
    FAMILIES,
    LUT_MODEL,
    Resources,
    counter_bits,
    popcount_ff,
    tree_ff,
)
from xnorflow.hw.compiler.rules import (
    MVTU_LATENCY_CONSTANT,
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

__all__ = ["LEVELS_PER_STAGE", "DenseOp"]

#: Adder levels between pipeline registers of every reduction tree.
LEVELS_PER_STAGE = 2


@dataclass(frozen=True, eq=False)
class DenseOp(Op):
    """One dense layer as a matrix-vector-threshold unit (:class:`~xnorflow.hw.blocks.mvtu.MVTU`):
    ``in_features`` (N) inputs of ``input_bits`` bits, ``out_features`` (M) outputs, folded onto
    ``pe`` rows of ``simd`` lanes."""

    index: int
    name: str
    in_features: int
    out_features: int
    input_bits: int
    weights: np.ndarray  #: bool (M, N), read-only
    thresholds: np.ndarray | None  #: int64 (M,) or None for the score layer
    directions: np.ndarray | None  #: int64 (M,) of +1/-1 or None
    pe: int = 1
    simd: int = 1
    storage: str = "bram"
    #: Depth of the FIFO in front, as the folding asked; None: the rule of size_fifos.
    fifo_request: int | None = None
    levels_per_stage: int = LEVELS_PER_STAGE
    #: Where the input buffer lives (None: :func:`xnorflow.hw.blocks.mvtu.buffer_style`).
    buffer: str | None = None

    @property
    def buffer_style(self) -> str:
        """The input buffer's ``ram_style`` as built."""
        return self.buffer or buffer_style(self.sf, self.simd * self.input_bits)

    kind = "dense"
    layer_kind = "dense"

    @classmethod
    def from_layer(cls, index: int, layer) -> DenseOp:
        """The unfolded (PE = SIMD = 1) op of a :class:`~xnorflow.model.DenseLayer`."""
        weights = layer.weight_bits().astype(bool)
        weights.flags.writeable = False
        t = d = None
        if layer.thresholds is not None:
            t = layer.thresholds.astype(np.int64)
            d = layer.directions.astype(np.int64)
            t.flags.writeable = False
            d.flags.writeable = False
        return cls(index, layer.name, layer.in_features, layer.out_features, layer.input_bits,
                   weights, t, d)

    def folded(self, entry: LayerFolding) -> DenseOp:
        return replace(self, pe=entry.pe, simd=entry.simd, storage=entry.storage,
                       fifo_request=entry.fifo_depth, buffer=entry.buffer)

    @property
    def layer_folding(self) -> LayerFolding:
        """The folding entry this op was folded by."""
        return LayerFolding(self.pe, self.simd, self.storage, self.fifo_request, self.buffer)

    def describe(self) -> dict:
        """The layer's entry in the accelerator's manifest."""
        return {"index": self.index, "name": self.name, "in_features": self.in_features,
                "out_features": self.out_features, "input_bits": self.input_bits,
                "output": "scores" if self.is_score else "bits", "pe": self.pe,
                "simd": self.simd, "storage": self.storage, "nf": self.nf, "sf": self.sf,
                "ii": self.ii, "latency": self.latency, "in_width": self.in_width,
                "out_width": self.out_width}

    def fifo_before(self) -> FifoOp | None:
        """The FIFO the folding asked for in front (``fifo_depth``; none by default, see
        :func:`~xnorflow.hw.compiler.plan.size_fifos`), ``SIMD`` lanes wide."""
        if not self.fifo_request:
            return None
        return FifoOp(self.label, self.in_width, self.fifo_request, self.sf)

    def advance(self, t: Timeline) -> Timeline:
        """First output beat ``latency`` cycles after the last input beat, then one every ``SF``
        cycles: the last at ``first + (NF-1)*SF``."""
        first = t.last + self.latency
        return Timeline(last=first + (self.nf - 1) * self.sf, first=first, spacing=self.sf)

    @property
    def label(self) -> str:
        return f"layer{self.index}"

    @property
    def is_score(self) -> bool:
        return self.thresholds is None

    @property
    def nf(self) -> int:
        """Neuron fold M/PE: output beats per frame."""
        return self.out_features // self.pe

    @property
    def sf(self) -> int:
        """Synapse fold N/SIMD: input beats per frame."""
        return self.in_features // self.simd

    @property
    def ii(self) -> int:
        return self.nf * self.sf

    @property
    def cycles_per_frame(self) -> int:
        return self.ii

    @property
    def input_beats(self) -> int:
        """Beats of input per frame (``SF``)."""
        return self.sf

    @property
    def frame_bits(self) -> int:
        """Bits of one frame's input."""
        return self.in_features * self.input_bits

    @property
    def acc_range(self) -> tuple[int, int]:
        """Inclusive range of the accumulator (:func:`~xnorflow.model.accumulator_range`)."""
        return accumulator_range(self.input_bits, self.in_features)

    @property
    def score_shape(self) -> Shape:
        """The accumulator's shape (a score's, for the last layer)."""
        lo, hi = self.acc_range
        return Shape.cast(range(lo, hi + 1))

    @property
    def in_width(self) -> int:
        return self.simd * self.input_bits

    @property
    def out_width(self) -> int:
        return self.pe * (self.score_shape.width if self.is_score else 1)

    @property
    def paired(self) -> bool:
        """An 8-bit threshold layer whose PEs share lane pairs (PE and SIMD at least 2; see
        :class:`~xnorflow.hw.blocks.popcount.ComplementSumTrees`)."""
        return (self.input_bits == 8 and not self.is_score
                and pairs_shared(self.simd, self.pe))

    @property
    def tree_latency(self) -> int:
        """Pipeline depth of the unit's tree, by the gateware's rules: a popcount of binary input
        (:func:`~xnorflow.hw.blocks.popcount.popcount_latency`); with lane pairs, the two pair
        registers and a tree over ``ceil(SIMD / 2)`` leaves
        (:func:`~xnorflow.hw.compiler.rules.complement_latency`); else an adder tree over SIMD
        lanes,
        ``ceil(ceil(log2(SIMD)) / levels_per_stage)``."""
        if self.paired:
            return complement_latency(self.simd, self.pe, self.levels_per_stage)
        if self.input_bits == 1:
            return popcount_latency(self.simd, self.levels_per_stage)
        return tree_latency(self.simd, self.levels_per_stage)

    @property
    def latency(self) -> int:
        """From the last input beat accepted to the first output beat valid (MVTU contract)."""
        return MVTU_LATENCY_CONSTANT + self.tree_latency

    def execute(self, x: np.ndarray) -> np.ndarray:
        """Integer reference (docs/semantics.md section 3): ``(B, N)`` pixels or 0/1 bits to
        ``(B, M)`` output bits, or scores for the last layer."""
        x = np.asarray(x, dtype=np.int64)
        w = self.weights.astype(np.int64)
        if self.input_bits == 8:
            acc = x @ (2 * w - 1).T
        else:
            acc = x @ w.T + (1 - x) @ (1 - w).T  # positions where w_ij == a_j
        if self.is_score:
            return acc
        t, d = self.thresholds, self.directions
        return np.where(d > 0, acc >= t, acc <= t).astype(np.int64)

    def resources(self) -> Resources:
        """The unit's estimate, per family with the coefficients ``k`` of :data:`LUT_MODEL`.

        LUT4s: per lane ``PE*SIMD``, ``k.bin`` (binary input), ``k.pix`` (8-bit input, a
        threshold layer of several PEs) plus ``k.pair`` per lane pair (``SIMD // 2``: the sums
        and differences the PEs share, see
        :class:`~xnorflow.hw.blocks.popcount.ComplementSumTrees`),
        or ``k.pix1`` (8-bit input, one PE or a score layer: lanes not paired),
        ``k.acc`` per accumulator bit (``PE * acc_width``: accumulator, threshold subtraction),
        ``k.pe`` per PE and ``k.unit`` for the unit's control; plus the logic tables: thresholds
        in logic (``PE`` tables of ``NF`` words of ``t_width + 1`` bits), weights in logic
        (``"lut"``: ``PE`` tables of ``NF*SF`` words of ``SIMD`` bits), each ``k.rom *
        rom(words)`` per bit, and an input buffer in flip-flops (``k.mux`` per bit and word of
        its read multiplexer).

        Block RAM, exact, as :mod:`xnorflow.hw.blocks.mvtu` maps its memories: per PE the ``NF*SF x
        SIMD`` weight memory (``"bram"``), the threshold table when
        :func:`~xnorflow.hw.blocks.mvtu.threshold_style` puts it in block RAM, and the ``2*SF x
        SIMD*bits`` input buffer when :func:`~xnorflow.hw.compiler.rules.buffer_style` does (with
        ``SF = 1`` and ``NF >= 3`` it is two registers). Flip-flops: tree pipeline registers,
        accumulators, the read registers, the output register and control.
        """
        pe, simd, bits = self.pe, self.simd, self.input_bits
        nf, sf = self.nf, self.sf
        words, acc_w = nf * sf, self.score_shape.width
        chunk = simd * bits
        leaf = 1 if bits == 1 else 9
        paired = self.paired
        if paired:
            # shared pair sums and differences (and an odd lane), then per PE the delayed sign
            # bits, the pair values and the tree over them
            pairs, odd = simd // 2, simd % 2
            ff = 2 * 9 * pairs + 8 * odd + pe * (simd + 9 * pairs + 8 * odd)
            ff += pe * tree_ff(pairs + odd, 9, self.levels_per_stage) + 2 * pe * acc_w
        elif bits == 1:
            ff = pe * popcount_ff(simd, self.levels_per_stage) + 2 * pe * acc_w
        else:
            ff = pe * tree_ff(simd, leaf, self.levels_per_stage) + 2 * pe * acc_w
        # the output register and the skid register, or (a free-running pipeline) the output
        # queue behind it and its counters
        out_w = pe * (acc_w if self.is_score else 1)
        if pipeline_style(pe, simd, bits) == "credit":
            depth = output_depth(self.tree_latency, sf)
            ff += depth * out_w + 4 * counter_bits(depth + 1)
        else:
            ff += 2 * out_w
        ff += chunk
        ff += 3 * counter_bits(words) + 8 + (self.tree_latency + 1) * (3 + counter_bits(nf))
        lane = "bin" if bits == 1 else "pix" if paired else "pix1"
        luts = {f: LUT_MODEL[f][lane] * pe * simd + LUT_MODEL[f]["pair"] * (simd // 2) * paired
                + LUT_MODEL[f]["acc"] * pe * acc_w + LUT_MODEL[f]["pe"] * pe
                + LUT_MODEL[f]["unit"] for f in FAMILIES}
        res = Resources.luts_by(luts, ff=ff)
        if not self.is_score:
            lo, hi = self.acc_range
            t_w = Shape.cast(range(lo, hi + 2)).width
            if threshold_style(nf, self.storage) == "block":
                # and the register after each block RAM's read register
                res += Resources.block_memory(nf, t_w + 1, copies=pe) + Resources(
                    ff=pe * (t_w + 1))
            else:
                res += Resources.logic_rom(nf, t_w + 1, copies=pe)
        if self.storage == "bram":
            res += Resources.block_memory(words, simd, copies=pe)
            if words > 1:
                res += Resources(ff=pe * simd)
        else:
            res += Resources.logic_rom(words, simd, copies=pe)
        style = self.buffer_style
        if sf == 1 and nf >= 3:
            res += Resources.same_luts(chunk, ff=2 * chunk)
        elif style == "block":
            res += Resources.block_memory(2 * sf, chunk)
        elif style == "distributed":
            res += Resources.distributed_ram(2 * sf, chunk)
        else:
            res += Resources.logic_ram(2 * sf, chunk)
        return res

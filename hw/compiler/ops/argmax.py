"""The op of the network's output: the argmax of the last layer's scores (the gateware:
:class:`xnorflow.hw.blocks.argmax.ArgMax`)."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from amaranth.hdl import Shape
from amaranth.lib import data

from xnorflow.hw.compiler.op import Op
from xnorflow.hw.compiler.ops.plumbing import FifoOp
from xnorflow.hw.compiler.resources import Resources, counter_bits

__all__ = ["OUTPUT_FIFO_DEPTH", "ArgMaxOp"]

#: Depth of the FIFO between the ArgMax and ``m_axis``.
OUTPUT_FIFO_DEPTH = 4


@dataclass(frozen=True)
class ArgMaxOp(Op):
    """The predicted class (and the scores) of a frame,
    :class:`~xnorflow.hw.blocks.argmax.ArgMax`."""

    classes: int
    score_shape: Shape
    with_scores: bool = True
    pe: int = 1

    kind = "argmax"
    label = "argmax"
    latency = 1

    @property
    def cycles_per_frame(self) -> int:
        return self.classes // self.pe

    @property
    def output_layout(self) -> data.StructLayout:
        """The result's layout, as :attr:`ArgMax.output_layout <xnorflow.hw.blocks.argmax.ArgMax.
        output_layout>`: ``index`` (``range(classes)``) at bit 0, then, with scores, ``scores``
        (``ArrayLayout(score_shape, classes)``)."""
        fields = {"index": range(self.classes)}
        if self.with_scores:
            fields["scores"] = data.ArrayLayout(self.score_shape, self.classes)
        return data.StructLayout(fields)

    @property
    def index_width(self) -> int:
        return self.output_layout["index"].width

    @property
    def out_width(self) -> int:
        return self.output_layout.size

    def follow(self, previous: Op) -> ArgMaxOp:
        """As many scores per beat as the last layer has PEs."""
        return replace(self, pe=previous.pe)

    def fifo_after(self) -> FifoOp:
        """:data:`OUTPUT_FIFO_DEPTH` results between the ArgMax and ``m_axis`` (see
        :func:`~xnorflow.hw.compiler.plan.size_fifos`)."""
        return FifoOp("m_axis", self.out_width, OUTPUT_FIFO_DEPTH, 1)

    def execute(self, scores: np.ndarray) -> np.ndarray:
        """``(B, classes)`` scores to ``(B,)`` classes, ties to the lowest index."""
        return np.asarray(scores).argmax(axis=1)

    def resources(self) -> Resources:
        w, idx = self.score_shape.width, self.index_width
        lut = (self.pe - 1) * (2 * w + idx) + 2 * w + idx + 10
        stored = (self.classes - self.pe) * w if self.with_scores else 0
        ff = w + idx + stored + self.out_width + counter_bits(self.cycles_per_frame)
        return Resources.same_luts(lut, ff=ff)

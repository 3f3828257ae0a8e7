"""The ops the passes insert between layers: width converters and FIFOs (the gateware:
:mod:`xnorflow.hw.blocks.plumbing`)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from xnorflow.hw.compiler.folding import FULL_RATE_DEPTH
from xnorflow.hw.compiler.op import Op, Timeline, beat_times, uneven
from xnorflow.hw.compiler.resources import FIFO_LOGIC_MAX_WORDS, Resources, counter_bits

__all__ = ["ConverterOp", "FifoOp"]


@dataclass(frozen=True)
class ConverterOp(Op):
    """A :class:`~xnorflow.hw.blocks.plumbing.WidthConverter` from layer ``after``'s PE bits per
    beat to the next layer's SIMD bits per beat."""

    after: int
    frame_bits: int
    in_width: int
    out_width: int

    kind = "converter"
    describes = "previous"
    latency = 1

    @property
    def label(self) -> str:
        return f"conv{self.after}_{self.after + 1}"

    @property
    def capacity(self) -> int:
        i, o = self.in_width, self.out_width
        return i + o + min(i, o) - 1

    @property
    def cycles_per_frame(self) -> int:
        return self.frame_bits // min(self.in_width, self.out_width)

    def describe(self) -> dict:
        """What the manifest says of the converter, in the entry of the layer whose output it
        converts."""
        return {"converter": {"in_width": self.in_width, "out_width": self.out_width,
                              "capacity": self.capacity, "latency": self.latency}}

    def advance(self, t: Timeline) -> Timeline:
        """The converter's output beats for the producer's beats of ``t``
        (:func:`~xnorflow.hw.compiler.op.beat_times`), the consumer ready: output beat ``j`` is
        valid one cycle after the input beat ``f(j)`` holding its last bit, and at most one beat
        per cycle, ``o_j = max(b_f(j) + 1, o_(j-1) + 1)``. (When the producer is faster than the
        output side the converter pushes back on it and emits a beat every cycle.) For an MVTU's
        evenly spaced beats this is ``first + 1 + max_j(f(j)*SF + J-1-j)``, ``J = M/out``."""
        arrivals = beat_times(t, self.frame_bits // self.in_width)
        out: list[int] = []
        for j in range(self.frame_bits // self.out_width):
            ready = arrivals[((j + 1) * self.out_width - 1) // self.in_width] + 1
            out.append(ready if not out else max(ready, out[-1] + 1))
        return uneven(out)

    def resources(self) -> Resources:
        """``capacity`` FFs plus the level counter; LUT4s ``0.8`` per buffer bit (the shift) and
        ``0.95`` per input bit and write position (the placement multiplexers), fitted to Yosys'
        counts of the calibration converters."""
        cap = self.capacity
        positions = (cap - self.in_width) // math.gcd(self.in_width, self.out_width) + 1
        return Resources.same_luts(0.8 * cap + 0.95 * self.in_width * positions,
                                   ff=cap + counter_bits(cap + 1))



@dataclass(frozen=True)
class FifoOp(Op):
    """A :class:`~xnorflow.hw.blocks.plumbing.StreamFIFO` of ``depth`` beats of ``width`` bits."""

    before: str  #: label of the op it feeds ("layer2", "argmax") or "m_axis"
    width: int
    depth: int
    beats_per_frame: int

    kind = "fifo"

    @property
    def label(self) -> str:
        return f"fifo_{self.before}"

    @property
    def latency(self) -> int:
        return 1 if self.depth == 1 else 2

    @property
    def cycles_per_frame(self) -> int:
        return self.beats_per_frame * (1 if self.depth >= FULL_RATE_DEPTH else 2)

    def describe(self) -> dict:
        """What the manifest says of the FIFO, in the entry of the layer it feeds."""
        return {"fifo_depth": self.depth}

    def resources(self) -> Resources:
        """``depth - 1`` words of memory (:class:`~amaranth.lib.fifo.SyncFIFOBuffered`, placed by
        Yosys: LUT RAM on ECP5; on iCE40 flip-flops up to :data:`FIFO_LOGIC_MAX_WORDS` words,
        else block RAM), the output register and two pointers."""
        words = self.depth - 1
        ice40 = (Resources.logic_ram(words, self.width) if words <= FIFO_LOGIC_MAX_WORDS
                 else Resources.block_memory(words, self.width) + Resources(lut_ice40=46))
        ecp5 = Resources.distributed_ram(words, self.width)
        memory = Resources(lut_ice40=ice40.lut_ice40, lut_ecp5=ecp5.lut_ecp5, ff=ice40.ff,
                           bram_bits=ice40.bram_bits, ice40_ebr=ice40.ice40_ebr)
        return memory + Resources.same_luts(12, ff=self.width + 3 * counter_bits(self.depth))

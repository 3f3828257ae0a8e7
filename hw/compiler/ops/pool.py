"""The op of a max-pooling layer on bits (the gateware: :class:`xnorflow.hw.blocks.pool.
BitMaxPool`): OR for the channels whose convolution thresholds rise, AND for the others."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from xnorflow.hw.compiler.folding import FoldingError, LayerFolding
from xnorflow.hw.compiler.op import Op, Timeline, beat_times, uneven
from xnorflow.hw.compiler.ops.plumbing import FifoOp
from xnorflow.hw.compiler.resources import Resources, counter_bits, mux_luts
from xnorflow.hw.compiler.rules import pool_cycles_per_frame, pool_latency
from xnorflow.model import PoolShapes

__all__ = ["PoolOp"]


@dataclass(frozen=True, eq=False)
class PoolOp(Op, PoolShapes):
    """``k x k`` max-pooling of an ``H x W x C`` bit map (docs/semantics.md section 5.3),
    ``simd`` channels per beat in and out.

    The direction of each channel (``rising``: OR, else AND) is that of the convolution before:
    the op takes it from that layer's op (:meth:`follow`, which the ``lower`` pass calls). Its
    folding entry has one meaning, the channels per beat: ``simd`` divides C, and ``pe`` (the
    output's channels per beat, the same beats) must equal it."""

    index: int
    name: str
    in_shape: tuple[int, int, int]
    kernel: int
    rising: tuple[bool, ...] | None = None
    simd: int = 1
    fifo_request: int | None = None

    kind = "maxpool2d"
    layer_kind = "maxpool2d"
    input_bits = 1

    @classmethod
    def from_layer(cls, index: int, layer) -> PoolOp:
        """The op of a :class:`~xnorflow.model.PoolLayer`, without its directions yet."""
        return cls(index, layer.name, tuple(layer.in_shape), layer.kernel)

    def follow(self, previous: Op) -> PoolOp:
        """The directions of the convolution in front: a channel whose direction is +1 pools by
        OR."""
        if self.rising is not None:
            return self
        return replace(self, rising=tuple(bool(d > 0) for d in previous.directions))

    def folded(self, entry: LayerFolding) -> PoolOp:
        if entry.pe != entry.simd:
            raise FoldingError(f"layer {self.index} ({self.name}): a pooling layer passes its "
                               f"channels through, SIMD per beat: PE ({entry.pe}) must equal "
                               f"SIMD ({entry.simd})")
        return replace(self, simd=entry.simd, fifo_request=entry.fifo_depth)

    @property
    def layer_folding(self) -> LayerFolding:
        return LayerFolding(self.simd, self.simd, "bram", self.fifo_request)

    @property
    def label(self) -> str:
        return f"layer{self.index}"

    @property
    def pe(self) -> int:
        """Channels per output beat: SIMD."""
        return self.simd

    @property
    def directions(self) -> np.ndarray:
        """+1 for the OR channels, -1 for the AND ones (what a layer behind may follow)."""
        return np.where(np.array(self.rising), 1, -1).astype(np.int64)

    # -- shapes -----------------------------------------------------------------------------
    @property
    def is_score(self) -> bool:
        return False

    @property
    def in_width(self) -> int:
        return self.simd

    @property
    def out_width(self) -> int:
        return self.simd

    @property
    def input_beats(self) -> int:
        return self.in_features // self.simd

    @property
    def frame_bits(self) -> int:
        return self.in_features

    # -- performance model ------------------------------------------------------------------
    def cycles_for(self, pe: int, simd: int) -> float:
        """Cycles per frame under ``(pe, simd)``: ``H*W*C/SIMD``; no folding with PE other than
        SIMD (infinite)."""
        return pool_cycles_per_frame(self.in_shape, simd) if pe == simd else float("inf")

    @property
    def cycles_per_frame(self) -> int:
        """One input beat per cycle, ``H*W*C/SIMD``
        (:func:`~xnorflow.hw.compiler.rules.pool_cycles_per_frame`)."""
        return pool_cycles_per_frame(self.in_shape, self.simd)

    @property
    def latency(self) -> int:
        """From a frame's first input beat to its first output beat, input back to back
        (:func:`~xnorflow.hw.compiler.rules.pool_latency`)."""
        return pool_latency(self.in_shape, self.kernel, self.simd)

    def advance(self, t: Timeline) -> Timeline:
        """Every output beat valid the cycle after the input beat that completes its square (the
        input is never held with the output ready)."""
        h, w, c = self.in_shape
        k, cb = self.kernel, c // self.simd
        arrivals = beat_times(t, self.input_beats)
        beats = tuple(arrivals[((py * k + k - 1) * w + px * k + k - 1) * cb + b] + 1
                      for py in range(h // k) for px in range(w // k) for b in range(cb))
        return uneven(beats)

    # -- integer reference ------------------------------------------------------------------
    def execute(self, x: np.ndarray) -> np.ndarray:
        """``(B, H*W*C)`` bits to the ``(B, (H/k)*(W/k)*C)`` pooled bits (docs/semantics.md
        section 5.3)."""
        h, w, c = self.in_shape
        k = self.kernel
        maps = np.asarray(x, dtype=np.int64).reshape(-1, h // k, k, w // k, k, c)
        rising = np.array(self.rising, dtype=bool)
        pooled = np.where(rising, maps.max(axis=(2, 4)), maps.min(axis=(2, 4)))
        return pooled.reshape(maps.shape[0], self.out_features)

    # -- compiler hooks ---------------------------------------------------------------------
    def fifo_before(self) -> FifoOp | None:
        if not self.fifo_request:
            return None
        return FifoOp(self.label, self.in_width, self.fifo_request, self.input_beats)

    def describe(self) -> dict:
        return {"index": self.index, "name": self.name, "kind": self.kind,
                "in_shape": list(self.in_shape), "out_shape": list(self.out_shape),
                "kernel": self.kernel, "in_features": self.in_features,
                "out_features": self.out_features, "input_bits": 1, "output": "bits",
                "pe": self.simd, "simd": self.simd, "rising": [int(r) for r in self.rising],
                "ii": self.cycles_per_frame, "latency": self.latency,
                "in_width": self.in_width, "out_width": self.out_width}

    def resources(self) -> Resources:
        """The row buffer of ``(W/k) * C/SIMD`` words of SIMD bits in flip-flops with its read
        multiplexer, the combining logic (about a LUT4 per lane), the output and skid registers
        and the position counters; the LUT4s times the calibrated factor ``pool`` of
        :data:`~xnorflow.hw.compiler.resources.LUT_MODEL`."""
        h, w, c = self.in_shape
        k, simd = self.kernel, self.simd
        words = (w // k) * (c // simd)
        counters = (counter_bits(c // simd) + 2 * counter_bits(k) + counter_bits(w // k)
                    + counter_bits(words))
        return Resources.calibrated(
            "pool", simd * mux_luts(words) + words + 2 * simd + 2 * counters + 6,
            ff=words * simd + simd + 2 * simd + counters + 2)

"""Folding, the per-stage op objects, the performance model and the compiler passes.

A network accelerator is compiled from an exported :class:`~xnorflow.model.Model` by a short list
of explicit passes, each a function from a :class:`NetworkPlan` to a new one, that a test can run
and check on its own (the plan is immutable)::

    lower(model)            one DenseOp per layer (PE = SIMD = 1), then an ArgMaxOp
    fold(plan, folding)     PE, SIMD, weight storage (and FIFO overrides) per layer
    insert_converters(plan) a ConverterOp wherever PE of a layer != SIMD of the next
    size_fifos(plan)        FifoOps by the depth rule (see size_fifos), and the output FIFO
    build(plan)             the Amaranth component (xnorflow.hw.network.build)

:func:`compile_plan` runs the first four. Every op has an integer reference (``execute``), its
expected cycles per frame (``cycles_per_frame``), its ``latency``, a ``resources()`` estimate and
the ``build()`` method that makes its Component, so ``plan.execute(frames)`` can be checked
against the golden model after any pass.

Folding file
------------
A small JSON object with one entry per model layer, in order::

    {"layers": [{"pe": 16, "simd": 49, "storage": "bram"},
                {"pe": 16, "simd": 32, "storage": "lut", "fifo_depth": 4}, ...]}

``pe`` must divide the layer's outputs M, ``simd`` its inputs N. ``storage`` (``"bram"`` or
``"lut"``, default ``"bram"``) is where the weights live (see :class:`~xnorflow.hw.mvtu.MVTU`).
``fifo_depth`` (optional) overrides the depth rule for the FIFO in front of the layer: 0 for none,
else at least 3. ``buffer`` (optional: ``"block"``, ``"logic"`` or ``"distributed"``, the last on
ECP5 only) places the layer's input buffer (default: :func:`xnorflow.hw.mvtu.buffer_style`).
Anything else is an error naming the layer, e.g.
``layer 2 (hidden2): PE (7) must divide the output channels (256)``.

Default folding (:meth:`Folding.default`)
-----------------------------------------
A target initiation interval ``T`` (default ``ceil(max over layers of N*M / 256)``: the largest
layer, the 8-bit first layer of an MNIST MLP, gets about 256 lanes) and, per layer, the divisor
pair with the fewest lanes ``PE*SIMD`` such that ``(M/PE)*(N/SIMD) <= T``; among equally many
lanes the larger SIMD (one wide popcount costs less than several accumulators and threshold
comparators). Weights go to block RAM when a PE's weight memory has at least
:data:`BRAM_MIN_WORDS` words, else to LUTs.

Performance model
-----------------
Per op: cycles per frame (``MVTU``: ``(M/PE)*(N/SIMD)``; converter: ``M/min(in, out)``; FIFO: its
beats per frame; ArgMax: ``classes/PE``). The network's initiation interval is the maximum
(:func:`predict_ii`); the input needs ``N0/SIMD0`` beats, never more than layer 0's II. The
latency (:func:`predict_latency`) follows one frame through an idle network, see there. Both are
checked against simulation, exactly (the stated constant is 0).

Resource estimate
-----------------
:class:`Resources` per op from PE, SIMD and memory shapes, for LUT4 devices (iCE40, ECP5). It is
a first rough model, **uncalibrated** against synthesis; see :meth:`DenseOp.resources`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from amaranth.hdl import Shape
from amaranth.lib import data

__all__ = [
    "BRAM_MIN_WORDS",
    "DEFAULT_LANES",
    "LEVELS_PER_STAGE",
    "OUTPUT_FIFO_DEPTH",
    "ArgMaxOp",
    "ConverterOp",
    "DenseOp",
    "FifoOp",
    "Folding",
    "FoldingError",
    "LayerFolding",
    "NetworkPlan",
    "Resources",
    "compile_plan",
    "fold",
    "insert_converters",
    "lower",
    "predict_ii",
    "predict_latency",
    "size_fifos",
]

#: Adder levels between pipeline registers of every reduction tree.
LEVELS_PER_STAGE = 2
#: Lanes (PE*SIMD) of the largest layer under the default folding.
DEFAULT_LANES = 256
#: The default folding keeps weights in block RAM from this many words per PE memory.
BRAM_MIN_WORDS = 64
#: Depth of the FIFO between the ArgMax and ``m_axis``.
OUTPUT_FIFO_DEPTH = 4
#: Smallest FIFO that passes one beat per cycle (``StreamFIFO.FULL_RATE_DEPTH``).
_FULL_RATE_DEPTH = 3
#: iCE40: Yosys keeps FIFO memories up to this many words in flip-flops (beyond, block RAM).
_FIFO_LOGIC_MAX_WORDS = 8
#: The MVTU's registers outside its reduction tree (its documented latency is 4 + tree depth).
_MVTU_LATENCY_CONSTANT = 4
_STORAGE = ("bram", "lut")
_LAYER_KEYS = ("pe", "simd", "storage", "fifo_depth", "buffer")
_BUFFERS = ("block", "logic", "distributed")


class FoldingError(ValueError):
    """A folding that is malformed or does not fit the model; the message names the layer."""


def _is_int(value):
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _divisors(n):
    return [d for d in range(1, n + 1) if n % d == 0]


def _bits(n):
    """Bits of a counter over ``range(n)`` (at least 1)."""
    return max(1, (n - 1).bit_length())


# --- Folding ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LayerFolding:
    """How one layer is folded: ``pe`` divides M, ``simd`` divides N."""

    pe: int
    simd: int
    storage: str = "bram"
    #: Depth of the FIFO in front of the layer; None: the rule of :func:`size_fifos`.
    fifo_depth: int | None = None
    #: Where the input buffer lives; None: :func:`xnorflow.hw.mvtu.buffer_style`.
    buffer: str | None = None

    def to_dict(self) -> dict:
        d = {"pe": self.pe, "simd": self.simd, "storage": self.storage}
        if self.fifo_depth is not None:
            d["fifo_depth"] = self.fifo_depth
        if self.buffer is not None:
            d["buffer"] = self.buffer
        return d


def _where(index, layers):
    if layers is not None and index < len(layers):
        return f"layer {index} ({layers[index].name})"
    return f"layer {index}"


@dataclass(frozen=True)
class Folding:
    """The folding of every layer of a network, in order (see the module docstring)."""

    layers: tuple[LayerFolding, ...]

    @classmethod
    def from_dict(cls, obj, layers: Sequence | None = None) -> Folding:
        """Parse the JSON object; ``layers`` (the model's) names the layers in messages and, when
        given, the folding is also checked against them (:meth:`check`)."""
        if not isinstance(obj, dict):
            raise FoldingError('folding: expected a JSON object with a "layers" list, got '
                               f"{type(obj).__name__}")
        if "layers" not in obj:
            raise FoldingError("folding: missing key 'layers'")
        extra = sorted(set(obj) - {"layers"})
        if extra:
            raise FoldingError(f"folding: unknown key {extra[0]!r} (allowed: layers)")
        entries = obj["layers"]
        if not isinstance(entries, list):
            raise FoldingError('folding: "layers" must be a list with one object per layer')
        parsed = []
        for index, entry in enumerate(entries):
            where = _where(index, layers)
            if not isinstance(entry, dict):
                raise FoldingError(f'{where}: expected an object like {{"pe": 1, "simd": 1, '
                                   f'"storage": "bram"}}, got {entry!r}')
            for key in entry:
                if key not in _LAYER_KEYS:
                    raise FoldingError(f"{where}: unknown key {key!r} (allowed: "
                                       f"{', '.join(_LAYER_KEYS)})")
            for key in ("pe", "simd"):
                if key not in entry:
                    raise FoldingError(f"{where}: missing key {key!r}")
            pe, simd = entry["pe"], entry["simd"]
            storage = entry.get("storage", "bram")
            depth = entry.get("fifo_depth")
            buffer = entry.get("buffer")
            if buffer is not None and buffer not in _BUFFERS:
                raise FoldingError(f"{where}: buffer ({buffer!r}) must be 'block', 'logic' or "
                                   "'distributed'")
            if not _is_int(pe) or pe < 1:
                raise FoldingError(f"{where}: PE ({pe!r}) must be a positive integer")
            if not _is_int(simd) or simd < 1:
                raise FoldingError(f"{where}: SIMD ({simd!r}) must be a positive integer")
            if storage not in _STORAGE:
                raise FoldingError(f"{where}: storage ({storage!r}) must be 'bram' or 'lut'")
            if depth is not None and (not _is_int(depth) or depth < 0
                                      or 0 < depth < _FULL_RATE_DEPTH):
                raise FoldingError(f"{where}: fifo_depth ({depth!r}) must be 0 (no FIFO) or at "
                                   f"least {_FULL_RATE_DEPTH}")
            parsed.append(LayerFolding(int(pe), int(simd), storage,
                                       None if depth is None else int(depth), buffer))
        folding = cls(tuple(parsed))
        if layers is not None:
            folding.check(layers)
        return folding

    @classmethod
    def load(cls, path, layers: Sequence | None = None) -> Folding:
        """Read a folding JSON file (see :meth:`from_dict`)."""
        path = Path(path)
        if not path.is_file():
            raise FoldingError(f"{path}: no such folding file")
        try:
            obj = json.loads(path.read_text())
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise FoldingError(f"{path.name}: not valid JSON ({e})") from None
        try:
            return cls.from_dict(obj, layers)
        except FoldingError as e:
            raise FoldingError(f"{path.name}: {e}") from None

    def to_dict(self) -> dict:
        return {"layers": [layer.to_dict() for layer in self.layers]}

    def check_family(self, family: str) -> None:
        """Raise :class:`FoldingError` for a choice the FPGA ``family`` lacks (LUT RAM input
        buffers exist on ECP5 only)."""
        for index, layer in enumerate(self.layers):
            if layer.buffer == "distributed" and family != "ecp5":
                raise FoldingError(f"layer {index}: buffer 'distributed' (LUT RAM) exists on ECP5 "
                                   f"only, not on {family}; use 'logic' or 'block'")

    def check(self, layers: Sequence) -> None:
        """Check against the model's layers (anything with ``name``, ``in_features`` and
        ``out_features``): one entry per layer, PE | M, SIMD | N."""
        if len(self.layers) != len(layers):
            raise FoldingError(f"folding has {len(self.layers)} layer entries but the model has "
                               f"{len(layers)} layers")
        for index, (f, layer) in enumerate(zip(self.layers, layers, strict=True)):
            where = _where(index, layers)
            if layer.out_features % f.pe:
                raise FoldingError(f"{where}: PE ({f.pe}) must divide the output channels "
                                   f"({layer.out_features})")
            if layer.in_features % f.simd:
                raise FoldingError(f"{where}: SIMD ({f.simd}) must divide the input channels "
                                   f"({layer.in_features})")

    @classmethod
    def default(cls, layers: Sequence, target_ii: int | None = None) -> Folding:
        """The default folding of the module docstring for the model's ``layers``."""
        if target_ii is None:
            target_ii = max(1, -(-max(la.in_features * la.out_features for la in layers)
                                 // DEFAULT_LANES))
        if not _is_int(target_ii) or target_ii < 1:
            raise FoldingError(f"target II ({target_ii!r}) must be a positive integer")
        result = []
        for layer in layers:
            n, m = layer.in_features, layer.out_features
            best = None
            for pe in _divisors(m):
                for simd in _divisors(n):
                    if (m // pe) * (n // simd) > target_ii:
                        continue
                    key = (pe * simd, -simd)
                    if best is None or key < best[0]:
                        best = (key, pe, simd)
            _, pe, simd = best  # PE = M, SIMD = N (II 1) always qualifies
            words = (m // pe) * (n // simd)
            result.append(LayerFolding(pe, simd, "bram" if words >= BRAM_MIN_WORDS else "lut"))
        return cls(tuple(result))


# --- Resources ----------------------------------------------------------------------------------

_FAMILIES = ("ice40", "ecp5")
# Block RAM configurations (depth, width) that Yosys uses for a memory with one read and at most
# one write port: iCE40 SB_RAM40_4K (4 kbit) and ECP5 DP16KD (18 kbit).
_BRAM_CONFIGS = {
    "ice40": ((256, 16), (512, 8), (1024, 4), (2048, 2)),
    "ecp5": ((512, 36), (1024, 18), (2048, 9), (4096, 4), (8192, 2), (16384, 1)),
}


def bram_blocks(depth: int, width: int, family: str) -> int:
    """Block RAMs of ``family`` for a ``depth x width`` memory marked ``ram_style = "block"``:
    the fewest over the block's configurations, as Yosys' ``memory_libmap`` chooses them."""
    return min(-(-depth // d) * -(-width // w) for d, w in _BRAM_CONFIGS[family])


def _rom_luts(words):
    """LUT4s per output bit of a constant table of ``words`` words in logic (a LUT per 16 words
    and a multiplexer tree), before calibration."""
    return 0 if words <= 1 else 1 if words <= 16 else 2 * -(-words // 16) - 1


def _mux_luts(words):
    """LUT4s per output bit of a ``words``:1 read multiplexer (two words per LUT4 and level)."""
    return max(0, words - 1)


#: The calibrated LUT model, per family: LUT4s per binary (XNOR + popcount) lane, per 8-bit lane
#: (``pix``: paired, several PEs; ``pix1``: one PE or a score layer) and per shared lane pair of
#: an 8-bit layer, per accumulator bit, per processing element, per unit, and the factors on the
#: logic tables (``rom``: constant tables, ``mux``: the input buffer's read multiplexer). Fitted
#: by least squares to Yosys' counts of the blocks of ``python -m xnorflow.hw.calibrate``.
LUT_MODEL = {
    "ice40": {"bin": 1.883, "pix": 12.076, "pix1": 28.063, "pair": 40.114, "acc": 2.992,
              "pe": 0.0, "unit": 0.0, "rom": 1.093, "mux": 1.591},
    "ecp5": {"bin": 1.961, "pix": 12.291, "pix1": 28.719, "pair": 45.541, "acc": 3.317, "pe": 0.0,
             "unit": 14.45, "rom": 1.031, "mux": 1.383},
}


@dataclass(frozen=True)
class Resources:
    """A resource estimate: LUT4s (iCE40 and ECP5 count differently: an ECP5 carry cell is two
    LUT4s, an iCE40 carry is free), flip-flops, block RAM bits and blocks (iCE40 4-kbit EBRs,
    ECP5 18-kbit DP16KDs). Block RAMs are exact (every memory's mapping is stated, see
    :func:`xnorflow.hw.mvtu.threshold_style`); LUT4s come from the model of :data:`LUT_MODEL`,
    calibrated against Yosys; flip-flops from the registers' widths."""

    lut_ice40: int = 0
    lut_ecp5: int = 0
    ff: int = 0
    bram_bits: int = 0
    ice40_ebr: int = 0
    ecp5_dp16kd: int = 0

    @classmethod
    def luts_by(cls, counts, **kwargs) -> Resources:
        """From a ``{family: LUT4s}`` mapping (rounded) and the other fields."""
        return cls(lut_ice40=round(counts["ice40"]), lut_ecp5=round(counts["ecp5"]), **kwargs)

    @classmethod
    def same_luts(cls, luts, **kwargs) -> Resources:
        """The same LUT4 count on both families."""
        return cls(lut_ice40=round(luts), lut_ecp5=round(luts), **kwargs)

    def __add__(self, other: Resources) -> Resources:
        return Resources(*(a + b for a, b in zip(self.as_tuple(), other.as_tuple(), strict=True)))

    def luts(self, family: str) -> int:
        """LUT4s on ``family`` (``"ice40"`` or ``"ecp5"``)."""
        return self.lut_ice40 if family == "ice40" else self.lut_ecp5

    def brams(self, family: str) -> int:
        """Block RAMs on ``family``: iCE40 EBRs or ECP5 DP16KDs."""
        return self.ice40_ebr if family == "ice40" else self.ecp5_dp16kd

    def as_tuple(self):
        return (self.lut_ice40, self.lut_ecp5, self.ff, self.bram_bits, self.ice40_ebr,
                self.ecp5_dp16kd)

    def to_dict(self) -> dict:
        return {"lut_ice40": self.lut_ice40, "lut_ecp5": self.lut_ecp5, "ff": self.ff,
                "bram_bits": self.bram_bits, "ice40_ebr": self.ice40_ebr,
                "ecp5_dp16kd": self.ecp5_dp16kd}

    @classmethod
    def block_memory(cls, depth, width, copies=1) -> Resources:
        """``copies`` memories of ``depth x width`` in block RAM."""
        return cls(bram_bits=copies * depth * width,
                   ice40_ebr=copies * bram_blocks(depth, width, "ice40"),
                   ecp5_dp16kd=copies * bram_blocks(depth, width, "ecp5"))

    @classmethod
    def logic_rom(cls, depth, width, copies=1) -> Resources:
        """``copies`` constant tables of ``depth x width`` in logic, with their read register."""
        luts = {f: copies * width * _rom_luts(depth) * LUT_MODEL[f]["rom"] for f in _FAMILIES}
        return cls.luts_by(luts, ff=copies * width * (depth > 1))

    @classmethod
    def distributed_ram(cls, depth, width) -> Resources:
        """A ``depth x width`` ECP5 LUT RAM with a read register (its iCE40 figure is that of
        :meth:`logic_ram`: iCE40 has no LUT RAM, and a folding that asks for one is refused
        there)."""
        ice40 = cls.logic_ram(depth, width)
        return cls(lut_ice40=ice40.lut_ice40, lut_ecp5=_distributed_luts(depth, width),
                   ff=width)

    @classmethod
    def logic_ram(cls, depth, width) -> Resources:
        """A ``depth x width`` memory in flip-flops with a registered read multiplexer."""
        luts = {f: width * _mux_luts(depth) * LUT_MODEL[f]["mux"] + depth for f in _FAMILIES}
        return cls.luts_by(luts, ff=depth * width + width)


def _distributed_luts(depth, width):
    """ECP5 LUT RAM: a ``TRELLIS_DPR16X4`` (16 x 4, four LUT4s) per 16 words and 4 bits, and a
    read multiplexer over the 16-word banks."""
    banks = -(-depth // 16)
    return 4 * banks * -(-width // 4) + width * _mux_luts(banks)


def bridge_resources(n0: int, simd0: int, family: str, slots: int = 2) -> Resources:
    """The serial bridge of a board build of ``family`` (:class:`~xnorflow.hw.bridge.
    SerialBridge`): its frame buffer (``slots`` frames of ``N0/SIMD0`` words of ``8*SIMD0``
    bits, placed by :func:`~xnorflow.hw.bridge.bridge_buffer_style`) and the UART and packet
    engine (a constant, calibrated like :data:`LUT_MODEL`)."""
    from .bridge import bridge_buffer_style

    depth, width = slots * (n0 // simd0), 8 * simd0
    if bridge_buffer_style(family, depth) == "distributed":
        buffer = Resources.distributed_ram(depth, width)
    else:
        buffer = Resources.block_memory(depth, width)
    return buffer + Resources.luts_by(BRIDGE_LUTS, ff=BRIDGE_FFS)


#: LUT4s and flip-flops of the serial bridge without its frame buffer (calibrated).
BRIDGE_LUTS = {"ice40": 700, "ecp5": 800}
BRIDGE_FFS = 450


# --- Ops ----------------------------------------------------------------------------------------


def _tree_ff(leaves, leaf_width, levels_per_stage):
    """Register bits of a pipelined binary adder tree (registers after every
    ``levels_per_stage`` levels and after the last)."""
    depth = (leaves - 1).bit_length()
    count, total = leaves, 0
    for level in range(1, depth + 1):
        count = -(-count // 2)
        if level % levels_per_stage == 0 or level == depth:
            total += count * (leaf_width + level)
    return total


def _popcount_ff(width, levels_per_stage):
    """Register bits of a :class:`~xnorflow.hw.popcount.Popcount` of ``width`` bits: the
    count of every group of ``POPCOUNT_GROUP`` bits, then the adder tree over the counts."""
    from .popcount import POPCOUNT_GROUP

    if width == 1:
        return 0
    sizes = [min(POPCOUNT_GROUP, width - start) for start in range(0, width, POPCOUNT_GROUP)]
    groups = sum(size.bit_length() for size in sizes)
    if len(sizes) == 1:
        return groups
    return groups + _tree_ff(len(sizes), POPCOUNT_GROUP.bit_length(), levels_per_stage)


@dataclass(frozen=True, eq=False)
class DenseOp:
    """One dense layer as a matrix-vector-threshold unit (:class:`~xnorflow.hw.mvtu.MVTU`)."""

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
    #: Where the input buffer lives (None: :func:`xnorflow.hw.mvtu.buffer_style`).
    buffer: str | None = None

    @property
    def buffer_style(self) -> str:
        """The input buffer's ``ram_style`` as built."""
        from .mvtu import buffer_style

        return self.buffer or buffer_style(self.sf, self.simd * self.input_bits)

    kind = "dense"

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
    def acc_range(self) -> tuple[int, int]:
        n = self.in_features
        return (-255 * n, 255 * n) if self.input_bits == 8 else (0, n)

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
        :class:`~xnorflow.hw.popcount.ComplementSumTrees`)."""
        from .popcount import ComplementSumTrees

        return (self.input_bits == 8 and not self.is_score
                and ComplementSumTrees.pairs_shared(self.simd, self.pe))

    @property
    def tree_latency(self) -> int:
        """Pipeline depth of the unit's tree, by the gateware's rules: a popcount of binary input
        (:func:`~xnorflow.hw.popcount.popcount_latency`); with lane pairs, the two pair
        registers and a tree over ``ceil(SIMD / 2)`` leaves
        (:func:`~xnorflow.hw.popcount.complement_latency`); else an adder tree over SIMD lanes,
        ``ceil(ceil(log2(SIMD)) / levels_per_stage)``."""
        from .popcount import complement_latency, popcount_latency, tree_latency

        if self.paired:
            return complement_latency(self.simd, self.pe, self.levels_per_stage)
        if self.input_bits == 1:
            return popcount_latency(self.simd, self.levels_per_stage)
        return tree_latency(self.simd, self.levels_per_stage)

    @property
    def latency(self) -> int:
        """From the last input beat accepted to the first output beat valid (MVTU contract)."""
        return _MVTU_LATENCY_CONSTANT + self.tree_latency

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
        and differences the PEs share, see :class:`~xnorflow.hw.popcount.ComplementSumTrees`),
        or ``k.pix1`` (8-bit input, one PE or a score layer: lanes not paired),
        ``k.acc`` per accumulator bit (``PE * acc_width``: accumulator, threshold subtraction),
        ``k.pe`` per PE and ``k.unit`` for the unit's control; plus the logic tables: thresholds
        in logic (``PE`` tables of ``NF`` words of ``t_width + 1`` bits), weights in logic
        (``"lut"``: ``PE`` tables of ``NF*SF`` words of ``SIMD`` bits), each ``k.rom *
        rom(words)`` per bit, and an input buffer in flip-flops (``k.mux`` per bit and word of
        its read multiplexer).

        Block RAM, exact, as :mod:`xnorflow.hw.mvtu` maps its memories: per PE the ``NF*SF x
        SIMD`` weight memory (``"bram"``), the threshold table when
        :func:`~xnorflow.hw.mvtu.threshold_style` puts it in block RAM, and the ``2*SF x
        SIMD*bits`` input buffer when :func:`~xnorflow.hw.mvtu.buffer_style` does (with ``SF =
        1`` and ``NF >= 3`` it is two registers). Flip-flops: tree pipeline registers,
        accumulators, the read registers, the output register and control.
        """
        from .mvtu import output_depth, pipeline_style, threshold_style

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
            ff += pe * _tree_ff(pairs + odd, 9, self.levels_per_stage) + 2 * pe * acc_w
        elif bits == 1:
            ff = pe * _popcount_ff(simd, self.levels_per_stage) + 2 * pe * acc_w
        else:
            ff = pe * _tree_ff(simd, leaf, self.levels_per_stage) + 2 * pe * acc_w
        # the output register and the skid register, or (a free-running pipeline) the output
        # queue behind it and its counters
        out_w = pe * (acc_w if self.is_score else 1)
        if pipeline_style(pe, simd, bits) == "credit":
            depth = output_depth(self.tree_latency, sf)
            ff += depth * out_w + 4 * _bits(depth + 1)
        else:
            ff += 2 * out_w
        ff += chunk
        ff += 3 * _bits(words) + 8 + (self.tree_latency + 1) * (3 + _bits(nf))
        lane = "bin" if bits == 1 else "pix" if paired else "pix1"
        luts = {f: LUT_MODEL[f][lane] * pe * simd + LUT_MODEL[f]["pair"] * (simd // 2) * paired
                + LUT_MODEL[f]["acc"] * pe * acc_w + LUT_MODEL[f]["pe"] * pe
                + LUT_MODEL[f]["unit"] for f in _FAMILIES}
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

    def build(self):
        from .mvtu import MVTU

        return MVTU(self.weights, self.thresholds, self.directions, input_bits=self.input_bits,
                    pe=self.pe, simd=self.simd, storage=self.storage, buffer=self.buffer,
                    levels_per_stage=self.levels_per_stage)


@dataclass(frozen=True)
class ConverterOp:
    """A :class:`~xnorflow.hw.plumbing.WidthConverter` from layer ``after``'s PE bits per beat to
    the next layer's SIMD bits per beat."""

    after: int
    frame_bits: int
    in_width: int
    out_width: int

    kind = "converter"
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

    def execute(self, x):
        return x

    def resources(self) -> Resources:
        """``capacity`` FFs plus the level counter; LUT4s ``0.8`` per buffer bit (the shift) and
        ``0.95`` per input bit and write position (the placement multiplexers), fitted to Yosys'
        counts of the calibration converters."""
        cap = self.capacity
        positions = (cap - self.in_width) // math.gcd(self.in_width, self.out_width) + 1
        return Resources.same_luts(0.8 * cap + 0.95 * self.in_width * positions,
                                   ff=cap + _bits(cap + 1))

    def build(self):
        from .plumbing import WidthConverter

        return WidthConverter(self.in_width, self.out_width, self.frame_bits)


@dataclass(frozen=True)
class FifoOp:
    """A :class:`~xnorflow.hw.plumbing.StreamFIFO` of ``depth`` beats of ``width`` bits."""

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
        return self.beats_per_frame * (1 if self.depth >= _FULL_RATE_DEPTH else 2)

    def execute(self, x):
        return x

    def resources(self) -> Resources:
        """``depth - 1`` words of memory (:class:`~amaranth.lib.fifo.SyncFIFOBuffered`, placed by
        Yosys: LUT RAM on ECP5; on iCE40 flip-flops up to :data:`_FIFO_LOGIC_MAX_WORDS` words,
        else block RAM), the output register and two pointers."""
        words = self.depth - 1
        ice40 = (Resources.logic_ram(words, self.width) if words <= _FIFO_LOGIC_MAX_WORDS
                 else Resources.block_memory(words, self.width) + Resources(lut_ice40=46))
        ecp5 = Resources.distributed_ram(words, self.width)
        memory = Resources(lut_ice40=ice40.lut_ice40, lut_ecp5=ecp5.lut_ecp5, ff=ice40.ff,
                           bram_bits=ice40.bram_bits, ice40_ebr=ice40.ice40_ebr)
        return memory + Resources.same_luts(12, ff=self.width + 3 * _bits(self.depth))

    def build(self):
        from .plumbing import StreamFIFO

        return StreamFIFO(self.width, self.depth)


@dataclass(frozen=True)
class ArgMaxOp:
    """The predicted class (and the scores) of a frame, :class:`~xnorflow.hw.argmax.ArgMax`."""

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
        """The result's layout, as :attr:`ArgMax.output_layout <xnorflow.hw.argmax.ArgMax.
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

    def execute(self, scores: np.ndarray) -> np.ndarray:
        """``(B, classes)`` scores to ``(B,)`` classes, ties to the lowest index."""
        return np.asarray(scores).argmax(axis=1)

    def resources(self) -> Resources:
        w, idx = self.score_shape.width, self.index_width
        lut = (self.pe - 1) * (2 * w + idx) + 2 * w + idx + 10
        stored = (self.classes - self.pe) * w if self.with_scores else 0
        ff = w + idx + stored + self.out_width + _bits(self.cycles_per_frame)
        return Resources.same_luts(lut, ff=ff)

    def build(self):
        from .argmax import ArgMax

        return ArgMax(self.classes, self.pe, self.score_shape, with_scores=self.with_scores)


# --- The plan -----------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class NetworkPlan:
    """The network as a list of ops in stream order, after some of the passes."""

    model_hash: str
    input_shape: tuple[int, ...]
    ops: tuple
    #: The passes applied so far, in order.
    passes: tuple[str, ...] = field(default=())

    @property
    def dense(self) -> list[DenseOp]:
        return [op for op in self.ops if isinstance(op, DenseOp)]

    @property
    def argmax(self) -> ArgMaxOp:
        return next(op for op in self.ops if isinstance(op, ArgMaxOp))

    @property
    def classes(self) -> int:
        return self.dense[-1].out_features

    @property
    def folding(self) -> Folding:
        return Folding(tuple(LayerFolding(op.pe, op.simd, op.storage, op.fifo_request, op.buffer)
                             for op in self.dense))

    @property
    def ii(self) -> int:
        return predict_ii(self)

    @property
    def latency(self) -> int:
        return predict_latency(self)

    def resources(self) -> Resources:
        total = Resources.same_luts(10, ff=_bits(self.dense[0].sf) + 1)  # the input beat counter
        for op in self.ops:
            total += op.resources()
        return total

    def execute(self, frames) -> tuple[np.ndarray, np.ndarray]:
        """Run every op's integer reference: ``(B, N0)`` pixels to ``(classes, scores)``."""
        x = np.asarray(frames, dtype=np.int64)
        scores = None
        for op in self.ops:
            if isinstance(op, ArgMaxOp):
                scores = x
                x = op.execute(x)
            else:
                x = op.execute(x)
        return x, scores


# --- Passes -------------------------------------------------------------------------------------


def lower(model, *, with_scores: bool = True) -> NetworkPlan:
    """Model -> plan: one unfolded (PE = SIMD = 1) DenseOp per layer, then the ArgMax."""
    model.validate()
    ops = []
    for index, layer in enumerate(model.layers):
        weights = layer.weight_bits().astype(bool)
        weights.flags.writeable = False
        t = d = None
        if layer.thresholds is not None:
            t = layer.thresholds.astype(np.int64)
            d = layer.directions.astype(np.int64)
            t.flags.writeable = False
            d.flags.writeable = False
        ops.append(DenseOp(index, layer.name, layer.in_features, layer.out_features,
                           layer.input_bits, weights, t, d))
    ops.append(ArgMaxOp(ops[-1].out_features, ops[-1].score_shape, bool(with_scores)))
    return NetworkPlan(model.content_hash, tuple(model.input_shape), tuple(ops), ("lower",))


def fold(plan: NetworkPlan, folding: Folding) -> NetworkPlan:
    """Apply a :class:`Folding` (checked against the layers) to the DenseOps and the ArgMax."""
    dense = plan.dense
    folding.check(dense)
    by_index = {op.index: f for op, f in zip(dense, folding.layers, strict=True)}
    ops = []
    for op in plan.ops:
        if isinstance(op, DenseOp):
            f = by_index[op.index]
            op = replace(op, pe=f.pe, simd=f.simd, storage=f.storage, fifo_request=f.fifo_depth,
                         buffer=f.buffer)
        elif isinstance(op, ArgMaxOp):
            op = replace(op, pe=folding.layers[-1].pe)
        ops.append(op)
    return replace(plan, ops=tuple(ops), passes=(*plan.passes, "fold"))


def insert_converters(plan: NetworkPlan) -> NetworkPlan:
    """A ConverterOp after each layer whose PE differs from the next layer's SIMD."""
    ops = []
    for op in plan.ops:
        if isinstance(op, DenseOp) and op.index > 0:
            prev = plan.dense[op.index - 1]
            if prev.pe != op.simd:
                ops.append(ConverterOp(prev.index, op.in_features, prev.pe, op.simd))
        ops.append(op)
    return replace(plan, ops=tuple(ops), passes=(*plan.passes, "insert_converters"))


def size_fifos(plan: NetworkPlan) -> NetworkPlan:
    """Insert the FIFOs, by this depth rule:

    - **In front of each layer: none (depth 0)** unless the folding asks for one
      (``fifo_depth``). Every block already has registered handshakes (no combinational path
      crosses a layer boundary), and the MVTU's ping-pong input buffer holds a whole second frame
      while it computes the first: a producer only ever waits on a consumer that is a full frame
      behind, which no FIFO can avoid when the consumer is the slower one (the network runs at the
      slowest layer's II either way, see :func:`predict_ii`). A requested FIFO sits after the
      width converter, ``SIMD`` bits wide.
    - **Output: :data:`OUTPUT_FIFO_DEPTH` (4) results** between the ArgMax and ``m_axis``: at
      least 3 for one result per cycle (a fully parallel network has II 1), it cuts the
      combinational path from ``m_axis_tready`` through the ArgMax into the last layer's
      output, and one more entry rides out short ``m_axis_tready`` pauses.
    """
    ops = []
    for op in plan.ops:
        if isinstance(op, DenseOp):
            depth = op.fifo_request or 0
            if depth:
                ops.append(FifoOp(op.label, op.in_width, depth, op.sf))
        ops.append(op)
        if isinstance(op, ArgMaxOp):
            ops.append(FifoOp("m_axis", op.out_width, OUTPUT_FIFO_DEPTH, 1))
    return replace(plan, ops=tuple(ops), passes=(*plan.passes, "size_fifos"))


def compile_plan(model, folding: Folding | dict | None = None, *,
                 with_scores: bool = True) -> NetworkPlan:
    """lower -> fold (``folding``: a :class:`Folding`, its JSON object, or None for the default
    folding) -> insert_converters -> size_fifos."""
    plan = lower(model, with_scores=with_scores)
    if folding is None:
        folding = Folding.default(plan.dense)
    elif isinstance(folding, dict):
        folding = Folding.from_dict(folding, plan.dense)
    elif not isinstance(folding, Folding):
        raise TypeError(f"folding must be a Folding, a dict or None, not {folding!r}")
    return size_fifos(insert_converters(fold(plan, folding)))


# --- Performance model --------------------------------------------------------------------------


def predict_ii(plan: NetworkPlan) -> int:
    """Cycles between successive frames in the steady state (input always valid, output always
    ready): the largest ``cycles_per_frame`` of any op (and of the input, ``N0/SIMD0`` beats)."""
    return max(plan.dense[0].sf, *(op.cycles_per_frame for op in plan.ops))


def _converter_last(first, spacing, op: ConverterOp) -> int:
    """Cycle in which the converter's last output beat of a frame is valid, when the producer's
    beat ``f`` becomes valid at ``first + f*spacing`` (an MVTU: ``spacing = SF``) and the consumer
    is ready: ``first + 1 + max_j(f(j)*spacing + J-1-j)``, ``J = M/out`` output beats and ``f(j)``
    the input beat holding the last bit of output beat ``j``. (One output beat per cycle at most,
    each one cycle after its last input beat; when the producer is faster than the output side the
    converter pushes back on it and emits a beat every cycle, which is the ``j = 0`` term.)"""
    beats = op.frame_bits // op.out_width
    return first + 1 + max(((j + 1) * op.out_width - 1) // op.in_width * spacing + beats - 1 - j
                           for j in range(beats))


def predict_latency(plan: NetworkPlan) -> int:
    """Cycles from the handshake of a frame's first input beat to its result being valid on
    ``m_axis``, for one frame entering an idle network with its ``N0/SIMD0`` input beats back to
    back and ``m_axis_tready`` high.

    Walks the ops in order, tracking the cycle in which the current stream's last beat of the
    frame is handed over (``last``) and, after an MVTU, when its first output beat is valid and
    their spacing: input ``last = SF0 - 1``; FIFO ``last + 2``; MVTU first output beat at
    ``last + latency`` (4 + tree depth), then one beat every ``SF`` cycles, so its last at
    ``first + (NF-1)*SF``; converter see :func:`_converter_last`; ArgMax ``last + 1``. Nothing
    waits on anything else in an idle network (each MVTU's empty input half takes a whole frame),
    except a converter pushing back on a faster producer, which that formula includes.
    """
    last = plan.dense[0].sf - 1
    first = spacing = None
    for op in plan.ops:
        if isinstance(op, DenseOp):
            first, spacing = last + op.latency, op.sf
            last = first + (op.nf - 1) * op.sf
        elif isinstance(op, ConverterOp):
            last = _converter_last(first, spacing, op)
        elif isinstance(op, FifoOp):
            last += op.latency
        elif isinstance(op, ArgMaxOp):
            last += op.latency
        else:  # pragma: no cover - every op kind is handled above
            raise TypeError(f"unknown op {op!r}")
    return last

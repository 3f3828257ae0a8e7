"""Folding: PE, SIMD, weight storage and FIFO overrides per layer, and the default folding.

Folding file
------------
A small JSON object with one entry per model layer, in order::

    {"layers": [{"pe": 16, "simd": 49, "storage": "bram"},
                {"pe": 16, "simd": 32, "storage": "lut", "fifo_depth": 4}, ...]}

``pe`` must divide the layer's outputs M, ``simd`` its inputs N; for a layer over a feature map
(one with an ``in_shape``: a convolution, a pooling) the channels: ``pe`` divides its output
channels, ``simd`` its input channels C, or, for a convolution of kernel K only, ``simd`` is
``m*C`` for an ``m > 1`` dividing K (each beat of a window then carries ``m`` kernel columns, see
:class:`~xnorflow.hw.blocks.window.SlidingWindow`; :func:`simd_choices`). ``storage`` (``"bram"`` or
``"lut"``, default ``"bram"``) is where the weights live (see
:class:`~xnorflow.hw.blocks.mvtu.MVTU`). ``fifo_depth`` (optional) overrides the depth rule
for the FIFO in front of the layer: 0 for none (except the boundary FIFO that an unpadded
convolution with ``K > S`` behind another layer always has, see
:func:`~xnorflow.hw.compiler.plan.size_fifos`), else at least 3. ``buffer`` (optional:
``"block"``, ``"logic"`` or ``"distributed"``, the last on ECP5 only) places the layer's input
buffer (default: :func:`xnorflow.hw.blocks.mvtu.buffer_style`);
``line_buffer`` (optional, a convolution only: the same three places) its sliding-window
generator's line buffer (default: :func:`xnorflow.hw.compiler.rules.window_buffer_style`).
Anything else is an error naming the layer, e.g.
``layer 2 (hidden2): PE (7) must divide the output channels (256)``.

Default folding (:meth:`Folding.default`)
-----------------------------------------
A target initiation interval ``T`` (default ``ceil(max over layers of N*M / 256)``: the largest
layer, the 8-bit first layer of an MNIST MLP, gets about 256 lanes) and, per layer, the divisor
pair with the fewest lanes ``PE*SIMD`` such that its cycles per frame are at most ``T``
(``(M/PE)*(N/SIMD)``; an op may state its own, ``cycles_for(pe, simd)``; where no pair reaches
``T``, as for a convolution whose input beats alone take longer, the pair of fewest cycles);
SIMD among the divisors of N (C) only: a convolution's ``m*C`` values are left to the
auto-folder (:mod:`~xnorflow.hw.compiler.autofold`), which prices them;
among equally many lanes the larger SIMD (one wide popcount costs less than several accumulators
and threshold comparators). Weights go to block RAM when a PE's weight memory has at least
:data:`BRAM_MIN_WORDS` words, else to LUTs.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from xnorflow.hw.compiler.rules import window_simd_choices

__all__ = ["BRAM_MIN_WORDS", "DEFAULT_LANES", "FULL_RATE_DEPTH", "Folding", "FoldingError",
           "LayerFolding", "layer_cycles", "layer_extents", "simd_choices"]

#: Lanes (PE*SIMD) of the largest layer under the default folding.
DEFAULT_LANES = 256
#: The default folding keeps weights in block RAM from this many words per PE memory.
BRAM_MIN_WORDS = 64
#: Smallest FIFO that passes one beat per cycle (``StreamFIFO.FULL_RATE_DEPTH``).
FULL_RATE_DEPTH = 3
_STORAGE = ("bram", "lut")
_LAYER_KEYS = ("pe", "simd", "storage", "fifo_depth", "buffer", "line_buffer")
_BUFFERS = ("block", "logic", "distributed")


class FoldingError(ValueError):
    """A folding that is malformed or does not fit the model; the message names the layer."""


def _is_int(value):
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def divisors(n):
    """The divisors of ``n``, ascending."""
    return [d for d in range(1, n + 1) if n % d == 0]


# --- Folding ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LayerFolding:
    """How one layer is folded: ``pe`` divides M, ``simd`` divides N (a convolution: see
    :func:`simd_choices`)."""

    pe: int
    simd: int
    storage: str = "bram"
    #: Depth of the FIFO in front of the layer; None: the rule of :func:`size_fifos`.
    fifo_depth: int | None = None
    #: Where the input buffer lives; None: :func:`xnorflow.hw.blocks.mvtu.buffer_style`.
    buffer: str | None = None
    #: A convolution's line buffer; None: :func:`xnorflow.hw.compiler.rules.window_buffer_style`.
    line_buffer: str | None = None

    def to_dict(self) -> dict:
        d = {"pe": self.pe, "simd": self.simd, "storage": self.storage}
        if self.fifo_depth is not None:
            d["fifo_depth"] = self.fifo_depth
        if self.buffer is not None:
            d["buffer"] = self.buffer
        if self.line_buffer is not None:
            d["line_buffer"] = self.line_buffer
        return d


def layer_extents(layer) -> tuple[int, int]:
    """What PE and SIMD must divide: the output and input channels of a layer over a feature map
    (it has ``in_shape`` and ``out_shape``), else ``out_features`` and ``in_features``."""
    if hasattr(layer, "in_shape"):
        return layer.out_shape[2], layer.in_shape[2]
    return layer.out_features, layer.in_features


def _is_conv(layer) -> bool:
    return getattr(layer, "kind", None) == "conv2d"


def simd_choices(layer) -> list[int]:
    """The SIMD values ``layer`` accepts, ascending: the divisors of its inputs N (of a feature
    map's channels C), and for a convolution also ``m*C`` for every ``m > 1`` dividing its
    kernel K (:func:`~xnorflow.hw.compiler.rules.window_simd_choices`)."""
    n = layer_extents(layer)[1]
    if _is_conv(layer):
        return window_simd_choices(n, layer.kernel)
    return divisors(n)


def layer_cycles(layer, pe: int, simd: int):
    """Cycles per frame of ``layer`` under ``(pe, simd)``: the op's own ``cycles_for`` where it
    has one, else ``(M/PE)*(N/SIMD)``."""
    cycles_for = getattr(layer, "cycles_for", None)
    if cycles_for is not None:
        return cycles_for(pe, simd)
    return (layer.out_features // pe) * (layer.in_features // simd)


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
            line_buffer = entry.get("line_buffer")
            for key, value in (("buffer", buffer), ("line_buffer", line_buffer)):
                if value is not None and value not in _BUFFERS:
                    raise FoldingError(f"{where}: {key} ({value!r}) must be 'block', 'logic' "
                                       "or 'distributed'")
            if not _is_int(pe) or pe < 1:
                raise FoldingError(f"{where}: PE ({pe!r}) must be a positive integer")
            if not _is_int(simd) or simd < 1:
                raise FoldingError(f"{where}: SIMD ({simd!r}) must be a positive integer")
            if storage not in _STORAGE:
                raise FoldingError(f"{where}: storage ({storage!r}) must be 'bram' or 'lut'")
            if depth is not None and (not _is_int(depth) or depth < 0
                                      or 0 < depth < FULL_RATE_DEPTH):
                raise FoldingError(f"{where}: fifo_depth ({depth!r}) must be 0 (no FIFO) or at "
                                   f"least {FULL_RATE_DEPTH}")
            parsed.append(LayerFolding(int(pe), int(simd), storage,
                                       None if depth is None else int(depth), buffer,
                                       line_buffer))
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
            for key in ("buffer", "line_buffer"):
                if getattr(layer, key) == "distributed" and family != "ecp5":
                    raise FoldingError(f"layer {index}: {key} 'distributed' (LUT RAM) exists on "
                                       f"ECP5 only, not on {family}; use 'logic' or 'block'")

    def check(self, layers: Sequence) -> None:
        """Check against the model's layers (anything with ``name``, ``in_features`` and
        ``out_features``, or ``in_shape`` and ``out_shape``): one entry per layer, PE | M,
        SIMD | N (channels of a feature map), or for a convolution SIMD = m*C with m > 1 dividing
        K (:func:`simd_choices`)."""
        if len(self.layers) != len(layers):
            raise FoldingError(f"folding has {len(self.layers)} layer entries but the model has "
                               f"{len(layers)} layers")
        for index, (f, layer) in enumerate(zip(self.layers, layers, strict=True)):
            where = _where(index, layers)
            m, n = layer_extents(layer)
            if m % f.pe:
                raise FoldingError(f"{where}: PE ({f.pe}) must divide the output channels ({m})")
            if _is_conv(layer) and f.simd not in simd_choices(layer):
                raise FoldingError(f"{where}: SIMD ({f.simd}) must divide the input channels "
                                   f"({n}) or be m*C with m > 1 dividing the kernel "
                                   f"({layer.kernel})")
            if not _is_conv(layer) and n % f.simd:
                raise FoldingError(f"{where}: SIMD ({f.simd}) must divide the input channels "
                                   f"({n})")
            if f.line_buffer is not None and getattr(layer, "kind", None) != "conv2d":
                raise FoldingError(f"{where}: line_buffer applies to a convolution only")

    @classmethod
    def default(cls, layers: Sequence, target_ii: int | None = None) -> Folding:
        """The default folding of the module docstring for the model's ``layers``."""
        if target_ii is None:
            target_ii = max(1, -(-max(layer_cycles(la, 1, 1) for la in layers) // DEFAULT_LANES))
        if not _is_int(target_ii) or target_ii < 1:
            raise FoldingError(f"target II ({target_ii!r}) must be a positive integer")
        result = []
        for layer in layers:
            m, n = layer_extents(layer)
            best = None
            for pe in divisors(m):
                for simd in divisors(n):
                    # within the target (0) the fewest lanes, else the fewest cycles
                    key = (max(0, layer_cycles(layer, pe, simd) - target_ii), pe * simd, -simd)
                    if best is None or key < best[0]:
                        best = (key, pe, simd)
            _, pe, simd = best
            # words of a PE's weight memory (a convolution's rows have ``window`` = K*K*C bits)
            words = (m // pe) * (getattr(layer, "window", n) // simd)
            result.append(LayerFolding(pe, simd, "bram" if words >= BRAM_MIN_WORDS else "lut"))
        return cls(tuple(result))

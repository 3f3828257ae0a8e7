"""The exported integer model and its file format.

An exported network is an ordered list of :class:`DenseLayer` with bit-packed weights, integer
thresholds and directions (see ``docs/semantics.md`` for what they mean). It is stored as one
``.npz`` file (no pickles) holding:

- ``manifest``: UTF-8 JSON (as a ``uint8`` array) with ``format`` (``"xnorflow-model"``),
  ``version`` (:data:`FORMAT_VERSION`), ``input`` (shape, dtype, zero point, scale), ``classes``,
  one entry per layer (``name``, ``kind``, ``in_features``, ``out_features``, ``input_bits``,
  ``output``), ``provenance`` (dataset, seed, accuracy measured, training settings) and
  ``content_hash``;
- per layer ``i``: ``layer{i}.weights`` (``uint8``, shape ``(M, ceil(N/8))``, LSB-first rows) and,
  for threshold layers, ``layer{i}.thresholds`` (``int64``, ``(M,)``) and
  ``layer{i}.directions`` (``int8``, ``(M,)``, +1 or -1).

``content_hash`` is the SHA-256 of the canonical manifest JSON (without the hash) followed by the
name, dtype, shape and bytes of every array, so any change to the weights or the manifest is
caught on load. Loading validates everything and raises :class:`ModelFormatError` naming the layer
and the field.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "LAYER_KINDS",
    "DenseLayer",
    "Model",
    "ModelFormatError",
    "accumulator_range",
    "pack_bits",
    "unpack_bits",
]

FORMAT_NAME = "xnorflow-model"
FORMAT_VERSION = 1

#: Real value of a pixel is ``x * INPUT_SCALE`` (zero point 0), see docs/semantics.md §1.
INPUT_SCALE = 2.0**-8


class ModelFormatError(ValueError):
    """A model file or model object that does not follow the format."""


def pack_bits(bits: np.ndarray) -> np.ndarray:
    """Pack the last axis of a 0/1 array LSB-first into bytes (docs/semantics.md §4)."""
    bits = np.asarray(bits)
    if bits.size and not np.isin(bits, (0, 1)).all():
        raise ValueError("bits must be 0 or 1")
    return np.packbits(bits.astype(np.uint8), axis=-1, bitorder="little")


def unpack_bits(packed: np.ndarray, count: int) -> np.ndarray:
    """Inverse of :func:`pack_bits`: the first ``count`` bits of each row, as ``uint8`` 0/1."""
    return np.unpackbits(np.asarray(packed, dtype=np.uint8), axis=-1, count=count,
                         bitorder="little")


def accumulator_range(input_bits: int, in_features: int) -> tuple[int, int]:
    """Inclusive range of a layer's accumulator ``acc_i`` (docs/semantics.md §3): a sum of
    ``in_features`` pixels in [0, 255] times ±1 on 8-bit input, a popcount of ``in_features``
    bits on binary input. The one statement of it that the exporter, the compiler and the
    gateware use."""
    if input_bits == 8:
        return -255 * in_features, 255 * in_features
    return 0, in_features


@dataclass(frozen=True, eq=False)
class DenseLayer:
    """One dense binarized layer (docs/semantics.md §3).

    ``weights`` are packed rows (``uint8``, ``(out_features, ceil(in_features/8))``).
    ``thresholds``/``directions`` are ``None`` for the score-output (last) layer.
    ``input_bits`` is 8 for the layer on the frame's pixels, 1 for binary activations.
    """

    name: str
    in_features: int
    out_features: int
    input_bits: int
    weights: np.ndarray
    thresholds: np.ndarray | None = None
    directions: np.ndarray | None = None

    kind: ClassVar[str] = "dense"

    @property
    def output(self) -> str:
        """``"bits"`` for a threshold layer, ``"scores"`` for the last layer."""
        return "scores" if self.thresholds is None else "bits"

    @property
    def acc_range(self) -> tuple[int, int]:
        """Inclusive range of the accumulator ``acc_i`` (:func:`accumulator_range`)."""
        return accumulator_range(self.input_bits, self.in_features)

    def manifest_entry(self) -> dict:
        """The layer's entry in the file's manifest (its arrays: :meth:`arrays`)."""
        return {"name": self.name, "kind": self.kind, "in_features": self.in_features,
                "out_features": self.out_features, "input_bits": self.input_bits,
                "output": self.output}

    def arrays(self) -> dict[str, np.ndarray]:
        """The layer's arrays in the file, by field name."""
        arrays = {"weights": self.weights}
        if self.thresholds is not None:
            arrays["thresholds"] = self.thresholds
            arrays["directions"] = self.directions
        return arrays

    @classmethod
    def from_file(cls, entry: dict, arrays: dict[str, np.ndarray], where: str) -> DenseLayer:
        """The layer of a manifest ``entry`` and its ``arrays`` (by field name); ``where`` names
        it in errors."""
        if arrays.get("weights") is None:
            raise ModelFormatError(f"{where} field 'weights': missing array")
        return cls(name=entry["name"], in_features=entry["in_features"],
                   out_features=entry["out_features"], input_bits=entry["input_bits"],
                   weights=arrays["weights"], thresholds=arrays.get("thresholds"),
                   directions=arrays.get("directions"))

    def weight_bits(self) -> np.ndarray:
        """The unpacked weight bits, ``uint8`` 0/1 of shape ``(M, N)``."""
        return unpack_bits(self.weights, self.in_features)

    def validate(self, index: int) -> None:
        where = f"layer {index} ({self.name})"

        def fail(fld: str, msg: str) -> None:
            raise ModelFormatError(f"{where} field '{fld}': {msg}")

        for fld in ("in_features", "out_features"):
            v = getattr(self, fld)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                fail(fld, f"must be a positive integer, got {v!r}")
        if self.input_bits not in (1, 8):
            fail("input_bits", f"must be 1 or 8, got {self.input_bits!r}")
        n, m = self.in_features, self.out_features
        w = self.weights
        if not isinstance(w, np.ndarray) or w.dtype != np.uint8:
            fail("weights", f"must be a uint8 array, got {getattr(w, 'dtype', type(w))}")
        nbytes = (n + 7) // 8
        if w.shape != (m, nbytes):
            fail("weights", f"shape {w.shape} does not match out_features x ceil(in_features/8)"
                 f" = ({m}, {nbytes})")
        if n % 8 and (w[:, -1] >> (n % 8)).any():
            fail("weights", f"padding bits above bit {n % 8} of the last byte must be 0")
        if (self.thresholds is None) != (self.directions is None):
            fail("thresholds", "thresholds and directions must both be present or both absent")
        if self.thresholds is None:
            return
        t, d = self.thresholds, self.directions
        if not isinstance(t, np.ndarray) or t.dtype != np.int64 or t.ndim != 1:
            fail("thresholds", "must be a 1-D int64 array")
        if not isinstance(d, np.ndarray) or d.dtype != np.int8 or d.ndim != 1:
            fail("directions", "must be a 1-D int8 array")
        if t.shape[0] != m:
            fail("thresholds", f"{t.shape[0]} thresholds for {m} output channels (weight rows)")
        if d.shape[0] != m:
            fail("directions", f"{d.shape[0]} directions for {m} output channels (weight rows)")
        bad = ~np.isin(d, (-1, 1))
        if bad.any():
            c = int(np.flatnonzero(bad)[0])
            fail("directions", f"channel {c}: direction {int(d[c])} is not +1 or -1")
        lo, hi = self.acc_range
        t_lo = np.where(d > 0, lo, lo - 1)
        t_hi = np.where(d > 0, hi + 1, hi)
        bad = (t < t_lo) | (t > t_hi)
        if bad.any():
            c = int(np.flatnonzero(bad)[0])
            fail("thresholds", f"channel {c}: threshold {int(t[c])} out of range "
                 f"[{int(t_lo[c])}, {int(t_hi[c])}] for direction {int(d[c]):+d}")


#: The layer class of each layer kind (the manifest's ``kind``).
LAYER_KINDS: dict[str, type] = {"dense": DenseLayer}


@dataclass(eq=False)
class Model:
    """An exported integer-only network (docs/semantics.md)."""

    layers: list[DenseLayer]
    input_shape: tuple[int, ...] = (28, 28)
    provenance: dict = field(default_factory=dict)

    @property
    def in_features(self) -> int:
        return self.layers[0].in_features

    @property
    def classes(self) -> int:
        return self.layers[-1].out_features

    @property
    def topology(self) -> list[int]:
        return [self.layers[0].in_features] + [layer.out_features for layer in self.layers]

    def validate(self) -> None:
        """Check every layer and how the layers connect; raise :class:`ModelFormatError`."""
        if not self.layers:
            raise ModelFormatError("model has no layers")
        if int(np.prod(self.input_shape)) != self.layers[0].in_features:
            raise ModelFormatError(
                f"input shape {tuple(self.input_shape)} has {int(np.prod(self.input_shape))} "
                f"pixels but layer 0 ({self.layers[0].name}) field 'in_features' is "
                f"{self.layers[0].in_features}")
        for i, layer in enumerate(self.layers):
            layer.validate(i)
            want_bits = 8 if i == 0 else 1
            if layer.input_bits != want_bits:
                raise ModelFormatError(
                    f"layer {i} ({layer.name}) field 'input_bits': must be {want_bits} "
                    f"({'the frame' if i == 0 else 'binary activations'}), got {layer.input_bits}")
            last = i == len(self.layers) - 1
            if last and layer.output != "scores":
                raise ModelFormatError(f"layer {i} ({layer.name}) field 'thresholds': the last "
                                       "layer gives class scores and has no thresholds")
            if not last and layer.output != "bits":
                raise ModelFormatError(f"layer {i} ({layer.name}) field 'thresholds': missing; "
                                       "every layer but the last needs thresholds")
            if i and layer.in_features != self.layers[i - 1].out_features:
                raise ModelFormatError(
                    f"layer {i} ({layer.name}) field 'in_features': {layer.in_features} does not "
                    f"match the {self.layers[i - 1].out_features} outputs of layer {i - 1}")

    # -- file format -------------------------------------------------------------------------

    def _manifest(self) -> dict:
        return {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "input": {"shape": list(self.input_shape), "dtype": "uint8", "zero_point": 0,
                      "scale": INPUT_SCALE},
            "classes": self.classes,
            "layers": [layer.manifest_entry() for layer in self.layers],
            "provenance": self.provenance,
        }

    def _arrays(self) -> dict[str, np.ndarray]:
        return {f"layer{i}.{field_name}": array for i, layer in enumerate(self.layers)
                for field_name, array in layer.arrays().items()}

    @staticmethod
    def _hash(manifest: dict, arrays: dict[str, np.ndarray]) -> str:
        h = hashlib.sha256()
        body = {k: v for k, v in manifest.items() if k != "content_hash"}
        h.update(json.dumps(body, sort_keys=True, separators=(",", ":")).encode())
        for name in sorted(arrays):
            a = np.ascontiguousarray(arrays[name])
            h.update(f"\n{name}:{a.dtype.str}:{a.shape}\n".encode())
            h.update(a.tobytes())
        return h.hexdigest()

    @property
    def content_hash(self) -> str:
        """SHA-256 over the manifest and all arrays (hex)."""
        return self._hash(self._manifest(), self._arrays())

    def save(self, path: str | Path) -> Path:
        """Validate and write the model to ``path`` (an ``.npz`` file)."""
        self.validate()
        path = Path(path)
        manifest = self._manifest()
        arrays = self._arrays()
        manifest["content_hash"] = self._hash(manifest, arrays)
        blob = json.dumps(manifest, indent=1, sort_keys=True).encode()
        buf = io.BytesIO()
        np.savez_compressed(buf, manifest=np.frombuffer(blob, dtype=np.uint8), **arrays)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(buf.getvalue())
        return path

    @classmethod
    def load(cls, path: str | Path) -> Model:
        """Read and validate a model file; raise :class:`ModelFormatError` naming the problem."""
        path = Path(path)
        name = path.name
        if not path.is_file():
            raise ModelFormatError(f"{path}: no such model file")
        try:
            with np.load(io.BytesIO(path.read_bytes()), allow_pickle=False) as npz:
                arrays = {k: npz[k] for k in npz.files}
        except (zipfile.BadZipFile, EOFError, OSError, ValueError, KeyError) as e:
            raise ModelFormatError(
                f"{name}: not a readable model file (truncated or not an .npz archive: {e})"
            ) from None
        if "manifest" not in arrays:
            raise ModelFormatError(f"{name}: no 'manifest' entry; not an xnorflow model file")
        try:
            manifest = json.loads(arrays.pop("manifest").tobytes().decode())
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ModelFormatError(f"{name}: manifest is not valid JSON ({e})") from None
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
            raise ModelFormatError(f"{name}: manifest field 'format' is not '{FORMAT_NAME}'")
        version = manifest.get("version")
        if version != FORMAT_VERSION:
            raise ModelFormatError(
                f"{name}: manifest field 'version': unknown format version {version!r} "
                f"(this xnorflow reads version {FORMAT_VERSION})")
        try:
            layers = []
            for i, entry in enumerate(manifest["layers"]):
                where = f"{name}: layer {i} ({entry.get('name')})"
                kind = LAYER_KINDS.get(entry.get("kind"))
                if kind is None:
                    raise ModelFormatError(f"{where} field 'kind': unsupported layer kind "
                                           f"{entry.get('kind')!r} (known: "
                                           f"{', '.join(sorted(LAYER_KINDS))})")
                prefix = f"layer{i}."
                layers.append(kind.from_file(entry, {k[len(prefix):]: v for k, v in arrays.items()
                                                     if k.startswith(prefix)}, where))
            model = cls(layers=layers, input_shape=tuple(manifest["input"]["shape"]),
                        provenance=manifest.get("provenance", {}))
        except (KeyError, TypeError) as e:
            raise ModelFormatError(f"{name}: manifest is missing field {e}") from None
        try:
            model.validate()
        except ModelFormatError as e:
            raise ModelFormatError(f"{name}: {e}") from None
        stored = manifest.get("content_hash")
        actual = cls._hash(manifest, arrays)
        if stored != actual:
            raise ModelFormatError(
                f"{name}: field 'content_hash' mismatch: file says {stored}, content hashes to "
                f"{actual} (the file was modified or corrupted)")
        return model

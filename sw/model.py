"""The exported integer model and its file format.

An exported network is an ordered list of layers (:class:`DenseLayer`, :class:`ConvLayer`,
:class:`PoolLayer`, by their ``kind``: :data:`LAYER_KINDS`) with bit-packed weights, integer
thresholds and directions (see ``docs/semantics.md`` for what they mean, and its section 6 for
the file, field by field). It is stored as one ``.npz`` file (no pickles) holding:

- ``manifest``: UTF-8 JSON (as a ``uint8`` array) with ``format`` (``"xnorflow-model"``),
  ``version`` (1 for dense layers only, 2 with convolutions or pooling: :data:`FORMAT_VERSIONS`),
  ``input`` (shape, dtype, zero point, scale), ``classes``, one entry per layer (its ``kind``
  decides its other fields), ``provenance`` (dataset, seed, accuracy measured, training settings)
  and ``content_hash``;
- per layer ``i``: ``layer{i}.weights`` (``uint8``, shape ``(M, ceil(N/8))``, LSB-first rows;
  ``N = K*K*C`` for a convolution) and, for threshold layers, ``layer{i}.thresholds``
  (``int64``, ``(M,)``) and ``layer{i}.directions`` (``int8``, ``(M,)``, +1 or -1); a pooling
  layer has none.

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
    "FORMAT_VERSIONS",
    "LAYER_KINDS",
    "MapShapes",
    "ConvLayer",
    "ConvShapes",
    "DenseLayer",
    "Model",
    "ModelFormatError",
    "PoolLayer",
    "PoolShapes",
    "accumulator_range",
    "conv_output_size",
    "pack_bits",
    "unpack_bits",
]

FORMAT_NAME = "xnorflow-model"
#: The newest file format version, and every version this code reads.
FORMAT_VERSION = 2
FORMAT_VERSIONS = (1, 2)

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


def conv_output_size(size: int, kernel: int, stride: int, padding: int) -> int:
    """Output rows (or columns) of a convolution over ``size`` rows (columns):
    ``(size + 2P - K) div S + 1`` (docs/semantics.md §5.2)."""
    return (size + 2 * padding - kernel) // stride + 1


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
        _check_weights(fail, self.weights, m, n, "out_features x ceil(in_features/8)")
        if (self.thresholds is None) != (self.directions is None):
            fail("thresholds", "thresholds and directions must both be present or both absent")
        if self.thresholds is not None:
            _check_thresholds(fail, self.thresholds, self.directions, m, *self.acc_range)


def _check_weights(fail, w, m: int, n: int, shape_name: str) -> None:
    """Packed weight rows: ``uint8 (m, ceil(n/8))``, padding bits 0."""
    if not isinstance(w, np.ndarray) or w.dtype != np.uint8:
        fail("weights", f"must be a uint8 array, got {getattr(w, 'dtype', type(w))}")
    nbytes = (n + 7) // 8
    if w.shape != (m, nbytes):
        fail("weights", f"shape {w.shape} does not match {shape_name} = ({m}, {nbytes})")
    if n % 8 and (w[:, -1] >> (n % 8)).any():
        fail("weights", f"padding bits above bit {n % 8} of the last byte must be 0")


def _check_thresholds(fail, t, d, m: int, lo: int, hi: int) -> None:
    """One int64 threshold and one int8 direction (+1/-1) per output channel, each threshold in
    its allowed range (docs/semantics.md §3.2)."""
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
    t_lo = np.where(d > 0, lo, lo - 1)
    t_hi = np.where(d > 0, hi + 1, hi)
    bad = (t < t_lo) | (t > t_hi)
    if bad.any():
        c = int(np.flatnonzero(bad)[0])
        fail("thresholds", f"channel {c}: threshold {int(t[c])} out of range "
             f"[{int(t_lo[c])}, {int(t_hi[c])}] for direction {int(d[c]):+d}")


def _check_positive(fail, fld: str, value) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        fail(fld, f"must be a positive integer, got {value!r}")


def _check_shape(fail, fld: str, shape) -> None:
    if (not isinstance(shape, tuple) or len(shape) != 3
            or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in shape)):
        fail(fld, f"must be three positive integers (height, width, channels), got {shape!r}")


class MapShapes:
    """A layer over a feature map (``in_shape``, ``out_shape``): its sizes as vectors. Shared by
    the model's layers and the compiler's ops of the same kinds."""

    @property
    def in_features(self) -> int:
        return int(np.prod(self.in_shape))

    @property
    def out_features(self) -> int:
        return int(np.prod(self.out_shape))


class ConvShapes(MapShapes):
    """The geometry of a convolution (``in_shape``, ``out_channels``, ``kernel``, ``stride``,
    ``padding``): its window and its output map (docs/semantics.md §5.2)."""

    @property
    def window(self) -> int:
        """Elements of one window, ``K*K*C``: the length of a weight row."""
        return self.kernel * self.kernel * self.in_shape[2]

    @property
    def out_shape(self) -> tuple[int, int, int]:
        """``(OH, OW, M)`` (:func:`conv_output_size`)."""
        h, w, _ = self.in_shape
        k, s, p = self.kernel, self.stride, self.padding
        return (conv_output_size(h, k, s, p), conv_output_size(w, k, s, p), self.out_channels)


class PoolShapes(MapShapes):
    """The geometry of a max-pooling (``in_shape``, ``kernel``): its output map."""

    @property
    def out_shape(self) -> tuple[int, int, int]:
        h, w, c = self.in_shape
        return (h // self.kernel, w // self.kernel, c)


@dataclass(frozen=True, eq=False)
class ConvLayer(ConvShapes):
    """A 2-D convolution with threshold output (docs/semantics.md §5): a ``K x K`` kernel with
    ``stride`` 1 or 2 and ``padding`` 0 or ``K // 2`` over an ``in_shape = (H, W, C)`` feature
    map (channels fastest), ``out_channels`` (M) outputs per position.

    ``weights`` are packed rows (``uint8``, ``(M, ceil(K*K*C/8))``), row ``m`` holding the
    kernel of channel ``m`` in window order (``ky``, then ``kx``, then the input channel,
    fastest). ``pad_value`` fills the positions outside the map: a pixel value in [0, 255] on
    8-bit input, a bit (0 for -1, 1 for +1) on binary input. ``input_bits`` is 8 for the layer
    on the frame's pixels, 1 for binary activations.
    """

    name: str
    in_shape: tuple[int, int, int]
    out_channels: int
    kernel: int
    stride: int
    padding: int
    pad_value: int
    input_bits: int
    weights: np.ndarray
    thresholds: np.ndarray
    directions: np.ndarray

    kind: ClassVar[str] = "conv2d"
    output: ClassVar[str] = "bits"

    @property
    def acc_range(self) -> tuple[int, int]:
        """Inclusive range of the accumulator: that of a dense layer of ``K*K*C`` inputs."""
        return accumulator_range(self.input_bits, self.window)

    def manifest_entry(self) -> dict:
        return {"name": self.name, "kind": self.kind, "in_shape": list(self.in_shape),
                "out_channels": self.out_channels, "kernel": self.kernel,
                "stride": self.stride, "padding": self.padding, "pad_value": self.pad_value,
                "input_bits": self.input_bits, "output": self.output}

    def arrays(self) -> dict[str, np.ndarray]:
        return {"weights": self.weights, "thresholds": self.thresholds,
                "directions": self.directions}

    @classmethod
    def from_file(cls, entry: dict, arrays: dict[str, np.ndarray], where: str) -> ConvLayer:
        for fld in ("weights", "thresholds", "directions"):
            if arrays.get(fld) is None:
                raise ModelFormatError(f"{where} field '{fld}': missing array")
        shape = entry["in_shape"]
        return cls(name=entry["name"], in_shape=tuple(shape) if isinstance(shape, list) else shape,
                   out_channels=entry["out_channels"], kernel=entry["kernel"],
                   stride=entry["stride"], padding=entry["padding"],
                   pad_value=entry["pad_value"], input_bits=entry["input_bits"],
                   weights=arrays["weights"], thresholds=arrays["thresholds"],
                   directions=arrays["directions"])

    def weight_bits(self) -> np.ndarray:
        """The unpacked weight bits, ``uint8`` 0/1 of shape ``(M, K*K*C)``, window order."""
        return unpack_bits(self.weights, self.window)

    def validate(self, index: int) -> None:
        where = f"layer {index} ({self.name})"

        def fail(fld: str, msg: str) -> None:
            raise ModelFormatError(f"{where} field '{fld}': {msg}")

        _check_shape(fail, "in_shape", self.in_shape)
        for fld in ("out_channels", "kernel", "stride"):
            _check_positive(fail, fld, getattr(self, fld))
        if self.input_bits not in (1, 8):
            fail("input_bits", f"must be 1 or 8, got {self.input_bits!r}")
        k = self.kernel
        if self.stride not in (1, 2):
            fail("stride", f"must be 1 or 2, got {self.stride}")
        if self.padding not in (0, k // 2):
            fail("padding", f"must be 0 or kernel // 2 = {k // 2}, got {self.padding!r}")
        top = 255 if self.input_bits == 8 else 1
        if (not isinstance(self.pad_value, int) or isinstance(self.pad_value, bool)
                or not 0 <= self.pad_value <= top):
            what = "a pixel value in [0, 255]" if top == 255 else "a bit, 0 (-1) or 1 (+1)"
            fail("pad_value", f"must be {what}, got {self.pad_value!r}")
        h, w, _ = self.in_shape
        if k > h + 2 * self.padding or k > w + 2 * self.padding:
            fail("kernel", f"{k}x{k} is larger than the input {h}x{w} (padding "
                 f"{self.padding})")
        _check_weights(fail, self.weights, self.out_channels, self.window,
                       "out_channels x ceil(kernel*kernel*channels/8)")
        _check_thresholds(fail, self.thresholds, self.directions, self.out_channels,
                          *self.acc_range)


@dataclass(frozen=True, eq=False)
class PoolLayer(PoolShapes):
    """Max-pooling of ``kernel x kernel`` windows with stride ``kernel`` over the bits of the
    convolution before it (docs/semantics.md §5.3): per channel the OR of the window's bits
    when that layer's direction is +1, the AND when it is -1. ``kernel`` divides the height and
    the width of ``in_shape``."""

    name: str
    in_shape: tuple[int, int, int]
    kernel: int

    kind: ClassVar[str] = "maxpool2d"
    output: ClassVar[str] = "bits"
    input_bits: ClassVar[int] = 1

    def manifest_entry(self) -> dict:
        return {"name": self.name, "kind": self.kind, "in_shape": list(self.in_shape),
                "kernel": self.kernel, "input_bits": self.input_bits, "output": self.output}

    def arrays(self) -> dict[str, np.ndarray]:
        return {}

    @classmethod
    def from_file(cls, entry: dict, arrays: dict[str, np.ndarray], where: str) -> PoolLayer:
        if arrays:
            raise ModelFormatError(f"{where} field '{sorted(arrays)[0]}': a pooling layer has "
                                   "no arrays")
        if entry.get("input_bits", 1) != 1:
            raise ModelFormatError(f"{where} field 'input_bits': a pooling layer takes bits "
                                   f"(1), got {entry['input_bits']!r}")
        shape = entry["in_shape"]
        return cls(name=entry["name"], in_shape=tuple(shape) if isinstance(shape, list) else shape,
                   kernel=entry["kernel"])

    def validate(self, index: int) -> None:
        where = f"layer {index} ({self.name})"

        def fail(fld: str, msg: str) -> None:
            raise ModelFormatError(f"{where} field '{fld}': {msg}")

        _check_shape(fail, "in_shape", self.in_shape)
        _check_positive(fail, "kernel", self.kernel)
        h, w, _ = self.in_shape
        if h % self.kernel or w % self.kernel:
            fail("kernel", f"{self.kernel} does not divide the input {h}x{w}")


#: The layer class of each layer kind (the manifest's ``kind``).
LAYER_KINDS: dict[str, type] = {"dense": DenseLayer, "conv2d": ConvLayer,
                                  "maxpool2d": PoolLayer}


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

    @property
    def input_map(self) -> tuple[int, int, int] | None:
        """The frame as a feature map ``(H, W, C)`` (a 2-D input shape has one channel), or None
        for a 1-D input."""
        shape = tuple(self.input_shape)
        if len(shape) == 2:
            return (*shape, 1)
        return shape if len(shape) == 3 else None

    @property
    def format_version(self) -> int:
        """The file format version this model needs: 1 for dense layers only (files that every
        xnorflow reads), 2 with convolutions or pooling."""
        return 1 if all(layer.kind == "dense" for layer in self.layers) else 2

    def validate(self) -> None:
        """Check every layer and how the layers connect; raise :class:`ModelFormatError`."""
        if not self.layers:
            raise ModelFormatError("model has no layers")
        first = self.layers[0]
        if not hasattr(first, "in_shape") and int(np.prod(self.input_shape)) != first.in_features:
            raise ModelFormatError(
                f"input shape {tuple(self.input_shape)} has {int(np.prod(self.input_shape))} "
                f"pixels but layer 0 ({self.layers[0].name}) field 'in_features' is "
                f"{self.layers[0].in_features}")
        for i, layer in enumerate(self.layers):
            where = f"layer {i} ({layer.name})"
            self._check_chain(i)
            layer.validate(i)
            want_bits = 8 if i == 0 else 1
            if i == 0 and layer.kind == "maxpool2d":
                raise ModelFormatError(f"{where} field 'kind': a pooling layer cannot take the "
                                       "frame (it pools the bits of a convolution)")
            if layer.input_bits != want_bits:
                raise ModelFormatError(
                    f"{where} field 'input_bits': must be {want_bits} "
                    f"({'the frame' if i == 0 else 'binary activations'}), got {layer.input_bits}")
            last = i == len(self.layers) - 1
            if last and layer.kind != "dense":
                raise ModelFormatError(f"{where} field 'kind': the last layer must be dense (it "
                                       f"gives the class scores), got {layer.kind!r}")
            if last and layer.output != "scores":
                raise ModelFormatError(f"{where} field 'thresholds': the last "
                                       "layer gives class scores and has no thresholds")
            if not last and layer.output != "bits":
                raise ModelFormatError(f"{where} field 'thresholds': missing; "
                                       "every layer but the last needs thresholds")

    def _check_chain(self, i: int) -> None:
        """Layer ``i`` takes what the layer before gives (or the frame): the root cause is named
        before the fields that follow from it (a window's weight shape, say)."""
        layer = self.layers[i]
        where = f"layer {i} ({layer.name})"
        previous = self.layers[i - 1] if i else None
        if layer.kind == "maxpool2d" and previous is not None and previous.kind != "conv2d":
            raise ModelFormatError(f"{where} field 'kind': a pooling layer must follow a "
                                   f"convolution, not {previous.kind!r} (it pools that "
                                   "layer's thresholded bits)")
        shape = getattr(layer, "in_shape", None)
        if isinstance(shape, tuple) and len(shape) == 3 and all(isinstance(v, int) for v in shape):
            given = self.input_map if previous is None else getattr(previous, "out_shape",
                                                                    None)
            source = "the input" if previous is None else f"layer {i - 1}"
            if given is None:
                raise ModelFormatError(f"{where} field 'in_shape': needs a feature map "
                                       f"(height, width, channels) but {source} is a vector")
            if tuple(layer.in_shape) != tuple(given):
                (h, w, c), (gh, gw, gc) = layer.in_shape, given
                what = (f"{c} channels do not chain with the {gc} channels of {source}"
                        if (h, w) == (gh, gw) else
                        f"{h}x{w}x{c} does not match the {gh}x{gw}x{gc} output of {source}")
                raise ModelFormatError(f"{where} field 'in_shape': {what}")
        elif (i and isinstance(layer.in_features, int) and not hasattr(layer, "in_shape")
              and layer.in_features != previous.out_features):
            raise ModelFormatError(
                f"{where} field 'in_features': {layer.in_features} does not "
                f"match the {previous.out_features} outputs of layer {i - 1}")

    # -- file format -------------------------------------------------------------------------

    def _manifest(self) -> dict:
        return {
            "format": FORMAT_NAME,
            "version": self.format_version,
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
        if version not in FORMAT_VERSIONS:
            raise ModelFormatError(
                f"{name}: manifest field 'version': unknown format version {version!r} "
                f"(this xnorflow reads versions {', '.join(map(str, FORMAT_VERSIONS))})")
        try:
            layers = []
            for i, entry in enumerate(manifest["layers"]):
                where = f"{name}: layer {i} ({entry.get('name')})"
                kind = LAYER_KINDS.get(entry.get("kind"))
                if kind is not None and kind is not DenseLayer and version < 2:
                    raise ModelFormatError(f"{where} field 'kind': {entry.get('kind')!r} needs "
                                           f"format version 2, the file says {version}")
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

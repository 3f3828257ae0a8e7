"""Network specs: the layer-list language of ``xnorflow train --layers`` and the presets.

A spec is the input followed by the layers, joined by ``-``::

    784-256-256-10                                   an MLP on 784 pixels (FINN's SFC: sfc)
    28x28x1-c32k3-p2-c64k3-c96k3-p3-10               a small CNN (scnv)
    28x28x1-c32k3s2-c32k3-c32k3-p3-10                a CNN for the iCE40UP5K board (icnv)
    32x32x1-c64k3-c64k3-p2-c128k3-c128k3-p2-c256k3-c256k3-512-512-10   FINN's CNV (cnv)

- the input: ``N`` (a vector of N pixels), ``HxW`` (an image, one channel) or ``HxWxC``;
- ``M`` (or ``dM``): a dense layer of M outputs; the last layer is dense, its M the classes.
  After a convolution or a pooling the map is flattened (row, column, channel; channels fastest);
- ``cMkK[sS][p][vV]``: a K x K convolution of M output channels, stride S (1 or 2, default 1),
  ``p`` pads by ``K // 2`` (default: no padding), ``vV`` the pad value (a pixel value 0-255 for a
  convolution on the frame, a bit 0 (-1) or 1 (+1) after it; default 0);
- ``pK`` (or ``poolK``): K x K max-pooling with stride K, after a convolution.

:func:`parse` checks the shapes as it goes and names the token of any problem.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .model import conv_output_size

__all__ = ["PRESETS", "Conv", "Dense", "Pool", "Spec", "parse"]

#: Named specs: FINN's MLPs (TFC, SFC, LFC) and CNV; scnv, a small CNN; icnv, a CNN whose board
#: design (serial bridge and on-device benchmark included) fits the iCE40UP5K of the iCEBreaker:
#: its first convolution has stride 2 instead of a max-pool behind it, since a pool's row buffer
#: is flip-flops (13 columns x 32 channels = 416 of the UP5K's 5,280 logic cells).
PRESETS = {
    "tfc": "784-64-64-64-10",
    "sfc": "784-256-256-256-10",
    "lfc": "784-1024-1024-1024-10",
    "cnv": "32x32x1-c64k3-c64k3-p2-c128k3-c128k3-p2-c256k3-c256k3-512-512-10",
    "scnv": "28x28x1-c32k3-p2-c64k3-c96k3-p3-10",
    "icnv": "28x28x1-c32k3s2-c32k3-c32k3-p3-10",
}


@dataclass(frozen=True)
class Dense:
    in_features: int
    out_features: int


class _Map:
    """A layer over a feature map: its sizes as vectors (``in_shape``, ``out_shape`` given)."""

    @property
    def in_features(self) -> int:
        h, w, c = self.in_shape
        return h * w * c

    @property
    def out_features(self) -> int:
        h, w, c = self.out_shape
        return h * w * c


@dataclass(frozen=True)
class Conv(_Map):
    in_shape: tuple[int, int, int]
    out_channels: int
    kernel: int
    stride: int = 1
    padding: int = 0
    pad_value: int = 0

    @property
    def out_shape(self) -> tuple[int, int, int]:
        h, w, _ = self.in_shape
        k, s, p = self.kernel, self.stride, self.padding
        return (conv_output_size(h, k, s, p), conv_output_size(w, k, s, p), self.out_channels)


@dataclass(frozen=True)
class Pool(_Map):
    in_shape: tuple[int, int, int]
    kernel: int

    @property
    def out_shape(self) -> tuple[int, int, int]:
        h, w, c = self.in_shape
        return (h // self.kernel, w // self.kernel, c)


@dataclass(frozen=True)
class Spec:
    """A parsed spec: the input shape and the layers, every shape checked."""

    text: str
    input_shape: tuple[int, ...]
    layers: tuple[Dense | Conv | Pool, ...]

    @property
    def classes(self) -> int:
        return self.layers[-1].out_features

    @property
    def is_mlp(self) -> bool:
        return all(isinstance(layer, Dense) for layer in self.layers)

    @property
    def sizes(self) -> list[int]:
        """An MLP's sizes ``[N0, M1, ..., classes]``."""
        return [self.layers[0].in_features] + [layer.out_features for layer in self.layers]


_CONV = re.compile(r"c(\d+)k(\d+)(?:s(\d+))?(p)?(?:v(\d+))?")
_POOL = re.compile(r"p(?:ool)?(\d+)")
_DENSE = re.compile(r"d?(\d+)")


def parse(text: str | list[int]) -> Spec:
    """A preset name or a spec (see the module docstring); ``ValueError`` naming the token of
    any problem. A list of integers is an MLP's sizes."""
    if isinstance(text, list):
        text = "-".join(str(v) for v in text)
    source = PRESETS.get(text.strip().lower(), text.strip())
    tokens = [t for t in source.replace(",", "-").split("-") if t]
    if len(tokens) == 1 and not re.fullmatch(r"\d+(x\d+){0,2}", tokens[0].lower()):
        raise ValueError(f"spec {text!r} is neither a preset ({', '.join(PRESETS)}) nor a layer "
                         "list like 784-256-256-10")
    if len(tokens) < 2:
        raise ValueError(f"spec {text!r} needs an input and at least one layer, like 784-128-10 "
                         f"(presets: {', '.join(PRESETS)})")
    try:
        dims = tuple(int(v) for v in tokens[0].lower().split("x"))
    except ValueError:
        raise ValueError(f"spec {text!r}: the input {tokens[0]!r} is neither a preset "
                         f"({', '.join(PRESETS)}) nor N, HxW or HxWxC") from None
    if len(dims) not in (1, 2, 3) or any(v < 1 for v in dims):
        raise ValueError(f"spec {text!r}: the input {tokens[0]!r} must be N, HxW or HxWxC of "
                         "positive sizes")
    shape: tuple[int, ...] = dims if len(dims) != 2 else (*dims, 1)
    layers: list[Dense | Conv | Pool] = []
    for token in tokens[1:]:
        where = f"spec {text!r}, layer {token!r}"
        t = token.lower()
        if m := _CONV.fullmatch(t):
            if len(shape) != 3:
                raise ValueError(f"{where}: a convolution needs a feature map, not a vector of "
                                 f"{shape[0]}")
            out, k = int(m.group(1)), int(m.group(2))
            stride = int(m.group(3) or 1)
            pad_value = int(m.group(5) or 0)
            first = not layers
            if out < 1 or k < 1 or stride not in (1, 2):
                raise ValueError(f"{where}: needs at least one channel, a kernel of at least 1 "
                                 "and stride 1 or 2")
            if pad_value > (255 if first else 1):
                raise ValueError(f"{where}: pad value {pad_value} must be "
                                 + ("a pixel value 0-255" if first else "a bit, 0 or 1"))
            layer = Conv(shape, out, k, stride, k // 2 if m.group(4) else 0, pad_value)
            h, w, _ = shape
            if k > h + 2 * layer.padding or k > w + 2 * layer.padding:
                raise ValueError(f"{where}: kernel {k}x{k} is larger than its input {h}x{w}")
            shape = layer.out_shape
        elif m := _POOL.fullmatch(t):
            k = int(m.group(1))
            if not layers or not isinstance(layers[-1], Conv):
                raise ValueError(f"{where}: a pooling layer must follow a convolution")
            h, w, _ = shape
            if k < 1 or h % k or w % k:
                raise ValueError(f"{where}: {k} does not divide the {h}x{w} map")
            layer = Pool(shape, k)
            shape = layer.out_shape
        elif m := _DENSE.fullmatch(t):
            n = 1
            for v in shape:
                n *= v
            out = int(m.group(1))
            if out < 1:
                raise ValueError(f"{where}: needs at least one output")
            layer = Dense(n, out)
            shape = (out,)
        else:
            raise ValueError(f"{where}: not a layer (M or dM dense, cMkK[sS][p][vV] "
                             "convolution, pK pooling)")
        layers.append(layer)
    if not isinstance(layers[-1], Dense):
        raise ValueError(f"spec {text!r}: the last layer must be dense (the class scores)")
    return Spec(source, dims, tuple(layers))

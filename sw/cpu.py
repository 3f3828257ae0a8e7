"""CPU implementations of an exported model, for the accelerator-versus-CPU benchmark.

All compute exactly the integer semantics of ``docs/semantics.md`` (tests check them against the
golden model bit for bit), so the benchmark compares equal work:

- :class:`GoldenModel` (``xnorflow.golden``): bit-packed NumPy, XOR + ``np.bitwise_count`` on
  64-bit words;
- :class:`NativeCPUModel` (``native-bitpacked``, when a C compiler is present): the C kernels of
  :mod:`xnorflow.native` on bit-packed words, XNOR + popcount on the widest vectors the CPU has;
- :class:`TorchCPUModel`: PyTorch float32 with ±1 weights, so every layer is one BLAS matrix
  product (exact: every partial sum is an integer below 2**24), thresholds compared on the
  result; this is what a strong CPU deployment of a BNN looks like on a machine without
  popcount-specialised kernels, and it uses every core torch is allowed.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .golden import GoldenModel
from .model import Model
from .native import NativeModel

__all__ = ["NativeCPUModel", "TorchCPUModel", "implementations"]


class TorchCPUModel:
    """Integer inference with float32 ±1 products in PyTorch.

    Dense layer 0: ``acc = x @ S^T`` on the pixel values; later layers: ``dot = a @ S^T`` on ±1
    activations, with ``p = (dot + N) / 2``; thresholds and directions as in the model. The
    weights are stored pre-transposed and contiguous, each column multiplied by its channel's
    direction, so a layer is one matrix product and one comparison. A convolution is one
    ``conv2d`` on channels-last maps (the input padded with the pad value, a pixel or ±1),
    its kernels multiplied by the directions alike; a max-pooling after it takes the maximum of
    the ±1 outputs of its rising channels (OR) and the minimum of its falling ones (AND). Every
    partial sum is an integer below 2**24, so float32 is exact. Inference runs under
    ``torch.inference_mode``.
    """

    def __init__(self, model: Model):
        model.validate()
        if 255 * model.in_features >= 2**24:
            raise ValueError("first layer too wide for exact float32 accumulation")
        self.model = model
        self.steps = []
        for i, layer in enumerate(model.layers):
            if layer.kind == "maxpool2d":
                rising = torch.from_numpy(model.layers[i - 1].directions.astype(np.float32))
                self.steps.append(("pool", layer.kernel, rising.view(1, -1, 1, 1) > 0))
                continue
            conv = layer.kind == "conv2d"
            n = layer.window if conv else layer.in_features
            s = torch.from_numpy(layer.weight_bits().astype(np.float32) * 2 - 1)  # (M, N) ±1
            if layer.thresholds is None:
                self.steps.append(("dense", layer.input_bits, n, s.t().contiguous(), None))
                continue
            t = torch.from_numpy(layer.thresholds.astype(np.float32))
            d = torch.from_numpy(layer.directions.astype(np.float32))
            # The direction folds into the weights: d * acc >= d * T is acc >= T for d = +1 and
            # acc <= T for d = -1. For binary input p = (acc + N) / 2, so p >= T is
            # acc >= 2T - N. Every value is a small integer, exact in float32.
            bound = d * t if layer.input_bits == 8 else d * (2 * t - n)
            if not conv:
                wt = (s * d[:, None]).t().contiguous()  # (N, M), pre-transposed
                self.steps.append(("dense", layer.input_bits, n, wt, bound))
                continue
            h, w, c = layer.in_shape
            k = layer.kernel
            kernels = (s * d[:, None]).view(-1, k, k, c).permute(0, 3, 1, 2)  # (M, C, K, K)
            pad = float(layer.pad_value if layer.input_bits == 8 else 2 * layer.pad_value - 1)
            self.steps.append(("conv", layer, kernels.contiguous(
                memory_format=torch.channels_last), bound.view(1, -1, 1, 1), pad))

    @torch.inference_mode()
    def scores(self, frames: np.ndarray) -> torch.Tensor:
        h = torch.from_numpy(np.asarray(frames).astype(np.float32))  # (B, N0), a new array
        first = self.model.layers[0]
        if first.kind == "conv2d":
            hh, ww, c = first.in_shape
            h = h.view(len(h), hh, ww, c).permute(0, 3, 1, 2).contiguous(
                memory_format=torch.channels_last)
        for step in self.steps:
            if step[0] == "pool":
                _, k, rising = step
                h = torch.where(rising, F.max_pool2d(h, k), -F.max_pool2d(-h, k))
                continue
            if step[0] == "conv":
                _, layer, kernels, bound, pad = step
                p = layer.padding
                x = F.pad(h, (p, p, p, p), value=pad) if p else h
                acc = F.conv2d(x, kernels, stride=layer.stride)
                h = torch.where(acc >= bound, 1.0, -1.0)
                continue
            _, input_bits, n, wt, bound = step
            if h.dim() == 4:  # a map, flattened in the model's order (row, column, channel)
                h = h.permute(0, 2, 3, 1).reshape(len(h), -1)
            acc = h @ wt
            if bound is None:
                return (acc + n) * 0.5 if input_bits == 1 else acc  # popcount p, or acc
            h = torch.where(acc >= bound, 1.0, -1.0)
        raise AssertionError("unreachable: the last layer has scores")

    def run(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Integer scores ``(B, classes)`` and classes ``(B,)`` (argmax, ties to the lowest)."""
        s = self.scores(frames)
        return s.to(torch.int64).numpy(), s.argmax(dim=1).numpy()

    def predict(self, frames: np.ndarray) -> np.ndarray:
        return self.scores(frames).argmax(dim=1).numpy()


class NativeCPUModel(NativeModel):
    """:class:`~xnorflow.native.NativeModel` with as many threads as torch is set to use
    (``torch.set_num_threads``), so a benchmark row's thread count holds for every
    implementation alike."""

    def run(self, frames) -> tuple[np.ndarray, np.ndarray]:
        self.threads = torch.get_num_threads()
        return super().run(frames)


def implementations(model: Model) -> dict[str, object]:
    """The CPU implementations by name, each with ``predict(frames) -> classes``. The native
    backend is listed only where its library builds (a C compiler is present)."""
    impls = {"golden-numpy-bitpacked": GoldenModel(model)}
    native = NativeCPUModel(model)
    if native.available:
        impls["native-bitpacked"] = native
    impls["torch-float32"] = TorchCPUModel(model)
    return impls

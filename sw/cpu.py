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

from .golden import GoldenModel
from .model import Model
from .native import NativeModel

__all__ = ["NativeCPUModel", "TorchCPUModel", "implementations"]


class TorchCPUModel:
    """Integer inference with float32 ±1 matrix products in PyTorch.

    Layer 0: ``acc = x @ S^T`` on the pixel values; later layers: ``dot = a @ S^T`` on ±1
    activations, with ``p = (dot + N) / 2``; thresholds and directions as in the model. The
    weights are stored pre-transposed and contiguous, each column multiplied by its channel's
    direction, so a layer is one matrix product and one comparison; inference runs under
    ``torch.inference_mode``.
    """

    def __init__(self, model: Model):
        model.validate()
        if 255 * model.in_features >= 2**24:
            raise ValueError("first layer too wide for exact float32 accumulation")
        self.model = model
        self.layers = []
        for layer in model.layers:
            s = torch.from_numpy(layer.weight_bits().astype(np.float32) * 2 - 1)  # (M, N) ±1
            n = layer.in_features
            if layer.thresholds is None:
                self.layers.append((layer.input_bits, n, s.t().contiguous(), None))
                continue
            t = torch.from_numpy(layer.thresholds.astype(np.float32))
            d = torch.from_numpy(layer.directions.astype(np.float32))
            # The direction folds into the weight columns: d * acc >= d * T is acc >= T for
            # d = +1 and acc <= T for d = -1. For binary input p = (acc + N) / 2, so p >= T is
            # acc >= 2T - N. Every value is a small integer, exact in float32.
            bound = d * t if layer.input_bits == 8 else d * (2 * t - n)
            wt = (s * d[:, None]).t().contiguous()  # (N, M), pre-transposed
            self.layers.append((layer.input_bits, n, wt, bound))

    @torch.inference_mode()
    def scores(self, frames: np.ndarray) -> torch.Tensor:
        h = torch.from_numpy(np.asarray(frames).astype(np.float32))  # (B, N0), a new array
        for input_bits, n, wt, bound in self.layers:
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

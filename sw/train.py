"""Training binarized MLPs in PyTorch (BinaryNet style).

- Weights are binary in the forward pass (``sign`` with ``sign(0) = +1``) and kept as latent
  reals clipped to ``[-1, 1]``; gradients pass straight through (STE).
- Activations are ``sign(BN(x))`` with the hard-tanh straight-through estimator.
- The first layer works on the 8-bit pixels as fixed point ``x / 256`` (docs/semantics.md §1).
- The last layer gives logits ``c · (±1 dot product)`` with one learned scale ``c > 0``.
- Optional XNOR-Net per-channel weight scaling ``α_i = mean |W_i|`` (it folds into thresholds).

In eval mode the batch norm runs as explicit elementwise float32 operations
(:meth:`SignBN.preact`), a fixed, deterministic function of the accumulator that the exporter
evaluates to find each threshold exactly.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .model import INPUT_SCALE

__all__ = ["PRESETS", "BNN", "TrainConfig", "TrainResult", "parse_topology", "train"]

#: FINN's published MLP topologies (input, hidden..., classes).
PRESETS = {
    "tfc": [784, 64, 64, 64, 10],
    "sfc": [784, 256, 256, 256, 10],
    "lfc": [784, 1024, 1024, 1024, 10],
}


def parse_topology(spec: str | list[int]) -> list[int]:
    """A preset name (``tfc``/``sfc``/``lfc``) or a layer list like ``784-128-10``."""
    if isinstance(spec, list):
        sizes = spec
    elif spec.lower() in PRESETS:
        sizes = PRESETS[spec.lower()]
    else:
        try:
            sizes = [int(s) for s in spec.replace(",", "-").split("-")]
        except ValueError:
            raise ValueError(f"topology {spec!r} is neither a preset ({', '.join(PRESETS)}) nor "
                             "a layer list like 784-256-256-10") from None
    if len(sizes) < 2 or any(s < 1 for s in sizes):
        raise ValueError(f"topology {sizes} needs an input size and at least one layer, all >= 1")
    return list(sizes)


class _SignSTE(torch.autograd.Function):
    """sign with sign(0) = +1; gradient passes where |x| <= 1 (hard-tanh STE)."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return torch.where(x >= 0, 1.0, -1.0).to(x.dtype)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * (x.abs() <= 1).to(g.dtype)


def binarize(x: torch.Tensor) -> torch.Tensor:
    return _SignSTE.apply(x)


class BinaryLinear(nn.Module):
    """Dense layer with binary weights; optional XNOR-Net per-output-channel scale."""

    def __init__(self, in_features: int, out_features: int, scaling: bool = False):
        super().__init__()
        self.in_features, self.out_features, self.scaling = in_features, out_features, scaling
        bound = 1.0 / math.sqrt(in_features)
        self.weight = nn.Parameter(torch.empty(out_features, in_features).uniform_(-bound, bound))

    def binary_weight(self) -> torch.Tensor:
        return binarize(self.weight)

    def alpha(self) -> torch.Tensor:
        """Per-channel scale ``mean |W_i|`` (float32, > 0)."""
        return self.weight.abs().mean(dim=1).clamp_min(1e-8)

    def dot(self, x: torch.Tensor) -> torch.Tensor:
        """The exact ±1 (or ±x/256) dot product, before any scaling."""
        return F.linear(x, self.binary_weight())

    def scale_dot(self, dot: torch.Tensor) -> torch.Tensor:
        return dot * self.alpha() if self.scaling else dot

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale_dot(self.dot(x))


class SignBN(nn.Module):
    """Batch norm followed by sign; in eval mode an explicit float32 formula."""

    def __init__(self, features: int, momentum: float = 0.1):
        super().__init__()
        self.bn = nn.BatchNorm1d(features, momentum=momentum)

    def preact(self, z: torch.Tensor) -> torch.Tensor:
        """Eval-mode batch norm, one correctly rounded float32 op at a time."""
        bn = self.bn
        std = torch.sqrt(bn.running_var + bn.eps)
        return (z - bn.running_mean) / std * bn.weight + bn.bias

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        y = self.bn(z) if self.training else self.preact(z)
        return binarize(y)


class BNN(nn.Module):
    """A binarized MLP: ``sizes = [N0, M1, ..., classes]``."""

    def __init__(self, sizes: list[int], scaling: bool = False, dropout: float = 0.0,
                 in_dropout: float = 0.0):
        super().__init__()
        self.sizes = list(sizes)
        self.scaling = scaling
        # The last layer never takes per-channel scales: they would change its argmax. Its
        # logits share the single learned scale c = exp(log_scale).
        self.linears = nn.ModuleList(
            BinaryLinear(a, b, scaling and i < len(sizes) - 2)
            for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)))
        self.norms = nn.ModuleList(SignBN(b) for b in sizes[1:-1])
        self.log_scale = nn.Parameter(torch.tensor(-0.5 * math.log(sizes[-2])))
        self.dropout = nn.Dropout(dropout) if dropout else nn.Identity()
        self.in_dropout = nn.Dropout(in_dropout) if in_dropout else nn.Identity()

    @staticmethod
    def frames_to_input(frames: torch.Tensor) -> torch.Tensor:
        """uint8 pixels -> their exact fixed-point real values ``x / 256``."""
        return frames.to(torch.float32) * INPUT_SCALE

    def forward(self, frames: torch.Tensor, activations: bool = False):
        """Logits for uint8 frames; with ``activations=True`` also each hidden layer's ±1 output
        and the last layer's exact ±1 dot product."""
        h = self.in_dropout(self.frames_to_input(frames))
        acts = []
        for lin, norm in zip(self.linears[:-1], self.norms, strict=True):
            h = norm(lin(h))
            acts.append(h)
            h = self.dropout(h)
        dot = self.linears[-1].dot(h)
        logits = self.linears[-1].scale_dot(dot) * self.log_scale.exp()
        return (logits, acts, dot) if activations else logits

    def clip_weights(self) -> None:
        with torch.no_grad():
            for lin in self.linears:
                lin.weight.clamp_(-1.0, 1.0)


@dataclass
class TrainConfig:
    topology: list[int] = field(default_factory=lambda: list(PRESETS["sfc"]))
    epochs: int = 10
    batch_size: int = 100
    lr: float = 0.01
    lr_final: float = 1e-4
    weight_decay: float = 0.0
    dropout: float = 0.0
    in_dropout: float = 0.0
    scaling: bool = False
    shift: int = 0  # augmentation: random translation of 28x28 frames by up to this many pixels
    seed: int = 0
    threads: int = 0  # 0: all cores


@dataclass
class TrainResult:
    model: BNN
    config: TrainConfig
    history: list[dict]
    train_seconds: float
    test_accuracy: float | None

    def summary(self) -> dict:
        return {"config": asdict(self.config), "epochs": len(self.history),
                "train_seconds": round(self.train_seconds, 2),
                "test_accuracy": self.test_accuracy, "history": self.history}


def random_shift(frames: torch.Tensor, max_shift: int, gen: torch.Generator) -> torch.Tensor:
    """Translate each 28x28 frame by a random offset in [-max_shift, max_shift]² (zero fill)."""
    b = frames.shape[0]
    side = 28
    padded = F.pad(frames.view(b, side, side), (max_shift,) * 4)
    dy, dx = torch.randint(0, 2 * max_shift + 1, (2, b, 1), generator=gen)
    ar = torch.arange(side)
    rows = (dy + ar)[:, :, None]
    cols = (dx + ar)[:, None, :]
    return padded[torch.arange(b)[:, None, None], rows, cols].reshape(b, side * side)


@torch.no_grad()
def accuracy(model: BNN, images: np.ndarray, labels: np.ndarray, batch: int = 1000) -> float:
    """Top-1 accuracy of the float model in eval mode."""
    was = model.training
    model.eval()
    correct = 0
    for s in range(0, len(images), batch):
        logits = model(torch.tensor(images[s:s + batch]))
        correct += int((logits.argmax(dim=1).numpy() == labels[s:s + batch]).sum())
    model.train(was)
    return correct / max(len(images), 1)


def train(config: TrainConfig, train_images: np.ndarray, train_labels: np.ndarray,
          test_images: np.ndarray | None = None, test_labels: np.ndarray | None = None,
          progress: Callable[[dict], None] | None = None) -> TrainResult:
    """Train a BNN on uint8 frames ``(n, N0)``; ``progress`` is called after every epoch."""
    sizes = parse_topology(config.topology)
    if train_images.shape[1] != sizes[0]:
        raise ValueError(f"topology input size {sizes[0]} does not match the data's "
                         f"{train_images.shape[1]} pixels per frame")
    if int(train_labels.max()) >= sizes[-1]:
        raise ValueError(f"labels go up to {int(train_labels.max())} but the topology has only "
                         f"{sizes[-1]} classes")
    threads = config.threads or os.cpu_count() or 1
    torch.set_num_threads(threads)
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    if config.shift and sizes[0] != 28 * 28:
        raise ValueError("shift augmentation needs 28x28 frames (784 inputs)")
    gen = torch.Generator().manual_seed(config.seed)
    model = BNN(sizes, scaling=config.scaling, dropout=config.dropout,
                in_dropout=config.in_dropout)
    opt = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    steps_per_epoch = math.ceil(len(train_images) / config.batch_size)
    total = max(config.epochs * steps_per_epoch, 1)
    gamma = (config.lr_final / config.lr) ** (1.0 / total)
    sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma)
    x_all = torch.tensor(train_images)  # a writable copy
    y_all = torch.from_numpy(train_labels.astype(np.int64))
    history = []
    start = time.perf_counter()
    for epoch in range(config.epochs):
        t0 = time.perf_counter()
        model.train()
        order = torch.from_numpy(rng.permutation(len(train_images)))
        loss_sum, correct = 0.0, 0
        for s in range(0, len(order), config.batch_size):
            idx = order[s:s + config.batch_size]
            x, y = x_all[idx], y_all[idx]
            if config.shift:
                x = random_shift(x, config.shift, gen)
            logits = model(x)
            loss = F.cross_entropy(logits, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            model.clip_weights()
            loss_sum += float(loss.detach()) * len(idx)
            correct += int((logits.argmax(dim=1) == y).sum())
        row = {"epoch": epoch + 1, "loss": round(loss_sum / len(order), 5),
               "train_accuracy": round(correct / len(order), 5),
               "lr": round(sched.get_last_lr()[0], 7),
               "seconds": round(time.perf_counter() - t0, 2)}
        if test_images is not None:
            row["test_accuracy"] = round(accuracy(model, test_images, test_labels), 5)
        history.append(row)
        if progress:
            progress(row)
    model.eval()
    elapsed = time.perf_counter() - start
    test_acc = accuracy(model, test_images, test_labels) if test_images is not None else None
    return TrainResult(model, config, history, elapsed, test_acc)

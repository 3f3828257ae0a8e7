"""Training binarized networks in PyTorch (BinaryNet style): MLPs and CNNs of any
:mod:`xnorflow.spec`.

- Weights are binary in the forward pass (``sign`` with ``sign(0) = +1``) and kept as latent
  reals clipped to ``[-1, 1]``; gradients pass straight through (STE).
- Activations are ``sign(BN(x))`` with the hard-tanh straight-through estimator.
- The first layer works on the 8-bit pixels as fixed point ``x / 256`` (docs/semantics.md §1).
- The last layer gives logits ``c · (±1 dot product)`` with one learned scale ``c > 0``.
- Optional XNOR-Net per-channel weight scaling ``α_i = mean |W_i|`` (it folds into thresholds).
- A convolution pads with its pad value (a pixel ``V / 256`` on the frame, ``2V - 1`` on bits),
  then convolves without padding, so the padding is exactly the integer model's; a max-pooling
  after a convolution pools its (scaled) pre-activations, before batch norm and sign
  (docs/semantics.md §5.3); feature maps are flattened in the integer model's order (row,
  column, channel; channels fastest) before a dense layer.
- Training checkpoints after every epoch (model, optimizer, schedule, every random state) and
  resumes from the checkpoint where it stopped, with the same result as a run without a stop.

In eval mode the batch norm runs as explicit elementwise float32 operations
(:meth:`SignBN.preact`), a fixed, deterministic function of the accumulator that the exporter
evaluates to find each threshold exactly.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import spec as specs
from .model import INPUT_SCALE

__all__ = ["BNN", "TrainConfig", "TrainResult", "train"]


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


class BinaryConv2d(nn.Module):
    """Convolution with binary weights (``(M, C, K, K)`` latent reals), stride S, padding by the
    pad value (see the module docstring); optional XNOR-Net per-output-channel scale."""

    def __init__(self, layer: specs.Conv, first: bool, scaling: bool = False):
        super().__init__()
        self.layer, self.first, self.scaling = layer, first, scaling
        c, m, k = layer.in_shape[2], layer.out_channels, layer.kernel
        self.in_features = k * k * c  # the window, what thresholds are folded over
        self.out_features = m
        bound = 1.0 / math.sqrt(self.in_features)
        self.weight = nn.Parameter(torch.empty(m, c, k, k).uniform_(-bound, bound))

    @property
    def pad(self) -> float:
        """The pad value as the training model sees it: ``V / 256`` or ``2V - 1``."""
        v = self.layer.pad_value
        return v * INPUT_SCALE if self.first else 2.0 * v - 1.0

    def binary_weight(self) -> torch.Tensor:
        return binarize(self.weight)

    def alpha(self) -> torch.Tensor:
        return self.weight.abs().mean(dim=(1, 2, 3)).clamp_min(1e-8)

    def dot(self, x: torch.Tensor) -> torch.Tensor:
        """The exact ±1 (or ±x/256) window sums, ``(B, M, OH, OW)``."""
        p = self.layer.padding
        if p:
            x = F.pad(x, (p, p, p, p), value=self.pad)
        return F.conv2d(x, self.binary_weight(), stride=self.layer.stride)

    def scale_dot(self, dot: torch.Tensor) -> torch.Tensor:
        if not self.scaling:
            return dot
        a = self.alpha()
        return dot * (a if dot.dim() == 2 else a[:, None, None])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale_dot(self.dot(x))


class SignBN(nn.Module):
    """Batch norm followed by sign; in eval mode an explicit float32 formula. Channels are on
    dimension 1 (a vector ``(B, M)``, a map ``(B, M, H, W)``)."""

    def __init__(self, features: int, momentum: float = 0.1, maps: bool = False):
        super().__init__()
        self.bn = (nn.BatchNorm2d if maps else nn.BatchNorm1d)(features, momentum=momentum)

    def preact(self, z: torch.Tensor) -> torch.Tensor:
        """Eval-mode batch norm, one correctly rounded float32 op at a time."""
        bn = self.bn
        shape = (1, -1) + (1,) * (z.dim() - 2)
        std = torch.sqrt(bn.running_var + bn.eps).view(shape)
        return ((z - bn.running_mean.view(shape)) / std * bn.weight.view(shape)
                + bn.bias.view(shape))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        y = self.bn(z) if self.training else self.preact(z)
        return binarize(y)


class BNN(nn.Module):
    """A binarized network of a :mod:`xnorflow.spec` (a preset name, a spec string, or an MLP's
    sizes ``[N0, M1, ..., classes]``).

    ``units`` holds one entry per weight layer: its binary layer, the batch norm and sign after it
    (None for the last layer) and, for a convolution followed by a pooling, the pooling size.
    """

    def __init__(self, spec: str | list[int] | specs.Spec, scaling: bool = False,
                 dropout: float = 0.0, in_dropout: float = 0.0):
        super().__init__()
        self.spec = spec if isinstance(spec, specs.Spec) else specs.parse(spec)
        self.scaling = scaling
        layers = self.spec.layers
        self.linears = nn.ModuleList()
        self.norms = nn.ModuleList()
        self.pools: list[int | None] = []
        weighted = [i for i, layer in enumerate(layers) if not isinstance(layer, specs.Pool)]
        for i in weighted:
            layer, last = layers[i], i == len(layers) - 1
            # The last layer never takes per-channel scales: they would change its argmax. Its
            # logits share the single learned scale c = exp(log_scale).
            if isinstance(layer, specs.Conv):
                self.linears.append(BinaryConv2d(layer, first=i == 0, scaling=scaling))
            else:
                self.linears.append(BinaryLinear(layer.in_features, layer.out_features,
                                                 scaling and not last))
            if not last:
                self.norms.append(SignBN(self.linears[-1].out_features,
                                         maps=isinstance(layer, specs.Conv)))
            following = layers[i + 1] if i + 1 < len(layers) else None
            self.pools.append(following.kernel if isinstance(following, specs.Pool) else None)
        self.log_scale = nn.Parameter(torch.tensor(-0.5 * math.log(layers[-1].in_features)))
        self.dropout = nn.Dropout(dropout) if dropout else nn.Identity()
        self.in_dropout = nn.Dropout(in_dropout) if in_dropout else nn.Identity()

    @property
    def sizes(self) -> list[int]:
        """An MLP's sizes (the spec's, for provenance)."""
        return self.spec.sizes

    def frames_to_input(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 pixels -> their exact fixed-point real values ``x / 256``; a map ``(B, C, H, W)``
        for a network that starts with a convolution."""
        x = frames.to(torch.float32) * INPUT_SCALE
        first = self.spec.layers[0]
        if isinstance(first, specs.Conv):
            h, w, c = first.in_shape
            x = x.view(len(x), h, w, c).permute(0, 3, 1, 2)
        return x

    def forward(self, frames: torch.Tensor, activations: bool = False):
        """Logits for uint8 frames; with ``activations=True`` also each hidden layer's ±1 output
        in the integer model's layout (a convolution's map before its pooling, then the pooled
        map; maps flattened row, column, channel) and the last layer's exact ±1 dot product."""
        h = self.in_dropout(self.frames_to_input(frames))
        acts = []
        for lin, norm, pool in zip(self.linears[:-1], self.norms, self.pools, strict=False):
            if isinstance(lin, BinaryLinear):
                h = _flat(h)
            z = lin(h)
            if pool is None:
                h = norm(z)
                if activations:
                    acts.append(_flat(h))
            else:
                if activations:
                    acts.append(_flat(norm(z)))
                h = norm(F.max_pool2d(z, pool))
                if activations:
                    acts.append(_flat(h))
            if h.dim() == 2:
                h = self.dropout(h)
        if h.dim() == 4:
            h = _flat(h)
        dot = self.linears[-1].dot(h)
        logits = self.linears[-1].scale_dot(dot) * self.log_scale.exp()
        return (logits, acts, dot) if activations else logits

    def clip_weights(self) -> None:
        with torch.no_grad():
            for lin in self.linears:
                lin.weight.clamp_(-1.0, 1.0)


def _flat(h: torch.Tensor) -> torch.Tensor:
    """A map ``(B, C, H, W)`` flattened in the integer model's order (row, column, channel)."""
    return h.permute(0, 2, 3, 1).flatten(1) if h.dim() == 4 else h


@dataclass
class TrainConfig:
    #: A :mod:`xnorflow.spec`: a preset name, a spec string or an MLP's sizes.
    topology: str | list[int] = "sfc"
    epochs: int = 10
    batch_size: int = 100
    lr: float = 0.01
    lr_final: float = 1e-4
    weight_decay: float = 0.0
    dropout: float = 0.0
    in_dropout: float = 0.0
    scaling: bool = False
    shift: int = 0  # augmentation: random translation of image frames by up to this many pixels
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


def random_shift(frames: torch.Tensor, max_shift: int, gen: torch.Generator,
                 shape: tuple[int, int, int] = (28, 28, 1)) -> torch.Tensor:
    """Translate each ``H x W x C`` frame by a random offset in [-max_shift, max_shift]² (zero
    fill)."""
    b = frames.shape[0]
    h, w, c = shape
    padded = F.pad(frames.view(b, h, w, c), (0, 0) + (max_shift,) * 4)
    dy, dx = torch.randint(0, 2 * max_shift + 1, (2, b, 1), generator=gen)
    rows = (dy + torch.arange(h))[:, :, None]
    cols = (dx + torch.arange(w))[:, None, :]
    return padded[torch.arange(b)[:, None, None], rows, cols].reshape(b, h * w * c)


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


def _input_map(spec: specs.Spec) -> tuple[int, int, int] | None:
    dims = spec.input_shape
    return (*dims, 1) if len(dims) == 2 else dims if len(dims) == 3 else None


def _save_checkpoint(path: Path, state: dict) -> None:
    """Write atomically: a stop while writing leaves the previous checkpoint."""
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def train(config: TrainConfig, train_images: np.ndarray, train_labels: np.ndarray,
          test_images: np.ndarray | None = None, test_labels: np.ndarray | None = None,
          progress: Callable[[dict], None] | None = None, *,
          checkpoint: str | os.PathLike[str] | None = None, resume: bool = False) -> TrainResult:
    """Train a BNN on uint8 frames ``(n, N0)``; ``progress`` is called after every epoch.

    ``checkpoint``: a file written after every epoch with everything the run needs to go on
    (model, optimizer, schedule, random states, history, the configuration); with ``resume``
    the run starts after the last epoch in it (the configuration must be the same, except
    ``epochs`` and ``threads``) and ends as the same run without a stop would have.
    """
    spec = specs.parse(config.topology)
    n0 = spec.layers[0].in_features
    if train_images.shape[1] != n0:
        raise ValueError(f"the spec's input ({'x'.join(map(str, spec.input_shape))}, {n0} "
                         f"pixels) does not match the data's {train_images.shape[1]} pixels per "
                         "frame")
    if int(train_labels.max()) >= spec.classes:
        raise ValueError(f"labels go up to {int(train_labels.max())} but the spec has only "
                         f"{spec.classes} classes")
    shape = _input_map(spec)
    if config.shift and shape is None:
        raise ValueError("shift augmentation needs image frames (an input HxW or HxWxC)")
    threads = config.threads or os.cpu_count() or 1
    torch.set_num_threads(threads)
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    gen = torch.Generator().manual_seed(config.seed)
    model = BNN(spec, scaling=config.scaling, dropout=config.dropout,
                in_dropout=config.in_dropout)
    opt = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    steps_per_epoch = math.ceil(len(train_images) / config.batch_size)
    total = max(config.epochs * steps_per_epoch, 1)
    gamma = (config.lr_final / config.lr) ** (1.0 / total)
    sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma)
    history: list[dict] = []
    spent = 0.0
    path = None if checkpoint is None else Path(checkpoint)
    if resume:
        if path is None or not path.is_file():
            raise ValueError(f"nothing to resume: no checkpoint {path}")
        state = torch.load(path, weights_only=False)
        same = {k: v for k, v in asdict(config).items() if k not in ("epochs", "threads")}
        was = {k: v for k, v in state["config"].items() if k not in ("epochs", "threads")}
        if same != was:
            diff = sorted(k for k in same if same[k] != was.get(k))
            raise ValueError(f"checkpoint {path.name} is of another run (differs in "
                             f"{', '.join(diff)})")
        if state["config"]["epochs"] != config.epochs:
            raise ValueError(f"checkpoint {path.name} is of a run of {state['config']['epochs']} "
                             f"epochs (the learning-rate schedule depends on it), not "
                             f"{config.epochs}")
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        rng.bit_generator.state = state["numpy_rng"]
        gen.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        history, spent = state["history"], state["seconds"]
    x_all = torch.tensor(train_images)  # a writable copy
    y_all = torch.from_numpy(train_labels.astype(np.int64))
    start = time.perf_counter() - spent
    for epoch in range(len(history), config.epochs):
        t0 = time.perf_counter()
        model.train()
        order = torch.from_numpy(rng.permutation(len(train_images)))
        loss_sum, correct = 0.0, 0
        for s in range(0, len(order), config.batch_size):
            idx = order[s:s + config.batch_size]
            x, y = x_all[idx], y_all[idx]
            if config.shift:
                x = random_shift(x, config.shift, gen, shape)
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
        if path is not None:
            _save_checkpoint(path, {
                "config": asdict(config), "model": model.state_dict(),
                "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                "numpy_rng": rng.bit_generator.state, "generator": gen.get_state(),
                "torch_rng": torch.get_rng_state(), "history": history,
                "seconds": time.perf_counter() - start})
        if progress:
            progress(row)
    model.eval()
    elapsed = time.perf_counter() - start
    test_acc = accuracy(model, test_images, test_labels) if test_images is not None else None
    return TrainResult(model, config, history, elapsed, test_acc)

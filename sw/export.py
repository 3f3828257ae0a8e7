"""Export a trained :class:`~xnorflow.train.BNN` to an integer-only
:class:`~xnorflow.model.Model`.

Batch norm and sign (and the optional XNOR-Net scale) fold into one integer threshold and a
direction per channel. The threshold is not derived from a closed-form formula that could round
differently from the training model: it is the exact integer at which the training model's own
eval-mode computation (:meth:`SignBN.preact` on the exact accumulator) changes sign, found by
bisection (it is monotone: every step is a correctly rounded, monotone float32 operation) and then
checked. So the integer model agrees with the float model bit for bit.
"""

from __future__ import annotations

import platform

import numpy as np
import torch

from . import __version__
from . import spec as specs
from .model import (
    INPUT_SCALE,
    ConvLayer,
    DenseLayer,
    Model,
    PoolLayer,
    accumulator_range,
    pack_bits,
)
from .train import BNN, SignBN

__all__ = ["ExportError", "export", "fold_thresholds"]


class ExportError(RuntimeError):
    """The float model cannot be folded exactly (this indicates a bug, not bad input)."""


def _predicate(lin, norm: SignBN, first: bool, n: int):
    """f(acc) -> bool tensor: the training model's output bit for integer accumulators.

    ``acc`` is an int64 tensor of shape ``(K, M)``: one candidate accumulator per channel.
    """

    @torch.no_grad()
    def f(acc: torch.Tensor) -> torch.Tensor:
        if first:
            dot = acc.to(torch.float32) * INPUT_SCALE  # exactly the first layer's F.linear
        else:
            dot = acc.to(torch.float32)  # popcount p, turned into the ±1 dot below
            dot = 2 * dot - n
        return norm.preact(lin.scale_dot(dot)) >= 0

    return f


@torch.no_grad()
def fold_thresholds(lin, norm: SignBN, first: bool) -> tuple[np.ndarray, np.ndarray]:
    """Integer thresholds (int64) and directions (int8) of one hidden layer (a
    :class:`~xnorflow.train.BinaryLinear` or :class:`~xnorflow.train.BinaryConv2d`: its
    ``in_features`` is the window of a convolution, ``K*K*C``)."""
    n, m = lin.in_features, lin.out_features
    lo, hi = accumulator_range(8 if first else 1, n)
    f = _predicate(lin, norm, first, n)
    gamma = norm.bn.weight.detach()
    # Monotone direction of f in acc: sign(gamma) (alpha > 0, 1/std > 0).
    rising = gamma > 0
    falling = gamma < 0

    def first_true(pred) -> torch.Tensor:
        """Per channel, the least acc in [lo, hi] where pred (non-decreasing) holds, else hi+1."""
        a = torch.full((m,), lo, dtype=torch.int64)
        b = torch.full((m,), hi + 1, dtype=torch.int64)
        while bool((a < b).any()):
            mid = (a + b) // 2
            ok = pred(mid.clamp(max=hi)[None, :])[0] & (mid <= hi)
            b = torch.where(ok & (a < b), mid, b)
            a = torch.where(~ok & (a < b), mid + 1, a)
        return a

    t_rise = first_true(f)
    t_fall = first_true(lambda acc: ~f(acc)) - 1
    const_on = f(torch.full((1, m), lo, dtype=torch.int64))[0]
    t = torch.where(rising, t_rise, torch.where(falling, t_fall,
                                                torch.where(const_on, lo, hi + 1)))
    d = torch.where(falling, -1, 1)
    _check_fold(f, t, d, lo, hi, n, first)
    return t.numpy().astype(np.int64), d.numpy().astype(np.int8)


def _check_fold(f, t, d, lo, hi, n, first):
    """Compare the threshold rule with f: everywhere for binary layers, near the threshold and on
    random points for the 8-bit layer."""
    m = t.shape[0]
    if not first:
        acc = torch.arange(lo, hi + 1, dtype=torch.int64)[:, None].expand(-1, m)
    else:
        g = torch.Generator().manual_seed(0)
        near = torch.stack([t + k for k in range(-2, 3)])
        rand = torch.randint(lo, hi + 1, (256, m), generator=g)
        acc = torch.cat([near, rand, torch.full((2, m), lo), torch.full((2, m), hi)])
        acc = acc.clamp(lo, hi)
    rule = torch.where(d > 0, acc >= t, acc <= t)
    bad = rule != f(acc)
    if bool(bad.any()):
        k, c = (int(v) for v in torch.nonzero(bad)[0])
        raise ExportError(f"threshold folding is not exact for channel {c} at accumulator "
                          f"{int(acc[k, c])} (threshold {int(t[c])}, direction {int(d[c])})")


def export(net: BNN, provenance: dict | None = None) -> Model:
    """Fold a trained network into an integer model (the network is put in eval mode)."""
    net.eval()
    layers = []
    spec = net.spec
    count = len(net.linears)
    weighted = iter(range(count))
    for i, layer in enumerate(spec.layers):
        if isinstance(layer, specs.Pool):
            layers.append(PoolLayer(name=f"pool{i}", in_shape=layer.in_shape,
                                    kernel=layer.kernel))
            continue
        k = next(weighted)
        lin = net.linears[k]
        t = d = None
        if k < count - 1:
            t, d = fold_thresholds(lin, net.norms[k], first=(i == 0))
        w = lin.weight.detach()
        if isinstance(layer, specs.Conv):
            # (M, C, K, K) -> rows in window order: ky, kx, channel fastest
            bits = (w.permute(0, 2, 3, 1).reshape(len(w), -1) >= 0).numpy().astype(np.uint8)
            layers.append(ConvLayer(name=f"conv{i}", in_shape=layer.in_shape,
                                    out_channels=layer.out_channels, kernel=layer.kernel,
                                    stride=layer.stride, padding=layer.padding,
                                    pad_value=layer.pad_value, input_bits=8 if i == 0 else 1,
                                    weights=pack_bits(bits), thresholds=t, directions=d))
            continue
        bits = (w >= 0).numpy().astype(np.uint8)
        if spec.is_mlp:
            name = "input" if i == 0 else ("output" if k == count - 1 else f"hidden{i}")
        else:
            name = f"fc{i}"
        layers.append(DenseLayer(name=name, in_features=lin.in_features,
                                 out_features=lin.out_features, input_bits=8 if i == 0 else 1,
                                 weights=pack_bits(bits), thresholds=t, directions=d))
    prov = {"xnorflow": __version__, "torch": torch.__version__,
            "python": platform.python_version(),
            "topology": list(net.sizes) if spec.is_mlp else spec.text,
            "xnor_scaling": bool(net.scaling)}
    prov.update(provenance or {})
    shape = spec.input_shape
    model = Model(layers=layers, input_shape=(28, 28) if shape == (784,) else tuple(shape),
                  provenance=prov)
    model.validate()
    return model


@torch.no_grad()
def compare_with_float(net: BNN, model: Model, images, batch: int = 1000) -> dict:
    """Run the float model (eval mode) and the golden model on the same frames and count every
    disagreement: predictions, hidden activation bits, and last-layer scores (``2·p − N`` must
    equal the float model's exact ±1 dot product)."""
    from .golden import GoldenModel

    net.eval()
    golden = GoldenModel(model)
    n_last = model.layers[-1].in_features
    pred_bad = act_bad = score_bad = 0
    bits_compared = 0
    for s in range(0, len(images), batch):
        x = np.asarray(images[s:s + batch])
        logits, acts, dot = net(torch.tensor(x), activations=True)
        ref = golden.run(x, activations=True)
        pred_bad += int((logits.argmax(dim=1).numpy() != ref.classes).sum())
        for a, b in zip(acts, ref.activations, strict=True):
            act_bad += int(((a.numpy() > 0).astype(np.uint8) != b).sum())
            bits_compared += b.size
        score_bad += int((dot.numpy().astype(np.int64) != 2 * ref.scores - n_last).sum())
    return {"frames": len(images), "prediction_mismatches": pred_bad,
            "activation_bits_compared": bits_compared, "activation_bit_mismatches": act_bad,
            "score_mismatches": score_bad}

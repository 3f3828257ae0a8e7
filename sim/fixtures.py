"""Random models, foldings and frames: the one home of what the tests and the sweep
(:mod:`xnorflow.sim.sweep`) check the generated hardware on.

Every model is a valid :class:`~xnorflow.model.Model` (it passes ``validate``), seeded, so a
failing case can be made again from its topology and seed.
"""

from __future__ import annotations

from itertools import pairwise

import numpy as np

from xnorflow import spec as specs
from xnorflow.golden import GoldenModel
from xnorflow.hw.compiler import Folding, LayerFolding
from xnorflow.hw.compiler.folding import simd_choices
from xnorflow.model import DenseLayer, Model, PoolLayer
from xnorflow.random_models import random_frames, random_model, random_net

__all__ = ["conv_cycles", "folding", "random_conv_net", "random_conv_spec", "random_folding",
           "random_frames", "random_model", "random_net"]


def folding(*layers) -> Folding:
    """A :class:`~xnorflow.hw.compiler.folding.Folding` from ``(pe, simd[, storage[,
    fifo_depth]])`` tuples, one per layer."""
    return Folding(tuple(LayerFolding(*layer) for layer in layers))


def _divisors(n):
    return [d for d in range(1, n + 1) if n % d == 0]


def random_folding(topology, rng: np.random.Generator, kind: str = "random") -> Folding:
    """A :class:`~xnorflow.hw.compiler.folding.Folding` of ``topology`` (an MLP's sizes ``N0,
    N1, ..., classes``) or of a :class:`~xnorflow.model.Model` (any layers): ``"pe1"`` (PE =
    SIMD = 1), ``"parallel"`` (PE = M, SIMD = N; a convolution's or pooling's M and N are its
    output and input channels) or ``"random"`` (random divisors, weight storage and sometimes a
    FIFO; for a convolution sometimes a place for its unit's input buffer and for its window
    generator's line buffer, block RAM or logic; for a convolution behind another layer, half
    the time a SIMD of ``m*C``, m > 1 kernel columns a beat, where its kernel has such an m).
    The choices are the ones the compiler's folding rules allow (:meth:`Folding.check
    <xnorflow.hw.compiler.folding.Folding.check>`: PE divides the output channels, SIMD the
    input channels or, for a convolution, is ``m*C`` with m > 1 dividing K; a pooling passes
    its channels through, PE = SIMD). (The first layer keeps a SIMD dividing C: the network
    top's ``lanes``, pixels per ``s_axis`` beat, is read as the first layer's SIMD.)"""
    if isinstance(topology, Model):
        folded = Folding(tuple(_layer_folding(layer, rng, kind, first=index == 0)
                               for index, layer in enumerate(topology.layers)))
        folded.check(topology.layers)
        return folded
    layers = []
    for n, m in pairwise(topology):
        layers.append(_dense_folding(n, m, rng, kind))
    return Folding(tuple(layers))


def _fifo(rng):
    return int(rng.choice([0, 3, 4])) if rng.random() < 0.3 else None


def _dense_folding(n, m, rng, kind):
    if kind == "pe1":
        return LayerFolding(1, 1)
    if kind == "parallel":
        return LayerFolding(m, n, "lut")
    if kind != "random":
        raise ValueError(f"folding kind {kind!r} must be 'pe1', 'parallel' or 'random'")
    fifo = _fifo(rng)
    return LayerFolding(int(rng.choice(_divisors(m))), int(rng.choice(_divisors(n))),
                        str(rng.choice(["bram", "lut"])), fifo)


def _layer_folding(layer, rng, kind, first=False):
    if isinstance(layer, DenseLayer):
        return _dense_folding(layer.in_features, layer.out_features, rng, kind)
    channels = layer.in_shape[2]
    if isinstance(layer, PoolLayer):
        if kind == "pe1":
            return LayerFolding(1, 1)
        simd = channels if kind == "parallel" else int(rng.choice(_divisors(channels)))
        return LayerFolding(simd, simd, "bram", None if kind == "parallel" else _fifo(rng))
    if kind in ("pe1", "parallel"):
        return _dense_folding(channels, layer.out_channels, rng, kind)
    entry = _dense_folding(channels, layer.out_channels, rng, kind)
    buffer, line_buffer = ([None, None, "logic", "block"][int(i)] for i in rng.integers(0, 4, 2))
    simd = entry.simd
    columns = [s for s in simd_choices(layer) if s > channels]   # m*C, m > 1 dividing K
    if columns and not first and rng.random() < 0.5:
        simd = int(rng.choice(columns))
    return LayerFolding(entry.pe, simd, entry.storage, entry.fifo_depth, buffer, line_buffer)


def conv_cycles(spec: str) -> int:
    """Cycles per frame of a spec's slowest layer under PE = SIMD = 1, by the units' work alone
    (``OH*OW*M*K*K*C`` for a convolution, ``N*M`` for a dense layer): what bounds a random model's
    simulation time."""
    worst = 0
    for layer in specs.parse(spec).layers:
        if isinstance(layer, specs.Conv):
            oh, ow, m = layer.out_shape
            worst = max(worst, oh * ow * m * layer.kernel ** 2 * layer.in_shape[2])
        elif isinstance(layer, specs.Dense):
            worst = max(worst, layer.in_features * layer.out_features)
    return worst


#: Output channels of random convolutions and sizes of the dense layers behind them.
_CONV_CHANNELS = (2, 3, 4, 5, 6)
_DENSE_SIZES = (6, 9, 10, 12, 15)
_CLASSES = (2, 3, 5, 7, 10)


def random_conv_spec(rng: np.random.Generator, max_cycles: int = 2500) -> str:
    """A random :mod:`xnorflow.spec` of a small convolutional network: an ``H x W`` input of 1 or
    3 channels (sides 5 to 11), a first convolution on the 8-bit frame with a pad
    pixel of 0, 255 or anything, then up to two more convolutions, each of kernel 1, 2, 3 or 5,
    stride 1 or 2, padding 0 or ``K // 2``, and sometimes a pooling that divides its map, then
    sometimes a hidden dense layer and the score layer, which sees at least 8 features. No layer
    needs more than ``max_cycles`` cycles per frame at PE = SIMD = 1 (:func:`conv_cycles`), so
    that every folding simulates in seconds."""
    while True:
        h, w = (int(v) for v in rng.choice([5, 6, 7, 8, 9, 10, 11], 2))
        shape = (h, w, int(rng.choice([1, 3])))
        tokens = ["x".join(map(str, shape))]
        for i in range(int(rng.integers(1, 4))):
            k = int(rng.choice([1, 2, 3, 3, 5]))
            stride = int(rng.choice([1, 1, 2]))
            pad = bool(rng.random() < 0.6) and k > 1
            token = f"c{int(rng.choice(_CONV_CHANNELS))}k{k}" + (f"s{stride}" if stride > 1
                                                                  else "")
            if pad:
                token += "p"
                if i == 0:
                    token += f"v{int(rng.choice([0, 255, int(rng.integers(1, 255))]))}"
            tokens.append(token)
            try:
                oh, ow, _ = specs.parse("-".join([*tokens, "2"])).layers[-2].out_shape
            except ValueError:
                tokens.pop()
                break
            pools = [q for q in (2, 3) if oh % q == 0 and ow % q == 0]
            if pools and rng.random() < 0.7:
                tokens.append(f"p{int(rng.choice(pools))}")
        if len(tokens) == 1:
            continue
        if rng.random() < 0.4:
            tokens.append(str(int(rng.choice(_DENSE_SIZES))))
        tokens.append(str(int(rng.choice(_CLASSES))))
        spec = "-".join(tokens)
        if conv_cycles(spec) <= max_cycles and specs.parse(spec).layers[-1].in_features >= 8:
            return spec


def random_conv_net(rng: np.random.Generator, count: int, tries: int = 4):
    """``(model, frames)``: a random convolutional model (:func:`random_conv_spec`, its weights
    and thresholds by :func:`random_net` on the frames) and ``count`` random frames, the model
    the one of ``tries`` seeds whose scores differ on the most frames (so that a frame lost,
    repeated or out of order shows in the results)."""
    spec = random_conv_spec(rng)
    frames = random_frames(rng, count, specs.parse(spec).layers[0].in_features)
    best = None
    for _ in range(tries):
        model = random_net(spec, int(rng.integers(1 << 30)), frames=frames)
        distinct = len({tuple(row) for row in GoldenModel(model).run(frames).scores})
        if best is None or distinct > best[0]:
            best = (distinct, model)
    return best[1], frames

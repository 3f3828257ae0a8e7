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
from xnorflow.model import ConvLayer, DenseLayer, Model, PoolLayer, accumulator_range, pack_bits

__all__ = ["conv_cycles", "folding", "random_conv_net", "random_conv_spec", "random_folding",
           "random_frames", "random_model", "random_net"]


def random_frames(rng: np.random.Generator, count: int, n: int) -> np.ndarray:
    """``uint8 (count, n)`` pixels: a third 0, a third 255, a third anything between."""
    choice = rng.integers(0, 3, (count, n))
    return np.where(choice == 0, 0, np.where(choice == 1, 255, rng.integers(0, 256, (count, n)))
                    ).astype(np.uint8)


def _reached_thresholds(rng, acc, n, input_bits, m):
    """Thresholds at accumulators that the frames reach (+-1), random directions, and every
    fourth channel at an end of its range (a constant channel)."""
    lo, hi = accumulator_range(input_bits, n)
    d = rng.choice([1, -1], m)
    t = acc[rng.integers(0, len(acc), m), np.arange(m)] + rng.integers(-1, 2, m)
    t_lo, t_hi = np.where(d > 0, lo, lo - 1), np.where(d > 0, hi + 1, hi)
    t = np.clip(t, t_lo, t_hi)
    edge = np.arange(m) % 4 == 3
    t[edge] = np.where(rng.integers(0, 2, m) == 1, t_lo, t_hi)[edge]
    return t, d


def _middle_thresholds(rng, n, input_bits, m):
    """Thresholds near the middle of the accumulator's range, random directions."""
    spread = 255 * n // 6 if input_bits == 8 else 2
    centre = 0 if input_bits == 8 else n // 2
    t = centre + rng.integers(-spread, spread + 1, m)
    return t, rng.choice([1, -1], m)


def random_model(topology, seed: int, frames: np.ndarray | None = None, *,
                 input_shape: tuple[int, ...] | None = None,
                 provenance: dict | None = None) -> Model:
    """A valid model of ``topology`` (``N0, N1, ..., classes``) with random weights.

    With ``frames``, each hidden channel gets a random direction and a threshold at an
    accumulator that one of the frames reaches (+-1), so its outputs on them are mixed, and every
    fourth channel a threshold at an end of its range (a constant channel); the accumulators are
    computed here from docs/semantics.md section 3.1, only to place the thresholds. Without,
    thresholds lie near the middle of each accumulator's range, both directions.
    ``input_shape`` (default ``(N0,)``) and ``provenance`` go into the model as they are."""
    rng = np.random.default_rng(seed)
    x = None if frames is None else np.asarray(frames, dtype=np.int64)
    layers = []
    for i, (n, m) in enumerate(pairwise(topology)):
        bits = rng.integers(0, 2, (m, n))
        input_bits = 8 if i == 0 else 1
        if i == len(topology) - 2:
            layers.append(DenseLayer(f"fc{i}", n, m, input_bits, pack_bits(bits)))
            break
        if x is None:
            t, d = _middle_thresholds(rng, n, input_bits, m)
        else:
            acc = (x @ (2 * bits - 1).T if input_bits == 8
                   else x @ bits.T + (1 - x) @ (1 - bits).T)
            t, d = _reached_thresholds(rng, acc, n, input_bits, m)
            x = np.where(d > 0, acc >= t, acc <= t).astype(np.int64)
        layers.append(DenseLayer(f"fc{i}", n, m, input_bits, pack_bits(bits),
                                 t.astype(np.int64), d.astype(np.int8)))
    model = Model(layers, input_shape or (topology[0],), dict(provenance or {}))
    model.validate()
    return model


def _windows(x, in_shape, kernel, stride, padding, pad_value):
    """``(B, H*W*C)`` maps to their windows, ``(B*OH*OW, K*K*C)`` in the order of
    docs/semantics.md section 5.2 (positions row-major; ``ky``, ``kx``, ``ch`` in a window),
    positions outside the map holding ``pad_value``."""
    h, w, c = in_shape
    maps = np.pad(x.reshape(-1, h, w, c), ((0, 0), (padding, padding), (padding, padding),
                                          (0, 0)), constant_values=pad_value)
    oh = (h + 2 * padding - kernel) // stride + 1
    ow = (w + 2 * padding - kernel) // stride + 1
    rows = [maps[:, y * stride:y * stride + kernel, x0 * stride:x0 * stride + kernel, :]
            .reshape(len(maps), -1) for y in range(oh) for x0 in range(ow)]
    return np.stack(rows, axis=1).reshape(-1, kernel * kernel * c)


def random_net(spec: str, seed: int, *, pad_bit: int | None = None,
               frames: np.ndarray | None = None) -> Model:
    """A valid model of any :mod:`xnorflow.spec` (convolutions, pooling, dense layers) with
    random weights. ``pad_bit`` (None: random) is the pad value of the convolutions on bits.

    Without ``frames``, thresholds lie near the middle of each accumulator's range, both
    directions, and every fourth channel at an end of its range (a constant channel). With
    ``frames`` (``(B, N0)`` pixels), as :func:`random_model` does: each channel's threshold is
    an accumulator that the frames reach at some position (+-1), so that its bits, and the
    scores, differ from frame to frame, and every fourth channel is constant; the accumulators
    are computed here from docs/semantics.md sections 3 and 5, only to place the thresholds."""
    parsed = specs.parse(spec)
    rng = np.random.default_rng(seed)
    x = None if frames is None else np.asarray(frames, dtype=np.int64)
    layers = []
    for i, layer in enumerate(parsed.layers):
        input_bits = 8 if i == 0 else 1
        last = i == len(parsed.layers) - 1
        if isinstance(layer, specs.Pool):
            if x is not None:
                h, w, c = layer.in_shape
                k = layer.kernel
                squares = x.reshape(-1, h // k, k, w // k, k, c)
                rising = layers[-1].directions > 0
                x = np.where(rising, squares.max(axis=(2, 4)), squares.min(axis=(2, 4)))
                x = x.reshape(len(x), -1)
            layers.append(PoolLayer(f"pool{i}", layer.in_shape, layer.kernel))
            continue
        conv = isinstance(layer, specs.Conv)
        if conv:
            n, m = layer.kernel * layer.kernel * layer.in_shape[2], layer.out_channels
        else:
            n, m = layer.in_features, layer.out_features
        pad = layer.pad_value if conv else None
        pick_pad = conv and input_bits == 1 and pad_bit is None
        if conv and input_bits == 1:
            pad = pad_bit
        if pick_pad and x is not None:  # (after the thresholds without frames, as before)
            pad = int(rng.integers(0, 2))
        bits = rng.integers(0, 2, (m, n))
        t = d = None
        if not last and x is None:
            t, d = _middle_thresholds(rng, n, input_bits, m)
            lo, hi = accumulator_range(input_bits, n)
            edge = np.arange(m) % 4 == 3
            t_lo, t_hi = np.where(d > 0, lo, lo - 1), np.where(d > 0, hi + 1, hi)
            t[edge] = np.where(rng.integers(0, 2, m) == 1, t_lo, t_hi)[edge]
        elif not last:
            inputs = x if isinstance(layer, specs.Dense) else _windows(
                x, layer.in_shape, layer.kernel, layer.stride, layer.padding, pad)
            acc = (inputs @ (2 * bits - 1).T if input_bits == 8
                   else inputs @ bits.T + (1 - inputs) @ (1 - bits).T)
            t, d = _reached_thresholds(rng, acc, n, input_bits, m)
            x = np.where(d > 0, acc >= t, acc <= t).astype(np.int64).reshape(len(x), -1)
        if t is not None:
            t, d = t.astype(np.int64), d.astype(np.int8)
        if pick_pad and x is None:
            pad = int(rng.integers(0, 2))
        if conv:
            layers.append(ConvLayer(f"conv{i}", layer.in_shape, m, layer.kernel, layer.stride,
                                    layer.padding, pad, input_bits, pack_bits(bits), t, d))
        else:
            layers.append(DenseLayer(f"fc{i}", n, m, input_bits, pack_bits(bits), t, d))
    model = Model(layers, parsed.input_shape, {"spec": parsed.text, "seed": seed})
    model.validate()
    return model


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

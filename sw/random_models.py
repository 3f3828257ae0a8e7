"""Random models and frames of any network spec: what tests, the hardware sweep and the resource
calibration build their designs from. Every model is a valid :class:`~xnorflow.model.Model`
(it passes ``validate``), seeded, so a failing case can be made again from its topology and seed.
(:mod:`xnorflow.sim.fixtures` adds random foldings and re-exports these.)
"""

from __future__ import annotations

from itertools import pairwise

import numpy as np

from xnorflow import spec as specs
from xnorflow.model import ConvLayer, DenseLayer, Model, PoolLayer, accumulator_range, pack_bits

__all__ = ["random_frames", "random_model", "random_net"]


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

"""The golden model: NumPy integer inference written from ``docs/semantics.md`` alone.

It reads the packed arrays of a :class:`~xnorflow.model.Model` and interprets them by the
documented bit order with its own code (it shares no packing code with the exporter, the
hardware or the driver). Binary layers run bit-packed on 64-bit words with ``np.bitwise_count``,
so this is also the CPU baseline of the benchmarks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .model import Model

__all__ = ["FrameError", "GoldenModel", "GoldenResult"]


class FrameError(ValueError):
    """Frames that are not vectors of 8-bit unsigned pixels of the model's input size."""


@dataclass
class GoldenResult:
    """Outputs of :meth:`GoldenModel.run` for a batch of ``B`` frames."""

    scores: np.ndarray  #: ``int64 (B, classes)``: the last layer's integer scores
    classes: np.ndarray  #: ``int64 (B,)``: argmax of the scores, ties to the lowest index
    activations: list[np.ndarray] | None = None
    """Per hidden layer, ``uint8 (B, M)`` 0/1 output bits (only when asked for)."""


def _bytes_to_words(packed: np.ndarray) -> np.ndarray:
    """LSB-first byte rows -> little-endian uint64 word rows (element j: word j//64, bit j%64)."""
    rows, nbytes = packed.shape
    nwords = (nbytes + 7) // 8
    buf = np.zeros((rows, nwords * 8), dtype=np.uint8)
    buf[:, :nbytes] = packed
    return buf.view("<u8").copy()


def _bits_to_words(bits: np.ndarray) -> np.ndarray:
    """0/1 rows -> uint64 word rows, element j at bit j%64 of word j//64."""
    b, n = bits.shape
    nwords = (n + 63) // 64
    padded = np.zeros((b, nwords * 64), dtype=np.uint64)
    padded[:, :n] = bits
    weights = np.uint64(1) << np.arange(64, dtype=np.uint64)
    return (padded.reshape(b, nwords, 64) * weights).sum(axis=2, dtype=np.uint64)


def _signs_from_bytes(packed: np.ndarray, n: int) -> np.ndarray:
    """Packed weight rows -> +1/-1 matrix (M, N): element j is bit j%8 of byte j//8."""
    j = np.arange(n)
    bits = (packed[:, j // 8] >> (j % 8).astype(np.uint8)) & 1
    return np.where(bits == 1, 1, -1).astype(np.int8)


class GoldenModel:
    """Bit-exact integer inference of an exported model.

    ``run(frames)`` takes ``(B, N0)`` (or ``(N0,)``) integer pixels in ``[0, 255]`` and returns
    scores, classes and, on request, every hidden activation bit.
    """

    def __init__(self, model: Model, batch: int = 128):
        model.validate()
        self.model = model
        self.batch = batch
        self._layers = [(_KINDS[layer.kind](layer, model.layers[i - 1] if i else None),
                         _threshold(layer)) for i, layer in enumerate(model.layers)]

    def check_frames(self, frames) -> np.ndarray:
        """Validate frames and return them as ``uint8 (B, N0)``; raise :class:`FrameError`."""
        x = np.asarray(frames)
        n0 = self.model.in_features
        if x.ndim == 1:
            x = x[None, :]
        if x.ndim != 2 or x.shape[1] != n0:
            raise FrameError(f"frames must have shape (B, {n0}) or ({n0},), got {x.shape}")
        if x.dtype == np.uint8:
            return x
        if not np.issubdtype(x.dtype, np.integer):
            raise FrameError(f"frames must be integer pixels in [0, 255], got dtype {x.dtype}")
        if x.size and (x.min() < 0 or x.max() > 255):
            bad = np.argwhere((x < 0) | (x > 255))[0]
            raise FrameError(f"pixel out of range [0, 255]: frame {bad[0]}, pixel {bad[1]} = "
                             f"{int(x[tuple(bad)])}")
        return x.astype(np.uint8)

    def run(self, frames, activations: bool = False) -> GoldenResult:
        x = self.check_frames(frames)
        outs = [self._run_batch(x[s:s + self.batch], activations)
                for s in range(0, max(len(x), 1), self.batch)] if len(x) else []
        if not outs:
            m = self.model.classes
            return GoldenResult(np.zeros((0, m), np.int64), np.zeros(0, np.int64),
                                [np.zeros((0, lay.out_features), np.uint8)
                                 for lay in self.model.layers[:-1]] if activations else None)
        scores = np.concatenate([o[0] for o in outs])
        acts = None
        if activations:
            acts = [np.concatenate([o[1][k] for o in outs]) for k in range(len(outs[0][1]))]
        return GoldenResult(scores, scores.argmax(axis=1), acts)

    def predict(self, frames) -> np.ndarray:
        """Predicted classes, ``int64 (B,)``."""
        return self.run(frames).classes

    def _run_batch(self, x: np.ndarray, keep: bool):
        acts = []
        for accumulate, threshold in self._layers:
            acc = accumulate(x)
            if threshold is None:
                return acc, acts
            x = threshold(acc)
            if keep:
                acts.append(x)
        raise AssertionError("unreachable: the last layer has scores")


class _Dense:
    """A dense layer's accumulators (docs/semantics.md §3), ``int64 (B, M)``. On the frame's
    pixels (``input_bits`` 8): ``acc_i = sum_j s_ij * x_j`` as one matrix product, exact in
    float32 while every partial sum stays below 2**24 (``255 * N < 2**24``, else float64). On
    bits: ``p_i = N - popcount(w_i XOR a)`` on 64-bit words; the padding bits are 0 in both, so
    they never count as disagreements."""

    def __init__(self, layer, previous=None):
        self.n = layer.in_features
        if layer.input_bits == 8:
            signs = _signs_from_bytes(layer.weights, self.n)
            dtype = np.float32 if 255 * self.n < 2**24 else np.float64
            self.w = np.ascontiguousarray(signs.T.astype(dtype))
        else:
            self.w = _bytes_to_words(layer.weights)
        self.pixels = layer.input_bits == 8

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if self.pixels:
            return (x.astype(self.w.dtype) @ self.w).astype(np.int64)  # (B, M)
        words = _bits_to_words(x)
        diff = np.bitwise_count(words[:, None, :] ^ self.w[None, :, :])
        return self.n - diff.sum(axis=2, dtype=np.int64)


def _windows(x: np.ndarray, layer) -> np.ndarray:
    """The convolution's windows (docs/semantics.md §5.2): ``(B, H*W*C)`` maps to ``(B, OH, OW,
    K*K*C)``, each window in ``ky, kx, c`` order, positions outside the map holding
    ``pad_value``."""
    h, w, c = layer.in_shape
    k, s, p = layer.kernel, layer.stride, layer.padding
    fmap = x.reshape(len(x), h, w, c)
    if p:
        fmap = np.pad(fmap, ((0, 0), (p, p), (p, p), (0, 0)), constant_values=layer.pad_value)
    view = np.lib.stride_tricks.sliding_window_view(fmap, (k, k), axis=(1, 2))
    view = view[:, ::s, ::s]  # (B, OH, OW, C, K, K)
    return view.transpose(0, 1, 2, 4, 5, 3).reshape(*view.shape[:3], k * k * c)


#: Largest XOR broadcast (64-bit words) evaluated at once by a binary convolution.
_CHUNK_WORDS = 1 << 22


class _Conv:
    """A convolution's accumulators (docs/semantics.md §5.2), ``int64 (B, OH*OW*M)`` in map
    order. On pixels: every window times the ±1 kernels as one matrix product (exact in float32:
    ``255 * K*K*C < 2**24``). On bits: the windows packed into 64-bit words (element ``j`` at
    bit ``j % 64`` of word ``j // 64``, unused high bits 0 like the weights' padding, so they
    never disagree), ``p = K*K*C - popcount(w XOR window)``."""

    def __init__(self, layer, previous=None):
        self.layer = layer
        self.n = layer.window
        if layer.input_bits == 8:
            signs = _signs_from_bytes(layer.weights, self.n)
            self.w = np.ascontiguousarray(signs.T.astype(np.float32))
        else:
            self.w = _bytes_to_words(layer.weights)  # (M, words)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        win = _windows(x, self.layer)  # (B, OH, OW, K*K*C)
        b = len(x)
        rows = win.reshape(-1, self.n)
        if self.layer.input_bits == 8:
            acc = (rows.astype(np.float32) @ self.w).astype(np.int64)
        else:
            words = _bytes_to_words(np.packbits(rows, axis=1, bitorder="little"))
            m, nw = self.w.shape
            step = max(1, _CHUNK_WORDS // (m * nw))
            acc = np.empty((len(words), m), np.int64)
            for s in range(0, len(words), step):
                diff = np.bitwise_count(words[s:s + step, None, :] ^ self.w[None, :, :])
                acc[s:s + step] = self.n - diff.sum(axis=2, dtype=np.int64)
        return acc.reshape(b, -1)


class _Pool:
    """Max-pooling on bits (docs/semantics.md §5.3): per channel the OR of each ``k x k`` window
    when the convolution before has direction +1, the AND when -1; ``uint8 (B, H/k*W/k*C)``."""

    def __init__(self, layer, previous):
        self.layer = layer
        self.rising = previous.directions.astype(np.int64) > 0

    def __call__(self, x: np.ndarray) -> np.ndarray:
        h, w, c = self.layer.in_shape
        k = self.layer.kernel
        blocks = x.reshape(len(x), h // k, k, w // k, k, c)
        out = np.where(self.rising, blocks.max(axis=(2, 4)), blocks.min(axis=(2, 4)))
        return out.astype(np.uint8).reshape(len(x), -1)


def _threshold(layer):
    """The threshold activation of a layer (docs/semantics.md §3.2): accumulators to ``uint8``
    0/1 bits, ``acc >= T`` for direction +1 and ``acc <= T`` for -1, per output channel (the
    last axis of a convolution's map); None for the score layer and for pooling, whose output
    is already bits."""
    if getattr(layer, "thresholds", None) is None:
        return None if layer.output == "scores" else _identity
    t = layer.thresholds.astype(np.int64)
    d = layer.directions.astype(np.int64)
    m = len(t)

    def threshold(acc):
        per_channel = acc.reshape(len(acc), -1, m)
        bits = np.where(d > 0, per_channel >= t, per_channel <= t)
        return bits.astype(np.uint8).reshape(len(acc), -1)

    return threshold


def _identity(x):
    return x


#: The golden function of each layer kind: built from the layer (and the one before it), maps
#: its input (pixels or bits) to accumulators, or (pooling) to bits.
_KINDS = {"dense": _Dense, "conv2d": _Conv, "maxpool2d": _Pool}

"""The golden model against hand-computed vectors and a naive per-element reference."""

import numpy as np
import pytest

from xnorflow.golden import FrameError, GoldenModel
from xnorflow.model import DenseLayer, Model


def tiny_model():
    """The worked example of docs/semantics.md §4, behind a 3-pixel 8-bit layer."""
    first = DenseLayer("input", 3, 4, 8, np.array([[0b101], [0b111], [0b000], [0b010]], np.uint8),
                       np.array([0, 100, -5, 10], np.int64), np.array([1, 1, -1, -1], np.int8))
    hidden = DenseLayer("hidden", 4, 2, 1, np.array([[0x0D], [0x00]], np.uint8),
                        np.array([3, 1], np.int64), np.array([1, -1], np.int8))
    out = DenseLayer("output", 2, 3, 1, np.array([[0b01], [0b10], [0b11]], np.uint8))
    return Model([first, hidden, out], (3,), {})


def test_hand_computed():
    g = GoldenModel(tiny_model())
    x = np.array([[10, 20, 30]])
    # layer 0: w0 = (+1,-1,+1) -> 10-20+30 = 20 >= 0 -> 1;  w1 = (+1,+1,+1) -> 60 >= 100 -> 0
    #          w2 = (-1,-1,-1) -> -60 <= -5 -> 1;           w3 = (-1,+1,-1) -> -20 <= 10 -> 1
    # a = 1 0 1 1 (byte 0x0D).  layer 1: p0 = popcount(XNOR(1011, 1011)) = 4 >= 3 -> 1
    #                                    p1 = popcount(XNOR(0000, 1011)) = 1 <= 1 -> 1
    # a = 1 1.  scores: w = 1 0 -> p = 1;  w = 0 1 -> p = 1;  w = 1 1 -> p = 2
    r = g.run(x, activations=True)
    assert r.activations[0].tolist() == [[1, 0, 1, 1]]
    assert r.activations[1].tolist() == [[1, 1]]
    assert r.scores.tolist() == [[1, 1, 2]]
    assert r.classes.tolist() == [2]


def test_semantics_doc_worked_example():
    # docs/semantics.md §4: w0 = 1011 (0x0D), w1 = 0000, T = (3, 1), d = (+1, -1), a = 1001
    first = DenseLayer("input", 1, 4, 8, np.array([[1], [0], [0], [1]], np.uint8),
                       np.array([0, 1, 1, 0], np.int64), np.array([1, 1, 1, 1], np.int8))
    hidden = DenseLayer("hidden", 4, 2, 1, np.array([[0x0D], [0x00]], np.uint8),
                        np.array([3, 1], np.int64), np.array([1, -1], np.int8))
    out = DenseLayer("output", 2, 2, 1, np.array([[0b01], [0b10]], np.uint8))
    g = GoldenModel(Model([first, hidden, out], (1,), {}))
    # pixel 0: acc = (+0, -0, -0, +0) -> bits 1, 0, 0, 1 = the doc's a = 1001
    r = g.run(np.array([[0]]), activations=True)
    assert r.activations[0].tolist() == [[1, 0, 0, 1]]
    assert r.activations[1].tolist() == [[1, 0]]


def test_ties_go_to_lowest_index():
    out = DenseLayer("output", 2, 4, 1, np.array([[0b00], [0b11], [0b11], [0b00]], np.uint8))
    first = DenseLayer("input", 1, 2, 8, np.array([[1], [1]], np.uint8),
                       np.array([0, 0], np.int64), np.array([1, 1], np.int8))
    g = GoldenModel(Model([first, out], (1,), {}))
    r = g.run(np.array([[7]]))
    assert r.scores.tolist() == [[0, 2, 2, 0]]
    assert r.classes.tolist() == [1]


def naive(model: Model, x: np.ndarray):
    """Element by element with Python integers, straight from docs/semantics.md."""
    a = [int(v) for v in x]
    acts = []
    for i, layer in enumerate(model.layers):
        n = layer.in_features
        out = []
        for c in range(layer.out_features):
            w = [(int(layer.weights[c, j // 8]) >> (j % 8)) & 1 for j in range(n)]
            if i == 0:
                acc = sum(v if wj else -v for wj, v in zip(w, a, strict=True))
            else:
                acc = sum(1 for wj, v in zip(w, a, strict=True) if wj == v)
            if layer.thresholds is None:
                out.append(acc)
            else:
                t, d = int(layer.thresholds[c]), int(layer.directions[c])
                out.append(int(acc >= t) if d == 1 else int(acc <= t))
        if layer.thresholds is None:
            return acts, out
        acts.append(out)
        a = out


@pytest.mark.parametrize("sizes", [(30, 70, 65, 7), (9, 128, 64, 3), (12, 5)])
def test_against_naive_reference(sizes):
    rng = np.random.default_rng(sum(sizes))
    layers = []
    for i, (n, m) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        bits = rng.integers(0, 2, (m, n))
        w = np.packbits(bits.astype(np.uint8), axis=1, bitorder="little")
        last = i == len(sizes) - 2
        lo, hi = (-255 * n, 255 * n) if i == 0 else (0, n)
        # thresholds near the middle of the range so both outputs occur, plus the range ends
        spread = n if i == 0 else n // 4
        t = None if last else rng.integers((lo + hi) // 2 - spread, (lo + hi) // 2 + spread + 1, m)
        d = None if last else rng.choice([-1, 1], m).astype(np.int8)
        if t is not None:
            t[0], d[0] = lo, 1
            t[-1], d[-1] = lo - 1, -1
            t = t.astype(np.int64)
        layers.append(DenseLayer(f"l{i}", n, m, 8 if i == 0 else 1, w, t, d))
    model = Model(layers, (sizes[0],), {})
    frames = rng.integers(0, 256, (20, sizes[0]))
    frames[0] = 0
    frames[1] = 255
    r = GoldenModel(model, batch=7).run(frames, activations=True)
    for k, x in enumerate(frames):
        acts, scores = naive(model, x)
        assert r.scores[k].tolist() == scores
        for got, want in zip(r.activations, acts, strict=True):
            assert got[k].tolist() == want
        assert r.classes[k] == int(np.argmax(scores))


def test_frame_errors():
    g = GoldenModel(tiny_model())
    with pytest.raises(FrameError, match=r"pixel out of range \[0, 255\]: frame 1, pixel 2 = 256"):
        g.run(np.array([[0, 0, 0], [0, 0, 256]]))
    with pytest.raises(FrameError, match=r"pixel out of range .*= -1"):
        g.run(np.array([[0, -1, 0]]))
    with pytest.raises(FrameError, match=r"frames must have shape \(B, 3\)"):
        g.run(np.zeros((2, 4), np.uint8))
    with pytest.raises(FrameError, match="integer pixels"):
        g.run(np.zeros((2, 3), np.float32))
    assert g.run(np.zeros((0, 3), np.uint8)).scores.shape == (0, 3)
    assert g.run(np.array([10, 20, 30])).classes.tolist() == [2]

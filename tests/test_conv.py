"""Convolutions and pooling in the core: the golden model against a naive reference written with
plain loops from docs/semantics.md section 5, hand-computed vectors, the model file's checks."""

import json

import numpy as np
import pytest

from xnorflow import spec as specs
from xnorflow.golden import GoldenModel
from xnorflow.model import ConvLayer, DenseLayer, Model, ModelFormatError, PoolLayer, pack_bits
from xnorflow.sim.fixtures import random_frames, random_net

# --- The naive reference (docs/semantics.md 3 and 5, loops only) ------------------------------


def weight_rows(layer):
    n = layer.kernel * layer.kernel * layer.in_shape[2] if layer.kind == "conv2d" \
        else layer.in_features
    return [[(int(row[j // 8]) >> (j % 8)) & 1 for j in range(n)] for row in layer.weights]


def accumulate(row, inputs, input_bits):
    if input_bits == 8:
        return sum(x if w else -x for w, x in zip(row, inputs, strict=True))
    return sum(1 for w, a in zip(row, inputs, strict=True) if w == a)


def threshold(acc, t, d):
    return int(acc >= t) if d == 1 else int(acc <= t)


def naive_conv(layer, vec):
    h, w, c = layer.in_shape
    k, s, p = layer.kernel, layer.stride, layer.padding
    oh, ow = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1

    def u(r, col, ch):
        r, col = r - p, col - p
        return vec[(r * w + col) * c + ch] if 0 <= r < h and 0 <= col < w else layer.pad_value

    rows = weight_rows(layer)
    out = []
    for y in range(oh):
        for x in range(ow):
            window = [u(y * s + ky, x * s + kx, ch)
                      for ky in range(k) for kx in range(k) for ch in range(c)]
            for m, row in enumerate(rows):
                acc = accumulate(row, window, layer.input_bits)
                out.append(threshold(acc, int(layer.thresholds[m]), int(layer.directions[m])))
    return out


def naive_pool(layer, vec, directions):
    h, w, c = layer.in_shape
    k = layer.kernel
    out = []
    for py in range(h // k):
        for px in range(w // k):
            for ch in range(c):
                bits = [vec[((py * k + i) * w + px * k + j) * c + ch]
                        for i in range(k) for j in range(k)]
                out.append(int(any(bits)) if directions[ch] == 1 else int(all(bits)))
    return out


def naive_run(model, frame):
    """Scores and every hidden layer's bits of one frame."""
    vec, acts = [int(v) for v in frame], []
    for i, layer in enumerate(model.layers):
        if layer.kind == "conv2d":
            vec = naive_conv(layer, vec)
        elif layer.kind == "maxpool2d":
            vec = naive_pool(layer, vec, [int(d) for d in model.layers[i - 1].directions])
        else:
            accs = [accumulate(row, vec, layer.input_bits) for row in weight_rows(layer)]
            if layer.thresholds is None:
                return accs, acts
            vec = [threshold(a, int(t), int(d))
                   for a, t, d in zip(accs, layer.thresholds, layer.directions, strict=True)]
        acts.append(vec)
    raise AssertionError("the last layer gives scores")


# --- Golden model = naive reference ------------------------------------------------------------

SPECS = [
    "7x9x1-c4k3-3",                     # odd sizes, no padding, stride 1, one channel
    "7x9x3-c5k3p-4",                    # RGB, padding K//2
    "9x7x1-c4k3s2-c3k3s2p-5",           # both strides, a binary conv with padding
    "8x8x3-c6k3p-p2-c5k3p-p2-7",        # pools after convs, padded binary convs
    "13x9x1-c4k1-c6k3s2-p2-c4k2-6",     # 1x1 and even kernels, pool after a strided conv
    "6x10x3-c3k5p-c4k3p-p2-24-5",       # a dense hidden layer after flattening
    "5x5x1-c2k5-3",                     # kernel as large as the input
]


@pytest.mark.parametrize("spec", SPECS)
@pytest.mark.parametrize("pad_bit", [0, 1])
def test_golden_equals_naive_reference(spec, pad_bit):
    model = random_net(spec, seed=len(spec) + pad_bit, pad_bit=pad_bit)
    frames = random_frames(np.random.default_rng(pad_bit), 6, model.in_features)
    frames[0] = 0
    frames[1] = 255
    result = GoldenModel(model).run(frames, activations=True)
    for b, frame in enumerate(frames):
        scores, acts = naive_run(model, frame)
        assert result.scores[b].tolist() == scores
        for layer, (got, want) in enumerate(zip(result.activations, acts, strict=True)):
            assert got[b].tolist() == want, f"frame {b}, layer {layer}"


def test_padding_pixel_value_enters_the_sum():
    """An 8-bit convolution padded with pixel 255: a corner window of an all-zero frame sums the
    pad pixels of its +1 weights minus those of its -1 weights."""
    w = np.array([[1, 0, 1, 1, 1, 1, 1, 1, 0]], dtype=np.uint8)  # 3x3, one channel
    layer = ConvLayer("c", (4, 4, 1), 1, 3, 1, 1, 255, 8, pack_bits(w),
                      np.array([0], np.int64), np.array([1], np.int8))
    model = Model([layer, DenseLayer("d", 16, 2, 1, pack_bits(np.ones((2, 16), np.uint8)))],
                  (4, 4))
    golden = GoldenModel(model)
    acc = golden._layers[0][0](np.zeros((1, 16), np.uint8)).reshape(4, 4)
    # (0, 0): padded positions are ky = 0 (3 of them) and kx = 0 (3), 5 distinct: weights at
    # (0,0),(0,1),(0,2),(1,0),(2,0) = 1, 0, 1, 1, 1 -> 255 * (4 - 1)
    assert acc[0, 0] == 255 * 3
    assert acc[1, 1] == 0  # no padding reaches the inside


def test_worked_example_of_the_semantics():
    """docs/semantics.md 5.3, worked example, by hand."""
    conv = ConvLayer("c", (2, 3, 1), 1, 2, 1, 0, 0, 1, pack_bits(np.array([[1, 1, 0, 1]])),
                     np.array([3], np.int64), np.array([1], np.int8))
    v = [1, 0, 1, 1, 1, 0]
    assert naive_conv(conv, v) == [0, 0]
    down = ConvLayer("c", (2, 3, 1), 1, 2, 1, 0, 0, 1, pack_bits(np.array([[1, 1, 0, 1]])),
                     np.array([1], np.int64), np.array([-1], np.int8))
    assert naive_conv(down, v) == [0, 1]
    pool = PoolLayer("p", (2, 2, 1), 2)
    assert naive_pool(pool, [0, 1, 0, 0], [1]) == [1]
    assert naive_pool(pool, [0, 1, 0, 0], [-1]) == [0]
    # and the golden model on a first layer that passes the frame's bits through unchanged is
    # checked against the naive reference above on every spec


def test_pool_is_or_for_rising_and_and_for_falling_channels():
    """Two channels of a 2x2 map, direction +1 and -1, through the golden model."""
    w = np.array([[1], [1]], np.uint8)  # 1x1 kernels on one pixel channel
    conv = ConvLayer("c", (2, 2, 1), 2, 1, 1, 0, 0, 8, pack_bits(w),
                     np.array([128, 127], np.int64), np.array([1, -1], np.int8))
    model = Model([conv, PoolLayer("p", (2, 2, 2), 2),
                   DenseLayer("d", 2, 2, 1, pack_bits(np.array([[1, 0], [0, 1]])))], (2, 2))
    result = GoldenModel(model).run(np.array([[200, 0, 0, 0], [200, 200, 200, 200]]),
                                    activations=True)
    # frame 0: channel 0 bits (>= 128) 1 0 0 0 -> OR 1; channel 1 bits (<= 127) 0 1 1 1 -> AND 0
    # frame 1: channel 0 1 1 1 1 -> 1; channel 1 0 0 0 0 -> 0
    assert result.activations[1].tolist() == [[1, 0], [1, 0]]


# --- Specs --------------------------------------------------------------------------------------


def test_presets_parse_with_their_shapes():
    cnv = specs.parse("cnv")
    assert [type(layer).__name__ for layer in cnv.layers] == (
        ["Conv", "Conv", "Pool", "Conv", "Conv", "Pool", "Conv", "Conv", "Dense", "Dense",
         "Dense"])
    assert cnv.layers[7].out_shape == (1, 1, 256) and cnv.layers[8].in_features == 256
    scnv = specs.parse("scnv")
    assert scnv.layers[-1].in_features == 3 * 3 * 96
    assert specs.parse("sfc").sizes == [784, 256, 256, 256, 10]


@pytest.mark.parametrize("spec, message", [
    ("8x8-c4k9-3", "layer 'c4k9': kernel 9x9 is larger than its input 8x8"),
    ("8x8-c4k3-p4-3", "layer 'p4': 4 does not divide the 6x6 map"),
    ("8x8-p2-3", "layer 'p2': a pooling layer must follow a convolution"),
    ("64-c4k3-3", "layer 'c4k3': a convolution needs a feature map"),
    ("8x8-c4k3s3-3", "stride 1 or 2"),
    ("8x8-c4k3-c4k3pv2-3", "pad value 2 must be a bit"),
    ("8x8-c4k3", "the last layer must be dense"),
    ("8x8-x4-3", "not a layer"),
])
def test_bad_specs_name_the_token(spec, message):
    with pytest.raises(ValueError, match=message):
        specs.parse(spec)


# --- The model file ----------------------------------------------------------------------------


def test_conv_model_round_trip(tmp_path):
    model = random_net("8x8x3-c6k3p-p2-c5k3-7", 3)
    path = model.save(tmp_path / "c.npz")
    again = Model.load(path)
    assert again.content_hash == model.content_hash and again.format_version == 2
    frames = random_frames(np.random.default_rng(3), 4, model.in_features)
    assert np.array_equal(GoldenModel(again).run(frames).scores,
                          GoldenModel(model).run(frames).scores)


def rewrite(path, edit_manifest=None, edit_arrays=None):
    with np.load(path) as npz:
        arrays = {k: npz[k] for k in npz.files}
    manifest = json.loads(arrays.pop("manifest").tobytes().decode())
    if edit_manifest:
        edit_manifest(manifest)
    if edit_arrays:
        edit_arrays(arrays)
    manifest["content_hash"] = Model._hash(manifest, arrays)
    blob = json.dumps(manifest).encode()
    np.savez(path, manifest=np.frombuffer(blob, np.uint8), **arrays)


@pytest.fixture
def saved(tmp_path):
    return random_net("8x8x3-c6k3p-p2-c5k3-7", 3, pad_bit=0).save(tmp_path / "c.npz")


def _layer(i, **fields):
    def edit(manifest):
        manifest["layers"][i].update(fields)
    return edit


@pytest.mark.parametrize("edit, message", [
    (_layer(0, kernel=11, padding=0), r"layer 0 \(conv0\) field 'kernel': 11x11 is larger than "
                                      r"the input 8x8 \(padding 0\)"),
    (_layer(0, stride=3), r"layer 0 \(conv0\) field 'stride': must be 1 or 2, got 3"),
    (_layer(0, padding=2), r"layer 0 \(conv0\) field 'padding': must be 0 or kernel // 2 = 1"),
    (_layer(0, pad_value=300), r"layer 0 \(conv0\) field 'pad_value': must be a pixel value"),
    (_layer(2, pad_value=2), r"layer 2 \(conv2\) field 'pad_value': must be a bit"),
    (_layer(1, kernel=3), r"layer 1 \(pool1\) field 'kernel': 3 does not divide the input 8x8"),
    (_layer(2, in_shape=[4, 4, 5]), r"layer 2 \(conv2\) field 'in_shape': 5 channels do not "
                                    r"chain with the 6 channels of layer 1"),
    (_layer(2, in_shape=[5, 4, 6]), r"layer 2 \(conv2\) field 'in_shape': 5x4x6 does not match "
                                    r"the 4x4x6 output of layer 1"),
    (_layer(1, kind="avgpool"), r"layer 1 \(pool1\) field 'kind': unsupported layer kind "
                                r"'avgpool'"),
    (_layer(3, in_features=99), r"layer 3 \(fc3\) field 'in_features': 99 does not match the "
                                r"20 outputs of layer 2"),
])
def test_malformed_conv_files_name_the_layer_and_field(saved, edit, message):
    rewrite(saved, edit_manifest=edit)
    with pytest.raises(ModelFormatError, match=message):
        Model.load(saved)


def test_weights_of_a_conv_must_match_the_window(saved):
    def edit(arrays):
        arrays["layer2.weights"] = arrays["layer2.weights"][:, :-1].copy()
    rewrite(saved, edit_arrays=edit)
    with pytest.raises(ModelFormatError, match=r"layer 2 \(conv2\) field 'weights': shape "
                                               r"\(5, 6\) does not match out_channels x "
                                               r"ceil\(kernel\*kernel\*channels/8\) = \(5, 7\)"):
        Model.load(saved)


def test_a_version_1_file_holds_dense_layers_only(saved):
    rewrite(saved, edit_manifest=lambda m: m.update(version=1))
    with pytest.raises(ModelFormatError, match=r"layer 0 \(conv0\) field 'kind': 'conv2d' needs "
                                               "format version 2"):
        Model.load(saved)


def test_pool_needs_a_conv_before_it_and_no_arrays(saved):
    def edit(arrays):
        arrays["layer1.weights"] = np.zeros((1, 1), np.uint8)
    rewrite(saved, edit_arrays=edit)
    with pytest.raises(ModelFormatError, match=r"layer 1 \(pool1\) field 'layer1.weights'|"
                                               r"a pooling layer has no arrays"):
        Model.load(saved)


def test_shipped_mlps_stay_version_1():
    from xnorflow.models import MODELS_DIR

    for name in ("tfc", "sfc", "lfc"):
        model = Model.load(MODELS_DIR / f"{name}.npz")
        assert model.format_version == 1


# --- CPU implementations -----------------------------------------------------------------------


@pytest.mark.parametrize("spec", SPECS)
def test_torch_cpu_model_is_exact_on_conv_models(spec):
    from xnorflow.cpu import TorchCPUModel

    model = random_net(spec, seed=7)
    frames = random_frames(np.random.default_rng(7), 50, model.in_features)
    scores, classes = TorchCPUModel(model).run(frames)
    ref = GoldenModel(model).run(frames)
    assert np.array_equal(scores, ref.scores) and np.array_equal(classes, ref.classes)


def test_native_backend_runs_conv_models():
    from xnorflow.native import NativeModel, available_isas

    model = random_net("8x8x1-c4k3-p2-5", 2)
    native = NativeModel(model)
    if available_isas():                # a compiler and a supported CPU: its own kernels
        assert native.available and native.reason is None
    frames = random_frames(np.random.default_rng(2), 9, model.in_features)
    assert np.array_equal(native.run(frames)[0], GoldenModel(model).run(frames).scores)

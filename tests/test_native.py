"""The native CPU backend (``xnorflow.native``): bit-exact with the golden model on every
instruction-set path this machine runs (dense, convolutional and pooling layers), its build
cache, and its fallback without a compiler."""

import logging
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from xnorflow import native
from xnorflow.cpu import implementations
from xnorflow.data import load
from xnorflow.golden import FrameError, GoldenModel
from xnorflow.model import ConvLayer, DenseLayer, Model, PoolLayer, pack_bits
from xnorflow.models import resolve, shipped
from xnorflow.sim.fixtures import random_frames, random_net

MNIST = Path(os.environ.get("XNORFLOW_MNIST",
                            Path(__file__).resolve().parents[2] / "shared" / "datasets" / "mnist"))
needs_mnist = pytest.mark.skipif(
    not (MNIST / "t10k-images-idx3-ubyte.gz").exists() and
    not (MNIST / "t10k-images-idx3-ubyte").exists(),
    reason=f"full MNIST IDX files not found in {MNIST} (set XNORFLOW_MNIST)")

ISAS = native.available_isas()


def random_model(sizes, seed) -> Model:
    """A random model of topology ``sizes``: thresholds drawn around the typical accumulator
    (so channels switch), with both directions, and in every hidden layer some constant channels
    at the ends of the allowed range (always 1, always 0)."""
    rng = np.random.default_rng(seed)
    layers = []
    for i, (n, m) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        w = pack_bits(rng.integers(0, 2, (m, n)))
        t = d = None
        if i < len(sizes) - 2:
            d = rng.choice([-1, 1], m).astype(np.int8)
            if i == 0:  # acc = sum of ±pixels: centred near 0, spread about 128 sqrt(n)
                lo, hi = -255 * n, 255 * n
                t = rng.integers(-150 * int(n**0.5) - 1, 150 * int(n**0.5) + 2, m)
            else:  # p: centred at n / 2, spread sqrt(n) / 2
                lo, hi = 0, n
                t = rng.integers(n // 2 - int(n**0.5), n // 2 + int(n**0.5) + 2, m)
            const = rng.choice(m, size=min(4, m), replace=False)
            ends = [(1, lo), (1, hi + 1), (-1, lo - 1), (-1, hi)]  # 1, 0, 0, 1
            for c, (dc, tc) in zip(const, ends, strict=False):
                d[c], t[c] = dc, tc
            t = t.astype(np.int64)
        layers.append(DenseLayer(f"l{i}", n, m, 8 if i == 0 else 1, w, t, d))
    model = Model(layers, (sizes[0],), {"dataset": "random", "seed": seed})
    model.validate()
    return model


TOPOLOGIES = [(13, 77, 5), (200, 65, 129, 10), (100, 7), (784, 130, 64, 10)]


@pytest.fixture(scope="module", params=TOPOLOGIES, ids=lambda t: "-".join(map(str, t)))
def case(request):
    model = random_model(request.param, seed=sum(request.param))
    x = np.random.default_rng(7).integers(0, 256, (300, model.in_features), dtype=np.uint8)
    return model, x, GoldenModel(model).run(x, activations=True)


def test_machine_runs_a_vector_path():
    assert ISAS and ISAS[-1] == "portable"
    assert native.compiler_error() is None
    if os.uname().machine == "x86_64":
        assert "avx2" in ISAS  # every x86-64 CPU this project targets has AVX2


def test_random_models_exercise_the_cases(case):
    """The models switch: hidden channels both on and off, constant channels, score ties."""
    model, x, gold = case
    for bits in gold.activations:
        varying = (bits.min(axis=0) != bits.max(axis=0)).mean()
        assert varying > 0.3
        assert (bits.min(axis=0) == 1).any() and (bits.max(axis=0) == 0).any()
    top = gold.scores.max(axis=1, keepdims=True)
    if len(model.layers) > 1:
        assert ((gold.scores == top).sum(axis=1) > 1).any()  # ties to the lowest index occur


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("batch,threads", [(1, 1), (7, 1), (7, 2), (300, 1), (300, 2),
                                           (100, 3)])
def test_bit_exact_with_golden(case, isa, batch, threads):
    model, x, gold = case
    nm = native.NativeModel(model, threads=threads, isa=isa)
    assert nm.available and nm.isa == isa
    scores, classes = [], []
    for s in range(0, len(x), batch):
        sc, cl = nm.run(x[s:s + batch])
        assert sc.dtype == np.int64 and cl.dtype == np.int64
        assert sc.shape == (len(cl), model.classes)
        scores.append(sc)
        classes.append(cl)
    np.testing.assert_array_equal(np.concatenate(scores), gold.scores)
    np.testing.assert_array_equal(np.concatenate(classes), gold.classes)
    np.testing.assert_array_equal(nm.predict(x[:batch]), gold.classes[:batch])


def test_extreme_pixels():
    """All-255 and all-0 frames reach the ends of the 8-bit accumulator range."""
    model = random_model((300, 40, 9), seed=3)
    x = np.array([[255] * 300, [0] * 300, [255, 0] * 150], np.uint8)
    gold = GoldenModel(model).run(x)
    for isa in ISAS:
        scores, classes = native.NativeModel(model, isa=isa).run(x)
        np.testing.assert_array_equal(scores, gold.scores)
        np.testing.assert_array_equal(classes, gold.classes)


def test_frames_checked_like_the_golden_model():
    model = random_model((13, 77, 5), seed=1)
    nm = native.NativeModel(model)
    with pytest.raises(FrameError, match=r"shape \(B, 13\)"):
        nm.run(np.zeros((2, 12), np.uint8))
    with pytest.raises(FrameError, match="dtype float32"):
        nm.run(np.zeros((2, 13), np.float32))
    with pytest.raises(FrameError, match="frame 1, pixel 4 = 256"):
        x = np.zeros((2, 13), np.int16)
        x[1, 4] = 256
        nm.run(x)
    with pytest.raises(FrameError, match="= -1"):
        nm.run(-np.ones((1, 13), np.int64))
    x = np.random.default_rng(0).integers(0, 256, (5, 13))
    gold = GoldenModel(model).run(x)
    s1, c1 = nm.run(x)  # int64 pixels in range
    s2, c2 = nm.run(np.asfortranarray(x.astype(np.uint8)))  # not C-contiguous
    s3, c3 = nm.run(x[2].astype(np.uint8))  # one frame as (N0,)
    for s, c in ((s1, c1), (s2, c2)):
        np.testing.assert_array_equal(s, gold.scores)
        np.testing.assert_array_equal(c, gold.classes)
    np.testing.assert_array_equal(s3, gold.scores[2:3])
    s0, c0 = nm.run(np.zeros((0, 13), np.uint8))
    assert s0.shape == (0, 5) and c0.shape == (0,)


def test_bad_arguments():
    model = random_model((13, 77, 5), seed=1)
    with pytest.raises(ValueError, match="isa 'sse9' cannot run here; this machine runs "
                                         + ", ".join(ISAS)):
        native.NativeModel(model, isa="sse9")
    with pytest.raises(ValueError, match="threads must be at least 1, got 0"):
        native.NativeModel(model, threads=0)
    n = (2**31 - 1) // 510 + 1
    wide = Model([DenseLayer("l0", n, 1, 8, np.zeros((1, (n + 7) // 8), np.uint8))], (n,))
    with pytest.raises(ValueError, match=f"first layer too wide .*: {n} inputs"):
        native.NativeModel(wide)


def test_listed_with_the_cpu_implementations():
    """Listed for the benchmark, with torch's thread count (what the benchmark sets)."""
    model = random_model((13, 77, 5), seed=2)
    impls = implementations(model)
    nm = impls["native-bitpacked"]
    assert isinstance(nm, native.NativeModel)
    x = np.random.default_rng(1).integers(0, 256, (40, 13), dtype=np.uint8)
    saved = torch.get_num_threads()
    try:
        for t in (1, 2):
            torch.set_num_threads(t)
            np.testing.assert_array_equal(nm.predict(x), impls["golden-numpy-bitpacked"].predict(x))
            assert nm.threads == t
    finally:
        torch.set_num_threads(saved)


def test_concurrent_callers():
    """Python threads sharing one model (the C call runs without the GIL) get their own
    results, single frames and batches alike."""
    model = random_model((200, 65, 129, 10), seed=6)
    x = np.random.default_rng(3).integers(0, 256, (64, 200), dtype=np.uint8)
    gold = GoldenModel(model).run(x)
    nm = native.NativeModel(model, threads=2)
    errors = []

    def work(seed):
        order = np.random.default_rng(seed).permutation(len(x))
        for i in order:
            s, c = nm.run(x[i])
            if not (np.array_equal(s[0], gold.scores[i]) and c[0] == gold.classes[i]):
                errors.append((seed, i))
        s, c = nm.run(x[order])
        if not np.array_equal(s, gold.scores[order]):
            errors.append((seed, "batch"))

    workers = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert errors == []


def test_benchmark_reports_the_run():
    model = random_model((13, 77, 5), seed=2)
    r = native.benchmark(model, batch=32, threads=1, seconds=0.02, repeats=2)
    assert r["isa"] == ISAS[0] and r["threads"] == 1 and r["batch"] == 32
    assert len(r["frames_per_s"]) == 2 and r["best"] == max(r["frames_per_s"]) > 0
    assert r["us_per_frame"] == pytest.approx(1e6 / r["median"])


# --- convolutions and pooling -------------------------------------------------------------------

#: Odd maps, channel counts off the byte and word sizes (7, 9, 13, 33, 65, 70, 129), 1 and 3 input
#: channels, strides 1 and 2, kernels 1 to 5 (even ones too), padding on the frame (pad values 0,
#: 37, 255) and on bits, pooling by 2, 3 and 7 before convolutions and dense layers, a dense
#: layer straight after a convolution, and scnv's shape.
CONV_SPECS = ["11x9x3-c13k3s2pv37-c70k3p-7", "15x15x1-c9k3s2-c33k3p-p7-5",
              "12x12x3-c65k3p-p2-c129k5s2p-c3k1-p3-9", "9x9x1-c7k2-c9k3s2-6",
              "10x10x1-c8k4pv255-c5k2p-p3-4", "28x28x1-c32k3-p2-c64k3-c96k3-p3-10"]


@pytest.fixture(scope="module", params=[(spec, bit) for spec in CONV_SPECS for bit in (0, 1)],
                ids=lambda p: f"{p[0]}-pad{p[1]}")
def conv_case(request):
    """A random model of the spec with every binary convolution padding with the given bit
    (the same weights for both bits), 40 frames (a third 0, a third 255), the golden results,
    and the golden scores of the same model padding with the other bit."""
    spec, bit = request.param
    model = random_net(spec, seed=11, pad_bit=bit)
    x = random_frames(np.random.default_rng(5), 40, model.in_features)
    other = GoldenModel(random_net(spec, seed=11, pad_bit=1 - bit)).run(x).scores
    return model, x, GoldenModel(model).run(x, activations=True), other


def test_conv_models_exercise_the_cases(conv_case):
    """Every convolution's channels switch, every fourth channel is constant, both directions
    occur; the pad bit changes the scores wherever a binary convolution pads."""
    model, x, gold, other = conv_case
    directions = set()
    for layer, bits in zip(model.layers, gold.activations, strict=False):
        if layer.kind != "conv2d":
            continue
        per_channel = bits.reshape(-1, layer.out_channels)
        assert (per_channel.min(axis=0) != per_channel.max(axis=0)).mean() > 0.5
        constant = (per_channel.min(axis=0) == 1) | (per_channel.max(axis=0) == 0)
        assert constant.sum() >= layer.out_channels // 4
        directions |= set(layer.directions.tolist())
    assert directions == {-1, 1}
    pads = any(layer.kind == "conv2d" and layer.input_bits == 1 and layer.padding
               for layer in model.layers)
    assert pads == (not np.array_equal(other, gold.scores))


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("batch,threads", [(1, 1), (7, 1), (7, 2), (40, 2), (40, 3)])
def test_conv_bit_exact_with_golden(conv_case, isa, batch, threads):
    model, x, gold, _ = conv_case
    nm = native.NativeModel(model, threads=threads, isa=isa)
    assert nm.available and nm.isa == isa and nm.reason is None
    scores = np.concatenate([nm.run(x[s:s + batch])[0] for s in range(0, len(x), batch)])
    np.testing.assert_array_equal(scores, gold.scores)
    np.testing.assert_array_equal(nm.predict(x), gold.classes)


def _one_hot_scores(n):
    """A score layer of n outputs on n bits whose row i is the unit vector e_i: score i is
    ``popcount(XNOR(e_i, a)) = 2 a_i + n - 1 - sum(a)``, so the scores spell out the bits."""
    return DenseLayer("read", n, n, 1, pack_bits(np.eye(n, dtype=np.uint8)))


@pytest.mark.parametrize("isa", ISAS)
def test_hand_computed_conv_and_pool(isa):
    """The worked examples of docs/semantics.md §5, by hand. Convolution: the 2x3 bit map
    1 0 1 / 1 1 0 (pixels >= 128 through a 1x1 convolution), kernel 1 1 0 1, T = 3 with d = +1
    gives 0 0 and T = 1 with d = -1 gives 0 1; channel-fastest the map is 0 0 0 1, so the
    one-hot scores are 2 2 2 4. Pooling: the 2x2 map 0 1 / 0 0 pools to 1 for d = +1 (OR) and
    to 0 for d = -1 (AND): scores 2 0."""
    def bits(rows):
        return pack_bits(np.array(rows, np.uint8))

    i64, i8 = np.int64, np.int8
    conv = Model([
        ConvLayer("px", (2, 3, 1), 1, 1, 1, 0, 0, 8, bits([[1]]), np.array([128], i64),
                  np.array([1], i8)),
        ConvLayer("c", (2, 3, 1), 2, 2, 1, 0, 0, 1, bits([[1, 1, 0, 1], [1, 1, 0, 1]]),
                  np.array([3, 1], i64), np.array([1, -1], i8)),
        _one_hot_scores(4)], (2, 3, 1))
    frame = np.array([[200, 0, 255, 128, 201, 127]], np.uint8)
    pool = Model([
        ConvLayer("px", (2, 2, 1), 2, 1, 1, 0, 0, 8, bits([[1], [0]]), np.array([128, -128], i64),
                  np.array([1, -1], i8)),
        PoolLayer("p", (2, 2, 2), 2), _one_hot_scores(2)], (2, 2, 1))
    for model, x, want in ((conv, frame, [2, 2, 2, 4]),
                           (pool, np.array([[0, 200, 0, 0]], np.uint8), [2, 0])):
        model.validate()
        np.testing.assert_array_equal(GoldenModel(model).run(x).scores, [want])
        np.testing.assert_array_equal(native.NativeModel(model, isa=isa).run(x)[0], [want])


def test_conv_first_layer_width_checked():
    """The first convolution's window (not the frame) bounds its 32-bit accumulators."""
    c = (2**31 - 1) // 510 // 9 + 1
    n = 9 * c
    wide = Model([ConvLayer("c", (3, 3, c), 1, 3, 1, 0, 0, 8, np.zeros((1, -(-n // 8)), np.uint8),
                            np.array([0], np.int64), np.array([1], np.int8)),
                  DenseLayer("d", 1, 2, 1, np.zeros((2, 1), np.uint8))], (3, 3, c))
    with pytest.raises(ValueError, match=f"first layer too wide .*: {n} inputs"):
        native.NativeModel(wide)


def test_conv_models_listed_with_the_cpu_implementations():
    model = random_net("12x12x3-c65k3p-p2-c129k5s2p-c3k1-p3-9", seed=2)
    impls = implementations(model)
    nm = impls["native-bitpacked"]
    assert isinstance(nm, native.NativeModel) and nm.available
    x = random_frames(np.random.default_rng(4), 20, model.in_features)
    np.testing.assert_array_equal(nm.predict(x), impls["golden-numpy-bitpacked"].predict(x))


@needs_mnist
@pytest.mark.needs_mnist
@pytest.mark.slow
def test_scnv_on_full_mnist():
    """Every score and class of the shipped convolutional model scnv on the 10,000 MNIST test
    frames, on the best isa with two threads and frame by frame on the first 500."""
    model = Model.load(resolve("scnv"))
    assert [layer.kind for layer in model.layers].count("conv2d") == 3
    x = load(MNIST, "test").images
    assert len(x) == 10000
    gold = GoldenModel(model).run(x)
    nm = native.NativeModel(model, threads=2)
    assert nm.isa == ISAS[0]
    scores, classes = nm.run(x)
    np.testing.assert_array_equal(scores, gold.scores)
    np.testing.assert_array_equal(classes, gold.classes)
    one = np.concatenate([nm.run(x[i])[0] for i in range(500)])
    np.testing.assert_array_equal(one, gold.scores[:500])


def _shipped_frames():
    """The full MNIST test set when present, else the embedded 1,000-image test split."""
    if MNIST.is_dir() and ((MNIST / "t10k-images-idx3-ubyte.gz").exists()
                           or (MNIST / "t10k-images-idx3-ubyte").exists()):
        return load(MNIST, "test").images
    return load(None, "test").images


@pytest.mark.parametrize("name", ["tfc", "sfc", "lfc", "icnv"])
def test_shipped_models_on_mnist(name):
    """Every score and class of the shipped models on the test split (10,000 MNIST frames when
    the files are there, else the embedded 1,000)."""
    if name not in shipped():
        pytest.skip(f"{name} is not shipped")
    model = Model.load(shipped()[name])
    x = _shipped_frames()
    gold = GoldenModel(model).run(x)
    scores, classes = native.NativeModel(model, threads=2).run(x)
    np.testing.assert_array_equal(scores, gold.scores)
    np.testing.assert_array_equal(classes, gold.classes)


@needs_mnist
@pytest.mark.needs_mnist
def test_full_mnist_is_used():
    assert len(_shipped_frames()) == 10000


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    """An empty build cache and no library loaded in this process."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(native, "_libs", {})
    return tmp_path / "xnorflow" / "native"


def test_build_is_cached(fresh_cache, monkeypatch):
    model = random_model((13, 77, 5), seed=4)
    before = native.build_count()
    native.NativeModel(model)
    assert native.build_count() == before + 1
    (lib,) = fresh_cache.glob("*/libxnorflow_native.so")
    assert [p.name for p in lib.parent.iterdir()] == [lib.name]  # no temporary left behind
    mtime = lib.stat().st_mtime_ns
    monkeypatch.setattr(native, "_libs", {})  # as a new process would start
    nm = native.NativeModel(model)
    assert nm.available and native.build_count() == before + 1
    assert lib.stat().st_mtime_ns == mtime
    # a real second process loads the same file without compiling
    code = ("from xnorflow import native; native.available_isas(); "
            "print(native.build_count(), native.compiler_error())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env=dict(os.environ)).stdout
    assert out.split() == ["0", "None"]
    assert lib.stat().st_mtime_ns == mtime


def test_concurrent_builds(fresh_cache):
    """Two processes building into one empty cache both load a whole library; one file stays."""
    code = ("from xnorflow import native; print(native.available_isas(), "
            "native.compiler_error())")
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                              env=dict(os.environ)) for _ in range(2)]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    assert outs[0] == outs[1] == f"{ISAS} None\n"
    assert [p.name for p in fresh_cache.glob("*/*")] == ["libxnorflow_native.so"]


@pytest.mark.parametrize("cc,named", [("/nonexistent", "/nonexistent"), ("false", "false"),
                                      (None, "failed: [Errno")])
def test_fallback_without_a_compiler(fresh_cache, monkeypatch, caplog, cc, named):
    """No compiler, a compiler that fails, a cache that cannot be written: the golden model."""
    if cc is None:  # the cache directory cannot be created: a file stands in its way
        fresh_cache.parent.parent.mkdir(parents=True, exist_ok=True)
        fresh_cache.parent.write_text("not a directory")
    else:
        monkeypatch.setenv("CC", cc)
    model = random_model((200, 65, 129, 10), seed=5)
    x = np.random.default_rng(2).integers(0, 256, (50, 200), dtype=np.uint8)
    with caplog.at_level(logging.WARNING, logger="xnorflow.native"):
        nm = native.NativeModel(model)
        native.NativeModel(model)
    assert not nm.available and nm.isa is None
    assert named in nm.reason
    notes = [r for r in caplog.records if r.name == "xnorflow.native"]
    assert len(notes) == 1 and named in notes[0].getMessage()  # said once
    assert native.available_isas() == []
    gold = GoldenModel(model).run(x)
    scores, classes = nm.run(x)
    np.testing.assert_array_equal(scores, gold.scores)
    np.testing.assert_array_equal(classes, gold.classes)
    np.testing.assert_array_equal(nm.predict(x), gold.classes)
    with pytest.raises(FrameError):
        nm.run(np.zeros((1, 3), np.uint8))
    with pytest.raises(ValueError, match="native library is unavailable"):
        native.NativeModel(model, isa="portable")
    assert "native-bitpacked" not in implementations(model)
    assert not fresh_cache.is_dir() or not list(fresh_cache.glob("*/*"))

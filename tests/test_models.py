"""The trained models shipped in the package, and the golden model on real MNIST."""

import os
from pathlib import Path

import numpy as np
import pytest

from xnorflow import spec as specs
from xnorflow.data import load
from xnorflow.export import compare_with_float, export
from xnorflow.golden import GoldenModel
from xnorflow.model import Model
from xnorflow.models import MODELS_DIR, shipped
from xnorflow.train import TrainConfig, train

MNIST = Path(os.environ.get("XNORFLOW_MNIST",
                            Path(__file__).resolve().parents[2] / "shared" / "datasets" / "mnist"))
needs_mnist = pytest.mark.skipif(
    not (MNIST / "t10k-images-idx3-ubyte.gz").exists() and
    not (MNIST / "t10k-images-idx3-ubyte").exists(),
    reason=f"full MNIST IDX files not found in {MNIST} (set XNORFLOW_MNIST)")

FASHION = MNIST.parent / "fashion-mnist"
needs_fashion = pytest.mark.skipif(
    not (FASHION / "t10k-images-idx3-ubyte.gz").exists() and
    not (FASHION / "t10k-images-idx3-ubyte").exists(),
    reason=f"Fashion-MNIST IDX files not found in {FASHION}")

#: Accuracy each shipped model must reach on the 10,000 test images of its dataset (cnv:
#: Fashion-MNIST, the others: MNIST).
TARGETS = {"tfc": 0.930, "sfc": 0.970, "lfc": 0.984, "scnv": 0.990, "icnv": 0.980, "cnv": 0.910}


@pytest.fixture(scope="module")
def mnist_test():
    return load(MNIST, "test")


def test_shipped_models_are_there():
    assert {"tfc", "sfc"} <= set(shipped())
    for name, path in shipped().items():
        assert path.parent == MODELS_DIR
        m = Model.load(path)
        assert m.topology == specs.parse(name).sizes
        prov = m.provenance
        assert prov["dataset"].startswith("mnist-idx:")
        assert ("fashion-mnist" in prov["dataset"]) == (name == "cnv")
        assert prov["train_frames"] == 60000 and prov["test_frames"] == 10000
        check = prov["golden_vs_float"]
        assert check["frames"] == 10000
        assert check["prediction_mismatches"] == check["activation_bit_mismatches"] == 0
        assert check["score_mismatches"] == 0
        assert prov["test_accuracy"] >= TARGETS[name]


@needs_mnist
@pytest.mark.needs_mnist
@pytest.mark.parametrize("name", ["tfc", "sfc", "lfc", "scnv", "icnv"])
def test_shipped_model_accuracy_on_full_mnist(name, mnist_test):
    if name not in shipped():
        pytest.skip(f"{name} is not shipped")
    m = Model.load(shipped()[name])
    pred = GoldenModel(m).predict(mnist_test.frames_for(m.input_shape))
    acc = float((pred == mnist_test.labels).mean())
    assert acc == m.provenance["test_accuracy"]  # what the file claims is what it does
    assert acc >= TARGETS[name]


@needs_fashion
@pytest.mark.needs_mnist
@pytest.mark.slow
def test_cnv_accuracy_on_full_fashion_mnist():
    if "cnv" not in shipped():
        pytest.skip("cnv is not shipped")
    m = Model.load(shipped()["cnv"])
    test = load(FASHION, "test")
    pred = GoldenModel(m).predict(test.frames_for(m.input_shape))
    acc = float((pred == test.labels).mean())
    assert acc == m.provenance["test_accuracy"]
    assert acc >= TARGETS["cnv"]


@needs_mnist
@pytest.mark.needs_mnist
def test_golden_matches_torch_on_real_mnist():
    """A bounded version of the full-test-set check that `xnorflow train` runs."""
    tr = load(MNIST, "train").subset(6000)
    te = load(MNIST, "test")
    res = train(TrainConfig(topology=[784, 64, 64, 64, 10], epochs=2, seed=5), tr.images,
                tr.labels)
    model = export(res.model)
    frames = te.images[:3000]
    check = compare_with_float(res.model, model, frames)
    assert check["activation_bits_compared"] == 3000 * 192
    assert check["prediction_mismatches"] == 0
    assert check["activation_bit_mismatches"] == 0
    assert check["score_mismatches"] == 0
    assert np.mean(GoldenModel(model).predict(frames) == te.labels[:3000]) > 0.7

"""CPU implementations agree with the golden model; the CPU benchmark times only correct ones."""

import numpy as np
import pytest

from xnorflow import cpu
from xnorflow.data import load
from xnorflow.golden import GoldenModel
from xnorflow.host import bench
from xnorflow.model import Model
from xnorflow.models import shipped


@pytest.fixture(scope="module")
def frames():
    return load(None, "test").images


@pytest.mark.parametrize("name", ["tfc", "sfc", "lfc", "icnv"])
def test_torch_cpu_model_is_bit_exact(name, frames):
    m = Model.load(shipped()[name])
    scores, classes = cpu.TorchCPUModel(m).run(frames)
    ref = GoldenModel(m).run(frames)
    assert np.array_equal(scores, ref.scores)
    assert np.array_equal(classes, ref.classes)


def test_cpu_benchmark_rows(frames):
    m = Model.load(shipped()["tfc"])
    rows = bench.cpu_benchmark(m, frames[:300], batches=(1, 256), threads=[1],
                               min_seconds=0.05)
    names = list(cpu.implementations(m))  # the native backend where a C compiler is present
    assert names[0] == "golden-numpy-bitpacked" and names[-1] == "torch-float32"
    assert [(r.implementation, r.batch) for r in rows] == [
        (name, batch) for name in names for batch in (1, 256)]
    assert all(r.frames_per_s > 0 and r.latency_ms > 0 and r.threads == 1 for r in rows)


def test_cpu_benchmark_refuses_a_wrong_implementation(frames, monkeypatch):
    m = Model.load(shipped()["tfc"])

    class Wrong:
        def predict(self, x):
            return np.zeros(len(x), np.int64)

    monkeypatch.setattr(bench, "implementations", lambda model: {"wrong": Wrong()})
    with pytest.raises(AssertionError, match="wrong disagrees with the golden model"):
        bench.cpu_benchmark(m, frames[::20], batches=(1,), threads=[1], min_seconds=0.01)

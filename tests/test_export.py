"""Training and export: the integer model agrees with the float model bit for bit."""

import numpy as np
import pytest
import torch

from xnorflow import spec as specs
from xnorflow.data import load
from xnorflow.export import compare_with_float, export, fold_thresholds
from xnorflow.golden import GoldenModel
from xnorflow.train import TrainConfig, train


@pytest.fixture(scope="module")
def data():
    return load(None, "train"), load(None, "test")


def quick(data, **kw):
    tr, _ = data
    cfg = TrainConfig(**{"topology": [784, 48, 40, 10], "epochs": 2, "seed": 3, **kw})
    return train(cfg, tr.images[::2], tr.labels[::2])


def assert_exact(net, model, images):
    check = compare_with_float(net, model, images)
    assert check["frames"] == len(images)
    assert check["activation_bits_compared"] == len(images) * sum(net.sizes[1:-1])
    assert check["prediction_mismatches"] == 0
    assert check["activation_bit_mismatches"] == 0
    assert check["score_mismatches"] == 0


def test_export_is_bit_exact(data):
    res = quick(data)
    model = export(res.model, {"dataset": "embedded"})
    assert model.topology == [784, 48, 40, 10]
    assert_exact(res.model, model, data[1].images)
    # It learned something: well above chance on the held-out split.
    acc = (GoldenModel(model).predict(data[1].images) == data[1].labels).mean()
    assert acc > 0.6


def test_negative_and_zero_batchnorm_scale(data):
    res = quick(data)
    net = res.model
    with torch.no_grad():
        for norm in net.norms:
            w = norm.bn.weight
            w[::3] = -w[::3].abs()  # direction -1
            w[1::7] = 0.0  # constant channels
            norm.bn.bias[1::14] = -1.0  # ... some always 0
    model = export(net)
    for layer in model.layers[:-1]:
        assert (layer.directions == -1).any()
        lo, hi = layer.acc_range
        const = (layer.thresholds == lo) | (layer.thresholds == hi + 1)
        assert const.any()
    assert_exact(net, model, data[1].images)


def test_xnor_scaling_folds_away(data):
    res = quick(data, scaling=True)
    assert res.model.linears[0].scaling and not res.model.linears[-1].scaling
    model = export(res.model)
    assert_exact(res.model, model, data[1].images)


def test_fold_hits_the_exact_boundary():
    """A threshold lands exactly where the float computation changes sign."""
    torch.manual_seed(0)
    from xnorflow.train import BinaryLinear, SignBN
    lin, norm = BinaryLinear(16, 5), SignBN(5)
    norm.eval()
    with torch.no_grad():
        norm.bn.running_mean.copy_(torch.tensor([0.0, 3.0, -2.0, 16.5, 0.0]))
        norm.bn.running_var.fill_(1.0 - norm.bn.eps)  # std = 1 exactly
        norm.bn.weight.copy_(torch.tensor([1.0, 1.0, -1.0, 1.0, 2.0]))
        norm.bn.bias.copy_(torch.tensor([0.0, 0.0, 0.0, 0.0, 40.0]))
    t, d = fold_thresholds(lin, norm, first=False)
    # dot = 2p - 16; y >= 0  <=>  dot >= mean (gamma > 0) or dot <= mean (gamma < 0)
    assert t.tolist() == [8, 10, 7, 17, 0]
    assert d.tolist() == [1, 1, -1, 1, 1]


def test_training_is_reproducible(data):
    a = export(quick(data, epochs=1).model)
    b = export(quick(data, epochs=1).model)
    assert a.content_hash == b.content_hash


def test_topologies():
    assert specs.parse("lfc").sizes == [784, 1024, 1024, 1024, 10]
    assert specs.parse("TFC").sizes == [784, 64, 64, 64, 10]
    assert specs.parse("784-100-10").sizes == [784, 100, 10]
    assert specs.parse([784, 100, 10]).sizes == [784, 100, 10]
    with pytest.raises(ValueError, match="neither a preset"):
        specs.parse("big")
    with pytest.raises(ValueError, match="at least one layer"):
        specs.parse("784")


def test_train_rejects_mismatched_data(data):
    tr, _ = data
    with pytest.raises(ValueError, match="does not match the data's 784 pixels"):
        train(TrainConfig(topology=[100, 10], epochs=1), tr.images, tr.labels)
    with pytest.raises(ValueError, match="only 5 classes"):
        train(TrainConfig(topology=[784, 5], epochs=1), tr.images, tr.labels)


def test_shift_augmentation_moves_pixels():
    from xnorflow.train import random_shift
    x = torch.zeros(64, 784, dtype=torch.uint8)
    x[:, 14 * 28 + 14] = 255
    y = random_shift(x, 2, torch.Generator().manual_seed(0))
    pos = y.view(64, 28, 28).nonzero()[:, 1:]
    assert len(pos) == 64  # one pixel each, none lost
    assert ((pos - 14).abs() <= 2).all()
    assert len({tuple(p.tolist()) for p in pos}) > 5
    assert np.array_equal(y.sum(dim=1).numpy(), np.full(64, 255))


# --- Convolutional networks --------------------------------------------------------------------

CONV_SPEC = "28x28x1-c6k3-p2-c8k3pv1-c6k3s2-p2-12-10"  # pools after convs; padded with +1 bits


def quick_conv(data, **kw):
    tr, _ = data
    cfg = TrainConfig(**{"topology": CONV_SPEC, "epochs": 1, "seed": 5, "batch_size": 50, **kw})
    return train(cfg, tr.images[::8], tr.labels[::8])


def assert_conv_exact(net, model, images):
    check = compare_with_float(net, model, images)
    bits = sum(layer.out_features for layer in model.layers[:-1])
    assert check["activation_bits_compared"] == len(images) * bits
    assert check["prediction_mismatches"] == 0
    assert check["activation_bit_mismatches"] == 0
    assert check["score_mismatches"] == 0


def test_conv_export_is_bit_exact_with_pooling_in_both_directions(data):
    net = quick_conv(data).model
    with torch.no_grad():  # both directions and constant channels before every pooling
        for norm in net.norms[:-1]:
            w = norm.bn.weight
            w[::2] = -w[::2].abs()
            w[1::5] = 0.0
    model = export(net, {"dataset": "embedded"})
    assert [layer.kind for layer in model.layers] == [
        "conv2d", "maxpool2d", "conv2d", "conv2d", "maxpool2d", "dense", "dense"]
    assert model.layers[2].pad_value == 1 and model.layers[2].padding == 1
    assert (model.layers[0].directions == -1).any() and (model.layers[0].directions == 1).any()
    assert_conv_exact(net, model, data[1].images[:300])


def test_conv_export_with_xnor_scaling_is_bit_exact(data):
    net = quick_conv(data, scaling=True).model
    assert_conv_exact(net, export(net), data[1].images[:200])


def test_a_resumed_run_ends_as_an_uninterrupted_one(data, tmp_path):
    tr, _ = data
    kw = {"topology": "28x28x1-c4k3-p2-10", "seed": 9, "batch_size": 50, "dropout": 0.1,
          "shift": 1, "epochs": 2}
    whole = train(TrainConfig(**kw), tr.images[::10], tr.labels[::10])
    ckpt = tmp_path / "run.ckpt"
    first = TrainConfig(**kw)
    with pytest.raises(KeyboardInterrupt):
        def stop(row):
            raise KeyboardInterrupt  # stop after the first epoch, once its checkpoint is written
        train(first, tr.images[::10], tr.labels[::10], progress=stop, checkpoint=ckpt)
    resumed = train(TrainConfig(**kw), tr.images[::10], tr.labels[::10], checkpoint=ckpt,
                    resume=True)
    assert [row["epoch"] for row in resumed.history] == [1, 2]
    assert export(resumed.model).content_hash == export(whole.model).content_hash
    with pytest.raises(ValueError, match="differs in seed"):
        train(TrainConfig(**{**kw, "seed": 1}), tr.images[::10], tr.labels[::10],
              checkpoint=ckpt, resume=True)

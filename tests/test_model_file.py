"""The model file: packing against hand-computed vectors, round trips, and malformed files."""

import io
import json
import zipfile

import numpy as np
import pytest

from xnorflow.model import Model, ModelFormatError, pack_bits, unpack_bits
from xnorflow.sim import fixtures


def test_pack_bits_hand_computed():
    # docs/semantics.md §4: element j is bit j%8 of byte j//8.
    v = [1, 0, 1, 1, 0, 0, 0, 0, 1, 1]
    assert pack_bits(np.array(v)).tolist() == [0x0D, 0x03]
    assert pack_bits(np.array([1, 0, 0, 0, 0, 0, 0, 0])).tolist() == [0x01]
    assert pack_bits(np.array([0, 0, 0, 0, 0, 0, 0, 1])).tolist() == [0x80]
    assert pack_bits(np.array([[1, 1, 1, 1, 1, 1, 1, 1, 0, 1], [0] * 9 + [1]])).tolist() == \
        [[0xFF, 0x02], [0x00, 0x02]]
    assert unpack_bits(np.array([0x0D, 0x03], np.uint8), 10).tolist() == v


def test_pack_bits_rejects_non_bits():
    with pytest.raises(ValueError, match="0 or 1"):
        pack_bits(np.array([0, 2]))


def random_model(seed, sizes=(784, 20, 13, 10)) -> Model:
    return fixtures.random_model(sizes, seed, input_shape=(28, 28) if sizes[0] == 784 else None,
                                 provenance={"dataset": "random", "seed": 1})


def test_round_trip(tmp_path):
    m = random_model(0)
    path = m.save(tmp_path / "m.npz")
    m2 = Model.load(path)
    assert m2.content_hash == m.content_hash
    assert m2.topology == [784, 20, 13, 10]
    assert m2.provenance == {"dataset": "random", "seed": 1}
    for a, b in zip(m.layers, m2.layers, strict=True):
        assert np.array_equal(a.weights, b.weights)
        assert (a.thresholds is None) == (b.thresholds is None)
        if a.thresholds is not None:
            assert np.array_equal(a.thresholds, b.thresholds)
            assert np.array_equal(a.directions, b.directions)


def test_hash_depends_on_every_weight_bit():
    m = random_model(0)
    h = m.content_hash
    m.layers[1].weights[3, 1] ^= 0x04
    assert m.content_hash != h


# -- malformed files: one test each, every message names the layer and field ------------------

def rewrite(path, edit_manifest=None, edit_arrays=None):
    """Rewrite a saved model file, changing its manifest and/or arrays but not the hash."""
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    manifest = json.loads(arrays.pop("manifest").tobytes())
    if edit_manifest:
        edit_manifest(manifest)
    if edit_arrays:
        edit_arrays(arrays)
    blob = json.dumps(manifest).encode()
    buf = io.BytesIO()
    np.savez(buf, manifest=np.frombuffer(blob, np.uint8), **arrays)
    path.write_bytes(buf.getvalue())


@pytest.fixture
def saved(tmp_path):
    return random_model(1).save(tmp_path / "m.npz")


def test_truncated_file(saved):
    data = saved.read_bytes()
    saved.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFormatError, match=r"m\.npz: not a readable model file \(truncated"):
        Model.load(saved)


def test_not_a_model(tmp_path):
    p = tmp_path / "x.npz"
    np.savez(p, a=np.zeros(3))
    with pytest.raises(ModelFormatError, match="no 'manifest' entry"):
        Model.load(p)
    with pytest.raises(ModelFormatError, match="no such model file"):
        Model.load(tmp_path / "missing.npz")


def test_unknown_version(saved):
    rewrite(saved, lambda m: m.update(version=99))
    with pytest.raises(ModelFormatError, match=r"field 'version': unknown format version 99"):
        Model.load(saved)


def test_wrong_weight_shape(saved):
    def edit(a):
        a["layer1.weights"] = a["layer1.weights"][:, :-1].copy()
    rewrite(saved, edit_arrays=edit)
    with pytest.raises(ModelFormatError,
                       match=r"layer 1 \(fc1\) field 'weights': shape \(13, 2\) does not match "
                             r"out_features x ceil\(in_features/8\) = \(13, 3\)"):
        Model.load(saved)


def test_layers_do_not_connect(saved):
    rewrite(saved, lambda m: m["layers"][2].update(in_features=12))
    with pytest.raises(ModelFormatError, match=r"layer 2 \(fc2\) field 'in_features': 12 does "
                                               r"not match the 13 outputs of layer 1"):
        Model.load(saved)


def test_threshold_out_of_range(saved):
    def edit(a):
        a["layer1.thresholds"][4] = 21 + 2  # binary layer with N = 20: range ends at 21 / 20
        a["layer1.directions"][4] = 1
    rewrite(saved, edit_arrays=edit)
    with pytest.raises(ModelFormatError,
                       match=r"layer 1 \(fc1\) field 'thresholds': channel 4: threshold 23 out of "
                             r"range \[0, 21\] for direction \+1"):
        Model.load(saved)


def test_first_layer_threshold_range(saved):
    def edit(a):
        a["layer0.thresholds"][0] = -255 * 784 - 2
        a["layer0.directions"][0] = -1
    rewrite(saved, edit_arrays=edit)
    with pytest.raises(ModelFormatError, match=r"layer 0 \(fc0\) field 'thresholds': channel 0: "
                                               r"threshold -199922 out of range"):
        Model.load(saved)


def test_weight_threshold_count_mismatch(saved):
    def edit(a):
        a["layer1.thresholds"] = a["layer1.thresholds"][:-1].copy()
    rewrite(saved, edit_arrays=edit)
    with pytest.raises(ModelFormatError, match=r"layer 1 \(fc1\) field 'thresholds': 12 thresholds "
                                               r"for 13 output channels"):
        Model.load(saved)


def test_bad_direction(saved):
    def edit(a):
        a["layer1.directions"][5] = 0
    rewrite(saved, edit_arrays=edit)
    with pytest.raises(ModelFormatError, match=r"layer 1 \(fc1\) field 'directions': channel 5: "
                                               r"direction 0 is not \+1 or -1"):
        Model.load(saved)


def test_nonzero_padding_bits(saved):
    def edit(a):
        a["layer2.weights"][0, -1] |= 0x80  # N = 13: bits 5..7 of the last byte are padding
    rewrite(saved, edit_arrays=edit)
    with pytest.raises(ModelFormatError, match=r"layer 2 \(fc2\) field 'weights': padding bits"):
        Model.load(saved)


def test_hash_mismatch(saved):
    def edit(a):
        a["layer2.weights"][0, 0] ^= 1  # a valid model, but not the one that was hashed
    rewrite(saved, edit_arrays=edit)
    with pytest.raises(ModelFormatError, match=r"field 'content_hash' mismatch"):
        Model.load(saved)


def test_unsupported_layer_kind(saved):
    rewrite(saved, lambda m: m["layers"][1].update(kind="conv3d"))
    with pytest.raises(ModelFormatError, match=r"layer 1 \(fc1\) field 'kind': unsupported layer "
                                               r"kind 'conv3d'"):
        Model.load(saved)


def test_missing_thresholds_on_hidden_layer(saved):
    def edit(a):
        del a["layer1.thresholds"], a["layer1.directions"]
    rewrite(saved, edit_arrays=edit)
    with pytest.raises(ModelFormatError, match=r"layer 1 \(fc1\) field 'thresholds': missing"):
        Model.load(saved)


def test_manifest_not_json(saved):
    with np.load(saved) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["manifest"] = np.frombuffer(b"{not json", np.uint8)
    np.savez(saved.with_suffix(""), **arrays)
    with pytest.raises(ModelFormatError, match="manifest is not valid JSON"):
        Model.load(saved)


def test_npz_is_a_zip_without_pickles(saved):
    with zipfile.ZipFile(saved) as z:
        names = sorted(z.namelist())
    assert names == sorted(["manifest.npy", "layer0.weights.npy", "layer0.thresholds.npy",
                            "layer0.directions.npy", "layer1.weights.npy",
                            "layer1.thresholds.npy", "layer1.directions.npy",
                            "layer2.weights.npy"])

# amaranth: UnusedElaboratable=no
"""``xnorflow generate``: the Verilog top with the AXI4-Stream port names, and the manifest."""

import hashlib
import json
import re

import numpy as np
import pytest

from xnorflow.cli import main
from xnorflow.hw.compiler import Folding
from xnorflow.hw.tops.network import Network
from xnorflow.model import DenseLayer, Model, pack_bits


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """A random 20-12-9-5 model (8-bit first layer) and a folding file with converters."""
    rng = np.random.default_rng(1)
    layers = []
    for i, (n, m) in enumerate([(20, 12), (12, 9), (9, 5)]):
        bits = pack_bits(rng.integers(0, 2, (m, n)))
        if i == 2:
            layers.append(DenseLayer(f"fc{i}", n, m, 1, bits))
        else:
            hi = 255 * n if i == 0 else n
            layers.append(DenseLayer(f"fc{i}", n, m, 8 if i == 0 else 1, bits,
                                     rng.integers(-hi // 4, hi // 4 + 1, m).astype(np.int64)
                                     if i == 0 else rng.integers(0, n + 1, m).astype(np.int64),
                                     rng.choice([1, -1], m).astype(np.int8)))
    model = Model(layers, input_shape=(20,))
    tmp = tmp_path_factory.mktemp("generate")
    path = model.save(tmp / "small.npz")
    fold = {"layers": [{"pe": 4, "simd": 5, "storage": "bram"},
                       {"pe": 3, "simd": 6, "storage": "lut", "fifo_depth": 3},
                       {"pe": 5, "simd": 9}]}
    fold_path = tmp / "fold.json"
    fold_path.write_text(json.dumps(fold))
    return Model.load(path), path, fold_path, tmp


def _ports(text):
    """{name: (direction, width)} from the module's port declarations."""
    header = re.search(r"^module xnorflow_top\(([^)]*)\);", text, re.M)
    assert header, "no module xnorflow_top"
    names = [p.strip() for p in header.group(1).split(",")]
    body = text[header.end():text.index("endmodule", header.end())]
    ports = {}
    for direction, msb, name in re.findall(r"^\s*(input|output)\s+(?:\[(\d+):0\]\s+)?(\w+);",
                                           body, re.M):
        ports[name] = (direction, int(msb) + 1 if msb else 1)
    assert sorted(ports) == sorted(names)
    return ports


def test_generate_json(small, capsys):
    model, path, fold_path, tmp = small
    out = tmp / "out"
    assert main(["generate", str(path), "--folding", str(fold_path), "--out", str(out),
                 "--json"]) == 0
    obj = json.loads(capsys.readouterr().out)
    verilog = out / "xnorflow_top.v"
    assert obj["verilog"] == str(verilog) and obj["manifest"] == str(out / "manifest.json")
    text = verilog.read_text()
    # Exactly these ports: 5 pixels of 8 bits in; index (3 bits) + 5 scores of 4 bits = 23 bits,
    # padded to 24, out.
    assert _ports(text) == {
        "clk": ("input", 1), "rst": ("input", 1),
        "s_axis_tdata": ("input", 40), "s_axis_tvalid": ("input", 1),
        "s_axis_tready": ("output", 1), "s_axis_tlast": ("input", 1),
        "m_axis_tdata": ("output", 24), "m_axis_tvalid": ("output", 1),
        "m_axis_tready": ("input", 1), "m_axis_tlast": ("output", 1),
        "frame_error": ("output", 1),
    }
    assert text.count("\nmodule ") + text.startswith("module ") >= 5  # self-contained hierarchy

    manifest = json.loads((out / "manifest.json").read_text())
    folding = Folding.load(fold_path, model.layers)
    expected = Network(model, folding).manifest()
    verilog_entry = manifest.pop("verilog")
    assert manifest == json.loads(json.dumps(expected))
    assert verilog_entry == {"file": "xnorflow_top.v",
                             "sha256": hashlib.sha256(verilog.read_bytes()).hexdigest()}
    assert manifest["model_hash"] == model.content_hash == obj["model_hash"]
    assert manifest["top"] == obj["top"] == "xnorflow_top"
    assert {p["name"]: p["width"] for p in manifest["ports"]} == {
        name: width for name, (_, width) in _ports(text).items()}
    assert manifest["m_axis_tdata"] == {
        "width": 24, "index": {"offset": 0, "width": 3},
        "scores": {"offset": 3, "count": 5, "width": 4, "stride": 4, "signed": False},
        "padding": {"offset": 23, "width": 1}}
    assert manifest["s_axis"]["lanes"] == 5 and manifest["s_axis"]["beats_per_frame"] == 4
    # Per layer: N, M, PE, SIMD, storage, II, latency, FIFO, converter.
    assert [(la["in_features"], la["out_features"], la["pe"], la["simd"], la["storage"],
             la["ii"], la["fifo_depth"]) for la in manifest["layers"]] == [
        (20, 12, 4, 5, "bram", 12, 0), (12, 9, 3, 6, "lut", 6, 3), (9, 5, 5, 9, "bram", 1, 0)]
    assert [la["converter"] and (la["converter"]["in_width"], la["converter"]["out_width"])
            for la in manifest["layers"]] == [(4, 6), (3, 9), None]
    assert manifest["performance"]["ii_cycles"] == obj["ii_cycles"] == 12
    assert manifest["performance"]["latency_cycles"] == obj["latency_cycles"] == expected[
        "performance"]["latency_cycles"]
    assert [la["pe"] for la in obj["layers"]] == [4, 3, 5]
    assert manifest["folding"] == {"layers": [
        {"pe": 4, "simd": 5, "storage": "bram"},
        {"pe": 3, "simd": 6, "storage": "lut", "fifo_depth": 3},
        {"pe": 5, "simd": 9, "storage": "bram"}]}
    assert manifest["resources"]["calibrated"] is True
    assert set(manifest["resources"]["total"]) == {"lut_ice40", "lut_ecp5", "ff", "bram_bits",
                                                   "ice40_ebr", "ecp5_dp16kd"}


def test_generate_default_folding_no_scores(small, capsys):
    model, path, _, tmp = small
    out = tmp / "plain"
    assert main(["generate", str(path), "--out", str(out), "--no-scores"]) == 0
    captured = capsys.readouterr()
    assert "xnorflow_top" in captured.out and "II" in captured.err
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["with_scores"] is False and manifest["m_axis_tdata"]["width"] == 8
    assert manifest["m_axis_tdata"]["scores"] is None
    default = Folding.default(model.layers)
    assert Folding.from_dict(manifest["folding"]) == default
    assert _ports((out / "xnorflow_top.v").read_text())["m_axis_tdata"] == ("output", 8)


@pytest.mark.parametrize(("folding", "message"), [
    ({"layers": [{"pe": 4, "simd": 5}, {"pe": 7, "simd": 6}, {"pe": 5, "simd": 9}]},
     "layer 1 (fc1): PE (7) must divide the output channels (9)"),
    ({"layers": [{"pe": 4, "simd": 5}]}, "folding has 1 layer entries but the model has 3"),
])
def test_generate_folding_errors_are_one_line(small, capsys, folding, message):
    _, path, _, tmp = small
    bad = tmp / "bad_fold.json"
    bad.write_text(json.dumps(folding))
    assert main(["generate", str(path), "--folding", str(bad), "--out", str(tmp / "x")]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp / "x").exists()


def test_generate_missing_files(small, capsys, tmp_path):
    _, path, _, _ = small
    assert main(["generate", str(path), "--folding", str(tmp_path / "none.json"),
                 "--out", str(tmp_path / "o")]) == 2
    assert "no such folding file" in capsys.readouterr().err
    assert main(["generate", str(tmp_path / "none.npz"), "--out", str(tmp_path / "o")]) == 2
    assert "no such model file" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["generate", str(path)])  # --out is required
    assert e.value.code == 2

"""The reference builds under ``bitstreams/<board>/<model>/``: each manifest agrees with its files,
its model, its folding, its report and the tools installed (hw/build/boards.py writes them)."""

import hashlib
import json
from pathlib import Path

import pytest

from xnorflow.hw.build.boards import board_design_sha256
from xnorflow.hw.build.synth import tool_versions
from xnorflow.hw.compiler import Folding, compile_plan
from xnorflow.hw.tops.board import BOARDS
from xnorflow.model import Model

REPO = Path(__file__).resolve().parents[1]
BITSTREAMS = REPO / "bitstreams"
MANIFESTS = sorted(BITSTREAMS.glob("*/*/manifest.json"))
#: The files a reference directory may hold besides its bitstream.
REFERENCE_FILES = {"manifest.json", "report.json", "folding.json"}


def load(path):
    return json.loads(path.read_text())


def test_layout():
    """bitstreams/ holds only <board>/<model>/ directories of known boards, each with a manifest
    whose board and model are the directory's, its bitstream and nothing unlisted."""
    if not BITSTREAMS.exists():
        assert MANIFESTS == []
        return
    assert BITSTREAMS.is_dir()
    for board_dir in BITSTREAMS.iterdir():
        if board_dir.is_file():
            assert board_dir.suffix == ".md", f"unexpected file {board_dir.name} in bitstreams/"
            continue
        assert board_dir.name in BOARDS, f"bitstreams/{board_dir.name}: not a known board"
        for model_dir in board_dir.iterdir():
            where = f"bitstreams/{board_dir.name}/{model_dir.name}"
            assert model_dir.is_dir(), f"{where}: expected a directory per model"
            manifest_path = model_dir / "manifest.json"
            assert manifest_path.is_file(), f"{where}: no manifest.json"
            manifest = load(manifest_path)
            assert manifest["board"] == board_dir.name and manifest["model"] == model_dir.name
            bitstream = BOARDS[board_dir.name].bitstream_name
            present = {path.name for path in model_dir.iterdir()}
            assert present == REFERENCE_FILES | {bitstream}, f"{where}: {sorted(present)}"
            assert set(manifest["files"]) == present - {"manifest.json"}
    assert {path.parent for path in MANIFESTS} == {
        model_dir for board_dir in BITSTREAMS.iterdir() if board_dir.is_dir()
        for model_dir in board_dir.iterdir()}


@pytest.mark.parametrize("manifest_path", MANIFESTS,
                         ids=[f"{p.parent.parent.name}/{p.parent.name}" for p in MANIFESTS])
def test_reference(manifest_path):
    where = manifest_path.parent
    manifest = load(manifest_path)
    board = BOARDS[manifest["board"]]
    assert manifest["device"] == board.device

    # The files are the ones the manifest describes.
    for name, digest in manifest["files"].items():
        assert hashlib.sha256((where / name).read_bytes()).hexdigest() == digest, name
    assert board.bitstream_name in manifest["files"]
    assert (where / board.bitstream_name).stat().st_size > 0

    # The model and the folding.
    model = Model.load(REPO / manifest["model_file"])
    assert manifest["model_hash"] == model.content_hash
    folding = Folding.from_dict(manifest["folding"], model.layers)
    assert load(where / "folding.json") == folding.to_dict() == manifest["folding"]
    plan = compile_plan(model, folding)
    assert (manifest["ii_cycles"], manifest["latency_cycles"]) == (plan.ii, plan.latency)
    assert manifest["frames_per_s"] == round(manifest["clock_mhz"] * 1e6 / plan.ii, 1)

    # The report.
    report = load(where / "report.json")
    for key in ("board", "device", "luts", "luts_total", "brams", "brams_total", "fmax_mhz",
                "clock_mhz", "bridge_mhz", "domains", "baud", "uart_frames_per_s", "ii_cycles",
                "seed", "router", "tools", "model_hash", "timing_met", "design_sha256"):
        assert report[key] == manifest[key], key
    assert 0 < report["luts"] <= report["luts_total"]
    assert report["accel_fmax_mhz"] == report["fmax_mhz"][report["accel_clock"]]
    assert report["bridge_fmax_mhz"] == report["fmax_mhz"][report["bridge_clock"]]
    assert manifest["timing_met"] and all(d["timing_met"] for d in manifest["domains"].values())

    # Built with the tools installed now.
    current = tool_versions(board.family)
    assert {key: manifest["tools"][key] for key in current} == current

    simulation = manifest.get("simulation")
    if simulation is not None:
        assert simulation["ii_cycles"] == manifest["ii_cycles"]
        assert simulation["frames"] > 0 and simulation["mismatches"] == 0


@pytest.mark.parametrize("manifest_path", MANIFESTS,
                         ids=[f"{p.parent.parent.name}/{p.parent.name}" for p in MANIFESTS])
def test_reference_is_current(manifest_path):
    """The design a reference was built from is the one the current code makes from its
    manifest (model, folding, board, PLL setting, baud rate, seed, router): a change that alters
    a reference's design must rebuild it (with the manifest's command) in the same submission."""
    where = manifest_path.parent
    manifest = load(manifest_path)
    report = load(where / "report.json")
    model = Model.load(REPO / manifest["model_file"])
    folding = Folding.from_dict(manifest["folding"], model.layers)
    current = board_design_sha256(model, folding, manifest["board"], pll=report["pll"],
                                  baud=manifest["baud"], seed=manifest["seed"],
                                  router=manifest["router"])
    assert current == manifest["design_sha256"], (
        f"{where.relative_to(REPO)} is stale: the current code makes another design from its "
        f"manifest (sha256 {current}, built from {manifest['design_sha256']}); rebuild it: "
        f"{manifest['command']}")

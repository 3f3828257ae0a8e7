"""The resource model against Yosys: block RAMs exact and LUT4s within 15 % over the reference
builds under bitstreams/ (their manifests record Yosys' count of the whole board design); over
the calibration blocks of ``python -m xnorflow.hw.build.calibrate`` (recorded in
tests/data/calibration.json) block RAMs exact and the LUT fit as documented."""

import json
from pathlib import Path

import pytest

from xnorflow.hw.build.calibrate import CASES, cases_for, reference_errors
from xnorflow.hw.compiler import Resources, bram_blocks

ROOT = Path(__file__).resolve().parent.parent
CALIBRATION = json.loads((ROOT / "tests/data/calibration.json").read_text())
MANIFESTS = sorted(ROOT.glob("bitstreams/*/*/manifest.json"))
CASES_BY_LABEL = dict(CASES)


@pytest.mark.parametrize("row", CALIBRATION, ids=lambda r: f"{r['family']}-{r['label']}")
def test_calibration_blocks(row):
    family = row["family"]
    estimate = CASES_BY_LABEL[row["label"]]().resources()
    assert estimate.brams(family) == row["yosys"]["brams"]
    luts = row["yosys"]["luts"]
    # Single blocks: the fit is within 25 % of Yosys for blocks of a few hundred LUT4s and more
    # (a whole network sums many of them; see the reference builds for the 15 % figure); the
    # small FIFOs and converters (100-250 LUT4s) are the model's weakest rows, within 60 %.
    tolerance = 0.25 if luts >= 300 else 0.6
    assert abs(estimate.luts(family) - luts) <= tolerance * luts


def test_calibration_covers_both_families_and_every_case():
    seen = {(r["family"], r["label"]) for r in CALIBRATION}
    assert seen == {(f, label) for f in ("ice40", "ecp5") for label, _ in cases_for(f)}


@pytest.mark.skipif(not MANIFESTS, reason="no reference builds under bitstreams/")
def test_reference_build_estimates():
    rows = reference_errors(ROOT / "bitstreams")
    assert len(rows) == len(MANIFESTS)
    for row in rows:
        assert row["estimate_brams"] == row["yosys_brams"], row
        assert abs(row["lut_error"]) <= 0.15, row


def test_block_ram_shapes():
    # iCE40 4-kbit EBR: 256x16, 512x8, 1024x4, 2048x2; ECP5 DP16KD up to 512x36.
    assert bram_blocks(256, 16, "ice40") == 1
    assert bram_blocks(98, 128, "ice40") == 8
    assert bram_blocks(1568, 8, "ice40") == 4
    assert bram_blocks(512, 64, "ecp5") == 2
    assert bram_blocks(2048, 64, "ecp5") == 8
    assert bram_blocks(16, 784, "ecp5") == 22
    assert Resources.block_memory(512, 72, copies=3).ecp5_dp16kd == 6

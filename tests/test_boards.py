# amaranth: UnusedElaboratable=no
"""Board builds (hw/build/boards.py): PLL parameter search, the board top, and real builds."""

import dataclasses
import hashlib
import json
from fractions import Fraction

import numpy as np
import pytest

from xnorflow.cli import main
from xnorflow.hw.build.boards import board_design_sha256, build_board, write_reference
from xnorflow.hw.build.pll import ROBUST_DIVISOR, ecp5_pll, ice40_pll, pll_config
from xnorflow.hw.build.synth import DoesNotFit
from xnorflow.hw.compiler import Folding
from xnorflow.hw.tops.board import BOARDS, DEFAULT_BAUD, BoardTop, get_board, uart_baud
from xnorflow.hw.tops.network import Network
from xnorflow.model import Model
from xnorflow.sim.fixtures import random_frames, random_model

# --- PLL search -----------------------------------------------------------------------------------


def ice40_out(f_in, p):
    """The SB_PLL40 formulas (simple feedback), independent of the search."""
    f_pfd = Fraction(f_in) / (p["DIVR"] + 1)
    f_vco = f_pfd * (p["DIVF"] + 1)
    return f_pfd, f_vco, f_vco / 2 ** p["DIVQ"]


def ecp5_out(f_in, p):
    """The EHXPLLL formulas (CLKOP fed back), independent of the search."""
    f_pfd = Fraction(f_in) / p["CLKI_DIV"]
    f_out = f_pfd * p["CLKFB_DIV"]
    return f_pfd, f_out * p["CLKOP_DIV"], f_out


def test_ice40_known_values():
    # icepll -i 12 -o 30: DIVR 0, DIVF 79, DIVQ 5, FILTER_RANGE 1.
    pll = ice40_pll(12, 30)
    assert pll.params == {"DIVR": 0, "DIVF": 79, "DIVQ": 5, "FILTER_RANGE": 1}
    assert (pll.f_out_mhz, pll.f_vco_mhz, pll.f_pfd_mhz) == (30.0, 960.0, 12.0)
    assert pll.clk_hz == 30_000_000
    # icepll -i 48 -o 100 (a 48 MHz input): DIVR 2, DIVF 49, DIVQ 3, FILTER_RANGE 1.
    assert ice40_pll(48, 100).params == {"DIVR": 2, "DIVF": 49, "DIVQ": 3, "FILTER_RANGE": 1}
    # 20 MHz is not reachable from 12 MHz: the highest below is 12 * 53 / 32.
    assert ice40_pll(12, 20).f_out_mhz == 19.875


def test_ecp5_known_values():
    # ecppll -i 25 -o 100: CLKI_DIV 1, CLKFB_DIV 4, CLKOP_DIV 6, CLKOP_CPHASE 2.
    pll = ecp5_pll(25, 100)
    assert pll.params == {"CLKI_DIV": 1, "CLKFB_DIV": 4, "CLKOP_DIV": 6, "CLKOP_CPHASE": 2}
    assert (pll.f_out_mhz, pll.f_vco_mhz) == (100.0, 600.0)
    # ecppll -i 12 -o 16: CLKI_DIV 3, CLKFB_DIV 4, CLKOP_DIV 37, CLKOP_CPHASE 18.
    assert ecp5_pll(12, 16).params == {"CLKI_DIV": 3, "CLKFB_DIV": 4, "CLKOP_DIV": 37,
                                       "CLKOP_CPHASE": 18}
    # ecppll -i 25 -o 50 / 60: CPHASE 5 / 4 (its float arithmetic, not CLKOP_DIV // 2).
    assert ecp5_pll(25, 50).params["CLKOP_CPHASE"] == 5
    assert ecp5_pll(25, 60).params["CLKOP_CPHASE"] == 4


@pytest.mark.parametrize("requested", [16.5, 17.3, 24, 30, 33.3, 48, 60.1, 100, 133.7, 200, 275])
def test_ice40_properties(requested):
    pll = ice40_pll(12, requested)
    f_pfd, f_vco, f_out = ice40_out(12, pll.params)
    assert float(f_out) == pll.f_out_mhz <= requested
    assert 10 <= f_pfd <= 133 and 533 <= f_vco <= 1066 and 16 <= f_out <= 275
    assert pll.params["FILTER_RANGE"] == 1          # a 12 MHz phase detector
    # Nothing reachable lies between the achieved and the requested frequency.
    finer = [f for divf in range(128) for divq in range(1, 7)
             if 533 <= 12 * (divf + 1) <= 1066 and 16 <= (f := Fraction(12 * (divf + 1),
                                                                         2**divq)) <= requested]
    assert max(finer) == f_out


@pytest.mark.parametrize("requested", [10, 12.5, 33.3, 50, 87.3, 100, 123.4, 250, 400])
def test_ecp5_properties(requested):
    pll = ecp5_pll(25, requested)
    f_pfd, f_vco, f_out = ecp5_out(25, pll.params)
    assert float(f_out) == pll.f_out_mhz <= requested
    assert Fraction(3125, 1000) <= f_pfd <= 400 and 400 <= f_vco <= 800
    assert pll.params["CLKOP_CPHASE"] in (pll.params["CLKOP_DIV"] // 2,
                                          pll.params["CLKOP_DIV"] // 2 - 1)


def test_pll_reproduces_from_its_own_output():
    # What a reference manifest's command does: --freq <achieved> gives the same setting.
    for family, f_in, requested in (("ice40", 12, 41), ("ecp5", 25, 87.3), ("ecp5", 25, 71)):
        first = pll_config(family, f_in, requested)
        assert pll_config(family, f_in, first.f_out_mhz) == first


def test_pll_errors():
    with pytest.raises(ValueError, match=r"No SB_PLL40 setting makes 10 MHz or less"):
        ice40_pll(12, 10)
    with pytest.raises(ValueError, match=r"No EHXPLLL setting makes 5 MHz or less"):
        ecp5_pll(25, 5)
    with pytest.raises(ValueError, match=r"must be a positive number of MHz"):
        ice40_pll(12, -1)
    with pytest.raises(ValueError, match=r"Unknown FPGA family 'xilinx'"):
        pll_config("xilinx", 12, 30)


def test_pll_accept():
    # Skip frequencies the predicate refuses (the baud-rate check of an automatic build).
    pll = ice40_pll(12, 30, accept=lambda f: f < 29)
    assert pll.f_out_mhz < 29


# --- boards, baud rate ----------------------------------------------------------------------------


def test_unknown_board():
    with pytest.raises(ValueError, match=r"Unknown board 'de10'; known boards: icebreaker, "
                                         r"ulx3s-25f, ulx3s-85f"):
        get_board("de10")
    assert get_board("ICEBreaker") is BOARDS["icebreaker"]
    assert [BOARDS[name].device for name in BOARDS] == ["iCE40UP5K", "LFE5U-25F", "LFE5U-85F"]


def test_uart_baud():
    assert uart_baud(30_000_000, 1_000_000) == 1_000_000      # divisor 30, exact
    assert uart_baud(19_875_000, 1_000_000) == 1_000_000      # divisor 20, 0.6 % off
    # 33.75 MHz / 3 Mbaud: divisor 11 is 2.3 % off; the nearest rate that passes is used.
    assert uart_baud(33_750_000, 3_000_000) == round(33_750_000 / 11)
    # Too fast for 4 cycles per bit: the fastest the UART takes.
    assert uart_baud(12_000_000, 6_000_000) == 3_000_000
    with pytest.raises(ValueError, match=r"baud \(0\) must be a positive integer"):
        uart_baud(12_000_000, 0)


@pytest.fixture(scope="module")
def tiny_model():
    rng = np.random.default_rng(7)
    return random_model((20, 12, 5), 7, random_frames(rng, 16, 20))


#: A small folding of the tiny model (II 60): a quick build.
#: Time limit of each tool run in the real builds here.
TOOL_TIMEOUT_S = 1800

TINY_FOLDING = {"layers": [{"pe": 1, "simd": 4, "storage": "lut"},
                           {"pe": 1, "simd": 2, "storage": "lut"}]}


def test_board_top_checks(tiny_model):
    net = Network(tiny_model, None)
    with pytest.raises(ValueError, match=r"PLL setting for ecp5 from 25 MHz does not suit the "
                                         r"icebreaker"):
        BoardTop(net, "icebreaker", ecp5_pll(25, 100, bridge_baud=3_000_000))
    # The bridge's clock is the 12 MHz oscillator whatever the accelerator's: 3.15 Mbaud is
    # 4.8 % off 12 MHz / 4.
    with pytest.raises(ValueError, match=r"baud \(3150000\) is 4.8% off the bridge clock / 4 at "
                                         r"12 MHz \(at most 2%\); the nearest rate that works: "
                                         r"3000000"):
        BoardTop(net, "icebreaker", ice40_pll(12, 30), baud=3_150_000)
    with pytest.raises(ValueError, match=r"PLL setting has no bridge clock for the ulx3s-25f"):
        BoardTop(net, "ulx3s-25f", ecp5_pll(25, 100))


def test_default_baud_and_bridge_clocks():
    """3 Mbaud on every board, from a bridge clock that does not depend on the accelerator's:
    the iCEBreaker's 12 MHz oscillator (divisor 4, exact), a ULX3S CLKOS (exact, divisor at
    least ROBUST_DIVISOR) beside any accelerator clock."""
    assert DEFAULT_BAUD == {"icebreaker": 3_000_000, "ulx3s-25f": 3_000_000,
                            "ulx3s-85f": 3_000_000}
    for mhz in (16.5, 30, 41, 60.1):
        pll = ice40_pll(12, mhz)
        assert pll.bridge_hz == 12_000_000 and uart_baud(pll.bridge_hz, 3_000_000) == 3_000_000
        assert pll.f_out_mhz == ice40_pll(12, mhz, accept=None).f_out_mhz
    pll = ecp5_pll(25, 100, bridge_baud=3_000_000)
    assert (pll.f_out_mhz, pll.bridge_mhz, pll.f_vco_mhz) == (100, 60, 600)
    assert pll.params["CLKOS_DIV"] == 10 and pll.params["CLKOS_CPHASE"] == \
        pll.params["CLKOP_CPHASE"]
    for mhz in (50, 87.3, 100, 123.4, 150, 200):
        plain = ecp5_pll(25, mhz)
        pll = ecp5_pll(25, mhz, bridge_baud=3_000_000)
        # The accelerator's frequency is the one asked for alone; only the VCO may differ.
        assert pll.f_out_mhz == plain.f_out_mhz
        assert pll.params["CLKI_DIV"] * pll.f_out_mhz == pll.params["CLKFB_DIV"] * 25
        f_bridge = Fraction(pll.f_vco_mhz).limit_denominator(1000) / pll.params["CLKOS_DIV"]
        assert float(f_bridge) == pytest.approx(pll.bridge_mhz)
        assert 10 <= pll.bridge_mhz <= 80 and pll.bridge_mhz != pll.f_out_mhz
        divisor = round(pll.bridge_hz / 3_000_000)
        assert abs(pll.bridge_hz / divisor - 3_000_000) <= 0.005 * 3_000_000, mhz
    with pytest.raises(ValueError, match=r"No EHXPLLL CLKOS \(10-80 MHz\) beside 100 MHz from "
                                         r"25 MHz carries 30000000 baud"):
        ecp5_pll(25, 100, bridge_baud=30_000_000)
    assert ROBUST_DIVISOR == 16


@pytest.mark.parametrize("name", list(BOARDS))
def test_board_top_elaborates(tiny_model, name):
    board = BOARDS[name]
    pll = pll_config(board.family, board.clock_mhz, board.default_mhz,
                     bridge_baud=board.default_baud)
    top = BoardTop(Network(tiny_model, None), board, pll)
    assert top.bridge.baud == board.default_baud == 3_000_000
    assert top.bridge.network_domain == "accel" and top.bridge.network_clk_hz == pll.clk_hz
    assert top.bridge.info.clk_hz == pll.bridge_hz
    plan = board.platform().prepare(top, name="top", emit_src=False)
    text = plan.files["top.il"]
    primitive = "SB_PLL40_2_PAD" if board.family == "ice40" else "EHXPLLL"
    assert f"cell \\{primitive}" in text
    # Two domains, each with its reset synchronizer; the crossings' FIFOs.
    assert "accel_reset" in text and "sync_reset" in text
    assert "committed" in text and "freed" in text and "results" in text
    constraints = plan.files["top.pcf" if board.family == "ice40" else "top.lpf"]
    if board.family == "ice40":
        assert "set_io clk12_0__io 35" in constraints
        assert f"set_frequency pll_clk {pll.f_out_mhz}" in constraints
        assert "set_frequency bridge_clk 12.0" in constraints
    else:
        assert 'LOCATE COMP "clk25_0__io" SITE "G2"' in constraints
        assert f'FREQUENCY NET "pll_clk" {pll.clk_hz:.1f} HZ' in constraints
        assert f'FREQUENCY NET "bridge_clk" {pll.bridge_hz:.1f} HZ' in constraints
    for pin in ("uart_0__rx__io", "uart_0__tx__io", "led_0__io", "led_1__io", "button_0__io"):
        assert pin in constraints


def test_build_board_errors(tiny_model, tmp_path):
    with pytest.raises(ValueError, match=r"Unknown board 'arty'"):
        build_board(tiny_model, None, "arty", build_dir=tmp_path)
    with pytest.raises(ValueError, match=r"PE \(5\) must divide the output channels \(12\)"):
        build_board(tiny_model, Folding.from_dict({"layers": [{"pe": 5, "simd": 4},
                                                              {"pe": 1, "simd": 12}]}),
                    "icebreaker", build_dir=tmp_path)
    with pytest.raises(ValueError, match=r"seed \(-1\)"):
        build_board(tiny_model, None, "icebreaker", seed=-1, build_dir=tmp_path)


def test_cli_board_errors(tmp_path, capsys, tiny_model):
    model = tiny_model.save(tmp_path / "m.npz")
    assert main(["synth", str(model), "--board", "nope"]) == 2
    assert "known boards: icebreaker, ulx3s-25f, ulx3s-85f" in capsys.readouterr().err
    assert main(["synth", str(model), "--device", "up5k", "--out", str(tmp_path / "o")]) == 2
    assert "--out stores a board build" in capsys.readouterr().err
    assert main(["synth", str(model), "--device", "up5k", "--router", "router2"]) == 2
    assert "--router chooses a board build's router" in capsys.readouterr().err
    with pytest.raises(ValueError, match=r"^router \('router3'\) must be one of router1, "):
        build_board(tiny_model, None, "icebreaker", router="router3", build_dir=tmp_path / "b")
    with pytest.raises(SystemExit):
        main(["synth", str(model), "--board", "icebreaker", "--device", "up5k"])


# --- real builds ----------------------------------------------------------------------------------


def sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.synth
@pytest.mark.slow
def test_icebreaker_build(tiny_model, tmp_path, capsys):
    model_path = tiny_model.save(tmp_path / "tiny.npz")
    folding = tmp_path / "folding.json"
    folding.write_text(json.dumps(TINY_FOLDING))
    out = tmp_path / "ref"
    assert main(["synth", str(model_path), "--board", "icebreaker", "--folding", str(folding),
                 "--freq", "24", "--build-dir", str(tmp_path / "build"), "--out", str(out),
                 "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["board"] == "icebreaker" and report["device"] == "iCE40UP5K"
    assert 0 < report["luts"] <= report["luts_total"] == 5280
    assert 0 < report["ffs"] and report["brams_total"] == 30
    assert report["clock_mhz"] == 24.0 and report["pll"]["params"]["DIVF"] == 63
    assert report["accel_clock"] in report["fmax_mhz"] and report["accel_fmax_mhz"] > 0
    assert report["bridge_clock"] in report["fmax_mhz"] and report["bridge_fmax_mhz"] > 0
    assert report["bridge_mhz"] == 12.0 and report["accel_clock"] != report["bridge_clock"]
    domains = report["domains"]
    assert domains["accel"] == {"clock": report["accel_clock"], "mhz": 24.0,
                                "fmax_mhz": report["accel_fmax_mhz"],
                                "timing_met": report["accel_fmax_mhz"] >= 24 * 0.9999}
    assert domains["sync"]["mhz"] == 12.0 and domains["sync"]["timing_met"] == (
        report["bridge_fmax_mhz"] >= 12 * 0.9999)
    assert report["timing_met"] == (domains["accel"]["timing_met"]
                                    and domains["sync"]["timing_met"])
    assert report["ii_cycles"] == 60 and report["baud"] == DEFAULT_BAUD["icebreaker"]
    assert report["uart_divisor"] == 4    # 3 Mbaud from the 12 MHz oscillator
    assert report["frames_per_s_at_clock"] == round(24e6 / 60, 1)
    assert report["yosys"]["luts"] > 0 and report["yosys"]["brams"] == report["brams"]
    assert set(report["seconds"]) == {"elaborate", "synth", "pnr", "pack"}
    assert len(report["attempts"]) == 1
    # The accelerator clock's critical path: the one that sets its Fmax.
    path = report["critical_path"]
    assert path["from_clock"] == path["to_clock"] == f"posedge {report['accel_clock']}"
    assert path["delay_ns"] == pytest.approx(1000 / report["accel_fmax_mhz"], rel=2e-3)
    bitstream = tmp_path / "build" / "top.bin"
    assert report["bitstream"] == str(bitstream) and bitstream.stat().st_size > 0

    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["model_hash"] == Model.load(model_path).content_hash
    assert manifest["files"]["top.bin"] == sha256(bitstream) == sha256(out / "top.bin")
    assert manifest["files"]["report.json"] == sha256(out / "report.json")
    assert manifest["folding"] == TINY_FOLDING and manifest["ii_cycles"] == 60
    assert manifest["frames_per_s"] == round(24e6 / 60, 1)
    assert "--freq 24.0" in manifest["command"] and "simulation" not in manifest
    assert report["router"] == "router1" and "--router" not in manifest["command"]
    # The design's hash: what the build made, and what the code makes again from the manifest
    # without any tool (the check of tests/test_bitstreams.py); another seed is another design.
    assert manifest["design_sha256"] == report["design_sha256"]
    model = Model.load(model_path)
    again = {seed: board_design_sha256(model, Folding.from_dict(TINY_FOLDING), "icebreaker",
                                       pll=report["pll"], baud=manifest["baud"], seed=seed)
             for seed in (1, 2)}
    assert again[1] == manifest["design_sha256"] != again[2]

    # The same inputs and seed in another (deeper) build directory: the same bitstream.
    again = build_board(tiny_model, Folding.from_dict(TINY_FOLDING), "icebreaker",
                        freq_mhz=24, build_dir=tmp_path / "a" / "b" / "build",
                        timeout_s=TOOL_TIMEOUT_S)
    assert sha256(tmp_path / "a" / "b" / "build" / "top.bin") == sha256(bitstream)
    assert again.fmax_mhz == report["fmax_mhz"]

    # write_reference stores a simulation record when given one, and checks it.
    write_reference(again, tmp_path / "ref2", model_path, tiny_model, None,
                    simulation={"frames": 10, "ii_cycles": 60, "latency_cycles": 1,
                                "mismatches": 0})
    assert json.loads((tmp_path / "ref2" / "manifest.json").read_text())["simulation"][
        "mismatches"] == 0
    # A build with the other router says so in the command that rebuilds it.
    routed = dataclasses.replace(again, router="router2")
    write_reference(routed, tmp_path / "ref4", model_path, tiny_model, None)
    assert json.loads((tmp_path / "ref4" / "manifest.json").read_text())["command"].endswith(
        " --router router2")
    with pytest.raises(ValueError, match="simulation lacks mismatches"):
        write_reference(again, tmp_path / "ref3", model_path, tiny_model, None,
                        simulation={"frames": 1, "ii_cycles": 60, "latency_cycles": 1})

    # A clock above what the design reaches: the bitstream is built, but not stored as a
    # reference.
    capsys.readouterr()
    missed = tmp_path / "missed"
    assert main(["synth", str(model_path), "--board", "icebreaker", "--folding", str(folding),
                 "--freq", "200", "--build-dir", str(tmp_path / "fast"), "--out", str(missed),
                 "--json"]) == 1
    captured = capsys.readouterr()
    missed_report = json.loads(captured.out)
    assert missed_report["timing_met"] is False
    assert missed_report["domains"]["accel"]["timing_met"] is False
    assert missed_report["domains"]["sync"]["timing_met"] is True  # the bridge's 12 MHz
    assert "timing missed (domain accel: Fmax" in captured.err and "Traceback" not in captured.err
    assert not missed.exists()


@pytest.mark.synth
@pytest.mark.slow
def test_does_not_fit(tmp_path):
    # 40 PEs with their weights in block RAM (each PE's memory is its own EBR, however small):
    # more than the UP5K's 30.
    rng = np.random.default_rng(3)
    model = random_model((20, 40, 5), 3, random_frames(rng, 16, 20))
    folding = Folding.from_dict({"layers": [{"pe": 40, "simd": 1, "storage": "bram"},
                                            {"pe": 1, "simd": 4, "storage": "lut"}]})
    with pytest.raises(DoesNotFit, match=r"does not fit the iCE40UP5K: it needs \d+ ICESTORM_RAM "
                                         r"but the device has 30") as info:
        build_board(model, folding, "icebreaker", freq_mhz=20, build_dir=tmp_path,
                    timeout_s=TOOL_TIMEOUT_S)
    assert info.value.resource == "ICESTORM_RAM" and info.value.used > 30


@pytest.mark.synth
@pytest.mark.slow
def test_ulx3s_build_as_fast_as_timing_allows(tiny_model, tmp_path):
    # A target far above what the design reaches: the second build runs the PLL at the highest
    # frequency it makes not above the first build's Fmax.
    board = dataclasses.replace(BOARDS["ulx3s-25f"], default_mhz=200.0)
    report = build_board(tiny_model, Folding.from_dict(TINY_FOLDING), board,
                         build_dir=tmp_path / "build", timeout_s=TOOL_TIMEOUT_S)
    data = report.to_dict()
    assert data["device"] == "LFE5U-25F" and 0 < data["luts"] <= data["luts_total"] == 24288
    first, second = data["attempts"]
    assert first["clock_mhz"] == 200.0 and first["accel_fmax_mhz"] < 200.0
    assert not first["timing_met"]
    assert second["requested_mhz"] == first["accel_fmax_mhz"]
    assert second["clock_mhz"] == pll_config("ecp5", 25, first["accel_fmax_mhz"]).f_out_mhz
    assert data["clock_mhz"] == second["clock_mhz"] and data["pll"] == second["pll"]
    assert data["fmax_mhz"] == second["fmax_mhz"] and data["timing_met"] == second["timing_met"]
    divisor, baud = data["uart_divisor"], DEFAULT_BAUD["ulx3s-25f"]
    assert abs(data["bridge_mhz"] * 1e6 / divisor - baud) <= 0.005 * baud
    assert (tmp_path / "build" / "top.bit").stat().st_size > 0
    assert data["seconds"]["pnr"] == pytest.approx(
        first["seconds"]["pnr"] + second["seconds"]["pnr"], abs=0.01)

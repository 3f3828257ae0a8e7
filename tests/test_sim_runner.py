"""The cocotb simulation infrastructure: runner, stream helpers and their self-test.

The self-test design is converted and built with Verilator once for this module; every
cocotb run reuses that build.
"""

import gc
import itertools
import json
import shutil
import warnings

import pytest
from amaranth.hdl import UnusedElaboratable

from xnorflow.sim.runner import (
    PARAMS_ENV,
    PORTS_VLT,
    BuildFailed,
    SimulationFailed,
    SimulatorNotFound,
    build,
    build_component,
    run_tests,
    tb_params,
    top_ports,
    write_verilog,
)
from xnorflow.sim.selftest_dut import SelftestDut, SelftestPipe
from xnorflow.sim.streams import fixed_pause, no_pause, pause_from_spec, random_pause

TB = "xnorflow.sim.tb_selftest"
WIDTH, DEPTH = 16, 4
# The tests of tb_selftest that run in every variant, and the one only a parameter enables.
SELFTESTS_PASSING, SELFTESTS_SKIPPED = 8, 1


def _pause_spec(kind, seed):
    return {
        "none": None,
        "fixed": {"kind": "fixed", "pattern": [0, 1, 1, 0, 0, 0, 1]},
        "random": {"kind": "random", "p": 0.3, "seed": seed},
    }[kind]


@pytest.fixture(scope="module")
def selftest_build(tmp_path_factory):
    build_dir = tmp_path_factory.mktemp("selftest") / "build"
    return build_component(
        SelftestDut(width=WIDTH, depth=DEPTH), toplevel="selftest_top", build_dir=build_dir
    )


# --- the helpers against a real design, crossed with pauses on both sides ------------------------


@pytest.mark.parametrize("sink_pause", ["none", "fixed", "random"])
@pytest.mark.parametrize("source_pause", ["none", "fixed", "random"])
def test_selftest_verilator(selftest_build, source_pause, sink_pause):
    params = {
        "source_pause": _pause_spec(source_pause, seed=11),
        "sink_pause": _pause_spec(sink_pause, seed=12),
        "width": WIDTH,
        "depth": DEPTH,
        "beats": 200,
    }
    result = run_tests(selftest_build, TB, params=params, seed=1)
    assert result.failed == 0
    assert result.passed == SELFTESTS_PASSING > 0
    assert result.skipped == SELFTESTS_SKIPPED
    assert result.results_xml.is_file()
    assert json.loads((result.run_dir / "params.json").read_text()) == params


def test_failing_testbench_raises(selftest_build):
    params = {"source_pause": None, "sink_pause": None, "deliberate_failure": True}
    with pytest.raises(SimulationFailed, match="deliberate failure: got 1") as info:
        run_tests(selftest_build, TB, params=params, testcase="test_deliberate_failure")
    result = info.value.result
    assert (result.tests, result.passed, result.failed) == (1, 0, 1)
    assert "test_deliberate_failure" in result.failures[0]

    unchecked = run_tests(
        selftest_build, TB, params=params, testcase="test_deliberate_failure", check=False
    )
    assert unchecked.failed == 1 and not unchecked.ok


def test_missing_parameters_fail_the_data_path_tests(selftest_build):
    with pytest.raises(SimulationFailed, match="source_pause") as info:
        run_tests(selftest_build, TB, testcase="test_amaranth_stream_all_beats_in_order")
    assert info.value.result.failed == 1


def test_rebuild_is_cached(selftest_build):
    binary = selftest_build.build_dir / "selftest_top"
    before = binary.stat().st_mtime_ns
    again = build_component(
        SelftestDut(width=WIDTH, depth=DEPTH),
        toplevel="selftest_top",
        build_dir=selftest_build.build_dir,
    )
    assert binary.stat().st_mtime_ns == before
    assert again.sources == selftest_build.sources


# --- the self-test design in Amaranth's simulator: an independent measure of its timing ---------


def test_selftest_pipe_timing_in_amaranth_sim():
    """II 1 and latency SelftestPipe.LATENCY, as the cocotb helpers' cycle stamps must show."""
    from amaranth.sim import Simulator

    dut = SelftestPipe(WIDTH, DEPTH)
    transfers = {"in": [], "out": []}

    async def testbench(ctx):
        ctx.set(dut.i_stream.valid, 1)
        ctx.set(dut.o_stream.ready, 1)
        for cycle in range(20):
            ctx.set(dut.i_stream.payload, cycle)
            if ctx.get(dut.i_stream.ready):
                transfers["in"].append((cycle, cycle))
            if ctx.get(dut.o_stream.valid):
                transfers["out"].append((ctx.get(dut.o_stream.payload), cycle))
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()
    arrival = dict(transfers["in"])
    assert [v for v, _ in transfers["out"]] == list(range(len(transfers["out"])))
    assert {c - arrival[v] for v, c in transfers["out"]} == {SelftestPipe.LATENCY}
    assert len(transfers["out"]) == 20 - SelftestPipe.LATENCY


@pytest.mark.parametrize(
    ("width", "depth", "message"),
    [
        (0, 4, r"Payload width \(0\) must be a positive integer"),
        (16, 1, r"FIFO depth \(1\) must be an integer of at least 2"),
    ],
)
def test_selftest_pipe_parameters(width, depth, message):
    # The half-built component is never elaborated: Amaranth's "created but never used" warning
    # (raised when it is collected) is expected here and only here.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnusedElaboratable)
        with pytest.raises(ValueError, match=message):
            SelftestPipe(width, depth)
        gc.collect()


# --- errors --------------------------------------------------------------------------------------


@pytest.mark.skipif(shutil.which("iverilog") is not None, reason="Icarus Verilog is installed")
def test_icarus_missing_is_a_clear_error(tmp_path):
    source = write_verilog(SelftestPipe(), tmp_path, name="pipe")
    with pytest.raises(SimulatorNotFound, match="Icarus Verilog is not installed"):
        build([source], toplevel="pipe", build_dir=tmp_path, simulator="icarus")


def test_unknown_simulator(tmp_path):
    with pytest.raises(ValueError, match="'questa' is not supported"):
        build([tmp_path / "pipe.v"], toplevel="pipe", build_dir=tmp_path, simulator="questa")


def test_verilog_error_is_a_build_failure(tmp_path):
    source = tmp_path / "broken.v"
    source.write_text("module broken(input clk);\n  wire x = ;\nendmodule\n")
    with pytest.raises(BuildFailed, match="(?s)Building 'broken' with verilator failed.*%Error"):
        build([source], toplevel="broken", build_dir=tmp_path / "build")


def test_ports_only_build_runs_the_selftests(selftest_build, tmp_path):
    """``access="ports"``: the testbench still reaches every port (and nothing else), the
    self-tests pass crossed with pauses, and the control file names exactly the top's ports."""
    ports = build(selftest_build.sources, toplevel="selftest_top", build_dir=tmp_path,
                  access="ports")
    names = top_ports(selftest_build.sources, "selftest_top")
    assert "clk" in names and "rst" in names and len(names) == len(set(names))
    vlt = (tmp_path / PORTS_VLT).read_text().splitlines()
    assert vlt[0] == "`verilator_config"
    assert vlt[1:] == [f'public_flat_rw -module "selftest_top" -var "{n}"' for n in names]
    params = {"source_pause": _pause_spec("random", seed=11),
              "sink_pause": _pause_spec("fixed", seed=0),
              "width": WIDTH, "depth": DEPTH, "beats": 200}
    result = run_tests(ports, TB, params=params, seed=1)
    assert (result.passed, result.failed, result.skipped) == \
        (SELFTESTS_PASSING, 0, SELFTESTS_SKIPPED)


def test_top_ports_reads_both_header_styles(tmp_path):
    plain = tmp_path / "plain.v"
    plain.write_text("/* module top(x); */\nmodule other(q);\nendmodule\n"
                     "module top(a, b, // a comment\n  clk);\n  input a;\nendmodule\n")
    ansi = tmp_path / "ansi.v"
    ansi.write_text("module top #(parameter W = 8, parameter D = (2)) (\n  input wire clk,\n"
                    "  input [W-1:0] data, output reg signed [3:0] q\n);\nendmodule\n")
    assert top_ports([plain], "top") == ["a", "b", "clk"]
    assert top_ports([tmp_path / "none.v", ansi][1:], "top") == ["clk", "data", "q"]
    with pytest.raises(BuildFailed, match="No module 'missing'"):
        top_ports([plain, ansi], "missing")
    with pytest.raises(ValueError, match="Access 'none' must be one of all, ports"):
        build([plain], toplevel="top", build_dir=tmp_path, access="none")


def test_parameters_reach_tb_params(tmp_path, monkeypatch):
    path = tmp_path / "params.json"
    path.write_text(json.dumps({"beats": 3}))
    monkeypatch.setenv(PARAMS_ENV, str(path))
    assert tb_params() == {"beats": 3}
    monkeypatch.delenv(PARAMS_ENV)
    assert tb_params() == {}


# --- pause generators (plain Python) -------------------------------------------------------------


def test_no_pause():
    assert not any(itertools.islice(no_pause(), 100))


def test_fixed_pause_repeats_its_pattern():
    assert list(itertools.islice(fixed_pause([0, 1, 1]), 7)) == [
        False, True, True, False, True, True, False,
    ]
    with pytest.raises(ValueError, match="pauses every cycle"):
        fixed_pause([1, 1])
    with pytest.raises(ValueError, match="must not be empty"):
        fixed_pause([])


def test_random_pause_is_seeded():
    a = list(itertools.islice(random_pause(0.25, seed=3), 4000))
    b = list(itertools.islice(random_pause(0.25, seed=3), 4000))
    c = list(itertools.islice(random_pause(0.25, seed=4), 4000))
    assert a == b and a != c
    assert 800 < sum(a) < 1200
    with pytest.raises(ValueError, match="less than 1"):
        random_pause(1.0, seed=0)


def test_pause_from_spec():
    assert not any(itertools.islice(pause_from_spec(None), 10))
    assert next(pause_from_spec({"kind": "fixed", "pattern": [1, 0]})) is True
    spec = {"kind": "random", "p": 0.5, "seed": 9}
    assert list(itertools.islice(pause_from_spec(spec), 50)) == list(
        itertools.islice(random_pause(0.5, 9), 50)
    )
    with pytest.raises(ValueError, match="takes exactly"):
        pause_from_spec({"kind": "random", "p": 0.5})
    with pytest.raises(ValueError, match="must be one of"):
        pause_from_spec({"kind": "sometimes"})

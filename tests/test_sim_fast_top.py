"""The simulation wrapper that samples a design's inputs at the falling edge
(xnorflow.sim.fast_top): its Verilog, and the self-tests of the stream helpers on a wrapped,
ports-only Verilator build (the network designs are compared cycle for cycle with plain builds
in tests/test_sim_network.py)."""

import re

import pytest

from xnorflow.sim.fast_top import SUFFIX, sampled_top, top_port_decls
from xnorflow.sim.runner import BuildFailed, build, run_tests, write_verilog
from xnorflow.sim.selftest_dut import SelftestDut

TOP = """\
/* module top(nope); */
module top(a, clk, rst, q, d);
  input a;
  wire a;
  input clk;
  input rst;
  output [3:0] q;
  input signed [7:0] d; // a comment
  assign q = d[3:0] ^ {4{a}};
endmodule
"""


def test_port_declarations_in_header_order():
    assert top_port_decls(TOP, "top") == [("input", "", "a"), ("input", "", "clk"),
                                          ("input", "", "rst"), ("output", "[3:0]", "q"),
                                          ("input", "signed [7:0]", "d")]


def test_wrapper_samples_every_input_but_the_clock():
    text, name = sampled_top(TOP, "top")
    assert name == "top" + SUFFIX == "top_sampled"
    assert f"module {name}(a, clk, rst, q, d);" in text
    assert "  input signed [7:0] d;\n" in text and "  output [3:0] q;\n" in text
    assert re.findall(r"reg (.*?);", text) == ["a__s = 0", "rst__s = 1",
                                               "signed [7:0] d__s = 0"]
    assert "always @(negedge clk) begin\n    a__s <= a;\n    rst__s <= rst;\n    d__s <= d;\n" \
        in text
    assert "  top dut (.a(a__s), .clk(clk), .rst(rst__s), .q(q), .d(d__s));" in text


def test_wrapper_errors():
    with pytest.raises(BuildFailed, match="No module 'other'"):
        sampled_top(TOP, "other")
    with pytest.raises(BuildFailed, match="no 1-bit input 'clock'"):
        sampled_top(TOP, "top", clock="clock")
    with pytest.raises(BuildFailed, match="'x' of 'm' is inout"):
        sampled_top("module m(clk, x);\n input clk;\n inout x;\nendmodule\n", "m")
    with pytest.raises(BuildFailed, match="Cannot read the port declarations of 'm'"):
        sampled_top("module m(clk, x);\n input clk;\nendmodule\n", "m")


def test_selftests_pass_on_a_wrapped_ports_only_build(tmp_path):
    path = write_verilog(SelftestDut(width=16, depth=4), tmp_path, name="selftest_top")
    verilog = path.read_text()
    wrapper, name = sampled_top(verilog, "selftest_top")
    source = tmp_path / "wrapped.v"
    source.write_text(f"{verilog}\n{wrapper}")
    wrapped = build([source], toplevel=name, build_dir=tmp_path / "build", access="ports")
    params = {"source_pause": {"kind": "random", "p": 0.3, "seed": 11},
              "sink_pause": {"kind": "fixed", "pattern": [0, 1, 1, 0, 0, 0, 1]},
              "width": 16, "depth": 4, "beats": 200}
    result = run_tests(wrapped, "xnorflow.sim.tb_selftest", params=params, seed=1, check=False)
    assert result.failed == 0 and result.passed == 8, result.failures

"""A simulation-only Verilog wrapper that samples a design's inputs at the falling clock edge.

Verilator evaluates every piece of logic that reads a top-level input in its *input region* at
each ``eval()``, which cocotb calls several times per clock cycle (at both edges, and again after
each write from the testbench). :func:`sampled_top` writes a wrapper module with the same ports
that passes the clock straight through and every other input through a register clocked on the
*falling* edge. Inside it no logic reads a top-level input: Verilator evaluates each part of the
design only at the edge whose registers feed it, and a write from the testbench costs an
``eval()`` that finds nothing to do (``cnv``: 5 to 10 % faster than the same ports-only build
without the wrapper).

Why the behaviour at the ports is unchanged
    The helpers of :mod:`xnorflow.sim.streams` and :func:`~xnorflow.sim.streams.reset` change
    inputs only in the time step of a rising edge and sample outputs at the falling edge. So at
    every rising edge the design sees the inputs it would see unwrapped (set after the previous
    rising edge, sampled at the falling edge between), and at every falling edge its outputs are
    those of the same inputs. The one difference: an output that depends combinationally on an
    input follows it at the next falling edge instead of at once. A helper sleeping on such an
    output would wake a cycle late, so the helpers check that every change they wake on comes at
    a rising edge and raise :class:`~xnorflow.sim.streams.StreamProtocolError` otherwise: a
    design for which the wrapper is not exact fails, it does not pass silently. Every cycle
    stamp, handshake, II and latency is the design's own (``tests/test_sim_network.py`` checks
    that a wrapped build moves every beat in the same cycle as a plain one).
"""

from __future__ import annotations

import re

from xnorflow.sim.runner import BuildFailed

__all__ = ["SUFFIX", "sampled_top", "top_port_decls"]

#: Name of the wrapper module: the design's top module name with this suffix.
SUFFIX = "_sampled"

_DECL = re.compile(
    r"\b(input|output|inout)\b\s*(?:wire\s+|reg\s+|logic\s+)?(signed\s+)?(\[[^\]]*\])?\s*"
    r"([A-Za-z_][A-Za-z0-9_$]*)\s*[;,)]"
)


def top_port_decls(verilog: str, toplevel: str) -> list[tuple[str, str, str]]:
    """``(direction, range or "", name)`` of each port of module ``toplevel`` in ``verilog``,
    in header order, one declaration per port as Yosys writes them; :class:`BuildFailed` when
    the module or a port's declaration is not found, or a port is ``inout``."""
    text = re.sub(r"/\*.*?\*/|//[^\n]*", " ", verilog, flags=re.S)
    start = re.search(rf"\bmodule\s+{re.escape(toplevel)}\b", text)
    if start is None:
        raise BuildFailed(f"No module {toplevel!r} in the Verilog")
    end = text.find("endmodule", start.end())
    body = text[start.end():end if end >= 0 else len(text)]
    decls = {}
    for match in _DECL.finditer(body):
        direction, signed, width, name = match.groups()
        if direction == "inout":
            raise BuildFailed(f"Port {name!r} of {toplevel!r} is inout; the sampled wrapper "
                              "takes inputs and outputs only")
        decls.setdefault(name, (direction, (signed or "") + (width or ""), name))
    header = re.match(r"\s*\(([^;]*)\)\s*;", body)
    names = [n.strip() for n in header[1].split(",")] if header else []
    if not names or any(n not in decls for n in names):
        raise BuildFailed(f"Cannot read the port declarations of {toplevel!r}")
    return [decls[n] for n in names]


def _sized(width: str, name: str) -> str:
    return f"{width} {name}" if width else name


def sampled_top(verilog: str, toplevel: str, *, clock: str = "clk",
                reset: str = "rst") -> tuple[str, str]:
    """``(wrapper Verilog, wrapper module name)`` for module ``toplevel`` of ``verilog``: the
    same ports, ``clock`` passed through, every other input registered at the falling edge of
    ``clock`` (module docstring). The registers start at 0, the one of ``reset`` at 1: what a
    :class:`~xnorflow.sim.streams.StreamTB` drives before the first edge."""
    decls = top_port_decls(verilog, toplevel)
    if ("input", "", clock) not in decls:
        raise BuildFailed(f"{toplevel!r} has no 1-bit input {clock!r} to sample on")
    name = toplevel + SUFFIX
    sampled = [(width, port) for direction, width, port in decls
               if direction == "input" and port != clock]
    lines = [f"// Simulation only: {toplevel} with its inputs sampled at the falling edge of "
             f"{clock} (xnorflow.sim.fast_top).",
             f"module {name}({', '.join(port for _, _, port in decls)});"]
    lines += [f"  {direction} {_sized(width, port)};" for direction, width, port in decls]
    lines += [f"  reg {_sized(width, port + '__s')} = {int(port == reset)};"
              for width, port in sampled]
    lines.append(f"  always @(negedge {clock}) begin")
    lines += [f"    {port}__s <= {port};" for _, port in sampled]
    lines.append("  end")
    inner = {port for _, port in sampled}
    connections = ", ".join(f".{port}({port}__s)" if port in inner else f".{port}({port})"
                            for _, _, port in decls)
    lines.append(f"  {toplevel} dut ({connections});")
    lines.append("endmodule")
    return "\n".join(lines) + "\n", name

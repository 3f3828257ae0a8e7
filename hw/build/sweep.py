"""Resource and Fmax sweeps of single blocks, out of context (see :mod:`xnorflow.hw.build.synth`).

:func:`mvtu_sweep` measures the XNOR-popcount matrix-vector-threshold unit alone over its SIMD
width on one device, the figures behind the performance model's per-lane LUT estimate and the
claim that the clock does not fall with SIMD.

The unit measured (chosen so that the figure is the cost of the compute datapath per lane):

* binary input (``input_bits=1``), a threshold layer, ``PE = 1``;
* ``N = SIMD``: one chunk per frame (``SF = 1``), so a frame is one input beat and the unit's
  input buffer is two registers (no memory, no read multiplexer);
* ``M = 8`` outputs (``NF = 8`` folds, II 8 cycles), weights and thresholds drawn at random from
  a fixed seed;
* weights in block RAM (``storage="bram"``): the weight memory is then no LUT cost at all, and
  LUT4 per lane measures popcount tree, XNORs and control. With ``storage="lut"`` every weight bit
  is a LUT3 of the fold address, about one more LUT4 per lane. The iCE40UP5K reads at most 16
  bits per cycle from one of its 30 block RAMs, so 512 lanes need 32 and do not fit: such a row is
  recorded as not fitting (naming the resource), and ``fallback_storage="lut"`` measures it once
  more with the weights in LUTs;
* ``levels_per_stage = 1``: the groups' full-adder counts registered, then a register after
  every level of the adder tree over them (see :mod:`xnorflow.hw.blocks.popcount`);
* nextpnr targets the issue's clock goals (:data:`TARGET_MHZ`: 125 MHz on ECP5, 40 MHz on
  iCE40); Fmax is the post-route figure either way.

Each row's ``luts``, ``ffs``, ``brams`` and ``carries`` are the unit's own cells, counted by Yosys
in its module of the harnessed design (:attr:`SynthReport.block`); ``lut4_per_lane`` is
``luts / simd``, the whole unit with its control. ``lut_sites`` is the unit's share of the LUT4
positions after nextpnr's packing (:attr:`SynthReport.block_packed`): the same LUT4s plus the
cells nextpnr adds to carry chains (on ECP5 a feed-in and a feed-out carry cell, four LUT4
positions, per chain that Yosys leaves with a constant carry input and a carry output used by
logic; on iCE40 one logic cell per carry input or output it has to route); ``logic_cells`` is the
iCE40 logic-cell count of the unit (LUT, flip-flop or both). ``design_luts`` is nextpnr's
post-pack figure for the whole placed design, harness included (logic cells on iCE40).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from xnorflow.hw.build.synth import DoesNotFit, SynthOptions, synthesize
from xnorflow.hw.compiler.devices import Device, get_device

__all__ = ["TARGET_MHZ", "SweepRow", "mvtu_for_sweep", "mvtu_sweep", "sweep_markdown",
           "write_sweep_json"]

#: Target clock of the MVTU sweep per family (the issue's goals at SIMD 256).
TARGET_MHZ = {"ecp5": 125.0, "ice40": 40.0}

#: Output channels of the swept unit.
SWEEP_M = 8


@dataclass(frozen=True)
class SweepRow:
    """One point of :func:`mvtu_sweep` (see the module docstring for the fields' sources).

    ``fits`` is False when nextpnr found the design too big (``resource`` names the cell type,
    the figures are then ``None``).
    """

    device: str
    simd: int
    n: int
    m: int
    pe: int
    storage: str
    levels_per_stage: int
    fits: bool
    luts: int | None
    lut4_per_lane: float | None
    lut_sites: int | None
    lut_sites_per_lane: float | None
    logic_cells: int | None
    ffs: int | None
    brams: int | None
    carries: int | None
    fmax_mhz: float | None
    target_mhz: float
    timing_met: bool | None
    design_luts: int | None
    design_luts_total: int | None
    harness_luts: int | None
    harness_ffs: int | None
    synth_command: str
    seed: int
    seconds: float
    resource: str | None = None


def mvtu_for_sweep(simd: int, *, m: int = SWEEP_M, storage: str = "bram",
                   levels_per_stage: int = 1, seed: int = 1):
    """The swept unit: ``N = SIMD``, ``M = m``, ``PE = 1``, binary input, random weights and
    thresholds (seeded), directions mixed."""
    from xnorflow.hw.blocks.mvtu import MVTU

    rng = np.random.default_rng(seed)
    weights = rng.integers(0, 2, size=(m, simd), dtype=np.uint8)
    thresholds = rng.integers(0, simd + 1, size=m)
    directions = np.where(rng.integers(0, 2, size=m) == 1, 1, -1)
    return MVTU(weights, thresholds, directions, input_bits=1, pe=1, simd=simd,
                storage=storage, levels_per_stage=levels_per_stage)


def mvtu_sweep(
    device: str | Device,
    simds: Sequence[int] = (64, 128, 256, 512),
    *,
    build_root: str | os.PathLike[str],
    m: int = SWEEP_M,
    storage: str = "bram",
    fallback_storage: str | None = None,
    levels_per_stage: int = 1,
    seed: int = 1,
    freq_mhz: float | None = None,
    options: SynthOptions | None = None,
    progress: Callable[[str], None] | None = None,
) -> list[SweepRow]:
    """Synthesize, place and route the swept MVTU (:func:`mvtu_for_sweep`) for each SIMD width on
    ``device``, one run at a time, each in ``<build_root>/<device>-simd<SIMD>-<storage>``.

    ``freq_mhz`` defaults to the family's :data:`TARGET_MHZ`. A width that does not fit gives a
    row with ``fits=False``; with ``fallback_storage`` it is measured again with that storage (a
    second row). ``progress`` receives one line per tool step.
    """
    device = get_device(device)
    target = TARGET_MHZ[device.family] if freq_mhz is None else float(freq_mhz)
    rows = []
    for simd in simds:
        for attempt in (storage, fallback_storage):
            if attempt is None:
                break
            row = _sweep_point(device, simd, m=m, storage=attempt,
                               levels_per_stage=levels_per_stage, seed=seed, target=target,
                               options=options, build_root=Path(build_root), progress=progress)
            rows.append(row)
            if row.fits:
                break
    return rows


def _sweep_point(device: Device, simd: int, *, m: int, storage: str, levels_per_stage: int,
                 seed: int, target: float, options: SynthOptions | None, build_root: Path,
                 progress: Callable[[str], None] | None) -> SweepRow:
    unit = mvtu_for_sweep(simd, m=m, storage=storage, levels_per_stage=levels_per_stage,
                          seed=seed)
    label = f"{device.name} SIMD {simd} ({storage})"

    def step(name, state, seconds):
        if progress is not None:
            progress(f"{label}: {name} {state}" + ("" if seconds is None else f" {seconds:.1f} s"))

    build_dir = build_root / f"{device.name}-simd{simd}-{storage}"
    start = time.monotonic()
    common = {"device": device.name, "simd": simd, "n": simd, "m": m, "pe": 1,
              "storage": storage, "levels_per_stage": levels_per_stage, "target_mhz": target,
              "seed": seed}
    try:
        report = synthesize(unit, device=device, build_dir=build_dir, top_name="mvtu",
                            freq_mhz=target, seed=seed, options=options, progress=step)
    except DoesNotFit as exc:
        if progress is not None:
            progress(f"{label}: does not fit ({exc.resource} {exc.used} > {exc.available})")
        return SweepRow(**common, fits=False, luts=None, lut4_per_lane=None, lut_sites=None,
                        lut_sites_per_lane=None, logic_cells=None, ffs=None,
                        brams=None, carries=None, fmax_mhz=None, timing_met=None,
                        design_luts=None, design_luts_total=None, harness_luts=None,
                        harness_ffs=None, synth_command="",
                        seconds=round(time.monotonic() - start, 1), resource=exc.resource)
    block, packed = report.block, report.block_packed
    return SweepRow(
        **common, fits=True, luts=block.luts, lut4_per_lane=round(block.luts / simd, 3),
        lut_sites=packed.lut_sites, lut_sites_per_lane=round(packed.lut_sites / simd, 3),
        logic_cells=packed.logic_cells, ffs=block.ffs, brams=block.brams, carries=block.carries,
        fmax_mhz=round(report.min_fmax_mhz, 2), timing_met=report.timing_met,
        design_luts=report.luts, design_luts_total=report.luts_total,
        harness_luts=report.harness.luts, harness_ffs=report.harness.ffs,
        synth_command=report.synth_command, seconds=round(time.monotonic() - start, 1))


def write_sweep_json(rows: Sequence[SweepRow], path: str | os.PathLike[str], *,
                     extra: dict[str, Any] | None = None) -> None:
    """Write ``rows`` (and ``extra`` metadata, e.g. tool versions) as JSON to ``path``."""
    data = {"rows": [asdict(row) for row in rows], **(extra or {})}
    Path(path).write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def sweep_markdown(rows: Sequence[SweepRow]) -> str:
    """A markdown table of ``rows``."""
    lines = [
        "| device | synth options | SIMD | storage | LUT4 (Yosys) | LUT4/lane | LUT sites "
        "(post-pack) | sites/lane | FF | BRAM | Fmax MHz (target) |",
        "|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        options = " ".join(row.synth_command.split()[3:-2]) or "(none)"
        if not row.fits:
            lines.append(f"| {row.device} | | {row.simd} | {row.storage} | does not fit: "
                         f"{row.resource} | | | | | | |")
            continue
        lines.append(
            f"| {row.device} | {options} | {row.simd} | {row.storage} | {row.luts} | "
            f"{row.lut4_per_lane:.3f} | {row.lut_sites} | {row.lut_sites_per_lane:.3f} | "
            f"{row.ffs} | {row.brams} | {row.fmax_mhz:.1f} ({row.target_mhz:g}) |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m xnorflow.hw.build.sweep``: the MVTU SIMD sweep on ECP5-85F and iCE40UP5K."""
    import argparse
    import sys

    p = argparse.ArgumentParser(prog="python -m xnorflow.hw.build.sweep",
                                description="Synthesize, place and route one MVTU PE at several "
                                            "SIMD widths and print the table.")
    p.add_argument("--devices", default="LFE5U-85F,iCE40UP5K")
    p.add_argument("--simd", default="64,128,256,512")
    p.add_argument("--build-root", default="build/mvtu-sweep")
    p.add_argument("--json", metavar="FILE", help="also write the rows as JSON")
    args = p.parse_args(argv)
    rows = []
    for dev in args.devices.split(","):
        rows += mvtu_sweep(dev, [int(s) for s in args.simd.split(",")],
                           build_root=args.build_root, fallback_storage="lut",
                           progress=lambda line: print(line, file=sys.stderr, flush=True))
    if args.json:
        write_sweep_json(rows, args.json)
    print(sweep_markdown(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

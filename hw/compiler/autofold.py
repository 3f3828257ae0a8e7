"""Auto-folding: PE, SIMD and weight storage per layer for the highest throughput that fits a
device.

:func:`auto_folding` searches the initiation intervals the layers can reach, fastest first. For
an interval ``T`` each layer gets its candidate foldings: for every PE dividing its outputs (a
convolution's or a pooling's: its output channels) every SIMD dividing its inputs (input
channels; a convolution's also ``m*C`` for every ``m > 1`` dividing its kernel, see
:func:`~xnorflow.hw.compiler.folding.simd_choices`) whose cycles per frame are at most ``T``
(``(M/PE)*(N/SIMD)``, a convolution's ``OH*OW*(M/PE)*(K*K*C/SIMD)``, see
:func:`~xnorflow.hw.compiler.folding.layer_cycles`): the smallest such SIMD with the weights in
block RAM or in logic, the wider ones with the weights in block RAM (wider words can pack the
memories into fewer blocks; in logic more lanes only cost),
each with the input buffer, and a convolution's line buffer, in every place the family has;
candidates that cost more LUTs *and* more block RAM than another are dropped. The layers'
candidates are then combined by a dynamic program over the layers (state: the block RAMs used so
far and the last layer's PE, on which the width converter to the next layer depends) that keeps,
per state, the combination of fewest logic cells, priced with the calibrated resource model
(each op's ``resources()``, width converters between the layers, the ArgMax and the output FIFO,
and on a board the serial bridge); of the final states that fit, the one of fewest logic cells
is kept. Its layers' intervals are all at most ``T``, so the network is balanced to ``T`` up to
the divisors of the layer sizes. The first ``T`` with a fitting combination is the answer.

"Fits" means: LUT4s at most :data:`LUT_BUDGET` of the device (place and route needs headroom,
and the model is within about 15 % of Yosys), flip-flops at most the device's (on iCE40 also the
logic cells, LUT4s plus :data:`ICE40_FF_CELLS` per flip-flop, at most :data:`ICE40_CELL_BUDGET`
of them), block RAMs at most the device's (the model counts them exactly, see
:func:`xnorflow.hw.blocks.mvtu.threshold_style`). Block
RAM bandwidth is part of the count: a PE's weight memory of ``NF*SF`` words of ``SIMD`` bits
takes as many block RAMs as its width needs ports, however few bits it holds.

With ``target_fps`` the search returns the cheapest folding whose interval gives at least that
many frames/s at the clock (``freq_mhz``, or the family's typical post-route clock of
:data:`TYPICAL_CLOCK_MHZ`). A network that fits at no interval, or not at the target, raises
:class:`DoesNotFitError`, whose message says what is short (LUTs, flip-flops or block RAMs, how
many needed and available) at the slowest interval that was tried.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

from xnorflow.hw.compiler.devices import Device, get_device
from xnorflow.hw.compiler.folding import (
    Folding,
    FoldingError,
    LayerFolding,
    divisors,
    layer_cycles,
    layer_extents,
    simd_choices,
)
from xnorflow.hw.compiler.op import Op
from xnorflow.hw.compiler.ops.plumbing import ConverterOp
from xnorflow.hw.compiler.plan import compile_plan, lower
from xnorflow.hw.compiler.resources import Resources, bridge_resources

__all__ = ["ICE40_CELL_BUDGET", "ICE40_FF_CELLS", "LUT_BUDGET", "TYPICAL_CLOCK_MHZ", "AutoFolding",
           "DoesNotFitError", "auto_folding", "ice40_logic_cells"]

#: Share of the device's LUT4s the auto-folder may fill.
LUT_BUDGET = 0.85
#: iCE40: logic cells taken per flip-flop beyond the LUT4s (fitted to the TFC reference build).
ICE40_FF_CELLS = 0.6
#: iCE40: share of the logic cells the estimate may fill (nextpnr fails to place above ~98 %).
ICE40_CELL_BUDGET = 0.9
#: Clock assumed for ``target_fps`` when none is given: about what the generated accelerators
#: reach after routing (see the README's synthesis tables).
TYPICAL_CLOCK_MHZ = {"ice40": 30.0, "ecp5": 100.0}
#: Where an input buffer may live, per family (iCE40 has no LUT RAM).
_BUFFERS = {"ice40": ("logic", "block"), "ecp5": ("logic", "block", "distributed")}


class DoesNotFitError(FoldingError):
    """No folding of the network fits the device (at the requested rate); the message names the
    resource that is short."""


@dataclass(frozen=True)
class AutoFolding:
    """The result of :func:`auto_folding`."""

    folding: Folding
    device: str
    ii: int
    estimate: Resources
    board: bool
    clock_mhz: float
    #: ``(resource, used, available)`` for LUTs, FFs and block RAMs (the budgeted LUT count)
    usage: tuple[tuple[str, int, int], ...]

    @property
    def frames_per_s(self) -> float:
        return self.clock_mhz * 1e6 / self.ii

    def to_dict(self) -> dict:
        return {"device": self.device, "ii_cycles": self.ii, "clock_mhz": self.clock_mhz,
                "frames_per_s": round(self.frames_per_s, 1), "board": self.board,
                "folding": self.folding.to_dict(), "estimate": self.estimate.to_dict(),
                "usage": {name: {"used": used, "available": available}
                          for name, used, available in self.usage}}


def _candidates(op: Op, t: int, family: str):
    """Pareto-optimal ``(LayerFolding, Resources)`` of ``op`` with interval at most ``t``: for
    every PE dividing its outputs (output channels) the smallest SIMD of
    :func:`~xnorflow.hw.compiler.folding.simd_choices` (dividing its inputs or input channels,
    or a convolution's ``m*C``) whose cycles per frame
    (:func:`~xnorflow.hw.compiler.folding.layer_cycles`) are at most ``t``, with the weights,
    where the op has any, in block RAM or in logic, the input buffer in each place the family
    has, and a convolution's line buffer likewise."""
    m = layer_extents(op)[0]
    weighted = hasattr(op, "weights")
    found = []
    for pe in divisors(m):
        simds = [d for d in simd_choices(op) if layer_cycles(op, pe, d) <= t]
        if not simds:
            continue
        if not weighted:
            entry = LayerFolding(pe, simds[0])
            found.append((entry, op.folded(entry).resources()))
            continue
        for simd in simds:
            unit = op.folded(LayerFolding(pe, simd))
            buffers = (None,) if unit.sf == 1 and unit.nf >= 3 else _BUFFERS[family]
            # a convolution's line buffer: where its rule puts it, or the other places
            lines = (None, *_BUFFERS[family]) if op.kind == "conv2d" else (None,)
            # beyond the smallest SIMD, only weights in block RAM (wider words pack the
            # memories better); in logic more lanes only cost
            storages = ("bram", "lut") if simd == simds[0] else ("bram",)
            for storage, buffer, line in itertools.product(storages, buffers, lines):
                if line is not None and line == unit.line_buffer_style:
                    continue              # the rule's choice, already offered as None
                entry = LayerFolding(pe, simd, storage, buffer=buffer, line_buffer=line)
                found.append((entry, op.folded(entry).resources()))
    key = [(r.luts(family), r.brams(family), r.ff) for _, r in found]
    keep = []
    for i, (lf, res) in enumerate(found):
        dominated = any(
            all(a <= b for a, b in zip(key[j], key[i], strict=True)) and key[j] != key[i]
            for j in range(len(found)))
        duplicate = any(key[j] == key[i] for j in range(i))
        if not dominated and not duplicate:
            keep.append((lf, res))
    keep.sort(key=lambda c: (c[1].luts(family), c[1].brams(family)))
    return keep


def _intervals(dense) -> list[int]:
    """Every interval a layer can have that every layer can reach, ascending (the network's
    candidates)."""
    values, floor = set(), 0
    for op in dense:
        m = layer_extents(op)[0]
        own = {c for pe in divisors(m) for simd in simd_choices(op)
               if math.isfinite(c := layer_cycles(op, pe, simd))}
        values |= own
        floor = max(floor, min(own))      # no interval below some layer's fastest
    return sorted(int(v) for v in values if v >= floor)


def _fixed(model, with_scores):
    """Resources outside the layers and converters (the ArgMax, the output FIFO, the input
    counter), from the unfolded plan."""
    plan = compile_plan(model, Folding(tuple(LayerFolding(1, 1) for _ in model.layers)),
                        with_scores=with_scores)
    total = plan.resources()
    for op in plan.ops:
        if op.is_layer or op.kind == "converter":  # the folding decides these
            total = Resources(*(a - b for a, b in zip(total.as_tuple(),
                                                      op.resources().as_tuple(), strict=True)))
    return total


def _usage(res: Resources, device: Device):
    family = device.family
    usage = [("LUT4", res.luts(family), math.floor(LUT_BUDGET * device.luts)),
             ("FF", res.ff, device.ffs),
             ("block RAM", res.brams(family), device.brams)]
    if family == "ice40":
        # An iCE40 logic cell holds one LUT4 and one flip-flop: flip-flops that find no LUT of
        # their own take cells too (TFC on the UP5K: 3,784 LUT4s and 2,382 FFs in 5,179 cells).
        usage.append(("logic cell", ice40_logic_cells(res),
                      math.floor(ICE40_CELL_BUDGET * device.luts)))
    return tuple(usage)


def ice40_logic_cells(res: Resources) -> int:
    """iCE40 logic cells (nextpnr's ICESTORM_LC) of an estimate: its LUT4s, and
    :data:`ICE40_FF_CELLS` per flip-flop for the flip-flops that find no LUT4 of their own to
    pack with (the carry cells that need a cell of their own and the cells that legalise carry
    chains are in that share)."""
    return res.lut_ice40 + math.ceil(ICE40_FF_CELLS * res.ff)


def _short(usage) -> str:
    over = [f"{name}: {used:,} needed, {available:,} available"
            for name, used, available in usage if used > available]
    return "; ".join(over)


def auto_folding(model, device: str | Device, *, freq_mhz: float | None = None,
                 target_fps: float | None = None, board: bool = False,
                 with_scores: bool = True) -> AutoFolding:
    """The folding of ``model`` with the highest throughput that fits ``device`` (or, with
    ``target_fps``, the cheapest that reaches it); see the module docstring. ``board``: leave
    room for the serial bridge of a board build. Raises :class:`DoesNotFitError`."""
    device = get_device(device)
    family = device.family
    clock = float(freq_mhz) if freq_mhz is not None else TYPICAL_CLOCK_MHZ[family]
    if not clock > 0:
        raise ValueError(f"freq_mhz ({freq_mhz!r}) must be positive")
    if target_fps is not None and not target_fps > 0:
        raise ValueError(f"target_fps ({target_fps!r}) must be positive")
    dense = lower(model, with_scores=with_scores).layers
    fixed = _fixed(model, with_scores)
    intervals = _intervals(dense)
    where = " with the serial bridge" if board else ""
    cache = {}

    def best_at(t):
        """(fits, usage, layer foldings) of the cheapest combination at interval ``t``, its fit
        checked again on the whole compiled plan."""
        if t not in cache:
            fits, usage, layers = _best_combination(dense, t, device, fixed, board)
            if fits:
                usage = _usage(_estimate(model, Folding(layers), with_scores, board, family),
                               device)
                fits = all(used <= available for _, used, available in usage)
            cache[t] = (fits, usage, layers)
        return cache[t]

    if target_fps is not None:
        limit = math.floor(clock * 1e6 / target_fps)
        reachable = [t for t in intervals if t <= limit]
        if not reachable:
            raise DoesNotFitError(
                f"{target_fps:,.0f} frames/s at {clock:g} MHz needs an interval of at most "
                f"{limit} cycles; the fastest this network can have is {intervals[0]} cycles "
                f"({clock * 1e6 / intervals[0]:,.0f} frames/s)")
        chosen = reachable[-1]  # the slowest interval that is fast enough is the cheapest
        fits, usage, _ = best_at(chosen)
        if not fits:
            raise DoesNotFitError(
                f"no folding{where} reaches {target_fps:,.0f} frames/s on the {device.name} at "
                f"{clock:g} MHz: at an interval of {chosen} cycles it is short of "
                f"{_short(usage)}")
    else:
        # The fastest interval with a combination that fits. (Cost does not fall monotonically
        # with the interval: fully folded layers need deep, narrow memories that waste block
        # RAM; so every interval is tried, fastest first.)
        chosen, closest = None, None
        for t in intervals:
            fits, usage, _ = best_at(t)
            if fits:
                chosen = t
                break
            score = max(used / available for _, used, available in usage)
            if closest is None or score < closest[0]:
                closest = (score, t, usage)
        if chosen is None:
            bits = sum(op.weights.size for op in dense if hasattr(op, "weights"))
            raise DoesNotFitError(
                f"the network does not fit the {device.name}{where} at any folding; the "
                f"closest (interval {closest[1]:,} cycles) is short of {_short(closest[2])} "
                f"(its weights are {bits:,} bits; the device has {device.bram_total_bits:,} "
                f"bits of block RAM)")
    folding = Folding(best_at(chosen)[2])
    estimate = _estimate(model, folding, with_scores, board, family)
    return AutoFolding(folding, device.name, compile_plan(model, folding).ii, estimate, board,
                       clock, _usage(estimate, device))


def _estimate(model, folding, with_scores, board, family):
    plan = compile_plan(model, folding, with_scores=with_scores)
    estimate = plan.resources()
    if board:
        first = plan.layers[0]
        estimate += bridge_resources(first.in_features, _in_lanes(first, first.layer_folding),
                                     family)
    return estimate


def _in_lanes(op, entry) -> int:
    """Elements per input beat of ``op`` folded by ``entry``: its SIMD, or a convolution's C
    where SIMD is ``m*C`` (the serial bridge sends that many pixels a beat)."""
    folded = op.folded(entry)
    return folded.in_features // folded.input_beats


def _best_combination(dense, t, device, fixed, board):
    """(fits, usage, layer foldings) of the cheapest combination of the layers' candidates at
    interval ``t``: a dynamic program over the layers whose state is the block RAMs used so far
    (the device's count, one bucket for more) and the last layer's PE (the converter to the next
    layer depends on it), keeping per state the combination of fewest logic cells (LUT4s, and on
    iCE40 the cells its flip-flops take). Exact for the trade between logic and block RAM that
    decides most fits; among the final states that fit, the one of fewest logic cells (then
    block RAMs) is kept, and where none fits the one of lowest peak utilization (for the
    message)."""
    family = device.family
    options = [_candidates(op, t, family) for op in dense]
    limit = device.brams

    def cells(res):
        return ice40_logic_cells(res) if family == "ice40" else res.luts(family)

    states = {}                      # (block RAMs, last PE) -> (cells, Resources, foldings)

    def offer(table, res, layers):
        key = (min(res.brams(family), limit + 1), layers[-1].pe)
        c = cells(res)
        if key not in table or c < table[key][0]:
            table[key] = (c, res, layers)

    for lf, res in options[0]:
        total = fixed + res
        if board:
            total += bridge_resources(dense[0].in_features, _in_lanes(dense[0], lf), family)
        offer(states, total, (lf,))
    for i in range(1, len(dense)):
        step = {}
        widths = [dense[i].folded(lf).in_width for lf, _ in options[i]]
        for _, total, layers in states.values():
            pe = layers[-1].pe
            for (lf, res), width in zip(options[i], widths, strict=True):
                res = total + res
                if pe != width:
                    res += ConverterOp(after=i - 1, frame_bits=dense[i - 1].out_features,
                                       in_width=pe, out_width=width).resources()
                offer(step, res, (*layers, lf))
        states = step
    best = None
    for c, total, layers in states.values():
        usage = _usage(total, device)
        fits = all(used <= available for _, used, available in usage)
        # fitting: the fewest logic cells (then block RAMs); else the lowest peak utilization
        rank = ((c, total.brams(family)) if fits
                else (max(used / available for _, used, available in usage),))
        if best is None or (not fits, rank) < (not best[0], best[1]):
            best = (fits, rank, usage, layers)
    return best[0], best[2], best[3]

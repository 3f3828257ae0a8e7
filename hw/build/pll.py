"""PLL parameters, searched in pure Python as icepll and ecppll compute them, except that the
frequency chosen is the highest one not above the one asked for (icepll and ecppll take the
closest, above or below)."""

from __future__ import annotations

import math
from collections.abc import Callable
from fractions import Fraction

import numpy as np

from xnorflow.hw.tops.board import PllConfig

__all__ = ["Accept", "ecp5_pll", "ice40_pll", "pll_config"]


# iCE40 SB_PLL40 (iCE40 sysCLOCK PLL guide; icepll): simple feedback, f_pfd = f_in / (DIVR + 1),
# f_vco = f_pfd * (DIVF + 1), f_out = f_vco / 2**DIVQ.
_ICE40_PFD = (10, 133)
_ICE40_VCO = (533, 1066)
_ICE40_OUT = (16, 275)
# ECP5 EHXPLLL (ecppll): f_pfd = f_in / CLKI_DIV, f_out = f_pfd * CLKFB_DIV (CLKOP fed back),
# f_vco = f_out * CLKOP_DIV.
_ECP5_PFD = (Fraction(3125, 1000), 400)
_ECP5_VCO = (400, 800)
_ECP5_OUT = (10, 400)

# A requested frequency given as a float (e.g. a reported achieved frequency) may be a hair
# below the exact rational it was printed from; candidates this close above still count.
_TOLERANCE = Fraction(1, 10**9)

Accept = Callable[[Fraction], bool]


def _limit(requested: float) -> Fraction:
    if not isinstance(requested, (int, float)) or isinstance(requested, bool) \
            or not requested > 0 or not math.isfinite(requested):
        raise ValueError(f"PLL output frequency ({requested!r}) must be a positive number of MHz")
    return Fraction(requested) * (1 + _TOLERANCE)


def _no_setting(primitive: str, f_in_mhz: float, f_out_mhz: float, out_range,
                accept: Accept | None) -> ValueError:
    return ValueError(f"No {primitive} setting makes {f_out_mhz:g} MHz or less from "
                      f"{f_in_mhz:g} MHz (output {out_range[0]}-{out_range[1]} MHz)"
                      + (" that suits the baud rate" if accept is not None else ""))


def _ice40_filter_range(f_pfd: Fraction) -> int:
    """icepll's FILTER_RANGE for a phase-detector frequency (MHz)."""
    for bound, value in ((17, 1), (26, 2), (44, 3), (66, 4), (101, 5)):
        if f_pfd < bound:
            return value
    return 6


def ice40_pll(f_in_mhz: float, f_out_mhz: float, *, accept: Accept | None = None) -> PllConfig:
    """The ``SB_PLL40`` setting (simple feedback) whose output is the highest frequency not above
    ``f_out_mhz`` (and, with ``accept``, for which ``accept(f_out)`` holds, ``f_out`` an exact
    ``Fraction`` of MHz); ties go to the first setting in icepll's search order (DIVR, DIVF, DIVQ
    ascending). Phase detector 10-133 MHz, VCO 533-1066 MHz, output 16-275 MHz."""
    limit = _limit(f_out_mhz)
    f_in = Fraction(f_in_mhz)
    best = None
    for divr in range(16):
        f_pfd = f_in / (divr + 1)
        if not _ICE40_PFD[0] <= f_pfd <= _ICE40_PFD[1]:
            continue
        for divf in range(128):
            f_vco = f_pfd * (divf + 1)
            if not _ICE40_VCO[0] <= f_vco <= _ICE40_VCO[1]:
                continue
            for divq in range(1, 7):
                f_out = f_vco / 2**divq
                if not _ICE40_OUT[0] <= f_out <= _ICE40_OUT[1] or f_out > limit:
                    continue
                if best is not None and f_out <= best[0]:
                    continue
                if accept is not None and not accept(f_out):
                    continue
                best = (f_out, f_vco, f_pfd, divr, divf, divq)
    if best is None:
        raise _no_setting("SB_PLL40", f_in_mhz, f_out_mhz, _ICE40_OUT, accept)
    f_out, f_vco, f_pfd, divr, divf, divq = best
    return PllConfig("ice40", float(f_in), float(f_out), float(f_vco), float(f_pfd),
                     {"DIVR": divr, "DIVF": divf, "DIVQ": divq,
                      "FILTER_RANGE": _ice40_filter_range(f_pfd)})


def _ecp5_cphase(f_out: Fraction, f_vco: Fraction) -> int:
    """ecppll's CLKOP_CPHASE (a 180 degree shift of CLKOP), with its float arithmetic: the
    frequencies are single precision, the half period a float, the product truncated."""
    fout, fvco = float(np.float32(float(f_out))), float(np.float32(float(f_vco)))
    ns_phase = float(np.float32(1 / (fout * 1e6) * 0.5))
    return int(ns_phase * (fvco * 1e6))


def ecp5_pll(f_in_mhz: float, f_out_mhz: float, *, accept: Accept | None = None) -> PllConfig:
    """The ``EHXPLLL`` setting (``CLKOP`` fed back) whose output is the highest frequency not
    above ``f_out_mhz`` (and, with ``accept``, for which ``accept(f_out)`` holds); among equal
    outputs the one with the VCO closest to 600 MHz, then the first in ecppll's search order
    (CLKI_DIV, CLKFB_DIV, CLKOP_DIV ascending). Phase detector 3.125-400 MHz, VCO 400-800 MHz,
    output 10-400 MHz; CLKOP_CPHASE as ecppll sets it."""
    limit = _limit(f_out_mhz)
    f_in = Fraction(f_in_mhz)
    best = None
    for clki_div in range(1, 129):
        f_pfd = f_in / clki_div
        if not _ECP5_PFD[0] <= f_pfd <= _ECP5_PFD[1]:
            continue
        for clkfb_div in range(1, 81):
            f_out = f_pfd * clkfb_div
            if not _ECP5_OUT[0] <= f_out <= _ECP5_OUT[1] or f_out > limit:
                continue
            if best is not None and f_out < best[0]:
                continue
            if accept is not None and not accept(f_out):
                continue
            for clkop_div in range(1, 129):
                f_vco = f_out * clkop_div
                if not _ECP5_VCO[0] <= f_vco <= _ECP5_VCO[1]:
                    continue
                if best is not None and f_out == best[0] \
                        and abs(f_vco - 600) >= abs(best[1] - 600):
                    continue
                best = (f_out, f_vco, f_pfd, clki_div, clkfb_div, clkop_div)
    if best is None:
        raise _no_setting("EHXPLLL", f_in_mhz, f_out_mhz, _ECP5_OUT, accept)
    f_out, f_vco, f_pfd, clki_div, clkfb_div, clkop_div = best
    return PllConfig("ecp5", float(f_in), float(f_out), float(f_vco), float(f_pfd),
                     {"CLKI_DIV": clki_div, "CLKFB_DIV": clkfb_div, "CLKOP_DIV": clkop_div,
                      "CLKOP_CPHASE": _ecp5_cphase(f_out, f_vco)})


def pll_config(family: str, f_in_mhz: float, f_out_mhz: float, *,
               accept: Accept | None = None) -> PllConfig:
    """:func:`ice40_pll` or :func:`ecp5_pll` for ``family``."""
    if family == "ice40":
        return ice40_pll(f_in_mhz, f_out_mhz, accept=accept)
    if family == "ecp5":
        return ecp5_pll(f_in_mhz, f_out_mhz, accept=accept)
    raise ValueError(f"Unknown FPGA family {family!r}")

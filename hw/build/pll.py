"""PLL parameters, searched in pure Python as icepll and ecppll compute them, except that the
frequency chosen is the highest one not above the one asked for (icepll and ecppll take the
closest, above or below).

The PLL's main output is the accelerator's clock, chosen from the accelerator's target alone.
The serial bridge runs on a second, slower clock (:attr:`PllConfig.bridge_mhz`) that never sets
the accelerator's: on the iCE40UP5K (one PLL, ``SB_PLL40_2_PAD``) it is the oscillator itself,
passed through the PLL's port A; on the ECP5 it is the ``EHXPLLL``'s second output ``CLKOS``
(``f_vco / CLKOS_DIV``), where, among the settings that give the accelerator's frequency, the
VCO and ``CLKOS_DIV`` are chosen for the bridge's bit rate (:func:`ecp5_pll`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from fractions import Fraction

import numpy as np

from xnorflow.hw.blocks.uart import UARTRx
from xnorflow.hw.tops.board import PllConfig
from xnorflow.hw.tops.bridge import MAX_BAUD_ERROR

__all__ = ["BRIDGE_MHZ", "ROBUST_DIVISOR", "Accept", "ecp5_pll", "ice40_pll", "pll_config"]

#: The range of an ECP5 bridge clock (``CLKOS``), MHz: slow enough that the bridge's logic closes
#: timing with room to spare, fast enough for a robust UART divisor at a few Mbaud.
BRIDGE_MHZ = (10, 80)
#: UART clock cycles per bit from which the receiver tolerates about 4 % of rate difference
#: (:class:`~xnorflow.hw.blocks.uart.UARTRx`); an ECP5 bridge clock reaching it is preferred.
ROBUST_DIVISOR = 16


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
    # The bridge's clock: the reference itself (SB_PLL40_2_PAD's PLLOUTGLOBALA).
    return PllConfig("ice40", float(f_in), float(f_out), float(f_vco), float(f_pfd),
                     {"DIVR": divr, "DIVF": divf, "DIVQ": divq,
                      "FILTER_RANGE": _ice40_filter_range(f_pfd)}, bridge_mhz=float(f_in))


def _ecp5_cphase(f_out: Fraction, f_vco: Fraction) -> int:
    """ecppll's CLKOP_CPHASE (a 180 degree shift of CLKOP), with its float arithmetic: the
    frequencies are single precision, the half period a float, the product truncated."""
    fout, fvco = float(np.float32(float(f_out))), float(np.float32(float(f_vco)))
    ns_phase = float(np.float32(1 / (fout * 1e6) * 0.5))
    return int(ns_phase * (fvco * 1e6))


def _baud_error(f_mhz: Fraction, baud: int) -> tuple[int, Fraction]:
    divisor = round(f_mhz * 10**6 / baud)
    if divisor < UARTRx.MIN_DIVISOR:
        return divisor, Fraction(10**9)
    return divisor, abs(f_mhz * 10**6 / divisor - baud) / baud


def ecp5_pll(f_in_mhz: float, f_out_mhz: float, *, accept: Accept | None = None,
             bridge_baud: int | None = None) -> PllConfig:
    """The ``EHXPLLL`` setting (``CLKOP`` fed back) whose output is the highest frequency not
    above ``f_out_mhz`` (and, with ``accept``, for which ``accept(f_out)`` holds); among equal
    outputs the one with the VCO closest to 600 MHz, then the first in ecppll's search order
    (CLKI_DIV, CLKFB_DIV, CLKOP_DIV ascending). Phase detector 3.125-400 MHz, VCO 400-800 MHz,
    output 10-400 MHz; CLKOP_CPHASE as ecppll sets it.

    With ``bridge_baud``, the second output ``CLKOS`` = ``f_vco / CLKOS_DIV`` is the serial
    bridge's clock (:data:`BRIDGE_MHZ`, not the accelerator's frequency): the output frequency is
    chosen as above, then among the settings that give it, the VCO and ``CLKOS_DIV`` for which
    the UART's rate ``f_bridge / round(f_bridge / bridge_baud)`` is closest to ``bridge_baud``
    (to 0.01 %), then a divisor of at least :data:`ROBUST_DIVISOR`, then the VCO closest to
    600 MHz, then the slowest bridge clock. ``CLKOS_CPHASE`` is ecppll's for phase 0 (that of
    ``CLKOP``). A ``ValueError`` when no ``CLKOS`` is within the bridge's 2 % of the rate."""
    if bridge_baud is not None and (not isinstance(bridge_baud, int)
                                    or isinstance(bridge_baud, bool) or bridge_baud < 1):
        raise ValueError(f"bridge_baud ({bridge_baud!r}) must be a positive integer")
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
    params = {"CLKI_DIV": clki_div, "CLKFB_DIV": clkfb_div, "CLKOP_DIV": clkop_div,
              "CLKOP_CPHASE": _ecp5_cphase(f_out, f_vco)}
    if bridge_baud is None:
        return PllConfig("ecp5", float(f_in), float(f_out), float(f_vco), float(f_pfd), params)
    chosen = None
    for clki_div in range(1, 129):
        f_pfd = f_in / clki_div
        if not _ECP5_PFD[0] <= f_pfd <= _ECP5_PFD[1] or (f_out / f_pfd).denominator != 1:
            continue
        clkfb_div = int(f_out / f_pfd)
        if not 1 <= clkfb_div <= 80:
            continue
        for clkop_div in range(1, 129):
            f_vco = f_out * clkop_div
            if not _ECP5_VCO[0] <= f_vco <= _ECP5_VCO[1]:
                continue
            for clkos_div in range(1, 129):
                f_bridge = f_vco / clkos_div
                if not BRIDGE_MHZ[0] <= f_bridge <= BRIDGE_MHZ[1] or f_bridge == f_out:
                    continue
                divisor, error = _baud_error(f_bridge, bridge_baud)
                key = (round(error, 4), divisor < ROBUST_DIVISOR, abs(f_vco - 600), f_bridge)
                if chosen is None or key < chosen[0]:
                    chosen = (key, error, f_bridge, f_vco, f_pfd, clki_div, clkfb_div,
                              clkop_div, clkos_div)
    if chosen is None or chosen[1] > MAX_BAUD_ERROR:
        raise ValueError(f"No EHXPLLL CLKOS ({BRIDGE_MHZ[0]}-{BRIDGE_MHZ[1]} MHz) beside "
                         f"{float(f_out):g} MHz from {f_in_mhz:g} MHz carries {bridge_baud} baud "
                         f"within {MAX_BAUD_ERROR:.0%}")
    _, _, f_bridge, f_vco, f_pfd, clki_div, clkfb_div, clkop_div, clkos_div = chosen
    cphase = _ecp5_cphase(f_out, f_vco)
    params = {"CLKI_DIV": clki_div, "CLKFB_DIV": clkfb_div, "CLKOP_DIV": clkop_div,
              "CLKOP_CPHASE": cphase, "CLKOS_DIV": clkos_div, "CLKOS_CPHASE": cphase}
    return PllConfig("ecp5", float(f_in), float(f_out), float(f_vco), float(f_pfd), params,
                     bridge_mhz=float(f_bridge))


def pll_config(family: str, f_in_mhz: float, f_out_mhz: float, *,
               accept: Accept | None = None, bridge_baud: int | None = None) -> PllConfig:
    """:func:`ice40_pll` or :func:`ecp5_pll` for ``family``; ``bridge_baud`` (ECP5 only; the
    iCE40's bridge clock is always the oscillator) as for :func:`ecp5_pll`."""
    if family == "ice40":
        return ice40_pll(f_in_mhz, f_out_mhz, accept=accept)
    if family == "ecp5":
        return ecp5_pll(f_in_mhz, f_out_mhz, accept=accept, bridge_baud=bridge_baud)
    raise ValueError(f"Unknown FPGA family {family!r}")

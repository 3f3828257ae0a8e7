"""Capacity table of the FPGAs xnorflow targets, and how the open toolchain names them.

One :class:`Device` per supported part. The capacities are the totals that nextpnr itself reports
(the ``available`` figures of its ``--report`` JSON, per cell type) for the named package, so a
utilization report and this table always agree; ``tests/test_synth.py`` checks them against
recorded reports and against the real tools.

=============  =======  =======  ==========  ========  ======  ===========  =====
device         LUT4     FF       block RAM   bits      DSP     package      speed
=============  =======  =======  ==========  ========  ======  ===========  =====
iCE40UP5K        5,280    5,280  30 EBR      4 kbit    8       SG48         --
LFE5U-25F       24,288   24,288  56 DP16KD   18 kbit   28      CABGA381     6
LFE5U-45F       43,848   43,848  108 DP16KD  18 kbit   72      CABGA381     6
LFE5U-85F       83,640   83,640  208 DP16KD  18 kbit   156     CABGA381     6
=============  =======  =======  ==========  ========  ======  ===========  =====

Notes
    * iCE40: a logic cell (``ICESTORM_LC``) holds one LUT4, one flip-flop and a carry; LUTs and
      flip-flops share the 5,280 cells. DSPs are ``SB_MAC16`` (16x16); the UP5K also has 4
      ``SB_SPRAM256KA`` (256 kbit, single-port, no initial contents). SG48 is the iCEBreaker's
      package; nextpnr counts 39 I/O sites in it.
    * ECP5: ``TRELLIS_COMB`` sites are LUT4s (a ``CCU2C`` carry cell uses two), ``TRELLIS_FF``
      flip-flops; DSPs are ``MULT18X18D`` multipliers. CABGA381 is the ULX3S package and 6 its
      speed grade (the slowest, the timing nextpnr analyses).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DEVICES", "Device", "get_device"]


@dataclass(frozen=True)
class Device:
    """One FPGA part and package: capacities and the names the tools use for it.

    ``luts``, ``ffs``, ``brams``, ``dsps`` are the totals nextpnr reports for the cell types in
    ``lut_cell``, ``ff_cell``, ``bram_cell`` and ``dsp_cell``; ``bram_bits`` is the capacity of one
    block RAM in bits, ``spram`` the number of single-port RAMs (iCE40UP5K) and ``spram_bits``
    the capacity of one. ``family`` is ``"ice40"`` or ``"ecp5"``; ``nextpnr_args`` select the
    part and package on the nextpnr command line.
    """

    name: str
    family: str
    luts: int
    ffs: int
    brams: int
    bram_bits: int
    dsps: int
    package: str
    speed: int | None
    nextpnr_args: tuple[str, ...]
    lut_cell: str
    ff_cell: str
    bram_cell: str
    dsp_cell: str
    spram: int = 0
    spram_bits: int = 0
    io: int = 0

    @property
    def bram_total_bits(self) -> int:
        """Block RAM capacity of the whole device in bits."""
        return self.brams * self.bram_bits

    @property
    def nextpnr(self) -> str:
        """The nextpnr program (YoWASP build) for this family."""
        return f"yowasp-nextpnr-{self.family}"


_UP5K = Device(
    name="iCE40UP5K", family="ice40",
    luts=5280, ffs=5280, brams=30, bram_bits=4096, dsps=8,
    package="sg48", speed=None, nextpnr_args=("--up5k", "--package", "sg48"),
    lut_cell="ICESTORM_LC", ff_cell="ICESTORM_LC", bram_cell="ICESTORM_RAM",
    dsp_cell="ICESTORM_DSP", spram=4, spram_bits=256 * 1024, io=39,
)


def _ecp5(size: int, luts: int, brams: int, dsps: int, io: int) -> Device:
    return Device(
        name=f"LFE5U-{size}F", family="ecp5",
        luts=luts, ffs=luts, brams=brams, bram_bits=18 * 1024, dsps=dsps,
        package="CABGA381", speed=6,
        nextpnr_args=(f"--{size}k", "--package", "CABGA381", "--speed", "6"),
        lut_cell="TRELLIS_COMB", ff_cell="TRELLIS_FF", bram_cell="DP16KD",
        dsp_cell="MULT18X18D", io=io,
    )


#: The supported devices by canonical name.
DEVICES: dict[str, Device] = {
    device.name: device
    for device in (
        _UP5K,
        _ecp5(25, luts=24288, brams=56, dsps=28, io=197),
        _ecp5(45, luts=43848, brams=108, dsps=72, io=245),
        _ecp5(85, luts=83640, brams=208, dsps=156, io=365),
    )
}

_ALIASES = {
    "up5k": "iCE40UP5K", "ice40up5k": "iCE40UP5K", "ice40-up5k": "iCE40UP5K",
    "25k": "LFE5U-25F", "ecp5-25f": "LFE5U-25F", "lfe5u-25f": "LFE5U-25F",
    "45k": "LFE5U-45F", "ecp5-45f": "LFE5U-45F", "lfe5u-45f": "LFE5U-45F",
    "85k": "LFE5U-85F", "ecp5-85f": "LFE5U-85F", "lfe5u-85f": "LFE5U-85F",
}


def get_device(device: str | Device) -> Device:
    """The :class:`Device` named ``device`` (canonical name or alias, any case: ``"up5k"``,
    ``"ecp5-85f"``, ``"LFE5U-85F"``, ...); a :class:`Device` is returned as it is."""
    if isinstance(device, Device):
        return device
    if not isinstance(device, str):
        raise TypeError(f"Device must be a name or a Device, not {device!r}")
    name = _ALIASES.get(device.strip().lower(), device.strip())
    for canonical, entry in DEVICES.items():
        if canonical.lower() == name.lower():
            return entry
    known = ", ".join(DEVICES)
    raise ValueError(f"Unknown device {device!r}; known devices: {known}")

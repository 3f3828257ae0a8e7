"""The resource model: LUT4s, flip-flops and block RAMs of a plan's blocks on iCE40 and ECP5.

:class:`Resources` per op from PE, SIMD and memory shapes, for LUT4 devices (iCE40, ECP5). Block
RAMs are exact (every memory's mapping is stated by :mod:`xnorflow.hw.compiler.rules`); LUT4s come
from :data:`LUT_MODEL`, fitted by least squares to Yosys' counts of the calibration blocks
(``python -m xnorflow.hw.build.calibrate``, which also reports the model's error on the reference
builds); flip-flops from the registers' widths.
"""

from __future__ import annotations

from dataclasses import dataclass

from xnorflow.hw.compiler.rules import POPCOUNT_GROUP, bridge_buffer_style

__all__ = ["BRIDGE_FFS", "BRIDGE_LUTS", "FAMILIES", "LUT_MODEL", "Resources", "counter_bits",
           "bram_blocks", "bridge_resources", "mux_luts", "popcount_ff", "tree_ff"]

#: iCE40: Yosys keeps FIFO memories up to this many words in flip-flops (beyond, block RAM).
FIFO_LOGIC_MAX_WORDS = 8


def counter_bits(n):
    """Bits of a counter over ``range(n)`` (at least 1)."""
    return max(1, (n - 1).bit_length())


# --- Resources ----------------------------------------------------------------------------------

FAMILIES = ("ice40", "ecp5")
# Block RAM configurations (depth, width) that Yosys uses for a memory with one read and at most
# one write port: iCE40 SB_RAM40_4K (4 kbit) and ECP5 DP16KD (18 kbit).
_BRAM_CONFIGS = {
    "ice40": ((256, 16), (512, 8), (1024, 4), (2048, 2)),
    "ecp5": ((512, 36), (1024, 18), (2048, 9), (4096, 4), (8192, 2), (16384, 1)),
}


def bram_blocks(depth: int, width: int, family: str) -> int:
    """Block RAMs of ``family`` for a ``depth x width`` memory marked ``ram_style = "block"``:
    the fewest over the block's configurations, as Yosys' ``memory_libmap`` chooses them. A
    configuration may also hold ``k`` (a power of two) consecutive words in one of its words,
    the low address bits choosing among them, where ``k x width`` fits its width: how Yosys puts
    a 2,880 x 1 weight memory in one iCE40 block (2048 x 2), which has no 4096 x 1 mode."""
    best = None
    for d, w in _BRAM_CONFIGS[family]:
        k = 1
        while k * width <= w or k == 1:
            blocks = -(-depth // (d * k)) * -(-(width * k) // w)
            best = blocks if best is None else min(best, blocks)
            k *= 2
    return best


def _rom_luts(words):
    """LUT4s per output bit of a constant table of ``words`` words in logic (a LUT per 16 words
    and a multiplexer tree), before calibration."""
    return 0 if words <= 1 else 1 if words <= 16 else 2 * -(-words // 16) - 1


def mux_luts(words):
    """LUT4s per output bit of a ``words``:1 read multiplexer (two words per LUT4 and level)."""
    return max(0, words - 1)


#: The calibrated LUT model, per family: LUT4s per binary (XNOR + popcount) lane, per 8-bit lane
#: (``pix``: paired, several PEs; ``pix1``: one PE or a score layer) and per shared lane pair of
#: an 8-bit layer, per accumulator bit, per processing element, per unit, and the factors on the
#: logic tables (``rom``: constant tables, ``mux``: the input buffer's read multiplexer), and the
#: factors on the uncalibrated counts of a sliding-window generator (``win``: its line buffer's
#: read multiplexer and its control) and of a bit max-pool (``pool``). Fitted by least squares to
#: Yosys' counts of the blocks of ``python -m xnorflow.hw.build.calibrate``.
LUT_MODEL = {
    "ice40": {"bin": 1.571, "pix": 12.973, "pix1": 25.437, "pair": 35.428, "acc": 0.0,
              "pe": 12.963, "unit": 131.037, "rom": 1.055, "mux": 1.044, "win": 0.879,
              "pool": 0.943},
    "ecp5": {"bin": 1.762, "pix": 12.57, "pix1": 28.237, "pair": 53.813, "acc": 0.0,
             "pe": 17.207, "unit": 34.092, "rom": 1.05, "mux": 1.297, "win": 0.881,
             "pool": 1.027},
}


@dataclass(frozen=True)
class Resources:
    """A resource estimate: LUT4s (iCE40 and ECP5 count differently: an ECP5 carry cell is two
    LUT4s, an iCE40 carry is free), flip-flops, block RAM bits and blocks (iCE40 4-kbit EBRs,
    ECP5 18-kbit DP16KDs). Block RAMs are exact (every memory's mapping is stated, see
    :func:`xnorflow.hw.compiler.rules.threshold_style`); LUT4s come from the model of
    :data:`LUT_MODEL`,
    calibrated against Yosys; flip-flops from the registers' widths."""

    lut_ice40: int = 0
    lut_ecp5: int = 0
    ff: int = 0
    bram_bits: int = 0
    ice40_ebr: int = 0
    ecp5_dp16kd: int = 0

    @classmethod
    def luts_by(cls, counts, **kwargs) -> Resources:
        """From a ``{family: LUT4s}`` mapping (rounded) and the other fields."""
        return cls(lut_ice40=round(counts["ice40"]), lut_ecp5=round(counts["ecp5"]), **kwargs)

    @classmethod
    def same_luts(cls, luts, **kwargs) -> Resources:
        """The same LUT4 count on both families."""
        return cls(lut_ice40=round(luts), lut_ecp5=round(luts), **kwargs)

    @classmethod
    def calibrated(cls, key, luts, **kwargs) -> Resources:
        """``luts`` uncalibrated LUT4s times the factor ``key`` of :data:`LUT_MODEL` of each
        family, and the other fields."""
        return cls.luts_by({f: LUT_MODEL[f][key] * luts for f in FAMILIES}, **kwargs)

    def __add__(self, other: Resources) -> Resources:
        return Resources(*(a + b for a, b in zip(self.as_tuple(), other.as_tuple(), strict=True)))

    def luts(self, family: str) -> int:
        """LUT4s on ``family`` (``"ice40"`` or ``"ecp5"``)."""
        return self.lut_ice40 if family == "ice40" else self.lut_ecp5

    def brams(self, family: str) -> int:
        """Block RAMs on ``family``: iCE40 EBRs or ECP5 DP16KDs."""
        return self.ice40_ebr if family == "ice40" else self.ecp5_dp16kd

    def as_tuple(self):
        return (self.lut_ice40, self.lut_ecp5, self.ff, self.bram_bits, self.ice40_ebr,
                self.ecp5_dp16kd)

    def to_dict(self) -> dict:
        return {"lut_ice40": self.lut_ice40, "lut_ecp5": self.lut_ecp5, "ff": self.ff,
                "bram_bits": self.bram_bits, "ice40_ebr": self.ice40_ebr,
                "ecp5_dp16kd": self.ecp5_dp16kd}

    @classmethod
    def block_memory(cls, depth, width, copies=1) -> Resources:
        """``copies`` memories of ``depth x width`` in block RAM."""
        return cls(bram_bits=copies * depth * width,
                   ice40_ebr=copies * bram_blocks(depth, width, "ice40"),
                   ecp5_dp16kd=copies * bram_blocks(depth, width, "ecp5"))

    @classmethod
    def logic_rom(cls, depth, width, copies=1) -> Resources:
        """``copies`` constant tables of ``depth x width`` in logic, with their read register."""
        luts = {f: copies * width * _rom_luts(depth) * LUT_MODEL[f]["rom"] for f in FAMILIES}
        return cls.luts_by(luts, ff=copies * width * (depth > 1))

    @classmethod
    def distributed_ram(cls, depth, width) -> Resources:
        """A ``depth x width`` ECP5 LUT RAM with a read register (its iCE40 figure is that of
        :meth:`logic_ram`: iCE40 has no LUT RAM, and a folding that asks for one is refused
        there)."""
        ice40 = cls.logic_ram(depth, width)
        return cls(lut_ice40=ice40.lut_ice40, lut_ecp5=_distributed_luts(depth, width),
                   ff=width)

    @classmethod
    def logic_ram(cls, depth, width) -> Resources:
        """A ``depth x width`` memory in flip-flops with a registered read multiplexer."""
        luts = {f: width * mux_luts(depth) * LUT_MODEL[f]["mux"] + depth for f in FAMILIES}
        return cls.luts_by(luts, ff=depth * width + width)


def _distributed_luts(depth, width):
    """ECP5 LUT RAM: a ``TRELLIS_DPR16X4`` (16 x 4, four LUT4s) per 16 words and 4 bits, and a
    read multiplexer over the 16-word banks."""
    banks = -(-depth // 16)
    return 4 * banks * -(-width // 4) + width * mux_luts(banks)


def bridge_resources(n0: int, simd0: int, family: str, slots: int = 2) -> Resources:
    """The serial bridge of a board build of ``family`` (:class:`~xnorflow.hw.tops.bridge.
    SerialBridge`): ``simd0`` pixels a beat (the first layer's input lanes: its SIMD, or C where a
    convolution's SIMD is ``m*C``); its frame buffer (``slots`` frames of ``N0/SIMD0`` words of
    ``8*SIMD0`` bits, placed by :func:`~xnorflow.hw.tops.bridge.bridge_buffer_style`) and the
    UART and packet engine (a constant, calibrated like :data:`LUT_MODEL`)."""
    depth, width = slots * (n0 // simd0), 8 * simd0
    if bridge_buffer_style(family, depth) == "distributed":
        buffer = Resources.distributed_ram(depth, width)
    else:
        buffer = Resources.block_memory(depth, width)
    return buffer + Resources.luts_by(BRIDGE_LUTS, ff=BRIDGE_FFS)


#: LUT4s and flip-flops of the serial bridge without its frame buffer: UART, packet engine,
#: the clock-domain crossings and the on-device benchmark (cycle counter, CRC-32 of the results,
#: replay control). ECP5: calibrated on the reference builds, Yosys' count of the whole board
#: design minus the model's count of the network (SFC and LFC on the ECP5-85F, whose bridge
#: differs by a few hundred LUT4s with the width of the first layer's input). iCE40: measured,
#: Yosys' count of the whole board design minus its count of the network synthesized alone
#: (``synth_ice40 -top top.bridge.engine.network`` on the build's RTLIL): 1,376 LUT4s and 858
#: flip-flops beside TFC (8 pixels a beat), 1,448 and 919 beside a convolutional network of one
#: pixel a beat.
BRIDGE_LUTS = {"ice40": 1410, "ecp5": 1200}
BRIDGE_FFS = 900




# --- Ops ----------------------------------------------------------------------------------------


def tree_ff(leaves, leaf_width, levels_per_stage):
    """Register bits of a pipelined binary adder tree (registers after every
    ``levels_per_stage`` levels and after the last)."""
    depth = (leaves - 1).bit_length()
    count, total = leaves, 0
    for level in range(1, depth + 1):
        count = -(-count // 2)
        if level % levels_per_stage == 0 or level == depth:
            total += count * (leaf_width + level)
    return total


def popcount_ff(width, levels_per_stage):
    """Register bits of a :class:`~xnorflow.hw.blocks.popcount.Popcount` of ``width`` bits: the
    count of every group of ``POPCOUNT_GROUP`` bits, then the adder tree over the counts."""
    if width == 1:
        return 0
    sizes = [min(POPCOUNT_GROUP, width - start) for start in range(0, width, POPCOUNT_GROUP)]
    groups = sum(size.bit_length() for size in sizes)
    if len(sizes) == 1:
        return groups
    return groups + tree_ff(len(sizes), POPCOUNT_GROUP.bit_length(), levels_per_stage)

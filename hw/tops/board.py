"""The accelerator on a board: the supported boards, the PLL setting and the board top.

The boards are the ``amaranth-boards`` platforms of :data:`BOARDS`:

==============  ===================  ===========  ==============  ==================  ==========
board           platform             device       oscillator      PLL                 link
==============  ===================  ===========  ==============  ==================  ==========
``icebreaker``  ICEBreakerPlatform   iCE40UP5K    12 MHz, pin 35  ``SB_PLL40_2_PAD``  3 Mbaud
``ulx3s-25f``   ULX3S_25F_Platform   LFE5U-25F    25 MHz, G2      ``EHXPLLL``         3 Mbaud
``ulx3s-85f``   ULX3S_85F_Platform   LFE5U-85F    25 MHz, G2      ``EHXPLLL``         3 Mbaud
==============  ===================  ===========  ==============  ==================  ==========

:class:`BoardTop` is the design, in two clock domains:

* ``accel``: the :class:`~xnorflow.hw.tops.network.Network`, on the PLL's main output, as fast as
  the accelerator closes timing (chosen from the accelerator's target alone);
* ``sync``: the :class:`~xnorflow.hw.tops.bridge.SerialBridge` (UART and packet engine, frame
  buffers) on the board's USB serial pins (``uart`` 0), on a slow clock of its own: on the
  iCEBreaker the 12 MHz oscillator itself (the UP5K has one PLL; ``SB_PLL40_2_PAD`` passes its
  reference through on port A and gives the accelerator's clock on port B), on the ULX3S the
  ``EHXPLLL``'s second output ``CLKOS`` (:func:`xnorflow.hw.build.pll.ecp5_pll`).

The two are joined by the bridge's clock-domain crossings (a dual-clock frame buffer and
asynchronous FIFOs; :class:`~xnorflow.hw.tops.bridge.PacketEngine`, Clock domains). Reset is
held until the PLL has locked, then for :data:`POR_SECONDS` (a counter on the bridge's clock),
and while button 0 is pressed; it reaches each domain through a ``ResetSynchronizer`` of its own
(asserted at once, released on that domain's clock). LED 1 blinks (about 1 Hz, a counter of the
accelerator's clock: that clock runs and its reset is released), LED 0 flashes on serial traffic
and is lit steadily while reset is held or when the bridge's ``frame_error`` is set (never,
unless the bridge is faulty). On the iCEBreaker LED 0 is the red LED and LED 1 the green one.

Serial link rates (:data:`DEFAULT_BAUD`, the boards' USB-UART limits where the bridge clock
allows): the ULX3S's FT231X reaches 3 Mbaud, made exactly from a ``CLKOS`` (60 MHz, divisor 20,
beside a 100 MHz accelerator clock). The iCEBreaker's FT2232H reaches 12 Mbaud, but the
UART needs at least 4 clock cycles per bit (48 MHz for 12 Mbaud, 24 MHz for 6 Mbaud), and the
UP5K's only PLL makes the accelerator's clock: its second port can only give the PLL's output,
half of it or a phase-shifted copy, which would tie the link's rate to the accelerator's clock.
So the iCEBreaker's bridge runs on the 12 MHz oscillator at 3 Mbaud, divisor 4: 12 MHz / 4 is
exactly the FT2232H's 3 Mbaud (its 120 MHz / 40), well inside the receiver's tolerance (about
2 % at divisor 4).

The bridge takes BENCH, the on-device benchmark (:mod:`xnorflow.hw.tops.protocol`): the frames
stored in its two frame buffers replayed at the accelerator's rate, timed in ``accel`` cycles
(REPORT's ``clock_hz`` is :attr:`PllConfig.clk_hz`) and checksummed; it adds counters, a CRC-32
and a little control, no memory.

The build (:func:`xnorflow.hw.build.boards.build_board`) finds the PLL setting
(:func:`xnorflow.hw.build.pll.pll_config`) and runs the tools.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from amaranth.hdl import (
    ClockDomain,
    ClockSignal,
    Elaboratable,
    Instance,
    Module,
    Signal,
)
from amaranth.lib import io
from amaranth.lib.cdc import FFSynchronizer, ResetSynchronizer
from amaranth_boards.icebreaker import ICEBreakerPlatform
from amaranth_boards.ulx3s import ULX3S_25F_Platform, ULX3S_85F_Platform

from xnorflow.hw.blocks.uart import UARTRx
from xnorflow.hw.compiler.devices import get_device
from xnorflow.hw.compiler.rules import bridge_buffer_style
from xnorflow.hw.tops.bridge import MAX_BAUD_ERROR, NETWORK_DOMAIN, SerialBridge
from xnorflow.hw.tops.network import Network

__all__ = ["BOARDS", "BOARD_TOP_NAME", "DEFAULT_BAUD", "POR_SECONDS", "Board", "BoardTop",
           "PllConfig", "baud_error", "get_board", "uart_baud"]


#: Reset is held this long after the PLL locks: iCE40 block RAMs read as zeroes for about 3 us
#: after configuration (Amaranth's iCE40 platform waits 15 us for the same reason).
POR_SECONDS = 20e-6

#: The board design's top module (and file) name.
BOARD_TOP_NAME = "top"


# --- boards ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Board:
    """A board of :data:`BOARDS`: its ``amaranth-boards`` platform class, its FPGA (a
    :class:`~xnorflow.hw.compiler.devices.Device` name), its oscillator (platform resource
    ``clock``,
    ``clock_mhz``), the PLL target of an automatic build (``default_mhz``) and the serial link's
    default bit rate (``default_baud``)."""

    name: str
    platform: type
    device: str
    clock: str
    clock_mhz: int
    default_mhz: float
    #: The serial link's default bit rate (see the module docstring).
    default_baud: int

    @property
    def family(self) -> str:
        return get_device(self.device).family

    @property
    def bitstream_name(self) -> str:
        """The bitstream's file name: ``top.bin`` (iCE40) or ``top.bit`` (ECP5)."""
        return f"{BOARD_TOP_NAME}.bin" if self.family == "ice40" else f"{BOARD_TOP_NAME}.bit"


#: The supported boards by name.
BOARDS: dict[str, Board] = {
    "icebreaker": Board("icebreaker", ICEBreakerPlatform, "iCE40UP5K", "clk12", 12, 30.0,
                        3_000_000),
    "ulx3s-25f": Board("ulx3s-25f", ULX3S_25F_Platform, "LFE5U-25F", "clk25", 25, 100.0,
                       3_000_000),
    "ulx3s-85f": Board("ulx3s-85f", ULX3S_85F_Platform, "LFE5U-85F", "clk25", 25, 100.0,
                       3_000_000),
}

#: The serial link's default bit rate per board (:attr:`Board.default_baud`).
DEFAULT_BAUD: dict[str, int] = {name: board.default_baud for name, board in BOARDS.items()}


def get_board(board: str | Board) -> Board:
    """The :class:`Board` named ``board`` (any case); a :class:`Board` is returned as it is."""
    if isinstance(board, Board):
        return board
    if not isinstance(board, str):
        raise TypeError(f"Board must be a name or a Board, not {board!r}")
    found = BOARDS.get(board.strip().lower())
    if found is None:
        raise ValueError(f"Unknown board {board!r}; known boards: {', '.join(BOARDS)}")
    return found


# --- the PLL setting ------------------------------------------------------------------------------


@dataclass(frozen=True)
class PllConfig:
    """A PLL setting: ``family``, input, output (achieved: the accelerator's clock), VCO and
    phase-detector frequencies in MHz, the primitive's ``params`` (``DIVR``, ``DIVF``, ``DIVQ``,
    ``FILTER_RANGE`` of ``SB_PLL40_*`` in simple feedback mode; ``CLKI_DIV``, ``CLKFB_DIV``,
    ``CLKOP_DIV``, ``CLKOP_CPHASE`` of ``EHXPLLL`` with ``CLKOP`` fed back, and ``CLKOS_DIV``,
    ``CLKOS_CPHASE`` of its bridge output) and the serial bridge's clock ``bridge_mhz`` (iCE40:
    the input, passed through; ECP5: ``CLKOS``; None: no bridge clock chosen)."""

    family: str
    f_in_mhz: float
    f_out_mhz: float
    f_vco_mhz: float
    f_pfd_mhz: float
    params: dict[str, int]
    bridge_mhz: float | None = None

    @property
    def clk_hz(self) -> int:
        """The accelerator's clock in Hz, rounded to an integer."""
        return round(self.f_out_mhz * 1e6)

    @property
    def bridge_hz(self) -> int | None:
        """The bridge's clock in Hz, rounded to an integer (what the UART divisor uses)."""
        return None if self.bridge_mhz is None else round(self.bridge_mhz * 1e6)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# --- the UART's bit rate -------------------------------------------------------------------------


def baud_error(clk_hz: int, baud: int) -> tuple[int, float]:
    divisor = round(clk_hz / baud)
    if divisor < UARTRx.MIN_DIVISOR:
        return divisor, math.inf
    return divisor, abs(clk_hz / divisor - baud) / baud


def uart_baud(clk_hz: int, baud: int) -> int:
    """The bit rate the bridge runs at for ``baud`` asked at ``clk_hz``: ``baud`` itself when it
    passes the bridge's check (``clk_hz / round(clk_hz / baud)`` within 2 % of it), else the
    nearest rate that does, ``round(clk_hz / divisor)`` for the nearest usable divisor."""
    if not isinstance(baud, int) or isinstance(baud, bool) or baud < 1:
        raise ValueError(f"baud ({baud!r}) must be a positive integer")
    divisor, error = baud_error(clk_hz, baud)
    if error <= MAX_BAUD_ERROR:
        return baud
    return round(clk_hz / max(divisor, UARTRx.MIN_DIVISOR))


# --- the design -----------------------------------------------------------------------------------


class BoardTop(Elaboratable):
    """The accelerator on a board (see the module docstring): PLL, reset, serial bridge, LEDs.

    Parameters
    ----------
    network : Network
        The accelerator.
    board : str or Board
        A board of :data:`BOARDS`.
    pll : PllConfig
        The PLL setting (of the board's family, for its oscillator, with its bridge clock): the
        ``accel`` clock (:attr:`PllConfig.f_out_mhz`) and the ``sync`` clock
        (:attr:`PllConfig.bridge_mhz`).
    baud : int or None
        The serial link's bit rate (None: the board's :attr:`Board.default_baud`); must pass the
        bridge's check at ``pll.bridge_hz`` (see :func:`uart_baud`).
    model_hash : bytes or None
        As for :class:`~xnorflow.hw.tops.bridge.SerialBridge`.
    bench : bool
        The bridge takes BENCH, the on-device benchmark (default True); False leaves its
        counters and CRC out, for a design that does not fit with them.

    Pins: the oscillator, ``uart`` 0 (``rx``, ``tx``), ``button`` 0 (reset while pressed),
    ``led`` 0 (serial traffic; steady: in reset or ``frame_error``) and ``led`` 1 (heartbeat).
    """

    def __init__(self, network: Network, board: str | Board, pll: PllConfig, *,
                 baud: int | None = None, model_hash: bytes | None = None, bench: bool = True):
        self._board = get_board(board)
        if not isinstance(pll, PllConfig):
            raise TypeError(f"pll must be a PllConfig, not {pll!r}")
        if pll.family != self._board.family or pll.f_in_mhz != self._board.clock_mhz:
            raise ValueError(f"PLL setting for {pll.family} from {pll.f_in_mhz:g} MHz does not "
                             f"suit the {self._board.name} ({self._board.family}, "
                             f"{self._board.clock_mhz} MHz oscillator)")
        if pll.bridge_mhz is None or (pll.family == "ice40" and pll.bridge_mhz != pll.f_in_mhz):
            raise ValueError(f"PLL setting has no bridge clock for the {self._board.name} (the "
                             "iCE40's is the oscillator; an ECP5's a CLKOS: pll_config(..., "
                             "bridge_baud=...))")
        self._pll = pll
        if not isinstance(network, Network):
            raise TypeError(f"network ({network!r}) must be a xnorflow.hw.tops.network.Network")
        if baud is None:
            baud = self._board.default_baud
        divisor, error = baud_error(pll.bridge_hz, baud) if isinstance(baud, int) else (0, 0.0)
        if error > MAX_BAUD_ERROR:
            raise ValueError(f"baud ({baud}) is {error:.1%} off the bridge clock / {divisor} at "
                             f"{pll.bridge_mhz:g} MHz (at most {MAX_BAUD_ERROR:.0%}); the nearest "
                             f"rate that works: {uart_baud(pll.bridge_hz, baud)}")
        self._network = network
        self._baud = baud
        self._model_hash = model_hash
        if not isinstance(bench, bool):
            raise ValueError(f"bench ({bench!r}) must be a bool")
        self._bench = bench
        self._bridge = None

    @property
    def board(self) -> Board:
        return self._board

    @property
    def pll(self) -> PllConfig:
        return self._pll

    @property
    def bridge(self) -> SerialBridge:
        """The serial bridge (made on first use, so that a top that is only inspected leaves no
        unused elaboratable behind; its checks of ``baud`` and the network run then)."""
        if self._bridge is None:
            net = self._network
            depth = 2 * net.beats_per_frame  # the bridge's two frame slots
            self._bridge = SerialBridge(net, clk_hz=self._pll.bridge_hz, baud=self._baud,
                                        model_hash=self._model_hash,
                                        buffer=bridge_buffer_style(self._board.family, depth),
                                        network_domain=NETWORK_DOMAIN,
                                        network_clk_hz=self._pll.clk_hz, bench=self._bench)
        return self._bridge

    def _pll_instance(self, m, platform, clk, bridge_clk, lock):
        pll = self._pll
        p = pll.params
        if pll.family == "ice40":
            # The 12 MHz oscillator is wired to pin 35, the pad whose input path feeds the UP5K's
            # PLL directly. SB_PLL40_2_PAD takes that pad (requested with dir="-", so the platform
            # adds no SB_IO of its own) and drives two global networks: PLLOUTGLOBALA, the pad's
            # clock passed through (the bridge's), and PLLOUTGLOBALB, the PLL's output (the
            # accelerator's).
            pad = platform.request(self._board.clock, 0, dir="-")
            return Instance(
                "SB_PLL40_2_PAD",
                p_FEEDBACK_PATH="SIMPLE", p_PLLOUT_SELECT_PORTB="GENCLK",
                p_DIVR=p["DIVR"], p_DIVF=p["DIVF"], p_DIVQ=p["DIVQ"],
                p_FILTER_RANGE=p["FILTER_RANGE"],
                io_PACKAGEPIN=pad.io, i_RESETB=1, i_BYPASS=0,
                o_PLLOUTGLOBALA=bridge_clk, o_PLLOUTGLOBALB=clk, o_LOCK=lock)
        clk_in = io.Buffer("i", platform.request(self._board.clock, 0, dir="-"))
        m.submodules.clk_in = clk_in
        return Instance(
            "EHXPLLL",
            a_FREQUENCY_PIN_CLKI=f"{pll.f_in_mhz:g}", a_FREQUENCY_PIN_CLKOP=f"{pll.f_out_mhz:g}",
            a_FREQUENCY_PIN_CLKOS=f"{pll.bridge_mhz:g}",
            a_ICP_CURRENT="12", a_LPF_RESISTOR="8", a_MFG_ENABLE_FILTEROPAMP="1",
            a_MFG_GMCREF_SEL="2",
            p_PLLRST_ENA="DISABLED", p_INTFB_WAKE="DISABLED", p_STDBY_ENABLE="DISABLED",
            p_DPHASE_SOURCE="DISABLED", p_OUTDIVIDER_MUXA="DIVA",
            p_CLKI_DIV=p["CLKI_DIV"], p_CLKFB_DIV=p["CLKFB_DIV"],
            p_CLKOP_ENABLE="ENABLED", p_CLKOP_DIV=p["CLKOP_DIV"],
            p_CLKOP_CPHASE=p["CLKOP_CPHASE"], p_CLKOP_FPHASE=0, p_FEEDBK_PATH="CLKOP",
            p_CLKOS_ENABLE="ENABLED", p_CLKOS_DIV=p["CLKOS_DIV"],
            p_CLKOS_CPHASE=p["CLKOS_CPHASE"], p_CLKOS_FPHASE=0, o_CLKOS=bridge_clk,
            i_CLKI=clk_in.i, i_CLKFB=clk, i_RST=0, i_STDBY=0, i_PHASESEL0=0, i_PHASESEL1=0,
            i_PHASEDIR=1, i_PHASESTEP=1, i_PHASELOADREG=1, i_PLLWAKESYNC=0, i_ENCLKOP=0,
            o_CLKOP=clk, o_LOCK=lock)

    def elaborate(self, platform):
        m = Module()
        hz, bridge_hz = self._pll.clk_hz, self._pll.bridge_hz
        clk = Signal(name="pll_clk")
        bridge_clk = Signal(name="bridge_clk")
        lock = Signal(name="pll_lock")
        m.submodules.pll = self._pll_instance(m, platform, clk, bridge_clk, lock)
        platform.add_clock_constraint(clk, hz)
        platform.add_clock_constraint(bridge_clk, bridge_hz)

        # Two clock domains: the bridge in `sync`, the accelerator in `accel` (the bridge's
        # crossings join them). `por` is a reset-less domain on the bridge's clock.
        m.domains.sync = ClockDomain("sync")
        m.domains.accel = ClockDomain(NETWORK_DOMAIN)
        m.domains.por = ClockDomain("por", reset_less=True, local=True)
        m.d.comb += [ClockSignal("sync").eq(bridge_clk), ClockSignal(NETWORK_DOMAIN).eq(clk),
                     ClockSignal("por").eq(bridge_clk)]

        # Reset: held until the PLL has been locked for POR_SECONDS, and while button 0 is
        # pressed. The counter counts up from the flip-flops' configuration value, 0. Each
        # domain gets the reset through a ResetSynchronizer of its own (asserted at once,
        # released synchronously to that domain's clock).
        locked = Signal()
        pressed = Signal()
        m.submodules.button = button = io.Buffer("i", platform.request("button", 0, dir="-"))
        m.submodules.lock_sync = FFSynchronizer(lock, locked, o_domain="por")
        m.submodules.button_sync = FFSynchronizer(button.i, pressed, o_domain="por")
        delay = max(1, math.ceil(POR_SECONDS * bridge_hz))
        count = Signal(range(delay + 1))
        ready = Signal()
        with m.If(~locked | pressed):
            m.d.por += count.eq(0)
        with m.Elif(count != delay):
            m.d.por += count.eq(count + 1)
        m.d.por += ready.eq(locked & ~pressed & (count == delay))
        m.submodules.sync_reset = ResetSynchronizer(~ready, domain="sync")
        m.submodules.accel_reset = ResetSynchronizer(~ready, domain=NETWORK_DOMAIN)

        m.submodules.bridge = bridge = self.bridge
        uart = platform.request("uart", 0, dir="-")
        m.submodules.uart_rx = uart_rx = io.Buffer("i", uart.rx)
        m.submodules.uart_tx = uart_tx = io.Buffer("o", uart.tx)
        m.d.comb += [bridge.rx.eq(uart_rx.i), uart_tx.o.eq(bridge.tx)]

        # LED 1: heartbeat of the accelerator's clock, 2**w cycles per period with 2**w > hz
        # (1 to 2 s).
        beat = Signal(max(1, hz.bit_length()))
        m.d[NETWORK_DOMAIN] += beat.eq(beat + 1)
        # LED 0: 50 ms flash per start bit on either line; steady in reset or on frame_error.
        flash_cycles = max(1, bridge_hz // 20)
        flash = Signal(range(flash_cycles + 1))
        with m.If(~uart_rx.i | ~bridge.tx):
            m.d.sync += flash.eq(flash_cycles)
        with m.Elif(flash != 0):
            m.d.sync += flash.eq(flash - 1)
        m.submodules.led_status = led_status = io.Buffer("o", platform.request("led", 0, dir="-"))
        m.submodules.led_beat = led_beat = io.Buffer("o", platform.request("led", 1, dir="-"))
        m.d.comb += [
            led_beat.o.eq(beat[-1]),
            led_status.o.eq((flash != 0) | ~ready | bridge.engine.frame_error),
        ]
        return m

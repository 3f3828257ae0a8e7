"""A UART for the serial bridge: 8N1 receiver and transmitter with byte streams.

8N1: a byte is a start bit (0), 8 data bits least significant bit first, a stop bit (1); the line
idles at 1. Both blocks run from one clock and take ``divisor``, the clock cycles per bit
(``clk_hz / baud``, rounded; see :class:`~xnorflow.hw.tops.bridge.SerialBridge` for the rate check).
On the boards they run on the serial bridge's own clock: 3 Mbaud at divisor 4 from the
iCEBreaker's 12 MHz oscillator, at divisor 20 from the ULX3S's 60 MHz ``CLKOS`` beside a
100 MHz accelerator (both exact; see :mod:`xnorflow.hw.tops.board`).
"""

from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.wiring import In, Out

__all__ = ["UARTRx", "UARTTx"]


def _check_divisor(divisor, least):
    if not isinstance(divisor, int) or isinstance(divisor, bool) or divisor < least:
        raise ValueError(f"divisor ({divisor!r}) must be an integer of at least {least} "
                         "(clock cycles per bit)")


class UARTRx(wiring.Component):
    """8N1 receiver: the ``rx`` line in, received bytes out as a stream.

    Parameters
    ----------
    divisor : int
        Clock cycles per bit, at least 4 (:data:`MIN_DIVISOR`).

    Ports
    -----
    rx : In(1), idle 1
        The line, asynchronous to the clock: it passes a 2-flip-flop synchronizer
        (:class:`amaranth.lib.cdc.FFSynchronizer`) first.
    o_stream : Out(stream.Signature(8))
        One beat per byte received with a good stop bit. ``valid`` is a register; the byte holds
        until accepted.
    framing_error : Out(1)
        One-cycle pulse per byte whose stop bit was 0; that byte is dropped. The receiver then
        waits for the line to return to 1 before it looks for the next start bit (so a held-low
        line, a break, gives one error, not a stream of them).
    overrun : Out(1)
        One-cycle pulse per byte that completed while the previous one was still waiting on
        ``o_stream`` (``valid & ~ready``); the new byte is dropped, the waiting one kept.

    Timing
    ------
    A falling edge seen in the idle state starts a byte. The start bit is sampled ``divisor // 2``
    cycles after the edge is seen (its middle, within the one cycle of uncertainty of where the
    edge fell; a 1 there is a glitch, not a byte), each later bit ``divisor`` cycles after the
    previous sample. The byte is valid on ``o_stream`` in cycle ``divisor // 2 + 9 * divisor + 3``,
    counting from the cycle in which the start bit's edge reached the pin (2 of them are the
    synchronizer's). The receiver looks for the next start edge from then on, half a bit before
    the stop bit ends, so back-to-back bytes are received from a transmitter whose rate is off by
    up to about 2 % at divisor 4, 3 % at divisor 8 and 4 % from divisor 16 (measured; the tests
    check +-2 %).
    """

    MIN_DIVISOR = 4

    def __init__(self, divisor):
        _check_divisor(divisor, self.MIN_DIVISOR)
        self._divisor = divisor
        super().__init__({
            "rx": In(1, init=1),
            "o_stream": Out(stream.Signature(8)),
            "framing_error": Out(1),
            "overrun": Out(1),
        })

    @property
    def divisor(self):
        return self._divisor

    def elaborate(self, platform):
        m = Module()
        d = self._divisor
        line = Signal(init=1)
        m.submodules.sync = FFSynchronizer(self.rx, line, init=1)

        timer = Signal(range(d))
        bit = Signal(range(8))
        shreg = Signal(8)
        o = self.o_stream

        with m.If(o.valid & o.ready):
            m.d.sync += o.valid.eq(0)

        with m.FSM():
            with m.State("IDLE"):
                with m.If(~line):
                    m.d.sync += timer.eq(d // 2 - 1)
                    m.next = "START"
            with m.State("START"):
                m.d.sync += timer.eq(timer - 1)
                with m.If(timer == 0):
                    with m.If(line):
                        m.next = "IDLE"  # a glitch, not a start bit
                    with m.Else():
                        m.d.sync += [timer.eq(d - 1), bit.eq(0)]
                        m.next = "DATA"
            with m.State("DATA"):
                m.d.sync += timer.eq(timer - 1)
                with m.If(timer == 0):
                    m.d.sync += [timer.eq(d - 1), bit.eq(bit + 1), shreg.eq(Cat(shreg[1:], line))]
                    with m.If(bit == 7):
                        m.next = "STOP"
            with m.State("STOP"):
                m.d.sync += timer.eq(timer - 1)
                with m.If(timer == 0):
                    with m.If(line):
                        with m.If(o.valid & ~o.ready):
                            m.d.comb += self.overrun.eq(1)
                        with m.Else():
                            m.d.sync += [o.payload.eq(shreg), o.valid.eq(1)]
                        m.next = "IDLE"
                    with m.Else():
                        m.d.comb += self.framing_error.eq(1)
                        m.next = "BREAK"
            with m.State("BREAK"):
                with m.If(line):
                    m.next = "IDLE"
        return m


class UARTTx(wiring.Component):
    """8N1 transmitter: bytes in as a stream, the ``tx`` line out.

    Parameters
    ----------
    divisor : int
        Clock cycles per bit, at least 1.

    Ports
    -----
    i_stream : In(stream.Signature(8))
        Bytes to send, in order.
    tx : Out(1), idle 1
        The line, driven from a register.

    Timing
    ------
    A byte accepted in cycle ``c`` puts its start bit on ``tx`` from cycle ``c + 1``; each bit
    lasts ``divisor`` cycles. ``i_stream.ready`` (a function of registers) is 1 when idle and in
    the last cycle of a stop bit, so bytes offered back to back go out back to back: exactly
    ``10 * divisor`` cycles per byte.
    """

    MIN_DIVISOR = 1

    def __init__(self, divisor):
        _check_divisor(divisor, self.MIN_DIVISOR)
        self._divisor = divisor
        super().__init__({
            "i_stream": In(stream.Signature(8)),
            "tx": Out(1, init=1),
        })

    @property
    def divisor(self):
        return self._divisor

    def elaborate(self, platform):
        m = Module()
        d = self._divisor
        shreg = Signal(10, init=0x3FF)  # bit 0 is on the line; idle: all ones
        left = Signal(range(11))        # bits still to send, the current one included
        timer = Signal(range(d))        # cycles left in the current bit, minus one
        i = self.i_stream

        m.d.comb += [
            self.tx.eq(shreg[0]),
            i.ready.eq((left == 0) | ((left == 1) & (timer == 0))),
        ]
        with m.If(i.valid & i.ready):
            m.d.sync += [shreg.eq(Cat(0, i.payload, 1)), left.eq(10), timer.eq(d - 1)]
        with m.Elif(left != 0):
            m.d.sync += timer.eq(timer - 1)
            with m.If(timer == 0):
                m.d.sync += [timer.eq(d - 1), left.eq(left - 1), shreg.eq(Cat(shreg[1:], 1))]
        return m

"""Stream plumbing between the layers of a network: a width converter and a FIFO.

Both are :class:`amaranth.lib.wiring.Component` with an ``i_stream`` and an ``o_stream``
(:mod:`amaranth.lib.stream`) and follow the stream rules: ``valid`` never waits on ``ready``, a
payload holds while ``valid & ~ready``, and each ``ready``/``valid`` here is a function of
registers only (no combinational path crosses either block).
"""

from __future__ import annotations

from math import gcd

from amaranth.hdl import Module, Mux, Shape, Signal, Value
from amaranth.lib import stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from xnorflow.hw.blocks.registry import implements
from xnorflow.hw.compiler.ops.plumbing import ConverterOp, FifoOp

__all__ = ["StreamFIFO", "WidthConverter"]


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


@implements(ConverterOp)
class WidthConverter(wiring.Component):
    """A gearbox for bit-vector streams: ``in_width`` bits per input beat to ``out_width`` bits
    per output beat, element order preserved.

    A producer emits a vector of ``frame_bits`` (M) elements as ``M / in_width`` beats, a consumer
    takes it as ``M / out_width`` beats. Element ``e`` of the stream (counted from the first bit
    of the first frame) is bit ``e mod in_width`` of input beat ``e div in_width`` and bit
    ``e mod out_width`` of output beat ``e div out_width`` (LSB first, docs/semantics.md section
    4). Because both widths divide M, no output beat ever straddles two frames, so the converter
    needs no frame marker; any pair of widths works (wider, narrower, neither dividing the other,
    e.g. 6 to 4).

    Parameters
    ----------
    in_width : int
        Bits per input beat (the producer's PE); must divide ``frame_bits``.
    out_width : int
        Bits per output beat (the consumer's SIMD); must divide ``frame_bits``.
    frame_bits : int
        M, the elements of one vector (frame).

    Ports
    -----
    i_stream : In(stream.Signature(in_width))
    o_stream : Out(stream.Signature(out_width))

    Rate
    ----
    Full throughput, ``min(in_width, out_width)`` bits per cycle, the most the narrower side can
    carry: with the source always valid and the sink always ready, an input beat is accepted in
    every cycle when ``in_width <= out_width``, and an output beat is valid in every cycle (from
    the cycle after the first input beat) when ``in_width >= out_width``. So a frame passes in
    ``M / min(in_width, out_width)`` cycles (:attr:`cycles_per_frame`), never more than the
    slower of its neighbours needs for their own beats.

    The bits live in a buffer of :attr:`capacity` = ``in_width + out_width + min(in_width,
    out_width) - 1`` bits, the least for which the rate above holds while ``i_stream.ready`` is a
    function of the fill level alone (``level + in_width <= capacity``): for ``in <= out`` the
    level before an input is at most ``out + in - 1``, for ``in >= out`` an input is taken
    whenever the level is below ``2 * out``, so the level never falls under ``out``.

    Latency (:attr:`latency`): 1 cycle, from the handshake of the input beat that completes an
    output beat's bits to that output beat being valid.

    Backpressure
    ------------
    ``o_stream.valid`` is ``level >= out_width``, ``i_stream.ready`` is ``level + in_width <=
    capacity``, both registers-only; the output payload is the low ``out_width`` bits of the
    buffer and holds until accepted.
    """

    @classmethod
    def from_op(cls, op: ConverterOp) -> WidthConverter:
        """The block of a :class:`~xnorflow.hw.compiler.ops.plumbing.ConverterOp`."""
        return cls(op.in_width, op.out_width, op.frame_bits)

    def __init__(self, in_width, out_width, frame_bits):
        for name, value in (("in_width", in_width), ("out_width", out_width),
                            ("frame_bits", frame_bits)):
            if not _is_int(value) or value < 1:
                raise ValueError(f"{name} ({value!r}) must be a positive integer")
        if frame_bits % in_width:
            raise ValueError(f"in_width ({in_width}) must divide frame_bits ({frame_bits})")
        if frame_bits % out_width:
            raise ValueError(f"out_width ({out_width}) must divide frame_bits ({frame_bits})")
        self._in_width = in_width
        self._out_width = out_width
        self._frame_bits = frame_bits
        super().__init__({
            "i_stream": In(stream.Signature(in_width)),
            "o_stream": Out(stream.Signature(out_width)),
        })

    @property
    def in_width(self):
        return self._in_width

    @property
    def out_width(self):
        return self._out_width

    @property
    def frame_bits(self):
        return self._frame_bits

    @property
    def capacity(self):
        """Bits of the internal buffer: ``in + out + min(in, out) - 1``."""
        i, o = self._in_width, self._out_width
        return i + o + min(i, o) - 1

    @property
    def cycles_per_frame(self):
        """Fewest cycles per frame: ``frame_bits / min(in_width, out_width)``."""
        return self._frame_bits // min(self._in_width, self._out_width)

    @property
    def latency(self):
        """Cycles from the input beat completing an output beat to that beat being valid."""
        return 1

    def elaborate(self, platform):
        m = Module()
        i_w, o_w, cap = self._in_width, self._out_width, self.capacity
        i_stream, o_stream = self.i_stream, self.o_stream

        buf = Signal(cap)
        level = Signal(range(cap + 1))  # valid bits, buf[0:level]; a multiple of gcd(in, out)
        take = Signal()
        give = Signal()
        m.d.comb += [
            o_stream.valid.eq(level >= o_w),
            o_stream.payload.eq(buf[:o_w]),
            i_stream.ready.eq(level <= cap - i_w),
            take.eq(i_stream.valid & i_stream.ready),
            give.eq(o_stream.valid & o_stream.ready),
        ]

        # The bits that stay, moved down by one output beat when one leaves, and the position
        # where an accepted input beat goes (just above them).
        kept = Signal(cap)
        base = Signal(range(cap + 1))
        m.d.comb += [
            kept.eq(Mux(give, buf >> o_w, buf)),
            base.eq(level - Mux(give, o_w, 0)),
        ]
        buf_next = Signal(cap)
        m.d.comb += buf_next.eq(kept)
        with m.If(take):
            with m.Switch(base):
                # An input is taken only at level <= cap - in, so base is one of these.
                for position in range(0, cap - i_w + 1, gcd(i_w, o_w)):
                    with m.Case(position):
                        m.d.comb += buf_next[position:position + i_w].eq(i_stream.payload)
        m.d.sync += [
            buf.eq(buf_next),
            level.eq(base + Mux(take, i_w, 0)),
        ]
        return m


@implements(FifoOp)
class StreamFIFO(wiring.Component):
    """A first-in first-out queue of stream beats around
    :class:`amaranth.lib.fifo.SyncFIFOBuffered` (block-RAM friendly: registered reads).

    Parameters
    ----------
    shape : shape-like
        The payload shape (any shape or ``data`` layout; beats are stored as raw bits).
    depth : int
        Beats held, at least 1. ``SyncFIFOBuffered`` keeps ``depth - 1`` beats in memory and one
        in its output register.

    Ports
    -----
    i_stream : In(stream.Signature(shape))
    o_stream : Out(stream.Signature(shape))

    Timing
    ------
    Rate: one beat per cycle for ``depth >= 3`` (:data:`StreamFIFO.FULL_RATE_DEPTH`); depths 1
    and 2 pass at most one beat every other cycle (that is ``SyncFIFOBuffered``). Latency
    (:attr:`latency`): 2 cycles from a beat's input handshake into an empty FIFO to it being
    valid at the output (1 cycle for depth 1).

    Backpressure
    ------------
    ``i_stream.ready`` (not full) and ``o_stream.valid`` (output register full) are registers-only;
    the output payload holds while ``valid & ~ready``.
    """

    #: The smallest depth that passes one beat per cycle.
    FULL_RATE_DEPTH = 3

    @classmethod
    def from_op(cls, op: FifoOp) -> StreamFIFO:
        """The block of a :class:`~xnorflow.hw.compiler.ops.plumbing.FifoOp`."""
        return cls(op.width, op.depth)

    def __init__(self, shape, depth):
        if not _is_int(depth) or depth < 1:
            raise ValueError(f"FIFO depth ({depth!r}) must be a positive integer")
        self._shape = shape
        self._width = Shape.cast(shape).width
        self._depth = depth
        super().__init__({
            "i_stream": In(stream.Signature(shape)),
            "o_stream": Out(stream.Signature(shape)),
        })

    @property
    def shape(self):
        return self._shape

    @property
    def width(self):
        """Bits per beat."""
        return self._width

    @property
    def depth(self):
        return self._depth

    @property
    def latency(self):
        """Cycles from a beat entering an empty FIFO to it being valid at the output."""
        return 1 if self._depth == 1 else 2

    def elaborate(self, platform):
        m = Module()
        m.submodules.fifo = fifo = SyncFIFOBuffered(width=self._width, depth=self._depth)
        m.d.comb += [
            fifo.w_data.eq(Value.cast(self.i_stream.payload)),
            fifo.w_en.eq(self.i_stream.valid),
            self.i_stream.ready.eq(fifo.w_rdy),
            Value.cast(self.o_stream.payload).eq(fifo.r_data),
            self.o_stream.valid.eq(fifo.r_rdy),
            fifo.r_en.eq(self.o_stream.ready),
        ]
        return m

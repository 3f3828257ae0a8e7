"""Streaming max-pooling on bits (docs/semantics.md section 5.3): OR for the channels whose
convolution thresholds rise, AND for the others."""

from __future__ import annotations

from amaranth.hdl import Array, Const, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from xnorflow.hw.blocks.registry import implements
from xnorflow.hw.compiler.ops.pool import PoolOp
from xnorflow.hw.compiler.rules import pool_cycles_per_frame, pool_latency

__all__ = ["BitMaxPool"]


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


@implements(PoolOp)
class BitMaxPool(wiring.Component):
    """Max-pools an ``H x W x C`` bit map over ``k x k`` squares into ``(H/k) x (W/k) x C``:
    ``z[py, px, ch]`` is the OR (``rising[ch]``) or the AND (not ``rising[ch]``) of
    ``y[py*k + i, px*k + j, ch]`` over ``i, j`` in ``[0, k)`` (docs/semantics.md section 5.3).

    Parameters
    ----------
    in_shape : (H, W, C)
        The input bit map.
    kernel : int
        k, at least 1; must divide H and W.
    simd : int
        Channels per beat; must divide C.
    rising : sequence of C booleans
        ``rising[ch]``: the direction of channel ``ch`` of the convolution before is +1 (pooled
        by OR); otherwise -1 (pooled by AND).

    Ports
    -----
    i_stream : In(stream.Signature(SIMD))
        The input map, ``H*W*C/SIMD`` beats per frame, row by row, pixel by pixel, channels
        fastest, channel ``ch`` of a pixel at bit ``ch mod SIMD`` of the pixel's beat
        ``ch div SIMD`` (docs/semantics.md section 5.1). Frames follow each other with no marker.
    o_stream : Out(stream.Signature(SIMD))
        The pooled map in the same order, ``(H/k)*(W/k)*C/SIMD`` beats per frame.

    Row buffer
    ----------
    The partial results of the ``W/k`` squares of the current ``k`` input rows, ``(W/k) *
    C/SIMD`` words of SIMD bits (``(W/k)*C`` bits), in a
    :class:`~amaranth.lib.memory.Memory` with an asynchronous read port (LUT RAM or flip-flops):
    each input beat is combined with its square's partial result (read, combined and written
    back in its cycle); the first beat of a square starts it; the last beat of a square is the
    output beat.

    Timing
    ------
    Initiation interval (:attr:`cycles_per_frame`,
    :func:`~xnorflow.hw.compiler.rules.pool_cycles_per_frame`): ``H*W*C/SIMD`` cycles per frame,
    one input beat per cycle (the output beats take ``1/k**2`` of them), frames back to back.

    Latency (:attr:`latency`, :func:`~xnorflow.hw.compiler.rules.pool_latency`): an output beat
    is valid in the cycle after the handshake of the input beat that completes it (the last
    pixel of its square); from the handshake of a frame's first input beat to its first output
    beat being valid, ``(k-1)*(W+1)*C/SIMD + 1`` cycles with input back to back.

    Backpressure
    ------------
    The output beats leave through a two-beat queue (the output register and a skid register).
    ``i_stream.ready`` is a function of registers only: 1 unless the next input beat completes
    an output beat while the skid register is full. So no combinational path runs from
    ``o_stream.ready`` to ``i_stream.ready``, ``o_stream.valid`` is a register that does not
    wait on ``o_stream.ready``, the payload holds while ``valid & ~ready``, and with the output
    ready the input never waits.
    """

    @classmethod
    def from_op(cls, op: PoolOp) -> BitMaxPool:
        """The block of a :class:`~xnorflow.hw.compiler.ops.pool.PoolOp`."""
        return cls(op.in_shape, kernel=op.kernel, simd=op.simd, rising=op.rising)

    def __init__(self, in_shape, *, kernel, simd=1, rising):
        if (not isinstance(in_shape, tuple) or len(in_shape) != 3
                or not all(_is_int(v) and v >= 1 for v in in_shape)):
            raise ValueError(
                f"in_shape ({in_shape!r}) must be a tuple (H, W, C) of positive integers")
        h, w, c = in_shape
        if not _is_int(kernel) or kernel < 1:
            raise ValueError(f"kernel ({kernel!r}) must be a positive integer")
        if h % kernel or w % kernel:
            raise ValueError(
                f"kernel ({kernel}) must divide the map's height ({h}) and width ({w})")
        if not _is_int(simd) or simd < 1:
            raise ValueError(f"SIMD ({simd!r}) must be a positive integer")
        if c % simd:
            raise ValueError(f"SIMD ({simd}) must divide the channels ({c})")
        rising = tuple(rising)
        if len(rising) != c or not all(r in (False, True) for r in rising):
            raise ValueError(f"rising must be a sequence of {c} booleans, one per channel")
        rising = tuple(bool(r) for r in rising)
        self._in_shape = (h, w, c)
        self._kernel = kernel
        self._simd = simd
        self._rising = rising
        super().__init__({
            "i_stream": In(stream.Signature(simd)),
            "o_stream": Out(stream.Signature(simd)),
        })

    # Parameters (read-only).

    @property
    def in_shape(self):
        return self._in_shape

    @property
    def kernel(self):
        return self._kernel

    @property
    def simd(self):
        return self._simd

    @property
    def rising(self):
        """The directions, a tuple of C booleans (True: OR, False: AND)."""
        return self._rising

    # Derived quantities.

    @property
    def out_shape(self):
        """``(H/k, W/k, C)``."""
        h, w, c = self._in_shape
        return (h // self._kernel, w // self._kernel, c)

    @property
    def cycles_per_frame(self):
        """Initiation interval in cycles per frame: ``H*W*C/SIMD``."""
        return pool_cycles_per_frame(self._in_shape, self._simd)

    @property
    def latency(self):
        """``(k-1)*(W+1)*C/SIMD + 1`` (see Timing)."""
        return pool_latency(self._in_shape, self._kernel, self._simd)

    def elaborate(self, platform):
        m = Module()
        h, w, c = self._in_shape
        k, simd = self._kernel, self._simd
        cb_count = c // simd
        squares = w // k
        i_stream, o_stream = self.i_stream, self.o_stream

        # The OR lanes of each beat of a pixel: bit l of word cb is rising[cb*SIMD + l].
        masks = Array(Const(sum(1 << lane for lane in range(simd)
                                if self._rising[cb * simd + lane]), simd)
                      for cb in range(cb_count))

        m.submodules.partial = partial = Memory(shape=simd, depth=squares * cb_count, init=[],
                                                attrs={"ram_style": "logic"})
        wr = partial.write_port()
        rd = partial.read_port(domain="comb")

        # Where the next input beat falls: its channel beat, its column in the square (j), its
        # square (px) and its row in the square (i); `addr` = px * C/SIMD + cb.
        cb = Signal(range(cb_count))
        j = Signal(range(k))
        px = Signal(range(squares))
        i = Signal(range(k))
        addr = Signal(range(squares * cb_count))
        first = Signal()     # the beat starts its square
        last = Signal()      # the beat completes its square: an output beat
        m.d.comb += [
            first.eq((i == 0) & (j == 0)),
            last.eq((i == k - 1) & (j == k - 1)),
        ]

        # The output queue: the output register and a skid register.
        skid = Signal(simd)
        skid_valid = Signal()
        take = Signal()
        m.d.comb += [
            i_stream.ready.eq(~last | ~skid_valid),
            take.eq(i_stream.valid & i_stream.ready),
        ]

        mask = Signal(simd)
        combined = Signal(simd)
        m.d.comb += [
            mask.eq(masks[cb]),
            rd.addr.eq(addr),
            combined.eq(Mux(first, i_stream.payload,
                            (mask & (rd.data | i_stream.payload))
                            | (~mask & rd.data & i_stream.payload))),
            wr.addr.eq(addr),
            wr.data.eq(combined),
            wr.en.eq(take),
        ]

        last_cb = cb == cb_count - 1
        last_j = j == k - 1
        last_px = px == squares - 1
        with m.If(take):
            m.d.sync += [
                cb.eq(Mux(last_cb, 0, cb + 1)),
                addr.eq(Mux(last_cb & last_j & last_px, 0,
                            Mux(last_cb & ~last_j, addr - (cb_count - 1), addr + 1))),
            ]
            with m.If(last_cb):
                m.d.sync += j.eq(Mux(last_j, 0, j + 1))
                with m.If(last_j):
                    m.d.sync += px.eq(Mux(last_px, 0, px + 1))
                    with m.If(last_px):
                        m.d.sync += i.eq(Mux(i == k - 1, 0, i + 1))

        out_free = Signal()  # the output register takes a beat in this cycle
        m.d.comb += out_free.eq(~o_stream.valid | o_stream.ready)
        with m.If(out_free):
            m.d.sync += o_stream.valid.eq(skid_valid | (take & last))
            # (An input beat that completes a square is taken only while the skid is empty.)
            with m.If(skid_valid):
                m.d.sync += [o_stream.payload.eq(skid), skid_valid.eq(0)]
            with m.Else():
                m.d.sync += o_stream.payload.eq(combined)
        with m.Elif(take & last):
            m.d.sync += [skid.eq(combined), skid_valid.eq(1)]
        return m

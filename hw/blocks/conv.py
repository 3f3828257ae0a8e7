"""A convolution's block: the sliding-window generator feeding a matrix-vector-threshold unit
(docs/semantics.md section 5.2)."""

from __future__ import annotations

from amaranth.hdl import Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from xnorflow.hw.blocks.mvtu import MVTU
from xnorflow.hw.blocks.registry import implements
from xnorflow.hw.blocks.window import SlidingWindow
from xnorflow.hw.compiler.ops.conv import ConvOp

__all__ = ["ConvUnit"]


@implements(ConvOp)
class ConvUnit(wiring.Component):
    """One convolution with threshold output: a :class:`~xnorflow.hw.blocks.window.SlidingWindow`
    whose windows (``N = K*K*C`` elements, order ``ky``, ``kx``, ``ch``) feed an
    :class:`~xnorflow.hw.blocks.mvtu.MVTU` of ``M`` outputs, both on ``SIMD`` lanes: SIMD divides
    C, or is ``m*C`` for an ``m > 1`` dividing K (m kernel columns a window beat; the unit's
    weight layout is the same, chunk ``j`` of a window its elements ``j*SIMD ... j*SIMD + SIMD
    - 1``).

    Parameters
    ----------
    window : SlidingWindow
        The window generator (its ``simd`` is the unit's).
    unit : MVTU
        The unit over the windows: weights ``(M, K*K*C)`` in window order, thresholds and
        directions per output channel; ``in_channels`` must be ``K*K*C`` and its ``simd`` the
        window generator's.

    Ports
    -----
    i_stream : In(stream.Signature(SIMD_in * bits))
        The input map, ``H*W*C/SIMD_in`` beats per frame, in the order of docs/semantics.md
        section 5.1 (channels fastest, channel ``ch`` at lane ``ch mod SIMD_in``); ``SIMD_in``
        is the window generator's :attr:`~xnorflow.hw.blocks.window.SlidingWindow.in_lanes`:
        SIMD where it divides C, else C (one pixel a beat).
    o_stream : Out(stream.Signature(PE))
        The output bit map, ``OH*OW*M/PE`` beats per frame in the same order: for every position
        its ``M/PE`` beats, channel ``f*PE + p`` at bit ``p`` of beat ``f``.

    Timing
    ------
    The window generator hands each window over once; the unit replays it for its ``M/PE``
    folds. Initiation interval, latency and the beats' timing are those of the op's beat-level
    model (:func:`~xnorflow.hw.compiler.ops.conv.conv_schedule`): at least
    ``max(window generator's II, OH*OW*(M/PE)*(K*K*C/SIMD))`` cycles per frame.

    Backpressure
    ------------
    As the two blocks': no combinational path from ``o_stream.ready`` to ``i_stream.ready``;
    nothing is lost, duplicated or reordered.
    """

    @classmethod
    def from_op(cls, op: ConvOp) -> ConvUnit:
        """The block of a :class:`~xnorflow.hw.compiler.ops.conv.ConvOp`."""
        window = SlidingWindow(op.in_shape, kernel=op.kernel, stride=op.stride,
                               padding=op.padding, pad_value=op.pad_value,
                               lane_bits=op.input_bits, simd=op.simd,
                               buffer=op.line_buffer_style)
        return cls(window, MVTU.from_op(op.mvtu))

    def __init__(self, window, unit):
        if not isinstance(window, SlidingWindow):
            raise TypeError(f"window must be a SlidingWindow, not {window!r}")
        if not isinstance(unit, MVTU):
            raise TypeError(f"unit must be an MVTU, not {unit!r}")
        if unit.in_channels != window.out_shape[2]:
            raise ValueError(f"the unit's inputs ({unit.in_channels}) must be the window's "
                             f"elements K*K*C ({window.out_shape[2]})")
        if unit.simd != window.simd or unit.input_bits != window.lane_bits:
            raise ValueError(f"the unit's SIMD ({unit.simd}) and input bits "
                             f"({unit.input_bits}) must be the window generator's "
                             f"({window.simd}, {window.lane_bits})")
        if unit.thresholds is None:
            raise ValueError("a convolution has thresholds (it is never the score layer)")
        self._window = window
        self._unit = unit
        super().__init__({
            "i_stream": In(stream.Signature(window.in_lanes * window.lane_bits)),
            "o_stream": Out(stream.Signature(unit.pe)),
        })

    @property
    def window(self) -> SlidingWindow:
        return self._window

    @property
    def unit(self) -> MVTU:
        return self._unit

    def elaborate(self, platform):
        m = Module()
        m.submodules.window = window = self._window
        m.submodules.unit = unit = self._unit
        wiring.connect(m, wiring.flipped(self.i_stream), window.i_stream)
        wiring.connect(m, window.o_stream, unit.i_stream)
        wiring.connect(m, unit.o_stream, wiring.flipped(self.o_stream))
        return m

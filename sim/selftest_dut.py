"""Small stream designs that the simulation helpers are checked against.

They are not part of the accelerator: :mod:`xnorflow.sim.tb_selftest` drives them through
:mod:`xnorflow.sim.streams` to show that the source, the sink, their pause generators and the
cycle stamps behave as documented, on generated Verilog, under Verilator or Icarus.
"""

from amaranth.hdl import Module, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

__all__ = ["SelftestAxisPipe", "SelftestDut", "SelftestPipe"]


class SelftestPipe(wiring.Component):
    """A register stage followed by a buffered FIFO, between two streams.

    Parameters
    ----------
    width : int
        Payload width in bits (at least 1).
    depth : int
        Depth of the :class:`~amaranth.lib.fifo.SyncFIFOBuffered` behind the register stage
        (at least 2, so that the pipe sustains one beat per cycle).

    Ports
    -----
    i_stream : In(stream.Signature(width))
        Beats in.
    o_stream : Out(stream.Signature(width))
        The same beats, once each, in order.

    Latency: a beat accepted on ``i_stream`` at clock edge ``k`` can be accepted on ``o_stream``
    at edge ``k + LATENCY`` at the earliest (one cycle in the register stage, two through the
    buffered FIFO). Initiation interval: 1 (one beat per cycle with no stalls on either side).
    Backpressure: ``i_stream.ready`` is low only when the register stage holds a beat that the
    full FIFO cannot take; payloads hold while ``valid & ~ready``.
    """

    LATENCY = 3

    def __init__(self, width=16, depth=4):
        if not isinstance(width, int) or width < 1:
            raise ValueError(f"Payload width ({width!r}) must be a positive integer")
        if not isinstance(depth, int) or depth < 2:
            raise ValueError(f"FIFO depth ({depth!r}) must be an integer of at least 2")
        self._width = width
        self._depth = depth
        super().__init__({
            "i_stream": In(stream.Signature(width)),
            "o_stream": Out(stream.Signature(width)),
        })

    @property
    def width(self):
        return self._width

    @property
    def depth(self):
        return self._depth

    def elaborate(self, platform):
        m = Module()
        m.submodules.fifo = fifo = SyncFIFOBuffered(width=self._width, depth=self._depth)

        # Register stage: updates under ~valid | ready (the FIFO's w_rdy is its ready).
        stage_payload = Signal(self._width)
        stage_valid = Signal()
        m.d.comb += self.i_stream.ready.eq(~stage_valid | fifo.w_rdy)
        with m.If(self.i_stream.ready):
            m.d.sync += [
                stage_valid.eq(self.i_stream.valid),
                stage_payload.eq(self.i_stream.payload),
            ]

        m.d.comb += [
            fifo.w_data.eq(stage_payload),
            fifo.w_en.eq(stage_valid),
            self.o_stream.payload.eq(fifo.r_data),
            self.o_stream.valid.eq(fifo.r_rdy),
            fifo.r_en.eq(self.o_stream.ready),
        ]
        return m


class SelftestAxisPipe(wiring.Component):
    """:class:`SelftestPipe` carrying ``tdata`` and ``tlast``, with AXI4-Stream port names.

    Parameters
    ----------
    width : int
        ``tdata`` width in bits.
    depth : int
        FIFO depth, as for :class:`SelftestPipe`.

    Ports
    -----
    s_axis_tdata, s_axis_tvalid, s_axis_tlast : In; s_axis_tready : Out
        Beats in.
    m_axis_tdata, m_axis_tvalid, m_axis_tlast : Out; m_axis_tready : In
        The same beats (``tlast`` with its beat), once each, in order.

    Latency and initiation interval as :class:`SelftestPipe`.
    """

    LATENCY = SelftestPipe.LATENCY

    def __init__(self, width=16, depth=4):
        self._inner = SelftestPipe(data.StructLayout({"data": width, "last": 1}).size, depth)
        self._width = width
        super().__init__({
            "s_axis_tdata": In(width),
            "s_axis_tvalid": In(1),
            "s_axis_tready": Out(1),
            "s_axis_tlast": In(1),
            "m_axis_tdata": Out(width),
            "m_axis_tvalid": Out(1),
            "m_axis_tready": In(1),
            "m_axis_tlast": Out(1),
        })

    @property
    def width(self):
        return self._width

    def elaborate(self, platform):
        m = Module()
        m.submodules.pipe = pipe = self._inner
        layout = data.StructLayout({"data": self._width, "last": 1})
        i_beat = data.View(layout, pipe.i_stream.payload)
        o_beat = data.View(layout, pipe.o_stream.payload)
        m.d.comb += [
            i_beat.data.eq(self.s_axis_tdata),
            i_beat.last.eq(self.s_axis_tlast),
            pipe.i_stream.valid.eq(self.s_axis_tvalid),
            self.s_axis_tready.eq(pipe.i_stream.ready),
            self.m_axis_tdata.eq(o_beat.data),
            self.m_axis_tlast.eq(o_beat.last),
            self.m_axis_tvalid.eq(pipe.o_stream.valid),
            pipe.o_stream.ready.eq(self.m_axis_tready),
        ]
        return m


class SelftestDut(wiring.Component):
    """Everything :mod:`xnorflow.sim.tb_selftest` needs in one design, so one build serves all.

    Parameters
    ----------
    width, depth : int
        As for :class:`SelftestPipe` (both pipes use them).

    Ports
    -----
    i_stream, o_stream
        A :class:`SelftestPipe` (Amaranth stream port names).
    s_axis_*, m_axis_*
        An independent :class:`SelftestAxisPipe` (AXI4-Stream port names).
    bad_stream : Out(stream.Signature(8))
        A deliberately broken producer for checking the sink's protocol check: ``valid`` is high
        every other cycle whatever ``ready`` does, and the payload counts cycles.
    """

    LATENCY = SelftestPipe.LATENCY

    def __init__(self, width=16, depth=4):
        self._pipe = SelftestPipe(width, depth)
        self._axis = SelftestAxisPipe(width, depth)
        members = {
            "i_stream": In(stream.Signature(width)),
            "o_stream": Out(stream.Signature(width)),
            "bad_stream": Out(stream.Signature(8)),
        }
        members.update(self._axis.signature.members)
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        m.submodules.pipe = pipe = self._pipe
        m.submodules.axis = axis = self._axis
        wiring.connect(m, wiring.flipped(self.i_stream), pipe.i_stream)
        wiring.connect(m, pipe.o_stream, wiring.flipped(self.o_stream))
        for name, member in axis.signature.members.items():
            outer, inner = getattr(self, name), getattr(axis, name)
            if member.flow == In:
                m.d.comb += inner.eq(outer)
            else:
                m.d.comb += outer.eq(inner)

        counter = Signal(8)
        m.d.sync += counter.eq(counter + 1)
        m.d.comb += [
            self.bad_stream.payload.eq(counter),
            self.bad_stream.valid.eq(counter[0]),
        ]
        return m

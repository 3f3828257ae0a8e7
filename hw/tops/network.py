"""The network generator: a streaming XNOR-popcount dataflow accelerator for a whole model.

:class:`Network` is one :class:`amaranth.lib.wiring.Component` built from an exported
:class:`~xnorflow.model.Model` and a :class:`~xnorflow.hw.compiler.folding.Folding` by the passes of
:mod:`xnorflow.hw.compiler.folding` (the last one, :func:`build`, lives here). :func:`generate`
writes its Verilog and a JSON manifest; ``xnorflow generate`` is a thin layer over it.
"""

from __future__ import annotations

from itertools import pairwise

from amaranth.hdl import Module, Mux, Shape, Signal, Value
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from xnorflow.hw.blocks import block_for
from xnorflow.hw.compiler import (
    OUTPUT_FIFO_DEPTH,
    Folding,
    NetworkPlan,
    compile_plan,
    predict_ii,
    predict_latency,
)

__all__ = ["MANIFEST_FORMAT", "TOP_NAME", "Network", "build"]

#: Module name of the generated Verilog top.
TOP_NAME = "xnorflow_top"
#: ``format`` field of the manifest, and its version.
MANIFEST_FORMAT = "xnorflow-accelerator"
MANIFEST_VERSION = 1

_TLAST_POLICY = (
    "frames are delimited by counting beats (N0/SIMD0 per frame), never by tlast; a beat whose "
    "tlast differs from 'last beat of a frame by the count' sets the sticky frame_error output "
    "(cleared only by rst) and is processed as counted")

_LATENCY_DEFINITION = (
    "cycles from the handshake of a frame's first s_axis beat to its result being valid on m_axis "
    "(m_axis_tvalid), for a frame entering an idle network with its beats back to back and "
    "m_axis_tready high")


def _connect(m, src, dst):
    """Join two stream interfaces of equal payload width, payload as raw bits."""
    src_bits, dst_bits = Value.cast(src.payload), Value.cast(dst.payload)
    assert len(src_bits) == len(dst_bits), (len(src_bits), len(dst_bits))
    m.d.comb += [dst_bits.eq(src_bits), dst.valid.eq(src.valid), src.ready.eq(dst.ready)]


class Network(wiring.Component):
    """The accelerator of a model: frames of 8-bit pixels in, one result per frame out.

    The stages, in stream order: per layer an :class:`~xnorflow.hw.blocks.mvtu.MVTU` (layer 0 on
    8-bit pixel lanes), a :class:`~xnorflow.hw.blocks.plumbing.WidthConverter` where a layer's PE
    differs from the next layer's SIMD, FIFOs by the rule of
    :func:`~xnorflow.hw.compiler.plan.size_fifos`, then an
    :class:`~xnorflow.hw.blocks.argmax.ArgMax` and an output FIFO
    (:data:`~xnorflow.hw.compiler.ops.argmax.OUTPUT_FIFO_DEPTH` results). :attr:`plan` holds them as
    ops.

    Parameters
    ----------
    model : Model
        The exported integer model (validated).
    folding : Folding or None
        PE, SIMD and weight storage per layer; None: :meth:`Folding.default`.
    with_scores : bool
        Also output every class score (default True).

    Ports (named as in the Verilog; plus ``clk`` and ``rst``, synchronous, active high)
    -----
    s_axis_tdata : In(8*SIMD0)
        ``SIMD0`` pixels per beat, ``N0/SIMD0`` beats per frame: pixel ``k*SIMD0 + l`` of the
        frame at bits ``8l ... 8l+7`` of beat ``k`` (docs/semantics.md section 4).
    s_axis_tvalid, s_axis_tready, s_axis_tlast : In(1), Out(1), In(1)
        ``tlast`` is checked, never trusted: frames are counted by beats. A beat whose ``tlast``
        disagrees with the count (1 on a beat that is not a frame's last, 0 on a last) sets
        :attr:`frame_error`; the beat is still processed as counted, so the stream stays aligned
        to the count (a host that lost a beat must reset).
    m_axis_tdata : Out(W)
        One beat per frame, in frame order: the class index (argmax, ties to the lowest index) in
        bits ``0 ... I-1``, ``I = ceil(log2(classes))``; with scores, score ``k`` (the last
        layer's accumulator, docs/semantics.md section 3.3; unsigned ``ceil(log2(N+1))`` bits for
        binary input, two's complement holding ``+-255*N`` for a one-layer network on pixels) at
        bits ``I + k*S ... I + (k+1)*S - 1``; zeros above, up to ``W``, the used width rounded
        up to whole bytes (AXI4-Stream). :meth:`manifest` gives the offsets.
    m_axis_tvalid, m_axis_tready, m_axis_tlast : Out(1), In(1), Out(1)
        ``m_axis_tlast`` is 1 on every result beat (each result is a packet).
    frame_error : Out(1)
        Sticky: some ``s_axis_tlast`` disagreed with the beat count since reset.

    Timing
    ------
    :attr:`ii` (:func:`~xnorflow.hw.compiler.plan.predict_ii`): cycles between frames in the steady
    state, the largest II of any stage, ``max over layers of (M/PE)*(N/SIMD)``. :attr:`latency`
    (:func:`~xnorflow.hw.compiler.plan.predict_latency`): cycles from the handshake of a frame's
    first ``s_axis`` beat to its result being valid on ``m_axis``, for a frame entering an idle
    network with its beats back to back and ``m_axis_tready`` high. Both equal the simulated
    cycles exactly.

    Backpressure
    ------------
    Every stage obeys the stream rules; ``s_axis_tready`` is a function of registers (the first
    MVTU's input buffer has room), ``m_axis_tvalid``/``m_axis_tdata`` come from the output FIFO's
    registers and hold while ``~m_axis_tready``. Stalls on either side lose, duplicate or reorder
    nothing.
    """

    def __init__(self, model, folding: Folding | None = None, *, with_scores: bool = True):
        self._setup(compile_plan(model, folding, with_scores=with_scores))

    @classmethod
    def from_plan(cls, plan: NetworkPlan) -> Network:
        """The component of a plan that has been through ``size_fifos`` (the build pass)."""
        if "size_fifos" not in plan.passes:
            raise ValueError(f"plan has been through {', '.join(plan.passes)}; build needs "
                             "lower, fold, insert_converters and size_fifos")
        network = cls.__new__(cls)
        network._setup(plan)
        return network

    def _setup(self, plan: NetworkPlan):
        self._plan = plan
        first, am = plan.layers[0], plan.argmax
        self._s_width = first.in_width
        used = am.out_width
        self._m_width = max(8, -(-used // 8) * 8)
        super().__init__({
            "s_axis_tdata": In(self._s_width),
            "s_axis_tvalid": In(1),
            "s_axis_tready": Out(1),
            "s_axis_tlast": In(1),
            "m_axis_tdata": Out(self._m_width),
            "m_axis_tvalid": Out(1),
            "m_axis_tready": In(1),
            "m_axis_tlast": Out(1),
            "frame_error": Out(1),
        })

    # Parameters and derived quantities (read-only).

    @property
    def plan(self) -> NetworkPlan:
        return self._plan

    @property
    def with_scores(self) -> bool:
        return self._plan.argmax.with_scores

    @property
    def classes(self) -> int:
        return self._plan.classes

    @property
    def lanes(self) -> int:
        """Pixels per ``s_axis`` beat: the first layer's SIMD, or its C where a convolution's SIMD
        is ``m*C`` (one pixel a beat; :attr:`~xnorflow.hw.compiler.ops.conv.ConvOp.in_width`)."""
        return self._s_width // 8

    @property
    def beats_per_frame(self) -> int:
        """``N0/SIMD0`` input beats per frame (the first layer's ``input_beats``)."""
        return self._plan.input_beats

    @property
    def index_width(self) -> int:
        return self._plan.argmax.index_width

    @property
    def score_shape(self):
        return self._plan.argmax.score_shape

    @property
    def tdata_layout(self) -> dict:
        """The ``m_axis_tdata`` layout: offsets and widths of the index and the scores."""
        am = self._plan.argmax
        layout = am.output_layout
        scores = None
        if am.with_scores:
            field = layout["scores"]
            scores = {"offset": field.offset, "count": field.shape.length,
                      "width": field.shape.elem_shape.width,
                      "stride": field.shape.elem_shape.width,
                      "signed": field.shape.elem_shape.signed}
        return {"width": self._m_width,
                "index": {"offset": layout["index"].offset, "width": layout["index"].width},
                "scores": scores,
                "padding": {"offset": layout.size, "width": self._m_width - layout.size}}

    @property
    def ii(self) -> int:
        return predict_ii(self._plan)

    @property
    def latency(self) -> int:
        return predict_latency(self._plan)

    def manifest(self, top: str = TOP_NAME) -> dict:
        """Everything a user of the generated top needs, as JSON-ready data."""
        plan = self._plan
        ports = [{"name": "clk", "direction": "in", "width": 1},
                 {"name": "rst", "direction": "in", "width": 1}]
        for name, member in self.signature.members.items():
            ports.append({"name": name, "direction": "in" if member.flow == In else "out",
                          "width": Shape.cast(member.shape).width})
        # Each layer's entry, with what the passes inserted next to it: an op inserted between
        # layers describes itself in the entry of the layer it names (Op.describes).
        layers, pending = [], {}
        for op in plan.ops:
            if op.is_layer:
                layers.append({**op.describe(), "fifo_depth": 0, "converter": None, **pending})
                pending = {}
            elif op.describes == "previous" and layers:
                layers[-1].update(op.describe())
            elif op.describes == "next":
                pending.update(op.describe())
        for entry, op in zip(layers, plan.layers, strict=True):
            entry["resources"] = op.resources().to_dict()
        am = plan.argmax
        ii = predict_ii(plan)
        bottleneck = max(plan.ops, key=lambda o: o.cycles_per_frame)
        return {
            "format": MANIFEST_FORMAT,
            "version": MANIFEST_VERSION,
            "top": top,
            "model_hash": plan.model_hash,
            "topology": [plan.layers[0].in_features] + [op.out_features for op in plan.layers],
            "input_shape": list(plan.input_shape),
            "classes": plan.classes,
            "with_scores": am.with_scores,
            "ports": ports,
            "reset": "rst: synchronous, active high; clk: rising edge",
            "s_axis": {"tdata_width": self._s_width, "lanes": self.lanes, "lane_bits": 8,
                       "beats_per_frame": self.beats_per_frame,
                       "order": "pixel k*lanes + l at bits 8l..8l+7 of beat k",
                       "tlast": _TLAST_POLICY},
            "m_axis_tdata": self.tdata_layout,
            "m_axis": {"beats_per_frame": 1, "tlast": "1 on every result beat"},
            "layers": layers,
            "argmax": {"pe": am.pe, "ii": am.cycles_per_frame, "latency": am.latency},
            "output_fifo_depth": OUTPUT_FIFO_DEPTH,
            "stages": [{"label": op.label, "kind": op.kind, "latency": op.latency,
                        "cycles_per_frame": op.cycles_per_frame} for op in plan.ops],
            "performance": {
                "ii_cycles": ii,
                "latency_cycles": predict_latency(plan),
                "latency_definition": _LATENCY_DEFINITION,
                "bottleneck": bottleneck.label,
                "frames_per_second_at_100mhz": round(100e6 / ii, 1),
            },
            "resources": {
                "calibrated": True,
                "note": "model from PE, SIMD and memory shapes "
                        "(xnorflow.hw.compiler.resources.LUT_MODEL), "
                        "LUT4s calibrated against Yosys per family, block RAMs exact",
                "total": plan.resources().to_dict(),
                "per_stage": {op.label: op.resources().to_dict() for op in plan.ops},
            },
            "folding": plan.folding.to_dict(),
            "passes": list(plan.passes),
        }

    def elaborate(self, platform):
        m = Module()
        stages = []
        for op in self._plan.ops:
            stage = block_for(op)
            m.submodules[op.label] = stage
            stages.append(stage)
        for src, dst in pairwise(stages):
            _connect(m, src.o_stream, dst.i_stream)

        # Input: s_axis into the first stage; tlast checked against the beat count.
        head = stages[0].i_stream
        m.d.comb += [
            Value.cast(head.payload).eq(self.s_axis_tdata),
            head.valid.eq(self.s_axis_tvalid),
            self.s_axis_tready.eq(head.ready),
        ]
        beats = self.beats_per_frame
        beat = Signal(range(beats), name="s_axis_beat")
        counted_last = Signal()
        m.d.comb += counted_last.eq(beat == beats - 1)
        with m.If(self.s_axis_tvalid & self.s_axis_tready):
            m.d.sync += beat.eq(Mux(counted_last, 0, beat + 1))
            with m.If(self.s_axis_tlast != counted_last):
                m.d.sync += self.frame_error.eq(1)

        # Output: the output FIFO onto m_axis.
        tail = stages[-1].o_stream
        m.d.comb += [
            self.m_axis_tdata.eq(Value.cast(tail.payload)),
            self.m_axis_tvalid.eq(tail.valid),
            tail.ready.eq(self.m_axis_tready),
            self.m_axis_tlast.eq(1),
        ]
        return m


def build(plan: NetworkPlan) -> Network:
    """The build pass: plan -> Amaranth component."""
    return Network.from_plan(plan)

"""The network plan, the compiler passes and the performance model.

A network accelerator is compiled from an exported :class:`~xnorflow.model.Model` by a short list
of explicit passes, each a function from a :class:`NetworkPlan` to a new one, that a test can run
and check on its own (the plan is immutable)::

    lower(model)            one op per layer (PE = SIMD = 1, by its kind), then an ArgMaxOp
    fold(plan, folding)     PE, SIMD, weight storage (and FIFO overrides) per layer
    insert_converters(plan) a ConverterOp wherever a layer's output beat is not the next's input
    size_fifos(plan)        FifoOps by the depth rule (see size_fifos), and the output FIFO
    build(plan)             the Amaranth component (xnorflow.hw.tops.network.build)

:func:`compile_plan` runs the first four. The passes call only the methods of the op protocol
(:class:`~xnorflow.hw.compiler.op.Op`), never an op's type, so a new layer kind needs only its
op. Every op has an integer reference (``execute``), its expected cycles per frame
(``cycles_per_frame``), its ``latency`` and a ``resources()`` estimate, so
``plan.execute(frames)`` can be checked against the golden model after any pass.

Performance model
-----------------
Per op: cycles per frame (``MVTU``: ``(M/PE)*(N/SIMD)``; converter: ``M/min(in, out)``; FIFO: its
beats per frame; ArgMax: ``classes/PE``). The network's initiation interval is the maximum
(:func:`predict_ii`); the input needs ``N0/SIMD0`` beats (layer 0's ``input_beats``: a
convolution folded with ``SIMD = m*C`` takes one pixel a beat), never more than layer 0's II. The
latency (:func:`predict_latency`) follows one frame through an idle network, see there. Both are
checked against simulation, exactly (the stated constant is 0).

Resource estimate
-----------------
:meth:`NetworkPlan.resources`: the sum of the ops' estimates (:mod:`xnorflow.hw.compiler.
resources`, calibrated against Yosys) and the input beat counter.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from xnorflow.hw.compiler.folding import Folding
from xnorflow.hw.compiler.op import Op, Timeline
from xnorflow.hw.compiler.ops import op_for_layer
from xnorflow.hw.compiler.ops.argmax import ArgMaxOp
from xnorflow.hw.compiler.ops.plumbing import ConverterOp
from xnorflow.hw.compiler.resources import Resources, counter_bits

__all__ = ["NetworkPlan", "compile_plan", "fold", "insert_converters", "lower", "predict_ii",
           "predict_latency", "size_fifos"]


@dataclass(frozen=True, eq=False)
class NetworkPlan:
    """The network as a list of ops in stream order, after some of the passes."""

    model_hash: str
    input_shape: tuple[int, ...]
    ops: tuple
    #: The passes applied so far, in order.
    passes: tuple[str, ...] = field(default=())

    @property
    def layers(self) -> list[Op]:
        """The ops the model's layers lowered to, in order."""
        return [op for op in self.ops if op.is_layer]

    @property
    def argmax(self) -> ArgMaxOp:
        return next(op for op in self.ops if op.kind == "argmax")

    @property
    def classes(self) -> int:
        return self.layers[-1].out_features

    @property
    def input_beats(self) -> int:
        """Beats of ``s_axis`` per frame."""
        return self.layers[0].input_beats

    @property
    def folding(self) -> Folding:
        return Folding(tuple(op.layer_folding for op in self.layers))

    @property
    def ii(self) -> int:
        return predict_ii(self)

    @property
    def latency(self) -> int:
        return predict_latency(self)

    def resources(self) -> Resources:
        # the input beat counter, then every op
        total = Resources.same_luts(10, ff=counter_bits(self.input_beats) + 1)
        for op in self.ops:
            total += op.resources()
        return total

    def execute(self, frames) -> tuple[np.ndarray, np.ndarray]:
        """Run every op's integer reference: ``(B, N0)`` pixels to ``(classes, scores)``."""
        x = np.asarray(frames, dtype=np.int64)
        argmax, scores = self.argmax, None
        for op in self.ops:
            if op is argmax:
                scores = x
            x = op.execute(x)
        return x, scores


# --- Passes -------------------------------------------------------------------------------------


def lower(model, *, with_scores: bool = True) -> NetworkPlan:
    """Model -> plan: one unfolded (PE = SIMD = 1) op per layer, by the layer's kind
    (:func:`~xnorflow.hw.compiler.ops.op_for_layer`), each fitted to the layer op before it
    (``Op.follow``), then the ArgMax."""
    model.validate()
    ops = []
    for index, layer in enumerate(model.layers):
        op = op_for_layer(layer).from_layer(index, layer)
        # a layer that depends on the one before (a pooling: its directions) takes it here
        ops.append(op.follow(ops[-1]) if ops else op)
    ops.append(ArgMaxOp(ops[-1].out_features, ops[-1].score_shape, bool(with_scores)))
    return NetworkPlan(model.content_hash, tuple(model.input_shape), tuple(ops), ("lower",))


def fold(plan: NetworkPlan, folding: Folding) -> NetworkPlan:
    """Apply a :class:`Folding` (checked against the layers): each layer op takes its entry
    (``Op.folded``), every other op fits itself to the op in front (``Op.follow``)."""
    layers = plan.layers
    folding.check(layers)
    entries = iter(folding.layers)
    ops = []
    for op in plan.ops:
        ops.append(op.folded(next(entries)) if op.is_layer else op.follow(ops[-1]))
    return replace(plan, ops=tuple(ops), passes=(*plan.passes, "fold"))


def insert_converters(plan: NetworkPlan) -> NetworkPlan:
    """A ConverterOp after each layer whose output beat (``out_width`` bits, e.g. its PE) is not
    the next layer's input beat (``in_width``, e.g. its SIMD)."""
    ops, previous = [], None
    for op in plan.ops:
        if op.is_layer and previous is not None and previous.out_width != op.in_width:
            ops.append(ConverterOp(previous.index, op.frame_bits, previous.out_width,
                                   op.in_width))
        if op.is_layer:
            previous = op
        ops.append(op)
    return replace(plan, ops=tuple(ops), passes=(*plan.passes, "insert_converters"))


def size_fifos(plan: NetworkPlan) -> NetworkPlan:
    """Insert the FIFOs each op asks for (``Op.fifo_before``, ``Op.fifo_after``), by this depth
    rule:

    - **In front of each layer: none (depth 0)** unless the folding asks for one
      (``fifo_depth``). Every block already has registered handshakes (no combinational path
      crosses a layer boundary), and the MVTU's ping-pong input buffer holds a whole second frame
      while it computes the first: a producer only ever waits on a consumer that is a full frame
      behind, which no FIFO can avoid when the consumer is the slower one (the network runs at the
      slowest layer's II either way, see :func:`predict_ii`). A requested FIFO sits after the
      width converter, ``SIMD`` bits wide. One exception: a convolution without padding and with
      ``K > S`` behind another layer always gets a FIFO of the ``K - S + (H - K) mod S`` input
      rows its line buffer cannot take at a frame boundary (a deeper ``fifo_depth`` wins), so
      that the producer is not held up there (:meth:`ConvOp.fifo_before`).
    - **Output: :data:`~xnorflow.hw.compiler.ops.argmax.OUTPUT_FIFO_DEPTH` (4) results** between
      the ArgMax and ``m_axis``: at least 3 for one result per cycle (a fully parallel network
      has II 1), it cuts the combinational path from ``m_axis_tready`` through the ArgMax into
      the last layer's output, and one more entry rides out short ``m_axis_tready`` pauses.
    """
    ops = []
    for op in plan.ops:
        before, after = op.fifo_before(), op.fifo_after()
        ops += [fifo for fifo in (before, op, after) if fifo is not None]
    return replace(plan, ops=tuple(ops), passes=(*plan.passes, "size_fifos"))


def compile_plan(model, folding: Folding | dict | None = None, *,
                 with_scores: bool = True) -> NetworkPlan:
    """lower -> fold (``folding``: a :class:`Folding`, its JSON object, or None for the default
    folding) -> insert_converters -> size_fifos."""
    plan = lower(model, with_scores=with_scores)
    if folding is None:
        folding = Folding.default(plan.layers)
    elif isinstance(folding, dict):
        folding = Folding.from_dict(folding, plan.layers)
    elif not isinstance(folding, Folding):
        raise TypeError(f"folding must be a Folding, a dict or None, not {folding!r}")
    return size_fifos(insert_converters(fold(plan, folding)))


# --- Performance model --------------------------------------------------------------------------


def predict_ii(plan: NetworkPlan) -> int:
    """Cycles between successive frames in the steady state (input always valid, output always
    ready): the largest ``cycles_per_frame`` of any op (and of the input, ``N0/SIMD0`` beats)."""
    return max(plan.input_beats, *(op.cycles_per_frame for op in plan.ops))


def predict_latency(plan: NetworkPlan) -> int:
    """Cycles from the handshake of a frame's first input beat to its result being valid on
    ``m_axis``, for one frame entering an idle network with its ``N0/SIMD0`` input beats back to
    back and ``m_axis_tready`` high.

    Walks the ops in order with a :class:`~xnorflow.hw.compiler.op.Timeline`, each op advancing
    it (``Op.advance``): the input's last beat at ``SF0 - 1``; a FIFO ``+2``; an MVTU's first
    output beat at ``last + latency`` (4 + tree depth), then one beat every
    ``SF`` cycles, so its last at ``first + (NF-1)*SF``; a converter see
    :meth:`ConverterOp.advance`; the ArgMax ``+1``. Nothing waits on anything else in an idle
    network (each MVTU's empty input half takes a whole frame), except a converter pushing back
    on a faster producer, which that formula includes.
    """
    t = Timeline(last=plan.input_beats - 1)
    for op in plan.ops:
        t = op.advance(t)
    return t.last

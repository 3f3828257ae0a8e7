"""The argmax of a score stream: the predicted class of the last layer (docs/semantics.md 3.3)."""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Shape, Signal, Value
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from xnorflow.hw.blocks.registry import implements
from xnorflow.hw.compiler.ops.argmax import ArgMaxOp

__all__ = ["ArgMax"]


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


@implements(ArgMaxOp)
class ArgMax(wiring.Component):
    """Predicted class of a frame of ``classes`` scores arriving ``PE`` per beat.

    The predicted class is the index of the largest score; ties go to the lowest index.

    Parameters
    ----------
    classes : int
        Number of scores per frame (``M`` of the last layer).
    pe : int
        Scores per input beat; must divide ``classes``.
    score_shape : shape-like
        Shape of one score (e.g. :attr:`MVTU.score_shape`); signed shapes compare as signed.
    with_scores : bool
        Also output all ``classes`` scores with the index (default False).

    Ports
    -----
    i_stream : In(stream.Signature(data.ArrayLayout(score_shape, PE)))
        ``classes / PE`` beats per frame; beat ``f`` element ``p`` is the score of class
        ``f*PE + p`` (the score stream of :class:`MVTU`).
    o_stream : Out(stream.Signature(output_layout))
        One beat per frame. :attr:`output_layout` is a ``data.StructLayout`` with ``index``
        (``range(classes)``) at bit 0 and, when ``with_scores``, ``scores``
        (``data.ArrayLayout(score_shape, classes)``, score ``i`` at bits ``i*width ...``) above it.

    Timing
    ------
    Initiation interval (:attr:`ii`): ``classes / PE`` cycles per frame (one input beat per
    cycle). Latency (:attr:`latency`): 1 cycle, from the handshake of a frame's last input beat to
    its output beat being valid.

    Backpressure
    ------------
    Beats other than a frame's last only update internal registers and are always accepted. The
    last beat is accepted only when the output register is free or being emptied
    (``~o_stream.valid | o_stream.ready``), a combinational path from ``o_stream.ready`` to
    ``i_stream.ready``. ``o_stream.valid`` is a register that does not wait on ``ready``; the
    payload holds while ``valid & ~ready``.
    """

    @classmethod
    def from_op(cls, op: ArgMaxOp) -> ArgMax:
        """The block of a :class:`~xnorflow.hw.compiler.ops.argmax.ArgMaxOp`."""
        return cls(op.classes, op.pe, op.score_shape, with_scores=op.with_scores)

    def __init__(self, classes, pe, score_shape, *, with_scores=False):
        if not _is_int(classes) or classes < 1:
            raise ValueError(f"Number of classes ({classes!r}) must be a positive integer")
        if not _is_int(pe) or pe < 1:
            raise ValueError(f"PE ({pe!r}) must be a positive integer")
        if classes % pe:
            raise ValueError(f"PE ({pe}) must divide the classes ({classes})")
        try:
            score_shape = Shape.cast(score_shape)
        except TypeError as error:
            raise ValueError(f"score_shape ({score_shape!r}) must be a shape") from error
        self._classes = classes
        self._pe = pe
        self._score_shape = score_shape
        self._with_scores = bool(with_scores)
        fields = {"index": range(classes)}
        if self._with_scores:
            fields["scores"] = data.ArrayLayout(score_shape, classes)
        self._output_layout = data.StructLayout(fields)
        super().__init__({
            "i_stream": In(stream.Signature(data.ArrayLayout(score_shape, pe))),
            "o_stream": Out(stream.Signature(self._output_layout)),
        })

    @property
    def classes(self):
        return self._classes

    @property
    def pe(self):
        return self._pe

    @property
    def score_shape(self):
        return self._score_shape

    @property
    def with_scores(self):
        return self._with_scores

    @property
    def output_layout(self):
        """The ``data.StructLayout`` of the output payload."""
        return self._output_layout

    @property
    def folds(self):
        """Input beats per frame: ``classes / PE``."""
        return self._classes // self._pe

    @property
    def ii(self):
        """Initiation interval in cycles per frame."""
        return self.folds

    @property
    def latency(self):
        """Cycles from a frame's last input beat being accepted to its result being valid."""
        return 1

    def elaborate(self, platform):
        m = Module()
        nf, pe = self.folds, self._pe
        i_stream, o_stream = self.i_stream, self.o_stream

        beat = Signal(range(nf))
        base = Signal(range(self._classes))  # beat * PE, the class of the beat's element 0
        first = Signal()
        last = Signal()
        accept = Signal()
        m.d.comb += [
            first.eq(beat == 0),
            last.eq(beat == nf - 1),
            i_stream.ready.eq(~last | ~o_stream.valid | o_stream.ready),
            accept.eq(i_stream.valid & i_stream.ready),
        ]

        # Best of the beat: a comparator tree in which the left node always holds the lower
        # indices, so that the right one wins only when strictly greater.
        nodes = []
        for p in range(pe):
            score = Signal(self._score_shape, name=f"score{p}")
            index = Signal(range(pe), name=f"index{p}")
            m.d.comb += [score.eq(i_stream.payload[p]), index.eq(p)]
            nodes.append((score, index))
        level = 0
        while len(nodes) > 1:
            level += 1
            merged = []
            for n in range(0, len(nodes) - 1, 2):
                (a_score, a_index), (b_score, b_index) = nodes[n], nodes[n + 1]
                score = Signal(self._score_shape, name=f"l{level}_score{n // 2}")
                index = Signal(range(pe), name=f"l{level}_index{n // 2}")
                take_b = Signal(name=f"l{level}_take{n // 2}")
                m.d.comb += [take_b.eq(b_score > a_score),
                             score.eq(Mux(take_b, b_score, a_score)),
                             index.eq(Mux(take_b, b_index, a_index))]
                merged.append((score, index))
            if len(nodes) % 2:
                merged.append(nodes[-1])
            nodes = merged
        beat_score, beat_index = nodes[0]

        # Running best of the frame (earlier beats hold lower indices).
        best_score = Signal(self._score_shape)
        best_index = Signal(range(self._classes))
        new_score = Signal(self._score_shape)
        new_index = Signal(range(self._classes))
        take_beat = Signal()
        m.d.comb += [
            take_beat.eq(first | (beat_score > best_score)),
            new_score.eq(Mux(take_beat, beat_score, best_score)),
            new_index.eq(Mux(take_beat, base + beat_index, best_index)),
        ]

        width = self._score_shape.width
        stored = Signal(max(0, (nf - 1) * pe * width), name="stored_scores")

        with m.If(o_stream.ready):
            m.d.sync += o_stream.valid.eq(0)
        with m.If(accept):
            m.d.sync += [best_score.eq(new_score), best_index.eq(new_index)]
            with m.If(last):
                m.d.sync += [beat.eq(0), base.eq(0), o_stream.valid.eq(1),
                             o_stream.payload.index.eq(new_index)]
                if self._with_scores:
                    m.d.sync += Value.cast(o_stream.payload.scores).eq(
                        Cat(stored, Value.cast(i_stream.payload)))
            with m.Else():
                m.d.sync += [beat.eq(beat + 1), base.eq(base + pe)]
                if self._with_scores and nf > 1:
                    with m.Switch(beat):
                        for f in range(nf - 1):
                            with m.Case(f):
                                chunk = slice(f * pe * width, (f + 1) * pe * width)
                                m.d.sync += stored[chunk].eq(Value.cast(i_stream.payload))
        return m

"""The op protocol: what every stage of a :class:`~xnorflow.hw.compiler.plan.NetworkPlan` provides.

An op is one block of the accelerator as the compiler sees it: typed fields, an integer reference
(``execute``), the cycles it needs per frame, its latency, a resource estimate, and the hooks the
passes call (so no pass tests an op's type). The gateware that implements an op is found by
:func:`xnorflow.hw.blocks.block_for`; the block takes its structural rules from
:mod:`xnorflow.hw.compiler.rules`, as the op does.

An op that a model layer lowers to names the layer kind in ``layer_kind`` (the ``kind`` of the
model's layer class, e.g. ``"dense"``) and is registered for it by subclassing :class:`Op`;
:func:`xnorflow.hw.compiler.ops.op_for_layer` finds it. Ops the passes insert (width converters,
FIFOs) have none.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import ClassVar

__all__ = ["LAYER_OPS", "Op", "Timeline", "beat_times", "uneven"]

#: The op class of each model layer kind, filled by subclassing :class:`Op` with ``layer_kind``.
LAYER_OPS: dict[str, type[Op]] = {}


@dataclass(frozen=True)
class Timeline:
    """One frame walking an idle network in stream order (:func:`~xnorflow.hw.compiler.plan.
    predict_latency`): ``last`` is the cycle in which the current stream's last beat of the frame
    is handed over; after a unit that emits its output beats spaced apart, ``first`` is the cycle
    its first output beat is valid and ``spacing`` the cycles between beats (None before);
    ``beats``, when a unit emits its beats unevenly (a convolution), the cycle in which each of
    them is valid (None: evenly spaced, or back to back up to ``last``)."""

    last: int
    first: int | None = None
    spacing: int | None = None
    beats: tuple[int, ...] | None = None


def beat_times(t: Timeline, count: int) -> list[int]:
    """The cycle each of the ``count`` beats of a frame is valid in, from the :class:`Timeline`
    of the stream: its ``beats`` when they describe this stream (``count`` of them, the last at
    ``last``), else evenly spaced from ``first`` by ``spacing`` when that ends at ``last``, else
    back to back up to ``last``."""
    if t.beats is not None and len(t.beats) == count and t.beats[-1] == t.last:
        return list(t.beats)
    if (t.first is not None and t.spacing is not None
            and t.first + (count - 1) * t.spacing == t.last):
        return [t.first + i * t.spacing for i in range(count)]
    return [t.last - count + 1 + i for i in range(count)]


def uneven(beats) -> Timeline:
    """The :class:`Timeline` of a stream whose beats are valid in the cycles ``beats``; its
    ``spacing`` (for an op that reads only ``first`` and ``spacing``) is the mean, rounded
    down."""
    spacing = (beats[-1] - beats[0]) // (len(beats) - 1) if len(beats) > 1 else 1
    return Timeline(last=beats[-1], first=beats[0], spacing=spacing, beats=tuple(beats))


class Op:
    """Base of every op. Subclasses are frozen dataclasses that set ``kind`` (and, for a layer,
    ``layer_kind``) and provide ``label``, ``latency``, ``cycles_per_frame``, ``in_width`` and
    ``out_width`` (bits per beat), ``execute`` and ``resources``; the defaults below are those of
    a stage that passes a stream through."""

    #: The op's kind, e.g. ``"dense"``, ``"converter"``; names the stage in manifests.
    kind: ClassVar[str]
    #: The model layer kind this op lowers (None: an op the passes insert).
    layer_kind: ClassVar[str | None] = None

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        kind = cls.__dict__.get("layer_kind")
        if kind is not None:
            if kind in LAYER_OPS and LAYER_OPS[kind].__qualname__ != cls.__qualname__:
                raise TypeError(f"layer kind {kind!r} has two ops: {LAYER_OPS[kind].__name__} "
                                f"and {cls.__name__}")
            LAYER_OPS[kind] = cls

    @property
    def is_layer(self) -> bool:
        """Whether a model layer lowered to this op (it then has ``index`` and a folding)."""
        return self.layer_kind is not None

    # -- lower --------------------------------------------------------------------------------
    @classmethod
    def from_layer(cls, index: int, layer) -> Op:
        """The unfolded op of the model's layer ``index`` (layer ops only)."""
        raise NotImplementedError(f"{cls.__name__} is not lowered from a model layer")

    # -- fold ---------------------------------------------------------------------------------
    def folded(self, entry) -> Op:
        """This layer op under the :class:`~xnorflow.hw.compiler.folding.LayerFolding`
        ``entry`` (layer ops only)."""
        raise NotImplementedError(f"{type(self).__name__} takes no folding")

    def follow(self, previous: Op) -> Op:
        """This op fitted to the (folded) op in front of it; by default unchanged."""
        return self

    # -- size_fifos ---------------------------------------------------------------------------
    def fifo_before(self) -> Op | None:
        """A FIFO to put in front of this op, or None."""
        return None

    def fifo_after(self) -> Op | None:
        """A FIFO to put behind this op, or None."""
        return None

    # -- manifest -----------------------------------------------------------------------------
    #: Which layer's manifest entry an inserted op adds its fields to: ``"previous"`` (the layer
    #: in front of it) or ``"next"`` (the layer it feeds).
    describes: ClassVar[str] = "next"

    def describe(self) -> dict:
        """The op's fields for the accelerator's manifest: a layer op's entry, or (an inserted
        op) the fields it adds to the entry of the layer it feeds."""
        return {}

    # -- performance model --------------------------------------------------------------------
    def advance(self, t: Timeline) -> Timeline:
        """The frame's :class:`Timeline` behind this op; by default every beat leaves ``latency``
        cycles after it arrived."""
        shift = self.latency
        return replace(t, last=t.last + shift,
                       first=None if t.first is None else t.first + shift,
                       beats=None if t.beats is None else tuple(b + shift for b in t.beats))

    def execute(self, x):
        """The integer reference; by default the stream passes unchanged."""
        return x


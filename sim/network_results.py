"""Results of the generated accelerator, decoded and compared with the golden model.

Plain Python (no simulator): :mod:`xnorflow.sim.tb_network` uses it inside cocotb, the tests
check it on their own. The ``m_axis_tdata`` layout is read from the manifest that
:func:`xnorflow.hw.tops.network.generate` writes (``manifest["m_axis_tdata"]``), never from the
hardware's own data structures; the pixel packing of the input beats follows
``docs/semantics.md`` section 4.

Comparison (:func:`compare`)
    A result is the pair ``(class, scores)``; with ``with_scores`` false only the class is
    compared. The accelerator's results carry no frame number, so how a wrong stream went wrong
    is inferred from the values, by aligning the received results with the expected ones
    (:class:`difflib.SequenceMatcher`, longest matching runs, no junk heuristic):

    ``mismatches``
        frames ``i`` (of the ``frames`` sent) whose ``i``-th received result is missing or is not
        bit-exact (class or any score): 0 exactly when every frame came out once, in order, right.
        This is the headline number; the others explain it.
    ``lost``
        frames whose expected result is not in the stream at all (counted after pairing
        ``reordered`` and ``corrupted`` results).
    ``duplicated``
        received results outside the alignment that repeat an expected result already delivered
        (a frame out twice), plus received results beyond the count that match nothing.
    ``reordered``
        received results outside the alignment that equal an expected result also outside it,
        paired one to one: a frame's result delivered out of its place.
    ``corrupted``
        received results outside the alignment that equal no expected result, paired one to one
        with the left-over expected results (a frame out with wrong bits).
"""

from __future__ import annotations

from collections import defaultdict, deque
from dataclasses import dataclass
from difflib import SequenceMatcher

import numpy as np

__all__ = ["Comparison", "ResultLayout", "compare", "frame_beats"]


@dataclass(frozen=True)
class ResultLayout:
    """The ``m_axis_tdata`` layout of a manifest: the class index at ``index_offset`` (width
    ``index_width``), then ``count`` scores of ``score_width`` bits every ``stride`` bits from
    ``scores_offset`` (two's complement when ``signed``); ``count = 0`` without scores."""

    width: int
    index_offset: int
    index_width: int
    scores_offset: int = 0
    count: int = 0
    score_width: int = 0
    stride: int = 0
    signed: bool = False

    @classmethod
    def from_manifest(cls, manifest: dict) -> ResultLayout:
        layout = manifest["m_axis_tdata"]
        index, scores = layout["index"], layout["scores"]
        if scores is None:
            return cls(layout["width"], index["offset"], index["width"])
        return cls(layout["width"], index["offset"], index["width"], scores["offset"],
                   scores["count"], scores["width"], scores["stride"], bool(scores["signed"]))

    @property
    def with_scores(self) -> bool:
        return self.count > 0

    def decode(self, word: int) -> tuple[int, tuple[int, ...]]:
        """``(class, scores)`` of one ``m_axis_tdata`` word (scores ``()`` without scores)."""
        cls = (word >> self.index_offset) & ((1 << self.index_width) - 1)
        if not self.count:
            return cls, ()
        mask, sign = (1 << self.score_width) - 1, 1 << (self.score_width - 1)
        scores = []
        for k in range(self.count):
            value = (word >> (self.scores_offset + k * self.stride)) & mask
            if self.signed and value & sign:
                value -= 1 << self.score_width
            scores.append(value)
        return cls, tuple(scores)

    def padding(self, word: int) -> int:
        """The bits above the used fields (must be 0)."""
        used = self.scores_offset + self.count * self.stride if self.count else \
            self.index_offset + self.index_width
        return word >> used


def frame_beats(frames: np.ndarray, lanes: int) -> list[list[int]]:
    """The ``s_axis_tdata`` words of each frame: ``N0/lanes`` beats, pixel ``k*lanes + l`` at bits
    ``8l ... 8l+7`` of beat ``k`` (docs/semantics.md section 4)."""
    frames = np.ascontiguousarray(frames, dtype=np.uint8)
    count, n0 = frames.shape
    if n0 % lanes:
        raise ValueError(f"{lanes} lanes do not divide the {n0} pixels of a frame")
    chunks = frames.reshape(count, n0 // lanes, lanes)
    return [[int.from_bytes(chunk.tobytes(), "little") for chunk in frame] for frame in chunks]


@dataclass(frozen=True)
class Comparison:
    """The outcome of :func:`compare` (see the module docstring for the counts)."""

    frames: int
    received: int
    mismatches: int
    class_mismatches: int
    score_mismatches: int
    lost: int
    duplicated: int
    reordered: int
    corrupted: int
    #: The first frame whose result is wrong: ``{"frame", "expected", "got"}`` or None.
    first_mismatch: dict | None

    @property
    def ok(self) -> bool:
        return self.mismatches == 0 and self.received == self.frames

    def to_dict(self) -> dict:
        return {"frames": self.frames, "received": self.received, "mismatches": self.mismatches,
                "class_mismatches": self.class_mismatches,
                "score_mismatches": self.score_mismatches, "lost": self.lost,
                "duplicated": self.duplicated, "reordered": self.reordered,
                "corrupted": self.corrupted, "first_mismatch": self.first_mismatch}


def _show(result):
    cls, scores = result
    return {"class": int(cls), "scores": [int(s) for s in scores]}


def compare(expected: list[tuple], received: list[tuple]) -> Comparison:
    """Compare received ``(class, scores)`` results with the expected ones, frame by frame."""
    n = len(expected)
    mismatches = class_mm = score_mm = 0
    first = None
    for i, exp in enumerate(expected):
        got = received[i] if i < len(received) else None
        if got == exp:
            continue
        mismatches += 1
        if got is None or got[0] != exp[0]:
            class_mm += 1
        if got is None or got[1] != exp[1]:
            score_mm += 1
        if first is None:
            first = {"frame": i, "expected": _show(exp),
                     "got": None if got is None else _show(got)}
    lost = duplicated = reordered = corrupted = 0
    if received != expected:
        lost, duplicated, reordered, corrupted = _classify(expected, received)
    return Comparison(n, len(received), mismatches, class_mm, score_mm, lost, duplicated,
                      reordered, corrupted, first)


def _classify(expected, received):
    """``(lost, duplicated, reordered, corrupted)`` from an alignment (module docstring)."""
    matcher = SequenceMatcher(None, expected, received, autojunk=False)
    free_expected, free_received = [], []
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag != "equal":
            free_expected.extend(range(i1, i2))
            free_received.extend(range(j1, j2))
    waiting = defaultdict(deque)  # value -> expected positions outside the alignment
    for i in free_expected:
        waiting[expected[i]].append(i)
    known = set(expected)
    reordered = duplicated = 0
    wrong = []
    for j in free_received:
        value = received[j]
        if waiting[value]:
            waiting[value].popleft()
            reordered += 1
        elif value in known:
            duplicated += 1
        else:
            wrong.append(j)
    left = sum(len(q) for q in waiting.values())
    corrupted = min(left, len(wrong))
    duplicated += len(wrong) - corrupted
    return left - corrupted, duplicated, reordered, corrupted

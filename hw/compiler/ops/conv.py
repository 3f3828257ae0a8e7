"""The op of a convolution: a sliding-window generator feeding a matrix-vector-threshold unit
(the gateware: :class:`xnorflow.hw.blocks.conv.ConvUnit`), its integer reference, cycles,
latency and resources."""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cached_property, lru_cache

import numpy as np

from xnorflow.hw.compiler.folding import FULL_RATE_DEPTH, LayerFolding
from xnorflow.hw.compiler.op import Op, Timeline, beat_times, uneven
from xnorflow.hw.compiler.ops.dense import LEVELS_PER_STAGE, DenseOp
from xnorflow.hw.compiler.ops.plumbing import FifoOp
from xnorflow.hw.compiler.resources import Resources, counter_bits, mux_luts
from xnorflow.hw.compiler.rules import (
    window_bank_words,
    window_buffer_style,
    window_columns,
    window_in_lanes,
    window_output_size,
    window_rows,
)
from xnorflow.model import ConvShapes

__all__ = ["ConvOp", "conv_schedule"]

#: Frames of the schedule from whose last two the II is read (the steady state is reached from
#: the second frame on; the schedule is periodic from there).
_II_FRAMES = 5


def _need(oy, h, kernel, stride, padding):
    """Input rows of its frame that output row ``oy`` reads, up to its lowest."""
    return min(h, oy * stride - padding + kernel)


@lru_cache(maxsize=256)
def conv_schedule(in_shape, kernel, stride, padding, simd, nf, latency, register_buffer,
                  arrivals):
    """A beat-level model of a :class:`~xnorflow.hw.blocks.conv.ConvUnit` whose output is always
    ready: ``(accepted, outputs)``, the cycle each input beat is taken and the cycle each output
    beat is valid, for input beats offered from the cycles ``arrivals`` (a tuple, frames back to
    back, ``H*W*C/SIMD_in`` beats each: ``SIMD_in`` is SIMD, or C where SIMD is ``m*C``,
    :func:`~xnorflow.hw.compiler.rules.window_in_lanes`).

    Window generator (:class:`~xnorflow.hw.blocks.window.SlidingWindow`, the rules of
    :func:`~xnorflow.hw.compiler.rules.window_timeline`): input row ``x`` (over all frames) goes
    to slot ``x mod (K+S)`` and its beats are taken from the cycle its slot is free, one per cycle
    at most; an output row issues its first beat once the rows it reads are complete (the cycle
    after their last beat); an output beat issued in cycle ``s`` is valid in ``s + 1`` and handed
    over in ``h >= s + 1``; the next beat issues at ``h`` at the earliest; the rows above the
    next output row are free from the cycle after the last beat of an output row issues.

    Unit (:class:`~xnorflow.hw.blocks.mvtu.MVTU`, ``SF = K*K*C/SIMD`` chunks per window, ``NF``
    folds): the chunks of window ``w`` are written into half ``w mod 2`` of its input buffer, free
    from the cycle after the last read of window ``w - 2``; with the two-register buffer
    (``SF = 1``, ``NF >= 3``) from two cycles after the first read of window ``w - 1``. The reader
    issues one chunk per cycle, chunk ``k`` of the first fold at the earliest the cycle after it
    was written, the later folds behind it; fold ``f``'s result is valid ``latency - 1`` cycles
    after its last chunk issued.
    """
    h, w, c = in_shape
    oh = window_output_size(h, kernel, stride, padding)
    ow = window_output_size(w, kernel, stride, padding)
    row_in = w * c // window_in_lanes(c, simd)
    sf = kernel * kernel * c // simd
    rows = window_rows(kernel, stride)
    frames = len(arrivals) // (h * row_in)
    accepted, outputs = [], []
    in_end, releases = [], []   # last beat of each input row; (rows freed, from which cycle)
    x = 0
    handed = None               # handshake of the window generator's last output beat
    reader = -1                 # the unit's last read
    first_reads, last_reads = [], []

    def write_rows(upto):
        """Take the input rows up to ``upto`` (counted over all frames), each once its slot is
        free."""
        nonlocal x
        while x < upto:
            free = 0 if x < rows else next(
                cycle for freed, cycle in releases if freed > x - rows)
            for i in range(row_in):
                previous = accepted[-1] + 1 if accepted else 0
                accepted.append(max(arrivals[x * row_in + i], previous, free))
            in_end.append(accepted[-1])
            x += 1

    for f in range(frames):
        for oy in range(oh):
            need = f * h + _need(oy, h, kernel, stride, padding)
            write_rows(need)
            gate = in_end[need - 1] + 1
            issue = None
            for _ in range(ow):
                index = len(first_reads)
                if register_buffer:
                    room = 0 if index == 0 else first_reads[index - 1] + 2
                else:
                    room = 0 if index < 2 else last_reads[index - 2] + 1
                first = None
                for _ in range(sf):
                    issue = gate if handed is None else max(handed, gate)
                    handed = max(issue + 1, room)
                    reader = max(reader + 1, handed + 1)
                    if first is None:
                        first = reader
                first_reads.append(first)
                end = reader
                reader = end + (nf - 1) * sf
                last_reads.append(reader)
                outputs += [end + fold * sf + latency - 1 for fold in range(nf)]
            freed = (f + 1) * h if oy == oh - 1 else f * h + max(0, (oy + 1) * stride - padding)
            releases.append((freed, issue + 1))
    # The last frame's rows below its last output row's (a stride that skips them): read by
    # no output row, still taken, once their slots are free.
    write_rows(frames * h)
    return tuple(accepted), tuple(outputs)


@dataclass(frozen=True, eq=False)
class ConvOp(Op, ConvShapes):
    """One convolution (docs/semantics.md section 5.2) as a sliding-window generator feeding a
    matrix-vector-threshold unit over its windows (``N = K*K*C`` inputs, ``M`` outputs), the two
    sharing ``simd``: ``pe`` divides M, ``simd`` divides C or is ``m*C`` for an ``m > 1``
    dividing K (:attr:`columns` kernel columns per beat; the input is then one pixel, C
    elements, a beat: :attr:`in_lanes`)."""

    index: int
    name: str
    in_shape: tuple[int, int, int]
    out_channels: int
    kernel: int
    stride: int
    padding: int
    pad_value: int
    input_bits: int
    weights: np.ndarray  #: bool (M, K*K*C), window order (ky, kx, ch), read-only
    thresholds: np.ndarray  #: int64 (M,)
    directions: np.ndarray  #: int64 (M,) of +1/-1
    pe: int = 1
    simd: int = 1
    storage: str = "bram"
    #: Depth of the FIFO in front, as the folding asked; None: the rule of size_fifos.
    fifo_request: int | None = None
    levels_per_stage: int = LEVELS_PER_STAGE
    #: Where the unit's input buffer lives (None: its rule).
    buffer: str | None = None
    #: Where the window generator's line buffer lives (None: its rule).
    line_buffer: str | None = None

    kind = "conv2d"
    layer_kind = "conv2d"

    @classmethod
    def from_layer(cls, index: int, layer) -> ConvOp:
        """The unfolded (PE = SIMD = 1) op of a :class:`~xnorflow.model.ConvLayer`."""
        weights = layer.weight_bits().astype(bool)
        t = layer.thresholds.astype(np.int64)
        d = layer.directions.astype(np.int64)
        for array in (weights, t, d):
            array.flags.writeable = False
        return cls(index, layer.name, tuple(layer.in_shape), layer.out_channels, layer.kernel,
                   layer.stride, layer.padding, layer.pad_value, layer.input_bits, weights, t, d)

    def folded(self, entry: LayerFolding) -> ConvOp:
        return replace(self, pe=entry.pe, simd=entry.simd, storage=entry.storage,
                       fifo_request=entry.fifo_depth, buffer=entry.buffer,
                       line_buffer=entry.line_buffer)

    @property
    def layer_folding(self) -> LayerFolding:
        """The folding entry this op was folded by."""
        return LayerFolding(self.pe, self.simd, self.storage, self.fifo_request, self.buffer,
                            self.line_buffer)

    @property
    def label(self) -> str:
        return f"layer{self.index}"

    # -- shapes -----------------------------------------------------------------------------
    @property
    def is_score(self) -> bool:
        return False

    @cached_property
    def mvtu(self) -> DenseOp:
        """The unit over the windows, as a dense op of ``K*K*C`` inputs: its folds, latency and
        resources are the unit's."""
        return DenseOp(self.index, self.name, self.window, self.out_channels, self.input_bits,
                       self.weights, self.thresholds, self.directions, self.pe, self.simd,
                       self.storage, None, self.levels_per_stage, self.buffer)

    @property
    def nf(self) -> int:
        """Neuron fold M/PE: output beats per position (the unit's)."""
        return self.mvtu.nf

    @property
    def sf(self) -> int:
        """Synapse fold K*K*C/SIMD: beats per window (the unit's)."""
        return self.mvtu.sf

    @property
    def columns(self) -> int:
        """Kernel columns per window beat: ``m`` where SIMD is ``m*C``, else 1."""
        return window_columns(self.in_shape[2], self.simd)

    @property
    def in_lanes(self) -> int:
        """Elements per input beat: SIMD where it divides C, else C (one pixel a beat)."""
        return window_in_lanes(self.in_shape[2], self.simd)

    @property
    def in_width(self) -> int:
        """Bits per input beat, ``in_lanes * input_bits`` (the unit's SIMD lanes are the window
        generator's output)."""
        return self.in_lanes * self.input_bits

    @property
    def out_width(self) -> int:
        return self.mvtu.out_width

    @property
    def input_beats(self) -> int:
        """Beats of input per frame, ``H*W*C/SIMD_in`` (:attr:`in_lanes`)."""
        return self.in_features // self.in_lanes

    @property
    def output_beats(self) -> int:
        """Beats of output per frame, ``OH*OW*M/PE``."""
        return self.out_features // self.pe

    @property
    def frame_bits(self) -> int:
        """Bits of one frame's input."""
        return self.in_features * self.input_bits

    @property
    def line_buffer_style(self) -> str:
        """Where the window generator's line buffer lives: the folding's ``line_buffer``, else
        its rule (:func:`~xnorflow.hw.compiler.rules.window_buffer_style`)."""
        if self.line_buffer is not None:
            return self.line_buffer
        h, w, c = self.in_shape
        return window_buffer_style(window_rows(self.kernel, self.stride),
                                   self.columns * window_bank_words(w, c, self.simd),
                                   self.in_width)

    # -- performance model ------------------------------------------------------------------
    def cycles_for(self, pe: int, simd: int) -> int:
        """A lower bound of the cycles per frame under ``(pe, simd)`` (what the default folding
        ranks by): the input's ``H*W*C/SIMD_in`` beats (:attr:`in_lanes`) and the unit's
        ``OH*OW*(M/PE)*(K*K*C/SIMD)`` cycles."""
        oh, ow, m = self.out_shape
        lanes = window_in_lanes(self.in_shape[2], simd)
        return max(self.in_features // lanes, oh * ow * (m // pe) * (self.window // simd))

    def schedule(self, arrivals) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """:func:`conv_schedule` of this op: ``(accepted, outputs)``, the cycle each input beat
        is taken and the cycle each output beat is valid, for input beats offered from the
        cycles ``arrivals`` (frames back to back) and an output that is always ready."""
        return conv_schedule(self.in_shape, self.kernel, self.stride, self.padding, self.simd,
                             self.nf, self.mvtu.latency, self.sf == 1 and self.nf >= 3,
                             tuple(arrivals))

    @cached_property
    def cycles_per_frame(self) -> int:
        """Cycles between frames in the steady state (input always valid, output always ready),
        from :func:`conv_schedule` over frames back to back: at least the window generator's
        (:func:`~xnorflow.hw.compiler.rules.window_cycles_per_frame`) and the unit's
        ``OH*OW*(M/PE)*(K*K*C/SIMD)``, more where the unit's two-window buffer cannot hide the
        window generator's pause at a frame boundary."""
        _, outputs = self.schedule((0,) * (self.input_beats * _II_FRAMES))
        per = self.output_beats
        return outputs[-1] - outputs[-1 - per]

    @cached_property
    def latency(self) -> int:
        """Cycles from the handshake of a frame's first input beat to its first output beat being
        valid, idle unit, input back to back (:func:`conv_schedule`)."""
        _, outputs = self.schedule(range(self.input_beats))
        return outputs[0]

    def advance(self, t: Timeline) -> Timeline:
        """The output beats of :func:`conv_schedule` for the input beats of ``t``
        (:func:`beat_times`)."""
        _, outputs = self.schedule(beat_times(t, self.input_beats))
        return uneven(outputs)

    # -- integer reference ------------------------------------------------------------------
    def windows(self, x: np.ndarray) -> np.ndarray:
        """``(B, H*W*C)`` elements to the windows ``(B, OH, OW, K*K*C)`` in the order ``ky``,
        ``kx``, ``ch`` (docs/semantics.md section 5.2), the padding holding ``pad_value``."""
        h, w, c = self.in_shape
        k, s, p = self.kernel, self.stride, self.padding
        oh, ow, _ = self.out_shape
        maps = np.asarray(x, dtype=np.int64).reshape(-1, h, w, c)
        padded = np.pad(maps, ((0, 0), (p, p), (p, p), (0, 0)), constant_values=self.pad_value)
        rows = (np.arange(oh) * s)[:, None] + np.arange(k)[None, :]     # (OH, K)
        cols = (np.arange(ow) * s)[:, None] + np.arange(k)[None, :]     # (OW, K)
        win = padded[:, rows[:, None, :, None], cols[None, :, None, :], :]  # (B,OH,OW,K,K,C)
        return win.reshape(maps.shape[0], oh, ow, self.window)

    def execute(self, x: np.ndarray) -> np.ndarray:
        """Integer reference (docs/semantics.md section 5.2): ``(B, H*W*C)`` pixels or bits to the
        ``(B, OH*OW*M)`` output bits, the map in its order (section 5.1)."""
        win = self.windows(x)
        batch = win.shape[0]
        bits = self.mvtu.execute(win.reshape(-1, self.window))
        return bits.reshape(batch, self.out_features)

    # -- compiler hooks ---------------------------------------------------------------------
    @property
    def boundary_rows(self) -> int:
        """Input rows of the next frame that the window generator cannot take while its frame's
        last output row holds the rows it reads: ``K - S + (H - K) mod S`` without padding and
        with ``K > S`` (the next frame's first output row needs ``K`` rows, the line buffer has
        ``S`` free, and the rows below the last output row's hold theirs until the frame ends),
        else 0 (with ``P = K // 2`` the first output row needs only ``K - P`` rows, and
        ``S + P`` are free)."""
        h = self.in_shape[0]
        k, s = self.kernel, self.stride
        if self.padding or k <= s:
            return 0
        return k - s + (h - k) % s

    def fifo_before(self) -> FifoOp | None:
        """The FIFO in front, an input beat (:attr:`in_width`) wide: the folding's
        ``fifo_depth``, and for a convolution that does not take the frame (``index > 0``) and
        has :attr:`boundary_rows`, at least those rows (``boundary_rows * W*C/SIMD_in`` beats, at
        least
        :data:`~xnorflow.hw.compiler.folding.FULL_RATE_DEPTH`; a ``fifo_depth`` of 0 does not
        remove it).

        Why: the cycles per frame (:attr:`cycles_per_frame`) assume input beats offered every
        cycle, so that at a frame boundary the rows the window generator could not take while
        its last output row ran come in one per cycle. Behind another layer they come at that
        layer's pace, and the next frame would wait for it: the measured II of a network of
        convolutions came out above the prediction (the shipped ``scnv``: 20,418 cycles instead
        of 17,496). Holding those rows in a FIFO, written while the last output row runs, makes
        the prediction exact again. The first layer's input is the network's input, which the
        II assumes always valid."""
        depth = self.fifo_request or 0
        if self.index > 0 and self.boundary_rows:
            h, w, c = self.in_shape
            depth = max(depth, FULL_RATE_DEPTH, self.boundary_rows * w * c // self.in_lanes)
        if not depth:
            return None
        return FifoOp(self.label, self.in_width, depth, self.input_beats)

    def describe(self) -> dict:
        """The layer's entry in the accelerator's manifest."""
        return {"index": self.index, "name": self.name, "kind": self.kind,
                "in_shape": list(self.in_shape), "out_shape": list(self.out_shape),
                "kernel": self.kernel, "stride": self.stride, "padding": self.padding,
                "pad_value": self.pad_value, "in_features": self.in_features,
                "out_features": self.out_features, "input_bits": self.input_bits,
                "output": "bits", "pe": self.pe, "simd": self.simd, "storage": self.storage,
                "nf": self.nf, "sf": self.sf, "ii": self.cycles_per_frame,
                "latency": self.latency, "in_width": self.in_width, "out_width": self.out_width,
                "line_buffer": self.line_buffer_style}

    def resources(self) -> Resources:
        """The unit's estimate (:meth:`DenseOp.resources` of :attr:`mvtu`, block RAMs exact) plus
        the window generator: its line buffer, :attr:`columns` = m banks of ``(K+S) x
        ceil(W/m)*C/SIMD_in`` words of ``SIMD_in*bits`` bits
        (:func:`~xnorflow.hw.compiler.rules.window_bank_words`; one bank of ``(K+S) x
        W*C/SIMD`` words for m = 1) placed by
        :func:`~xnorflow.hw.compiler.rules.window_buffer_style` (block RAMs exact, per bank), its
        position counters and row bookkeeping (flip-flops counted, about two LUT4s per counter
        bit), with m > 1 the banks' read address adders and the rotation (an AND-OR of the m
        banks' words under registered one-hot selects, the pad value folded in), and its output
        register; the LUT4s of the line buffer's read multiplexers,
        the rotation and the control times the calibrated factor ``win`` of
        :data:`~xnorflow.hw.compiler.resources.LUT_MODEL`."""
        h, w, c = self.in_shape
        rows = window_rows(self.kernel, self.stride)
        banks = self.columns
        words, width = rows * window_bank_words(w, c, self.simd), self.in_width
        style = self.line_buffer_style
        if style == "block":
            buffer, read_mux = Resources.block_memory(words, width, copies=banks), 0
        elif style == "distributed":
            lut_ram = Resources.distributed_ram(words, width)
            buffer, read_mux = Resources(lut_ice40=banks * lut_ram.lut_ice40,
                                         lut_ecp5=banks * lut_ram.lut_ecp5,
                                         ff=banks * width), 0
        else:
            buffer = Resources(ff=banks * (words * width + width))
            read_mux = banks * (width * mux_luts(words) + words)
        oh, ow, _ = self.out_shape
        row_beats = w * c // self.in_lanes
        counters = (counter_bits(words) + counter_bits(row_beats) + counter_bits(oh)
                    + counter_bits(ow) + counter_bits(self.kernel)
                    + counter_bits(self.kernel // banks)
                    + counter_bits(c // self.simd if banks == 1 else 1)
                    + 4 * counter_bits(h + rows + 1)
                    + 2 * counter_bits(w + self.kernel) + 5 * counter_bits(rows))
        out_bits = banks * width
        extra = selects = 0
        if banks > 1:
            # the input's bank and slot base, the column's quotient and remainder (twice); each
            # bank's read address adder; the rotation, an AND-OR of m (select, data) pairs and
            # the pad bit per output bit: 4m/3 LUT4s per bit and one more per pad bit of 1
            # (fitted to Yosys' counts of window generators of m = 2, 3 and 5 on ECP5)
            quotient = counter_bits((w + self.kernel) // banks + 2) + 1
            counters += 2 * counter_bits(banks) + counter_bits(words) + 2 * quotient
            ones = banks * self.in_lanes * bin(self.pad_value).count("1")
            extra = (banks * counter_bits(words) + -(-4 * banks * out_bits // 3) + ones)
            selects = banks * banks
        window = Resources.calibrated("win", read_mux + extra + 2 * counters + 20,
                                      ff=counters + out_bits + 2 + (banks - 1) + selects)
        return self.mvtu.resources() + buffer + window

"""The sliding-window generator: the windows of a convolution, streamed for a
matrix-vector-threshold unit (docs/semantics.md section 5.2, in the map order of section 5.1)."""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from xnorflow.hw.compiler.rules import (
    WINDOW_BUFFER_STYLES,
    window_buffer_style,
    window_cycles_per_frame,
    window_latency,
    window_output_size,
    window_rows,
)

__all__ = ["SlidingWindow"]


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


class SlidingWindow(wiring.Component):
    """Streams the ``K x K`` windows of an ``H x W x C`` map, one window per output position of a
    convolution of kernel ``K``, stride ``S`` and padding ``P`` (docs/semantics.md section 5.2).

    Parameters
    ----------
    in_shape : (H, W, C)
        The input map; ``K <= H + 2P`` and ``K <= W + 2P``.
    kernel : int
        K, at least 1.
    stride : 1 or 2
        S.
    padding : int
        P, 0 or ``K // 2``.
    pad_value : int
        V, what every lane of a position outside the map carries: a pixel 0..255 when
        ``lane_bits`` is 8, a bit 0/1 when it is 1.
    lane_bits : 8 or 1
        Bits per element: 8 for the frame's pixels, 1 for a binary map.
    simd : int
        Elements per beat (SIMD); must divide C.
    buffer : None, "block", "logic" or "distributed"
        Where the line buffer lives (its ``ram_style``): ``None`` (default) chooses by
        :func:`~xnorflow.hw.compiler.rules.window_buffer_style`; ``"distributed"`` (LUT RAM)
        exists on ECP5 only.

    Ports
    -----
    i_stream : In(stream.Signature(SIMD * lane_bits))
        The map, ``H*W*C/SIMD`` beats per frame, row by row, pixel by pixel, channels fastest:
        channel ``ch`` of a pixel is lane ``ch mod SIMD`` (bits ``lane_bits * (ch mod SIMD) ...``)
        of the pixel's beat ``ch div SIMD``. Frames follow each other with no marker.
    o_stream : Out(stream.Signature(SIMD * lane_bits))
        For every output position ``(oy, ox)``, row-major, its window in the order ``ky``,
        ``kx``, ``ch`` (channel fastest), in beats of SIMD elements packed as the input's:
        ``K*K*C/SIMD`` beats per window, ``OH*OW`` windows per frame, ``OH = (H + 2P - K) div S +
        1``, ``OW`` alike. A position outside the map carries V in every lane: the padding is made
        here, no padded input is ever sent. An MVTU that takes these windows
        (``N = K*K*C``) replays each of them for its folds, so every window is sent once.

    Line buffer
    -----------
    :attr:`rows` = ``K + S`` rows of ``W*C/SIMD`` words of ``SIMD * lane_bits`` bits, one
    :class:`~amaranth.lib.memory.Memory` with one write and one read port. Input row ``x``
    (counted over all frames) goes to row slot ``x mod (K + S)``: the ``K`` rows that one output
    row reads stay put while the input writes the ``S`` rows that the next output row needs, so
    with enough input the output rows follow each other with no gap. An input row starts once its
    slot is free, that is once the output has issued the last beat of the last output row that
    reads the row that was there before; an output row starts once the input rows it reads are
    complete. Frames share the buffer: the next frame's first rows go in while the previous
    frame's last windows are still going out, and never overwrite a row still to be read. (With
    only ``K`` rows, freed a whole row at a time, the input would wait for every output row to
    finish before writing the next one's rows, and the II would be the sum of the input's and the
    output's beats, not their maximum; the ``S`` extra rows, ``S/K`` more memory, buy the
    overlap.)

    Timing
    ------
    Initiation interval (:attr:`cycles_per_frame`,
    :func:`~xnorflow.hw.compiler.rules.window_cycles_per_frame`), source always valid and sink
    always ready, frames back to back: exactly ``max(H*W*C/SIMD, OH*OW*K*K*C/SIMD)`` cycles per
    frame when ``P = K // 2 > 0`` or ``K <= S``: one output beat per cycle with no gap between
    frames (output-bound) or one input beat per cycle (input-bound). With ``P = 0`` and ``K > S``
    the next frame's first ``K`` rows cannot all be written while the previous frame's last
    output row holds its ``K`` rows, and the output waits at each frame boundary: the II is more
    than that maximum by at most ``(K - S + (H - K) mod S) * W*C/SIMD`` cycles (exactly
    ``2*W*C/SIMD`` for K=3, S=1). The exact figure is the fixed point of the row schedule above,
    :func:`~xnorflow.hw.compiler.rules.window_timeline`, which the tests check cycle for cycle;
    it is reached from the second frame on.

    Latency (:attr:`latency`, :func:`~xnorflow.hw.compiler.rules.window_latency`): ``min(H, K -
    P) * W*C/SIMD + 1`` cycles from the handshake of a frame's first input beat to its first
    output beat being valid, for an idle block with input back to back: the first output row
    waits for the first ``min(H, K - P)`` input rows, then its first beat takes a cycle to issue
    (read address) and is valid in the next (read data).

    Backpressure
    ------------
    ``i_stream.ready`` is a function of registers only (the input row's slot is free), so no
    combinational path runs from ``o_stream.ready`` to ``i_stream.ready``; input is accepted
    while the output stalls until every free row slot is written. The output is one register
    stage (the memory's read register and a pad flag, under the enable ``~o_stream.valid |
    o_stream.ready``), so ``o_stream.valid`` does not wait on ``o_stream.ready`` and the payload
    holds while ``valid & ~ready``; the address counters advance under that enable.
    """

    def __init__(self, in_shape, *, kernel, stride=1, padding=0, pad_value=0, lane_bits=1,
                 simd=1, buffer=None):
        if (not isinstance(in_shape, tuple) or len(in_shape) != 3
                or not all(_is_int(v) and v >= 1 for v in in_shape)):
            raise ValueError(
                f"in_shape ({in_shape!r}) must be a tuple (H, W, C) of positive integers")
        h, w, c = in_shape
        if not _is_int(kernel) or kernel < 1:
            raise ValueError(f"kernel ({kernel!r}) must be a positive integer")
        if not _is_int(stride) or stride not in (1, 2):
            raise ValueError(f"stride ({stride!r}) must be 1 or 2")
        if not _is_int(padding) or padding not in (0, kernel // 2):
            raise ValueError(f"padding ({padding!r}) must be 0 or kernel // 2 ({kernel // 2})")
        if kernel > h + 2 * padding or kernel > w + 2 * padding:
            raise ValueError(
                f"kernel ({kernel}) must not exceed the padded map ({h + 2 * padding} x "
                f"{w + 2 * padding})")
        if not _is_int(lane_bits) or lane_bits not in (1, 8):
            raise ValueError(f"lane_bits ({lane_bits!r}) must be 8 or 1")
        top = (1 << lane_bits) - 1
        if not _is_int(pad_value) or not 0 <= pad_value <= top:
            raise ValueError(f"pad_value ({pad_value!r}) must be an integer in [0, {top}]")
        if not _is_int(simd) or simd < 1:
            raise ValueError(f"SIMD ({simd!r}) must be a positive integer")
        if c % simd:
            raise ValueError(f"SIMD ({simd}) must divide the channels ({c})")
        if buffer not in WINDOW_BUFFER_STYLES:
            raise ValueError(f"buffer ({buffer!r}) must be None, 'block', 'logic' or "
                             "'distributed'")
        self._in_shape = (h, w, c)
        self._kernel = kernel
        self._stride = stride
        self._padding = padding
        self._pad_value = pad_value
        self._lane_bits = lane_bits
        self._simd = simd
        self._buffer = buffer or window_buffer_style(window_rows(kernel, stride), w * c // simd,
                                                     simd * lane_bits)
        super().__init__({
            "i_stream": In(stream.Signature(simd * lane_bits)),
            "o_stream": Out(stream.Signature(simd * lane_bits)),
        })

    # Parameters (read-only).

    @property
    def in_shape(self):
        return self._in_shape

    @property
    def kernel(self):
        return self._kernel

    @property
    def stride(self):
        return self._stride

    @property
    def padding(self):
        return self._padding

    @property
    def pad_value(self):
        return self._pad_value

    @property
    def lane_bits(self):
        return self._lane_bits

    @property
    def simd(self):
        return self._simd

    @property
    def buffer(self):
        """Where the line buffer lives (the ``buffer`` parameter, or its default)."""
        return self._buffer

    # Derived quantities.

    @property
    def out_shape(self):
        """``(OH, OW, K*K*C)``: the output positions and the elements of a window."""
        h, w, c = self._in_shape
        k, s, p = self._kernel, self._stride, self._padding
        return (window_output_size(h, k, s, p), window_output_size(w, k, s, p), k * k * c)

    @property
    def rows(self):
        """Rows in the line buffer: ``K + S``."""
        return window_rows(self._kernel, self._stride)

    @property
    def window_beats(self):
        """Output beats per window: ``K*K*C/SIMD``."""
        return self.out_shape[2] // self._simd

    @property
    def cycles_per_frame(self):
        """Initiation interval in cycles per frame (see Timing)."""
        return window_cycles_per_frame(self._in_shape, self._kernel, self._stride,
                                       self._padding, self._simd)

    @property
    def latency(self):
        """``min(H, K - P) * W*C/SIMD + 1`` (see Timing)."""
        return window_latency(self._in_shape, self._kernel, self._padding, self._simd)

    def elaborate(self, platform):
        m = Module()
        h, w, c = self._in_shape
        k, s, p = self._kernel, self._stride, self._padding
        oh, ow, _ = self.out_shape
        cb_count = c // self._simd          # beats per pixel
        row_beats = w * cb_count            # beats per row
        rows = self.rows
        width = self._simd * self._lane_bits
        pad_word = 0
        for lane in range(self._simd):
            pad_word |= self._pad_value << (lane * self._lane_bits)
        i_stream, o_stream = self.i_stream, self.o_stream

        m.submodules.lines = lines = Memory(shape=width, depth=rows * row_beats, init=[],
                                            attrs={"ram_style": self._buffer})
        wr = lines.write_port()
        rd = lines.read_port()

        def add_mod(value, constant):
            """``(value + constant) mod rows`` for ``0 <= value < rows``."""
            constant %= rows
            total = value + constant
            return Mux(total >= rows, total - rows, total)

        # Row bookkeeping, counted from row 0 of the frame the output is in: `avail` input rows
        # are complete (negative while the input still writes the previous frame's last rows,
        # which no output row reads), rows below `released` are read by no output row to come.
        avail = Signal(range(-h, h + rows + 1))
        released = Signal(range(h + 1))
        in_ready = Signal()
        m.d.comb += in_ready.eq(avail - released < rows)

        # --- Input: write the map row by row into the row slots, one beat per cycle.
        in_addr = Signal(range(rows * row_beats))
        in_col = Signal(range(row_beats))
        write = Signal()
        row_done = Signal()
        m.d.comb += [
            i_stream.ready.eq(in_ready),
            write.eq(i_stream.valid & i_stream.ready),
            row_done.eq(write & (in_col == row_beats - 1)),
            wr.addr.eq(in_addr),
            wr.data.eq(i_stream.payload),
            wr.en.eq(write),
        ]
        with m.If(write):
            m.d.sync += [
                in_col.eq(Mux(in_col == row_beats - 1, 0, in_col + 1)),
                in_addr.eq(Mux(in_addr == rows * row_beats - 1, 0, in_addr + 1)),
            ]

        # --- Output, stage 1: the read address of the next beat. The position counters walk
        # (oy, ox, ky, kx, cb); `row`/`col` are the map coordinates read (outside the map in the
        # padding), `slot` the row slot of `row`.
        oy = Signal(range(oh))
        ox = Signal(range(ow))
        ky = Signal(range(k))
        kx = Signal(range(k))
        cb = Signal(range(cb_count))
        top_row = Signal(range(-p, h + 1), init=-p)       # oy*S - P
        top_slot = Signal(range(rows), init=-p % rows)    # its slot
        row = Signal(range(-p, h + k), init=-p)           # top_row + ky
        slot = Signal(range(rows), init=-p % rows)
        left_col = Signal(range(-p, w + 1), init=-p)      # ox*S - P
        col = Signal(range(-p, w + k), init=-p)           # left_col + kx
        frame_slot = Signal(range(rows))                  # slot of the frame's row 0
        next_frame = Signal(range(rows))                  # slot of the next frame's row 0
        first_slot = Signal(range(rows))                  # and of its first output row's top
        m.d.comb += [
            next_frame.eq(add_mod(frame_slot, h)),
            first_slot.eq(add_mod(next_frame, -p)),
        ]
        need = Signal(range(h + 1))
        m.d.comb += need.eq(Mux(top_row + k > h, h, top_row + k))

        advance = Signal()     # stage 2 takes a beat
        issue = Signal()       # a beat goes from stage 1 to stage 2
        pad = Signal()
        read_addr = Signal(range(rows * row_beats))
        m.d.comb += [
            advance.eq(~o_stream.valid | o_stream.ready),
            issue.eq(advance & (avail >= need)),
            pad.eq((row < 0) | (row >= h) | (col < 0) | (col >= w)),
            read_addr.eq(slot * row_beats + col * cb_count + cb),
            rd.addr.eq(read_addr),
            rd.en.eq(advance),
        ]

        last_cb = cb == cb_count - 1
        last_kx = kx == k - 1
        last_ky = ky == k - 1
        last_ox = ox == ow - 1
        last_oy = oy == oh - 1
        row_end = Signal()
        frame_end = Signal()
        m.d.comb += [
            row_end.eq(issue & last_cb & last_kx & last_ky & last_ox),
            frame_end.eq(row_end & last_oy),
        ]
        with m.If(issue):
            m.d.sync += cb.eq(Mux(last_cb, 0, cb + 1))
            with m.If(last_cb):
                m.d.sync += [kx.eq(Mux(last_kx, 0, kx + 1)), col.eq(col + 1)]
                with m.If(last_kx):
                    m.d.sync += [
                        ky.eq(Mux(last_ky, 0, ky + 1)),
                        col.eq(left_col),
                        row.eq(row + 1),
                        slot.eq(add_mod(slot, 1)),
                    ]
                    with m.If(last_ky):  # the window is complete
                        m.d.sync += [
                            ox.eq(Mux(last_ox, 0, ox + 1)),
                            left_col.eq(left_col + s),
                            col.eq(left_col + s),
                            row.eq(top_row),
                            slot.eq(top_slot),
                        ]
                        with m.If(last_ox):  # the output row is complete
                            next_slot = add_mod(top_slot, s)
                            m.d.sync += [
                                oy.eq(Mux(last_oy, 0, oy + 1)),
                                left_col.eq(-p),
                                col.eq(-p),
                                top_row.eq(top_row + s),
                                row.eq(top_row + s),
                                top_slot.eq(next_slot),
                                slot.eq(next_slot),
                                released.eq(Mux(top_row + s > 0, top_row + s, 0)),
                            ]
                            with m.If(last_oy):  # the frame is complete
                                m.d.sync += [
                                    frame_slot.eq(next_frame),
                                    top_row.eq(-p),
                                    row.eq(-p),
                                    top_slot.eq(first_slot),
                                    slot.eq(first_slot),
                                    released.eq(0),
                                ]
        m.d.sync += avail.eq(avail + row_done - Mux(frame_end, h, 0))

        # --- Output, stage 2: the read data (or the pad value) and its valid bit.
        out_pad = Signal()
        with m.If(advance):
            m.d.sync += [o_stream.valid.eq(issue), out_pad.eq(pad)]
        m.d.comb += o_stream.payload.eq(Mux(out_pad, pad_word, rd.data))
        return m

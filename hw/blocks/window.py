"""The sliding-window generator: the windows of a convolution, streamed for a
matrix-vector-threshold unit (docs/semantics.md section 5.2, in the map order of section 5.1)."""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from xnorflow.hw.compiler.rules import (
    WINDOW_BUFFER_STYLES,
    window_bank_words,
    window_buffer_style,
    window_columns,
    window_cycles_per_frame,
    window_in_lanes,
    window_latency,
    window_output_size,
    window_rows,
    window_simd_choices,
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
        Elements per output beat (SIMD): a divisor of C, or ``m*C`` for an ``m > 1`` dividing K
        (:attr:`columns` = m kernel columns per beat, :func:`~xnorflow.hw.compiler.rules.
        window_simd_choices`).
    buffer : None, "block", "logic" or "distributed"
        Where the line buffer lives (its ``ram_style``): ``None`` (default) chooses by
        :func:`~xnorflow.hw.compiler.rules.window_buffer_style`; ``"distributed"`` (LUT RAM)
        exists on ECP5 only.

    Ports
    -----
    i_stream : In(stream.Signature(SIMD_in * lane_bits))
        The map, ``H*W*C/SIMD_in`` beats per frame, row by row, pixel by pixel, channels fastest:
        ``SIMD_in`` (:attr:`in_lanes`) is SIMD when SIMD divides C, else C (one pixel per beat).
        Channel ``ch`` of a pixel is lane ``ch mod SIMD_in`` (bits ``lane_bits * (ch mod
        SIMD_in) ...``) of the pixel's beat ``ch div SIMD_in``. Frames follow each other with no
        marker.
    o_stream : Out(stream.Signature(SIMD * lane_bits))
        For every output position ``(oy, ox)``, row-major, its window in the order ``ky``,
        ``kx``, ``ch`` (channel fastest), in beats of SIMD elements, element ``l`` of a beat at
        lane ``l``: ``K*K*C/SIMD`` beats per window, ``OH*OW`` windows per frame, ``OH = (H + 2P
        - K) div S + 1``, ``OW`` alike. Beat ``j`` of a window is its elements ``j*SIMD ...
        j*SIMD + SIMD - 1``: with SIMD dividing C part of one pixel, with SIMD = ``m*C`` the
        ``m`` pixels ``kx .. kx + m - 1`` of one kernel row ``ky`` (``kx`` a multiple of m),
        column ``kx + i`` in lanes ``i*C ... i*C + C - 1``. A position outside the map carries V
        in every lane: the padding is made here, no padded input is ever sent. An MVTU that
        takes these windows (``N = K*K*C``) replays each of them for its folds, so every window
        is sent once.

    Line buffer
    -----------
    :attr:`rows` = ``K + S`` rows of ``W*C/SIMD_in`` words of ``SIMD_in * lane_bits`` bits, in
    :attr:`columns` = m banks (:class:`~amaranth.lib.memory.Memory`, one write and one read port
    each): column ``x`` of a row goes to bank ``x mod m`` (so a bank holds ``ceil(W/m)`` pixels
    of each row, :func:`~xnorflow.hw.compiler.rules.window_bank_words`), and the m columns of an
    output beat, consecutive, are in m different banks, each read at its own address and rotated
    into place (lane group ``i`` from bank ``(kx' + i) mod m``, ``kx'`` the beat's first map
    column). With m = 1 it is one memory. Input row ``x``
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
    always ready, frames back to back: exactly ``max(H*W*C/SIMD_in, OH*OW*K*K*C/SIMD)`` cycles
    per frame when ``P = K // 2 > 0`` or ``K <= S``: one output beat per cycle with no gap
    between frames (output-bound) or one input beat per cycle (input-bound). With ``P = 0`` and
    ``K > S`` the next frame's first ``K`` rows cannot all be written while the previous frame's
    last output row holds its ``K`` rows, and the output waits at each frame boundary: the II is
    more than that maximum by at most ``(K - S + (H - K) mod S) * W*C/SIMD_in`` cycles (exactly
    ``2*W*C/SIMD_in`` for K=3, S=1). The exact figure is the fixed point of the row schedule
    above, :func:`~xnorflow.hw.compiler.rules.window_timeline`, which the tests check cycle for
    cycle; it is reached from the second frame on.

    Latency (:attr:`latency`, :func:`~xnorflow.hw.compiler.rules.window_latency`): ``min(H, K -
    P) * W*C/SIMD_in + 1`` cycles from the handshake of a frame's first input beat to its first
    output beat being valid, for an idle block with input back to back: the first output row
    waits for the first ``min(H, K - P)`` input rows, then its first beat takes a cycle to issue
    (read addresses) and is valid in the next (read data).

    Backpressure
    ------------
    ``i_stream.ready`` is a function of registers only (the input row's slot is free), so no
    combinational path runs from ``o_stream.ready`` to ``i_stream.ready``; input is accepted
    while the output stalls until every free row slot is written. The output is one register
    stage (the memories' read registers, a pad flag per column and, with m > 1, the rotation's
    selects, under the enable ``~o_stream.valid | o_stream.ready``), so ``o_stream.valid`` does
    not wait on ``o_stream.ready`` and the payload holds while ``valid & ~ready``; the address
    counters advance under that enable. (With m > 1 the output lanes are an AND-OR of the m
    banks' registered words under those registered selects: no logic between ``o_stream.ready``
    and the payload.)
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
        if simd not in window_simd_choices(c, kernel):
            raise ValueError(f"SIMD ({simd}) must divide the channels ({c}) or be m*C with "
                             f"m > 1 dividing the kernel ({kernel})")
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
        columns = window_columns(c, simd)
        self._buffer = buffer or window_buffer_style(
            window_rows(kernel, stride), columns * window_bank_words(w, c, simd),
            window_in_lanes(c, simd) * lane_bits)
        super().__init__({
            "i_stream": In(stream.Signature(window_in_lanes(c, simd) * lane_bits)),
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
    def columns(self):
        """Kernel columns per output beat: ``m = SIMD/C`` when SIMD is ``m*C``, else 1."""
        return window_columns(self._in_shape[2], self._simd)

    @property
    def in_lanes(self):
        """Elements per input beat: SIMD when it divides C, else C (one pixel)."""
        return window_in_lanes(self._in_shape[2], self._simd)

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
        """``min(H, K - P) * W*C/SIMD_in + 1`` (see Timing)."""
        return window_latency(self._in_shape, self._kernel, self._padding, self._simd)

    def elaborate(self, platform):
        m = Module()
        h, w, c = self._in_shape
        k, s, p = self._kernel, self._stride, self._padding
        oh, ow, _ = self.out_shape
        cols = self.columns                 # kernel columns per output beat (m)
        lanes_in = self.in_lanes            # elements per input beat
        cb_count = c // self._simd if cols == 1 else 1    # output beats per pixel and column
        row_beats = w * c // lanes_in       # input beats per row
        bank_row = window_bank_words(w, c, self._simd)    # words per row of each bank
        rows = self.rows
        in_width = lanes_in * self._lane_bits
        pad_word = 0
        for lane in range(lanes_in):
            pad_word |= self._pad_value << (lane * self._lane_bits)
        i_stream, o_stream = self.i_stream, self.o_stream

        # The line buffer: `cols` banks, one write and one read port each; input beat `i` of
        # column `x` of a row in slot `t` at word `t*bank_row + (x div cols)*(C/SIMD_in) + i` of
        # bank `x mod cols`.
        banks = []
        for b in range(cols):
            bank = Memory(shape=in_width, depth=rows * bank_row, init=[],
                          attrs={"ram_style": self._buffer})
            m.submodules["lines" if cols == 1 else f"lines{b}"] = bank
            banks.append((bank.write_port(), bank.read_port()))

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
        in_addr = Signal(range(rows * bank_row))
        in_col = Signal(range(row_beats))
        write = Signal()
        row_done = Signal()
        m.d.comb += [
            i_stream.ready.eq(in_ready),
            write.eq(i_stream.valid & i_stream.ready),
            row_done.eq(write & (in_col == row_beats - 1)),
        ]
        if cols == 1:
            wr, _ = banks[0]
            m.d.comb += [wr.addr.eq(in_addr), wr.data.eq(i_stream.payload), wr.en.eq(write)]
            with m.If(write):
                m.d.sync += [
                    in_col.eq(Mux(in_col == row_beats - 1, 0, in_col + 1)),
                    in_addr.eq(Mux(in_addr == rows * bank_row - 1, 0, in_addr + 1)),
                ]
        else:
            # one pixel per beat: column `in_col` goes to bank `in_bank` = in_col mod cols
            in_bank = Signal(range(cols))
            in_base = Signal(range(rows * bank_row))      # the row slot's first word
            next_base = Signal(range(rows * bank_row))
            m.d.comb += next_base.eq(Mux(in_base == (rows - 1) * bank_row, 0,
                                         in_base + bank_row))
            for b, (wr, _) in enumerate(banks):
                m.d.comb += [wr.addr.eq(in_addr), wr.data.eq(i_stream.payload),
                             wr.en.eq(write & (in_bank == b))]
            with m.If(write):
                m.d.sync += [
                    in_col.eq(Mux(in_col == row_beats - 1, 0, in_col + 1)),
                    in_bank.eq(Mux(in_bank == cols - 1, 0, in_bank + 1)),
                ]
                with m.If(in_col == row_beats - 1):
                    m.d.sync += [in_bank.eq(0), in_base.eq(next_base), in_addr.eq(next_base)]
                with m.Elif(in_bank == cols - 1):
                    m.d.sync += in_addr.eq(in_addr + 1)

        # --- Output, stage 1: the read address of the next beat. The position counters walk
        # (oy, ox, ky, kx, cb), `kx` in steps of `cols` columns; `row`/`col` are the map
        # coordinates read (outside the map in the padding; `col` the beat's first column),
        # `slot` the row slot of `row`.
        oy = Signal(range(oh))
        ox = Signal(range(ow))
        ky = Signal(range(k))
        kx = Signal(range(k // cols))
        cb = Signal(range(cb_count))
        top_row = Signal(range(-p, h + 1), init=-p)       # oy*S - P
        top_slot = Signal(range(rows), init=-p % rows)    # its slot
        row = Signal(range(-p, h + k), init=-p)           # top_row + ky
        slot = Signal(range(rows), init=-p % rows)
        left_col = Signal(range(-p, w + 1), init=-p)      # ox*S - P
        col = Signal(range(-p, w + k), init=-p)           # left_col + kx*cols
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
        row_pad = Signal()
        m.d.comb += [
            advance.eq(~o_stream.valid | o_stream.ready),
            issue.eq(advance & (avail >= need)),
            row_pad.eq((row < 0) | (row >= h)),
        ]
        # `pads[j]`: lane group `j` (column col + j) is outside the map
        pads = Signal(cols)
        m.d.comb += pads.eq(Cat(row_pad | (col + j < 0) | (col + j >= w) for j in range(cols)))
        if cols == 1:
            _, rd = banks[0]
            read_addr = Signal(range(rows * bank_row))
            m.d.comb += [
                read_addr.eq(slot * bank_row + col * cb_count + cb),
                rd.addr.eq(read_addr),
                rd.en.eq(advance),
            ]
        else:
            # col = colq*cols + colr (colr in 0..cols-1): column col + j is in bank
            # (colr + j) mod cols, at word colq of its row, or colq + 1 where colr + j wraps; so
            # bank b reads word colq + (b < colr). Outside the map the word is never used.
            q0, r0 = divmod(-p, cols)
            left_q = Signal(range(q0, (w + k) // cols + 2), init=q0)     # left_col div cols
            left_r = Signal(range(cols), init=r0)                        # left_col mod cols
            colq = Signal(range(q0, (w + k) // cols + 2), init=q0)       # col div cols
            colr = Signal(range(cols), init=r0)                          # col mod cols
            # the slot's first word, from a table (a product would become a multiplier block)
            base = Signal(range(rows * bank_row))
            with m.Switch(slot):
                for t in range(rows):
                    with m.Case(t):
                        m.d.comb += base.eq(t * bank_row)
            for b, (_, rd) in enumerate(banks):
                read_addr = Signal(range(rows * bank_row), name=f"read_addr{b}")
                m.d.comb += [
                    read_addr.eq(base + colq + (colr > b)),
                    rd.addr.eq(read_addr),
                    rd.en.eq(advance),
                ]

        def step(q, r, by):
            """The quotient and remainder by ``cols`` of ``q*cols + r + by`` (``by <= cols``)."""
            return (Mux(r + by >= cols, q + 1, q), Mux(r + by >= cols, r + by - cols, r + by))

        last_cb = cb == cb_count - 1
        last_kx = kx == k // cols - 1
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
                m.d.sync += [kx.eq(Mux(last_kx, 0, kx + 1)), col.eq(col + cols)]
                if cols > 1:
                    m.d.sync += colq.eq(colq + 1)
                with m.If(last_kx):
                    m.d.sync += [
                        ky.eq(Mux(last_ky, 0, ky + 1)),
                        col.eq(left_col),
                        row.eq(row + 1),
                        slot.eq(add_mod(slot, 1)),
                    ]
                    if cols > 1:
                        m.d.sync += [colq.eq(left_q), colr.eq(left_r)]
                    with m.If(last_ky):  # the window is complete
                        m.d.sync += [
                            ox.eq(Mux(last_ox, 0, ox + 1)),
                            left_col.eq(left_col + s),
                            col.eq(left_col + s),
                            row.eq(top_row),
                            slot.eq(top_slot),
                        ]
                        if cols > 1:
                            q, r = step(left_q, left_r, s)
                            m.d.sync += [left_q.eq(q), left_r.eq(r), colq.eq(q), colr.eq(r)]
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
                            if cols > 1:
                                m.d.sync += [left_q.eq(left_q.init), left_r.eq(left_r.init),
                                             colq.eq(colq.init), colr.eq(colr.init)]
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

        # --- Output, stage 2: the read data (or the pad value) and its valid bit; with several
        # columns, lane group j takes bank (colr + j) mod cols, colr registered with the read.
        out_pad = Signal(cols)
        with m.If(advance):
            m.d.sync += [o_stream.valid.eq(issue), out_pad.eq(pads)]
        if cols == 1:
            m.d.comb += o_stream.payload.eq(Mux(out_pad[0], pad_word, banks[0][1].data))
        else:
            # The rotation as an AND-OR over the banks with registered one-hot selects, the pad
            # folded in: `out_take[j*cols + b]` when lane group j takes bank b (colr + j = b mod
            # cols) and is not padding. Each output bit is then an OR of `cols` (select, data)
            # pairs and the pad bit, which splits into LUT4s, where a multiplexer with a binary
            # select and a pad override would take the 6-input function's four.
            take = Signal(cols * cols)
            m.d.comb += take.eq(Cat(
                (colr == (b - j) % cols) & ~pads[j] for j in range(cols) for b in range(cols)))
            out_take = Signal(cols * cols)
            with m.If(advance):
                m.d.sync += out_take.eq(take)
            groups = []
            for j in range(cols):
                group = Signal(in_width, name=f"group{j}")
                terms = [banks[b][1].data & out_take[j * cols + b].replicate(in_width)
                         for b in range(cols)]
                if pad_word:
                    terms.append(out_pad[j].replicate(in_width) & pad_word)
                value = terms[0]
                for term in terms[1:]:
                    value = value | term
                m.d.comb += group.eq(value)
                groups.append(group)
            m.d.comb += o_stream.payload.eq(Cat(groups))
        return m

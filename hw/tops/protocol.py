"""The serial protocol between a host and the accelerator on a board: the wire format, defined once.

Every byte layout lives here as an :mod:`amaranth.lib.enum` / :mod:`amaranth.lib.data` definition.
The gateware (:mod:`xnorflow.hw.tops.bridge`) builds its packets from these layouts; the host (the
driver, tests) packs and unpacks bytes from the same layouts with :func:`to_bytes` /
:func:`from_bytes` and the helpers below. Importing this module elaborates no hardware; it needs
only the ``amaranth`` package (for the layout classes), no toolchain.

Link
----
UART, 8N1 (one start bit, 8 data bits least significant bit first, one stop bit: 10 bit-times per
byte), no flow control. Multi-byte integers are little endian. A ``data.Struct`` maps to bytes by
"bits ``8k ... 8k+7`` are byte ``k``", so the first field (bit 0) is the first byte on the wire and
a ``u16`` field is sent low byte first.

Packets
-------
Both directions use the same frame::

    offset  size  field
    0       1     sync     Sync.HOST (0xA5) host -> device, Sync.DEVICE (0x5A) device -> host
    1       1     cmd      Command
    2       1     id       u8; the host numbers its packets (wrapping), a reply carries the id of
                           the packet it answers
    3       2     length   u16, payload bytes (L)
    5       L     payload  per command, below
    5+L     1     crc      CRC-8/SMBUS (polynomial 0x07, init 0x00, not reflected, no final XOR)
                           over cmd, id, length and payload (every byte but sync and crc)

so a packet is ``L + 6`` bytes (:data:`OVERHEAD`). :class:`Header` is the first 5 bytes.

Commands (:class:`Command`; a reply's code is its request's code with bit 7 set)
-------------------------------------------------------------------------------
``HELLO`` (0x01), host -> device, L = 0.
    Answered by ``INFO`` (0x81) with the same id; payload :class:`InfoPayload` (50 bytes):
    ``version`` u8 (:data:`PROTOCOL_VERSION`), ``flags`` :class:`InfoFlags` (WITH_SCORES,
    SIGNED_SCORES), ``capacity`` u8 (K, below), ``score_bits`` u8 (bits of one score in the
    accelerator, at most 16; 0 without scores), ``n0`` u16 (pixels per frame), ``classes`` u16,
    ``gap_bits`` u16 (the inter-byte timeout, below), ``clk_hz`` u32, ``divisor`` u32 (clock cycles
    per bit: baud = clk_hz / divisor), ``model_hash`` 32 bytes (the model's SHA-256,
    :attr:`xnorflow.model.Model.content_hash`, digest byte 0 first).
``FRAME`` (0x02), host -> device, L = N0: the frame's pixels, pixel 0 first (docs/semantics.md 1).
    Answered by ``RESULT`` (0x82) with the same id; payload :func:`result_layout`: ``index`` u8
    (the predicted class), then, when the accelerator was built with scores, ``scores``: one u16
    per class, class 0 first (the integer score of docs/semantics.md 3.3, zero-extended; when
    SIGNED_SCORES, two's complement sign-extended to 16 bits), then ``status``
    (:class:`ResultStatus` flags). L = 2 + 2 * classes with scores, 2 without.
``BENCH`` (0x03), host -> device, L = 5, payload :class:`BenchRequest`: ``frames`` u8 (F),
    ``repeat`` u32 (R). Only on a device whose INFO has the ``BENCH`` flag (elsewhere: UNKNOWN_CMD).
    The on-device benchmark (see "On-device benchmark" below): the last F frames the device
    committed (FRAMEs answered by RESULT) are replayed R times back to back into the accelerator,
    their results checksummed and discarded, and the run timed in accelerator clock cycles.
    Answered, once the run is over, by ``REPORT`` (0x83) with the same id; payload
    :class:`BenchReport` (21 bytes): ``frames`` u8 and ``repeat`` u32 (the request's), ``cycles``
    u64, ``checksum`` u32 (:data:`BENCH_CRC`, below), ``clock_hz`` u32 (the accelerator's clock,
    the unit of ``cycles``). Rejected with ERROR BAD_BENCH (F = 0, F > K, F more than the frames
    committed since reset, R = 0 or R > :data:`MAX_BENCH_REPEAT`) or BUSY (frames outstanding: a
    FRAME answered by neither RESULT nor ERROR yet; or a BENCH run not yet reported).
``ERROR`` (0xFF), device -> host: a packet was rejected; the id is the rejected packet's (as read
    from its header, which the crc protects only after the fact); payload :class:`ErrorPayload`:
    ``code`` (:class:`ErrorCode`) and ``cmd``, the rejected packet's command byte.

Error codes (:class:`ErrorCode`)
--------------------------------
``BAD_CRC`` (1): the packet's crc byte did not match. ``BAD_LENGTH`` (2): ``length`` is not the
one its command needs (0 for HELLO, N0 for FRAME), or exceeds N0. ``UNKNOWN_CMD`` (3): ``cmd`` is
no host command. ``OVERFLOW`` (4): a well-formed FRAME arrived while the device had no free frame
buffer; the frame was not run (send it again). ``TIMEOUT`` (5): the line went quiet for
``gap_bits`` bit-times in the middle of a packet (after its header). ``BAD_BENCH`` (6): a BENCH
whose ``frames`` or ``repeat`` is out of range (see BENCH). ``BUSY`` (7): a BENCH while frames
are outstanding or a BENCH run is not yet reported; or a FRAME that arrived (its header ended)
while a BENCH run held the frame buffers: it was not run (send it again after the REPORT).

Device rules (what :class:`~xnorflow.hw.tops.bridge.SerialBridge` does)
-----------------------------------------------------------------
- **A frame runs only when its packet is whole**: right length, right crc. Its pixels are held in
  a frame buffer and enter the accelerator only after the crc byte checked out.
- **Capacity.** The device has K frame buffers (K = ``capacity`` in INFO). A host that never has
  more than K FRAME packets outstanding (sent, RESULT or ERROR not yet received) never gets
  OVERFLOW, whatever the accelerator's speed. A FRAME that finds no free buffer when its header
  ends is still read to its end and answered with OVERFLOW (or BAD_CRC); it is never silently
  dropped.
- **Order.** RESULTs come in the order of their FRAMEs and carry their FRAME's id; a frame never
  gets another frame's result. INFO and ERROR replies are sent as soon as the request ends and may
  overtake RESULTs of earlier frames still being computed: match replies by id.
- **Replies are queued.** INFO/ERROR replies wait in a queue of :data:`REPLY_QUEUE_DEPTH`; a reply
  that finds the queue full is dropped and the next RESULT has ``REPLY_DROPPED`` set.
- **Resynchronisation.** Bytes are ignored until a SYNC (0xA5). After the header, a length above N0
  (above ``max(N0, 5)`` on a device with BENCH) is answered at once with BAD_LENGTH and the device
  hunts for SYNC again; otherwise the device reads ``length`` payload bytes and the crc, then
  answers (checks in this order: crc, command, length, buffer; for BENCH: crc, length, ``frames``
  and ``repeat``, busy). If no byte arrives for ``gap_bits`` bit-times (counted from the middle of
  the previous byte's stop bit, where the receiver takes it), a packet in progress is abandoned:
  with its header read the device answers TIMEOUT, before that silently; then it hunts for SYNC.
  After BAD_CRC, when the byte taken as crc was 0xA5 it is taken as the SYNC of the next packet (so
  a packet short by one byte, followed at once by the next, costs only itself); otherwise the
  device hunts for SYNC. A packet short by more than one byte and followed at once by the next
  usually costs that next packet too (no reply: the host's own timeout catches it).
- **Garbage** containing 0xA5 may start a false packet; it ends at a wrong crc, a length above N0
  or the gap timeout, and may cause an ERROR reply with any id. A host that wants a clean start
  stays quiet for ``gap_bits`` bit-times, then sends HELLO.

On-device benchmark (devices with the ``BENCH`` flag)
----------------------------------------------------
- **Frame store.** BENCH reuses the K frame buffers: a FRAME's pixels stay in its buffer after its
  RESULT, until a later FRAME packet overwrites them (any FRAME packet may, even one rejected for
  its crc). A host loads F <= K frames by sending them as FRAMEs, one at a time (so that they are
  committed in order, each once), then sends BENCH; the device replays the F frames committed
  last, oldest first.
- **Replay.** Frames 1, ..., F, 1, ..., F, ...: R passes (F * R frames), the beats back to back,
  one ``s_axis`` beat per accelerator cycle whenever the accelerator is ready: the replay adds no
  bubbles, so the accelerator's own initiation interval is the limit. While the run lasts (from the
  BENCH's crc byte to the REPORT's last byte) FRAMEs are answered BUSY; HELLO is answered.
- **cycles**: accelerator clock cycles from the cycle of the handshake of the first replayed
  frame's first ``s_axis`` beat to the first cycle in which the last result is valid on
  ``m_axis`` (their difference; the ends of the accelerator's latency, so a single frame counts
  its latency). For a network of
  latency ``L`` and initiation interval ``II`` (the manifest's ``latency_cycles`` and
  ``ii_cycles``) with ``B = N0/SIMD0`` beats per frame: ``cycles = L + (F*R - 1) * max(II, B)``,
  exactly (:func:`bench_cycles`; the manifest's II counts the input beats already, so this is
  ``L + (F*R - 1) * II``). So ``F*R * f_clk / cycles`` tends to ``f_clk / II`` as R grows.
- **checksum**: :data:`BENCH_CRC` (CRC-32/ISO-HDLC, the CRC of zlib, Ethernet and PNG: reflected
  polynomial 0xEDB88320, init and final XOR 0xFFFFFFFF; check value 0xCBF43926 for
  ``b"123456789"``) over the F*R result words in order, each word the accelerator's
  ``m_axis_tdata`` as :func:`result_word_bytes` bytes, little endian (:func:`result_word_layout`:
  the class index at bit 0, then with scores each score in ``score_bits`` bits, two's
  complement when SIGNED_SCORES; zeros above). :func:`bench_checksum` computes it on the host.

Host rules (for the driver): number packets with ids that differ among outstanding ones; keep at
most K FRAMEs outstanding; ignore replies whose id is not outstanding; treat an ERROR for an
outstanding FRAME as "this frame will get no RESULT" and send it again under a new id.

Byte-level example
------------------
A model with N0 = 4 pixels and 3 classes, built with (unsigned) scores. The host sends HELLO with
id 1 and a FRAME with id 0x2A and pixels 0, 255, 16, 165::

    A5 01 01 00 00 7D                   HELLO  id 1,    L 0,  crc 0x7D
    A5 02 2A 04 00 00 FF 10 A5 7E       FRAME  id 0x2A, L 4,  pixels 00 FF 10 A5, crc 0x7E

The device answers the FRAME (scores 5, 17, 2, so class 1) with::

    5A 82 2A 08 00 01 05 00 11 00 02 00 00 A9
       RESULT id 0x2A, L 8: index 01, scores 0005 0011 0002 (little endian), status 00, crc 0xA9

a FRAME with id 0x2B whose crc was wrong with::

    5A FF 2B 02 00 01 02 43             ERROR  id 0x2B, L 2: code BAD_CRC, cmd FRAME, crc 0x43

and the HELLO with an INFO of L = 50 whose payload starts ``02 01 02 10 04 00 03 00 ...``
(version 2, WITH_SCORES, K = 2, 16-bit scores, N0 = 4, 3 classes, ...). tests/test_hw_protocol.py
checks every byte of this example.

Throughput: a FRAME packet is N0 + 6 bytes, so a link of ``baud`` carries at most
``baud / (10 * (N0 + 6))`` frames/s (MNIST, N0 = 784, at 115200 baud: 14.6 frames/s), provided the
RESULT packets (8 + 2 * classes bytes with scores) are not longer and the host keeps at least two
frames in flight.
"""

# No ``from __future__ import annotations``: ``data.Struct`` reads its annotations as shapes.
import enum as py_enum
from dataclasses import dataclass

from amaranth.hdl import Shape, signed, unsigned
from amaranth.lib import data, enum
from amaranth.lib.crc import catalog

__all__ = [
    "BENCH_CRC",
    "BENCH_CYCLE_BITS",
    "BENCH_REPORT_BYTES",
    "BENCH_REQUEST_BYTES",
    "BITS_PER_BYTE",
    "CRC",
    "DEFAULT_GAP_BITS",
    "ERROR_BYTES",
    "HEADER_BYTES",
    "HOST_COMMANDS",
    "INFO_BYTES",
    "MAX_BENCH_REPEAT",
    "MIN_GAP_BITS",
    "OVERHEAD",
    "PROTOCOL_VERSION",
    "REPLY_QUEUE_DEPTH",
    "BenchReport",
    "BenchRequest",
    "BenchResult",
    "Command",
    "DeviceInfo",
    "ErrorCode",
    "ErrorPayload",
    "ErrorReply",
    "Header",
    "InfoFlags",
    "InfoPayload",
    "Packet",
    "PacketDecoder",
    "ProtocolError",
    "Result",
    "ResultStatus",
    "Sync",
    "bench_checksum",
    "bench_cycles",
    "crc32",
    "crc8",
    "encode_bench",
    "encode_frame",
    "encode_hello",
    "encode_packet",
    "from_bytes",
    "result_layout",
    "result_word_bytes",
    "result_word_layout",
    "to_bytes",
]

#: ``version`` in INFO; changes whenever a layout or rule here changes (2: BENCH, REPORT,
#: BAD_BENCH, BUSY and the INFO flag BENCH).
PROTOCOL_VERSION = 2

#: The packet checksum: CRC-8/SMBUS (width 8, polynomial 0x07, init 0, no reflection, no final
#: XOR; check value 0xF4 for ``b"123456789"``), as :class:`amaranth.lib.crc.Parameters` for bytes.
#: The host computes with ``CRC.compute(data)``, the gateware with ``CRC.create()``.
CRC = catalog.CRC8_SMBUS(data_width=8)

#: Inter-byte timeout, in bit-times, unless a bridge is built with another.
DEFAULT_GAP_BITS = 1000
#: The least timeout allowed: two byte-times, so that back-to-back bytes never time out.
MIN_GAP_BITS = 20
#: INFO/ERROR replies that can wait to be sent.
REPLY_QUEUE_DEPTH = 4
#: Bits per byte on the line (8N1).
BITS_PER_BYTE = 10


class Sync(enum.Enum, shape=8):
    """First byte of every packet; tells the direction."""
    HOST = 0xA5
    DEVICE = 0x5A


class Command(enum.Enum, shape=8):
    """``cmd``: the kind of packet. Replies have bit 7 set."""
    HELLO = 0x01
    FRAME = 0x02
    BENCH = 0x03
    INFO = 0x81
    RESULT = 0x82
    REPORT = 0x83
    ERROR = 0xFF


#: Commands a host may send.
HOST_COMMANDS = (Command.HELLO, Command.FRAME, Command.BENCH)


class ErrorCode(enum.Enum, shape=8):
    """``code`` of an ERROR reply."""
    BAD_CRC = 1
    BAD_LENGTH = 2
    UNKNOWN_CMD = 3
    OVERFLOW = 4
    TIMEOUT = 5
    BAD_BENCH = 6
    BUSY = 7


class InfoFlags(enum.Flag, shape=8):
    """``flags`` of INFO."""
    WITH_SCORES = 0x01    #: RESULT carries the scores
    SIGNED_SCORES = 0x02  #: scores are two's complement (a one-layer network on pixels)
    BENCH = 0x04          #: the device takes BENCH (the on-device benchmark)


class ResultStatus(enum.Flag, shape=8):
    """``status`` of RESULT; 0 in normal operation."""
    #: The accelerator's sticky ``frame_error`` (a tlast that disagreed with the beat count) is
    #: set: a fault of the bridge, the results since may be misaligned.
    FRAME_ERROR = 0x01
    #: The UART saw a byte with a bad stop bit since the previous RESULT.
    LINE_ERROR = 0x02
    #: An INFO/ERROR reply was dropped (reply queue full) since the previous RESULT.
    REPLY_DROPPED = 0x04


class Header(data.Struct):
    """The first :data:`HEADER_BYTES` bytes of every packet."""
    sync: Sync
    cmd: Command
    id: unsigned(8)
    length: unsigned(16)


class InfoPayload(data.Struct):
    """Payload of INFO, the reply to HELLO."""
    version: unsigned(8)
    flags: InfoFlags
    capacity: unsigned(8)
    score_bits: unsigned(8)
    n0: unsigned(16)
    classes: unsigned(16)
    gap_bits: unsigned(16)
    clk_hz: unsigned(32)
    divisor: unsigned(32)
    model_hash: data.ArrayLayout(unsigned(8), 32)


class BenchRequest(data.Struct):
    """Payload of BENCH."""
    frames: unsigned(8)
    repeat: unsigned(32)


class BenchReport(data.Struct):
    """Payload of REPORT, the reply to BENCH."""
    frames: unsigned(8)
    repeat: unsigned(32)
    cycles: unsigned(64)
    checksum: unsigned(32)
    clock_hz: unsigned(32)


class ErrorPayload(data.Struct):
    """Payload of ERROR."""
    code: ErrorCode
    cmd: unsigned(8)


HEADER_BYTES = Header.as_shape().size // 8
#: Bytes of a packet besides its payload: header and crc.
OVERHEAD = HEADER_BYTES + 1
INFO_BYTES = InfoPayload.as_shape().size // 8
# The crc covers every header byte after sync, the first field.
assert Header.as_shape()["sync"].offset == 0
_SYNC_BYTES = Shape.cast(Sync).width // 8
ERROR_BYTES = ErrorPayload.as_shape().size // 8
BENCH_REQUEST_BYTES = BenchRequest.as_shape().size // 8
BENCH_REPORT_BYTES = BenchReport.as_shape().size // 8

#: The largest ``repeat`` a device takes (its repeat counter has 24 bits).
MAX_BENCH_REPEAT = 2**24 - 1
#: Bits of the device's cycle counter (``cycles`` is sent zero-extended to 64 bits): 2**48 cycles
#: are 32 days at 100 MHz.
BENCH_CYCLE_BITS = 48
#: The benchmark checksum's algorithm, CRC-32/ISO-HDLC (see the module docstring), as an
#: :class:`amaranth.lib.crc.Algorithm`: the gateware makes its processor with
#: ``BENCH_CRC(data_width=8 * k).create()`` (``k`` bytes of a result word per cycle; a reflected
#: CRC over a ``8k``-bit word is the CRC over its ``k`` bytes in little-endian order); the host uses
#: :func:`crc32` and :func:`bench_checksum`.
BENCH_CRC = catalog.CRC32_ISO_HDLC


def _crc32_table():
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0xEDB88320 if c & 1 else c >> 1
        table.append(c)
    return tuple(table)


_CRC32_TABLE = _crc32_table()


def crc32(payload: bytes, crc: int = 0) -> int:
    """CRC-32/ISO-HDLC of ``payload`` (:data:`BENCH_CRC`), continuing from ``crc`` (the CRC of the
    bytes before, as ``zlib.crc32``'s second argument): pure Python, table-driven."""
    c = crc ^ 0xFFFFFFFF
    for byte in bytes(payload):
        c = _CRC32_TABLE[(c ^ byte) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def _gf2_apply(matrix, vector):
    out, k = 0, 0
    while vector:
        if vector & 1:
            out ^= matrix[k]
        vector >>= 1
        k += 1
    return out


def bench_checksum(block: bytes, repeat: int) -> int:
    """:func:`crc32` of ``block`` repeated ``repeat`` times, in ``O(len(block) + log(repeat))``:
    ``c -> crc32(block, c)`` is affine over GF(2) (``c -> M c + v``), so its ``repeat``-th power is
    found by squaring."""
    if not isinstance(repeat, int) or isinstance(repeat, bool) or repeat < 0:
        raise ValueError(f"repeat ({repeat!r}) must be a non-negative integer")
    block = bytes(block)
    v = crc32(block, 0)
    m = [crc32(block, 1 << k) ^ v for k in range(32)]   # the linear part, column k
    # (M, v) composed with itself: x -> M(Mx + v) + v.
    acc_m, acc_v = [1 << k for k in range(32)], 0        # identity
    while repeat:
        if repeat & 1:
            acc_m = [_gf2_apply(m, col) for col in acc_m]
            acc_v = _gf2_apply(m, acc_v) ^ v
        m, v = [_gf2_apply(m, col) for col in m], _gf2_apply(m, v) ^ v
        repeat >>= 1
    return _gf2_apply(acc_m, 0) ^ acc_v


def bench_cycles(latency: int, ii: int, beats: int, frames: int, repeat: int) -> int:
    """The ``cycles`` of a REPORT (see the module docstring): ``latency + (frames * repeat - 1) *
    max(ii, beats)``; ``latency``, ``ii`` and ``beats`` (N0/SIMD0) are the network's."""
    return latency + (frames * repeat - 1) * max(ii, beats)


def result_layout(classes: int, with_scores: bool, signed_scores: bool = False) \
        -> data.StructLayout:
    """Payload layout of RESULT: ``index`` u8, [``scores``: ``classes`` x 16 bits], ``status``."""
    if not isinstance(classes, int) or isinstance(classes, bool) or not 1 <= classes <= 256:
        raise ValueError(f"classes ({classes!r}) must be an integer in [1, 256] (u8 index)")
    fields = {"index": unsigned(8)}
    if with_scores:
        fields["scores"] = data.ArrayLayout(signed(16) if signed_scores else unsigned(16),
                                            classes)
    fields["status"] = ResultStatus
    return data.StructLayout(fields)


def result_word_layout(classes: int, score_bits: int = 0, signed_scores: bool = False) \
        -> data.StructLayout:
    """The accelerator's ``m_axis_tdata`` (the result word of the BENCH checksum), from what INFO
    says: ``index`` (``ceil(log2(classes))`` bits) at bit 0, then, with scores (``score_bits`` >
    0), ``scores``: ``classes`` x ``score_bits`` bits (two's complement when ``signed_scores``),
    then ``padding``, zeros up to the used width rounded up to whole bytes, at least 8 bits."""
    if not isinstance(classes, int) or isinstance(classes, bool) or not 1 <= classes <= 256:
        raise ValueError(f"classes ({classes!r}) must be an integer in [1, 256] (u8 index)")
    fields = {"index": range(classes)}
    if score_bits:
        fields["scores"] = data.ArrayLayout(signed(score_bits) if signed_scores
                                            else unsigned(score_bits), classes)
    used = data.StructLayout(fields).size
    fields["padding"] = unsigned(max(8, -(-used // 8) * 8) - used)
    return data.StructLayout(fields)


def result_word_bytes(index: int, scores, info: "DeviceInfo") -> bytes:
    """The result word of a result (``scores``: one per class, ignored without scores) on the
    device ``info`` describes, as the BENCH checksum takes it: little-endian bytes."""
    layout = result_word_layout(info.classes, info.score_bits if info.with_scores else 0,
                                info.signed_scores)
    values = {"index": int(index), "padding": 0}
    if info.with_scores:
        values["scores"] = [int(v) for v in scores]
    return to_bytes(layout, values)


# --- Bytes from layouts and back ----------------------------------------------------------------


class ProtocolError(ValueError):
    """Bytes or values that do not follow the protocol."""


def _is_enum(shape):
    return isinstance(shape, type) and issubclass(shape, py_enum.Enum)


def _pack(shape, value, where):
    """The bits of ``value`` (dict for a struct, sequence for an array, member or int for an enum,
    int otherwise) in ``shape``."""
    if _is_enum(shape):
        if isinstance(value, shape):
            return value.value
        width = Shape.cast(shape).width
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 1 << width:
            raise ProtocolError(f"{where}: {value!r} is neither a {shape.__name__} nor a "
                                f"{width}-bit integer")
        return value  # a raw value, member or not (a host may send an unknown command)
    if isinstance(shape, (data.Layout, type)) and not isinstance(shape, Shape):
        layout = data.Layout.cast(shape)
        bits = 0
        if isinstance(layout, data.ArrayLayout):
            if len(value) != layout.length:
                raise ProtocolError(f"{where}: expected {layout.length} elements, got "
                                    f"{len(value)}")
            items = [(i, value[i]) for i in range(layout.length)]
        else:
            names = [name for name, _ in layout]
            unknown = set(value) - set(names)
            if unknown:
                raise ProtocolError(f"{where}: unknown field {sorted(unknown)[0]!r}")
            missing = [name for name in names if name not in value]
            if missing:
                raise ProtocolError(f"{where}: missing field {missing[0]!r}")
            items = [(name, value[name]) for name in names]
        for key, item in items:
            field = layout[key]
            bits |= _pack(field.shape, item, f"{where}.{key}") << field.offset
        return bits
    shape = Shape.cast(shape)
    lo = -(1 << (shape.width - 1)) if shape.signed else 0
    hi = (1 << (shape.width - 1 if shape.signed else shape.width)) - 1
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise ProtocolError(f"{where}: {value!r} is not an integer in [{lo}, {hi}]")
    return value & ((1 << shape.width) - 1)


def _unpack(shape, bits):
    if _is_enum(shape):
        try:
            return shape(bits)
        except ValueError:
            return bits  # not a member: the raw value, for the caller to reject
    if isinstance(shape, (data.Layout, type)) and not isinstance(shape, Shape):
        layout = data.Layout.cast(shape)
        fields = {key: _unpack(field.shape, (bits >> field.offset)
                               & ((1 << Shape.cast(field.shape).width) - 1))
                  for key, field in layout}
        if isinstance(layout, data.ArrayLayout):
            return [fields[i] for i in range(layout.length)]
        return fields
    shape = Shape.cast(shape)
    if shape.signed and bits >> (shape.width - 1):
        return bits - (1 << shape.width)
    return bits


def to_bytes(layout, values) -> bytes:
    """The bytes of ``values`` (a dict of field values; arrays as sequences, enums as members or
    ints) in ``layout`` (a ``data.Struct`` or layout of whole bytes): byte ``k`` holds bits
    ``8k ... 8k+7``."""
    size = data.Layout.cast(layout).size
    assert size % 8 == 0, size
    return _pack(layout, values, getattr(layout, "__name__", "payload")).to_bytes(
        size // 8, "little")


def from_bytes(layout, raw: bytes) -> dict:
    """The field values of ``raw`` in ``layout`` (a dict; arrays as lists; enum fields as members,
    or the raw int where the value is no member)."""
    size = data.Layout.cast(layout).size // 8
    if len(raw) != size:
        raise ProtocolError(f"{getattr(layout, '__name__', 'payload')}: expected {size} bytes, "
                            f"got {len(raw)}")
    return _unpack(layout, int.from_bytes(bytes(raw), "little"))


def crc8(payload: bytes) -> int:
    """CRC-8/SMBUS of ``payload`` (see :data:`CRC`)."""
    return CRC.compute(bytes(payload))


# --- Packets ------------------------------------------------------------------------------------


def encode_packet(cmd, id: int, payload: bytes = b"", *, sync=Sync.HOST) -> bytes:
    """A whole packet: header, ``payload``, crc. ``cmd`` may be a raw int (to test the device's
    UNKNOWN_CMD)."""
    payload = bytes(payload)
    if len(payload) > 0xFFFF:
        raise ProtocolError(f"payload of {len(payload)} bytes does not fit the u16 length")
    header = to_bytes(Header, {"sync": sync, "cmd": cmd, "id": id, "length": len(payload)})
    body = header[_SYNC_BYTES:] + payload
    return header[:_SYNC_BYTES] + body + bytes([crc8(body)])


def encode_hello(id: int) -> bytes:
    return encode_packet(Command.HELLO, id)


def encode_bench(id: int, frames: int, repeat: int) -> bytes:
    """A BENCH packet (values checked only against the field widths)."""
    return encode_packet(Command.BENCH, id,
                         to_bytes(BenchRequest, {"frames": frames, "repeat": repeat}))


def encode_frame(id: int, pixels) -> bytes:
    """A FRAME packet; ``pixels``: a sequence of N0 integers in [0, 255] (or ``bytes``)."""
    values = [int(p) for p in pixels]
    bad = next((i for i, p in enumerate(values) if not 0 <= p <= 255), None)
    if bad is not None:
        raise ProtocolError(f"pixel {bad} ({values[bad]}) is not in [0, 255]")
    return encode_packet(Command.FRAME, id, bytes(values))


@dataclass(frozen=True)
class Packet:
    """A packet as decoded by :class:`PacketDecoder`; ``cmd`` is a :class:`Command` or, for an
    unknown code, the raw int. ``crc_ok`` is False when the crc byte did not match."""
    cmd: Command | int
    id: int
    payload: bytes
    crc_ok: bool = True


class PacketDecoder:
    """Incremental packet parser for one direction (``sync``): :meth:`feed` bytes as they arrive,
    get whole packets back. Bytes before a SYNC are skipped (counted in :attr:`skipped`); a header
    whose length exceeds ``max_payload`` is skipped as garbage (hunting resumes after its SYNC).
    Timeouts are the caller's: call :meth:`reset` after a quiet gap."""

    def __init__(self, sync=Sync.DEVICE, max_payload: int = 0xFFFF):
        self._sync = Sync(sync).value
        self._max_payload = max_payload
        self._buf = bytearray()
        self.skipped = 0

    def reset(self):
        """Forget a partial packet."""
        self.skipped += len(self._buf)
        self._buf.clear()

    @property
    def pending(self) -> int:
        """Bytes held of a packet not yet whole."""
        return len(self._buf)

    def feed(self, chunk: bytes) -> list[Packet]:
        packets = []
        self._buf += bytes(chunk)
        while True:
            start = self._buf.find(self._sync)
            if start < 0:
                self.skipped += len(self._buf)
                self._buf.clear()
                return packets
            self.skipped += start
            del self._buf[:start]
            if len(self._buf) < HEADER_BYTES:
                return packets
            header = from_bytes(Header, self._buf[:HEADER_BYTES])
            length = header["length"]
            if length > self._max_payload:
                self.skipped += 1
                del self._buf[:1]
                continue
            end = HEADER_BYTES + length + 1
            if len(self._buf) < end:
                return packets
            body = bytes(self._buf[_SYNC_BYTES:end - 1])
            packets.append(Packet(header["cmd"], header["id"], body[HEADER_BYTES - _SYNC_BYTES:],
                                  crc8(body) == self._buf[end - 1]))
            del self._buf[:end]


# --- Payloads -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class DeviceInfo:
    """What INFO says about the device (and what a bridge is built with)."""
    capacity: int
    n0: int
    classes: int
    score_bits: int
    with_scores: bool
    signed_scores: bool
    gap_bits: int
    clk_hz: int
    divisor: int
    model_hash: bytes
    version: int = PROTOCOL_VERSION
    bench: bool = False  #: the device takes BENCH (INFO flag BENCH)

    def fields(self) -> dict:
        """The :class:`InfoPayload` field values."""
        flags = InfoFlags(0)
        if self.with_scores:
            flags |= InfoFlags.WITH_SCORES
        if self.signed_scores:
            flags |= InfoFlags.SIGNED_SCORES
        if self.bench:
            flags |= InfoFlags.BENCH
        return {"version": self.version, "flags": flags, "capacity": self.capacity,
                "score_bits": self.score_bits, "n0": self.n0, "classes": self.classes,
                "gap_bits": self.gap_bits, "clk_hz": self.clk_hz, "divisor": self.divisor,
                "model_hash": list(self.model_hash)}

    def to_payload(self) -> bytes:
        return to_bytes(InfoPayload, self.fields())

    @classmethod
    def from_payload(cls, payload: bytes) -> "DeviceInfo":
        f = from_bytes(InfoPayload, payload)
        flags = f["flags"]
        return cls(capacity=f["capacity"], n0=f["n0"], classes=f["classes"],
                   score_bits=f["score_bits"],
                   with_scores=bool(flags & InfoFlags.WITH_SCORES),
                   signed_scores=bool(flags & InfoFlags.SIGNED_SCORES),
                   gap_bits=f["gap_bits"], clk_hz=f["clk_hz"], divisor=f["divisor"],
                   model_hash=bytes(f["model_hash"]), version=f["version"],
                   bench=bool(flags & InfoFlags.BENCH))

    @property
    def baud(self) -> float:
        return self.clk_hz / self.divisor

    @property
    def result_layout(self) -> data.StructLayout:
        return result_layout(self.classes, self.with_scores, self.signed_scores)

    @property
    def result_bytes(self) -> int:
        """Payload bytes of a RESULT."""
        return self.result_layout.size // 8

    @property
    def frames_per_second(self) -> float:
        """The link's limit: the longer of a FRAME and a RESULT packet, 10 bit-times a byte."""
        longest = max(self.n0, self.result_bytes) + OVERHEAD
        return self.baud / (BITS_PER_BYTE * longest)


@dataclass(frozen=True)
class Result:
    """A RESULT payload."""
    index: int
    scores: tuple[int, ...]  #: empty without scores
    status: ResultStatus

    @classmethod
    def from_payload(cls, payload: bytes, info: DeviceInfo) -> "Result":
        f = from_bytes(info.result_layout, payload)
        status = f["status"]
        if not isinstance(status, ResultStatus):
            raise ProtocolError(f"RESULT status {status:#04x} has unknown bits")
        return cls(f["index"], tuple(f.get("scores", ())), status)


@dataclass(frozen=True)
class BenchResult:
    """A REPORT payload (see BENCH)."""
    frames: int
    repeat: int
    cycles: int
    checksum: int
    clock_hz: int

    @classmethod
    def from_payload(cls, payload: bytes) -> "BenchResult":
        return cls(**from_bytes(BenchReport, payload))


@dataclass(frozen=True)
class ErrorReply:
    """An ERROR payload; ``code`` is an :class:`ErrorCode` or, if unknown, the raw int."""
    code: ErrorCode | int
    cmd: int

    @classmethod
    def from_payload(cls, payload: bytes) -> "ErrorReply":
        f = from_bytes(ErrorPayload, payload)
        return cls(f["code"], f["cmd"])

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
``ERROR`` (0xFF), device -> host: a packet was rejected; the id is the rejected packet's (as read
    from its header, which the crc protects only after the fact); payload :class:`ErrorPayload`:
    ``code`` (:class:`ErrorCode`) and ``cmd``, the rejected packet's command byte.

Error codes (:class:`ErrorCode`)
--------------------------------
``BAD_CRC`` (1): the packet's crc byte did not match. ``BAD_LENGTH`` (2): ``length`` is not the
one its command needs (0 for HELLO, N0 for FRAME), or exceeds N0. ``UNKNOWN_CMD`` (3): ``cmd`` is
no host command. ``OVERFLOW`` (4): a well-formed FRAME arrived while the device had no free frame
buffer; the frame was not run (send it again). ``TIMEOUT`` (5): the line went quiet for
``gap_bits`` bit-times in the middle of a packet (after its header).

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
  is answered at once with BAD_LENGTH and the device hunts for SYNC again; otherwise the device
  reads ``length`` payload bytes and the crc, then answers (checks in this order: crc, command,
  length, buffer). If no byte arrives for ``gap_bits`` bit-times (counted from the middle of the
  previous byte's stop bit, where the receiver takes it), a packet in progress is abandoned: with
  its header read the device answers TIMEOUT, before that silently; then it hunts for SYNC. After
  BAD_CRC, when the byte taken as crc was 0xA5 it is taken as the SYNC of the next packet (so a
  packet short by one byte, followed at once by the next, costs only itself); otherwise the device
  hunts for SYNC. A packet short by more than one byte and followed at once by the next usually
  costs that next packet too (no reply: the host's own timeout catches it).
- **Garbage** containing 0xA5 may start a false packet; it ends at a wrong crc, a length above N0
  or the gap timeout, and may cause an ERROR reply with any id. A host that wants a clean start
  stays quiet for ``gap_bits`` bit-times, then sends HELLO.

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

and the HELLO with an INFO of L = 50 whose payload starts ``01 01 02 10 04 00 03 00 ...``
(version 1, WITH_SCORES, K = 2, 16-bit scores, N0 = 4, 3 classes, ...). tests/test_hw_protocol.py
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
    "BITS_PER_BYTE",
    "CRC",
    "DEFAULT_GAP_BITS",
    "ERROR_BYTES",
    "HEADER_BYTES",
    "HOST_COMMANDS",
    "INFO_BYTES",
    "MIN_GAP_BITS",
    "OVERHEAD",
    "PROTOCOL_VERSION",
    "REPLY_QUEUE_DEPTH",
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
    "crc8",
    "encode_frame",
    "encode_hello",
    "encode_packet",
    "from_bytes",
    "result_layout",
    "to_bytes",
]

#: ``version`` in INFO; changes whenever a layout or rule here changes.
PROTOCOL_VERSION = 1

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
    INFO = 0x81
    RESULT = 0x82
    ERROR = 0xFF


#: Commands a host may send.
HOST_COMMANDS = (Command.HELLO, Command.FRAME)


class ErrorCode(enum.Enum, shape=8):
    """``code`` of an ERROR reply."""
    BAD_CRC = 1
    BAD_LENGTH = 2
    UNKNOWN_CMD = 3
    OVERFLOW = 4
    TIMEOUT = 5


class InfoFlags(enum.Flag, shape=8):
    """``flags`` of INFO."""
    WITH_SCORES = 0x01    #: RESULT carries the scores
    SIGNED_SCORES = 0x02  #: scores are two's complement (a one-layer network on pixels)


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

    def fields(self) -> dict:
        """The :class:`InfoPayload` field values."""
        flags = InfoFlags(0)
        if self.with_scores:
            flags |= InfoFlags.WITH_SCORES
        if self.signed_scores:
            flags |= InfoFlags.SIGNED_SCORES
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
                   model_hash=bytes(f["model_hash"]), version=f["version"])

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
class ErrorReply:
    """An ERROR payload; ``code`` is an :class:`ErrorCode` or, if unknown, the raw int."""
    code: ErrorCode | int
    cmd: int

    @classmethod
    def from_payload(cls, payload: bytes) -> "ErrorReply":
        f = from_bytes(ErrorPayload, payload)
        return cls(f["code"], f["cmd"])

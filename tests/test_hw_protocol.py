# amaranth: UnusedElaboratable=no
"""The wire format of hw/tops/protocol.py against hand-computed bytes.

The expected bytes below are written out by hand from the module docstring's tables; the CRC is
checked against the standard check value and against a bitwise CRC written here from the
definition (polynomial 0x07, init 0, MSB first, no final XOR)."""

import random
import zlib

import pytest
from amaranth.hdl import Value
from amaranth.lib import data

from xnorflow.hw.tops import protocol as P


def bitwise_crc8(payload):
    """CRC-8 with polynomial x^8 + x^2 + x + 1, register initially 0, MSB first."""
    crc = 0
    for byte in payload:
        crc ^= byte
        for _ in range(8):
            crc = ((crc << 1) ^ 0x07) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
    return crc


# --- CRC ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("payload", "crc"), [
    (b"123456789", 0xF4),     # the catalogue's check value of CRC-8/SMBUS
    (b"", 0x00),
    (b"\x01", 0x07),          # the polynomial itself
    (b"\x80", 0x89),          # 0x80 -> 0x07, then seven shifts: 0E 1C 38 70 E0 C7 89
    (b"\x01\x07", 0x00),      # 0x07 ^ 0x07: the register returns to 0
    (b"\x01\x01\x00\x00", 0x7D),  # the HELLO of the docstring example
])
def test_crc8_vectors(payload, crc):
    assert P.crc8(payload) == crc
    assert bitwise_crc8(payload) == crc


def test_crc8_matches_bitwise_on_random_bytes():
    rng = random.Random(5)
    for length in range(0, 40, 3):
        payload = bytes(rng.randrange(256) for _ in range(length))
        assert P.crc8(payload) == bitwise_crc8(payload)


# --- The byte-level example of the docstring -----------------------------------------------------

EXAMPLE_HASH = bytes(range(0xC0, 0xE0))
EXAMPLE_INFO = P.DeviceInfo(capacity=2, n0=4, classes=3, score_bits=16, with_scores=True,
                            signed_scores=False, gap_bits=1000, clk_hz=12_000_000, divisor=104,
                            model_hash=EXAMPLE_HASH)


def test_example_hello_and_frame():
    assert P.encode_hello(1) == bytes.fromhex("A5 01 01 00 00 7D")
    frame = P.encode_frame(0x2A, [0, 255, 16, 165])
    assert frame == bytes.fromhex("A5 02 2A 04 00 00 FF 10 A5 7E")
    # Field by field: sync, cmd, id, length (little endian), payload, crc over bytes 1..8.
    assert frame[0] == 0xA5 and frame[1] == 0x02 and frame[2] == 0x2A
    assert frame[3] | frame[4] << 8 == 4
    assert list(frame[5:9]) == [0, 255, 16, 165]
    assert frame[9] == bitwise_crc8(frame[1:9])


def test_example_result():
    payload = P.to_bytes(EXAMPLE_INFO.result_layout,
                         {"index": 1, "scores": [5, 17, 2], "status": P.ResultStatus(0)})
    packet = P.encode_packet(P.Command.RESULT, 0x2A, payload, sync=P.Sync.DEVICE)
    assert packet == bytes.fromhex("5A 82 2A 08 00 01 05 00 11 00 02 00 00 A9")
    assert packet[-1] == bitwise_crc8(packet[1:-1])
    [decoded] = P.PacketDecoder().feed(packet)
    assert decoded == P.Packet(P.Command.RESULT, 0x2A, payload, True)
    result = P.Result.from_payload(decoded.payload, EXAMPLE_INFO)
    assert result == P.Result(1, (5, 17, 2), P.ResultStatus(0))


def test_example_error():
    payload = P.to_bytes(P.ErrorPayload, {"code": P.ErrorCode.BAD_CRC, "cmd": 0x02})
    packet = P.encode_packet(P.Command.ERROR, 0x2B, payload, sync=P.Sync.DEVICE)
    assert packet == bytes.fromhex("5A FF 2B 02 00 01 02 43")
    assert P.ErrorReply.from_payload(payload) == P.ErrorReply(P.ErrorCode.BAD_CRC, 0x02)


def test_example_info():
    payload = EXAMPLE_INFO.to_payload()
    assert len(payload) == 50
    expected = bytes.fromhex(
        "02"           # version
        "01"           # flags: WITH_SCORES
        "02"           # capacity K
        "10"           # score_bits
        "04 00"        # n0
        "03 00"        # classes
        "E8 03"        # gap_bits = 1000
        "00 1B B7 00"  # clk_hz = 12_000_000 = 0x00B71B00
        "68 00 00 00"  # divisor = 104
    ) + EXAMPLE_HASH
    assert payload == expected
    assert P.DeviceInfo.from_payload(payload) == EXAMPLE_INFO
    assert EXAMPLE_INFO.baud == pytest.approx(115384.6, abs=0.1)
    assert EXAMPLE_INFO.result_bytes == 8
    # The link's limit: max(4, 8) + 6 = 14 bytes of 10 bit-times.
    assert EXAMPLE_INFO.frames_per_second == pytest.approx(12e6 / 104 / 140)


# --- Layouts ------------------------------------------------------------------------------------


def test_layout_sizes_and_offsets():
    assert (P.HEADER_BYTES, P.OVERHEAD, P.INFO_BYTES, P.ERROR_BYTES) == (5, 6, 50, 2)
    header = data.Layout.cast(P.Header)
    assert [(name, field.offset) for name, field in header] == [
        ("sync", 0), ("cmd", 8), ("id", 16), ("length", 24)]
    layout = P.result_layout(10, True)
    assert layout.size == 8 * 22
    assert layout["scores"].offset == 8 and layout["status"].offset == 8 * 21
    assert P.result_layout(10, False).size == 16
    assert [c.value for c in P.Command] == [0x01, 0x02, 0x03, 0x81, 0x82, 0x83, 0xFF]
    assert [c.value for c in P.ErrorCode] == [1, 2, 3, 4, 5, 6, 7]
    assert (P.BENCH_REQUEST_BYTES, P.BENCH_REPORT_BYTES) == (5, 21)
    assert (P.Sync.HOST.value, P.Sync.DEVICE.value) == (0xA5, 0x5A)


def test_host_packing_equals_amaranth_constants():
    """The host's bytes are the bits Amaranth gives the same values in the same layout (what the
    gateware sends)."""
    fields = EXAMPLE_INFO.fields()
    const = data.Layout.cast(P.InfoPayload).const(fields)
    assert Value.cast(const).value.to_bytes(50, "little") == EXAMPLE_INFO.to_payload()
    layout = P.result_layout(4, True, signed_scores=True)
    values = {"index": 3, "scores": [-1, 300, -32768, 32767],
              "status": P.ResultStatus.LINE_ERROR}
    const = layout.const(values)
    raw = P.to_bytes(layout, values)
    assert (Value.cast(const).value & (2**layout.size - 1)).to_bytes(10, "little") == raw
    assert raw == bytes.fromhex("03 FF FF 2C 01 00 80 FF 7F 02")


def test_round_trips():
    rng = random.Random(9)
    for signed_scores in (False, True):
        for classes in (1, 3, 10, 256):
            layout = P.result_layout(classes, True, signed_scores)
            lo, hi = (-32768, 32767) if signed_scores else (0, 65535)
            values = {"index": rng.randrange(classes),
                      "scores": [rng.randint(lo, hi) for _ in range(classes)],
                      "status": P.ResultStatus.REPLY_DROPPED | P.ResultStatus.FRAME_ERROR}
            assert P.from_bytes(layout, P.to_bytes(layout, values)) == values
    header = {"sync": P.Sync.HOST, "cmd": P.Command.FRAME, "id": 255, "length": 784}
    assert P.to_bytes(P.Header, header) == bytes.fromhex("A5 02 FF 10 03")
    assert P.from_bytes(P.Header, P.to_bytes(P.Header, header)) == header
    # A command byte that is no Command member travels as a raw value.
    odd = dict(header, cmd=0x33)
    assert P.from_bytes(P.Header, P.to_bytes(P.Header, odd))["cmd"] == 0x33
    info = P.DeviceInfo(capacity=255, n0=65535, classes=256, score_bits=13, with_scores=True,
                        signed_scores=True, gap_bits=20, clk_hz=2**32 - 1, divisor=1,
                        model_hash=bytes(rng.randrange(256) for _ in range(32)))
    assert P.DeviceInfo.from_payload(info.to_payload()) == info


# --- The host's decoder --------------------------------------------------------------------------


def test_decoder_skips_garbage_and_splits_anywhere():
    one = P.encode_packet(P.Command.INFO, 3, EXAMPLE_INFO.to_payload(), sync=P.Sync.DEVICE)
    two = bytes.fromhex("5A FF 2B 02 00 01 02 43")
    stream = b"\x00\x13\xa5" + one + b"\xff" + two
    for chunk in (1, 2, 7, len(stream)):
        decoder = P.PacketDecoder()
        packets = []
        for i in range(0, len(stream), chunk):
            packets += decoder.feed(stream[i:i + chunk])
        assert [(p.cmd, p.id, p.crc_ok) for p in packets] == [
            (P.Command.INFO, 3, True), (P.Command.ERROR, 0x2B, True)]
        assert decoder.skipped == 4 and decoder.pending == 0


def test_decoder_flags_bad_crc_and_skips_long_headers():
    bad = bytearray(bytes.fromhex("5A FF 2B 02 00 01 02 43"))
    bad[5] ^= 0x10
    decoder = P.PacketDecoder(max_payload=64)
    # A false SYNC whose length is too long is skipped, then the real packet is read.
    packets = decoder.feed(b"\x5a\x82\x00\xff\xff" + bytes(bad))
    assert [(p.id, p.crc_ok) for p in packets] == [(0x2B, False)]
    decoder.feed(b"\x5a\x82\x01")
    assert decoder.pending == 3
    decoder.reset()
    assert decoder.pending == 0


# --- Errors -------------------------------------------------------------------------------------


def test_value_errors():
    with pytest.raises(P.ProtocolError, match=r"^Header: missing field 'length'$"):
        P.to_bytes(P.Header, {"sync": P.Sync.HOST, "cmd": 1, "id": 0})
    with pytest.raises(P.ProtocolError, match=r"^Header\.id: 256 is not an integer in \[0, 255\]$"):
        P.to_bytes(P.Header, {"sync": P.Sync.HOST, "cmd": 1, "id": 256, "length": 0})
    with pytest.raises(P.ProtocolError, match=r"^Header\.cmd: 'x' is neither a Command nor an? "):
        P.to_bytes(P.Header, {"sync": P.Sync.HOST, "cmd": "x", "id": 0, "length": 0})
    with pytest.raises(P.ProtocolError, match=r"^pixel 2 \(256\) is not in \[0, 255\]$"):
        P.encode_frame(0, [0, 1, 256])
    with pytest.raises(P.ProtocolError, match=r"^ErrorPayload: expected 2 bytes, got 3$"):
        P.ErrorReply.from_payload(b"\x01\x02\x03")
    with pytest.raises(ValueError, match=r"^classes \(257\) must be an integer in \[1, 256\]"):
        P.result_layout(257, True)
    with pytest.raises(P.ProtocolError, match=r"^RESULT status 0x80 has unknown bits$"):
        P.Result.from_payload(b"\x00" + bytes(6) + b"\x80", EXAMPLE_INFO)


# --- The on-device benchmark ----------------------------------------------------------------------


def test_bench_packets_by_hand():
    """BENCH with id 7, 2 frames x 200 (0xC8): payload 02 C8 00 00 00; REPORT fields in order."""
    packet = P.encode_bench(7, 2, 200)
    body = bytes.fromhex("03 07 05 00 02 C8 00 00 00")
    assert packet == bytes([0xA5]) + body + bytes([bitwise_crc8(body)])
    payload = bytes.fromhex("02" "C8 00 00 00" "10 32 54 76 98 00 00 00" "26 39 F4 CB"
                            "00 88 13 00")
    report = P.BenchResult.from_payload(payload)
    assert report == P.BenchResult(frames=2, repeat=200, cycles=0x9876543210,
                                   checksum=0xCBF43926, clock_hz=1_280_000)
    assert P.to_bytes(P.BenchReport, {"frames": 2, "repeat": 200, "cycles": 0x9876543210,
                                      "checksum": 0xCBF43926, "clock_hz": 1_280_000}) == payload


@pytest.mark.parametrize(("payload", "crc"), [
    (b"123456789", 0xCBF43926),   # the catalogue's check value of CRC-32/ISO-HDLC
    (b"", 0x00000000),
    (b"a", 0xE8B7BE43),
    (b"\x00" * 4, 0x2144DF1C),
])
def test_crc32_vectors(payload, crc):
    assert P.crc32(payload) == crc == zlib.crc32(payload)


def test_crc32_and_bench_checksum_match_zlib():
    """The pure-Python CRC-32, continued across calls, and the repeated-block checksum (by
    squaring) equal zlib's CRC-32 of the bytes written out."""
    rng = random.Random(3)
    for length in (1, 7, 10, 33):
        block = bytes(rng.randrange(256) for _ in range(length))
        assert P.crc32(block[3:], P.crc32(block[:3])) == zlib.crc32(block)
        for repeat in (0, 1, 2, 3, 8, 13, 200):
            assert P.bench_checksum(block, repeat) == zlib.crc32(block * repeat)
    block = bytes(range(20))
    big = 100_003
    assert P.bench_checksum(block, big) == zlib.crc32(block * big)
    with pytest.raises(ValueError, match=r"^repeat \(-1\) must be a non-negative integer$"):
        P.bench_checksum(block, -1)


def test_amaranth_crc32_parameters_equal_the_definition():
    """BENCH_CRC as the gateware uses it: k bytes a word (little endian) give the CRC of the
    bytes."""
    rng = random.Random(4)
    data_bytes = bytes(rng.randrange(256) for _ in range(24))
    for k in (1, 2, 3, 4, 6, 12):
        words = [int.from_bytes(data_bytes[i:i + k], "little") for i in range(0, 24, k)]
        assert P.BENCH_CRC(data_width=8 * k).compute(words) == zlib.crc32(data_bytes)


def test_result_word_by_hand():
    """10 classes (index 4 bits) and 7-bit unsigned scores: index 3, scores 0..9 ->
    3 | k << (4 + 7k), 74 bits in 10 bytes; signed 5-bit scores; no scores: one byte."""
    info = P.DeviceInfo(capacity=2, n0=784, classes=10, score_bits=7, with_scores=True,
                        signed_scores=False, gap_bits=1000, clk_hz=1, divisor=1,
                        model_hash=bytes(32))
    word = 3
    for k in range(10):
        word |= k << (4 + 7 * k)
    assert P.result_word_bytes(3, range(10), info) == word.to_bytes(10, "little")
    signed = P.DeviceInfo(capacity=2, n0=4, classes=3, score_bits=5, with_scores=True,
                          signed_scores=True, gap_bits=1000, clk_hz=1, divisor=1,
                          model_hash=bytes(32))
    # index 2 bits: 1; scores -1 (0b11111), 2, -16 (0b10000) at bits 2, 7, 12.
    assert P.result_word_bytes(1, [-1, 2, -16], signed) == \
        (1 | 0b11111 << 2 | 2 << 7 | 0b10000 << 12).to_bytes(3, "little")
    plain = P.DeviceInfo(capacity=2, n0=4, classes=2, score_bits=0, with_scores=False,
                         signed_scores=False, gap_bits=1000, clk_hz=1, divisor=1,
                         model_hash=bytes(32))
    assert P.result_word_bytes(1, (), plain) == b"\x01"


@pytest.mark.parametrize("case", ["tfc", "signed", "no-scores"])
def test_result_word_layout_is_the_networks_tdata(case):
    """The layout the host derives from INFO is the network's m_axis_tdata layout."""
    from xnorflow.hw.tops.bridge import PacketEngine
    from xnorflow.hw.tops.network import Network
    from xnorflow.model import Model
    from xnorflow.models import MODELS_DIR
    from xnorflow.sim.fixtures import random_model

    if case == "tfc":
        network = Network(Model.load(MODELS_DIR / "tfc.npz"))
    else:
        network = Network(random_model((20, 5) if case == "signed" else (20, 12, 5), 0),
                          with_scores=case != "no-scores")
    info = PacketEngine(network, clk_hz=1, divisor=1).info
    layout = P.result_word_layout(info.classes, info.score_bits if info.with_scores else 0,
                                  info.signed_scores)
    tdata = network.tdata_layout
    assert layout.size == tdata["width"] == len(network.m_axis_tdata)
    assert (layout["index"].offset, layout["index"].width) == (0, tdata["index"]["width"])
    if tdata["scores"] is not None:
        scores = layout["scores"]
        assert scores.offset == tdata["scores"]["offset"]
        assert scores.shape.elem_shape.width == tdata["scores"]["width"]
        assert scores.shape.elem_shape.signed == tdata["scores"]["signed"]
    else:
        assert "scores" not in [name for name, _ in layout]



def test_bench_cycles_law():
    assert P.bench_cycles(622, 196, 49, 2, 200) == 622 + 399 * 196
    assert P.bench_cycles(43, 12, 20, 1, 1) == 43
    assert P.bench_cycles(43, 12, 20, 2, 2) == 43 + 3 * 20

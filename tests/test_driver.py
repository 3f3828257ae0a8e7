"""The host driver (xnorflow.host.driver) against the real serial bridge in the simulator, against a
scripted fake device, and over pyserial's loop://.

Simulated device: a small model trained on the embedded MNIST subset, its SerialBridge built once
for Verilator (module fixture), and one SimTransport session (a fresh, reset device) per test:
the bytes the driver writes cross the bridge's UART pins bit by bit. Faults are injected by
:class:`Faulty`, a transport wrapper between the driver and the simulation that corrupts or drops
bytes of chosen packets in either direction; every result is compared with the golden model by
frame index, so nothing may be lost or given to another frame.

The fake device parses the driver's packets with this file's own code (offsets from the
protocol's docstring, a bitwise CRC) and answers by a script: the driver's window, matching and
retry policy at the byte level, fast.
"""

import dataclasses
import json
import subprocess
import sys
import time
import zlib

import numpy as np
import pytest
from test_hw_protocol import bitwise_crc8

from xnorflow.data import load
from xnorflow.golden import GoldenModel
from xnorflow.host.driver import (
    PROBE_BAUDS,
    Accelerator,
    BenchRefused,
    DeviceError,
    DeviceTimeout,
    FrameError,
    FrameFailed,
    ModelMismatch,
    NetworkTiming,
    ProtocolVersionError,
    SerialTransport,
    SimTransport,
    Transport,
    TransportError,
    bench_accelerator,
    connect,
    run_accelerator,
)
from xnorflow.hw.compiler import Folding, LayerFolding
from xnorflow.hw.tops.board import DEFAULT_BAUD
from xnorflow.model import Model
from xnorflow.models import shipped
from xnorflow.sim.board import build_sim_device

HELLO, FRAME, INFO, RESULT, ERROR = 0x01, 0x02, 0x81, 0x82, 0xFF
CODES = {"BAD_CRC": 1, "BAD_LENGTH": 2, "UNKNOWN_CMD": 3, "OVERFLOW": 4, "TIMEOUT": 5}
N0 = 784


# --- The test's own packet code (from the protocol docstring) -------------------------------------


def device_packet(cmd, id, payload):
    body = bytes([cmd, id, len(payload) & 0xFF, len(payload) >> 8]) + bytes(payload)
    return bytes([0x5A]) + body + bytes([bitwise_crc8(body)])


class StreamParser:
    """Packets of one direction from a byte stream, by the docstring's table; ``feed`` returns,
    per byte, ``(packet number, offset in the packet, cmd or None)`` and collects whole packets
    in ``packets`` as ``(cmd, id, payload, crc_ok)``."""

    def __init__(self, sync):
        self.sync = sync
        self.buf = bytearray()
        self.count = 0
        self.packets = []

    def feed(self, byte):
        if not self.buf and byte != self.sync:
            return None, None, None
        self.buf.append(byte)
        where = (self.count, len(self.buf) - 1, self.buf[1] if len(self.buf) > 1 else None)
        if len(self.buf) >= 5 and len(self.buf) == 6 + (self.buf[3] | self.buf[4] << 8):
            raw = bytes(self.buf)
            self.packets.append((raw[1], raw[2], raw[5:-1], bitwise_crc8(raw[1:-1]) == raw[-1]))
            self.buf.clear()
            self.count += 1
        return where


# --- Model, frames, the simulated device ----------------------------------------------------------


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A 784-32-24-10 BNN trained for one epoch on 1,000 embedded frames, and its file."""
    from xnorflow.export import export
    from xnorflow.train import TrainConfig, train

    ds = load(None, "train")
    index = np.random.default_rng(0).permutation(len(ds))[:1000]
    result = train(TrainConfig(topology=[784, 32, 24, 10], epochs=1, seed=0),
                   ds.images[index], ds.labels[index])
    model = export(result.model)
    path = model.save(tmp_path_factory.mktemp("model") / "model.npz")
    return model, path


@pytest.fixture(scope="module")
def pool(trained):
    """16 frames (14 MNIST test frames of all digits, one of SYNC bytes, one random), their
    labels and the golden results."""
    model, _ = trained
    ds = load(None, "test")
    index = np.linspace(0, len(ds) - 1, 14).round().astype(int)
    rng = np.random.default_rng(5)
    x = np.concatenate([ds.images[index], np.full((1, N0), 0xA5, np.uint8),
                        rng.integers(0, 256, (1, N0), dtype=np.uint8)])
    y = np.concatenate([ds.labels[index], [0, 0]]).astype(np.int64)
    return x, y, GoldenModel(model).run(x)


# Folded far enough for a quick Verilator build; the UART is the bottleneck (II 3136 cycles,
# a FRAME takes 10 * 4 * 790 = 31600).
FOLDING = Folding((LayerFolding(1, 8), LayerFolding(1, 8, "lut"), LayerFolding(1, 4, "lut")))


@pytest.fixture(scope="module")
def device(trained, tmp_path_factory):
    """The bridge of the trained model, built once for all the simulated sessions here."""
    model, _ = trained
    return build_sim_device(model, FOLDING, build_root=tmp_path_factory.mktemp("sim"))


def check_against_golden(report, golden, frames):
    """Every result, by frame index: the golden class and scores."""
    assert report.frames == frames
    assert report.predictions.tolist() == golden.classes[:frames].tolist()
    assert report.scores.tolist() == golden.scores[:frames].tolist()


def test_sim_end_to_end(trained, pool, device):
    """16 frames through the simulated bridge, two in flight: every class and score is the
    golden model's, in input order, with no error and no retry."""
    model, _ = trained
    x, y, golden = pool
    seen = []
    with SimTransport(device) as transport:
        acc = Accelerator(transport, model=model)
        info = acc.info
        report = acc.infer(x, y, progress=lambda done, total: seen.append((done, total)))
    assert (info.n0, info.classes, info.capacity, info.divisor) == (N0, 10, 2, 4)
    assert info.model_hash.hex() == model.content_hash and info.with_scores
    check_against_golden(report, golden, len(x))
    assert report.accuracy == float((golden.classes == y).mean())
    assert (report.errors, report.retries, report.in_flight) == ({}, 0, 2)
    assert seen == [(k, len(x)) for k in range(1, len(x) + 1)]
    stats = transport.stats
    assert stats["end"] == "eof" and stats["tx_framing_errors"] == 0
    # Every byte crossed the pins: a HELLO, then one FRAME per frame; INFO and the RESULTs back.
    assert stats["rx_bytes"] == 6 + len(x) * (N0 + 6)
    assert stats["tx_bytes"] == 56 + len(x) * (6 + 22)
    assert report.frames_per_s > 0 and stats["active_cycles_per_s"] > 0


def test_sim_model_mismatch(pool, device):
    """A driver given another model than the device holds: ModelMismatch naming both hashes;
    the same session then works with no model given."""
    other = Model.load(shipped()["tfc"])
    x, _, golden = pool
    with SimTransport(device) as transport:
        with pytest.raises(ModelMismatch) as info:
            Accelerator(transport, model=other)
        assert info.value.expected == other.content_hash
        assert info.value.device == device.info.model_hash.hex()
        assert other.content_hash in str(info.value)
        assert device.info.model_hash.hex() in str(info.value)
        report = Accelerator(transport).infer(x[:2])
    check_against_golden(report, golden, 2)


# --- Fault injection ------------------------------------------------------------------------------


class Faulty(Transport):
    """Wraps a transport; changes bytes of chosen packets on their way.

    ``host`` faults act on what the driver writes (one packet per write) and map ``(cmd, n)``,
    the n-th packet of that command written (from 0), to a fault; ``device`` faults act on what
    it reads and map ``n``, the n-th packet the device sent (from 0; the INFO is packet 0), to a
    fault. A fault is ``("flip", offset, mask)`` or ``("drop", offsets)``. While ``silent`` is
    set nothing is passed either way."""

    def __init__(self, inner, host=None, device=None):
        self.inner = inner
        self.host, self.device = dict(host or {}), dict(device or {})
        self.silent = False
        self.written = {}       # cmd -> packets written
        self.applied = []       # faults done
        self.replies = StreamParser(0x5A)  # the device's stream as sent

    @property
    def reply_timeout(self):
        return self.inner.reply_timeout

    @property
    def resync_quiet(self):
        return self.inner.resync_quiet

    def write(self, data):
        if self.silent:
            return
        cmd = data[1]
        n = self.written.get(cmd, 0)
        self.written[cmd] = n + 1
        fault = self.host.get((cmd, n))
        if fault is not None:
            if fault[0] == "flip":
                data = bytearray(data)
                data[fault[1]] ^= fault[2]
            else:
                data = bytes(b for k, b in enumerate(data) if k not in fault[1])
            self.applied.append(("host", cmd, n, fault))
        self.inner.write(bytes(data))

    def read(self, n, timeout):
        data = self.inner.read(n, timeout)
        if self.silent:
            return b""
        out = bytearray()
        for byte in data:
            number, offset, _ = self.replies.feed(byte)
            fault = self.device.get(number)
            if fault is not None and fault[0] == "flip" and offset == fault[1]:
                byte ^= fault[2]
                self.applied.append(("device", number, fault))
            elif fault is not None and fault[0] == "drop" and offset in fault[1]:
                self.applied.append(("device", number, fault))
                continue
            out.append(byte)
        return bytes(out)

    def flush(self):
        self.inner.flush()

    def close(self):
        self.inner.close()


def _offsets(start, count):
    return tuple(range(start, start + count))


# name: (host faults, device faults, the error kinds of which at least one must be counted)
FAULTS = {
    # A pixel of the second FRAME flipped: the device answers BAD_CRC, the frame is sent again.
    "host-flip-pixel": ({(FRAME, 1): ("flip", 5 + 300, 0x10)}, {}, {"device_bad_crc"}),
    # Its id flipped: BAD_CRC comes back under the wrong id (ignored, or taken for the frame
    # that has it); the frame itself is found lost when the next RESULT comes.
    "host-flip-id": ({(FRAME, 1): ("flip", 2, 0x40)}, {},
                     {"stray_error", "device_bad_crc", "no_reply", "reply_unexpected_id"}),
    # Its length raised above N0: BAD_LENGTH at once; the rest of the packet is noise.
    "host-flip-length": ({(FRAME, 1): ("flip", 4, 0x04)}, {}, {"device_bad_length"}),
    # Three pixels lost with the next FRAME right behind: that one is swallowed as well.
    "host-drop-mid": ({(FRAME, 1): ("drop", _offsets(200, 3))}, {},
                      {"device_bad_crc", "device_timeout", "no_reply", "timeout"}),
    # Pixels of the last FRAME lost: nothing follows, the device's gap timeout answers.
    "host-drop-last": ({(FRAME, 5): ("drop", _offsets(400, 2))}, {}, {"device_timeout"}),
    # (Device packets: 0 is the INFO, k the RESULT of frame k - 1.)
    # A byte of the second RESULT flipped on its way back: bad crc, resync, retry.
    "reply-flip-score": ({}, {2: ("flip", 8, 0x01)}, {"reply_bad_crc"}),
    # The sync byte of the second RESULT flipped: bytes outside any packet, resync, retry.
    "reply-flip-sync": ({}, {2: ("flip", 0, 0xFF)}, {"reply_garbage"}),
    # Two bytes of the second RESULT lost: the next reply completes it, with a bad crc.
    "reply-drop-mid": ({}, {2: ("drop", (6, 7))}, {"reply_bad_crc", "reply_garbage", "timeout"}),
    # The crc byte of the last RESULT lost: the driver's timeout, resync, retry.
    "reply-drop-last": ({}, {6: ("drop", (27,))}, {"timeout"}),
}


@pytest.mark.parametrize("name", list(FAULTS))
def test_sim_fault_is_retried_nothing_lost(pool, device, trained, name):
    model, _ = trained
    host, dev, kinds = FAULTS[name]
    x, _, golden = pool
    frames = 6
    with SimTransport(device) as sim:
        faulty = Faulty(sim, host, dev)
        acc = Accelerator(faulty, model=model, timeout=3.0)
        start = time.monotonic()
        report = acc.infer(x[:frames])
        elapsed = time.monotonic() - start
    assert faulty.applied, "the fault was not injected"
    check_against_golden(report, golden, frames)
    assert report.retries >= 1
    assert kinds & set(report.errors), report.errors
    assert elapsed < 30, report.errors
    assert sim.stats["tx_framing_errors"] == 0


def test_sim_device_stops_answering(trained, pool, device):
    """After the handshake the wrapper passes nothing either way: DeviceTimeout naming the
    frame, its id and the wait, after (retries + 1) timeouts, in bounded time."""
    model, _ = trained
    x, _, _ = pool
    with SimTransport(device) as sim:
        faulty = Faulty(sim)
        acc = Accelerator(faulty, model=model, timeout=1.0, retries=1)
        faulty.silent = True
        start = time.monotonic()
        with pytest.raises(DeviceTimeout, match=r"^frame 0 \(FRAME id 0x[0-9a-f]{2}, attempt 2 "
                                                r"of 2\): no reply within 1\.0 s \(waited "
                                                r"1\.\d\d s\); giving up after 2 attempts") as e:
            acc.infer(x[:4])
        elapsed = time.monotonic() - start
    assert e.value.frame == 0 and e.value.attempts == 2 and e.value.waited >= 1.0
    # Two timeouts and one resync (its quiet time, 1 s) in between.
    assert 3.0 <= elapsed < 6.0


def test_connect_finds_the_bit_rate(trained, device):
    # The simulated board runs at 250,000 baud. A host at 125,000 baud drives and samples its
    # pins at twice the bit time: the bridge answers nothing it can parse, and the driver moves
    # on to the next rate.
    model, _ = trained
    acc = connect(lambda rate: SimTransport(device, baud=rate), rates=(125_000, 250_000),
                  model=model, probe_timeout=3.0)
    with acc.transport:
        assert acc.info.baud == 250_000
        assert acc.transport.host_divisor == device.info.divisor
        assert acc.infer(np.zeros((1, 784), np.uint8)).frames == 1


def test_probe_tries_the_boards_default_rates_first():
    """A board built with its default rate is found by the first HELLO."""
    defaults = set(DEFAULT_BAUD.values())
    assert defaults == {3_000_000}
    assert set(PROBE_BAUDS[:len(defaults)]) == defaults
    assert len(set(PROBE_BAUDS)) == len(PROBE_BAUDS) and 1_000_000 in PROBE_BAUDS


def test_connect_names_every_rate_it_tried(device):
    opened = []

    def open_at(rate):
        opened.append(SimTransport(device, baud=rate))
        return opened[-1]

    with pytest.raises(DeviceTimeout, match=r"no INFO reply to HELLO at any bit rate tried: "
                       r"125,000 \((no reply|garbage)\), 500,000 \((no reply|garbage)\) baud.*"
                       r"--baud"):
        connect(open_at, rates=(125_000, 500_000), probe_timeout=2.0)
    assert [t.host_divisor for t in opened] == [8, 2]
    assert all(t._closed for t in opened)
    with pytest.raises(ValueError, match="baud"):
        SimTransport(device, baud=600_000)


def test_run_accelerator_sim(trained, device, monkeypatch):
    """The ``xnorflow run`` report from the simulator (the build is found in the cache)."""
    model, path = trained
    monkeypatch.setenv("XNORFLOW_SIM_CACHE", str(device.build_dir.parent))
    out = run_accelerator(path, sim=True, frames=4, folding=FOLDING.to_dict())
    json.dumps(out)
    ds = load(None, "test")
    index = np.linspace(0, len(ds) - 1, 4).round().astype(int)
    golden = GoldenModel(model).predict(ds.images[index])
    assert out["predictions"] == golden.tolist() and out["golden_agreement"] == 1.0
    assert out["scores_agreement"] == 1.0 and out["frames"] == 4
    assert out["accuracy"] == float((golden == ds.labels[index]).mean())
    assert out["model_hash"] == model.content_hash
    assert out["device_info"]["model_hash"] == model.content_hash
    assert out["device_info"]["baud"] == 250_000 and out["errors"] == {}
    assert out["transport"].startswith("sim:verilator") and out["sim"]["end"] == "eof"
    assert out["sim"]["build_cached"] and out["sim"]["build_dir"] == str(device.build_dir)
    assert out["frames_per_s"] > 0


def test_cli_run_sim_json(trained, device, monkeypatch, tmp_path, capsys):
    """``xnorflow run --sim --json`` on the same build: the JSON contract of the verb."""
    from xnorflow.cli import main

    _, path = trained
    monkeypatch.setenv("XNORFLOW_SIM_CACHE", str(device.build_dir.parent))
    folding = tmp_path / "folding.json"
    folding.write_text(json.dumps(FOLDING.to_dict()))
    assert main(["run", str(path), "--sim", "--frames", "3", "--folding", str(folding),
                 "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["frames"] == 3 and out["golden_agreement"] == 1.0
    assert set(out) >= {"frames", "accuracy", "frames_per_s", "errors"}
    assert main(["run", str(path), "--port", "loop://", "--frames", "1", "--timeout", "0.5"]) == 2
    assert "error:" in capsys.readouterr().err


# --- The on-device benchmark through the simulated board ------------------------------------------


def golden_words_crc(golden, indexes, repeat, score_bits):
    """zlib's CRC-32 of the golden result words of ``indexes`` (the test's own packing: index in
    4 bits at bit 0, then 10 unsigned scores of ``score_bits``; whole bytes), ``repeat`` times."""
    used = 4 + 10 * score_bits
    block = b""
    for k in indexes:
        word = int(golden.classes[k])
        for c in range(10):
            word |= int(golden.scores[k][c]) << (4 + c * score_bits)
        block += word.to_bytes(-(-used // 8), "little")
    return zlib.crc32(block * repeat)


def test_sim_bench_exact(trained, pool, device):
    """BENCH through the simulated board's UART with the real driver: for several F and R the
    device's cycle count equals latency + (F*R - 1) * II exactly and the checksum is the golden
    results'; frames run right afterwards."""
    model, _ = trained
    x, _, golden = pool
    network = NetworkTiming.of(model, FOLDING)
    ii, latency = network.ii, network.latency
    assert ii > network.beats_per_frame
    with SimTransport(device) as transport:
        acc = Accelerator(transport, model=model)
        assert acc.info.bench
        for frames, repeat, first in [(1, 1, 3), (2, 3, 0), (2, 5, 5), (1, 7, 15)]:
            m = acc.bench(x[first:first + frames], repeat, network=network)
            assert (m.frames, m.repeat, m.total_frames) == (frames, repeat, frames * repeat)
            assert m.cycles == latency + (frames * repeat - 1) * ii == m.predicted_cycles
            assert m.cycles_difference == 0
            assert m.expected_from == "golden" and m.checksum_ok
            assert m.checksum == golden_words_crc(golden, range(first, first + frames), repeat,
                                                  acc.info.score_bits)
            assert m.clock_hz == 10**12 // device.accel_period_ps == 1_280_000
            assert m.frames_per_s == frames * repeat * 1_280_000 / m.cycles
            assert m.predicted_frames_per_s == 1_280_000 / ii
            assert m.ratio == m.frames_per_s / m.predicted_frames_per_s < 1
            json.dumps(m.to_dict())
        report = acc.infer(x[6:9])
        # Without a model the expected checksum comes from the loads' RESULTs.
        plain = Accelerator(transport).bench(x[9:11], 2)
    assert report.predictions.tolist() == golden.classes[6:9].tolist()
    assert report.scores.tolist() == golden.scores[6:9].tolist()
    assert plain.expected_from == "device" and plain.checksum_ok
    assert plain.predicted_cycles is None and plain.ratio is None
    assert plain.cycles == latency + 3 * ii


def test_sim_bench_refusals(trained, pool, device):
    """Requests the driver refuses before sending, and the device's own BAD_BENCH (F above the
    frames stored since reset: a fresh session, nothing stored) raised as BenchRefused."""
    from xnorflow.hw.tops.protocol import ErrorCode, ErrorReply, encode_bench

    model, _ = trained
    x, _, _ = pool
    with SimTransport(device) as transport:
        acc = Accelerator(transport, model=model)
        with pytest.raises(ValueError, match=r"^frames: 3 given; the device stores 1 to 2 "):
            acc.bench(x[:3], 1)
        with pytest.raises(ValueError, match=r"^repeat \(0\) must be an integer in \[1, "
                                             r"16777215\]$"):
            acc.bench(x[:1], 0)
        # The device's check: a BENCH with nothing stored (sent as the driver would).
        transport.write(encode_bench(77, 1, 1))
        packets = []
        deadline = time.monotonic() + 30
        while not packets and time.monotonic() < deadline:
            packets, _ = acc._receive(deadline)
        assert [(p.cmd.value, p.id, p.payload) for p in packets] == [(ERROR, 77, bytes([6, 3]))]
        error = acc._bench_refused(ErrorReply.from_payload(packets[0].payload), 1, 1)
        assert isinstance(error, BenchRefused) and error.code == ErrorCode.BAD_BENCH
        assert str(error).startswith("the device refused BENCH (1 frames x 1) with ERROR "
                                     "BAD_BENCH: frames (1) or repeat (1) out of range")


def test_bench_accelerator_and_cli(trained, device, monkeypatch, tmp_path, capsys):
    """``xnorflow run --sim --bench --json``: the report's fields; a checksum is checked."""
    from xnorflow.cli import main

    model, path = trained
    monkeypatch.setenv("XNORFLOW_SIM_CACHE", str(device.build_dir.parent))
    folding = tmp_path / "folding.json"
    folding.write_text(json.dumps(FOLDING.to_dict()))
    assert main(["run", str(path), "--sim", "--bench", "--repeat", "4", "--folding",
                 str(folding), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["frames"], out["repeat"], out["total_frames"]) == (2, 4, 8)
    assert out["checksum_ok"] and out["checksum"] == out["expected_checksum"]
    assert out["cycles"] == out["predicted_cycles"] == out["latency_cycles"] + 7 * out[
        "ii_cycles"]
    assert out["cycles_difference"] == 0 and out["folding"] == "given"
    assert out["clock_hz"] == 1_280_000 and out["sim"]["end"] == "eof"
    assert out["predicted_frames_per_s"] == round(1_280_000 / out["ii_cycles"], 3)
    direct = bench_accelerator(path, sim=True, frames=1, repeat=2, folding=FOLDING.to_dict())
    assert direct["cycles"] == direct["latency_cycles"] + direct["ii_cycles"]
    assert direct["checksum_ok"]
    with pytest.raises(ValueError, match="either a port"):
        bench_accelerator(path)
    assert main(["run", str(path), "--sim", "--repeat", "3"]) == 2
    assert "--repeat applies to --bench" in capsys.readouterr().err


@pytest.mark.slow
def test_cli_bench_tfc_at_the_networks_rate(capsys):
    """``xnorflow run tfc --sim --bench --repeat 200``: the shipped TFC (default folding) in the
    simulated board, 2 frames x 200: exact cycles, golden checksum, and frames/s within 1 % of
    clock / II."""
    from xnorflow.cli import main

    assert main(["run", "tfc", "--sim", "--bench", "--repeat", "200", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["ii_cycles"], out["latency_cycles"]) == (196, 622)
    assert out["cycles"] == out["predicted_cycles"] == 622 + 399 * 196
    assert out["checksum_ok"] and out["expected_from"] == "golden"
    assert out["ratio"] == pytest.approx(1.0, rel=0.01)
    assert out["frames_per_s"] == pytest.approx(1_280_000 / 196, rel=0.01)


def test_sim_session_failure_is_a_transport_error(device, tmp_path):
    """A simulation that cannot start (its build is gone): the driver's TransportError, naming
    the exit and quoting the session's log, which names the missing simulator executable."""
    gone = dataclasses.replace(device, sim_build=dataclasses.replace(
        device.sim_build, build_dir=tmp_path / "gone", sources=(tmp_path / "gone.v",)))
    with pytest.raises(TransportError, match=r"^the simulation exited \(status 1\) before "
                                             r"connecting; end of .*session\.log:\n"
                                             r"(.|\n)*gone/uart_bridge"):
        SimTransport(gone, start_timeout=120)


# --- A scripted fake device at the byte level -----------------------------------------------------


def fake_result(pixels, classes):
    """The fake accelerator: some function of the frame."""
    total = int(np.asarray(list(pixels), dtype=np.int64).sum())
    scores = [(total * (k + 3)) % 1000 for k in range(classes)]
    return int(np.argmax(scores)), scores


class FakeDevice(Transport):
    """The device side of the protocol in plain Python, replying as the device rules say
    (ERRORs at once, RESULTs in order), misbehaving where ``script`` says.

    ``script`` maps a frame (its pixel 0 is its index) to the actions of its successive
    arrivals: ``"ok"``, ``"error:<CODE>"``, ``"drop"`` (no reply), ``"corrupt"`` (a byte of the
    RESULT flipped), ``"garbage"`` (noise before the RESULT), ``"wrong_id"`` (the RESULT carries
    an id nobody used), ``"late"`` (the RESULT is held back and sent after the next one) and
    ``"frame_error"`` (status FRAME_ERROR). A reply is released to the host one packet per
    ``read`` (a device that takes time), so the frames written before it count as in flight."""

    reply_timeout = 0.3
    resync_quiet = 0.02

    def __init__(self, *, capacity=2, classes=10, n0=N0, version=2, model_hash=bytes(32),
                 script=None, silent=False):
        self.capacity, self.classes, self.n0 = capacity, classes, n0
        self.version, self.model_hash = version, model_hash
        self.script = {k: list(v) for k, v in (script or {}).items()}
        self.silent = silent
        self.parser = StreamParser(0xA5)
        self.queue = []         # (reply, answers a FRAME) not yet released
        self.out = bytearray()  # released bytes
        self.held = None
        self.in_flight = 0
        self.max_in_flight = 0
        self.arrivals = {}

    def info(self):
        payload = bytes([self.version, 0x01, self.capacity, 10]) \
            + self.n0.to_bytes(2, "little") + self.classes.to_bytes(2, "little") \
            + (1000).to_bytes(2, "little") + (1_000_000).to_bytes(4, "little") \
            + (4).to_bytes(4, "little") + self.model_hash
        return payload

    def write(self, data):
        for byte in data:
            self.parser.feed(byte)
        while self.parser.packets:
            cmd, id, payload, ok = self.parser.packets.pop(0)
            assert ok, "the driver sent a packet with a bad crc"
            if self.silent:
                continue
            if cmd == HELLO:
                self.queue.append((device_packet(INFO, id, self.info()), False))
                continue
            assert cmd == FRAME and len(payload) == self.n0
            frame = payload[0]
            self.arrivals[frame] = self.arrivals.get(frame, 0) + 1
            actions = self.script.get(frame, [])
            action = actions.pop(0) if actions else "ok"
            if action == "drop":
                continue
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            if action.startswith("error:"):
                code = CODES[action.split(":")[1]]
                self.queue.append((device_packet(ERROR, id, bytes([code, FRAME])), True))
                continue
            index, scores = fake_result(payload, self.classes)
            status = 0x01 if action == "frame_error" else 0
            body = bytes([index]) + b"".join(s.to_bytes(2, "little") for s in scores) \
                + bytes([status])
            packet = device_packet(RESULT, id ^ 0x80 if action == "wrong_id" else id, body)
            if action == "corrupt":
                packet = packet[:7] + bytes([packet[7] ^ 0x20]) + packet[8:]
            if action == "garbage":
                packet = bytes([0x13, 0x37, 0x5A, 0x99]) + packet
            if action == "late":
                self.held = packet
                continue
            self.queue.append((packet, True))
            if self.held is not None:
                self.queue.append((self.held, True))
                self.held = None

    def read(self, n, timeout):
        if not self.out and self.queue:
            packet, answers_frame = self.queue.pop(0)
            self.in_flight -= answers_frame
            self.out += packet
        if not self.out:
            time.sleep(min(timeout, 0.002))
            return b""
        data = bytes(self.out[:n])
        del self.out[:n]
        return data

    def close(self):
        pass


def frames_for_fake(count):
    rng = np.random.default_rng(count)
    x = rng.integers(0, 256, (count, N0), dtype=np.uint8)
    x[:, 0] = np.arange(count)
    return x


def expected_fake(x, classes=10):
    results = [fake_result(row, classes) for row in x]
    return [r[0] for r in results], [r[1] for r in results]


@pytest.mark.parametrize(("capacity", "max_in_flight", "window"),
                         [(2, None, 2), (3, None, 3), (3, 1, 1), (2, 5, 2)])
def test_fake_window_and_order(capacity, max_in_flight, window):
    """At most min(K, max_in_flight) frames in flight; results in input order."""
    fake = FakeDevice(capacity=capacity)
    acc = Accelerator(fake, max_in_flight=max_in_flight)
    x = frames_for_fake(9)
    report = acc.infer(x)
    classes, scores = expected_fake(x)
    assert report.predictions.tolist() == classes and report.scores.tolist() == scores
    assert fake.max_in_flight == window == report.in_flight
    assert (report.errors, report.retries) == ({}, 0)


@pytest.mark.parametrize(("script", "kinds"), [
    ({1: ["error:BAD_CRC"], 3: ["error:OVERFLOW"], 4: ["error:TIMEOUT"]},
     {"device_bad_crc": 1, "device_overflow": 1, "device_timeout": 1}),
    ({2: ["drop"]}, {"no_reply": 1}),
    ({2: ["wrong_id"]}, {"reply_unexpected_id": 1, "resync": 1}),
    ({1: ["corrupt"]}, {"reply_bad_crc": 1, "resync": 1}),
    ({1: ["garbage"]}, {"reply_garbage": 1, "resync": 1}),
    # The held-back RESULT comes after its frame was sent again: its old id is retired, so it
    # is stale and ignored.
    ({1: ["late"]}, {"no_reply": 1, "stale_reply": 1}),
])
def test_fake_faults_are_retried(script, kinds):
    """Each misbehaviour leads to a retry, never to a lost or misattributed result."""
    fake = FakeDevice(script=script)
    acc = Accelerator(fake, retries=2)
    x = frames_for_fake(7)
    start = time.monotonic()
    report = acc.infer(x)
    classes, scores = expected_fake(x)
    assert report.predictions.tolist() == classes and report.scores.tolist() == scores
    for kind, count in kinds.items():
        assert report.errors.get(kind) == count, report.errors
    assert report.retries >= 1
    # A lost reply is found by the next RESULT, not by waiting for the timeout.
    if "drop" in str(script):
        assert time.monotonic() - start < fake.reply_timeout


def test_fake_stray_error_is_ignored():
    """An ERROR whose id is not outstanding (the device answering noise) changes nothing."""
    fake = FakeDevice()
    acc = Accelerator(fake)
    fake.queue.append((device_packet(ERROR, 0xEE, bytes([1, 0x02])), False))
    x = frames_for_fake(3)
    report = acc.infer(x)
    assert report.predictions.tolist() == expected_fake(x)[0]
    assert report.errors == {"stray_error": 1} and report.retries == 0


def test_fake_retries_are_bounded():
    """A frame the device always rejects: FrameFailed naming it after retries + 1 attempts."""
    fake = FakeDevice(script={2: ["error:BAD_CRC"] * 10})
    acc = Accelerator(fake, retries=2)
    with pytest.raises(FrameFailed, match=r"^frame 2 \(FRAME id 0x[0-9a-f]{2}, attempt 3 of 3\): "
                                          r"the device answered ERROR BAD_CRC; giving up after "
                                          r"3 attempts \(faults: device_bad_crc, "
                                          r"device_bad_crc, device_bad_crc\)") as e:
        acc.infer(frames_for_fake(5))
    assert not isinstance(e.value, DeviceTimeout)
    assert (e.value.frame, e.value.attempts) == (2, 3) and fake.arrivals[2] == 3
    # The same driver goes on: the frames left outstanding are given up on (their replies, if
    # any, are stale), and the next call starts from a quiet line.
    fake.script.clear()
    x = frames_for_fake(4)
    report = acc.infer(x)
    assert report.predictions.tolist() == expected_fake(x)[0]
    assert report.retries == 0


def test_fake_silent_device():
    """No reply to HELLO: DeviceTimeout after retries + 1 attempts; and a device that stops
    answering frames: DeviceTimeout naming the frame."""
    with pytest.raises(DeviceTimeout, match=r"^no INFO reply to HELLO \(last id 0x[0-9a-f]{2}\) "
                                            r"in 2 attempts \(faults: timeout, timeout\); "
                                            r"waited 0\.\d\d s"):
        Accelerator(FakeDevice(silent=True), retries=1)
    fake = FakeDevice()
    acc = Accelerator(fake, retries=1)
    fake.silent = True
    with pytest.raises(DeviceTimeout, match=r"^frame 0 \(FRAME id .* no reply within 0\.3 s"):
        acc.infer(frames_for_fake(3))


def test_fake_handshake_checks():
    with pytest.raises(ProtocolVersionError, match=r"^the device speaks protocol version 1, "
                                                   r"this driver version 2$"):
        Accelerator(FakeDevice(version=1))
    tfc, sfc = Model.load(shipped()["tfc"]), Model.load(shipped()["sfc"])
    fake = FakeDevice(model_hash=bytes.fromhex(sfc.content_hash))
    with pytest.raises(ModelMismatch, match=rf"^the device holds model {sfc.content_hash}, but "
                                            rf"the driver was given model {tfc.content_hash}"):
        Accelerator(fake, model=tfc)
    acc = Accelerator(FakeDevice(model_hash=bytes.fromhex(sfc.content_hash)), model=sfc)
    assert acc.info.model_hash.hex() == sfc.content_hash


def test_fake_frame_error_status_raises():
    acc = Accelerator(FakeDevice(script={1: ["frame_error"]}))
    with pytest.raises(DeviceError, match=r"FRAME_ERROR in the RESULT of frame 1 "):
        acc.infer(frames_for_fake(3))


def test_frames_are_validated():
    acc = Accelerator(FakeDevice())
    with pytest.raises(FrameError, match=r"^frames must have shape \(B, 784\) .*got \(2, 783\)$"):
        acc.infer(np.zeros((2, 783), np.uint8))
    with pytest.raises(FrameError, match=r"^pixel out of range \[0, 255\]: frame 1, pixel 7 = "
                                         r"256$"):
        x = np.zeros((2, N0), np.int64)
        x[1, 7] = 256
        acc.infer(x)
    with pytest.raises(FrameError, match=r"integer pixels in \[0, 255\], got dtype float32"):
        acc.infer(np.zeros((1, N0), np.float32))
    with pytest.raises(FrameError, match=r"^labels must be 2 integers"):
        acc.infer(np.zeros((2, N0), np.uint8), labels=[1])
    # (B, 28, 28) and a single frame are accepted.
    x = frames_for_fake(2)
    report = acc.infer(x.reshape(2, 28, 28))
    assert report.predictions.tolist() == expected_fake(x)[0]
    assert acc.infer(x[0]).frames == 1 and acc.infer(x[:0]).frames == 0


# --- SerialTransport over pyserial's loop:// ------------------------------------------------------


def test_driver_imports_without_fcntl():
    """Windows has no ``fcntl``: the driver, its transports and the simulated board's module
    load without it (the build cache's lock imports its locking module only when locking)."""
    code = ("import sys\n"
            "sys.modules['fcntl'] = None  # import fcntl now raises ImportError\n"
            "from xnorflow.host.driver import Accelerator, SerialTransport, SimTransport\n"
            "import xnorflow.sim.board, xnorflow.sim.cache, xnorflow.sim.simulate\n"
            "print('loaded')\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0 and done.stdout == "loaded\n", done.stderr


def test_serial_transport_loop():
    with SerialTransport("loop://", 115200) as t:
        assert t.describe() == "serial:loop://@115200"
        t.write(b"\xa5hello")
        assert t.read(3, 1.0) == b"\xa5he"
        start = time.monotonic()
        assert t.read(10, 0.2) == b"llo"  # fewer than asked, after the timeout
        assert 0.15 <= time.monotonic() - start < 1.0
        assert t.read(1, 0.0) == b""
        t.flush()


def test_serial_transport_socket_url():
    """A pyserial ``socket://`` URL (a TCP serial server) on 127.0.0.1."""
    import socket

    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        with SerialTransport(f"socket://127.0.0.1:{port}", 115200) as t:
            peer, _ = server.accept()
            with peer:
                t.write(b"\xa5\x01")
                assert peer.recv(16) == b"\xa5\x01"
                peer.sendall(b"\x5a\x81\x07")
                assert t.read(3, 2.0) == b"\x5a\x81\x07"
                assert t.read(1, 0.05) == b""


def test_serial_transport_no_device():
    """The driver on a line that echoes (no device): its own HELLO comes back, which is no
    device packet, and the handshake fails after its attempts."""
    with SerialTransport("loop://", 115200) as t:
        with pytest.raises(FrameFailed, match=r"^no INFO reply to HELLO \(last id 0x01\) in 2 "
                                              r"attempts \(faults: reply_garbage, "
                                              r"reply_garbage\); .* on serial:loop://@115200"):
            Accelerator(t, timeout=0.2, retries=1)
    with pytest.raises(TransportError, match=r"^cannot open serial port '/nonexistent/tty'"):
        SerialTransport("/nonexistent/tty", 115200)

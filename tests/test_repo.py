"""The repository itself: packaging, the README's commands, lint."""

import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    return re.findall(r"```sh\n(.*?)\n```", text, re.S)


def test_ci_runs_the_readme_test_command():
    test_cmd = next(c for c in readme_commands() if "pytest" in c)
    ci = (ROOT / ".ci" / "run").read_text()
    # .ci/run adds only quiet flags to pip; the commands are otherwise the same
    normalized = ci.replace(" --quiet --disable-pip-version-check", "").replace("python -m pip",
                                                                                 "pip")
    assert test_cmd in normalized
    assert "torch==2.13.0" in ci


def test_readme_main_command_is_the_demo():
    assert any("xnorflow demo" in c for c in readme_commands())


def test_wheel_contents(tmp_path):
    # pip itself emits deprecation warnings; they are not the project's, so pip runs without
    # the test suite's warnings-as-errors.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"}
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "--quiet", "-w", str(tmp_path), str(ROOT)], check=True,
                   capture_output=True, env=env)
    (wheel,) = tmp_path.glob("xnorflow-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    assert tops == {"xnorflow", next(t for t in tops if t.endswith(".dist-info"))}
    for want in ("xnorflow/__init__.py", "xnorflow/golden.py", "xnorflow/hw/__init__.py",
                 "xnorflow/sim/__init__.py", "xnorflow/cli.py", "xnorflow/data.py"):
        assert want in names
    # every module of the source folders, at its package's place
    for folder, package in (("sw", "xnorflow"), ("hw", "xnorflow/hw"), ("sim", "xnorflow/sim")):
        for source in (ROOT / folder).rglob("*.py"):
            assert f"{package}/{source.relative_to(ROOT / folder).as_posix()}" in names, source
    models = [n for n in names if n.startswith("xnorflow/models/") and n.endswith(".npz")]
    assert {Path(m).name for m in models} >= {"tfc.npz", "sfc.npz"}
    entry = next(n for n in names if n.endswith("entry_points.txt"))
    assert "xnorflow = xnorflow.cli:main" in zipfile.ZipFile(wheel).read(entry).decode()


def test_editable_install_maps_the_namespace():
    import xnorflow
    import xnorflow.hw
    import xnorflow.sim
    assert Path(xnorflow.__file__).parent.name == "sw"
    assert Path(xnorflow.hw.__file__).parent.name == "hw"
    assert Path(xnorflow.sim.__file__).parent.name == "sim"


def test_ruff_clean():
    ruff = subprocess.run([sys.executable, "-m", "ruff", "check", str(ROOT)],
                          capture_output=True, text=True)
    assert ruff.returncode == 0, ruff.stdout + ruff.stderr


def test_no_noqa():
    hits = [f"{p.relative_to(ROOT)}" for d in ("sw", "hw", "sim", "tests")
            for p in (ROOT / d).rglob("*.py") if "noqa" in p.read_text().replace("no `noqa`", "")
            and p.name != "test_repo.py"]
    assert hits == []


@pytest.mark.parametrize("doc", ["README.md", "docs/semantics.md"])
def test_docs_links_resolve(doc):
    text = (ROOT / doc).read_text()
    for target in re.findall(r"\]\(([^)#:]+)\)", text):
        assert (ROOT / Path(doc).parent / target).exists(), target

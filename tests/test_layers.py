"""The layers of the code (docs/architecture: README, "Layout"): every module imports only from its
own layer or the ones below, imports inside functions included, and no two modules import each
other, directly or around a cycle."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
#: Source folder -> package, as pyproject.toml maps them.
FOLDERS = {"sw": "xnorflow", "hw": "xnorflow.hw", "sim": "xnorflow.sim"}
#: Layers from the bottom; a module belongs to the longest prefix that names it.
LAYERS = [
    ("core", ["xnorflow", "xnorflow.models", "xnorflow.native"]),
    ("compiler", ["xnorflow.hw", "xnorflow.hw.compiler"]),
    ("blocks", ["xnorflow.hw.blocks"]),
    ("tops", ["xnorflow.hw.tops"]),
    ("build", ["xnorflow.hw.build"]),
    ("simulation", ["xnorflow.sim"]),
    ("host", ["xnorflow.host"]),
    ("cli", ["xnorflow.cli", "xnorflow.__main__"]),
]


def _modules() -> dict[str, Path]:
    found = {}
    for folder, package in FOLDERS.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = list(path.relative_to(ROOT / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join([package, *parts])] = path
    return found


MODULES = _modules()


def layer_of(module: str) -> int:
    best, level = -1, None
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
                best, level = len(prefix), index
    if level is None:
        raise AssertionError(f"{module} is in no layer")
    return level


def imports_of(module: str, path: Path) -> set[str]:
    """The project's modules that ``module`` imports anywhere in its file."""
    is_package = path.name == "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base[:len(base) - node.level + (1 if is_package else 0)]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module
            names = [f"{prefix}.{alias.name}" if f"{prefix}.{alias.name}" in MODULES else prefix
                     for alias in node.names]
        else:
            continue
        found.update(name for name in names if name in MODULES and name != module)
    return found


GRAPH = {module: imports_of(module, path) for module, path in MODULES.items()}


def test_every_module_has_a_layer():
    assert "xnorflow.hw.compiler.plan" in MODULES and "xnorflow.cli" in MODULES
    for module in MODULES:
        layer_of(module)


def test_no_import_points_up():
    upward = [f"{module} ({LAYERS[layer_of(module)][0]}) imports {target} "
              f"({LAYERS[layer_of(target)][0]})"
              for module, targets in GRAPH.items() for target in sorted(targets)
              if layer_of(target) > layer_of(module)]
    assert not upward, "imports that point up the layers:\n" + "\n".join(upward)


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle of ``graph`` as a list of nodes (first == last), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node):
        state[node] = 1
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return stack[stack.index(target):] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_no_import_cycle():
    cycle = find_cycle(GRAPH)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_checks_catch_what_they_should():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
    assert layer_of("xnorflow.golden") < layer_of("xnorflow.hw.compiler.plan") \
        < layer_of("xnorflow.hw.blocks.mvtu") < layer_of("xnorflow.hw.tops.network") \
        < layer_of("xnorflow.hw.build.synth") < layer_of("xnorflow.sim.runner") \
        < layer_of("xnorflow.host.driver") < layer_of("xnorflow.cli")


@pytest.mark.parametrize("source, expected", [
    ("from xnorflow.sim.runner import build\n", {"xnorflow.sim.runner"}),
    ("def f():\n    from ..tops.network import Network\n", {"xnorflow.hw.tops.network"}),
    ("def f():\n    from xnorflow.hw.compiler import plan\n", {"xnorflow.hw.compiler.plan"}),
])
def test_imports_are_found_inside_functions_and_relative(tmp_path, source, expected):
    path = tmp_path / "m.py"
    path.write_text(source)
    assert imports_of("xnorflow.hw.compiler.x", path) == expected

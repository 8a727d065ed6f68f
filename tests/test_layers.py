"""The architecture holds: layers, no import circles, files of one job (issue 15).

docs/architecture.rst draws the layers; this test keeps the code to them. It parses every
module of the core and of the bundled plugins, so an import hidden inside a function counts
as much as one at the top. Imports under ``if TYPE_CHECKING:`` are not counted: they are
never run, and only name types for annotations.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import facekit

CORE = Path(facekit.__file__).resolve().parent
PLUGINS = CORE.parents[1] / "plugins"

#: the core's layers, lowest first: a module may import its own layer and those below it
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("foundations", ("facekit._version", "facekit.errors", "facekit.io")),
    ("numbers and pictures", ("facekit.scoring.metric", "facekit.scoring.similarity", "facekit.scoring.metrics",
                              "facekit.image", "facekit.quality", "facekit.pictures")),
    ("model", ("facekit.types", "facekit.components", "facekit.engine", "facekit.hookspecs")),
    ("registry", ("facekit.plugins", "facekit.config", "facekit.cache", "facekit.scoring.calibration",
                  "facekit.dlib_model")),
    ("pipeline", ("facekit.pipeline",)),
    ("built-in components", ("facekit.builtin",)),
    ("applications", ("facekit.studies", "facekit.collections", "facekit.testing")),
    ("command line", ("facekit.cli", "facekit.__main__")),
]
#: the package itself re-exports the public names, and the subpackages' __init__ files
#: only document their modules: neither is a layer of its own
PACKAGES = {"facekit", "facekit.scoring", "facekit.pictures", "facekit.studies", "facekit.collections",
            "facekit.dlib_model", "facekit.pipelines"}
#: a file (core or bundled plugin) longer than this says why at its top ("Why one file: ...")
MAX_LINES = 500


def _modules() -> dict[str, Path]:
    roots = {"facekit": CORE} | {p.name: p for p in PLUGINS.glob("*/src/*") if (p / "__init__.py").is_file()}
    found = {}
    for package, root in roots.items():
        for path in root.rglob("*.py"):
            parts = [package, *path.relative_to(root).with_suffix("").parts]
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


MODULES = _modules()


def _runtime_imports(name: str, path: Path) -> set[str]:
    """The modules of MODULES that ``name`` imports when it runs (functions included)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    annotation_only = {
        id(node)
        for block in ast.walk(tree)
        if isinstance(block, ast.If) and "TYPE_CHECKING" in ast.unparse(block.test)
        for statement in block.body
        for node in ast.walk(statement)
    }
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in annotation_only:
            continue
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            names = [f"{base}.{alias.name}" for alias in node.names]
            targets.update(names)
            if not all(n in MODULES for n in names):  # `from pkg import module` does not use pkg's own code
                targets.add(base)
    known = set()
    for target in targets:
        parts = target.split(".")
        while parts and ".".join(parts) not in MODULES:
            parts.pop()
        if parts and ".".join(parts) != name:
            known.add(".".join(parts))
    return known


GRAPH = {name: _runtime_imports(name, path) for name, path in MODULES.items()}


def _layer(module: str) -> int:
    for rank, (_, prefixes) in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return rank
    raise AssertionError(f"{module} is in no layer: add it to LAYERS here and to docs/architecture.rst")


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def _in_core(module: str) -> bool:
    return module == "facekit" or module.startswith("facekit.")


def _without_packages(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    # `from facekit import errors` reads the package only to reach the module; the package
    # root is loaded before any of its modules, so an edge to it is no dependency
    return {m: {t for t in targets if t not in PACKAGES} for m, targets in graph.items() if m not in PACKAGES}


def test_the_graph_was_read() -> None:
    assert len([m for m in MODULES if m.startswith("facekit.")]) > 40
    assert any(m.startswith("facekit_torch") for m in MODULES)
    assert {"facekit.config", "facekit.engine", "facekit.types"} <= GRAPH["facekit.pipeline"]


def test_no_import_circles_in_the_core_or_the_plugins() -> None:
    assert _cycles(_without_packages(GRAPH)) == []


def test_the_cycle_finder_finds_a_circle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m.startswith("facekit.") and m not in PACKAGES))
def test_no_module_imports_a_higher_layer(module: str) -> None:
    rank = _layer(module)
    upward = sorted(
        f"{target} ({LAYERS[_layer(target)][0]})"
        for target in GRAPH[module]
        if target.startswith("facekit.") and target not in PACKAGES and _layer(target) > rank
    )
    assert upward == [], f"{module} ({LAYERS[rank][0]}) imports a higher layer"


def test_the_core_never_imports_a_plugin() -> None:
    offenders = {m: sorted(t for t in targets if not _in_core(t)) for m, targets in GRAPH.items() if _in_core(m)}
    assert {m: t for m, t in offenders.items() if t} == {}


def test_long_files_say_why() -> None:
    long_files = {}
    for name, path in MODULES.items():
        text = path.read_text(encoding="utf-8")
        lines = text.count("\n")
        head = "\n".join(text.splitlines()[:40])
        if lines > MAX_LINES and "Why one file" not in head:
            long_files[name] = lines
    assert long_files == {}


def test_the_architecture_page_says_where_every_bundled_component_lives() -> None:
    """docs/architecture.rst names each component of the core and the bundled plugins with
    the file that implements it, so that a newcomer can find it from that page alone."""
    from facekit.plugins import get_registry

    page = (CORE.parents[1] / "docs" / "architecture.rst").read_text(encoding="utf-8")
    registry = get_registry()
    registrations = [r for kind in registry.components.values() for r in kind.values()] + list(registry.engines.values())
    missing = []
    for registration in registrations:
        module = registration.cls.__module__
        if module.split(".")[0] not in MODULES:  # a third party's (the example plugin): not ours to document
            continue
        shown = module.replace(".", "/") + ("/" if MODULES[module].name == "__init__.py" else ".py")
        if f"``{registration.name}``" not in page or f"``{shown}``" not in page:
            missing.append(f"{registration.kind} {registration.name!r} in {shown}")
    assert missing == []
    assert len(registrations) >= 15  # the bundled plugins were loaded

"""The command line is the top layer: nothing in the core imports from ``facekit.cli``.

A first guard of the layering issue 15 asks for (the full layout and the no-circles check
are that issue's); it parses the imports, so an import hidden inside a function counts too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import facekit

CORE = Path(facekit.__file__).resolve().parent


def _imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_the_core_never_imports_the_cli() -> None:
    offenders = {
        str(path.relative_to(CORE)): sorted(m for m in _imported_modules(path) if m.split(".")[:2] == ["facekit", "cli"])
        for path in CORE.rglob("*.py")
        if path.relative_to(CORE).parts[0] not in ("cli", "__main__.py")
    }
    assert {k: v for k, v in offenders.items() if v} == {}
    assert len(offenders) > 20  # the walk really read the core's modules

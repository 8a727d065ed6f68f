"""The README's two commands are the ones CI and the docs use."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return re.findall(r"```bash\n(.+?)\n```", text, flags=re.S)[:2]


def test_readme_starts_with_the_two_commands():
    install_and_compare, install_and_test = _readme_commands()
    assert "facekit compare" in install_and_compare and "pip install" in install_and_compare
    assert "pytest" in install_and_test and "requirements-test.txt" in install_and_test


def test_ci_runs_the_readme_test_command():
    _, install_and_test = _readme_commands()
    assert install_and_test in (ROOT / ".ci" / "run").read_text(encoding="utf-8")

"""Shared pytest fixtures for the whole repository (core, plugins, examples)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import pytest

REPO_ROOT = Path(__file__).resolve().parent

# `pytester` runs pytest on small test files, to check the fixtures facekit gives plugin authors
# (declared here: pytest reads pytest_plugins only from the top-level conftest)
pytest_plugins = ["pytester"]


def _faces_root() -> Path:
    # The real photos live beside the checkout (../shared/faces); never copied into the repo.
    return Path(os.environ.get("FACEKIT_FACES_DIR", REPO_ROOT.parent / "shared" / "faces")).resolve()


@pytest.fixture(scope="session")
def faces_dir() -> Path:
    """The folder of real test photos (``../shared/faces``, or ``$FACEKIT_FACES_DIR``)."""
    root = _faces_root()
    if not (root / "README.md").exists():
        pytest.fail(f"real test photos not found at {root}; set FACEKIT_FACES_DIR")
    return root


@pytest.fixture(scope="session", autouse=True)
def fresh_model_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """An empty facekit model cache for the whole run (``FACEKIT_CACHE_DIR``), inherited by
    subprocesses and worker processes: the tests take the cold path a new machine takes and
    never read or write the user's ``~/.cache/facekit``."""
    folder = tmp_path_factory.mktemp("facekit-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FACEKIT_CACHE_DIR", str(folder))
        yield folder

"""Core tests run with entry-point plugins switched off unless a test loads them itself."""

from __future__ import annotations

import pytest

from facekit.plugins import reset_plugin_manager


@pytest.fixture
def core_only(monkeypatch: pytest.MonkeyPatch):
    """A plugin manager that loads no entry-point plugin (only facekit's built-ins)."""
    monkeypatch.setenv("FACEKIT_LOAD_PLUGINS", "")
    reset_plugin_manager()
    yield
    reset_plugin_manager()

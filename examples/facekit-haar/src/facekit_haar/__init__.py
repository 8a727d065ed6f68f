"""facekit-haar: an example third-party facekit plugin.

It registers one detector, ``haar.frontalface`` (OpenCV's Haar cascade), and one bundled
pipeline, ``haar``, through facekit's hooks. facekit finds this module through the
``facekit`` entry point in ``pyproject.toml``.

Importing this module must stay cheap: ``facekit plugins`` and ``facekit --help`` import
every installed plugin. So the hooks import the detector's module only when facekit
builds its registry, and the detector reads its cascade file only when first used.
"""

from __future__ import annotations

from importlib import resources

import facekit

__version__ = "0.1.0"


@facekit.hookimpl
def register_detectors(register):  # type: ignore[no-untyped-def]
    from facekit_haar.detector import HaarFaceDetector

    register(HaarFaceDetector)


@facekit.hookimpl
def register_pipelines(register):  # type: ignore[no-untyped-def]
    # a pipeline people can use by name: `facekit compare -p haar a.jpg b.jpg`
    register("haar", (resources.files("facekit_haar") / "haar.yaml").read_text(encoding="utf-8"))

"""OpenCV's Haar-cascade face detector as a facekit :class:`~facekit.components.Detector`.

The cascade (Viola and Jones, 2001; Lienhart's extended features) is a chain of boosted
classifiers on Haar-like features of a grey image. It is fast and its XML files ship
inside OpenCV's wheels (``cv2.data.haarcascades``), so nothing is downloaded. It finds
upright frontal faces only, and gives boxes without landmarks.
"""

from __future__ import annotations

import os
from typing import Any, Literal, Optional

import numpy as np
from pydantic import Field

from facekit.components import Detector, Lazy, Params
from facekit.errors import ModelFileError
from facekit.types import Face

#: short names used in YAML -> the cascade files in ``cv2.data.haarcascades``
CASCADES = {
    "default": "haarcascade_frontalface_default.xml",
    "alt": "haarcascade_frontalface_alt.xml",
    "alt2": "haarcascade_frontalface_alt2.xml",
    "alt_tree": "haarcascade_frontalface_alt_tree.xml",
}


class HaarFaceDetector(Detector):
    """OpenCV's Haar-cascade frontal face detector.

    Boxes only: pair it with an aligner that finds its own landmarks in the box, such as
    ``dlib.chip5`` or ``mediapipe.mesh``. Each face's ``score`` is the cascade's final
    stage weight: higher means more face-like.
    """

    name = "haar.frontalface"
    description = "OpenCV's Haar-cascade frontal face detector (fast, no download; frontal faces, boxes only)"
    provides_landmarks = None  # no landmarks: the pipeline refuses aligners that need them

    class Params(Params):
        cascade: Literal["default", "alt", "alt2", "alt_tree"] = Field(
            "default", description="which of OpenCV's frontal-face cascades to use"
        )
        scale_factor: float = Field(
            1.1, gt=1.0, le=2.0, description="growth of the search window between scales (smaller: slower, finds more)"
        )
        min_neighbors: int = Field(
            5, ge=0, le=50, description="overlapping hits needed to keep a face (higher: fewer false faces)"
        )
        min_size: int = Field(30, ge=8, description="smallest face side to look for, in pixels of the scanned image")
        max_side: Optional[int] = Field(
            1024, ge=64, description="scan a copy whose longer side is at most this many pixels; null: full size"
        )

    def __init__(self, params: Any = None, **kwargs: Any) -> None:
        super().__init__(params, **kwargs)  # validates params; must stay cheap
        self._classifier = Lazy(lambda: load_cascade(self.params.cascade))  # loads on first use

    def warm_up(self) -> None:
        self._classifier.get()

    def detect(self, image: np.ndarray) -> list[Face]:
        import cv2

        classifier = self._classifier.get()
        gray = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)
        scale = 1.0
        longest = max(gray.shape)
        if self.params.max_side is not None and longest > self.params.max_side:
            scale = self.params.max_side / longest
            gray = cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        gray = cv2.equalizeHist(gray)
        side = self.params.min_size
        rects, _levels, weights = classifier.detectMultiScale3(
            gray,
            scaleFactor=self.params.scale_factor,
            minNeighbors=self.params.min_neighbors,
            minSize=(side, side),
            outputRejectLevels=True,
        )
        faces = [
            Face((x / scale, y / scale, (x + w) / scale, (y + h) / scale), score=float(weight), detector=self.name)
            for (x, y, w, h), weight in zip(np.asarray(rects).reshape(-1, 4), np.asarray(weights).ravel())
        ]
        return sorted(faces, key=lambda face: -face.score)


def load_cascade(which: str) -> Any:
    """The OpenCV classifier for one of :data:`CASCADES`, or a :class:`ModelFileError` saying what to do."""
    import cv2

    folder = getattr(getattr(cv2, "data", None), "haarcascades", None)
    if not folder:
        raise ModelFileError(
            "haar.frontalface: this OpenCV build has no cascade files (cv2.data.haarcascades is missing); "
            "install OpenCV from PyPI: pip install opencv-python-headless"
        )
    path = os.path.join(folder, CASCADES[which])
    classifier = cv2.CascadeClassifier(path)
    if classifier.empty():
        raise ModelFileError(
            f"haar.frontalface: cannot read the cascade file {path}; reinstall OpenCV "
            "(pip install --force-reinstall opencv-python-headless)"
        )
    return classifier

"""dlib's face detectors: ``dlib.hog`` and ``dlib.cnn``.

Both give boxes only (no landmarks); pair them with an aligner that finds its own
landmarks, such as ``dlib.chip5``. Both share three speed/recall parameters:

* ``upsample``: how many times dlib doubles the image before scanning. dlib's detectors
  find faces down to about 80x80 pixels at 0, 40x40 at 1; each step costs about 4x.
* ``retry_upsample``: if nothing is found, scan again at this upsampling. ``upsample: 0,
  retry_upsample: 1`` is as fast as 0 on photos with a normal-sized face and still finds
  small faces when there is no large one.
* ``max_side``: detect on a copy shrunk so that its longer side is at most this many
  pixels (boxes are mapped back to the full image), which bounds the cost on big photos.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np
from pydantic import Field, model_validator

from facekit.components import Detector, Lazy, Params
from facekit.types import Face

from facekit_dlib._models import MMOD_DETECTOR, import_dlib, load_model
from facekit_dlib._util import as_rgb, downscale, rect_to_box


class DetectorParams(Params):
    upsample: int = Field(1, ge=0, le=4, description="times to double the image before scanning (finds smaller faces, ~4x slower per step)")
    retry_upsample: Optional[int] = Field(
        None, ge=1, le=4, description="if no face is found, scan again with this upsampling (must exceed `upsample`)"
    )
    max_side: Optional[int] = Field(
        None, ge=64, description="detect on a copy whose longer side is at most this many pixels; None: full size"
    )

    @model_validator(mode="after")
    def _retry_above_upsample(self) -> "DetectorParams":
        if self.retry_upsample is not None and self.retry_upsample <= self.upsample:
            raise ValueError(
                f"retry_upsample ({self.retry_upsample}) must be greater than upsample ({self.upsample}), "
                "or left out"
            )
        return self


class _DlibDetector(Detector):
    """Shared logic: downscaling, the retry, boxes back in source pixels."""

    Params = DetectorParams

    def __init__(self, params: Any = None, **kwargs: Any) -> None:
        super().__init__(params, **kwargs)
        self._model = Lazy(self._load)

    def warm_up(self) -> None:
        self._model.get()

    def _load(self) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def _run(self, image: np.ndarray, upsample: int) -> list[tuple[Any, float]]:  # pragma: no cover
        """(dlib rectangle, score) of each face in ``image``."""
        raise NotImplementedError

    def detect(self, image: np.ndarray) -> list[Face]:
        pixels = as_rgb(image)
        small, scale = downscale(pixels, self.params.max_side)
        found = self._run(small, self.params.upsample)
        if not found and self.params.retry_upsample is not None:
            found = self._run(small, self.params.retry_upsample)
        faces = [Face(rect_to_box(rect, scale), score=float(score), detector=self.name) for rect, score in found]
        return sorted(faces, key=lambda f: -f.score)


class HogDetector(_DlibDetector):
    """dlib's frontal face detector (HOG features + linear SVM, 5 poses). Fast on a CPU."""

    name = "dlib.hog"
    description = "dlib's HOG frontal face detector (fast on CPU; boxes only)"

    class Params(DetectorParams):
        adjust_threshold: float = Field(
            0.0, ge=-2.0, le=2.0, description="added to the SVM threshold: negative finds more (and more false) faces"
        )

    def _load(self) -> Any:
        from facekit_dlib._cache import cached

        # dlib decompresses its built-in detector on every call (0.75 s on 2 busy cores);
        # saved once to the user's cache, the same detector loads in 7 ms.
        dlib = import_dlib()
        return cached(
            f"frontal_face_detector-dlib-{getattr(dlib, '__version__', 'unknown')}.svm",
            dlib.get_frontal_face_detector,
            lambda detector, path: detector.save(str(path)),
            lambda path: dlib.fhog_object_detector(str(path)),
        )

    def _run(self, image: np.ndarray, upsample: int) -> list[tuple[Any, float]]:
        detector = self._model.get()
        rects, scores, _poses = detector.run(image, upsample, self.params.adjust_threshold)
        return list(zip(rects, (float(s) for s in scores)))


class CnnDetector(_DlibDetector):
    """dlib's MMOD CNN face detector: finds more rotated and occluded faces, slow on a CPU."""

    name = "dlib.cnn"
    description = "dlib's MMOD CNN face detector (more robust, slow on CPU; boxes only)"

    class Params(DetectorParams):
        min_confidence: float = Field(
            0.0, ge=-2.0, le=2.0, description="drop detections whose MMOD confidence is below this"
        )

    def _load(self) -> Any:
        return load_model(
            "CNN face detector", MMOD_DETECTOR, lambda dlib, path: dlib.cnn_face_detection_model_v1(path), shared=False
        )

    def _run(self, image: np.ndarray, upsample: int) -> list[tuple[Any, float]]:
        detector = self._model.get()
        return [
            (found.rect, float(found.confidence))
            for found in detector(image, upsample)
            if float(found.confidence) >= self.params.min_confidence
        ]

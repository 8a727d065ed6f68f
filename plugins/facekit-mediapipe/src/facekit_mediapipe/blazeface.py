"""``mediapipe.blazeface``: MediaPipe's BlazeFace detector (short- or full-range)."""

from __future__ import annotations

from typing import Any, Literal, Optional

import numpy as np
from pydantic import Field

from facekit.components import Detector, Params
from facekit.errors import ImageError
from facekit.types import Face, Image, Landmarks

from facekit_mediapipe._runtime import LazyEngine


#: ``box: dlib_hog``: where dlib's HOG detector puts its square box, in a frame given by the
#: BlazeFace keypoints: origin at the midpoint of the eyes, unit = the distance from there to
#: the mouth centre. (centre x, centre y, side), medians over the faces both detectors found
#: in LFW's pairsDevTrain images (benchmarks/fit_blazeface_box.py). With this box, dlib's
#: 5-point shape predictor lands within 5 % of the eye distance of where it lands in HOG's
#: box for 95 % of faces (p95 3.6 %), and the chips match HOG's (docs/howto/throughput.rst).
DLIB_HOG_BOX = (0.0627, 0.4874, 2.1815)


def dlib_hog_box(keypoints: np.ndarray) -> tuple[float, float, float, float]:
    """The box dlib's HOG detector would give, from BlazeFace's 6 keypoints (source pixels)."""
    eyes = (keypoints[0] + keypoints[1]) / 2.0
    unit = float(np.linalg.norm(keypoints[3] - eyes))
    dx, dy, side = DLIB_HOG_BOX
    cx, cy, half = eyes[0] + dx * unit, eyes[1] + dy * unit, side * unit / 2.0
    return (float(cx - half), float(cy - half), float(cx + half), float(cy + half))


def _to_pixels(relative: np.ndarray, width: int, height: int) -> np.ndarray:
    """MediaPipe's normalised [0, 1] coordinates -> pixel coordinates (pixel centres at integers)."""
    return relative * np.array([width, height], dtype=np.float64) - 0.5


class BlazeFaceDetector(LazyEngine, Detector):
    """Finds faces with BlazeFace and gives 6 keypoints per face (scheme ``blazeface6``).

    The keypoints are, in order: right eye, left eye, nose tip, mouth centre, right ear
    tragion, left ear tragion ("right" is the person's right, the left of the picture),
    in source pixel coordinates.

    ``model: full`` (the default) finds faces of any size in ordinary photos;
    ``model: short`` is tuned for faces close to the camera (selfies, face crops): it
    also finds faces that fill the frame, where the full-range model often does not.
    """

    name = "mediapipe.blazeface"
    description = "MediaPipe BlazeFace (short- or full-range): boxes and 6 keypoints, fast on CPU"
    provides_landmarks = "blazeface6"
    model_suffix = ".tflite"

    class Params(Params):
        model: Literal["short", "full"] = Field(
            "full", description="full: any face size (photos); short: faces near the camera, face crops"
        )
        min_confidence: float = Field(0.5, ge=0.0, le=1.0, description="drop detections scored below this")
        box: Literal["mediapipe", "dlib_hog"] = Field(
            "mediapipe",
            description="mediapipe: BlazeFace's own box; dlib_hog: the box dlib's HOG detector would give, "
            "placed from the keypoints, so that dlib's aligners (dlib.chip5) cut the chips they cut from HOG's",
        )
        model_path: Optional[str] = Field(
            None,
            description="a MediaPipe Tasks face-detector .tflite to use instead of the bundled models "
            "(needed with mediapipe releases after 0.10.21)",
        )

    def _tasks_engine(self, vision: Any, base_options: Any) -> Any:
        options = vision.FaceDetectorOptions(
            base_options=base_options,
            running_mode=vision.RunningMode.IMAGE,
            min_detection_confidence=self.params.min_confidence,
        )
        return vision.FaceDetector.create_from_options(options)

    def _solutions_engine(self, mp: Any) -> Any:
        return mp.solutions.face_detection.FaceDetection(
            model_selection=1 if self.params.model == "full" else 0,
            min_detection_confidence=self.params.min_confidence,
        )

    def detect(self, image: Image) -> list[Face]:
        image = _checked(image, self.name)
        height, width = image.shape[:2]
        kind, engine, mp = self._engine.get()
        faces: list[Face] = []
        if kind == "tasks":
            result = engine.detect(mp.Image(image_format=mp.ImageFormat.SRGB, data=image))
            for det in result.detections:
                score = float(det.categories[0].score) if det.categories else 1.0
                bb = det.bounding_box
                box = (float(bb.origin_x), float(bb.origin_y), float(bb.origin_x + bb.width), float(bb.origin_y + bb.height))
                rel = np.array([[k.x, k.y] for k in det.keypoints], dtype=np.float64)
                faces.append(self._face(box, score, rel, width, height))
        else:
            result = engine.process(image)
            for det in result.detections or []:
                data = det.location_data
                rb = data.relative_bounding_box
                x0, y0 = rb.xmin * width, rb.ymin * height
                box = (float(x0), float(y0), float(x0 + rb.width * width), float(y0 + rb.height * height))
                rel = np.array([[k.x, k.y] for k in data.relative_keypoints], dtype=np.float64)
                faces.append(self._face(box, float(det.score[0]), rel, width, height))
        # MediaPipe thresholds before merging overlapping detections, so a merged score can
        # end up below the threshold; filter again so the parameter means what it says.
        kept = [f for f in faces if f.score >= self.params.min_confidence]
        return sorted(kept, key=lambda f: -f.score)

    def _face(self, box: tuple[float, float, float, float], score: float, rel: np.ndarray, width: int, height: int) -> Face:
        landmarks = Landmarks(_to_pixels(rel, width, height), "blazeface6") if len(rel) == 6 else None
        if landmarks is not None and self.params.box == "dlib_hog":
            box = dlib_hog_box(landmarks.points)
        return Face(box, score=score, landmarks=landmarks, detector=self.name)


def _checked(image: Any, name: str) -> np.ndarray:
    arr = np.asarray(image)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8:
        raise ImageError(f"{name}: expected an (H, W, 3) uint8 RGB array, got {arr.shape} {arr.dtype}")
    return np.ascontiguousarray(arr)

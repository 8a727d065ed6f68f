"""Face quality: is this face good enough for a confident verdict?

Three signals, each cheap (no model, numpy only) and each measured on LFW's development
view with ``benchmarks/bench_accuracy.py`` (see ``docs/howto/accuracy.rst``):

* **size**: the distance between the eye centres in the source photo, in pixels. A face
  whose eyes are a few pixels apart is upsampled into its chip and carries little detail.
* **sharpness**: the variance of the Laplacian of the chip's grey levels, divided by the
  variance of the grey levels themselves (so a dark or low-contrast photo is not called
  blurred); computed on the chip's central part, where the face is.
* **yaw**: how far the nose sits from the middle of the eyes, along the eye line, in units
  of the eye distance: about 0 for a frontal face, 0.5 and more for a face turned far
  towards profile.

:func:`assess` turns them into flags (``tiny``, ``blurred``, ``profile``); a comparison with
a flagged face says so (:attr:`facekit.types.Comparison.quality`) instead of giving its
verdict as confidently as for two good photos.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional

import numpy as np

if TYPE_CHECKING:  # pragma: no cover - annotations only: the result types use this module
    from facekit.types import AlignedFace, Landmarks

#: below this many pixels between the eye centres a face is flagged ``tiny``: its chip is upsampled
#: about twice or more (LFW dev's faces: 31 px at the 1st percentile, 41 px median)
MIN_EYE_DISTANCE = 20.0
#: below this normalised Laplacian variance a chip is flagged ``blurred`` (1 % of LFW dev's chips are)
MIN_SHARPNESS = 0.008
#: above this nose offset (in eye distances) a face is flagged ``profile`` (1 % of LFW dev's faces are)
MAX_YAW = 0.35

#: what each flag means, for messages
FLAG_TEXT = {
    "tiny": "the face is tiny (eyes {eye_distance:.0f} px apart; {min_eye_distance:.0f} or more wanted)",
    "blurred": "the face is blurred (sharpness {sharpness:.3f}; {min_sharpness:.3f} or more wanted)",
    "profile": "the face is turned towards profile (yaw {yaw:+.2f} eye distances; within {max_yaw:.2f} wanted)",
}


@dataclass(frozen=True)
class FaceQuality:
    """The quality signals of one face and the flags they raise."""

    eye_distance: Optional[float]  # pixels in the source photo; None without eye landmarks
    sharpness: float
    yaw: Optional[float]  # None without eye and nose landmarks
    flags: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.flags

    def describe(self) -> list[str]:
        """One sentence per flag."""
        values = {
            "eye_distance": self.eye_distance or 0.0, "sharpness": self.sharpness, "yaw": self.yaw or 0.0,
            "min_eye_distance": MIN_EYE_DISTANCE, "min_sharpness": MIN_SHARPNESS, "max_yaw": MAX_YAW,
        }
        return [FLAG_TEXT[flag].format(**values) for flag in self.flags]

    def to_dict(self) -> dict[str, Any]:
        return {
            "eye_distance": None if self.eye_distance is None else round(float(self.eye_distance), 1),
            "sharpness": round(float(self.sharpness), 4),
            "yaw": None if self.yaw is None else round(float(self.yaw), 3),
            "flags": list(self.flags),
        }


def eyes_and_nose(landmarks: Optional[Landmarks]) -> Optional[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(one eye's centre, the other eye's centre, nose point) for the schemes that have them."""
    if landmarks is None:
        return None
    p = np.asarray(landmarks.points, dtype=np.float64)
    if landmarks.scheme == "dlib5":  # two corners of each eye, then the base of the nose
        return p[0:2].mean(axis=0), p[2:4].mean(axis=0), p[4]
    if landmarks.scheme == "dlib68":
        # 36-41 and 42-47 are the eyes; 33, under the nose, is where dlib5 puts its nose point
        # (on LFW dev the two schemes' yaw then agree: the same 1 % of faces past 0.35)
        return p[36:42].mean(axis=0), p[42:48].mean(axis=0), p[33]
    if landmarks.scheme == "blazeface6":  # right eye, left eye, nose tip, ...
        return p[0], p[1], p[2]
    return None


def eye_distance(landmarks: Optional[Landmarks]) -> Optional[float]:
    """Pixels between the eye centres (in the landmarks' own coordinates)."""
    found = eyes_and_nose(landmarks)
    return None if found is None else float(np.linalg.norm(found[1] - found[0]))


def yaw(landmarks: Optional[Landmarks]) -> Optional[float]:
    """Signed offset of the nose from the eyes' midpoint along the eye line, in eye distances."""
    found = eyes_and_nose(landmarks)
    if found is None:
        return None
    eye_a, eye_b, nose = found
    axis = eye_b - eye_a
    length = float(np.linalg.norm(axis))
    if length < 1e-6:
        return None
    return float(np.dot(nose - (eye_a + eye_b) / 2.0, axis) / length**2)


def sharpness(chip: Any) -> float:
    """Variance of the grey-level Laplacian over the variance of the grey levels (central 60 %)."""
    pixels = np.asarray(chip, dtype=np.float64)
    grey = pixels @ np.array([0.299, 0.587, 0.114]) if pixels.ndim == 3 else pixels
    h, w = grey.shape
    grey = grey[int(h * 0.2) : int(h * 0.8), int(w * 0.2) : int(w * 0.8)]
    laplacian = (grey[:-2, 1:-1] + grey[2:, 1:-1] + grey[1:-1, :-2] + grey[1:-1, 2:] - 4.0 * grey[1:-1, 1:-1])
    spread = float(grey.var())
    return float(laplacian.var() / spread) if spread > 1e-6 else 0.0


def flags_for(eye_px: Optional[float], sharp: float, turn: Optional[float]) -> tuple[str, ...]:
    """The flags these signal values raise."""
    flags = []
    if eye_px is not None and eye_px < MIN_EYE_DISTANCE:
        flags.append("tiny")
    if sharp < MIN_SHARPNESS:
        flags.append("blurred")
    if turn is not None and abs(turn) > MAX_YAW:
        flags.append("profile")
    return tuple(flags)


def assess(face: AlignedFace) -> FaceQuality:
    """The quality of an aligned face: size and yaw from its source landmarks, sharpness from its chip."""
    marks = face.face.landmarks
    eye_px = eye_distance(marks)
    turn = yaw(marks)
    sharp = sharpness(face.chip)
    return FaceQuality(eye_px, sharp, turn, flags_for(eye_px, sharp, turn))

"""``mediapipe.mesh``: align faces with MediaPipe's 468-point face mesh."""

from __future__ import annotations

import math
from typing import Any, Literal, Optional

import numpy as np
from pydantic import Field

from facekit.components import Aligner, Params
from facekit.errors import NoFaceError
from facekit.builtin.meanface import fit_similarity
from facekit.types import AlignedFace, Face, Image, Landmarks, apply_affine

from facekit_mediapipe._runtime import LazyEngine
from facekit_mediapipe.blazeface import _checked, _to_pixels

# Face-mesh indices. "Right" is the person's right (the left side of a frontal photo).
RIGHT_EYE_OUTER, LEFT_EYE_OUTER = 33, 263  # the article's eye corners
RIGHT_EYE = (33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160, 161, 246)
LEFT_EYE = (263, 249, 390, 373, 374, 380, 381, 382, 362, 398, 384, 385, 386, 387, 388, 466)
NOSE_TIP = 1
MOUTH_RIGHT, MOUTH_LEFT = 61, 291

#: Where the eye centres, nose tip and mouth corners go, as fractions of the tight face
#: frame (padding 0). Measured, not designed: the mean position of these mesh points in
#: dlib's 150 px / 0.25 face chips (dlib.chip5) of 148 LFW faces, made left-right
#: symmetric. So ``size``/``padding`` frame a face as dlib's chips do with the same
#: values, and dlib's ResNet sees what it was trained on.
TEMPLATE_5 = np.array(
    [[0.2325, 0.2121], [0.7675, 0.2121], [0.5000, 0.5531], [0.2695, 0.7951], [0.7305, 0.7951]],
    dtype=np.float64,
)

#: the mesh runs on a square crop this many times the detector box's longer side
CROP_CONTEXT = (2.0, 3.0)  # second try: wider, for boxes that cut the face off
CROP_MIN_PX, CROP_MAX_PX = 256, 640


def five_points(mesh_points: np.ndarray) -> np.ndarray:
    """Eye centres, nose tip and mouth corners from 468 mesh points, in template order."""
    pts = np.asarray(mesh_points, dtype=np.float64)
    return np.stack(
        [
            pts[list(RIGHT_EYE)].mean(axis=0),
            pts[list(LEFT_EYE)].mean(axis=0),
            pts[NOSE_TIP],
            pts[MOUTH_RIGHT],
            pts[MOUTH_LEFT],
        ]
    )


def eye_centres(mesh_points: np.ndarray) -> np.ndarray:
    """(2, 2): the person's right eye centre, then the left (mean of each eye's contour)."""
    return five_points(mesh_points)[:2]


def similarity_frame(mesh_points: np.ndarray, size: int, padding: float) -> np.ndarray:
    """2x3 chip->source affine that puts the 5 key points on the template (least squares)."""
    unit = (TEMPLATE_5 - 0.5) / (1.0 + 2.0 * padding) + 0.5
    template = unit * size - 0.5  # chip pixel coordinates, pixel centres at integers
    return fit_similarity(template, five_points(mesh_points))


def eyes_level_frame(mesh_points: np.ndarray, size: int, padding: float) -> np.ndarray:
    """2x3 chip->source affine of the article's recipe.

    Rotate so the line through the outer eye corners (points 33 and 263) is level, take
    the square around all mesh points (grown by ``padding`` on each side), resize to
    ``size``.
    """
    pts = np.asarray(mesh_points, dtype=np.float64)
    dx, dy = pts[LEFT_EYE_OUTER] - pts[RIGHT_EYE_OUTER]
    angle = math.atan2(dy, dx)
    cos, sin = math.cos(angle), math.sin(angle)
    rotation = np.array([[cos, -sin], [sin, cos]])  # levelled frame -> source
    levelled = pts @ rotation  # source -> levelled frame (rotation is orthogonal)
    lo, hi = levelled.min(axis=0), levelled.max(axis=0)
    side = float((hi - lo).max()) * (1.0 + 2.0 * padding)
    centre = rotation @ ((lo + hi) / 2.0)
    scale = side / size
    linear = rotation * scale
    offset = centre - linear @ np.full(2, (size - 1) / 2.0)
    return np.hstack([linear, offset[:, None]])


def warp_chip(image: np.ndarray, chip_to_source: np.ndarray, size: int) -> np.ndarray:
    """Sample a ``size`` x ``size`` chip from ``image`` through a chip->source affine.

    When the chip is much smaller than the face in the photo, the region is first shrunk
    with area averaging, so fine detail does not alias into the chip.
    """
    import cv2

    m = np.asarray(chip_to_source, dtype=np.float64).reshape(2, 3)
    scale = math.sqrt(abs(np.linalg.det(m[:, :2])))  # source pixels per chip pixel
    if scale > 1.5:
        corners = apply_affine(m, np.array([[0, 0], [size, 0], [0, size], [size, size]], dtype=np.float64))
        height, width = image.shape[:2]
        x0 = int(max(math.floor(corners[:, 0].min()) - 2, 0))
        y0 = int(max(math.floor(corners[:, 1].min()) - 2, 0))
        x1 = int(min(math.ceil(corners[:, 0].max()) + 3, width))
        y1 = int(min(math.ceil(corners[:, 1].max()) + 3, height))
        if x1 - x0 >= 2 and y1 - y0 >= 2:
            region = image[y0:y1, x0:x1]
            new_w = max(int(round(region.shape[1] / scale)), 1)
            new_h = max(int(round(region.shape[0] / scale)), 1)
            small = cv2.resize(region, (new_w, new_h), interpolation=cv2.INTER_AREA)
            fx, fy = region.shape[1] / new_w, region.shape[0] / new_h
            # chip -> source -> region -> small
            to_small = np.array([[1 / fx, 0, -0.5 + 0.5 / fx - x0 / fx], [0, 1 / fy, -0.5 + 0.5 / fy - y0 / fy]])
            m = to_small[:, :2] @ m
            m[:, 2] += to_small[:, 2]
            image = small
    return cv2.warpAffine(
        image,
        m,
        (size, size),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=(0, 0, 0),
    )


class FaceMeshAligner(LazyEngine, Aligner):
    """Runs MediaPipe's face mesh around a detector's box and aligns on its landmarks.

    Two ways to place the face in the chip:

    * ``similarity`` (default): a similarity transform (rotation, scale, shift) puts the
      eye centres, nose tip and mouth corners onto a fixed template, so faces come out
      at the same place and size whatever the photo. The template is dlib's chip framing
      (measured), so ``size: 150, padding: 0.25`` gives the chips dlib's ResNet expects
      and ``size: 224, padding: 0.1`` those of FACE01's model.
    * ``eyes_level``: the origin article's recipe: rotate so the outer eye corners (mesh
      points 33 and 263) are level, crop the square around the mesh, resize.

    Any detector will do (the mesh finds its own landmarks in a crop around the box);
    photos that are already face crops work with the ``whole_image`` detector. The chips
    carry all 468 landmarks (scheme ``mediapipe468``) in chip coordinates.
    """

    name = "mediapipe.mesh"
    description = "MediaPipe face mesh (468 landmarks): similarity-to-template or eyes-level alignment"
    accepts_landmarks = ()
    provides_chip_landmarks = True
    model_suffix = ".task"

    class Params(Params):
        method: Literal["similarity", "eyes_level"] = Field(
            "similarity", description="similarity: eyes, nose, mouth onto a template; eyes_level: the article's recipe"
        )
        size: int = Field(224, ge=16, le=4096, description="chip side in pixels")
        padding: Optional[float] = Field(
            None,
            ge=0.0,
            le=2.0,
            description="margin around the face on each side, as a fraction of the face frame "
            "(default: 0.25 for similarity, 0 for eyes_level)",
        )
        min_confidence: float = Field(0.5, ge=0.0, le=1.0, description="the mesh's own face-detection threshold")
        model_path: Optional[str] = Field(
            None,
            description="a MediaPipe Tasks face_landmarker.task to use instead of the bundled models "
            "(needed with mediapipe releases after 0.10.21)",
        )

    @property
    def padding(self) -> float:
        if self.params.padding is not None:
            return float(self.params.padding)
        return 0.25 if self.params.method == "similarity" else 0.0

    def _tasks_engine(self, vision: Any, base_options: Any) -> Any:
        options = vision.FaceLandmarkerOptions(
            base_options=base_options,
            running_mode=vision.RunningMode.IMAGE,
            num_faces=3,
            min_face_detection_confidence=self.params.min_confidence,
        )
        return vision.FaceLandmarker.create_from_options(options)

    def _solutions_engine(self, mp: Any) -> Any:
        return mp.solutions.face_mesh.FaceMesh(
            static_image_mode=True,
            max_num_faces=3,
            refine_landmarks=False,
            min_detection_confidence=self.params.min_confidence,
        )

    def _run_mesh(self, crop: np.ndarray) -> list[np.ndarray]:
        """Normalised (468, 2) landmark arrays of every face the mesh finds in ``crop``."""
        kind, engine, mp = self._engine.get()
        if kind == "tasks":
            result = engine.detect(mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(crop)))
            faces = result.face_landmarks
            return [np.array([[p.x, p.y] for p in face[:468]], dtype=np.float64) for face in faces]
        result = engine.process(crop)
        return [
            np.array([[p.x, p.y] for p in face.landmark[:468]], dtype=np.float64)
            for face in result.multi_face_landmarks or []
        ]

    def mesh(self, image: Image, face: Face) -> Landmarks:
        """The 468 mesh landmarks of ``face``, in source pixel coordinates."""
        image = _checked(image, self.name)
        x0, y0, x1, y1 = face.box
        centre = np.array([(x0 + x1) / 2.0, (y0 + y1) / 2.0])
        longer = max(x1 - x0, y1 - y0, 1.0)
        for context in CROP_CONTEXT:
            side = longer * context
            crop_px = int(min(max(round(side), CROP_MIN_PX), CROP_MAX_PX))
            scale = side / crop_px
            crop_to_source = np.array(
                [[scale, 0.0, centre[0] - scale * (crop_px - 1) / 2.0], [0.0, scale, centre[1] - scale * (crop_px - 1) / 2.0]]
            )
            crop = warp_chip(image, crop_to_source, crop_px)
            found = self._run_mesh(crop)
            if found:
                # several faces in the crop: take the one nearest the detector's box centre
                candidates = [apply_affine(crop_to_source, _to_pixels(rel, crop_px, crop_px)) for rel in found]
                best = min(candidates, key=lambda pts: float(np.sum((pts.mean(axis=0) - centre) ** 2)))
                return Landmarks(best, "mediapipe468")
        raise NoFaceError(
            f"{self.name}: the face mesh found no face around the box "
            f"({x0:.0f}, {y0:.0f}, {x1:.0f}, {y1:.0f}) given by {face.detector or 'the detector'}; the face may be "
            "too small, turned away or covered. Try a lower min_confidence, or skip this photo."
        )

    def frame(self, mesh_points: np.ndarray) -> np.ndarray:
        """The 2x3 chip->source affine for a face with these (source) mesh points."""
        if self.params.method == "eyes_level":
            return eyes_level_frame(mesh_points, self.params.size, self.padding)
        return similarity_frame(mesh_points, self.params.size, self.padding)

    def align(self, image: Image, face: Face) -> AlignedFace:
        image = _checked(image, self.name)
        landmarks = self.mesh(image, face)
        transform = self.frame(landmarks.points)
        chip = warp_chip(image, transform, self.params.size)
        import cv2

        to_chip = cv2.invertAffineTransform(transform)
        return AlignedFace(
            chip=chip,
            transform=transform,
            face=face,
            aligner=self.name,
            landmarks=landmarks.transformed(to_chip),
        )

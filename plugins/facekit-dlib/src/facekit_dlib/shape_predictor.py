"""dlib's face-chip aligners: ``dlib.chip5`` and ``dlib.chip68``.

Each finds landmarks inside the detector's box with one of dlib's shape predictors (5 or
68 points), then cuts a square chip with dlib's own face-chip geometry
(``get_face_chip_details`` + ``extract_image_chip``): the similarity transform that puts
the eyes and nose where dlib's face ResNet was trained to see them, with ``padding``
around the face (as a fraction of the face's size).

Chip size and padding are given either directly (``size``, ``padding``) or by a
``preset``:

* ``dlib_resnet``: 150 px, padding 0.25 -- what dlib's ResNet descriptor expects (the default)
* ``face01``: 224 px, padding 0.1 -- what FACE01's EfficientNetV2 model expects

A preset and explicit values may be given together only if they agree.

Every :class:`~facekit.types.AlignedFace` carries ``transform``, the 2x3 affine matrix
from chip pixels to source pixels, the landmarks in chip pixels, and a ``face`` with the
landmarks in source pixels.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal, Optional, Sequence

import numpy as np
from pydantic import Field, model_validator

from facekit.components import Aligner, Lazy, Params
from facekit.types import AlignedFace, Face, Landmarks, apply_affine

from facekit_dlib._models import SHAPE_PREDICTOR_5, SHAPE_PREDICTOR_68, import_dlib, load_model
from facekit_dlib._util import as_rgb, box_to_rect, chip_to_source_transform, invert_affine

#: preset name -> (chip size, padding)
PRESETS: dict[str, tuple[int, float]] = {
    "dlib_resnet": (150, 0.25),
    "face01": (224, 0.1),
}
DEFAULT_PRESET = "dlib_resnet"


def _number(value: Any) -> Optional[float]:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


class ChipParams(Params):
    preset: Optional[Literal["dlib_resnet", "face01"]] = Field(
        None, description="named chip geometry: dlib_resnet = 150 px / padding 0.25, face01 = 224 px / padding 0.1"
    )
    size: int = Field(PRESETS[DEFAULT_PRESET][0], ge=16, le=2048, description="side of the square chip in pixels")
    padding: float = Field(
        PRESETS[DEFAULT_PRESET][1], ge=0.0, le=2.0, description="margin around the face, as a fraction of its size"
    )

    @model_validator(mode="before")
    @classmethod
    def _apply_preset(cls, data: Any) -> Any:
        if not isinstance(data, dict) or data.get("preset") is None or data["preset"] not in PRESETS:
            return data  # no preset, or an unknown one (reported by the field itself)
        preset = data["preset"]
        size, padding = PRESETS[preset]
        conflicts = []
        for key, wanted in (("size", size), ("padding", padding)):
            if key in data and data[key] is not None:
                given = _number(data[key])
                if given is not None and abs(given - wanted) > 1e-9:
                    conflicts.append(f"{key}={data[key]!r}")
        if conflicts:
            raise ValueError(
                f"preset {preset!r} means size={size}, padding={padding}, which conflicts with "
                f"{' and '.join(conflicts)}; give either the preset or size/padding"
            )
        return {**data, "size": size, "padding": padding}


class _DlibChipAligner(Aligner):
    """Shape predictor + dlib face chip."""

    Params = ChipParams
    accepts_landmarks: ClassVar[tuple[str, ...]] = ()  # finds its own landmarks in the box
    provides_chip_landmarks: ClassVar[bool] = True
    #: landmark scheme and model file of the shape predictor
    scheme: ClassVar[str] = ""
    model_file: ClassVar[str] = ""

    def __init__(self, params: Any = None, **kwargs: Any) -> None:
        super().__init__(params, **kwargs)
        # A shape predictor is only read when used, so one instance serves every aligner.
        self._predictor = Lazy(
            lambda: load_model("shape predictor", self.model_file, lambda dlib, path: dlib.shape_predictor(path))
        )

    def warm_up(self) -> None:
        self._predictor.get()

    def landmarks(self, image: np.ndarray, face: Face) -> Landmarks:
        """This aligner's landmarks for ``face``, in source pixels (reused if the face has them)."""
        if face.landmarks is not None and face.landmarks.scheme == self.scheme:
            return face.landmarks
        dlib = import_dlib()
        shape = self._predictor.get()(as_rgb(image), box_to_rect(dlib, face.box))
        points = np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32)
        return Landmarks(points, self.scheme)

    def chip_details(self, landmarks: Landmarks, box: tuple[float, float, float, float]) -> Any:
        """dlib's ``chip_details`` for these landmarks, at this aligner's size and padding."""
        dlib = import_dlib()
        parts = [dlib.point(int(round(float(x))), int(round(float(y)))) for x, y in landmarks.points]
        shape = dlib.full_object_detection(box_to_rect(dlib, box), parts)
        return dlib.get_face_chip_details(shape, self.params.size, self.params.padding)

    def align(self, image: np.ndarray, face: Face) -> AlignedFace:
        return self.align_many(image, [face])[0]

    def align_many(self, image: np.ndarray, faces: Sequence[Face]) -> list[AlignedFace]:
        if not faces:
            return []
        dlib = import_dlib()
        pixels = as_rgb(image)
        marks = [self.landmarks(pixels, face) for face in faces]
        details = [self.chip_details(m, face.box) for m, face in zip(marks, faces)]
        chips = dlib.extract_image_chips(pixels, details)
        out = []
        for face, mark, detail, chip in zip(faces, marks, details, chips):
            transform = chip_to_source_transform(detail)
            on_chip = Landmarks(apply_affine(invert_affine(transform), mark.points), self.scheme)
            located = Face(face.box, face.score, mark, face.detector)
            out.append(
                AlignedFace(
                    chip=np.ascontiguousarray(chip, dtype=np.uint8),
                    transform=transform.astype(np.float64),
                    face=located,
                    aligner=self.name,
                    landmarks=on_chip,
                )
            )
        return out


class Chip5Aligner(_DlibChipAligner):
    """dlib's 5-point shape predictor + face chip: what dlib's ResNet descriptor was trained on."""

    name = "dlib.chip5"
    description = "dlib 5-point landmarks + dlib face chip (150 px / 0.25 by default; preset face01 = 224 / 0.1)"
    scheme = "dlib5"
    model_file = SHAPE_PREDICTOR_5


class Chip68Aligner(_DlibChipAligner):
    """dlib's 68-point shape predictor + face chip; the chips carry all 68 landmarks."""

    name = "dlib.chip68"
    description = "dlib 68-point landmarks + dlib face chip (chips carry 68 landmarks; slower to load)"
    scheme = "dlib68"
    model_file = SHAPE_PREDICTOR_68

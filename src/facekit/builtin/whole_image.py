"""The ``whole_image`` detector: the whole photo (less a margin) is the face."""

from __future__ import annotations

import numpy as np
from pydantic import Field

from facekit.components import Detector, Params
from facekit.types import Face


class WholeImageDetector(Detector):
    """Treats the whole image (less an optional margin) as one face.

    For photos that are already face crops (e.g. chips made by another tool), and as a
    ``fallback_detector`` when a real detector finds nothing in a tight crop.
    """

    name = "whole_image"
    description = "the whole image is the face (for photos already cropped to one face)"
    finds_faces = False

    class Params(Params):
        margin: float = Field(0.0, ge=0.0, lt=0.5, description="fraction of each side to leave out")

    def detect(self, image: np.ndarray) -> list[Face]:
        height, width = image.shape[:2]
        mx, my = width * self.params.margin, height * self.params.margin
        return [Face((mx, my, width - mx, height - my), score=0.0, detector=self.name)]

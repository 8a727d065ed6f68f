"""Tiny in-test components, used only to exercise the plugin machinery (never as features)."""

from __future__ import annotations

import numpy as np
from pydantic import Field

import facekit
from facekit.components import Aligner, Detector, Embedder, Params
from facekit.types import AlignedFace, Face, Landmarks


class CenterBoxDetector(Detector):
    name = "test.center"
    description = "a box in the middle of the image, with 5 landmarks"
    provides_landmarks = "dlib5"

    class Params(Params):
        fraction: float = Field(0.5, gt=0, le=1)

    def detect(self, image):
        h, w = image.shape[:2]
        f = self.params.fraction
        x0, y0 = w * (1 - f) / 2, h * (1 - f) / 2
        pts = np.array([[x0, y0], [x0 + 5, y0], [w - x0, y0], [w - x0 - 5, y0], [w / 2, h / 2]])
        return [Face((x0, y0, w - x0, h - y0), 1.0, Landmarks(pts, "dlib5"), self.name)]


class BoxOnlyDetector(CenterBoxDetector):
    name = "test.boxonly"
    description = "boxes without landmarks"
    provides_landmarks = None

    def detect(self, image):
        return [Face(f.box, f.score, None, self.name) for f in super().detect(image)]


class ResizeAligner(Aligner):
    name = "test.resize"
    description = "crop the box and resize"

    class Params(Params):
        size: int = Field(32, ge=8)

    def align(self, image, face):
        import cv2

        x0, y0, x1, y1 = (int(round(v)) for v in face.box)
        crop = image[y0:y1, x0:x1]
        size = self.params.size
        chip = cv2.resize(crop, (size, size))
        sx, sy = (x1 - x0) / size, (y1 - y0) / size
        transform = np.array([[sx, 0, x0], [0, sy, y0]], dtype=np.float64)
        return AlignedFace(chip, transform, face, self.name)


class LandmarkAligner(ResizeAligner):
    name = "test.needs5"
    description = "needs 5-point landmarks"
    accepts_landmarks = ("dlib5",)


class MeanColourEmbedder(Embedder):
    name = "test.meancolour"
    description = "mean colour of each chip quadrant (a toy, for machinery tests)"
    metric = "euclidean"
    default_threshold = 0.1
    input_size = 32
    dim = 12

    class Params(Params):
        threshold: float | None = None

    def embed(self, chips):
        chips = np.asarray(chips, dtype=np.float32) / 255.0
        h = chips.shape[1] // 2
        quads = [chips[:, :h, :h], chips[:, :h, h:], chips[:, h:, :h], chips[:, h:, h:]]
        return np.concatenate([q.mean(axis=(1, 2)) for q in quads], axis=1)


class FakePlugin:
    """A plugin object registering the toy components through the real hooks."""

    @facekit.hookimpl
    def register_detectors(self, register):
        register(CenterBoxDetector)
        register(BoxOnlyDetector)

    @facekit.hookimpl
    def register_aligners(self, register):
        register(ResizeAligner)
        register(LandmarkAligner)

    @facekit.hookimpl
    def register_embedders(self, register):
        register(MeanColourEmbedder)


TOY_YAML = """
name: toy
detector: {name: test.center, params: {fraction: 0.6}}
aligner: {name: test.resize, params: {size: 32}}
embedder: test.meancolour
"""

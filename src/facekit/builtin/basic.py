"""Small built-in components."""

from __future__ import annotations

from typing import Sequence

import numpy as np
from pydantic import Field

from facekit.components import Aggregator, Detector, Params
from facekit.errors import ConfigError
from facekit.types import AggregateResult, AlignedFace, Embedding, Face


class WholeImageDetector(Detector):
    """Treats the whole image (less an optional margin) as one face.

    For photos that are already face crops (e.g. chips made by another tool), and as a
    ``fallback_detector`` when a real detector finds nothing in a tight crop.
    """

    name = "whole_image"
    description = "the whole image is the face (for photos already cropped to one face)"

    class Params(Params):
        margin: float = Field(0.0, ge=0.0, lt=0.5, description="fraction of each side to leave out")

    def detect(self, image: np.ndarray) -> list[Face]:
        height, width = image.shape[:2]
        mx, my = width * self.params.margin, height * self.params.margin
        return [Face((mx, my, width - mx, height - my), score=0.0, detector=self.name)]


class CentroidAggregator(Aggregator):
    """One template embedding for a person from several photos: the mean of their embeddings.

    For cosine models each vector is L2-normalised first (and the mean re-normalised), so
    every photo counts equally.
    """

    name = "centroid"
    description = "mean embedding of several photos of one person (a person-level template)"
    consumes = "embeddings"

    def aggregate(self, faces: Sequence[AlignedFace], embeddings: Sequence[Embedding] = ()) -> AggregateResult:
        if not embeddings:
            raise ConfigError("the centroid aggregator needs at least one embedding")
        models = {e.model for e in embeddings}
        if len(models) > 1:
            raise ConfigError(f"cannot average embeddings of different models: {sorted(models)}")
        vectors = np.stack([e.vector for e in embeddings]).astype(np.float64)
        metric = embeddings[0].metric
        if metric == "cosine":
            vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        mean = vectors.mean(axis=0)
        if metric == "cosine":
            mean /= max(float(np.linalg.norm(mean)), 1e-12)
        template = Embedding(mean.astype(np.float32), embeddings[0].model, metric, source=f"centroid of {len(vectors)}")
        return AggregateResult(method=self.name, count=len(vectors), embedding=template)

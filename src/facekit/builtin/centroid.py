"""The ``centroid`` aggregator: one template embedding from several photos of a person."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from facekit.components import Aggregator
from facekit.errors import ConfigError
from facekit.scoring.metric import metric_named
from facekit.types import AggregateResult, AlignedFace, Embedding


def mean_embedding(vectors: np.ndarray, metric: str) -> np.ndarray:
    """The mean of ``vectors`` (N, D) as a template in ``metric``: for cosine models each vector
    is made unit length first and the mean again after, so every photo counts equally."""
    metric_ = metric_named(metric)
    mean = metric_.prepare(vectors, dtype=np.float64).mean(axis=0)
    return metric_.prepare(mean, dtype=np.float64)


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
        vectors = np.stack([e.vector for e in embeddings])
        metric = embeddings[0].metric
        mean = mean_embedding(vectors, metric)
        template = Embedding(mean.astype(np.float32), embeddings[0].model, metric, source=f"centroid of {len(vectors)}")
        return AggregateResult(method=self.name, count=len(vectors), embedding=template)

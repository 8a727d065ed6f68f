"""Similarity metrics, decisions and FACE01's percentage.

Two metrics are in use:

* ``euclidean``: a distance; lower is more similar. dlib's ResNet uses it, with 0.6 as
  the same-person threshold.
* ``cosine``: a similarity in [-1, 1]; higher is more similar. ArcFace-style models
  use it (FACE01's EfficientNetV2 model: threshold 0.4).

The *percentage* shown to people is FACE01's mapping of a cosine similarity,
``round(-23.71 c^2 + 49.98 c + 73.69, 2)``: monotonic on [-1, 1], 90 % at c = 0.4036,
about the model's threshold. It is a presentation of the score, not a probability.
For Euclidean models facekit first maps the distance linearly onto a cosine-like
value so that the model's own threshold lands on FACE01's 90 % point
(``c = 1 - (1 - 0.4036) * d / threshold``), then applies the same formula: for both
kinds, ">= 90 %" means "same person by the model's own threshold". A calibrated
probability is a different number (see :mod:`facekit.calibration`).
"""

from __future__ import annotations

import numpy as np

#: the cosine similarity at which FACE01's percentage reaches 90 %
FACE01_COS_AT_90 = 0.4036


def face01_percentage(cos: float) -> float:
    """FACE01's percentage of a cosine similarity (clipped to [-1, 1])."""
    c = float(np.clip(cos, -1.0, 1.0))
    return round(-23.71 * c * c + 49.98 * c + 73.69, 2)


def percentage(score: float, metric: str, threshold: float) -> float:
    """The FACE01-style percentage of a score in ``metric`` (see module docs)."""
    if metric == "cosine":
        return face01_percentage(score)
    if metric == "euclidean":
        if threshold <= 0:
            raise ValueError("threshold must be positive for a Euclidean metric")
        return face01_percentage(1.0 - (1.0 - FACE01_COS_AT_90) * float(score) / threshold)
    raise ValueError(f"unknown metric {metric!r}")


def score(a: np.ndarray, b: np.ndarray, metric: str) -> float:
    """Distance (euclidean) or similarity (cosine) between two vectors."""
    return float(pairwise_scores(np.asarray(a)[None], np.asarray(b)[None], metric)[0])


def pairwise_scores(a: np.ndarray, b: np.ndarray, metric: str) -> np.ndarray:
    """Row-wise scores between two (N, D) arrays."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if metric == "euclidean":
        return np.linalg.norm(a - b, axis=1)
    if metric == "cosine":
        na = np.linalg.norm(a, axis=1)
        nb = np.linalg.norm(b, axis=1)
        return np.sum(a * b, axis=1) / np.maximum(na * nb, 1e-12)
    raise ValueError(f"unknown metric {metric!r}")


def is_same(score_value: float, metric: str, threshold: float) -> bool:
    """The decision: distance below, or similarity at or above, the threshold."""
    return bool(score_value < threshold) if metric == "euclidean" else bool(score_value >= threshold)


def higher_is_more_similar(metric: str) -> bool:
    return metric != "euclidean"


def similarity_of(scores: np.ndarray, metric: str) -> np.ndarray:
    """Scores turned so that higher always means more similar (negated distances)."""
    scores = np.asarray(scores, dtype=np.float64)
    return scores if higher_is_more_similar(metric) else -scores

"""How an embedder's scores are read: a distance (lower = more alike) or a similarity.

Every embedder names its metric (``Embedder.metric``: ``"euclidean"`` or ``"cosine"``), and
results and files keep that name. Code that needs to know what a score means asks the
:class:`Metric` of that name, never compares the name itself::

    metric = metric_named(embedder.metric)
    metric.is_same(score, threshold)     # the decision
    metric.as_similarity(scores)         # higher = more alike, for sorting and ROC curves
    metric.rule(threshold)               # "distance < 0.6", for people

Two metrics exist:

* ``euclidean``: the distance between two vectors; same person *below* the threshold
  (dlib's ResNet: 0.6).
* ``cosine``: the cosine similarity, in [-1, 1]; same person *at or above* the threshold
  (ArcFace-style models; FACE01's EfficientNetV2: 0.4).

All the words facekit prints about a score's meaning ("distance", "same person if below
0.6", "lower = more alike") come from here, so that the terminal, the card and the plots
say the same thing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from facekit.errors import ConfigError

MetricName = Literal["euclidean", "cosine"]


@dataclass(frozen=True)
class Metric:
    """One way of scoring two embeddings, and what its scores mean."""

    #: the name embedders, results and files use
    name: MetricName
    #: True for a similarity (higher = more alike), False for a distance
    higher_is_more_similar: bool
    #: what a score is, in words: "distance" or "cosine similarity"
    score_name: str
    #: the same, as a plot's axis says it: "Euclidean distance" or "cosine similarity"
    axis_name: str
    #: the kind of score in one word, as a comparison's JSON says it: "distance" or "similarity"
    kind: str

    # ------------------------------------------------------------------ scores
    def pairwise(self, a: Any, b: Any) -> np.ndarray:
        """Row-wise scores between two (N, D) arrays."""
        a = np.asarray(a, dtype=np.float64)
        b = np.asarray(b, dtype=np.float64)
        if self.higher_is_more_similar:
            norms = np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12)
            return np.sum(a * b, axis=1) / norms
        return np.linalg.norm(a - b, axis=1)

    def score(self, a: Any, b: Any) -> float:
        """The score of two vectors."""
        return float(self.pairwise(np.asarray(a)[None], np.asarray(b)[None])[0])

    def matrix(self, vectors: Any) -> np.ndarray:
        """Every pair's score of (N, D) ``vectors``, an (N, N) float64 matrix. Distances come
        from the Gram matrix (N^2 memory, not N^2 D); similarities from unit rows."""
        x = self.prepare(vectors, np.float64)
        gram = x @ x.T
        if self.higher_is_more_similar:
            return gram
        squared = np.sum(x * x, axis=1)
        return np.sqrt(np.maximum(squared[:, None] + squared[None, :] - 2.0 * gram, 0.0))

    def prepare(self, vectors: Any, dtype: Any = np.float32) -> np.ndarray:
        """Vectors as an index or a mean should hold them: unit length for cosine (zero rows
        stay zero), as they are for euclidean (values of ``dtype``)."""
        vectors = np.asarray(vectors, dtype=dtype)
        if not self.higher_is_more_similar:
            return vectors
        return vectors / np.maximum(np.linalg.norm(vectors, axis=-1, keepdims=True), 1e-12)

    # ------------------------------------------------------------------ decisions and order
    def is_same(self, score: float, threshold: float) -> bool:
        """The decision for one score: distance below, or similarity at or above, the threshold."""
        return bool(self.same_mask(score, threshold))

    def same_mask(self, scores: Any, threshold: float) -> np.ndarray:
        """The decision for many scores at once (NaN, a failed score, is never "same"). The
        scores keep their own precision: float32 scores are compared as float32."""
        scores = np.asarray(scores)
        return scores >= threshold if self.higher_is_more_similar else scores < threshold

    def as_similarity(self, scores: Any) -> np.ndarray:
        """Scores turned so that higher always means more alike (distances negated), as float64."""
        scores = np.asarray(scores, dtype=np.float64)
        return scores if self.higher_is_more_similar else -scores

    def from_similarity(self, values: Any) -> np.ndarray:
        """The inverse of :meth:`as_similarity`: back into this metric's own scores."""
        return self.as_similarity(values)  # negation is its own inverse

    def as_distance(self, score: float) -> float:
        """A score as a distance from a perfect match (0): the distance itself, or 1 - similarity.
        For ratios of scores, such as a gallery's best match over the second best."""
        return float(1.0 - score if self.higher_is_more_similar else score)

    def best(self, scores: Any) -> int:
        """The index of the most alike score."""
        return int(np.argmax(self.as_similarity(scores)))

    # ------------------------------------------------------------------ words
    @property
    def same_if(self) -> str:
        """The comparison that means "same person": ``"<"`` or ``">="``."""
        return ">=" if self.higher_is_more_similar else "<"

    @property
    def more_alike(self) -> str:
        """Which way is more alike: ``"higher"`` or ``"lower"``."""
        return "higher" if self.higher_is_more_similar else "lower"

    def rule(self, threshold: float) -> str:
        """The decision rule, short: ``"distance < 0.6"``, ``"cosine similarity >= 0.4"``."""
        return f"{self.score_name} {self.same_if} {threshold:g}"

    def rule_in_words(self, threshold: float) -> str:
        """The decision rule for people: ``"same person if below 0.6; lower = more alike"``."""
        side = "at least" if self.higher_is_more_similar else "below"
        return f"same person if {side} {threshold:g}; {self.more_alike} = more alike"

    @property
    def axis_label(self) -> str:
        """An axis title for plots of raw scores: ``"Euclidean distance  (lower = more similar)"``."""
        return f"{self.axis_name}  ({self.more_alike} = more similar)"

    @property
    def score_kind(self) -> str:
        """What evaluation reports and calibration files write in their ``score_kind`` field."""
        return self.kind if self.higher_is_more_similar else f"{self.kind} ({self.more_alike} = more similar)"

    def __str__(self) -> str:
        return self.name


EUCLIDEAN = Metric("euclidean", higher_is_more_similar=False, score_name="distance",
                   axis_name="Euclidean distance", kind="distance")
COSINE = Metric("cosine", higher_is_more_similar=True, score_name="cosine similarity",
                axis_name="cosine similarity", kind="similarity")
METRICS: dict[str, Metric] = {m.name: m for m in (EUCLIDEAN, COSINE)}


def metric_named(name: "str | Metric") -> Metric:
    """The :class:`Metric` called ``name`` (a Metric is returned as it is).

    Raises :class:`~facekit.errors.ConfigError` (a ``ValueError``) for any other name.
    """
    if isinstance(name, Metric):
        return name
    try:
        return METRICS[name]
    except (KeyError, TypeError):
        raise ConfigError(f"unknown metric {name!r}; expected one of: {', '.join(METRICS)}") from None

"""Do these two people look alike? Several photos of each, compared photo by photo and as templates.

:func:`compare_groups` asks the question of every photo pair of person A and person B,
of each person's own pairs, and of the two people's templates (mean descriptors, the
``centroid`` aggregator's rule: :func:`facekit.builtin.centroid.mean_embedding`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from facekit.builtin.centroid import mean_embedding
from facekit.errors import ConfigError
from facekit.scoring.metric import Metric, metric_named


@dataclass
class GroupComparison:
    """Several photos of person A against several of person B."""

    names: tuple[str, str]
    metric: str
    threshold: float
    profile: Optional[str]
    own_scores: tuple[np.ndarray, np.ndarray]  # every pair within A, within B
    cross_scores: np.ndarray  # (len A, len B)
    template_score: float  # A's centroid against B's centroid
    own_template_scores: tuple[np.ndarray, np.ndarray]  # each photo against its own group's centroid of the others
    other_template_scores: tuple[np.ndarray, np.ndarray]  # each photo against the other group's centroid

    @property
    def _metric(self) -> Metric:
        return metric_named(self.metric)

    def _same(self, scores: np.ndarray) -> np.ndarray:
        return self._metric.same_mask(scores, self.threshold)

    @property
    def cross_same(self) -> int:
        """Pairs of one photo of A and one of B judged "same person"."""
        return int(self._same(self.cross_scores).sum())

    @property
    def own_same_rates(self) -> tuple[float, float]:
        """Share of each person's own photo pairs judged "same person"."""
        return tuple(float(self._same(s).mean()) if len(s) else float("nan") for s in self.own_scores)  # type: ignore[return-value]

    @property
    def closer_to_own(self) -> tuple[int, int]:
        """Photos of each person closer to their own person's template (leave-one-out) than to the other's."""
        out = []
        for own, other in zip(self.own_template_scores, self.other_template_scores):
            sims_own = self._metric.as_similarity(own)
            sims_other = self._metric.as_similarity(other)
            out.append(int((sims_own > sims_other).sum()))
        return out[0], out[1]

    def to_dict(self) -> dict[str, Any]:
        a, b = self.names
        med = lambda s: round(float(np.median(s)), 6) if len(s) else None  # noqa: E731
        return {
            "people": [a, b], "metric": self.metric, "threshold": self.threshold, "profile": self.profile,
            "photos": [len(self.own_template_scores[0]), len(self.own_template_scores[1])],
            "cross_pairs": int(self.cross_scores.size), "cross_pairs_judged_same": self.cross_same,
            "own_pairs": [int(len(s)) for s in self.own_scores],
            "own_pairs_judged_same": [round(r, 6) for r in self.own_same_rates],
            "median_score": {"own " + a: med(self.own_scores[0]), "own " + b: med(self.own_scores[1]),
                             "cross": med(self.cross_scores.ravel())},
            "template_score": round(self.template_score, 6),
            "photos_closer_to_own_template": list(self.closer_to_own),
        }

    def summary(self) -> str:
        a, b = self.names
        d = self.to_dict()
        ra, rb = self.own_same_rates
        ca, cb = self.closer_to_own
        return "\n".join([
            f"{a} ({d['photos'][0]} photos) vs {b} ({d['photos'][1]} photos); same person if "
            f"{self._metric.rule(self.threshold)}" + (f" (profile {self.profile})" if self.profile else ""),
            f"  photo pairs of {a} and {b} judged the same person: {self.cross_same} of {d['cross_pairs']} "
            f"(median score {d['median_score']['cross']:.3f})",
            f"  {a}'s own pairs judged the same: {ra:.0%} (median {d['median_score']['own ' + a]:.3f}); "
            f"{b}'s: {rb:.0%} (median {d['median_score']['own ' + b]:.3f})",
            f"  person level: the two templates (mean descriptors) score {self.template_score:.3f}; "
            f"{ca} of {d['photos'][0]} photos of {a} and {cb} of {d['photos'][1]} of {b} are closer to their own "
            "person's template (made without them) than to the other's",
        ])


def compare_groups(vectors_a: Any, vectors_b: Any, metric: str, threshold: float, *,
                   names: tuple[str, str] = ("A", "B"), profile: Optional[str] = None) -> GroupComparison:
    """Compare two people photo by photo and as templates (see :class:`GroupComparison`).

    Templates are mean descriptors (the ``centroid`` aggregator's rule: for cosine models
    each vector is normalised first); each photo's own-person template leaves it out.
    """
    a = np.asarray(vectors_a, dtype=np.float64)
    b = np.asarray(vectors_b, dtype=np.float64)
    if len(a) < 2 or len(b) < 2:
        raise ConfigError("comparing two people needs at least two photos of each")
    scoring = metric_named(metric)

    def own_pairs(rows: np.ndarray) -> np.ndarray:
        i, j = np.triu_indices(len(rows), 1)
        return scoring.pairwise(rows[i], rows[j])

    cross = scoring.pairwise(np.repeat(a, len(b), axis=0), np.tile(b, (len(a), 1))).reshape(len(a), len(b))
    own_t, other_t = [], []
    for rows, other in ((a, b), (b, a)):
        others_template = mean_embedding(other, metric)
        own_t.append(np.array([scoring.score(rows[k], mean_embedding(np.delete(rows, k, axis=0), metric))
                               for k in range(len(rows))]))
        other_t.append(np.array([scoring.score(rows[k], others_template) for k in range(len(rows))]))
    return GroupComparison(
        names=names, metric=metric, threshold=float(threshold), profile=profile,
        own_scores=(own_pairs(a), own_pairs(b)), cross_scores=cross,
        template_score=scoring.score(mean_embedding(a, metric), mean_embedding(b, metric)),
        own_template_scores=(own_t[0], own_t[1]), other_template_scores=(other_t[0], other_t[1]),
    )

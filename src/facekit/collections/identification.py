"""Identification and search over a gallery's faces: who a face is, open set.

The stored faces are loaded as :class:`LoadedFaces` (vectors, boxes, photos, people and
a :class:`~facekit.components.SearchIndex` over the vectors). :func:`rank_people` finds
the nearest faces and scores each person among them over all of their photos
(:func:`person_scores`, by a template rule). A face is someone only when the best
person passes the pipeline's threshold *and* is clearly nearer than the next one
(:func:`distance_ratio`, Lowe's ratio test): :class:`Identification`. :class:`SearchHit`
is one photo found by :meth:`Gallery.search <facekit.collections.gallery.Gallery.search>`.

Scores are in the embedder's metric; what they mean is asked of its
:class:`~facekit.scoring.metric.Metric`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Optional, Sequence, Union

import numpy as np

from facekit.components import SearchIndex
from facekit.errors import ConfigError
from facekit.scoring.metric import Metric, metric_named
from facekit.types import Face

#: how a person's several photos score against a face (see :func:`person_scores`)
TemplateRule = Literal["max", "mean", "mean_score"]
TEMPLATE_RULES: tuple[str, ...] = ("max", "mean", "mean_score")
#: chosen on lfw-dev by benchmarks/bench_gallery.py (docs/howto/gallery.rst has the numbers)
DEFAULT_TEMPLATE_RULE: TemplateRule = "max"
#: a face is "unknown" unless its best person is this much nearer than the next one (distance
#: ratio, Lowe's ratio test); 0.8 chosen on lfw-dev by benchmarks/bench_gallery.py. 1.0 turns it off.
DEFAULT_MAX_RATIO = 0.8


def check_template_rule(rule: str) -> str:
    if rule not in TEMPLATE_RULES:
        raise ConfigError(f"unknown template rule {rule!r}; choose one of {', '.join(TEMPLATE_RULES)}")
    return rule


# --------------------------------------------------------------------------- results
@dataclass(frozen=True)
class Candidate:
    """One known person as a match for a face."""

    person: str
    #: in the embedder's metric: a distance (euclidean, lower = closer) or a cosine similarity
    score: float
    metric: str
    #: passes the pipeline's threshold
    same: bool
    #: calibrated P(same person), if the pipeline has a calibration
    probability: Optional[float]
    #: share of different-person pairs less similar than this one, if calibrated
    impostor_percentile: Optional[float]
    #: the person's gallery photo nearest to the face
    photo: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "person": self.person,
            "score": round(self.score, 6),
            "metric": self.metric,
            "same": self.same,
            "probability": None if self.probability is None else round(self.probability, 6),
            "impostor_percentile": None if self.impostor_percentile is None else round(self.impostor_percentile, 6),
            "photo": self.photo,
        }


def distance_ratio(best: Candidate, second: Optional[Candidate] = None) -> float:
    """The best person's distance over the second's (1 - similarity for cosine); 0 without a second."""
    if second is None:
        return 0.0
    return metric_named(best.metric).as_distance(best.score) / max(
        metric_named(second.metric).as_distance(second.score), 1e-12)


@dataclass(frozen=True)
class Identification:
    """A face found in a photo and the known people it may be, best first.

    The face is someone (``person``) when the best candidate passes the pipeline's
    threshold and is clearly nearer than the next person: ``ratio``, the best distance
    over the second-best, at most ``max_ratio``. Otherwise it is "unknown" (None).
    """

    face: Face
    candidates: tuple[Candidate, ...]
    source: Optional[str] = None
    ratio: float = 0.0
    max_ratio: float = DEFAULT_MAX_RATIO

    @property
    def person(self) -> Optional[str]:
        """The best candidate if it passes the threshold and the ratio test; None means "unknown"."""
        if self.candidates and self.candidates[0].same and self.ratio <= self.max_ratio:
            return self.candidates[0].person
        return None

    @property
    def best(self) -> Optional[Candidate]:
        return self.candidates[0] if self.candidates else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "box": [round(float(v), 1) for v in self.face.box],
            "person": self.person or "unknown",
            "ratio": round(self.ratio, 4),
            "candidates": [c.to_dict() for c in self.candidates],
        }

    def __str__(self) -> str:
        box = ",".join(f"{v:.0f}" for v in self.face.box)
        best = self.best
        if best is None:
            return f"[{box}] unknown (empty gallery)"
        closest = f"closest {best.person}, {best.metric} {best.score:.3f}, ratio {self.ratio:.2f}"
        if best.probability is not None:
            closest += f", P(same) {best.probability:.2f}"
        return f"[{box}] {self.person or 'unknown'} ({closest})"


def decide(candidates: Sequence[Candidate], max_ratio: float) -> Optional[str]:
    """The person ``candidates`` (best first) name by the open-set rule of :class:`Identification`,
    or None ("unknown")."""
    if not candidates:
        return None
    return Identification(Face((0.0, 0.0, 0.0, 0.0)), tuple(candidates), None,
                          distance_ratio(*candidates[:2]), max_ratio).person


@dataclass(frozen=True)
class SearchHit:
    """A gallery photo found by :meth:`Gallery.search <facekit.collections.gallery.Gallery.search>`."""

    person: str
    photo: str
    box: tuple[float, float, float, float]
    score: float
    metric: str
    same: bool
    probability: Optional[float]
    impostor_percentile: Optional[float]

    def to_dict(self) -> dict[str, Any]:
        return {
            "person": self.person,
            "photo": self.photo,
            "box": [round(float(v), 1) for v in self.box],
            "score": round(self.score, 6),
            "metric": self.metric,
            "same": self.same,
            "probability": None if self.probability is None else round(self.probability, 6),
            "impostor_percentile": None if self.impostor_percentile is None else round(self.impostor_percentile, 6),
        }


# --------------------------------------------------------------------------- scoring people
def person_scores(query: np.ndarray, vectors: np.ndarray, metric: Union[str, Metric], rule: str) -> float:
    """How well one person's gallery ``vectors`` (M, D) match ``query`` (D,) under ``rule``.

    ``max``: the best single photo; ``mean``: the photo vectors' mean (each scaled to
    unit length first for cosine models); ``mean_score``: the mean of the photo scores.
    The result is in the metric's own units, so thresholds and calibrations apply.
    """
    metric = metric_named(metric)
    query = np.asarray(query, dtype=np.float64)
    vectors = np.asarray(vectors, dtype=np.float64)
    if rule == "mean":
        return metric.score(query, metric.prepare(vectors, np.float64).mean(axis=0))
    scores = metric.pairwise(np.broadcast_to(query, vectors.shape), vectors)
    if rule == "mean_score":
        return float(scores.mean())
    if rule == "max":
        return float(scores[metric.best(scores)])
    raise ConfigError(f"unknown template rule {rule!r}; choose one of {', '.join(TEMPLATE_RULES)}")


@dataclass
class LoadedFaces:
    """A gallery's stored faces in memory, with the search index over their vectors."""

    vectors: np.ndarray  # (N, D) float32, in storage order
    boxes: list[tuple[float, float, float, float]]
    photos: list[str]
    names: list[str]  # everyone, sorted
    person_of: np.ndarray  # (N,) index into ``names``
    index: Optional[SearchIndex] = None

    @classmethod
    def from_rows(cls, rows: Sequence[Sequence[Any]], dim: int) -> "LoadedFaces":
        """From :meth:`GalleryStore.snapshot <facekit.collections.store.GalleryStore.snapshot>`'s rows
        (``dim`` 0: taken from the first vector)."""
        dim = dim or (len(rows[0][0]) // 4 if rows else 0)
        vectors = np.frombuffer(b"".join(r[0] for r in rows), dtype=np.float32).reshape(len(rows), dim)
        people = [r[6] for r in rows]
        names = sorted(set(people))
        lookup = {n: i for i, n in enumerate(names)}
        return cls(vectors, [tuple(r[1:5]) for r in rows], [r[5] for r in rows], names,  # type: ignore[misc]
                   np.array([lookup[n] for n in people], dtype=np.int64))

    def __len__(self) -> int:
        return len(self.vectors)


def rank_people(faces: LoadedFaces, queries: np.ndarray, k: int, rule: str,
                metric: Union[str, Metric]) -> list[list[tuple[int, float, int]]]:
    """Up to ``k`` people for each of ``queries`` (Q, D), best first, as (person, score, nearest face).

    The index finds the nearest faces; each person among them is then scored over all of
    their photos with the template ``rule`` (for ``max``, the nearest face's score).
    """
    metric = metric_named(metric)
    assert faces.index is not None
    # widen the search until every query sees k people (people with many photos fill the nearest faces)
    wanted = min(k, len(faces.names))
    reach = min(len(faces), max(8 * k, 32))
    while True:
        face_scores, face_ids = faces.index.search(queries, reach)
        if reach == len(faces) or all(
            len(set(faces.person_of[row[row >= 0]].tolist())) >= wanted for row in face_ids
        ):
            break
        reach = min(len(faces), reach * 4)
    out = []
    for query, scores, ids in zip(queries, face_scores, face_ids):
        nearest_photo: dict[int, tuple[float, int]] = {}
        for score, face_id in zip(scores, ids):
            if face_id < 0:
                continue
            person = int(faces.person_of[face_id])
            if person not in nearest_photo:
                nearest_photo[person] = (float(score), int(face_id))
        ranked = []
        for person, (best_score, face_id) in nearest_photo.items():
            if rule != "max":
                best_score = person_scores(query, faces.vectors[faces.person_of == person], metric, rule)
            ranked.append((float(metric.as_similarity(best_score)), person, best_score, face_id))
        ranked.sort(key=lambda r: -r[0])
        out.append([(person, score, face_id) for _, person, score, face_id in ranked[:k]])
    return out

"""Measures of a verifier: pure numpy functions of scores and boolean labels.

*Similarities* are scores where higher means more alike: scores in a model's own metric go
through :meth:`facekit.scoring.metric.Metric.as_similarity` first (it negates Euclidean
distances), so one code path serves both kinds of model, and thresholds go back into the
model's metric with :func:`threshold_in_metric`.

* the ROC curve and what is read off it: :func:`roc`, :func:`auc`, :func:`eer`,
  :func:`tar_at_far`;
* accuracy at a threshold: :func:`best_threshold`, :func:`accuracy_at`,
  :func:`kfold_accuracy` (with :func:`stratified_folds` for files without folds);
* probabilities against outcomes: :func:`expected_calibration_error`, :func:`brier_score`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Sequence

import numpy as np

from facekit.errors import EvaluationError
from facekit.scoring.metric import Metric, metric_named


def stratified_folds(labels: Sequence[bool], k: int = 10) -> np.ndarray:
    """Fold ids for a single-set file: each class cut into ``k`` contiguous blocks.

    Contiguous blocks keep a person's consecutive pairs mostly in one fold, as LFW's own
    folds do (they are disjoint in people).
    """
    labels = np.asarray(labels, dtype=bool)
    folds = np.zeros(len(labels), dtype=int)
    for value in (True, False):
        where = np.flatnonzero(labels == value)
        folds[where] = np.arange(len(where)) * k // max(len(where), 1)
    return folds


# --------------------------------------------------------------------------- metrics
def _check(similarities: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(similarities, dtype=np.float64).ravel()
    y = np.asarray(labels, dtype=bool).ravel()
    if s.shape != y.shape:
        raise ValueError(f"{len(s)} scores but {len(y)} labels")
    if not np.isfinite(s).all():
        raise ValueError("scores must be finite; leave unscored pairs out")
    if not y.any() or y.all():
        raise EvaluationError(
            "need at least one same-person and one different-person pair with both images embedded "
            "(too many images failed, or the pair file is too small for this many folds)"
        )
    return s, y


@dataclass(frozen=True)
class Roc:
    """Operating points, most to least strict: accept a pair when similarity >= threshold.

    ``far[0] = tar[0] = 0`` at ``threshold = inf``; the last point accepts everything.
    ``accepts_same``/``accepts_different`` are the counts behind ``tar``/``far``.
    """

    far: np.ndarray
    tar: np.ndarray
    thresholds: np.ndarray
    accepts_same: np.ndarray
    accepts_different: np.ndarray

    @property
    def n_same(self) -> int:
        return int(self.accepts_same[-1])

    @property
    def n_different(self) -> int:
        return int(self.accepts_different[-1])


def roc(similarities: Any, labels: Any) -> Roc:
    """The ROC curve of similarities against same-person labels (one point per distinct score)."""
    s, y = _check(similarities, labels)
    order = np.argsort(-s, kind="mergesort")
    s_sorted, y_sorted = s[order], y[order]
    last_of_value = np.r_[np.flatnonzero(np.diff(s_sorted)), len(s_sorted) - 1]
    true_accepts = np.r_[0, np.cumsum(y_sorted)[last_of_value]]
    false_accepts = np.r_[0, np.cumsum(~y_sorted)[last_of_value]]
    return Roc(
        far=false_accepts / false_accepts[-1],
        tar=true_accepts / true_accepts[-1],
        thresholds=np.r_[np.inf, s_sorted[last_of_value]],
        accepts_same=true_accepts,
        accepts_different=false_accepts,
    )


def auc(curve: Roc) -> float:
    """Area under the ROC curve (ties count half, as in the Mann-Whitney statistic)."""
    return float(np.trapz(curve.tar, curve.far))


def eer(curve: Roc) -> tuple[float, float]:
    """Equal error rate and the threshold (similarity) of the nearest operating point.

    The EER is where the ROC, drawn with straight segments, crosses FAR = 1 - TAR.
    """
    frr = 1.0 - curve.tar
    gap = curve.far - frr  # rises from -1 to +1 along the curve
    i = int(np.argmax(gap >= 0))
    if gap[i] == 0 or i == 0:
        return float(curve.far[i]), float(curve.thresholds[i])
    w = -gap[i - 1] / (gap[i] - gap[i - 1])
    rate = curve.far[i - 1] + w * (curve.far[i] - curve.far[i - 1])
    nearest = i if w >= 0.5 else i - 1
    return float(rate), float(curve.thresholds[nearest])


@dataclass(frozen=True)
class OperatingPoint:
    """TAR at the strictest-needed threshold whose FAR does not exceed ``target``."""

    target: float
    tar: float
    far: float  # the FAR actually reached
    threshold: float  # similarity; see threshold_in_metric
    false_accepts: int
    different_pairs: int

    @property
    def resolved(self) -> bool:
        """False when there are too few different-person pairs to measure this FAR."""
        return self.target * self.different_pairs >= 1.0


def tar_at_far(curve: Roc, target: float) -> OperatingPoint:
    """The best TAR among operating points with FAR <= ``target`` (no interpolation)."""
    allowed = np.flatnonzero(curve.far <= target + 1e-12)
    i = int(allowed[-1])  # TAR never falls along the curve, so the last allowed point is best
    return OperatingPoint(
        target=float(target),
        tar=float(curve.tar[i]),
        far=float(curve.far[i]),
        threshold=float(curve.thresholds[i]),
        false_accepts=int(curve.accepts_different[i]),
        different_pairs=curve.n_different,
    )


def best_threshold(similarities: Any, labels: Any) -> tuple[float, float]:
    """The similarity threshold with the highest accuracy on these pairs, and that accuracy.

    Thresholds are placed half-way between neighbouring distinct scores, so a pair is
    never exactly on one. If several give the best accuracy, the middle one is taken.
    """
    curve = roc(similarities, labels)
    n = curve.n_same + curve.n_different
    correct = curve.accepts_same + (curve.n_different - curve.accepts_different)
    best = np.flatnonzero(correct == correct.max())
    i = int(best[len(best) // 2])
    values = curve.thresholds[1:]  # distinct scores, high to low
    if i == 0:  # reject everything: above the highest score
        spread = values[0] - values[-1]
        threshold = values[0] + (spread / 2 if spread > 0 else 0.5)
    elif i == len(values):  # accept everything: below the lowest score
        spread = values[0] - values[-1]
        threshold = values[-1] - (spread / 2 if spread > 0 else 0.5)
    else:
        threshold = (values[i - 1] + values[i]) / 2
    return float(threshold), float(correct[i] / n)


def accuracy_at(similarities: Any, labels: Any, threshold: float, scored: Optional[Any] = None) -> float:
    """Fraction of pairs decided right at ``threshold`` (same if similarity >= threshold).

    Pairs with ``scored`` False count as wrong.
    """
    s = np.asarray(similarities, dtype=np.float64)
    y = np.asarray(labels, dtype=bool)
    ok = np.ones(len(s), dtype=bool) if scored is None else np.asarray(scored, dtype=bool)
    if len(s) == 0:
        return float("nan")
    with np.errstate(invalid="ignore"):
        right = ok & ((s >= threshold) == y)
    return float(right.sum() / len(s))


@dataclass(frozen=True)
class KFoldResult:
    """Accuracy on each fold at the threshold chosen on the other folds."""

    accuracies: tuple[float, ...]
    thresholds: tuple[float, ...]  # similarity

    @property
    def mean(self) -> float:
        return float(np.mean(self.accuracies))

    @property
    def std(self) -> float:
        return float(np.std(self.accuracies))


def kfold_accuracy(similarities: Any, labels: Any, folds: Any, scored: Optional[Any] = None) -> KFoldResult:
    """The LFW protocol: for each fold, choose the threshold on the others, test on it.

    ``scored`` marks pairs that have a score; the others count as wrong and take no part
    in choosing thresholds.
    """
    s = np.asarray(similarities, dtype=np.float64)
    y = np.asarray(labels, dtype=bool)
    fold_ids = np.asarray(folds)
    ok = np.ones(len(s), dtype=bool) if scored is None else np.asarray(scored, dtype=bool)
    accuracies, thresholds = [], []
    for fold in np.unique(fold_ids):
        test = fold_ids == fold
        train = ~test & ok
        threshold, _ = best_threshold(s[train], y[train])
        accuracies.append(accuracy_at(s[test], y[test], threshold, ok[test]))
        thresholds.append(threshold)
    return KFoldResult(tuple(accuracies), tuple(thresholds))


def threshold_in_metric(threshold: float, metric: "str | Metric") -> float:
    """A similarity threshold written in the model's own metric (a distance for euclidean)."""
    return float(metric_named(metric).from_similarity(threshold))


def expected_calibration_error(probabilities: Any, labels: Any, bins: int = 10) -> float:
    """ECE: the gap between predicted probability and observed frequency, averaged over
    ``bins`` equal-width probability bins weighted by how many pairs fall in each."""
    p = np.asarray(probabilities, dtype=np.float64).ravel()
    y = np.asarray(labels, dtype=np.float64).ravel()
    if len(p) == 0:
        return float("nan")
    which = np.minimum((p * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        inside = which == b
        if inside.any():
            total += inside.sum() * abs(p[inside].mean() - y[inside].mean())
    return float(total / len(p))


def brier_score(probabilities: Any, labels: Any) -> float:
    """Mean squared difference between probability and outcome (0 is perfect)."""
    p = np.asarray(probabilities, dtype=np.float64).ravel()
    y = np.asarray(labels, dtype=np.float64).ravel()
    return float(np.mean((p - y) ** 2)) if len(p) else float("nan")

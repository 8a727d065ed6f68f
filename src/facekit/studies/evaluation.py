"""Verification accuracy on labelled pairs: the evaluation run and its report.

:func:`evaluate` reads a pair file (:mod:`facekit.studies.pairs`), embeds every image once
(batched, optionally cached on disk), scores each pair and summarises everything in an
:class:`EvaluationReport`, with the measures of :mod:`facekit.scoring.metrics`.

A pair whose image could not be embedded has no score. It counts as **wrong** in every
accuracy figure (whatever the threshold) and is left out of the ROC-based figures
(AUC, EER, TAR at FAR), which are computed on the scored pairs only; the report gives
both counts.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence, Union

import numpy as np

from facekit.cache import EmbeddingCache
from facekit.errors import ConfigError
from facekit.pipeline import Pipeline
from facekit.scoring.calibration import Calibration
from facekit.scoring.metric import metric_named
from facekit.scoring.metrics import (
    accuracy_at,
    auc,
    best_threshold,
    brier_score,
    eer,
    expected_calibration_error,
    OperatingPoint,
    kfold_accuracy,
    roc,
    stratified_folds,
    tar_at_far,
    threshold_in_metric,
)
from facekit.studies.pairs import Pair, PairFile, read_pairs

PathLike = Union[str, os.PathLike]

#: the false-accept rates at which TAR is reported
DEFAULT_FAR_TARGETS = (1e-2, 1e-3)


# --------------------------------------------------------------------------- the run
@dataclass
class EvaluationReport:
    """Everything an evaluation measured. ``to_dict`` gives the JSON written by the CLI."""

    pipeline: str
    model: str
    metric: str
    pairs_file: str
    images_dir: str
    protocol: str  # "10-fold" or "train/test"
    pairs: list[Pair]
    scores: np.ndarray  # raw scores in the metric; NaN where a pair has no score
    failed_images: dict[str, str]  # source -> message
    pipeline_threshold: float
    accuracy: float
    accuracy_std: Optional[float]
    fold_accuracies: list[float]
    threshold: float  # decision threshold behind `accuracy`, in the metric (k-fold: median of the folds')
    best_threshold: float  # best on these very pairs (optimistic; for reference)
    best_threshold_accuracy: float
    accuracy_at_pipeline_threshold: float
    auc: float
    eer: float
    eer_threshold: float
    tar_at_far: list[OperatingPoint]
    timing: dict[str, Any]
    train_pairs_file: Optional[str] = None
    calibration: Optional[dict[str, Any]] = None
    notes: list[str] = field(default_factory=list)

    @property
    def labels(self) -> np.ndarray:
        return np.array([p.same for p in self.pairs], dtype=bool)

    @property
    def scored(self) -> np.ndarray:
        return np.isfinite(self.scores)

    @property
    def failed_pairs(self) -> int:
        return int((~self.scored).sum())

    def to_dict(self, include_pairs: bool = True) -> dict[str, Any]:
        labels = self.labels
        out: dict[str, Any] = {
            "pipeline": self.pipeline,
            "model": self.model,
            "metric": self.metric,
            "score_kind": metric_named(self.metric).score_kind,
            "pairs_file": self.pairs_file,
            "train_pairs_file": self.train_pairs_file,
            "images_dir": self.images_dir,
            "protocol": self.protocol,
            "pairs": {
                "total": len(self.pairs),
                "same": int(labels.sum()),
                "different": int((~labels).sum()),
                "scored": int(self.scored.sum()),
                "failed": self.failed_pairs,
                "failed_counted_as": "wrong, in every accuracy figure; left out of AUC, EER and TAR@FAR",
            },
            "accuracy": self.accuracy,
            "accuracy_std": self.accuracy_std,
            "fold_accuracies": self.fold_accuracies,
            "threshold": self.threshold,
            "best_threshold": {"threshold": self.best_threshold, "accuracy": self.best_threshold_accuracy,
                               "note": "chosen on these same pairs: optimistic, for reference"},
            "pipeline_threshold": {"threshold": self.pipeline_threshold, "accuracy": self.accuracy_at_pipeline_threshold},
            "auc": self.auc,
            "eer": self.eer,
            "eer_threshold": self.eer_threshold,
            "tar_at_far": [
                {"far_target": p.target, "tar": p.tar, "far": p.far, "false_accepts": p.false_accepts,
                 "different_pairs": p.different_pairs, "threshold": threshold_in_metric(p.threshold, self.metric),
                 "resolved": p.resolved}
                for p in self.tar_at_far
            ],
            "failed_images": [{"source": s, "error": m} for s, m in sorted(self.failed_images.items())],
            "timing": self.timing,
            "calibration": self.calibration,
            "notes": self.notes,
        }
        if include_pairs:
            out["pair_scores"] = [
                {"a": p.a, "b": p.b, "same": p.same, "fold": p.fold,
                 "score": None if not np.isfinite(v) else round(float(v), 6)}
                for p, v in zip(self.pairs, self.scores)
            ]
        return out

    def to_json(self, **kwargs: Any) -> str:
        return json.dumps(self.to_dict(), **kwargs)

    def summary(self) -> str:
        """A few lines for a terminal."""
        labels = self.labels
        metric = metric_named(self.metric)
        op = metric.same_if
        std = f" ± {self.accuracy_std:.2%}" if self.accuracy_std is not None else ""
        rows = [
            ("pairs", f"{len(self.pairs)} ({int(labels.sum())} same, {int((~labels).sum())} different), "
                      f"{self.failed_pairs} without a score (counted wrong)"),
            ("accuracy", f"{self.accuracy:.2%}{std}  ({self.protocol}; same if {metric.score_name} {op} "
                         f"{self.threshold:.4f})"),
            ("at pipeline threshold", f"{self.accuracy_at_pipeline_threshold:.2%}  ({op} {self.pipeline_threshold:g})"),
            ("best threshold", f"{self.best_threshold:.4f}  ({self.best_threshold_accuracy:.2%} on these pairs)"),
            ("ROC AUC", f"{self.auc:.4f}"),
            ("EER", f"{self.eer:.2%}  (at {self.eer_threshold:.4f})"),
        ]
        for p in self.tar_at_far:
            note = "" if p.resolved else f"  (only {p.different_pairs} different pairs: this is TAR at 0 false accepts)"
            rows.append((f"TAR @ FAR {p.target:g}", f"{p.tar:.2%}  (FAR {p.far:.4f}, "
                                                    f"{threshold_in_metric(p.threshold, self.metric):.4f}){note}"))
        if self.calibration:
            rows.append(("calibration", f"{self.calibration['name']}: ECE {self.calibration['ece']:.4f}, "
                                        f"Brier {self.calibration['brier']:.4f}"))
        t = self.timing
        per = t.get("seconds_per_computed_image")
        rows.append(("images", f"{t['images']} ({t['computed']} embedded, {t['from_cache']} from cache, "
                               f"{len(self.failed_images)} failed)"))
        rows.append(("time", f"{t['seconds']:.1f} s" + (f", {per * 1000:.0f} ms per embedded image" if per
                                                           else " (every embedding read from the cache)")))
        width = max(len(k) for k, _ in rows)
        return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def pair_scores(
    pairs: Sequence[Pair], vectors: dict[str, list[np.ndarray]], metric: str
) -> np.ndarray:
    """Raw score of each pair (the most similar face pair if an image has several); NaN if missing."""
    scoring = metric_named(metric)
    out = np.full(len(pairs), np.nan)
    for index, pair in enumerate(pairs):
        va, vb = vectors.get(pair.a), vectors.get(pair.b)
        if not va or not vb:
            continue
        values = scoring.pairwise(np.stack([x for x in va for _ in vb]), np.stack([x for _ in va for x in vb]))
        out[index] = values[scoring.best(values)]
    return out


#: the pipeline settings that change an image's embedding (not its name, scoring, explainer...)
def embedding_description(pipeline: Pipeline) -> str:
    """See :meth:`facekit.Pipeline.embedding_description`."""
    return pipeline.embedding_description()


def embedding_digest(pipeline: Pipeline) -> str:
    import hashlib

    return hashlib.sha256(embedding_description(pipeline).encode("utf-8")).hexdigest()[:16]


def embed_images(
    pipeline: Pipeline, images: Sequence[str], cache: Optional[PathLike] = None, progress: Optional[bool] = None
) -> tuple[dict[str, list[np.ndarray]], dict[str, str], dict[str, Any]]:
    """Embed each image once: (vectors by path, failures by path, timing)."""
    store = EmbeddingCache(cache, embedding_description(pipeline)) if cache is not None else None
    start = time.perf_counter()
    pipeline.warm_up()  # model loading is not per-image time
    warm_up_seconds = time.perf_counter() - start
    start = time.perf_counter()
    batch = pipeline.embed(list(images), on_error="skip", progress=progress, cache=store)
    seconds = time.perf_counter() - start
    vectors: dict[str, list[np.ndarray]] = {}
    for emb in batch:
        vectors.setdefault(str(emb.source), []).append(np.asarray(emb.vector))
    failures = {source: message for source, message in batch.failures}
    for path in images:
        if path not in vectors and path not in failures:
            failures[path] = "no embedding came back for this image"
    from_cache = store.hits if store is not None else 0
    computed = len(images) - from_cache
    timing = {
        "images": len(images),
        "computed": computed,
        "from_cache": from_cache,
        "seconds": round(seconds, 3),
        "warm_up_seconds": round(warm_up_seconds, 3),
        "seconds_per_image": round(seconds / len(images), 5) if images else None,
        "seconds_per_computed_image": round(seconds / computed, 5) if computed else None,
        "workers": pipeline.config.workers,
        "note": "wall time of reading, detection, alignment and embedding (model loading excluded; starting "
                "worker processes included); `workers` 0 = one per CPU core, 1 = one process",
    }
    return vectors, failures, timing


def score_pairs(
    pair_files: Sequence[PairFile], pipeline: Union[Pipeline, str, os.PathLike, None] = None, *, cache: Optional[PathLike] = None,
    progress: Optional[bool] = None,
) -> tuple[list[np.ndarray], dict[str, str], dict[str, Any]]:
    """Raw scores of every pair of each file (NaN where an image failed), embedding each image once.

    Returns (scores per file, failed images, timing).
    """
    built = Pipeline.load(pipeline)
    wanted = list(dict.fromkeys(path for f in pair_files for path in f.images))
    vectors, failures, timing = embed_images(built, wanted, cache=cache, progress=progress)
    metric = built.embedder.metric
    return [pair_scores(f.pairs, vectors, metric) for f in pair_files], failures, timing


def evaluate(
    pairs: Union[PathLike, PairFile],
    images: Optional[PathLike] = None,
    pipeline: Union[Pipeline, str, os.PathLike, None] = None,
    *,
    train_pairs: Union[PathLike, PairFile, None] = None,
    folds: int = 10,
    far_targets: Sequence[float] = DEFAULT_FAR_TARGETS,
    cache: Optional[PathLike] = None,
    progress: Optional[bool] = None,
    limit: Optional[int] = None,
) -> EvaluationReport:
    """Measure a pipeline's verification accuracy on an LFW-format pair file.

    Without ``train_pairs`` the accuracy is k-fold: the file's own folds, or ``folds``
    stratified blocks for a single-set file, each tested at the threshold chosen on the
    others. With ``train_pairs`` the threshold is chosen on that file and the accuracy
    reported on ``pairs``. ``pipeline`` is a :class:`~facekit.pipeline.Pipeline`, a
    bundled name or a YAML path (default: the bundled default pipeline).
    """
    built = Pipeline.load(pipeline)
    test = pairs if isinstance(pairs, PairFile) else read_pairs(pairs, images, limit=limit)
    train = None
    if train_pairs is not None:
        train = train_pairs if isinstance(train_pairs, PairFile) else read_pairs(train_pairs, images, limit=limit)
    files = [test] if train is None else [test, train]
    scores, failures, timing = score_pairs(files, built, cache=cache, progress=progress)
    return summarize(
        test, scores[0], built.embedder.metric,
        pipeline_threshold=built.threshold, pipeline=built.name, model=built.embedder.model_name,
        train=train, train_scores=scores[1] if train is not None else None,
        folds=folds, far_targets=far_targets, failed_images=failures, timing=timing,
        calibration=built.calibration,
    )


def summarize(
    test: PairFile,
    scores: np.ndarray,
    metric: str,
    *,
    pipeline_threshold: float,
    pipeline: str = "",
    model: str = "",
    train: Optional[PairFile] = None,
    train_scores: Optional[np.ndarray] = None,
    folds: int = 10,
    far_targets: Sequence[float] = DEFAULT_FAR_TARGETS,
    failed_images: Optional[dict[str, str]] = None,
    timing: Optional[dict[str, Any]] = None,
    calibration: Optional[Calibration] = None,
) -> EvaluationReport:
    """Every figure of an :class:`EvaluationReport` from raw scores (NaN = no score)."""
    scoring = metric_named(metric)
    labels = test.labels
    scores = np.asarray(scores, dtype=np.float64)
    scored = np.isfinite(scores)
    sims = scoring.as_similarity(np.where(scored, scores, 0.0))
    if not (labels[scored].any() and (~labels[scored]).any()):
        raise ConfigError(
            f"{test.path}: fewer than one scored same-person and one scored different-person pair "
            f"({int(scored.sum())} of {len(scores)} pairs have a score); check the images folder "
            f"{test.images_dir} and the failed images"
        )
    notes: list[str] = []
    if train is not None:
        train_scores = np.asarray(train_scores, dtype=np.float64)
        train_ok = np.isfinite(train_scores)
        train_sims = scoring.as_similarity(np.where(train_ok, train_scores, 0.0))
        chosen, _ = best_threshold(train_sims[train_ok], train.labels[train_ok])
        accuracy = accuracy_at(sims, labels, chosen, scored)
        accuracy_std, fold_accuracies = None, []
        protocol = "train/test"
        notes.append(f"threshold chosen on {train.path} ({len(train.pairs)} pairs), accuracy measured on {test.path}")
    else:
        fold_ids = np.array([p.fold for p in test.pairs]) if test.folds > 1 else stratified_folds(labels, folds)
        result = kfold_accuracy(sims, labels, fold_ids, scored)
        accuracy, accuracy_std, fold_accuracies = result.mean, result.std, list(result.accuracies)
        chosen = float(np.median(result.thresholds))
        protocol = f"{len(result.accuracies)}-fold"
        notes.append(
            f"{protocol}: each fold tested at the threshold that is best on the other folds"
            + (" (the file's own folds)" if test.folds > 1 else " (stratified contiguous blocks of the file)")
            + "; `threshold` is the median of the folds' thresholds"
        )
    best, best_acc = best_threshold(sims[scored], labels[scored])
    best_acc = best_acc * scored.sum() / len(scores)
    pipeline_sim = float(scoring.as_similarity(pipeline_threshold))
    if not scoring.is_same(pipeline_threshold, pipeline_threshold):
        # the pipeline rejects a score at its threshold (`distance < threshold`); accuracy_at accepts
        # `similarity >= t`, so t moves just past the threshold's similarity
        pipeline_sim = float(np.nextafter(pipeline_sim, np.inf))
    curve = roc(sims[scored], labels[scored])
    eer_rate, eer_at = eer(curve)
    report = EvaluationReport(
        pipeline=pipeline,
        model=model,
        metric=metric,
        pairs_file=test.path,
        images_dir=test.images_dir,
        protocol=protocol,
        pairs=list(test.pairs),
        scores=scores,
        failed_images=dict(failed_images or {}),
        pipeline_threshold=float(pipeline_threshold),
        accuracy=float(accuracy),
        accuracy_std=accuracy_std,
        fold_accuracies=fold_accuracies,
        threshold=threshold_in_metric(chosen, metric),
        best_threshold=threshold_in_metric(best, metric),
        best_threshold_accuracy=float(best_acc),
        accuracy_at_pipeline_threshold=accuracy_at(sims, labels, pipeline_sim, scored),
        auc=auc(curve),
        eer=eer_rate,
        eer_threshold=threshold_in_metric(eer_at, metric),
        tar_at_far=[tar_at_far(curve, target) for target in far_targets],
        timing=dict(timing or {"images": 0, "computed": 0, "from_cache": 0, "seconds": 0.0}),
        train_pairs_file=train.path if train is not None else None,
        notes=notes,
    )
    if calibration is not None:
        probs = np.array([calibration.probability(v) for v in scores[scored]])
        report.calibration = {
            "name": calibration.name,
            "ece": expected_calibration_error(probs, labels[scored]),
            "brier": brier_score(probs, labels[scored]),
            "note": "the pipeline's calibration checked on these pairs (10 equal-width bins)",
        }
    return report

"""Verification accuracy on labelled pairs: pair files, metrics, and the evaluation run.

Three layers, usable on their own:

* **Pair files** (:func:`read_pairs`): the LFW format. The first line is either ``N``
  (one set: ``N`` same-person lines, then ``N`` different-person lines; LFW's
  development view) or ``F N`` (``F`` folds, each ``N`` same-person lines then ``N``
  different-person lines; LFW's 10-fold view, header ``10 300``). A same-person line
  is ``Name i j``, a different-person line ``Name1 i Name2 j``; image ``i`` of ``Name``
  is ``<images>/Name/Name_%04d.jpg``.
* **Metrics** (:func:`roc`, :func:`auc`, :func:`eer`, :func:`tar_at_far`,
  :func:`best_threshold`, :func:`kfold_accuracy`): pure numpy functions of
  *similarities* (higher = more alike) and boolean labels. Scores in a model's own
  metric go through :func:`facekit.similarity.similarity_of` first, which negates
  Euclidean distances, so one code path serves both kinds of model; thresholds come
  back in the model's metric through :func:`threshold_in_metric`.
* **The run** (:func:`evaluate`): embeds every image once (batched, optionally cached
  on disk), scores each pair and summarises everything in an :class:`EvaluationReport`.

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
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np

from facekit import similarity
from facekit.errors import ConfigError, EvaluationError

PathLike = Union[str, os.PathLike]

#: the false-accept rates at which TAR is reported
DEFAULT_FAR_TARGETS = (1e-2, 1e-3)


# --------------------------------------------------------------------------- pair files
@dataclass(frozen=True)
class Pair:
    """Two images and whether they show the same person."""

    a: str
    b: str
    same: bool
    fold: int = 0  # fold index from the file (0 for a single-set file)
    line: int = 0  # line number in the pair file, for messages


@dataclass
class PairFile:
    """The pairs of one file, in file order, and how many folds the file declares."""

    path: str
    images_dir: str
    pairs: list[Pair]
    folds: int  # 1 for a single-set file such as pairsDevTest.txt

    @property
    def labels(self) -> np.ndarray:
        return np.array([p.same for p in self.pairs], dtype=bool)

    @property
    def images(self) -> list[str]:
        """Every image the pairs use, each once, in first-use order."""
        return list(dict.fromkeys(path for p in self.pairs for path in (p.a, p.b)))

    def spread(self, count: int, same: bool = True) -> list[Pair]:
        """``count`` same-person (or different-person) pairs picked evenly over the file.

        Consecutive lines of an LFW file are often the same person, so an even spread gives
        pairs of different people; fewer come back if the file has fewer.
        """
        chosen = [p for p in self.pairs if p.same == same]
        return [chosen[i] for i in even_picks(len(chosen), count)]


def even_picks(total: int, count: int) -> list[int]:
    """``min(count, total)`` indices into ``range(total)``, spread evenly from first to last."""
    return sorted(set(np.linspace(0, total - 1, num=min(count, total)).round().astype(int).tolist()))


def lfw_image_path(images_dir: PathLike, name: str, index: int) -> str:
    """``<images_dir>/Name/Name_0001.jpg``: where LFW keeps image ``index`` of ``name``."""
    return str(Path(images_dir) / name / f"{name}_{index:04d}.jpg")


def default_images_dir(pairs_path: PathLike) -> Path:
    """An ``images`` folder beside the pair file if there is one, else the file's folder."""
    folder = Path(pairs_path).resolve().parent
    return folder / "images" if (folder / "images").is_dir() else folder


def read_pairs(path: PathLike, images_dir: Optional[PathLike] = None, limit: Optional[int] = None) -> PairFile:
    """Parse an LFW-format pair file (see the module docs).

    ``limit`` keeps ``limit`` same-person and ``limit`` different-person pairs of each
    fold, spread evenly over it (quick runs): the first lines of an LFW file are often
    a few people only, and would give a misleadingly perfect score.
    """
    pairs_path = Path(path)
    try:
        text = pairs_path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read pair file {pairs_path}: {exc}") from None
    images = Path(images_dir) if images_dir is not None else default_images_dir(pairs_path)
    lines = [(number, line.split()) for number, line in enumerate(text.splitlines(), start=1) if line.strip()]
    if not lines:
        raise ConfigError(f"{pairs_path}: the pair file is empty; expected an LFW header line such as `500` or `10 300`")
    header_line, header = lines[0]
    try:
        counts = [int(v) for v in header]
    except ValueError:
        counts = []
    if len(counts) not in (1, 2) or min(counts) < 1:
        raise ConfigError(
            f"{pairs_path}:{header_line}: expected a header `N` (N same-person then N different-person lines) "
            f"or `FOLDS N`, got {' '.join(header)!r}"
        )
    folds, per_fold = (1, counts[0]) if len(counts) == 1 else (counts[0], counts[1])
    body = lines[1:]
    expected = folds * 2 * per_fold
    if len(body) != expected:
        raise ConfigError(
            f"{pairs_path}: the header says {folds} fold(s) of {per_fold} same-person and {per_fold} "
            f"different-person pairs ({expected} lines), but the file has {len(body)} pair lines"
        )
    pairs: list[Pair] = []
    kept = set(even_picks(per_fold, limit)) if limit is not None else None
    for index, (number, tokens) in enumerate(body):
        fold, within = divmod(index, 2 * per_fold)
        same = within < per_fold
        if kept is not None and (within if same else within - per_fold) not in kept:
            continue
        pairs.append(_parse_pair_line(tokens, same, fold, number, pairs_path, images))
    return PairFile(str(pairs_path), str(images), pairs, folds)


def _parse_pair_line(tokens: list[str], same: bool, fold: int, number: int, path: Path, images: Path) -> Pair:
    want = "`Name i j` (same person)" if same else "`Name1 i Name2 j` (different people)"
    try:
        if same and len(tokens) == 3:
            name, i, j = tokens
            return Pair(lfw_image_path(images, name, int(i)), lfw_image_path(images, name, int(j)), True, fold, number)
        if not same and len(tokens) == 4:
            name_a, i, name_b, j = tokens
            return Pair(lfw_image_path(images, name_a, int(i)), lfw_image_path(images, name_b, int(j)), False, fold, number)
    except ValueError:
        pass
    raise ConfigError(f"{path}:{number}: expected {want}, got {' '.join(tokens)!r}")


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


def threshold_in_metric(threshold: float, metric: str) -> float:
    """A similarity threshold written in the model's own metric (a distance for euclidean)."""
    return float(similarity.similarity_of(np.array([threshold]), metric)[0])


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
            "score_kind": "distance (lower = more similar)" if self.metric == "euclidean" else "similarity",
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
        op = "<" if self.metric == "euclidean" else ">="
        std = f" ± {self.accuracy_std:.2%}" if self.accuracy_std is not None else ""
        rows = [
            ("pairs", f"{len(self.pairs)} ({int(labels.sum())} same, {int((~labels).sum())} different), "
                      f"{self.failed_pairs} without a score (counted wrong)"),
            ("accuracy", f"{self.accuracy:.2%}{std}  ({self.protocol}; same if {self.metric} {op} "
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
    out = np.full(len(pairs), np.nan)
    for index, pair in enumerate(pairs):
        va, vb = vectors.get(pair.a), vectors.get(pair.b)
        if not va or not vb:
            continue
        values = similarity.pairwise_scores(
            np.stack([x for x in va for _ in vb]), np.stack([x for _ in va for x in vb]), metric
        )
        out[index] = values[int(np.argmax(similarity.similarity_of(values, metric)))]
    return out


#: the pipeline settings that change an image's embedding (not its name, scoring, explainer...)
def embedding_description(pipeline: Any) -> str:
    """See :meth:`facekit.Pipeline.embedding_description`."""
    return pipeline.embedding_description()


def embedding_digest(pipeline: Any) -> str:
    import hashlib

    return hashlib.sha256(embedding_description(pipeline).encode("utf-8")).hexdigest()[:16]


def embed_images(
    pipeline: Any, images: Sequence[str], cache: Optional[PathLike] = None, progress: Optional[bool] = None
) -> tuple[dict[str, list[np.ndarray]], dict[str, str], dict[str, Any]]:
    """Embed each image once: (vectors by path, failures by path, timing)."""
    from facekit.cache import EmbeddingCache

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
    pair_files: Sequence[PairFile], pipeline: Any = None, *, cache: Optional[PathLike] = None,
    progress: Optional[bool] = None,
) -> tuple[list[np.ndarray], dict[str, str], dict[str, Any]]:
    """Raw scores of every pair of each file (NaN where an image failed), embedding each image once.

    Returns (scores per file, failed images, timing).
    """
    from facekit.pipeline import Pipeline

    built = Pipeline.load(pipeline)
    wanted = list(dict.fromkeys(path for f in pair_files for path in f.images))
    vectors, failures, timing = embed_images(built, wanted, cache=cache, progress=progress)
    metric = built.embedder.metric
    return [pair_scores(f.pairs, vectors, metric) for f in pair_files], failures, timing


def evaluate(
    pairs: Union[PathLike, PairFile],
    images: Optional[PathLike] = None,
    pipeline: Any = None,
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
    from facekit.pipeline import Pipeline

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
    calibration: Any = None,
) -> EvaluationReport:
    """Every figure of an :class:`EvaluationReport` from raw scores (NaN = no score)."""
    labels = test.labels
    scores = np.asarray(scores, dtype=np.float64)
    scored = np.isfinite(scores)
    sims = similarity.similarity_of(np.where(scored, scores, 0.0), metric)
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
        train_sims = similarity.similarity_of(np.where(train_ok, train_scores, 0.0), metric)
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
    pipeline_sim = similarity.similarity_of(np.array([pipeline_threshold]), metric)[0]
    if metric == "euclidean":
        # the pipeline decides `distance < threshold`; accuracy_at uses `similarity >= t`
        pipeline_sim = np.nextafter(pipeline_sim, np.inf)
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
        from facekit.calibration import brier_score, expected_calibration_error

        probs = np.array([calibration.probability(v) for v in scores[scored]])
        report.calibration = {
            "name": calibration.name,
            "ece": expected_calibration_error(probs, labels[scored]),
            "brier": brier_score(probs, labels[scored]),
            "note": "the pipeline's calibration checked on these pairs (10 equal-width bins)",
        }
    return report

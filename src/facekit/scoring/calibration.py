"""Calibrated scores: from a raw score to numbers people can read.

A raw score (a Euclidean distance, or a cosine similarity) means little on its own. A
:class:`Calibration`, fitted on labelled pairs, turns it into two numbers:

* ``probability(score)``: the probability that the two faces are the same person,
  from a logistic fit (Platt scaling) or an isotonic fit of same-person labels on the
  score. It holds for pairs drawn like the fitting pairs, **including their share of
  same-person pairs** (``prior_same``, 0.5 for LFW's files); pass ``prior=`` to move it
  to another share.
* ``impostor_percentile(score)``: the fraction of different-person pairs (impostors)
  of the fitting population that are *less* similar than this score: "more similar
  than 99.2 % of pairs of different people". One minus it is the false-match rate of a
  threshold placed at this score.

Calibrations are small JSON files (never pickle), read with :func:`load_calibration`
by registered name (plugins register them through the ``register_calibrations`` hook)
or by path, and written with :meth:`Calibration.save`. The same file format carries
population profiles: a profile is a calibration fitted on one population's pairs.

Why one file: the object, its fit and its file format are one concept and change
together (a new field is fitted, checked, written and read here); lookup is the tail.

File format (``"format": "facekit.calibration"``, ``"version": 1``)::

    name, description            short name, one line
    pipeline, model, metric      what produced the scores; metric "euclidean" or "cosine"
    fitted_on                    {data, pairs, same_pairs, different_pairs, failed_pairs, ...}
    threshold                    decision threshold in the metric, or null (keep the model's)
    threshold_rule               how it was chosen ("best-accuracy", "fmr=0.001") or null
    operating_points             [{fmr, threshold, tmr, resolved}]: thresholds at target false-match rates
    probability                  {method: "logistic", coef, intercept, prior_same, floor}
                                 or {method: "isotonic", scores: [...], probabilities: [...], prior_same, floor};
                                 probabilities are kept within [floor, 1 - floor], floor = 1/(pairs + 2)
    ece                          {fit: ECE on the fitting pairs, bins, held_out?: {..}}
    impostor_quantiles           {levels, scores, count}: scores[k] is the score that a fraction
                                 levels[k] of different-person pairs are less similar than
    genuine_quantiles            the same for same-person pairs
    created_with                 facekit version

Unknown top-level keys are kept on load and written back on save (``extra``), so a
later format can add fields without breaking older readers.
"""

from __future__ import annotations

import json
import math
import re
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np

from facekit._version import __version__
from facekit.errors import ConfigError
from facekit.io import atomic_write_text, names_a_file
from facekit.plugins import get_registry, unknown_name_message
from facekit.scoring.metric import Metric, metric_named
from facekit.scoring.metrics import best_threshold, brier_score, expected_calibration_error, threshold_in_metric

FORMAT = "facekit.calibration"
VERSION = 1
METHODS = ("logistic", "isotonic")

PathLike = Union[str, os.PathLike]


# --------------------------------------------------------------------------- fitting
def _logit(p: float) -> float:
    return math.log(p / (1 - p))


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))  # stable for large |z|


def fit_logistic(x: Any, labels: Any) -> tuple[float, float]:
    """Platt scaling: ``P(same) = sigmoid(coef * x + intercept)``, fitted by Newton's method.

    Targets are Platt's smoothed labels ((n+ + 1)/(n+ + 2) and 1/(n- + 2)), which keep the
    fit finite when the two classes do not overlap.
    """
    x = np.asarray(x, dtype=np.float64).ravel()
    y = np.asarray(labels, dtype=bool).ravel()
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError("a calibration needs both same-person and different-person pairs")
    target = np.where(y, (n_pos + 1) / (n_pos + 2), 1 / (n_neg + 2))
    centre, scale = float(x.mean()), float(x.std()) or 1.0
    design = np.column_stack([(x - centre) / scale, np.ones_like(x)])
    w = np.zeros(2)

    def loss(weights: np.ndarray) -> float:
        z = design @ weights
        return float(np.sum(np.logaddexp(0, z) - target * z))

    current = loss(w)
    for _ in range(100):
        p = _sigmoid(design @ w)
        grad = design.T @ (p - target)
        hess = (design * (p * (1 - p))[:, None]).T @ design + 1e-9 * np.eye(2)
        step = np.linalg.solve(hess, grad)
        size = 1.0
        while size > 1e-6 and loss(w - size * step) > current:
            size /= 2
        w = w - size * step
        new = loss(w)
        if abs(current - new) < 1e-12 * max(1.0, abs(current)):
            current = new
            break
        current = new
    coef = w[0] / scale
    return float(coef), float(w[1] - coef * centre)


def fit_isotonic(x: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
    """Pool-adjacent-violators: a non-decreasing step fit of the labels on ``x``.

    Returns knots ``(xs, ps)`` with ``xs`` increasing; interpolate between them.
    """
    x = np.asarray(x, dtype=np.float64).ravel()
    y = np.asarray(labels, dtype=np.float64).ravel()
    order = np.argsort(x, kind="mergesort")
    xs, inverse = np.unique(x[order], return_inverse=True)
    sums = np.bincount(inverse, weights=y[order])
    counts = np.bincount(inverse).astype(np.float64)
    # blocks: [value, weight, first index, last index]
    blocks: list[list[float]] = []
    for i, (s, c) in enumerate(zip(sums, counts)):
        blocks.append([s / c, c, i, i])
        # merging equal neighbours too keeps one block (two knots) per flat stretch
        while len(blocks) > 1 and blocks[-2][0] >= blocks[-1][0]:
            v2, c2, _, last = blocks.pop()
            v1, c1, first, _ = blocks.pop()
            blocks.append([(v1 * c1 + v2 * c2) / (c1 + c2), c1 + c2, first, last])
    knots_x, knots_p = [], []
    for value, _, first, last in blocks:
        knots_x.append(xs[int(first)])
        knots_p.append(value)
        if last != first:
            knots_x.append(xs[int(last)])
            knots_p.append(value)
    return np.array(knots_x), np.array(knots_p)


def _quantile_levels(count: int, tail: bool) -> np.ndarray:
    """0, 0.005, ..., 1 plus, for the impostor tail, levels down to one pair in ``count``."""
    levels = list(np.linspace(0.0, 1.0, 201))
    if tail:
        for exponent in np.arange(2.5, 6.01, 0.25):
            level = 1.0 - 10.0 ** (-exponent)
            if (1.0 - level) * count >= 1.0:
                levels.append(level)
    return np.unique(np.round(levels, 8))


# --------------------------------------------------------------------------- the object
@dataclass
class Calibration:
    """A fitted score calibration (see the module docs). Build one with :func:`fit_calibration`."""

    name: str
    metric: str
    probability_map: dict[str, Any]
    impostor_levels: np.ndarray
    impostor_scores: np.ndarray  # raw scores, one per level
    impostor_count: int
    genuine_levels: np.ndarray = field(default_factory=lambda: np.zeros(0))
    genuine_scores: np.ndarray = field(default_factory=lambda: np.zeros(0))
    genuine_count: int = 0
    threshold: Optional[float] = None
    threshold_rule: Optional[str] = None
    operating_points: list[dict[str, Any]] = field(default_factory=list)
    description: str = ""
    pipeline: Optional[str] = None
    model: Optional[str] = None
    fitted_on: dict[str, Any] = field(default_factory=dict)
    ece: dict[str, Any] = field(default_factory=dict)
    created_with: Optional[str] = None
    extra: dict[str, Any] = field(default_factory=dict)
    source: Optional[str] = None  # the file it was read from

    def __post_init__(self) -> None:
        try:
            self._metric = metric_named(self.metric)  # what the raw scores mean
        except ConfigError as exc:
            raise ConfigError(f"calibration {self.name!r}: {exc}") from None
        method = self.probability_map.get("method")
        if method not in METHODS:
            raise ConfigError(f"calibration {self.name!r}: unknown probability method {method!r}; use {' or '.join(METHODS)}")
        self.impostor_levels = np.asarray(self.impostor_levels, dtype=np.float64)
        self.impostor_scores = np.asarray(self.impostor_scores, dtype=np.float64)
        if len(self.impostor_levels) != len(self.impostor_scores) or len(self.impostor_levels) < 2:
            raise ConfigError(f"calibration {self.name!r}: impostor_quantiles needs matching `levels` and `scores` (2 or more)")
        # internal, increasing-similarity versions for np.interp
        self._imp_sims = self._metric.as_similarity(self.impostor_scores)
        if np.any(np.diff(self._imp_sims) < -1e-9):
            raise ConfigError(f"calibration {self.name!r}: impostor quantile scores must grow less similar as levels fall")
        if method == "isotonic":
            sims = self._metric.as_similarity(self.probability_map["scores"])
            probs = np.asarray(self.probability_map["probabilities"], dtype=np.float64)
            order = np.argsort(sims, kind="mergesort")
            self._iso = (sims[order], probs[order])

    @property
    def prior_same(self) -> float:
        return float(self.probability_map.get("prior_same", 0.5))

    @property
    def method(self) -> str:
        return str(self.probability_map["method"])

    # ------------------------------------------------------------ the two numbers
    def probability(self, score: float, prior: Optional[float] = None) -> float:
        """P(same person | score), for pairs with ``prior`` same-person share (default: the fit's)."""
        p = float(self.probabilities(np.array([score]))[0])
        if prior is None or prior == self.prior_same:
            return p
        p = min(max(p, 1e-12), 1 - 1e-12)
        return 1.0 / (1.0 + math.exp(-(_logit(p) + self._prior_shift(prior))))

    def _prior_shift(self, prior: float) -> float:
        """What moving from the fit's same-person share to ``prior`` adds to a log-odds."""
        if not 0.0 < prior < 1.0:
            raise ValueError("prior must be strictly between 0 and 1")
        return _logit(prior) - _logit(self.prior_same)

    def move_prior(self, prior: float) -> None:
        """Make ``prior`` this logistic calibration's own same-person share: its intercept moves,
        so :meth:`probability` without ``prior=`` answers for pairs with that share. Isotonic
        maps and fits on a share of 0 or 1 are left as they are."""
        old = self.prior_same
        if self.method != "logistic" or old in (0.0, 1.0) or abs(old - prior) < 1e-12:
            return
        shift = self._prior_shift(prior)
        self.probability_map["intercept"] = float(self.probability_map["intercept"] + shift)
        self.probability_map["prior_same"] = prior
        self.probability_map["prior_note"] = (
            f"fitted on pairs with {old:.4f} same-person share; intercept moved by {shift:+.4f} "
            f"to a {prior:g} share (pass prior= to probability() for another)")

    def probabilities(self, scores: Any) -> np.ndarray:
        """:meth:`probability` for an array of raw scores, at the fit's prior."""
        raw = np.asarray(scores, dtype=np.float64)
        if self.method == "logistic":
            probs = _sigmoid(self.probability_map["coef"] * raw + self.probability_map["intercept"])
        else:
            xs, ps = self._iso
            probs = np.interp(self._metric.as_similarity(raw), xs, ps)
        floor = float(self.probability_map.get("floor", 0.0))
        return np.clip(probs, floor, 1.0 - floor)

    def impostor_percentile(self, score: float) -> float:
        """Fraction in [0, 1] of different-person pairs less similar than ``score``.

        Capped at ``n/(n+1)`` for ``n`` impostor pairs in the fit: a score beyond all of
        them says "more similar than every one seen", not "than all there are".
        """
        sim = float(self._metric.as_similarity(score))
        level = float(np.interp(sim, self._imp_sims, self.impostor_levels))
        cap = self.impostor_count / (self.impostor_count + 1.0) if self.impostor_count else 1.0
        return min(max(level, 0.0), cap)

    def false_match_rate(self, score: float) -> float:
        """The share of different-person pairs that a threshold at ``score`` would accept."""
        return 1.0 - self.impostor_percentile(score)

    def threshold_at_fmr(self, fmr: float) -> float:
        """The raw score at which ``fmr`` of different-person pairs are more similar."""
        sim = float(np.interp(1.0 - fmr, self.impostor_levels, self._imp_sims))
        return float(self._metric.from_similarity(sim))

    # ------------------------------------------------------------ files
    def to_dict(self) -> dict[str, Any]:
        def rounded(values: np.ndarray) -> list[float]:
            return [float(f"{v:.8g}") for v in np.asarray(values, dtype=np.float64)]

        out: dict[str, Any] = {
            "format": FORMAT,
            "version": VERSION,
            "name": self.name,
            "description": self.description,
            "pipeline": self.pipeline,
            "model": self.model,
            "metric": self.metric,
            "score_kind": self._metric.score_kind,
            "fitted_on": self.fitted_on,
            "threshold": self.threshold,
            "threshold_rule": self.threshold_rule,
            "operating_points": self.operating_points,
            "probability": {
                k: (rounded(v) if isinstance(v, (list, np.ndarray)) else v) for k, v in self.probability_map.items()
            },
            "ece": self.ece,
            "impostor_quantiles": {"levels": rounded(self.impostor_levels), "scores": rounded(self.impostor_scores),
                                   "count": self.impostor_count},
            "genuine_quantiles": {"levels": rounded(self.genuine_levels), "scores": rounded(self.genuine_scores),
                                  "count": self.genuine_count},
            "created_with": self.created_with,
        }
        out.update({k: v for k, v in self.extra.items() if k not in out})
        return out

    def to_json(self, indent: Optional[int] = 1) -> str:
        text = json.dumps(self.to_dict(), indent=indent)
        # keep each list of numbers on one line, so the file reads as a table of fields
        return re.sub(r"\[\s+([-+0-9.eE,\s]*?)\s+\]", lambda m: "[" + " ".join(m.group(1).split()) + "]", text)

    def save(self, path: PathLike) -> Path:
        """Write the JSON file atomically."""
        return atomic_write_text(path, self.to_json() + "\n")

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "") -> "Calibration":
        at = f"{where}: " if where else ""
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ConfigError(f"{at}not a facekit calibration file (expected \"format\": \"{FORMAT}\")")
        if int(data.get("version", 0)) > VERSION:
            raise ConfigError(f"{at}calibration format version {data['version']} is newer than this facekit "
                              f"understands ({VERSION}); upgrade facekit")
        known = {"format", "version", "name", "description", "pipeline", "model", "metric", "score_kind", "fitted_on",
                 "threshold", "threshold_rule", "operating_points", "probability", "ece", "impostor_quantiles",
                 "genuine_quantiles", "created_with"}
        try:
            impostor = data["impostor_quantiles"]
            genuine = data.get("genuine_quantiles") or {}
            return cls(
                name=str(data["name"]),
                metric=str(data["metric"]),
                probability_map=dict(data["probability"]),
                impostor_levels=np.asarray(impostor["levels"], dtype=np.float64),
                impostor_scores=np.asarray(impostor["scores"], dtype=np.float64),
                impostor_count=int(impostor.get("count", 0)),
                genuine_levels=np.asarray(genuine.get("levels", []), dtype=np.float64),
                genuine_scores=np.asarray(genuine.get("scores", []), dtype=np.float64),
                genuine_count=int(genuine.get("count", 0)),
                threshold=None if data.get("threshold") is None else float(data["threshold"]),
                threshold_rule=data.get("threshold_rule"),
                operating_points=list(data.get("operating_points") or []),
                description=str(data.get("description") or ""),
                pipeline=data.get("pipeline"),
                model=data.get("model"),
                fitted_on=dict(data.get("fitted_on") or {}),
                ece=dict(data.get("ece") or {}),
                created_with=data.get("created_with"),
                extra={k: v for k, v in data.items() if k not in known},
            )
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, ConfigError):
                raise
            detail = f"missing key {exc}" if isinstance(exc, KeyError) else str(exc)
            raise ConfigError(f"{at}invalid calibration file: {detail}") from None

    @classmethod
    def load(cls, path: PathLike) -> "Calibration":
        target = Path(path)
        try:
            data = json.loads(target.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ConfigError(f"cannot read calibration file {target}: {exc}") from None
        calibration = cls.from_dict(data, where=str(target))
        calibration.source = str(target)
        return calibration

    def __repr__(self) -> str:
        return f"Calibration({self.name!r}, {self.metric}, {self.method}, threshold={self.threshold})"


def fit_calibration(
    scores: Any,
    labels: Any,
    metric: "str | Metric",
    *,
    name: str,
    method: str = "logistic",
    fmr_targets: Sequence[float] = (1e-2, 1e-3),
    threshold_rule: Optional[str] = None,
    description: str = "",
    pipeline: Optional[str] = None,
    model: Optional[str] = None,
    fitted_on: Optional[dict[str, Any]] = None,
    bins: int = 10,
) -> Calibration:
    """Fit a :class:`Calibration` from raw scores (in ``metric``) and same-person labels.

    ``threshold_rule`` sets the calibration's decision threshold: ``None`` keeps the
    model's own, ``"best-accuracy"`` takes the most accurate one on these pairs,
    ``"fmr=0.001"`` the one with that false-match rate.
    """
    if method not in METHODS:
        raise ConfigError(f"unknown calibration method {method!r}; use {' or '.join(METHODS)}")
    raw = np.asarray(scores, dtype=np.float64).ravel()
    y = np.asarray(labels, dtype=bool).ravel()
    if raw.shape != y.shape:
        raise ValueError(f"{len(raw)} scores but {len(y)} labels")
    keep = np.isfinite(raw)
    raw, y = raw[keep], y[keep]
    if y.sum() < 2 or (~y).sum() < 2:
        raise ConfigError("a calibration needs at least two scored same-person and two different-person pairs")
    scoring = metric_named(metric)
    sims = scoring.as_similarity(raw)
    prior = float(y.mean())
    floor = round(1.0 / (len(y) + 2), 8)  # a finite sample gives no certainties: P stays in [floor, 1 - floor]
    if method == "logistic":
        coef, intercept = fit_logistic(raw, y)
        probability_map: dict[str, Any] = {"method": "logistic", "coef": coef, "intercept": intercept,
                                           "input": "raw score", "prior_same": prior, "floor": floor}
    else:
        xs, ps = fit_isotonic(sims, y)
        probability_map = {"method": "isotonic", "scores": scoring.from_similarity(xs),
                           "probabilities": ps, "prior_same": prior, "floor": floor}
    impostor_levels = _quantile_levels(int((~y).sum()), tail=True)
    genuine_levels = _quantile_levels(int(y.sum()), tail=False)
    impostor_sims = np.quantile(sims[~y], impostor_levels)
    genuine_sims = np.quantile(sims[y], genuine_levels)
    calibration = Calibration(
        name=name,
        metric=scoring.name,
        probability_map=probability_map,
        impostor_levels=impostor_levels,
        impostor_scores=scoring.from_similarity(impostor_sims),
        impostor_count=int((~y).sum()),
        genuine_levels=genuine_levels,
        genuine_scores=scoring.from_similarity(genuine_sims),
        genuine_count=int(y.sum()),
        description=description,
        pipeline=pipeline,
        model=model,
        fitted_on={**(fitted_on or {}), "pairs": int(len(y)), "same_pairs": int(y.sum()),
                   "different_pairs": int((~y).sum()), "unscored_pairs_left_out": int((~keep).sum())},
        created_with=f"facekit {__version__}",
    )
    for fmr in fmr_targets:
        threshold = calibration.threshold_at_fmr(fmr)
        sim_t = float(scoring.as_similarity(threshold))
        calibration.operating_points.append({
            "fmr": fmr,
            "threshold": round(threshold, 6),
            "tmr": round(float(np.mean(sims[y] >= sim_t)), 6),
            "resolved": bool(fmr * (~y).sum() >= 1),
        })
    best_sim, best_acc = best_threshold(sims, y)
    calibration.extra["best_accuracy"] = {"threshold": round(threshold_in_metric(best_sim, scoring), 6),
                                          "accuracy": round(best_acc, 6)}
    if threshold_rule is not None:
        calibration.threshold = _threshold_from_rule(calibration, threshold_rule)
        calibration.threshold_rule = threshold_rule
    calibration.ece = {"fit": round(expected_calibration_error(calibration.probabilities(raw), y, bins), 6),
                       "brier_fit": round(brier_score(calibration.probabilities(raw), y), 6), "bins": bins}
    return calibration


def _threshold_from_rule(calibration: Calibration, rule: str) -> float:
    if rule == "best-accuracy":
        return float(calibration.extra["best_accuracy"]["threshold"])
    if rule.startswith("fmr="):
        try:
            fmr = float(rule[4:])
        except ValueError:
            fmr = -1.0
        if 0.0 < fmr < 1.0:
            return round(calibration.threshold_at_fmr(fmr), 6)
    raise ConfigError(f"unknown threshold rule {rule!r}; use none, best-accuracy or fmr=RATE (e.g. fmr=0.001)")


def check_calibration(calibration: Calibration, scores: Any, labels: Any, where: str, bins: int = 10) -> dict[str, Any]:
    """ECE and Brier score of ``calibration`` on other pairs; recorded as ``ece["held_out"]``."""
    raw = np.asarray(scores, dtype=np.float64).ravel()
    y = np.asarray(labels, dtype=bool).ravel()
    keep = np.isfinite(raw)
    probs = calibration.probabilities(raw[keep])
    result = {"ece": round(expected_calibration_error(probs, y[keep], bins), 6),
              "brier": round(brier_score(probs, y[keep]), 6), "pairs": int(keep.sum()), "on": where}
    calibration.ece["held_out"] = result
    return result


# --------------------------------------------------------------------------- lookup
def load_calibration(name_or_path: Union[str, PathLike], metric: Optional[str] = None,
                     model: Optional[str] = None) -> Calibration:
    """A calibration by registered name (see ``facekit plugins``) or by JSON path.

    A path is anything ending in ``.json`` or holding a folder separator; anything else
    is looked up among the registered names first.

    With ``metric``, refuse a calibration fitted on scores of another kind; with ``model``
    (an embedder's ``model_name``), one fitted on another model's scores (a calibration
    that records no model is accepted).
    """
    text = str(name_or_path)
    if names_a_file(name_or_path, (".json",)) and Path(text).is_file():
        calibration = Calibration.load(text)
        _check_fit(calibration, metric, model, f"calibration file {text}")
        return calibration
    registry = get_registry()
    if text in registry.calibrations:
        path, plugin = registry.calibrations[text]
        where = f"calibration {text!r} (registered by {plugin!r}, file {path})"
        if not Path(path).is_file():
            raise ConfigError(f"{where}: the file is missing; reinstall the plugin that provides it")
        calibration = Calibration.load(path)
    elif Path(text).is_file():
        where = f"calibration file {text}"
        calibration = Calibration.load(text)
    else:
        raise ConfigError(
            f"no registered calibration named {text!r} and no such file. "
            + unknown_name_message("calibration", text, sorted(registry.calibrations), registry.failures)
            + " Fit one with `facekit calibrate`."
        )
    _check_fit(calibration, metric, model, where)
    return calibration


def _check_fit(calibration: Calibration, metric: Optional[str], model: Optional[str], where: str) -> None:
    if model is not None and calibration.model and calibration.model != model:
        hint = (f" (the bundled pipeline {calibration.name!r} does)" if calibration.name in get_registry().pipelines
                else "")
        raise ConfigError(
            f"{where} was fitted on scores of the model {calibration.model!r}, but this pipeline's embedder is "
            f"{model!r}: its threshold and probabilities would not mean what they say. Use an embedder that "
            f"gives {calibration.model!r}{hint}, or fit a calibration for this model with `facekit calibrate`"
        )
    if metric is not None and calibration.metric != metric:
        raise ConfigError(
            f"{where} was fitted on {calibration.metric} scores, but this pipeline's embedder uses {metric}; "
            "fit a calibration for this model with `facekit calibrate`"
        )

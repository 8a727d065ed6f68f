"""Pictures of evaluation and calibration results, saved as PNG.

matplotlib is imported inside the functions and drawn through its Agg canvas directly,
so nothing here touches the global backend of a program that also uses pyplot.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Sequence, Union

import numpy as np

from facekit.io import atomic_write
from facekit.scoring.metric import metric_named
from facekit.scoring.metrics import expected_calibration_error, roc

if TYPE_CHECKING:  # pragma: no cover - annotations only: pictures sit below the calibration's layer
    from facekit.scoring.calibration import Calibration

PathLike = Union[str, os.PathLike]

SAME_COLOUR = "#1b9e77"
DIFFERENT_COLOUR = "#d95f02"


def _figure(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=110, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _save(figure: Any, path: PathLike) -> Path:
    return atomic_write(path, lambda tmp: figure.savefig(tmp, format="png"))


def _histograms(ax: Any, scores: np.ndarray, labels: np.ndarray, metric: str) -> None:
    bins = np.linspace(scores.min(), scores.max(), 50)
    ax.hist(scores[labels], bins=bins, color=SAME_COLOUR, alpha=0.6, label=f"same person ({labels.sum()})")
    ax.hist(scores[~labels], bins=bins, color=DIFFERENT_COLOUR, alpha=0.6,
            label=f"different people ({(~labels).sum()})")
    ax.set_xlabel(metric_named(metric).axis_label)
    ax.set_ylabel("pairs")


def evaluation_figure(report: Any, path: PathLike) -> Path:
    """ROC curve and score histograms of an :class:`~facekit.studies.evaluation.EvaluationReport`."""
    scored = report.scored
    scores = report.scores[scored]
    labels = report.labels[scored]
    metric = report.metric
    curve = roc(metric_named(metric).as_similarity(scores), labels)
    n_different = curve.n_different
    floor = 0.5 / n_different  # where a FAR of 0 is drawn on the log axis

    figure = _figure(12, 4.8)
    roc_ax, hist_ax = figure.subplots(1, 2, gridspec_kw={"width_ratios": [1, 1.25]})

    roc_ax.plot(np.maximum(curve.far, floor), curve.tar, color="#3b4cc0", lw=2, drawstyle="steps-post",
                label=f"ROC (AUC {report.auc:.4f})")
    roc_ax.set_xscale("log")
    roc_ax.set_xlim(floor * 0.8, 1.0)
    low = min(float(curve.tar[np.searchsorted(curve.far, 0.001)]) if n_different >= 1000 else 0.8, 0.9)
    roc_ax.set_ylim(max(0.0, low - 0.05), 1.005)
    roc_ax.plot([max(report.eer, floor)], [1 - report.eer], "o", color="black", label=f"EER {report.eer:.2%}")
    for point, marker in zip(report.tar_at_far, ("s", "D", "^", "v")):
        note = "" if point.resolved else " (0 false accepts)"
        roc_ax.plot([max(point.far, floor)], [point.tar], marker, color="#b40426", ms=7,
                    label=f"TAR {point.tar:.2%} at FAR {point.target:g}{note}")
    roc_ax.set_xlabel(f"false accept rate  (log; 0 drawn at {floor:.0e})")
    roc_ax.set_ylabel("true accept rate")
    roc_ax.grid(True, which="both", alpha=0.3)
    roc_ax.legend(loc="lower right", fontsize=8.5)
    roc_ax.set_title("ROC")

    _histograms(hist_ax, scores, labels, metric)
    hist_ax.axvline(report.threshold, color="black", lw=1.8,
                    label=f"threshold {report.threshold:.3f} ({report.protocol}): accuracy {report.accuracy:.2%}")
    if abs(report.pipeline_threshold - report.threshold) > 1e-9:
        hist_ax.axvline(report.pipeline_threshold, color="#555555", lw=1.4, ls="--",
                        label=f"pipeline threshold {report.pipeline_threshold:g}: "
                              f"accuracy {report.accuracy_at_pipeline_threshold:.2%}")
    hist_ax.set_ylim(top=hist_ax.get_ylim()[1] * 1.4)  # headroom for the legend
    hist_ax.legend(loc="upper center", fontsize=8.5, framealpha=0.9, ncol=2)
    failed = report.failed_pairs
    hist_ax.set_title("scores" + (f"  ({failed} pair(s) without a score, counted wrong)" if failed else ""))

    figure.suptitle(
        f"{report.pipeline} ({report.model}) on {Path(report.pairs_file).name}: "
        f"accuracy {report.accuracy:.2%}, AUC {report.auc:.4f}, EER {report.eer:.2%}",
        fontsize=11,
    )
    return _save(figure, path)


def calibration_figure(
    calibration: "Calibration", scores: Sequence[float], labels: Sequence[bool], path: PathLike, bins: int = 10,
    title: Optional[str] = None,
) -> Path:
    """The fitted mappings over the score histograms, and a reliability diagram."""
    raw = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels, dtype=bool)
    keep = np.isfinite(raw)
    raw, y = raw[keep], y[keep]

    figure = _figure(12, 5.4)
    map_ax, rel_ax = figure.subplots(1, 2, gridspec_kw={"width_ratios": [1.35, 1]})

    _histograms(map_ax, raw, y, calibration.metric)
    curve_ax = map_ax.twinx()
    grid = np.linspace(raw.min(), raw.max(), 400)
    curve_ax.plot(grid, calibration.probabilities(grid), color="black", lw=2,
                  label=f"P(same person), {calibration.method}")
    curve_ax.plot(grid, [calibration.impostor_percentile(v) for v in grid], color="#7570b3", lw=2, ls="--",
                  label="more similar than this share\nof different-people pairs")
    curve_ax.set_ylim(-0.02, 1.02)
    curve_ax.set_ylabel("probability / share")
    if calibration.threshold is not None:
        map_ax.axvline(calibration.threshold, color="#555555", lw=1.2, ls=":")
    lines = map_ax.get_legend_handles_labels()
    more = curve_ax.get_legend_handles_labels()
    map_ax.legend(lines[0] + more[0], lines[1] + more[1], fontsize=8.5, ncol=2, loc="upper center",
                  bbox_to_anchor=(0.5, -0.14))
    map_ax.set_title(f"calibration {calibration.name!r}")

    probs = calibration.probabilities(raw)
    which = np.minimum((probs * bins).astype(int), bins - 1)
    centres, observed, counts = [], [], []
    for b in range(bins):
        inside = which == b
        if inside.any():
            centres.append(probs[inside].mean())
            observed.append(y[inside].mean())
            counts.append(int(inside.sum()))
    rel_ax.plot([0, 1], [0, 1], color="#999999", lw=1, ls="--", label="perfectly calibrated")
    rel_ax.plot(centres, observed, "o-", color="black", label="observed share of same-person pairs")
    for x, obs, n in zip(centres, observed, counts):
        rel_ax.annotate(str(n), (x, obs), textcoords="offset points", xytext=(4, -11), fontsize=7.5, color="#555555")
    ece = expected_calibration_error(probs, y, bins)
    rel_ax.set_xlim(0, 1)
    rel_ax.set_ylim(0, 1)
    rel_ax.set_xlabel("predicted P(same person)  (bin mean; number = pairs in bin)")
    rel_ax.set_ylabel("observed share same")
    rel_ax.set_title(f"reliability: ECE {ece:.4f} on {len(y)} pairs")
    rel_ax.legend(loc="upper center", fontsize=8.5, ncol=1, bbox_to_anchor=(0.5, -0.14))
    rel_ax.grid(True, alpha=0.3)
    if title:
        figure.suptitle(title, fontsize=11)
    return _save(figure, path)

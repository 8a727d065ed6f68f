"""The audit's picture: error rates per population, then each population's score distributions.

Also :func:`percent`, the way an audit writes a rate, in its tables and in its figure.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Union

import numpy as np

from facekit.pictures.plots import DIFFERENT_COLOUR, SAME_COLOUR, _figure, _save
from facekit.scoring.metric import metric_named
from facekit.scoring.similarity import rate_percent

if TYPE_CHECKING:
    from facekit.studies.audit import AuditReport

PathLike = Union[str, os.PathLike]


def audit_figure(report: "AuditReport", path: PathLike, title: Optional[str] = None) -> Path:
    """The audit as a PNG: error rates per population, then each population's score distributions."""
    metric = metric_named(report.metric)

    pops = report.populations
    figure = _figure(12.5, 2.6 + 2.0 * len(pops))
    grid = figure.add_gridspec(len(pops) + 1, 1, height_ratios=[1.25] + [1.0] * len(pops))
    ax = figure.add_subplot(grid[0])
    at = np.arange(len(pops))
    width = 0.38
    for offset, values, colour, label in (
        (-width / 2, [p.fmr for p in pops], DIFFERENT_COLOUR, "false matches (different people judged the same)"),
        (width / 2, [p.fnmr for p in pops], SAME_COLOUR, "false non-matches (one person judged two)"),
    ):
        bars = ax.bar(at + offset, [100 * v if np.isfinite(v) else 0 for v in values], width, color=colour,
                      label=label)
        many = len(pops) > 4
        for bar, v in zip(bars, values):
            ax.annotate(rate_percent(v), (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center", va="bottom",
                        fontsize=7 if many else 9, rotation=90 if many else 0, xytext=(0, 2),
                        textcoords="offset points")
    ax.set_xticks(at, [f"{p.name}\n{p.identities} people\n{p.images} photos" for p in pops],
                  fontsize=8 if len(pops) > 4 else 9)
    ax.set_ylabel("% of pairs")
    top = max([100 * v for p in pops for v in (p.fmr, p.fnmr) if np.isfinite(v)] + [1.0])
    ax.set_ylim(0, top * (1.45 if len(pops) > 4 else 1.25))
    ax.legend(loc="upper left", bbox_to_anchor=(1.005, 1.0), fontsize=8, frameon=False)
    profile = f", profile {report.profile}" if report.profile else ""
    ax.set_title(title or f"{report.pipeline} pipeline{profile}: error rates at its threshold "
                 f"(same person if {metric.rule(report.threshold)})", fontsize=11)
    scored = [p.scores for p in pops if len(p.scores)]
    lo = min(float(np.quantile(s, 0.0005)) for s in scored) if scored else 0.0
    hi = max(float(np.quantile(s, 0.9995)) for s in scored) if scored else 1.0
    bins = np.linspace(lo, hi, 70)
    first = None
    for k, p in enumerate(pops):
        axk = figure.add_subplot(grid[k + 1], sharex=first)
        first = first or axk
        if p.genuine_pairs:
            axk.hist(np.clip(p.scores[p.same], lo, hi), bins=bins, density=True, color=SAME_COLOUR, alpha=0.6,
                     label=f"same person ({p.genuine_pairs:,} pairs)")
        if p.impostor_pairs:
            axk.hist(np.clip(p.scores[~p.same], lo, hi), bins=bins, density=True, color=DIFFERENT_COLOUR, alpha=0.6,
                     label=f"different people ({p.impostor_pairs:,} pairs{', sample' if p.impostor_pairs_sampled else ''})")
        axk.axvline(report.threshold, color="black", lw=1.5,
                    label=f"pipeline threshold {report.threshold:g}: FMR {rate_percent(p.fmr)}, FNMR {rate_percent(p.fnmr)}")
        if p.threshold_at_target is not None:
            axk.axvline(p.threshold_at_target, color="#7570b3", lw=1.5, ls="--",
                        label=f"FMR {rate_percent(p.target_fmr)} here at {p.threshold_at_target:.3f} "
                              f"(FNMR {rate_percent(p.fnmr_at_target)})")
        axk.set_ylabel("density")
        axk.set_yticks([])
        axk.text(0.005, 0.96, p.name, transform=axk.transAxes, va="top", fontsize=10, fontweight="bold")
        axk.legend(loc="upper left", bbox_to_anchor=(1.005, 1.0), fontsize=8, frameon=False)
        if k == len(pops) - 1:
            axk.set_xlabel(metric.axis_label)
        else:
            axk.tick_params(labelbottom=False)
    return _save(figure, path)

"""FACE01's percentage: a score on the scale people read, where 90 % is the threshold.

What a metric's scores mean (a distance or a similarity, the decision rule, the words
for it) lives in :mod:`facekit.scoring.metric`.

The *percentage* shown to people is FACE01's mapping of a cosine similarity,
``round(-23.71 c^2 + 49.98 c + 73.69, 2)``: monotonic on [-1, 1], 90 % at c = 0.4036,
about FACE01's model threshold. facekit puts every score on that scale through the
model's own threshold, so that the percentage can never contradict the verdict:

* cosine: the similarity is mapped piecewise-linearly onto FACE01's axis, [-1, t] onto
  [-1, 0.4036] and [t, 1] onto [0.4036, 1], where t is the threshold. With t = 0.4036
  this is the identity, and the percentage is FACE01's own number.
* euclidean: the distance is mapped linearly, ``c = 1 - (1 - 0.4036) * d / t``, so the
  threshold lands on 0.4036 and a distance of 0 on 1.

Then FACE01's formula applies, and the result is held on the verdict's side of 90 %:
at least 90.00 for "same person", at most 89.99 for "different people" (so rounding
never crosses the line; a distance exactly at a Euclidean threshold is "different",
89.99 %). ">= 90 %" therefore always means "same person by the pipeline's threshold".
It is a presentation of the score, not a probability: a calibrated probability is a
different number (see :mod:`facekit.scoring.calibration`).
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from facekit.scoring.metric import Metric, metric_named

#: the cosine similarity at which FACE01's percentage reaches 90 %
FACE01_COS_AT_90 = 0.4036


def face01_percentage(cos: float) -> float:
    """FACE01's percentage of a cosine similarity (clipped to [-1, 1])."""
    c = float(np.clip(cos, -1.0, 1.0))
    return round(-23.71 * c * c + 49.98 * c + 73.69, 2)


def face01_axis(score: float, metric: "str | Metric", threshold: float) -> float:
    """``score`` as a cosine-like value on FACE01's axis, with ``threshold`` at 0.4036."""
    value = float(score)
    if metric_named(metric).higher_is_more_similar:  # a cosine similarity, in [-1, 1]
        if not -1.0 < threshold <= 1.0:
            raise ValueError(f"a cosine threshold must be in (-1, 1], got {threshold!r}")
        value = min(max(value, -1.0), 1.0)
        if value >= threshold:
            span = 1.0 - threshold
            return 1.0 if span <= 0 else FACE01_COS_AT_90 + (value - threshold) * (1.0 - FACE01_COS_AT_90) / span
        return -1.0 + (value + 1.0) * (FACE01_COS_AT_90 + 1.0) / (threshold + 1.0)
    if threshold <= 0:  # a Euclidean distance, 0 or more
        raise ValueError(f"a Euclidean threshold must be positive, got {threshold!r}")
    return 1.0 - (1.0 - FACE01_COS_AT_90) * max(value, 0.0) / threshold


def percentage(score: float, metric: "str | Metric", threshold: float) -> float:
    """The FACE01-scale percentage of a score in ``metric``: 90 % at ``threshold``, monotonic,
    and never on the other side of 90 % from the verdict (see the module docs)."""
    value = face01_percentage(face01_axis(score, metric, threshold))
    if metric_named(metric).is_same(score, threshold):
        return max(value, 90.0)
    return min(value, 89.99)


def bounded_percent(fraction: float, decimals: int = 1) -> str:
    """A fraction as a percentage that never rounds a fitted estimate to a certain 0 or 100 %."""
    step = 10.0 ** -decimals
    value = fraction * 100
    if value > 100 - step:
        return f">{100 - step:.{decimals}f} %"
    if value < step:
        return f"<{step:.{decimals}f} %"
    return f"{value:.{decimals}f} %"


def rate_percent(value: Optional[float]) -> str:
    """A rate as a percentage: two decimals under 10 %, one above; ``n/a`` when unknown."""
    if value is None or not np.isfinite(value):
        return "n/a"
    return f"{100 * value:.2f} %" if value < 0.1 else f"{100 * value:.1f} %"

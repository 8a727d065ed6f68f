"""Who a face model works for: a pipeline's error rates, population by population.

A face model's threshold is a statement about a population. dlib's 0.6 was set on
LFW-like photos, most of them of people from North America and Europe; among the 47 East
Asian people of LFW it calls 44 % of the pairs of *different* people "the same person".

An audit (:func:`audit`, ``facekit audit``) embeds labelled photos of each population
(:mod:`facekit.studies.populations`) and reports, side by side: the false-match rate
(FMR: pairs of different people judged the same) and false-non-match rate (FNMR: pairs
of one person judged different) at the pipeline's threshold, the threshold that would
give a target FMR in that population, and the score distributions
(:func:`facekit.pictures.audit.audit_figure`). It is a *measurement*, not a fix: it says
for whom the pipeline's answer means what it claims. A fix for one population is a
profile (:mod:`facekit.studies.profiles`).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence, Union

import numpy as np

from facekit.errors import ConfigError
from facekit.pipeline import Pipeline
from facekit.scoring.metric import metric_named
from facekit.scoring.metrics import eer, roc, tar_at_far, threshold_in_metric
from facekit.scoring.similarity import rate_percent
from facekit.studies.evaluation import embed_images
from facekit.studies.populations import (
    DEFAULT_MAX_IMPOSTOR_PAIRS,
    IdentitySet,
    identity_pairs,
    scores_of_pairs,
)

PathLike = Union[str, os.PathLike]

#: the false-match rate at which the audit reports each population's own threshold
DEFAULT_TARGET_FMR = 0.01


@dataclass
class PopulationResult:
    """One population's numbers in an audit."""

    name: str
    identities: int
    images: int
    failed_images: list[tuple[str, str]]
    genuine_pairs: int
    impostor_pairs: int
    impostor_pairs_sampled: bool
    metric: str
    threshold: float  # the pipeline's
    false_matches: int
    false_non_matches: int
    target_fmr: float
    threshold_at_target: Optional[float]  # this population's own threshold for target_fmr
    fmr_at_target: Optional[float]
    fnmr_at_target: Optional[float]
    eer: Optional[float]
    genuine_median: Optional[float]
    impostor_median: Optional[float]
    source: str = ""
    scores: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False)
    same: np.ndarray = field(default_factory=lambda: np.zeros(0, bool), repr=False)

    @property
    def fmr(self) -> float:
        """False-match rate at the pipeline's threshold (NaN without different-person pairs)."""
        return self.false_matches / self.impostor_pairs if self.impostor_pairs else float("nan")

    @property
    def fnmr(self) -> float:
        """False-non-match rate at the pipeline's threshold (NaN without same-person pairs)."""
        return self.false_non_matches / self.genuine_pairs if self.genuine_pairs else float("nan")

    def to_dict(self) -> dict[str, Any]:
        def num(v: Optional[float], digits: int = 6) -> Optional[float]:
            return None if v is None or not np.isfinite(v) else round(float(v), digits)

        return {
            "population": self.name, "source": self.source, "identities": self.identities, "images": self.images,
            "failed_images": [{"image": s, "reason": r} for s, r in self.failed_images],
            "same_person_pairs": self.genuine_pairs, "different_person_pairs": self.impostor_pairs,
            "different_person_pairs_sampled": self.impostor_pairs_sampled,
            "threshold": self.threshold, "false_matches": self.false_matches,
            "false_non_matches": self.false_non_matches, "fmr": num(self.fmr), "fnmr": num(self.fnmr),
            "target_fmr": self.target_fmr, "threshold_at_target_fmr": num(self.threshold_at_target),
            "fmr_at_that_threshold": num(self.fmr_at_target), "fnmr_at_that_threshold": num(self.fnmr_at_target),
            "eer": num(self.eer), "median_same_person_score": num(self.genuine_median),
            "median_different_person_score": num(self.impostor_median),
        }


def audit_embeddings(vectors: Any, identities: Sequence[str], metric: str, threshold: float, *, name: str,
                     target_fmr: float = DEFAULT_TARGET_FMR,
                     max_impostor_pairs: Optional[int] = DEFAULT_MAX_IMPOSTOR_PAIRS,
                     failed_images: Sequence[tuple[str, str]] = (), source: str = "",
                     seed: int = 0) -> PopulationResult:
    """The audit numbers of one population from its descriptors (one row per photo)."""
    x = np.asarray(vectors, dtype=np.float64)
    if len(x) != len(identities):
        raise ValueError(f"{len(x)} vectors but {len(identities)} identity labels")
    i, j, same, sampled = identity_pairs(identities, max_impostor_pairs, seed)
    scores = scores_of_pairs(x, i, j, metric)
    sims = metric_named(metric).as_similarity(scores)
    accepted = metric_named(metric).same_mask(scores, threshold)  # the pipeline's decision
    n_gen, n_imp = int(same.sum()), int((~same).sum())
    own_threshold = fmr_t = fnmr_t = rate = None
    if n_gen and n_imp:
        curve = roc(sims, same)
        point = tar_at_far(curve, target_fmr)
        if point.resolved:
            own_threshold = threshold_in_metric(point.threshold, metric)
            fmr_t, fnmr_t = point.far, 1.0 - point.tar
        rate = eer(curve)[0]
    return PopulationResult(
        name=name, identities=len(set(identities)), images=len(x), failed_images=list(failed_images),
        genuine_pairs=n_gen, impostor_pairs=n_imp, impostor_pairs_sampled=sampled, metric=metric,
        threshold=float(threshold), false_matches=int(accepted[~same].sum()),
        false_non_matches=int((~accepted[same]).sum()), target_fmr=float(target_fmr),
        threshold_at_target=own_threshold, fmr_at_target=fmr_t, fnmr_at_target=fnmr_t, eer=rate,
        genuine_median=float(np.median(scores[same])) if n_gen else None,
        impostor_median=float(np.median(scores[~same])) if n_imp else None,
        source=source, scores=scores, same=same,
    )


@dataclass
class AuditReport:
    """An audit of one pipeline over several populations."""

    pipeline: str
    model: str
    metric: str
    threshold: float
    profile: Optional[str]
    target_fmr: float
    populations: list[PopulationResult]

    def to_dict(self) -> dict[str, Any]:
        return {
            "what": "a measurement of the pipeline's error rates per population (not a fix)",
            "pipeline": self.pipeline, "model": self.model, "metric": self.metric, "threshold": self.threshold,
            "profile": self.profile, "target_fmr": self.target_fmr,
            "populations": [p.to_dict() for p in self.populations],
        }

    def to_json(self, **kwargs: Any) -> str:
        return json.dumps(self.to_dict(), **kwargs)

    def table(self) -> str:
        """The audit as a Markdown table."""
        metric = metric_named(self.metric)
        head = (f"| population | people | photos | same-person pairs | different-person pairs | "
                f"FMR at {self.threshold:g} | FNMR at {self.threshold:g} | threshold for FMR {rate_percent(self.target_fmr)} "
                f"| FNMR there | EER |")
        lines = [head, "|" + "---|" * 10]
        for p in self.populations:
            own = ("n/a (too few pairs)" if p.threshold_at_target is None
                   else f"{metric.score_name} {metric.same_if} {p.threshold_at_target:.3f}")
            lines.append(
                f"| {p.name} | {p.identities} | {p.images} | {p.genuine_pairs:,} | {p.impostor_pairs:,}"
                f"{' (sample)' if p.impostor_pairs_sampled else ''} | {rate_percent(p.fmr)} | {rate_percent(p.fnmr)} | {own} | "
                f"{rate_percent(p.fnmr_at_target)} | {rate_percent(p.eer)} |"
            )
        return "\n".join(lines)

    def summary(self) -> str:
        profile = f", profile {self.profile}" if self.profile else ""
        out = [f"Audit of pipeline {self.pipeline!r} (model {self.model}{profile}): same person if "
               f"{metric_named(self.metric).rule(self.threshold)}", "",
               self.table(), ""]
        for p in self.populations:
            if p.failed_images:
                out.append(f"{p.name}: {len(p.failed_images)} photo(s) without a usable face were left out")
        out.append("FMR: share of pairs of different people judged the same person; FNMR: share of pairs of "
                   "one person judged different people. A measurement of this pipeline on these photos, not a fix.")
        return "\n".join(out)


def audit(pipeline: Union[Pipeline, str, os.PathLike, None], populations: Sequence[IdentitySet], *,
          target_fmr: float = DEFAULT_TARGET_FMR,
          cache: Optional[PathLike] = None, progress: Optional[bool] = None,
          max_impostor_pairs: Optional[int] = DEFAULT_MAX_IMPOSTOR_PAIRS) -> AuditReport:
    """Embed each population's photos with ``pipeline`` and measure its error rates there.

    Photos without a usable face are left out and listed. ``pipeline``: a
    :class:`~facekit.pipeline.Pipeline`, a bundled name or a YAML path.
    """
    built = Pipeline.load(pipeline)
    if not populations:
        raise ConfigError("nothing to audit: name at least one population (a folder of identity folders)")
    names = [p.name for p in populations]
    if len(set(names)) != len(names):
        raise ConfigError(f"population names must differ; got {', '.join(names)} (name them NAME=FOLDER)")
    calibration = built.calibration
    results = []
    for population in populations:
        vectors, failures, _ = embed_images(built, population.images, cache=cache, progress=progress)
        keep = [k for k, path in enumerate(population.images) if vectors.get(path)]
        x = np.stack([vectors[population.images[k]][0] for k in keep]) if keep else np.zeros((0, 1))
        results.append(audit_embeddings(
            x, [population.identities[k] for k in keep], built.embedder.metric, built.threshold,
            name=population.name, target_fmr=target_fmr, max_impostor_pairs=max_impostor_pairs,
            failed_images=sorted(failures.items()), source=population.source,
        ))
    return AuditReport(built.name, built.embedder.model_name, built.embedder.metric, built.threshold,
                       calibration.name if calibration is not None else None, target_fmr, results)

"""Population profiles: a calibration (+ back-end) fitted on one population's labelled photos.

A profile (:func:`fit_population_profile`) is a calibration file
(:mod:`facekit.scoring.calibration`: threshold, probability, impostor percentile) fitted
on one population's pairs (:mod:`facekit.studies.populations`), plus an optional linear
back-end (:mod:`facekit.builtin.adapted`). Everything is chosen on out-of-fold scores of
a cross-validation over *identities* (:func:`cross_validate_profile`), so the threshold
holds for people the profile has never seen. :mod:`facekit.studies.audit` measures what
it changes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Sequence

import numpy as np

from facekit.builtin.adapted import Backend, fit_nap, remove_directions
from facekit.errors import ConfigError
from facekit.scoring.calibration import Calibration, fit_calibration
from facekit.scoring.metric import metric_named
from facekit.studies.populations import identity_pairs, scores_of_pairs


@dataclass
class CrossValidation:
    """Out-of-fold results of a profile's fitting procedure, cross-validated over identities.

    ``scores``/``same``: every within-fold pair's score from a back-end fitted without that
    fold's people. ``fmr``/``fnmr``: each fold judged at the threshold that the *other*
    folds' different-person scores give for ``target_fmr``, pooled over folds and repeats.
    """

    target_fmr: float
    folds: int
    repeats: int
    scores: np.ndarray
    same: np.ndarray
    false_matches: int
    impostor_pairs: int
    false_non_matches: int
    genuine_pairs: int

    @property
    def fmr(self) -> float:
        return self.false_matches / self.impostor_pairs

    @property
    def fnmr(self) -> float:
        return self.false_non_matches / self.genuine_pairs

    def to_dict(self) -> dict[str, Any]:
        return {"method": f"{self.folds}-fold cross-validation over identities, {self.repeats} repeat(s); each fold "
                          "judged at the threshold the other folds' different-person pairs give for the target FMR",
                "target_fmr": self.target_fmr, "fmr": round(self.fmr, 6), "fnmr": round(self.fnmr, 6),
                "false_matches": self.false_matches, "different_person_pairs": self.impostor_pairs,
                "false_non_matches": self.false_non_matches, "same_person_pairs": self.genuine_pairs}


def _backend_scores(train_x: np.ndarray, train_ids: np.ndarray, test_x: np.ndarray, test_ids: np.ndarray,
                    metric: str, dims: int) -> tuple[np.ndarray, np.ndarray]:
    if dims:
        directions = fit_nap(train_x, train_ids, dims)
        test_x = remove_directions(test_x, directions)
    i, j, same, _ = identity_pairs(test_ids, None)
    return scores_of_pairs(test_x, i, j, metric), same


def cross_validate_profile(vectors: Any, identities: Sequence[str], metric: str, *, target_fmr: float,
                           backend_dims: int = 1, folds: int = 5, repeats: int = 1, seed: int = 0) -> CrossValidation:
    """Cross-validate the profile procedure (back-end + threshold at ``target_fmr``) over identities."""
    x = np.asarray(vectors, dtype=np.float64)
    ids = np.asarray(identities)
    people = np.unique(ids)
    if len(people) < 2 * folds:
        raise ConfigError(f"cross-validation over {folds} folds needs at least {2 * folds} people; got {len(people)}")
    all_scores, all_same = [], []
    fm = imp = fnm = gen = 0
    for repeat in range(repeats):
        order = np.random.default_rng(seed + repeat).permutation(people)
        fold_scores, fold_same = [], []
        for f in range(folds):
            test = np.isin(ids, order[f::folds])
            s, same = _backend_scores(x[~test], ids[~test], x[test], ids[test], metric, backend_dims)
            fold_scores.append(s)
            fold_same.append(same)
        for f in range(folds):
            others = np.concatenate([fold_scores[g][~fold_same[g]] for g in range(folds) if g != f])
            threshold = _threshold_at_fmr(others, metric, target_fmr)
            accepted = metric_named(metric).same_mask(fold_scores[f], threshold)
            fm += int(accepted[~fold_same[f]].sum())
            imp += int((~fold_same[f]).sum())
            fnm += int((~accepted[fold_same[f]]).sum())
            gen += int(fold_same[f].sum())
        if repeat == 0:
            all_scores, all_same = fold_scores, fold_same
    return CrossValidation(target_fmr, folds, repeats, np.concatenate(all_scores), np.concatenate(all_same),
                           fm, imp, fnm, gen)


def _threshold_at_fmr(impostor_scores: np.ndarray, metric: str, target_fmr: float) -> float:
    """The raw threshold that accepts at most ``target_fmr`` of these different-person scores.

    It sits at the (k+1)-th most similar of the n scores, k = floor(target * n), so exactly
    k of them pass the pipeline's rule: a distance passes strictly below the threshold; a
    similarity at or above it, so there the threshold is nudged just past that score.
    """
    rule = metric_named(metric)
    sims = np.sort(rule.as_similarity(impostor_scores))[::-1]
    k = min(int(np.floor(target_fmr * len(sims))), len(sims) - 1)
    threshold = float(rule.from_similarity(sims[k]))
    if rule.is_same(threshold, threshold):  # the rule would accept the (k+1)-th score itself
        threshold = float(rule.from_similarity(np.nextafter(sims[k], np.inf)))
    return threshold


def fit_population_profile(vectors: Any, identities: Sequence[str], metric: str, *, name: str,
                           target_fmr: float, backend_dims: int = 1, folds: int = 5, repeats: int = 5,
                           seed: int = 0, input_model: Optional[str] = None, description: str = "",
                           pipeline: Optional[str] = None, population: Optional[dict[str, Any]] = None,
                           fitted_on: Optional[dict[str, Any]] = None) -> tuple[Calibration, CrossValidation]:
    """Fit a population profile: a calibration (+ back-end) from one population's labelled photos.

    ``vectors`` are the descriptors *before* any back-end (one row per photo),
    ``identities`` their people. The back-end (``backend_dims`` nuisance directions; 0 for
    none) is fitted on every photo. Threshold, probability and impostor percentiles are
    fitted on the out-of-fold scores of a cross-validation over identities, so they
    describe people the profile has not seen; the probability is then moved to equal
    odds of same and different (``prior_same`` 0.5), as in LFW-fitted calibrations.

    Returns the :class:`~facekit.scoring.calibration.Calibration` (its ``extra`` holds
    ``backend``, ``population`` and ``cross_validation``) and the cross-validation.
    """
    x = np.asarray(vectors, dtype=np.float64)
    ids = np.asarray(identities)
    cv = cross_validate_profile(x, ids, metric, target_fmr=target_fmr, backend_dims=backend_dims, folds=folds,
                                repeats=repeats, seed=seed)
    calibration = fit_calibration(
        cv.scores, cv.same, metric, name=name, method="logistic", fmr_targets=(target_fmr, 1e-2, 1e-3),
        threshold_rule=f"fmr={target_fmr:g}", description=description, pipeline=pipeline,
        model=None, fitted_on={**(fitted_on or {}), "scores": "out-of-fold (cross-validated over identities)",
                               "people": int(len(np.unique(ids))), "photos": int(len(ids))},
    )
    # three decimals are all a threshold can claim from a few hundred photos, and they read well on cards
    calibration.threshold = round(float(calibration.threshold), 3)
    calibration.move_prior(0.5)
    if backend_dims:
        backend = Backend("nap", fit_nap(x, ids, backend_dims), input_model, name,
                          {"people": int(len(np.unique(ids))), "photos": int(len(ids))})
        calibration.extra["backend"] = backend.to_dict()
        calibration.model = input_model and f"{input_model}+{backend.tag}"
    else:
        calibration.model = input_model
    calibration.extra["population"] = population or {}
    calibration.extra["cross_validation"] = cv.to_dict()
    return calibration, cv

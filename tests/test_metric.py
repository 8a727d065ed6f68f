"""The Metric: what a score means, computed and worded in one place (facekit.scoring.metric)."""

from __future__ import annotations

import json
from importlib import resources

import numpy as np
import pytest

from facekit.errors import ConfigError
from facekit.scoring import similarity
from facekit.scoring.calibration import fit_calibration
from facekit.scoring.metric import COSINE, EUCLIDEAN, METRICS, Metric, metric_named
from facekit.scoring.metrics import threshold_in_metric
from facekit.types import Comparison


# --------------------------------------------------------------------------- names
def test_names_give_their_metric_and_a_metric_gives_itself() -> None:
    assert metric_named("euclidean") is EUCLIDEAN and metric_named("cosine") is COSINE
    assert metric_named(COSINE) is COSINE
    assert set(METRICS) == {"euclidean", "cosine"}
    assert str(EUCLIDEAN) == "euclidean" and str(COSINE) == "cosine"


@pytest.mark.parametrize("name", ["Euclidean", "l2", "", None, 3])
def test_unknown_names_are_a_config_error_that_lists_the_known_ones(name: object) -> None:
    with pytest.raises(ConfigError, match="euclidean, cosine"):
        metric_named(name)  # type: ignore[arg-type]
    with pytest.raises(ValueError):  # a ConfigError is a ValueError, as the percentage raised before
        similarity.percentage(0.5, name, 0.5)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- scores
def test_scores_by_hand() -> None:
    a = np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 0.0], [2.0, 0.0]])
    b = np.array([[3.0, 4.0], [0.0, 5.0], [-3.0, 0.0], [7.0, 0.0]])
    np.testing.assert_allclose(EUCLIDEAN.pairwise(a, b), [5.0, np.sqrt(26.0), 4.0, 5.0])
    # a zero vector has similarity 0 to everything, not NaN
    np.testing.assert_allclose(COSINE.pairwise(a, b), [0.0, 0.0, -1.0, 1.0])
    assert EUCLIDEAN.score([0, 0], [3, 4]) == 5.0
    assert COSINE.score([1, 1], [2, 2]) == pytest.approx(1.0)


def test_prepare_makes_unit_rows_for_cosine_only() -> None:
    rows = np.array([[3.0, 4.0], [0.0, 0.0]])
    unit = COSINE.prepare(rows)
    assert unit.dtype == np.float32
    np.testing.assert_allclose(unit, [[0.6, 0.8], [0.0, 0.0]], rtol=1e-6)
    assert COSINE.prepare(rows, dtype=np.float64).dtype == np.float64
    np.testing.assert_array_equal(EUCLIDEAN.prepare(rows), rows.astype(np.float32))
    np.testing.assert_allclose(COSINE.prepare(np.array([0.0, 2.0])), [0.0, 1.0])  # one vector


# --------------------------------------------------------------------------- decisions and order
def test_the_threshold_itself_is_same_for_cosine_and_different_for_distance() -> None:
    assert not EUCLIDEAN.is_same(0.6, 0.6) and EUCLIDEAN.is_same(0.5999, 0.6)
    assert COSINE.is_same(0.4, 0.4) and not COSINE.is_same(0.3999, 0.4)
    np.testing.assert_array_equal(EUCLIDEAN.same_mask([0.2, 0.6, 0.9, np.nan], 0.6), [True, False, False, False])
    np.testing.assert_array_equal(COSINE.same_mask([0.2, 0.4, 0.9, np.nan], 0.4), [False, True, True, False])
    assert isinstance(COSINE.is_same(np.float32(0.5), 0.4), bool)


@pytest.mark.parametrize("metric", [EUCLIDEAN, COSINE])
def test_similarity_orders_most_alike_first_and_goes_back(metric: Metric) -> None:
    scores = np.array([0.3, 0.9, 0.5])
    best = metric.best(scores)
    assert best == (1 if metric is COSINE else 0)
    assert all(metric.is_same(scores[best], t) or not metric.is_same(s, t) for s in scores for t in (0.4, 0.6))
    assert np.argmax(metric.as_similarity(scores)) == best
    np.testing.assert_array_equal(metric.from_similarity(metric.as_similarity(scores)), scores)
    assert threshold_in_metric(float(metric.as_similarity(0.6)), metric.name) == 0.6


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_the_percentage_never_contradicts_the_decision(metric: str) -> None:
    rng = np.random.default_rng(1)
    m = metric_named(metric)
    scores = m.pairwise(rng.normal(size=(20, 8)), rng.normal(size=(20, 8)))
    threshold = float(np.median(scores))
    assert [similarity.percentage(s, metric, threshold) >= 90.0 for s in scores] == list(m.same_mask(scores, threshold))


def test_face01_percentage_refuses_an_unknown_metric_and_a_bad_threshold() -> None:
    with pytest.raises(ValueError, match="unknown metric"):
        similarity.percentage(0.5, "manhattan", 0.5)
    with pytest.raises(ValueError, match="Euclidean threshold"):
        similarity.percentage(0.5, "euclidean", 0.0)
    with pytest.raises(ValueError, match="cosine threshold"):
        similarity.percentage(0.5, "cosine", 1.5)


# --------------------------------------------------------------------------- words
def test_words() -> None:
    assert EUCLIDEAN.rule(0.6) == "distance < 0.6"
    assert COSINE.rule(0.4) == "cosine similarity >= 0.4"
    assert EUCLIDEAN.rule_in_words(0.6) == "same person if below 0.6; lower = more alike"
    assert COSINE.rule_in_words(0.4) == "same person if at least 0.4; higher = more alike"
    assert EUCLIDEAN.axis_label == "Euclidean distance  (lower = more similar)"
    assert COSINE.axis_label == "cosine similarity  (higher = more similar)"


def test_json_score_kinds_stay_as_files_have_them() -> None:
    # a comparison's JSON says one word; calibration files and evaluation reports say more
    assert (EUCLIDEAN.kind, COSINE.kind) == ("distance", "similarity")
    assert (EUCLIDEAN.score_kind, COSINE.score_kind) == ("distance (lower = more similar)", "similarity")
    shipped = json.loads(resources.files("facekit").joinpath("data", "calibration-lfw-dev.json").read_text("utf-8"))
    assert shipped["score_kind"] == metric_named(shipped["metric"]).score_kind
    distances = np.r_[np.linspace(0.2, 0.6, 20), np.linspace(0.5, 1.0, 20)]
    labels = np.r_[np.ones(20, bool), np.zeros(20, bool)]
    for metric, scores in (("euclidean", distances), ("cosine", 1.0 - distances)):
        fitted = fit_calibration(scores, labels, metric, name="t")
        assert fitted.to_dict()["score_kind"] == metric_named(metric).score_kind
        assert fitted.to_dict()["metric"] == metric


@pytest.mark.parametrize("metric, score, threshold", [("euclidean", 0.35, 0.6), ("cosine", 0.52, 0.4)])
def test_the_terminal_and_the_card_word_the_rule_alike(metric: str, score: float, threshold: float) -> None:
    from facekit.pictures.cards import score_lines
    from facekit.types import Explanation

    m = metric_named(metric)
    comparison = Comparison(score=score, metric=metric, threshold=threshold, same=True,  # type: ignore[arg-type]
                            percentage=95.0, model="m")
    rule = m.rule_in_words(threshold)
    table = str(comparison)
    assert f"{m.score_name}" in table and f"{score:.4f}  ({rule})" in table
    assert score_lines(Explanation(comparison, (None, None), "test"))[0] == f"{m.score_name} {score:.3f}  ({rule})"  # type: ignore[arg-type]
    assert comparison.to_dict()["score_kind"] == m.kind


def test_matrix_and_as_distance_agree_with_pairwise() -> None:
    rng = np.random.default_rng(3)
    vectors = rng.normal(size=(6, 5))
    for metric in (EUCLIDEAN, COSINE):
        full = metric.matrix(vectors)
        i, j = np.triu_indices(6, 1)
        np.testing.assert_allclose(full[i, j], metric.pairwise(vectors[i], vectors[j]), atol=1e-9)
    assert EUCLIDEAN.as_distance(0.4) == 0.4 and COSINE.as_distance(0.75) == 0.25

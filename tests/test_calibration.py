"""Calibrated scores: fitting, the JSON file, lookup by name, and the shipped `lfw-dev` fit."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from facekit.scoring.calibration import (
    Calibration,
    brier_score,
    expected_calibration_error,
    fit_calibration,
    fit_isotonic,
    fit_logistic,
    load_calibration,
)
from facekit.errors import ConfigError


def _synthetic(n: int = 2000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Distances like dlib's: same-person pairs around 0.4, different around 0.8."""
    rng = np.random.default_rng(seed)
    same = rng.normal(0.4, 0.08, n)
    different = rng.normal(0.8, 0.08, n)
    return np.r_[same, different], np.r_[np.ones(n, bool), np.zeros(n, bool)]


# --------------------------------------------------------------------------- measures
def test_ece_by_hand() -> None:
    # bins of width 0.1: |0.05 - 0| + |0.15 - 1| + |0.95 - 1|, one pair each, over 3 pairs
    assert expected_calibration_error([0.05, 0.15, 0.95], [0, 1, 1]) == pytest.approx((0.05 + 0.85 + 0.05) / 3)
    # a perfectly calibrated bin: 4 pairs at 0.25, one of them the same person
    assert expected_calibration_error([0.25] * 4, [1, 0, 0, 0]) == pytest.approx(0.0)
    assert brier_score([1.0, 0.0, 0.5], [1, 0, 1]) == pytest.approx(0.25 / 3)


def test_logistic_fit_recovers_known_parameters() -> None:
    rng = np.random.default_rng(1)
    x = rng.uniform(-3, 3, 40_000)
    y = rng.uniform(size=x.size) < 1 / (1 + np.exp(-(2.0 * x - 0.5)))
    coef, intercept = fit_logistic(x, y)
    assert coef == pytest.approx(2.0, abs=0.08)
    assert intercept == pytest.approx(-0.5, abs=0.06)


def test_logistic_fit_stays_finite_on_separable_data() -> None:
    coef, intercept = fit_logistic([0.1, 0.2, 0.8, 0.9], [True, True, False, False])
    assert np.isfinite(coef) and np.isfinite(intercept) and coef < 0


def test_isotonic_pool_adjacent_violators_by_hand() -> None:
    xs, ps = fit_isotonic([1, 2, 3, 4], [0, 1, 0, 1])  # 1 then 0 violates: pooled to 0.5
    np.testing.assert_allclose(xs, [1, 2, 3, 4])
    np.testing.assert_allclose(ps, [0, 0.5, 0.5, 1])
    xs, ps = fit_isotonic([1, 2, 3, 4, 5, 6], [0, 0, 0, 1, 1, 1])  # flat stretches keep only their ends
    np.testing.assert_allclose(xs, [1, 3, 4, 6])
    np.testing.assert_allclose(ps, [0, 0, 1, 1])


# --------------------------------------------------------------------------- the mapping
@pytest.mark.parametrize("method", ["logistic", "isotonic"])
def test_probability_is_monotonic_and_in_range(method: str) -> None:
    scores, labels = _synthetic()
    calibration = fit_calibration(scores, labels, "euclidean", name="t", method=method)
    grid = np.linspace(-0.5, 2.0, 500)  # well beyond the data on both sides
    probs = calibration.probabilities(grid)
    assert np.all((probs >= 0) & (probs <= 1))
    assert np.all(np.diff(probs) <= 1e-12), "a larger distance must never be more likely the same person"
    assert probs[0] > 0.99 and probs[-1] < 0.01
    assert calibration.probability(0.6) == pytest.approx(0.5, abs=0.15)  # half-way between the two clusters
    assert calibration.ece["fit"] < 0.03
    percentiles = [calibration.impostor_percentile(v) for v in grid]
    assert np.all(np.diff(percentiles) <= 1e-12)
    assert min(percentiles) == 0.0 and max(percentiles) == pytest.approx(2000 / 2001)


def test_cosine_scores_grow_the_other_way() -> None:
    distances, labels = _synthetic()
    calibration = fit_calibration(1.0 - distances, labels, "cosine", name="t")
    assert calibration.probability(0.6) > 0.99 > 0.01 > calibration.probability(0.2)
    assert calibration.impostor_percentile(0.6) > 0.99 > 0.01 > calibration.impostor_percentile(0.0)
    assert calibration.threshold_at_fmr(0.01) > calibration.threshold_at_fmr(0.1)


def test_impostor_percentile_by_hand() -> None:
    # 1001 different-person distances spread evenly over [0.5, 1.5]
    different = np.linspace(0.5, 1.5, 1001)
    scores = np.r_[np.full(10, 0.2), different]
    labels = np.r_[np.ones(10, bool), np.zeros(1001, bool)]
    calibration = fit_calibration(scores, labels, "euclidean", name="t")
    assert calibration.impostor_percentile(1.25) == pytest.approx(0.25, abs=1e-3)  # 25 % are farther apart
    assert calibration.impostor_percentile(0.6) == pytest.approx(0.9, abs=1e-3)
    assert calibration.false_match_rate(0.6) == pytest.approx(0.1, abs=1e-3)
    assert calibration.threshold_at_fmr(0.01) == pytest.approx(0.51, abs=1e-3)
    point = calibration.operating_points[0]
    assert point["fmr"] == 0.01 and point["threshold"] == pytest.approx(0.51, abs=1e-3)
    assert point["tmr"] == 1.0 and point["resolved"]


def test_prior_moves_the_probability() -> None:
    scores, labels = _synthetic()
    calibration = fit_calibration(scores, labels, "euclidean", name="t")
    assert calibration.prior_same == pytest.approx(0.5)
    p = calibration.probability(0.6)
    assert calibration.probability(0.6, prior=0.5) == pytest.approx(p)
    rare = calibration.probability(0.6, prior=0.01)  # 1 in 100 pairs the same person
    odds = rare / (1 - rare)
    assert odds == pytest.approx(p / (1 - p) / 99, rel=1e-6)


@pytest.mark.parametrize("rule, check", [
    ("best-accuracy", lambda t: 0.55 < t < 0.65),
    ("fmr=0.001", lambda t: t < 0.6),
])
def test_threshold_rules(rule: str, check) -> None:  # type: ignore[no-untyped-def]
    scores, labels = _synthetic()
    calibration = fit_calibration(scores, labels, "euclidean", name="t", threshold_rule=rule)
    assert calibration.threshold_rule == rule and check(calibration.threshold)
    assert fit_calibration(scores, labels, "euclidean", name="t").threshold is None
    with pytest.raises(ConfigError, match="unknown threshold rule"):
        fit_calibration(scores, labels, "euclidean", name="t", threshold_rule="fmr=2")


# --------------------------------------------------------------------------- files and lookup
@pytest.mark.parametrize("method", ["logistic", "isotonic"])
def test_json_round_trip(tmp_path: Path, method: str) -> None:
    scores, labels = _synthetic(500)
    calibration = fit_calibration(scores, labels, "euclidean", name="roundtrip", method=method,
                                  fitted_on={"data": "synthetic"})
    path = calibration.save(tmp_path / "c.json")
    data = json.loads(path.read_text())  # plain JSON, no pickle anywhere
    assert data["format"] == "facekit.calibration" and data["version"] == 1
    assert data["metric"] == "euclidean" and data["fitted_on"]["data"] == "synthetic"
    assert data["fitted_on"]["same_pairs"] == 500 and data["impostor_quantiles"]["count"] == 500
    assert path.stat().st_size < 40_000
    again = load_calibration(path, metric="euclidean")
    grid = np.linspace(0.0, 1.5, 200)
    np.testing.assert_allclose(again.probabilities(grid), calibration.probabilities(grid), atol=1e-5)
    assert again.impostor_percentile(0.7) == pytest.approx(calibration.impostor_percentile(0.7), abs=1e-5)
    assert again.source == str(path)


def test_unknown_keys_survive_and_newer_versions_are_refused(tmp_path: Path) -> None:
    scores, labels = _synthetic(200)
    data = fit_calibration(scores, labels, "euclidean", name="t").to_dict()
    data["population"] = {"label": "example"}  # what a later profile might add
    loaded = Calibration.from_dict(data)
    assert loaded.to_dict()["population"] == {"label": "example"}
    with pytest.raises(ConfigError, match="newer"):
        Calibration.from_dict({**data, "version": 99})
    with pytest.raises(ConfigError, match="not a facekit calibration"):
        Calibration.from_dict({"name": "x"})
    broken = dict(data)
    del broken["probability"]
    with pytest.raises(ConfigError, match="probability"):
        Calibration.from_dict(broken, where="broken.json")


def test_lookup_by_registered_name(tmp_path: Path, facekit_plugin) -> None:  # type: ignore[no-untyped-def]
    import facekit

    scores, labels = _synthetic(200)
    path = fit_calibration(scores, labels, "euclidean", name="test-profile").save(tmp_path / "p.json")

    class ProfilePlugin:
        @facekit.hookimpl
        def register_calibrations(self, register):  # type: ignore[no-untyped-def]
            register("test-profile", str(path))

    facekit_plugin(ProfilePlugin(), name="test-profiles")
    assert load_calibration("test-profile").name == "test-profile"
    assert facekit.get_registry().calibrations["test-profile"] == (str(path), "test-profiles")
    with pytest.raises(ConfigError, match="fitted on euclidean scores.*uses cosine"):
        load_calibration("test-profile", metric="cosine")
    with pytest.raises(ConfigError, match="did you mean 'test-profile'"):
        load_calibration("test-profil")


def test_a_calibration_of_another_model_is_refused(tmp_path: Path) -> None:
    """The East Asian profile's threshold (0.42) means nothing for the plain descriptor."""
    from facekit.cli import main

    assert load_calibration("eastasian", model="dlib_face_recognition_resnet_model_v1+flip+nap1:eastasian")
    with pytest.raises(ConfigError, match=r"fitted on scores of the model 'dlib_face_recognition_resnet_model_v1\+flip"
                                          r".*embedder is 'dlib_face_recognition_resnet_model_v1'.*bundled pipeline 'eastasian' does"):
        load_calibration("eastasian", model="dlib_face_recognition_resnet_model_v1")
    scores, labels = _synthetic(100)
    unnamed = fit_calibration(scores, labels, "euclidean", name="no-model").save(tmp_path / "any.json")
    assert load_calibration(unnamed, model="whatever").name == "no-model"  # nothing recorded: nothing to check
    yaml_file = tmp_path / "mixed.yaml"
    yaml_file.write_text("name: mixed\ndetector: whole_image\naligner: {name: dlib.chip5}\n"
                         "embedder: torch.dlib_resnet\nscoring: {calibration: eastasian}\n")
    result = CliRunner().invoke(main, ["check", str(yaml_file)])
    assert result.exit_code == 2 and "fitted on scores of the model" in result.output


def test_calibrate_command_from_an_evaluation_report(tmp_path: Path) -> None:
    from facekit.cli import main

    scores, labels = _synthetic(300)
    report = {"metric": "euclidean", "pipeline": "default", "model": "m", "pairs_file": "train.txt",
              "pair_scores": [{"same": bool(y), "score": float(s)} for s, y in zip(scores, labels)]}
    report["pair_scores"][0]["score"] = None  # a failed pair is left out of the fit
    (tmp_path / "eval.json").write_text(json.dumps(report))
    out = tmp_path / "mine.json"
    result = CliRunner().invoke(main, ["calibrate", "--scores", str(tmp_path / "eval.json"), "-o", str(out),
                                       "--method", "isotonic", "--threshold-rule", "best-accuracy"])
    assert result.exit_code == 0, result.output
    assert "ECE" in result.output and "P(same)" in result.output
    calibration = load_calibration(out)
    assert calibration.name == "mine" and calibration.method == "isotonic"
    assert calibration.fitted_on["pairs"] == 599 and calibration.fitted_on["unscored_pairs_left_out"] == 1
    assert out.with_suffix(".png").read_bytes()[:4] == b"\x89PNG"
    bad = CliRunner().invoke(main, ["calibrate", "-o", str(out)])
    assert bad.exit_code == 2 and "either --pairs" in bad.output


# --------------------------------------------------------------------------- the shipped fit
def test_shipped_lfw_dev_calibration() -> None:
    calibration = load_calibration("lfw-dev", metric="euclidean")
    assert calibration.fitted_on["pairs_file"] == "pairsDevTrain.txt"
    assert calibration.fitted_on["pairs"] >= 2190  # 2,200 pairs less any without a score
    assert calibration.threshold is None  # decisions keep the model's 0.6
    assert calibration.probability(0.35) > 0.95 and calibration.probability(0.8) < 0.05
    assert calibration.probability(0.45) > calibration.probability(0.55) > calibration.probability(0.65)
    assert calibration.impostor_percentile(0.45) > 0.99 and calibration.impostor_percentile(0.9) < 0.5
    assert calibration.ece["held_out"]["on"] == "pairsDevTest.txt"
    assert calibration.ece["held_out"]["ece"] < 0.05


def test_shipped_calibration_matches_the_default_pipeline() -> None:
    from facekit.studies.evaluation import embedding_digest
    from facekit.pipeline import Pipeline

    fitted = load_calibration("lfw-dev").fitted_on["pipeline_embedding_sha256"]
    assert fitted == embedding_digest(Pipeline.load("default")), (
        "the default pipeline's detector/aligner/embedder changed since src/facekit/data/calibration-lfw-dev.json "
        "was fitted; refit it with `python scripts/fit_default_calibration.py --cache /tmp/facekit-cache`"
    )


def test_default_pipeline_compare_reports_calibrated_numbers(faces_dir: Path) -> None:
    from facekit.pipeline import Pipeline

    images = faces_dir / "lfw-dev" / "images"
    pipeline = Pipeline.load("default")
    assert pipeline.calibration.name == "lfw-dev"
    same = pipeline.compare(images / "Abdullah_Gul" / "Abdullah_Gul_0013.jpg",
                            images / "Abdullah_Gul" / "Abdullah_Gul_0014.jpg")
    different = pipeline.compare(images / "Abdullah_Gul" / "Abdullah_Gul_0013.jpg",
                                 images / "Abdullatif_Sener" / "Abdullatif_Sener_0001.jpg")
    assert same.profile == "lfw-dev" and same.threshold == pytest.approx(0.6)
    assert same.same and not different.same
    assert same.probability > 0.9 > 0.1 > different.probability
    assert same.impostor_percentile > 0.99 > different.impostor_percentile
    assert "P(same person)" in str(same) and "of pairs of different people" in str(same)
    assert same.to_dict()["probability"] == pytest.approx(same.probability)

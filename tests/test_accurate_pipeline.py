"""The bundled ``accurate`` pipeline: 68-point chips + flip averaging, with its own calibration (issue 20)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("facekit_dlib")

from facekit.scoring.calibration import load_calibration  # noqa: E402
from facekit.studies.evaluation import embedding_digest  # noqa: E402
from facekit.pipeline import Pipeline  # noqa: E402

LFW = "lfw-dev/images"


@pytest.fixture(scope="module")
def accurate() -> Pipeline:
    from facekit.plugins import reset_plugin_manager

    reset_plugin_manager()
    return Pipeline.load("accurate")


def test_accurate_stages_reuse_the_default_embedder(accurate: Pipeline) -> None:
    default = Pipeline.load("default")
    assert accurate.aligner.name == "dlib.chip68" and accurate.aligner.chip_size == 150
    assert accurate.embedder.name == "adapted" and accurate.embedder.params.flip is True
    assert accurate.embedder.params.profile is None
    # the same network as the default, so the accurate pipeline follows the default's embedder
    assert accurate.embedder.inner.name == default.embedder.name
    assert accurate.embedder.model_name == default.embedder.model_name + "+flip"
    for stage in ("detector", "fallback_detector", "multi_face"):
        assert accurate.to_dict()[stage] == default.to_dict()[stage]
    assert Pipeline.from_yaml(accurate.to_yaml()).to_dict() == accurate.to_dict()


def test_accurate_calibration_fits_this_pipeline(accurate: Pipeline) -> None:
    calibration = load_calibration("accurate", metric="euclidean", model=accurate.embedder.model_name)
    assert calibration.fitted_on["pipeline_embedding_sha256"] == embedding_digest(accurate), (
        "the accurate pipeline changed since src/facekit/data/calibration-accurate.json was fitted; refit it with "
        "`python scripts/fit_default_calibration.py --pipeline accurate --cache /tmp/facekit-cache`"
    )
    assert calibration.fitted_on["pairs_file"] == "pairsDevTrain.txt" and calibration.fitted_on["pairs"] >= 2190
    held_out = calibration.ece["held_out"]
    assert held_out["on"] == "pairsDevTest.txt" and held_out["ece"] <= 0.015  # the bar
    assert calibration.probability(0.35) > 0.95 and calibration.probability(0.8) < 0.05


def test_accurate_compares_real_photos(accurate: Pipeline, faces_dir: Path) -> None:
    images = faces_dir / LFW
    a = images / "Abdullah_Gul" / "Abdullah_Gul_0013.jpg"
    same = accurate.compare(a, images / "Abdullah_Gul" / "Abdullah_Gul_0014.jpg")
    different = accurate.compare(a, images / "Abdullatif_Sener" / "Abdullatif_Sener_0001.jpg")
    assert same.same and not different.same and same.score < different.score
    assert same.profile == "accurate" and same.pipeline == "accurate"
    assert same.probability > 0.9 > 0.1 > different.probability
    assert same.confident and different.confident  # good photos: no quality flag
    # its own chips: 68 landmarks per face, mirrored and plain averaged
    face = same.faces[0]
    assert face is not None and face.face.landmarks.scheme == "dlib68" and face.chip.shape == (150, 150, 3)


def test_accurate_flags_a_turned_face_from_its_68_landmarks(accurate: Pipeline, faces_dir: Path) -> None:
    images = faces_dir / LFW
    result = accurate.compare(images / "Abdullah_Gul" / "Abdullah_Gul_0013.jpg",
                              images / "Christine_Todd_Whitman" / "Christine_Todd_Whitman_0002.jpg")
    assert result.quality[0].flags == () and "profile" in result.quality[1].flags
    assert not result.confident and "uncertain" in str(result)

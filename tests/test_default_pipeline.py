"""The bundled default pipeline, end to end on real photos (needs facekit-dlib and facekit-torch)."""

from __future__ import annotations

import csv
import itertools
import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("facekit_dlib")
pytest.importorskip("facekit_torch")

from facekit import Pipeline  # noqa: E402

EXAMPLES = "face_recognition_examples/examples"
LADDER = ["obama-240p.jpg", "obama-480p.jpg", "obama-720p.jpg", "obama-1080p.jpg"]
#: two photos each of four people of deepface's identities.csv
DEEPFACE = {
    "id01": ["img1.jpg", "img2.jpg"],
    "id04": ["img13.jpg", "img14.jpg"],
    "id07": ["img20.jpg", "img21.jpg"],
    "id09": ["img24.jpg", "img25.jpg"],
}


@pytest.fixture(scope="module")
def pipeline() -> Pipeline:
    from facekit.plugins import reset_plugin_manager

    reset_plugin_manager()  # a fresh registry with every installed plugin, whatever ran before
    return Pipeline.load().warm_up()


@pytest.fixture(scope="module")
def examples(faces_dir: Path) -> Path:
    return faces_dir / EXAMPLES


def _distance(pipeline: Pipeline, a: object, b: object) -> float:
    return pipeline.compare(a, b).score


def test_default_stages(pipeline: Pipeline) -> None:
    assert pipeline.name == "default"
    assert pipeline.detector.name == "dlib.hog"
    fallback = pipeline.components["fallback_detector"]
    assert fallback.name == "dlib.cnn", "a real detector: a face-less photo must be an error, not a score"
    assert (fallback.params.upsample, fallback.params.max_side) == (0, 640)
    assert pipeline.aligner.name == "dlib.chip5" and pipeline.aligner.chip_size == 150
    assert pipeline.embedder.name == "dlib.resnet_onnx"  # no torch needed to compare or embed (issue 16)
    assert pipeline.embedder.metric == "euclidean" and pipeline.embedder.threshold == pytest.approx(0.6)
    assert 0.5 <= pipeline.threshold <= 0.7  # 0.6, or the bundled calibration's choice near it
    params = pipeline.detector.params
    assert (params.upsample, params.retry_upsample, params.max_side) == (0, 1, 1024)  # chosen by benchmark


def test_obama_closer_to_obama_than_to_biden(pipeline: Pipeline, examples: Path) -> None:
    same = pipeline.compare(examples / "obama.jpg", examples / "obama2.jpg")
    different = pipeline.compare(examples / "obama.jpg", examples / "biden.jpg")
    assert same.score < different.score
    assert same.same and same.verdict == "same person" and same.percentage > 90
    assert not different.same and different.verdict == "different people" and different.percentage < 90
    labels = (examples.parent / "LABELS.tsv").read_text()
    assert "examples/obama2.jpg\tBarack Obama" in labels and "examples/biden.jpg\tJoe Biden" in labels


def test_deepface_identities(pipeline: Pipeline, faces_dir: Path) -> None:
    root = faces_dir / "deepface_dataset"
    with open(root / "identities.csv", newline="") as handle:
        groups = {row["file"]: row["identity_group"] for row in csv.DictReader(handle)}
    files = [name for names in DEEPFACE.values() for name in names]
    assert all(groups[name] == group for group, names in DEEPFACE.items() for name in names)
    batch = pipeline.embed([root / name for name in files])
    assert len(batch) == len(files) and not batch.failures
    vectors = np.stack([e.vector for e in batch])
    dist = np.linalg.norm(vectors[:, None] - vectors[None], axis=-1)
    same = np.array([[groups[a] == groups[b] for b in files] for a in files])
    off_diagonal = ~np.eye(len(files), dtype=bool)
    # every same-person pair is closer than every different-person pair, on either side of 0.6
    assert dist[same & off_diagonal].max() < dist[~same].min()
    assert dist[same & off_diagonal].max() < 0.6 < dist[~same].min()


def test_two_person_photo(pipeline: Pipeline, examples: Path) -> None:
    everyone = Pipeline.from_dict({**pipeline.to_dict(), "multi_face": "all"})
    faces = everyone.detect(examples / "two_people.jpg")
    assert len(faces) == 2
    embeddings = everyone.embed(examples / "two_people.jpg")
    assert len(embeddings) == 2
    left, right = sorted(embeddings, key=lambda e: e.face.face.center[0])  # LABELS.tsv: Obama left, Biden right
    obama, biden = pipeline.embed([examples / "obama.jpg", examples / "biden.jpg"])
    assert np.linalg.norm(left.vector - obama.vector) < 0.6 < np.linalg.norm(left.vector - biden.vector)
    assert np.linalg.norm(right.vector - biden.vector) < 0.6 < np.linalg.norm(right.vector - obama.vector)
    assert len(pipeline.embed(examples / "two_people.jpg")) == 1  # default policy: the largest face


def test_resolution_ladder_is_consistent(pipeline: Pipeline, examples: Path) -> None:
    batch = pipeline.embed([examples / name for name in LADDER])
    assert len(batch) == len(LADDER)
    for a, b in itertools.combinations(batch, 2):
        assert np.linalg.norm(a.vector - b.vector) < 0.2, (a.source, b.source)  # well below 0.6
    assert all(e.face.face.detector == "dlib.hog" for e in batch)


def test_the_cnn_fallback_finds_a_crop_too_tight_for_hog(pipeline: Pipeline, examples: Path) -> None:
    chip = pipeline.align(examples / "obama.jpg")[0]
    tight = chip.chip[35:115, 35:115]  # eyes to mouth only: too tight for HOG's window
    assert pipeline.detector.detect(tight) == []
    again = pipeline.align(tight)[0]
    assert again.face.detector == "dlib.cnn"
    assert _distance(pipeline, chip, again) < 0.6


def test_cli_compare(examples: Path) -> None:
    from click.testing import CliRunner

    from facekit.cli import main

    runner = CliRunner()
    a, b = str(examples / "obama.jpg"), str(examples / "obama2.jpg")
    result = runner.invoke(main, ["compare", a, b])
    assert result.exit_code == 0, result.output
    assert "same person" in result.output and "distance" in result.output and "%" in result.output

    result = runner.invoke(main, ["compare", a, str(examples / "biden.jpg"), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["verdict"] == "different people" and data["same"] is False
    assert data["score_kind"] == "distance" and data["score"] > 0.6
    assert 0 < data["percentage"] < 90
    assert data["pipeline"] == "default" and data["model"] == "dlib_face_recognition_resnet_model_v1"

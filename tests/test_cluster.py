"""facekit.collections.cluster: the linkage against a brute-force one, and ``facekit cluster`` on real photos."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from facekit.collections import cluster as fk_cluster

EXAMPLES = "face_recognition_examples/examples"


def brute_force_labels(vectors: np.ndarray, threshold: float, linkage: str) -> list[tuple[int, ...]]:
    """Agglomerative clustering the slow, obvious way: join the closest two groups until none is close."""
    d = np.linalg.norm(vectors[:, None] - vectors[None], axis=2)
    groups = [[i] for i in range(len(vectors))]
    pick = {"average": np.mean, "complete": np.max, "single": np.min}[linkage]
    while len(groups) > 1:
        best = min(((pick(d[np.ix_(a, b)]), i, j) for i, a in enumerate(groups) for j, b in enumerate(groups) if i < j))
        if best[0] >= threshold:
            break
        _, i, j = best
        groups[i] = groups[i] + groups.pop(j)
    return sorted(tuple(sorted(g)) for g in groups)


def partition(labels: np.ndarray) -> list[tuple[int, ...]]:
    return sorted(tuple(np.flatnonzero(labels == k).tolist()) for k in np.unique(labels))


@pytest.mark.parametrize("linkage", ["average", "complete", "single"])
def test_linkage_equals_brute_force(linkage: str) -> None:
    rng = np.random.default_rng(7)
    for _ in range(4):
        centres = rng.normal(size=(6, 5)) * 2
        vectors = centres[rng.integers(0, 6, size=40)] + rng.normal(scale=0.6, size=(40, 5))
        for threshold in (1.0, 2.0, 3.5):
            ours = fk_cluster.cluster_vectors(vectors, "euclidean", threshold, linkage)
            assert partition(ours) == brute_force_labels(vectors, threshold, linkage)


def test_cosine_threshold_is_a_similarity() -> None:
    vectors = np.array([[1.0, 0.0], [0.95, 0.05], [0.0, 1.0], [0.05, 0.95]])
    labels = fk_cluster.cluster_vectors(vectors, "cosine", 0.9)
    assert labels[0] == labels[1] != labels[2] == labels[3]
    assert len(set(fk_cluster.cluster_vectors(vectors, "cosine", 0.9999))) == 4


def test_labels_put_the_largest_cluster_first() -> None:
    vectors = np.array([[0.0], [10.0], [10.1], [10.2], [0.1]])
    assert fk_cluster.cluster_vectors(vectors, "euclidean", 0.5).tolist() == [1, 0, 0, 0, 1]


def test_too_many_faces_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fk_cluster, "MAX_FACES", 3)
    with pytest.raises(fk_cluster.ConfigError, match="smaller groups"):
        fk_cluster.cluster_vectors(np.zeros((4, 2)), "euclidean", 0.5)


# ------------------------------------------------------------------- real photos
pytest.importorskip("facekit_dlib")


def test_default_threshold_follows_the_calibration() -> None:
    from facekit import Pipeline
    from facekit.plugins import reset_plugin_manager

    reset_plugin_manager()
    pipeline = Pipeline.load()
    value, rule = fk_cluster.default_threshold(pipeline)
    assert "99%" in rule
    assert pipeline.calibration.probability(value) == pytest.approx(fk_cluster.CLUSTER_P_SAME, abs=0.002)
    assert value < pipeline.threshold  # stricter than verification: one wrong join merges two groups
    uncalibrated = Pipeline.from_dict({**pipeline.to_dict(), "scoring": {"calibration": None}})
    value, rule = fk_cluster.default_threshold(uncalibrated)
    assert value == uncalibrated.threshold and "no calibration" in rule


def test_cluster_command_groups_photos_by_person(faces_dir: Path, tmp_path: Path) -> None:
    from facekit.cli import main
    from facekit.plugins import reset_plugin_manager

    reset_plugin_manager()
    examples = faces_dir / EXAMPLES
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    inputs = [examples / "obama.jpg", examples / "obama2.jpg", examples / "biden.jpg",
              examples / "knn_examples/train/biden/biden2.jpg", examples / "two_people.jpg",
              examples / "knn_examples/train/rose_leslie/img1.jpg", photos, tmp_path / "missing.jpg"]
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["cluster", *map(str, inputs), "-o", str(out), "--links", "--json",
                                       "--no-progress"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert {Path(f["source"]).name for f in report["failures"]} == {"broken.jpg", "missing.jpg"}
    assert "skipped" in result.stderr and "broken.jpg" in result.stderr

    rows = list(csv.DictReader(io.StringIO((out / "clusters.csv").read_text())))
    cluster_of = {(Path(r["source"]).name, int(r["face"])): int(r["cluster"]) for r in rows}
    assert len(rows) == 7  # two faces in two_people.jpg
    obama = {cluster_of[("obama.jpg", 0)], cluster_of[("obama2.jpg", 0)]}
    biden = {cluster_of[("biden.jpg", 0)], cluster_of[("biden2.jpg", 0)]}
    assert len(obama) == 1 and len(biden) == 1 and obama != biden
    # the group photo's two faces go to the two people's clusters (Obama left, Biden right)
    left, right = sorted((r for r in rows if r["source"].endswith("two_people.jpg")), key=lambda r: float(r["x0"]))
    assert {int(left["cluster"])} == obama and {int(right["cluster"])} == biden
    assert cluster_of[("img1.jpg", 0)] not in obama | biden
    assert report["threshold"] == pytest.approx(fk_cluster.default_threshold(_pipeline())[0])

    sheets = sorted((out / "sheets").glob("*.png"))
    assert len(sheets) == 2  # Obama's and Biden's; Rose Leslie alone gets none
    from facekit.image import load_image

    sheet = load_image(sheets[0])
    assert sheet.shape[0] >= fk_cluster.THUMB and sheet.shape[1] >= 3 * fk_cluster.THUMB
    links = out / "links"
    linked = {p.name for p in (links / fk_cluster.cluster_name(next(iter(obama)))).iterdir()}
    assert linked == {"obama.jpg", "obama2.jpg", "two_people.jpg"}
    assert (links / "unclustered" / "img1.jpg").resolve() == (examples / "knn_examples/train/rose_leslie/img1.jpg").resolve()


def _pipeline():  # type: ignore[no-untyped-def]
    from facekit import Pipeline

    return Pipeline.load()


def test_a_rerun_into_the_same_folder_leaves_nothing_stale(faces_dir: Path, tmp_path: Path) -> None:
    from facekit.cli import main

    examples = faces_dir / EXAMPLES
    out = tmp_path / "out"
    first = [examples / "obama.jpg", examples / "obama2.jpg", examples / "biden.jpg",
             examples / "knn_examples/train/biden/biden2.jpg"]
    for photos in (first, first[:2]):
        result = CliRunner().invoke(main, ["cluster", *map(str, photos), "-o", str(out), "--links", "--no-progress"])
        assert result.exit_code == 0, result.output
    assert [p.name for p in (out / "sheets").iterdir()] == ["cluster_000.png"]
    assert sorted(p.name for p in (out / "links").iterdir()) == ["cluster_000"]
    assert sorted(p.name for p in (out / "links" / "cluster_000").iterdir()) == ["obama.jpg", "obama2.jpg"]
    assert (examples / "biden.jpg").is_file()  # links go, photos stay


def test_cluster_takes_paths_and_says_so_for_decoded_images() -> None:
    """Results, contact sheets and links name photos by path: a decoded array is refused clearly."""
    refused = r"cluster\(\) takes paths of photos; item 1 is a ndarray.*cluster_vectors"
    with pytest.raises(fk_cluster.ConfigError, match=refused):
        fk_cluster.cluster(["a.jpg", np.zeros((8, 8, 3), np.uint8)])

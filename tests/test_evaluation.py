"""Pair files, verification metrics and the `facekit evaluate` command.

The metric tests use small score sets whose answers were worked out by hand (the
working is in the comments); one test runs the real default pipeline on 20 LFW pairs.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from facekit.errors import ConfigError
from facekit.scoring.metrics import (
    accuracy_at,
    auc,
    best_threshold,
    eer,
    kfold_accuracy,
    roc,
    stratified_folds,
    tar_at_far,
)
from facekit.studies.evaluation import summarize
from facekit.studies.pairs import Pair, PairFile, read_pairs

# Six pairs, most similar first: same, diff, same, diff, diff, diff (2 same, 4 different).
SIMS = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4])
SAME = np.array([True, False, True, False, False, False])


# --------------------------------------------------------------------------- metrics
def test_roc_points_by_hand() -> None:
    curve = roc(SIMS, SAME)
    np.testing.assert_allclose(curve.far, [0, 0, 0.25, 0.25, 0.5, 0.75, 1])
    np.testing.assert_allclose(curve.tar, [0, 0.5, 0.5, 1, 1, 1, 1])
    assert curve.thresholds[0] == np.inf
    np.testing.assert_allclose(curve.thresholds[1:], SIMS)


def test_roc_groups_tied_scores() -> None:
    curve = roc([0.5, 0.5, 0.2], [True, False, False])
    np.testing.assert_allclose(curve.far, [0, 0.5, 1])
    np.testing.assert_allclose(curve.tar, [0, 1, 1])


def test_auc_by_hand() -> None:
    # same 0.9 beats all 4 different pairs, same 0.7 beats 3 of them: 7 of 8
    assert auc(roc(SIMS, SAME)) == pytest.approx(7 / 8)
    # a tie counts half
    assert auc(roc([0.5, 0.5], [True, False])) == pytest.approx(0.5)


def test_eer_interpolates_between_operating_points() -> None:
    # (FAR, FRR) goes (0.25, 0.5) -> (0.25, 0): the line FAR = FRR is crossed at 0.25
    rate, threshold = eer(roc(SIMS, SAME))
    assert rate == pytest.approx(0.25)
    assert threshold in SIMS


def test_eer_on_a_corner() -> None:
    # same, diff, same, diff: points (0,0) (0,.5) (.5,.5) (.5,1) (1,1); FAR = FRR = 0.5 at (.5,.5)
    rate, threshold = eer(roc([0.9, 0.8, 0.7, 0.6], [True, False, True, False]))
    assert rate == pytest.approx(0.5)
    assert threshold == pytest.approx(0.8)


def test_eer_of_separable_scores_is_zero() -> None:
    assert eer(roc([0.9, 0.8, 0.2, 0.1], [True, True, False, False]))[0] == 0.0


def test_tar_at_far_by_hand() -> None:
    curve = roc(SIMS, SAME)
    point = tar_at_far(curve, 0.25)  # accepting down to 0.7 lets in one of 4 different pairs
    assert (point.tar, point.far, point.threshold, point.false_accepts) == (1.0, 0.25, 0.7, 1)
    point = tar_at_far(curve, 0.1)  # no false accept allowed: only the 0.9 pair
    assert (point.tar, point.far, point.threshold) == (0.5, 0.0, 0.9)
    assert not point.resolved  # 0.1 * 4 different pairs < 1: cannot measure FAR 0.1
    assert tar_at_far(curve, 0.25).resolved


def test_best_threshold_by_hand() -> None:
    # correct decisions by cut: none 4/6, >=.9 5/6, >=.8 4/6, >=.7 5/6, >=.6 4/6 ...
    # two cuts tie at 5/6 (after 0.9 and after 0.7); the middle (second) one is taken: (0.7+0.6)/2
    threshold, accuracy = best_threshold(SIMS, SAME)
    assert threshold == pytest.approx(0.65)
    assert accuracy == pytest.approx(5 / 6)
    assert accuracy_at(SIMS, SAME, threshold) == pytest.approx(5 / 6)


def test_best_threshold_at_the_ends() -> None:
    # every pair the same person: accept all, below the lowest score
    threshold, accuracy = best_threshold([0.9, 0.8, 0.3], [True, True, False])
    assert 0.3 < threshold < 0.8 and accuracy == 1.0


def test_kfold_accuracy_by_hand() -> None:
    sims = np.array([0.9, 0.6, 0.5, 0.2, 0.8, 0.4, 0.7, 0.3])
    same = np.array([True, True, False, False, True, True, False, False])
    folds = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    # fold 0 tested at fold 1's best threshold: cuts after .8 and after .4 tie at 3/4 -> (0.4+0.3)/2 = 0.35,
    #   then .9 ok, .6 ok, .5 (different) accepted: wrong, .2 ok -> 3/4
    # fold 1 tested at fold 0's best threshold: (0.6+0.5)/2 = 0.55 -> .8 ok, .4 wrong, .7 wrong, .3 ok -> 2/4
    result = kfold_accuracy(sims, same, folds)
    np.testing.assert_allclose(result.thresholds, [0.35, 0.55])
    np.testing.assert_allclose(result.accuracies, [0.75, 0.5])
    assert result.mean == pytest.approx(0.625) and result.std == pytest.approx(0.125)

    # without a score, fold 0's 0.6 pair is wrong, and fold 1's threshold is chosen without it:
    # .9 | .5 .2 -> (0.9+0.5)/2 = 0.7; fold 1 at 0.7: .8 ok, .4 wrong, .7 (different) accepted, .3 ok -> 2/4
    scored = np.ones(8, dtype=bool)
    scored[1] = False
    result = kfold_accuracy(sims, same, folds, scored)
    np.testing.assert_allclose(result.thresholds, [0.35, 0.7])
    np.testing.assert_allclose(result.accuracies, [0.5, 0.5])


def test_stratified_folds_are_contiguous_blocks_per_class() -> None:
    labels = np.array([True] * 20 + [False] * 20)
    folds = stratified_folds(labels, 10)
    assert list(folds[:20]) == [i // 2 for i in range(20)]
    assert list(folds[20:]) == [i // 2 for i in range(20)]


def test_metrics_refuse_one_class() -> None:
    with pytest.raises(ValueError, match="same-person and one different-person"):
        roc([0.1, 0.2], [True, True])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 8), st.booleans()), min_size=2, max_size=40))
def test_auc_and_best_threshold_match_brute_force(rows: list[tuple[int, bool]]) -> None:
    sims = np.array([r[0] / 8 for r in rows])
    same = np.array([r[1] for r in rows])
    if same.all() or not same.any():
        return
    genuine, impostor = sims[same], sims[~same]
    wins = (genuine[:, None] > impostor[None, :]).sum() + 0.5 * (genuine[:, None] == impostor[None, :]).sum()
    assert auc(roc(sims, same)) == pytest.approx(wins / (len(genuine) * len(impostor)))
    candidates = np.r_[sims - 1e-3, sims.max() + 1]
    brute = max(np.mean((sims >= t) == same) for t in candidates)
    threshold, accuracy = best_threshold(sims, same)
    assert accuracy == pytest.approx(brute)
    assert accuracy_at(sims, same, threshold) == pytest.approx(brute)
    rate, _ = eer(roc(sims, same))
    assert 0.0 <= rate <= 1.0
    assert (rate == 0.0) == (genuine.min() > impostor.max())


# --------------------------------------------------------------------------- distances
def _pair_file(labels: np.ndarray, folds: int = 1) -> PairFile:
    pairs = [Pair(f"a{i}.jpg", f"b{i}.jpg", bool(same)) for i, same in enumerate(labels)]
    return PairFile("synthetic.txt", ".", pairs, folds)


def test_euclidean_distances_give_the_same_figures_as_similarities() -> None:
    labels = np.tile(SAME, 10)  # 20 same, 40 different: enough for 10 folds
    sims = np.tile(SIMS, 10) + np.repeat(np.arange(10), 6) * 1e-3
    as_cosine = summarize(_pair_file(labels), sims, "cosine", pipeline_threshold=0.45)
    as_distance = summarize(_pair_file(labels), 1.0 - sims, "euclidean", pipeline_threshold=0.55)
    assert as_distance.auc == pytest.approx(as_cosine.auc)
    assert as_distance.eer == pytest.approx(as_cosine.eer)
    assert as_distance.accuracy == pytest.approx(as_cosine.accuracy)
    assert [p.tar for p in as_distance.tar_at_far] == [p.tar for p in as_cosine.tar_at_far]
    # thresholds come back as distances
    assert as_distance.threshold == pytest.approx(1.0 - as_cosine.threshold)
    assert as_distance.best_threshold == pytest.approx(1.0 - as_cosine.best_threshold)
    # the pipeline's own thresholds: distance < 0.55 accepts the same pairs as cosine >= 0.45
    assert as_distance.accuracy_at_pipeline_threshold == pytest.approx(as_cosine.accuracy_at_pipeline_threshold)


def test_summarize_counts_unscored_pairs_as_wrong() -> None:
    labels = np.array([True] * 10 + [False] * 10)
    distances = np.r_[np.linspace(0.2, 0.4, 10), np.linspace(0.8, 1.0, 10)]  # perfectly separable
    distances[0] = np.nan  # a same-person pair whose image failed
    distances[15] = np.nan  # and a different-person one
    report = summarize(_pair_file(labels), distances, "euclidean", pipeline_threshold=0.6)
    assert report.failed_pairs == 2
    assert report.accuracy == pytest.approx(18 / 20)
    assert report.accuracy_at_pipeline_threshold == pytest.approx(18 / 20)
    assert report.auc == 1.0 and report.eer == 0.0  # on the 18 scored pairs
    data = report.to_dict()
    assert data["pairs"]["failed"] == 2 and "wrong" in data["pairs"]["failed_counted_as"]
    assert data["pair_scores"][0]["score"] is None


def test_train_test_protocol_uses_the_train_threshold() -> None:
    test_labels = np.array([True, True, False, False])
    train_labels = np.array([True, False])
    report = summarize(
        _pair_file(test_labels), np.array([0.1, 0.5, 0.45, 0.9]), "euclidean", pipeline_threshold=0.6,
        train=_pair_file(train_labels), train_scores=np.array([0.2, 0.4]),
    )
    assert report.protocol == "train/test"
    assert report.threshold == pytest.approx(0.3)  # half-way between the train pairs
    assert report.accuracy == pytest.approx(3 / 4)  # 0.5 (same) is rejected at 0.3


# --------------------------------------------------------------------------- pair files
def test_read_single_set_file(tmp_path: Path) -> None:
    path = tmp_path / "pairs.txt"
    path.write_text("2\nAl_Gore\t1\t2\nBo_Li 3 4\nAl_Gore 1 Bo_Li 3\nCy_Ng\t2\tDa_Vu\t10\n")
    parsed = read_pairs(path, tmp_path / "imgs")
    assert parsed.folds == 1
    assert [p.same for p in parsed.pairs] == [True, True, False, False]
    assert parsed.pairs[0].a == str(tmp_path / "imgs" / "Al_Gore" / "Al_Gore_0001.jpg")
    assert parsed.pairs[3].b == str(tmp_path / "imgs" / "Da_Vu" / "Da_Vu_0010.jpg")
    assert parsed.pairs[3].line == 5
    assert len(parsed.images) == 6  # Al_Gore_0001 and Bo_Li_0003 are used twice
    assert [p.same for p in read_pairs(path, tmp_path, limit=1).pairs] == [True, False]


def test_spread_picks_pairs_evenly_over_the_file(tmp_path: Path) -> None:
    path = tmp_path / "pairs.txt"
    names = [f"P_{k}" for k in range(9)]
    lines = [f"{n} 1 2" for n in names] + [f"{n} 1 {m} 1" for n, m in zip(names, names[1:] + names[:1])]
    path.write_text("9\n" + "\n".join(lines) + "\n")
    parsed = read_pairs(path, tmp_path)
    assert [Path(p.a).parent.name for p in parsed.spread(3)] == ["P_0", "P_4", "P_8"]  # first, middle, last
    assert all(p.same for p in parsed.spread(3)) and not any(p.same for p in parsed.spread(3, same=False))
    assert len(parsed.spread(100)) == 9 and parsed.spread(0) == []


def test_read_ten_fold_style_file(tmp_path: Path) -> None:
    path = tmp_path / "pairs.txt"
    path.write_text("2 1\nA 1 2\nA 1 B 1\nC 1 2\nC 1 D 2\n")
    parsed = read_pairs(path, tmp_path)
    assert parsed.folds == 2
    assert [(p.same, p.fold) for p in parsed.pairs] == [(True, 0), (False, 0), (True, 1), (False, 1)]


def test_images_folder_defaults_to_images_beside_the_file(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    path = tmp_path / "pairs.txt"
    path.write_text("1\nA 1 2\nA 1 B 1\n")
    assert read_pairs(path).images_dir == str(tmp_path / "images")


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "empty"),
        ("abc\n", "expected a header"),
        ("2\nA 1 2\nA 1 B 1\n", "4 lines"),
        ("1\nA 1 B 2\nA 1 B 1\n", "pairs.txt:2: expected `Name i j`"),
        ("1\nA 1 2\nA 1 B\n", "pairs.txt:3: expected `Name1 i Name2 j`"),
        ("1\nA one 2\nA 1 B 1\n", "pairs.txt:2:"),
    ],
)
def test_bad_pair_files_say_where(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "pairs.txt"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        read_pairs(path, tmp_path)


# --------------------------------------------------------------------------- real photos
def _first_pairs(faces_dir: Path, path: Path, count: int, last_different: str = "") -> Path:
    """A pair file with the first ``count`` same and different pairs of pairsDevTest."""
    lines = (faces_dir / "lfw-dev" / "pairsDevTest.txt").read_text().splitlines()
    half = int(lines[0])
    same, different = lines[1 : 1 + count], lines[1 + half : 1 + half + count]
    if last_different:
        different[-1] = last_different
    path.write_text("\n".join([str(count)] + same + different) + "\n")
    return path


def test_evaluate_real_photos(faces_dir: Path, tmp_path: Path) -> None:
    from facekit.cli import main

    images = faces_dir / "lfw-dev" / "images"
    # 10 same + 10 different LFW pairs; the last different pair names a photo that does not exist
    pairs = _first_pairs(faces_dir, tmp_path / "pairs.txt", 10, last_different="Nobody_Here\t1\tAbdullah_Gul\t13")
    out = tmp_path / "report.json"
    cache = tmp_path / "cache"
    runner = CliRunner()
    args = ["evaluate", "--pairs", str(pairs), "--images", str(images), "--cache", str(cache),
            "-o", str(out), "--no-progress"]
    result = runner.invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "accuracy" in result.output and "failed: " in result.output
    report = json.loads(out.read_text())
    assert report["metric"] == "euclidean" and report["protocol"] == "10-fold"
    assert report["pairs"] == {**report["pairs"], "total": 20, "same": 10, "different": 10, "failed": 1}
    assert [f["source"] for f in report["failed_images"]] == [str(images / "Nobody_Here" / "Nobody_Here_0001.jpg")]
    # the failed pair counts as wrong, so 19/20 is the ceiling; dlib's model gets the rest right
    assert 0.85 <= report["accuracy"] <= 0.95
    assert report["auc"] > 0.97
    assert 0.45 < report["threshold"] < 0.8
    assert report["timing"]["from_cache"] == 0 and report["timing"]["seconds_per_computed_image"] > 0
    assert report["calibration"]["name"] == "lfw-dev" and 0 <= report["calibration"]["ece"] < 0.3
    scores = [p["score"] for p in report["pair_scores"]]
    assert scores[-1] is None and all(s is not None for s in scores[:-1])
    assert np.mean(scores[:10]) < 0.6 < np.mean(scores[10:19])  # same-person pairs are closer
    png = out.with_suffix(".png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000

    # a rerun reads every embedding from the cache, and a train/test run chooses its threshold elsewhere
    train = _first_pairs(faces_dir, tmp_path / "train.txt", 5)
    result = runner.invoke(main, args + ["--train-pairs", str(train), "--no-plot"])
    assert result.exit_code == 0, result.output
    again = json.loads(out.read_text())
    # every image but the missing one comes from the cache
    assert again["timing"]["images"] == report["timing"]["images"]
    assert again["timing"]["from_cache"] == report["timing"]["images"] - 1
    assert again["protocol"] == "train/test"
    assert again["pair_scores"][:19] == report["pair_scores"][:19]

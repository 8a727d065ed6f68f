"""The ``fast`` pipeline's front-end: BlazeFace boxes placed where dlib's HOG detector puts
them, so that dlib's 5-point landmarks and chips match the default pipeline's. Checked on
pairsDevTest photos (the box mapping was fitted on pairsDevTrain)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from facekit import Pipeline
from facekit.studies.pairs import read_pairs

pytest.importorskip("facekit_mediapipe")


@pytest.fixture(scope="module")
def photos(faces_dir: Path) -> list[str]:
    test = read_pairs(faces_dir / "lfw-dev" / "pairsDevTest.txt")
    return test.images[::97][:14]


def test_fast_chips_match_the_default_chips(photos: list[str]) -> None:
    default, fast = Pipeline.load("default"), Pipeline.load("fast")
    assert fast.detector.name == "mediapipe.blazeface" and fast.aligner.name == default.aligner.name
    shifts, distances = [], []
    for path in photos:
        ours, theirs = fast.align(path)[0], default.align(path)[0]
        assert ours.face.detector == "mediapipe.blazeface", f"{path}: BlazeFace found no face"
        if np.linalg.norm(np.subtract(ours.face.center, theirs.face.center)) > 0.2 * theirs.face.width:
            continue  # another face of a group photo chosen as the largest: not a chip to compare
        eyes = float(np.linalg.norm(theirs.face.landmarks.points[0] - theirs.face.landmarks.points[2]))
        shifts.append(float(np.abs(ours.face.landmarks.points - theirs.face.landmarks.points).max()) / eyes)
        vectors = fast.embedder.embed(np.stack([ours.chip, theirs.chip]))
        distances.append(float(np.linalg.norm(vectors[0] - vectors[1])))
    assert len(shifts) >= len(photos) - 2, "both detectors choose the same face in most photos"
    # on 598 pairsDevTest faces: median shift 1.7 % of the eye distance, descriptor distance 0.04
    assert np.median(shifts) < 0.04, shifts
    assert np.median(distances) < 0.1 and max(distances) < 0.3, distances


def test_mapped_box_differs_from_blazefaces_own(photos: list[str]) -> None:
    from facekit.plugins import get_registry

    cls = get_registry().get("detector", "mediapipe.blazeface")
    own, mapped = cls({"model": "short"}), cls({"model": "short", "box": "dlib_hog"})
    pixels = Pipeline.load("fast").read(photos[0])
    a, b = own.detect(pixels)[0], mapped.detect(pixels)[0]
    assert np.allclose(a.landmarks.points, b.landmarks.points), "only the box moves"
    width, height = b.box[2] - b.box[0], b.box[3] - b.box[1]
    assert abs(width - height) < 1e-6, "HOG's boxes are square"
    assert a.box != b.box

"""Fit ``DLIB_HOG_BOX`` of facekit_mediapipe.blazeface: HOG's box from BlazeFace's keypoints.

dlib's 5-point shape predictor starts from the box it is given, so chips cut after a
BlazeFace detection match those cut after a HOG detection only if the box is where HOG
puts it. This script runs both detectors on LFW's pairsDevTrain images (the fitting
split; pairsDevTest is left for the accuracy check), expresses each HOG box in the frame
of the BlazeFace keypoints (origin: midpoint of the eyes; unit: the distance from there
to the mouth centre) and prints the medians. It then checks the fit on pairsDevTest
images: how far the shape predictor's landmarks and the descriptors move when the box
comes from BlazeFace instead of HOG.

Usage::

    python benchmarks/fit_blazeface_box.py --limit 600
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
FACES = Path(os.environ.get("FACEKIT_FACES_DIR", REPO.parent / "shared" / "faces"))


def pair_images(pairs_file: Path) -> list[str]:
    from facekit.studies.pairs import read_pairs

    return read_pairs(pairs_file).images


def detections(files: list[str], pipeline: Any, hog: Any, blaze: Any) -> list[tuple[np.ndarray, Any, Any]]:
    """(pixels, largest HOG face, largest BlazeFace face) where both found one."""
    out = []
    for path in files:
        pixels = pipeline.read(path)
        by_hog, by_blaze = hog.detect(pixels), blaze.detect(pixels)
        if by_hog and by_blaze and by_blaze[0].landmarks is not None:
            out.append((pixels, max(by_hog, key=lambda f: f.area), max(by_blaze, key=lambda f: f.area)))
    return out


def keypoint_frame(points: np.ndarray) -> tuple[np.ndarray, float]:
    eyes = (points[0] + points[1]) / 2.0
    return eyes, float(np.linalg.norm(points[3] - eyes))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lfw", type=Path, default=FACES / "lfw-dev")
    parser.add_argument("--limit", type=int, default=600, help="images of each split to use")
    args = parser.parse_args(argv)

    from facekit import Pipeline
    from facekit.plugins import get_registry
    from facekit.types import Face

    registry = get_registry()
    pipeline = Pipeline.load("default")
    hog = registry.get("detector", "dlib.hog")({"upsample": 0, "retry_upsample": 1})
    blaze = registry.get("detector", "mediapipe.blazeface")({"model": "short"})
    fit = detections(pair_images(args.lfw / "pairsDevTrain.txt")[: args.limit], pipeline, hog, blaze)
    rows = []
    for _, by_hog, by_blaze in fit:
        eyes, unit = keypoint_frame(by_blaze.landmarks.points)
        x0, y0, x1, y1 = by_hog.box
        rows.append((((x0 + x1) / 2 - eyes[0]) / unit, ((y0 + y1) / 2 - eyes[1]) / unit, (x1 - x0) / unit))
    table = np.array(rows)
    medians = np.median(table, axis=0)
    print(f"fitted on {len(fit)} pairsDevTrain faces: DLIB_HOG_BOX = "
          f"({medians[0]:.4f}, {medians[1]:.4f}, {medians[2]:.4f})  (spread: {np.round(table.std(axis=0), 3)})")

    from facekit_mediapipe import blazeface

    blazeface.DLIB_HOG_BOX = tuple(float(m) for m in medians)
    check = detections(pair_images(args.lfw / "pairsDevTest.txt")[: args.limit], pipeline, hog, blaze)
    aligner, embedder = pipeline.aligner, pipeline.embedder
    moved, distances = [], []
    for pixels, by_hog, by_blaze in check:
        mapped = Face(blazeface.dlib_hog_box(by_blaze.landmarks.points))
        a, b = aligner.align_many(pixels, [by_hog])[0], aligner.align_many(pixels, [mapped])[0]
        marks_a, marks_b = a.face.landmarks.points, b.face.landmarks.points
        eye_distance = float(np.linalg.norm(marks_a[0] - marks_a[2]))
        moved.append(float(np.abs(marks_a - marks_b).max()) / eye_distance)
        vectors = embedder.embed(np.stack([a.chip, b.chip]))
        distances.append(float(np.linalg.norm(vectors[0] - vectors[1])))
    moved_a, dist_a = np.array(moved), np.array(distances)
    print(f"checked on {len(check)} pairsDevTest faces: landmark shift / eye distance median {np.median(moved_a):.4f}, "
          f"p95 {np.percentile(moved_a, 95):.4f}; descriptor distance HOG box vs mapped box median "
          f"{np.median(dist_a):.4f}, p95 {np.percentile(dist_a, 95):.4f} (same-person threshold 0.6)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

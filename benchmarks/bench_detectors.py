"""Face detectors side by side: MediaPipe BlazeFace against dlib's HOG detector.

For each detector, on the same LFW development-view images (250x250, one centred face
each, ``--limit`` of them, spread evenly over the sorted file list so every run uses the
same ones), reports:

* ms/image: wall time of ``detect()`` alone (images are decoded beforehand; model loading
  is done before timing and reported separately), median and mean;
* recall: fraction of images with at least one face found;
* centred recall: fraction where a found face's box contains the image centre (LFW's
  faces are centred there, so this does not count bystanders' faces);
* faces per image, a hint of false positives (LFW photos have one main face, sometimes
  a bystander).

Optionally (``--photos``) the same on the large photos of face_recognition_examples,
whose LABELS.tsv says how many faces each holds: there recall is the fraction of images
where the detector finds at least as many faces as labelled.

Usage::

    python benchmarks/bench_detectors.py --json out/detectors.json --markdown out/detectors.md
    python benchmarks/bench_detectors.py --limit 100 --detectors mediapipe-full,hog1

Runs in one process on whatever cores it is given; run it alone on a small machine.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Optional

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_FACES = Path(os.environ.get("FACEKIT_FACES_DIR", REPO.parent / "shared" / "faces"))

#: detector label -> registered component and parameters
DETECTORS: dict[str, tuple[str, dict[str, Any]]] = {
    "mediapipe-full": ("mediapipe.blazeface", {"model": "full"}),
    "mediapipe-short": ("mediapipe.blazeface", {"model": "short"}),
    "hog1": ("dlib.hog", {"upsample": 1}),
    "hog0": ("dlib.hog", {"upsample": 0}),
}
DEFAULT_DETECTORS = "mediapipe-full,mediapipe-short,hog1,hog0"


def lfw_sample(faces: Path, limit: int) -> list[Path]:
    files = sorted((faces / "lfw-dev" / "images").glob("*/*.jpg"))
    if not files:
        sys.exit(f"no LFW images under {faces / 'lfw-dev' / 'images'}; set FACEKIT_FACES_DIR")
    if limit >= len(files):
        return files
    picks = np.linspace(0, len(files) - 1, limit).round().astype(int)
    return [files[i] for i in picks]


def labelled_photos(faces: Path) -> list[tuple[Path, int]]:
    root = faces / "face_recognition_examples"
    with open(root / "LABELS.tsv", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    return [(root / r["path"], int(r["faces_expected"].lstrip(">="))) for r in rows]


def build(label: str) -> Any:
    from facekit.plugins import get_registry

    name, params = DETECTORS[label]
    registry = get_registry()
    if name not in registry.components["detector"]:
        raise SystemExit(f"detector {name!r} ({label}) is not installed; see `facekit plugins`")
    return registry.get("detector", name)(params)


def measure(detector: Any, images: list[np.ndarray], expected: Optional[list[int]] = None) -> dict[str, Any]:
    times, counts, centred = [], [], []
    for image in images:
        start = time.perf_counter()
        faces = detector.detect(image)
        times.append((time.perf_counter() - start) * 1000.0)
        counts.append(len(faces))
        cy, cx = image.shape[0] / 2, image.shape[1] / 2
        centred.append(any(f.box[0] <= cx <= f.box[2] and f.box[1] <= cy <= f.box[3] for f in faces))
    out: dict[str, Any] = {
        "images": len(images),
        "ms_per_image_median": round(statistics.median(times), 2),
        "ms_per_image_mean": round(statistics.fmean(times), 2),
        "recall": round(float(np.mean([c >= 1 for c in counts])), 4),
        "faces_per_image": round(float(np.mean(counts)), 3),
    }
    if expected is None:
        out["centred_recall"] = round(float(np.mean(centred)), 4)
    else:
        out["recall_all_labelled"] = round(float(np.mean([c >= e for c, e in zip(counts, expected)])), 4)
        out["exact_count"] = round(float(np.mean([c == e for c, e in zip(counts, expected)])), 4)
    return out


def markdown(report: dict[str, Any]) -> str:
    lines = [
        f"LFW dev view, {report['lfw']['images']} images (250x250), {report['machine']}",
        "",
        "| detector | component | ms/image (median) | ms/image (mean) | recall (>=1 face) | centred recall | faces/image | load s |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for label, row in report["lfw"]["detectors"].items():
        lines.append(
            f"| {label} | {row['component']} | {row['ms_per_image_median']:.1f} | {row['ms_per_image_mean']:.1f} | "
            f"{row['recall']:.3f} | {row['centred_recall']:.3f} | {row['faces_per_image']:.2f} | {row['load_s']:.2f} |"
        )
    if "photos" in report:
        lines += [
            "",
            f"face_recognition_examples, {report['photos']['images']} photos (240p..2333x1434, 1-2+ faces)",
            "",
            "| detector | ms/image (median) | ms/image (mean) | all labelled faces found | exact count |",
            "|---|---:|---:|---:|---:|",
        ]
        for label, row in report["photos"]["detectors"].items():
            lines.append(
                f"| {label} | {row['ms_per_image_median']:.1f} | {row['ms_per_image_mean']:.1f} | "
                f"{row['recall_all_labelled']:.3f} | {row['exact_count']:.3f} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--faces", type=Path, default=DEFAULT_FACES, help="the shared photos folder")
    parser.add_argument("--limit", type=int, default=300, help="LFW images to use (spread evenly)")
    parser.add_argument("--detectors", default=DEFAULT_DETECTORS, help=f"comma-separated, from {', '.join(DETECTORS)}")
    parser.add_argument("--photos", action="store_true", help="also run on face_recognition_examples")
    parser.add_argument("--json", type=Path, help="write the report as JSON here")
    parser.add_argument("--markdown", type=Path, help="write the markdown table here")
    args = parser.parse_args(argv)

    from facekit.image import load_image
    from facekit.io import atomic_write_text

    labels = [d.strip() for d in args.detectors.split(",") if d.strip()]
    unknown = [d for d in labels if d not in DETECTORS]
    if unknown:
        parser.error(f"unknown detector(s) {unknown}; choose from {', '.join(DETECTORS)}")
    files = lfw_sample(args.faces, args.limit)
    images = [load_image(f) for f in files]
    photos = labelled_photos(args.faces) if args.photos else []
    photo_images = [load_image(p) for p, _ in photos]

    report: dict[str, Any] = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
        "lfw": {"images": len(images), "detectors": {}},
    }
    if photos:
        report["photos"] = {"images": len(photos), "detectors": {}}
    for label in labels:
        detector = build(label)
        start = time.perf_counter()
        detector.warm_up()
        detector.detect(images[0])  # first call builds graphs / caches
        load_s = time.perf_counter() - start
        row = {"component": f"{detector.name} {detector.params.model_dump(exclude_none=True)}", "load_s": round(load_s, 3)}
        row.update(measure(detector, images))
        report["lfw"]["detectors"][label] = row
        print(f"{label}: {row['ms_per_image_median']:.1f} ms/image, recall {row['recall']:.3f}", file=sys.stderr)
        if photos:
            report["photos"]["detectors"][label] = measure(detector, photo_images, [e for _, e in photos])
    table = markdown(report)
    print(table)
    if args.json:
        atomic_write_text(args.json, json.dumps(report, indent=2))
    if args.markdown:
        atomic_write_text(args.markdown, table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

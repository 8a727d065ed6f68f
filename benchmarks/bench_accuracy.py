"""Accuracy from the pipeline: test-time choices with the same dlib ResNet weights (issue 20).

On LFW's development view (all 3,200 pairs of pairsDevTrain.txt + pairsDevTest.txt,
10 stratified folds), with dlib's face ResNet run by ONNX Runtime as in the default
pipeline, this measures what each test-time choice does to accuracy, TAR at FAR 1e-2 and
1e-3, EER and the cost per image:

* alignment: dlib's 5- vs 68-point chips, padding 0.2 / 0.25 / 0.3, a chip cut at 300 px
  and shrunk to 150 (chip size);
* horizontal flip and small random jitters (dlib's ``jitter_image``, as face_recognition's
  ``num_jitters``);
* several chips of one face combined by their descriptors' mean or their distances' mean;
* the face-quality signal of :mod:`facekit.quality` (size, blur, yaw): how often it flags a
  pair and how the flagged pairs fare.

CPU-frugal: the default pipeline's detector and both shape predictors run once per image
and are cached in ``<out>/landmarks.npz``; every chip variant is cut from the cached
landmarks and its descriptors are cached in ``<out>/descriptors.npz`` (a rerun, or a run
with a larger ``--limit``, computes only what is missing). Run it niced::

    nice -n 10 .venv/bin/python benchmarks/bench_accuracy.py [--limit 100] [--out /tmp/facekit-bench-accuracy]

Writes ``results.json``, ``table.rst`` and ``accuracy_vs_cost.png`` to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = Path("/tmp/facekit-bench-accuracy")
JITTERS = 4

#: chip recipes: name -> (aligner, chip size cut, padding); every chip is fed to the net at 150 px
RECIPES: dict[str, tuple[str, int, float]] = {
    "c5": ("dlib.chip5", 150, 0.25),
    "c5_pad20": ("dlib.chip5", 150, 0.20),
    "c5_pad30": ("dlib.chip5", 150, 0.30),
    "c5_cut300": ("dlib.chip5", 300, 0.25),
    "c68": ("dlib.chip68", 150, 0.25),
}
#: descriptor sets per image: the recipes above, their mirror images (two of them) and jitters
DESCRIPTOR_SETS = list(RECIPES) + ["c5_flip", "c68_flip"] + [f"c5_jit{i}" for i in range(JITTERS)]


# --------------------------------------------------------------------------- caching
def _load_rows(path: Path) -> dict[str, dict[str, np.ndarray]]:
    if not path.exists():
        return {}
    with np.load(path, allow_pickle=False) as data:
        arrays = {f: data[f] for f in data.files}  # each field decompressed once
    keys = [str(k) for k in arrays.pop("paths")]
    return {key: {f: column[i] for f, column in arrays.items()} for i, key in enumerate(keys)}


def _save_rows(path: Path, rows: dict[str, dict[str, np.ndarray]]) -> None:
    keys = sorted(rows)
    fields = sorted({f for row in rows.values() for f in row})
    arrays = {f: np.stack([np.asarray(rows[k][f]) for k in keys]) for f in fields}
    np.savez_compressed(path, paths=np.array(keys), **arrays)


def _cached(path: Path, images: list[str], compute: Callable[[list[str]], dict[str, dict[str, np.ndarray]]],
            what: str) -> dict[str, dict[str, np.ndarray]]:
    rows = _load_rows(path)
    missing = [p for p in images if p not in rows]
    if missing:
        print(f"{what}: {len(missing)} image(s) to compute, {len(images) - len(missing)} cached", flush=True)
        rows.update(compute(missing))
        _save_rows(path, rows)
    return rows


# --------------------------------------------------------------------------- stage 1: faces
def find_faces(images: list[str]) -> dict[str, dict[str, np.ndarray]]:
    """Detector box (the default pipeline's, largest face) and 5- and 68-point landmarks, with timings."""
    from facekit.errors import NoFaceError
    from facekit.pipeline import Pipeline
    from facekit.plugins import get_component_class

    pipeline = Pipeline.load("default")
    pipeline.warm_up()
    chip68 = get_component_class("aligner", "dlib.chip68")()
    chip68.warm_up()
    rows = {}
    for number, path in enumerate(images, 1):
        t0 = time.perf_counter()
        pixels = pipeline.read(path)
        t1 = time.perf_counter()
        try:
            face = pipeline.select(pipeline._detect_pixels(pixels), pixels.shape, path)[0]
        except NoFaceError:
            rows[path] = {"found": np.array(False), "box": np.zeros(4), "lm5": np.zeros((5, 2)),
                          "lm68": np.zeros((68, 2)), "seconds": np.zeros(4)}
            continue
        t2 = time.perf_counter()
        lm5 = pipeline.aligner.landmarks(pixels, face)
        t3 = time.perf_counter()
        lm68 = chip68.landmarks(pixels, face)
        t4 = time.perf_counter()
        rows[path] = {"found": np.array(True), "box": np.asarray(face.box, dtype=np.float64),
                      "lm5": lm5.points.astype(np.float64), "lm68": lm68.points.astype(np.float64),
                      # read, detect, 5-point, 68-point
                      "seconds": np.array([t1 - t0, t2 - t1, t3 - t2, t4 - t3])}
        if number % 250 == 0:
            print(f"  faces {number}/{len(images)}", flush=True)
    return rows


# --------------------------------------------------------------------------- stage 2: descriptors
def embed_variants(images: list[str], faces: dict[str, dict[str, np.ndarray]]) -> dict[str, dict[str, np.ndarray]]:
    """Every descriptor set of every image, with the seconds spent cutting and embedding each."""
    import cv2
    import dlib

    from facekit.pipeline import Pipeline
    from facekit.plugins import get_component_class
    from facekit.types import Landmarks

    pipeline = Pipeline.load("default")
    embedder = pipeline.embedder
    embedder.warm_up()
    aligners = {}
    for name, (kind, size, padding) in RECIPES.items():
        aligners[name] = get_component_class("aligner", kind)({"size": size, "padding": padding})
    rows: dict[str, dict[str, np.ndarray]] = {}
    usable = [p for p in images if bool(faces[p]["found"])]
    for p in images:
        if p not in usable:
            rows[p] = {"found": np.array(False), "vectors": np.zeros((len(DESCRIPTOR_SETS), 128), np.float32),
                       "seconds": np.zeros(len(DESCRIPTOR_SETS)), "sharpness": np.array(0.0)}
    batch = 32
    for start in range(0, len(usable), batch):
        part = usable[start : start + batch]
        pixels = {p: pipeline.read(p) for p in part}
        chips: dict[str, np.ndarray] = {}
        cut_seconds: dict[str, float] = {}
        for name, aligner in aligners.items():
            scheme = "dlib68" if aligner.name == "dlib.chip68" else "dlib5"
            t0 = time.perf_counter()
            cut = []
            for p in part:
                marks = Landmarks(faces[p]["lm68" if scheme == "dlib68" else "lm5"], scheme)
                details = aligner.chip_details(marks, tuple(faces[p]["box"]))
                chip = dlib.extract_image_chip(np.ascontiguousarray(pixels[p]), details)
                if chip.shape[0] != 150:
                    chip = cv2.resize(chip, (150, 150), interpolation=cv2.INTER_AREA)
                cut.append(chip)
            chips[name] = np.stack(cut)
            cut_seconds[name] = time.perf_counter() - t0
        chips["c5_flip"] = chips["c5"][:, :, ::-1]
        chips["c68_flip"] = chips["c68"][:, :, ::-1]
        t0 = time.perf_counter()
        jittered = [dlib.jitter_image(np.ascontiguousarray(c), JITTERS) for c in chips["c5"]]
        jitter_seconds = (time.perf_counter() - t0) / JITTERS
        for i in range(JITTERS):
            chips[f"c5_jit{i}"] = np.stack([j[i] for j in jittered])
            cut_seconds[f"c5_jit{i}"] = jitter_seconds
        vectors, seconds = [], []
        for name in DESCRIPTOR_SETS:
            t0 = time.perf_counter()
            vectors.append(np.asarray(embedder.embed(np.ascontiguousarray(chips[name])), dtype=np.float32))
            seconds.append(time.perf_counter() - t0 + cut_seconds.get(name, 0.0))
        from facekit.quality import sharpness

        for i, p in enumerate(part):
            rows[p] = {"found": np.array(True), "vectors": np.stack([v[i] for v in vectors]),
                       "seconds": np.array(seconds) / len(part), "sharpness": np.array(sharpness(chips["c5"][i]))}
        print(f"  descriptors {min(start + batch, len(usable))}/{len(usable)}", flush=True)
    return rows


# --------------------------------------------------------------------------- the variants
def _distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.linalg.norm(a - b, axis=-1)


def variants() -> dict[str, dict[str, Any]]:
    """name -> how its pair distance is made: ``sets`` averaged as descriptors, ``groups`` as distances.

    Each variant is a list of groups; each group is a list of descriptor sets whose mean
    descriptor is taken; the pair's distance is the mean of the groups' distances.
    """
    jit = [f"c5_jit{i}" for i in range(JITTERS)]
    return {
        "default (5-pt chip, 150 px, padding 0.25)": {"groups": [["c5"]], "landmarks": 5},
        "padding 0.20": {"groups": [["c5_pad20"]], "landmarks": 5},
        "padding 0.30": {"groups": [["c5_pad30"]], "landmarks": 5},
        "chip cut at 300 px, shrunk to 150": {"groups": [["c5_cut300"]], "landmarks": 5},
        "68-pt chip": {"groups": [["c68"]], "landmarks": 68},
        "flip (adapted)": {"groups": [["c5", "c5_flip"]], "landmarks": 5},
        f"{JITTERS} jitters": {"groups": [jit], "landmarks": 5},
        f"chip + {JITTERS} jitters": {"groups": [["c5"] + jit], "landmarks": 5},
        "68-pt chip + flip (accurate)": {"groups": [["c68", "c68_flip"]], "landmarks": 68, "chosen": True},
        "5- and 68-pt chips, descriptor mean": {"groups": [["c5", "c68"]], "landmarks": 68},
        "5- and 68-pt chips, distance mean": {"groups": [["c5"], ["c68"]], "landmarks": 68},
        "flip, 5- and 68-pt, descriptor mean": {"groups": [["c5", "c5_flip", "c68", "c68_flip"]], "landmarks": 68},
        "flip, 5- and 68-pt, distance mean": {"groups": [["c5", "c5_flip"], ["c68", "c68_flip"]], "landmarks": 68},
        f"flip + {JITTERS} jitters, 5- and 68-pt, distance mean": {
            "groups": [["c5", "c5_flip"] + jit, ["c68", "c68_flip"]], "landmarks": 68},
    }


def pair_distances(groups: list[list[str]], pairs: list[Any], desc: dict[str, dict[str, np.ndarray]]) -> np.ndarray:
    index = {name: i for i, name in enumerate(DESCRIPTOR_SETS)}
    out = np.full(len(pairs), np.nan)
    for k, pair in enumerate(pairs):
        a, b = desc[pair.a], desc[pair.b]
        if not (bool(a["found"]) and bool(b["found"])):
            continue
        total = 0.0
        for group in groups:
            rows = [index[g] for g in group]
            total += float(_distance(a["vectors"][rows].mean(axis=0), b["vectors"][rows].mean(axis=0)))
        out[k] = total / len(groups)
    return out


def metrics(distances: np.ndarray, labels: np.ndarray, folds: np.ndarray) -> dict[str, Any]:
    from facekit.scoring.metrics import eer, kfold_accuracy, roc, tar_at_far

    scored = np.isfinite(distances)
    similarity = np.where(scored, -distances, -1e9)  # an unscored pair counts as wrong in kfold
    kfold = kfold_accuracy(similarity, labels, folds, scored=scored)
    curve = roc(-distances[scored], labels[scored])
    return {
        "accuracy": kfold.mean, "accuracy_std": kfold.std,
        "tar_far_1e-2": tar_at_far(curve, 1e-2).tar, "tar_far_1e-3": tar_at_far(curve, 1e-3).tar,
        "eer": eer(curve)[0], "scored_pairs": int(scored.sum()),
    }


def cost_per_image(spec: dict[str, Any], faces: dict[str, dict[str, np.ndarray]],
                   desc: dict[str, dict[str, np.ndarray]], images: list[str]) -> float:
    """Mean seconds per image: read + detect + landmarks used + cutting and embedding each chip used."""
    found = [p for p in images if bool(faces[p]["found"])]
    front = np.mean([faces[p]["seconds"] for p in found], axis=0)  # read, detect, 5-pt, 68-pt
    index = {name: i for i, name in enumerate(DESCRIPTOR_SETS)}
    used = sorted({s for group in spec["groups"] for s in group})
    chips = np.mean([desc[p]["seconds"] for p in found], axis=0)
    landmarks = front[3] if spec["landmarks"] == 68 and not any(s.startswith("c5") for s in used) else (
        front[2] + front[3] if spec["landmarks"] == 68 else front[2])
    return float(front[0] + front[1] + landmarks + sum(chips[index[s]] for s in used))


# --------------------------------------------------------------------------- quality
def quality_study(distances: np.ndarray, pairs: list[Any], labels: np.ndarray, folds: np.ndarray,
                  faces: dict[str, dict[str, np.ndarray]], desc: dict[str, dict[str, np.ndarray]]) -> dict[str, Any]:
    """How the flags of facekit.quality split the pairs, and accuracy in each part (10-fold thresholds)."""
    from facekit import quality
    from facekit.scoring.metrics import kfold_accuracy
    from facekit.types import Landmarks

    def flags_of(path: str) -> tuple[str, ...]:
        if not bool(faces[path]["found"]):
            return ()
        marks = Landmarks(faces[path]["lm5"], "dlib5")
        return quality.flags_for(quality.eye_distance(marks), float(desc[path]["sharpness"]),
                                 quality.yaw(marks))

    per_image = {p: flags_of(p) for p in {x for pair in pairs for x in (pair.a, pair.b)}}
    signals = np.array([
        (quality.eye_distance(Landmarks(faces[p]["lm5"], "dlib5")), float(desc[p]["sharpness"]),
         abs(quality.yaw(Landmarks(faces[p]["lm5"], "dlib5")) or 0.0))
        for p in per_image if bool(faces[p]["found"])
    ])
    flagged = np.array([bool(per_image[p.a] or per_image[p.b]) for p in pairs])
    scored = np.isfinite(distances)
    similarity = np.where(scored, -distances, -1e9)
    kfold = kfold_accuracy(similarity, labels, folds, scored=scored)
    # each pair judged at its own fold's threshold: right or wrong
    threshold_of = {int(f): t for f, t in zip(np.unique(folds), kfold.thresholds)}
    right = np.array([scored[i] and ((similarity[i] >= threshold_of[int(folds[i])]) == labels[i])
                      for i in range(len(pairs))])
    counts: dict[str, int] = {}
    for found in per_image.values():
        for flag in found:
            counts[flag] = counts.get(flag, 0) + 1
    return {
        "images": len(per_image),
        "flagged_images": {k: counts.get(k, 0) for k in ("tiny", "blurred", "profile")},
        "flagged_pairs": int(flagged.sum()),
        "accuracy_flagged": float(right[flagged].mean()) if flagged.any() else None,
        "accuracy_unflagged": float(right[~flagged].mean()),
        "signal_percentiles": {
            name: {str(q): float(np.percentile(signals[:, i], q)) for q in (1, 5, 50, 95, 99)}
            for i, name in enumerate(("eye_distance_px", "sharpness", "abs_yaw"))
        },
    }


# --------------------------------------------------------------------------- report
def write_table(results: list[dict[str, Any]], path: Path) -> None:
    base = results[0]["cost_ms"]
    head = ["#", "choice", "accuracy %", "TAR@FAR 1e-2 %", "TAR@FAR 1e-3 %", "EER %", "ms / image", "x default"]
    body = [[str(n), r["name"], f"{100 * r['accuracy']:.2f} ± {100 * r['accuracy_std']:.2f}", f"{100 * r['tar_far_1e-2']:.2f}",
             f"{100 * r['tar_far_1e-3']:.2f}", f"{100 * r['eer']:.2f}", f"{r['cost_ms']:.0f}",
             f"{r['cost_ms'] / base:.2f}"] for n, r in enumerate(results, 1)]
    widths = [max(len(row[i]) for row in [head] + body) for i in range(len(head))]
    rule = "  ".join("=" * w for w in widths)
    lines = [rule, "  ".join(h.ljust(w) for h, w in zip(head, widths)).rstrip(), rule]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in body]
    lines.append(rule)
    path.write_text("\n".join(lines) + "\n")


def draw(results: list[dict[str, Any]], path: Path, title: str) -> None:
    """Accuracy against cost, each choice a numbered point; the key (the table's order) on the right."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(9.6, 4.4), dpi=80)
    ax = fig.add_axes((0.075, 0.13, 0.5, 0.77))
    for number, r in enumerate(results, 1):
        highlight = r["name"].startswith("default") or r.get("chosen")
        x, y = r["cost_ms"], 100 * r["accuracy"]
        ax.scatter(x, y, s=30, color="#c62828" if highlight else "#1f5fa8", zorder=3)
        # alternate the label's side so that choices at one point stay readable
        ax.annotate(str(number), (x, y), fontsize=8, xytext=(5, 3) if number % 2 else (-12, -11),
                    textcoords="offset points")
    ax.set_xlabel("ms per image (shared 2-core machine)")
    ax.set_ylabel("accuracy % (10-fold)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    key = "\n".join(f"{n:>2}  {r['name']}" for n, r in enumerate(results, 1))
    fig.text(0.6, 0.9, key, fontsize=7.5, va="top", family="monospace")
    fig.savefig(path)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--faces", type=Path, default=REPO_ROOT.parent / "shared" / "faces")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="results and caches (default %(default)s)")
    parser.add_argument("--limit", type=int, default=None,
                        help="keep this many same- and different-person pairs of each file (quick runs)")
    args = parser.parse_args(argv)

    from facekit.scoring.metrics import stratified_folds
    from facekit.studies.pairs import read_pairs

    lfw = args.faces / "lfw-dev"
    files = [read_pairs(lfw / name, lfw / "images", limit=args.limit) for name in ("pairsDevTrain.txt", "pairsDevTest.txt")]
    pairs = [p for f in files for p in f.pairs]
    labels = np.array([p.same for p in pairs])
    folds = stratified_folds(labels, 10)
    images = list(dict.fromkeys(x for p in pairs for x in (p.a, p.b)))
    args.out.mkdir(parents=True, exist_ok=True)
    print(f"{len(pairs)} pairs, {len(images)} images; caches and results in {args.out}", flush=True)

    faces = _cached(args.out / "landmarks.npz", images, find_faces, "faces")
    desc = _cached(args.out / "descriptors.npz", images, lambda todo: embed_variants(todo, faces), "descriptors")

    results = []
    for name, spec in variants().items():
        distances = pair_distances(spec["groups"], pairs, desc)
        row = {"name": name, "groups": spec["groups"], "chosen": spec.get("chosen", False),
               **metrics(distances, labels, folds),
               "cost_ms": 1000 * cost_per_image(spec, faces, desc, images)}
        results.append(row)
        print(f"{name:<50} acc {100 * row['accuracy']:.2f}  TAR@1e-3 {100 * row['tar_far_1e-3']:.2f}  "
              f"EER {100 * row['eer']:.2f}  {row['cost_ms']:.0f} ms", flush=True)
    quality = quality_study(pair_distances([["c5"]], pairs, desc), pairs, labels, folds, faces, desc)
    print(json.dumps(quality, indent=1))
    failed = [p for p in images if not bool(faces[p]["found"])]
    summary = {"pairs": len(pairs), "images": len(images), "no_face": failed, "variants": results,
               "quality": quality, "limit": args.limit}
    (args.out / "results.json").write_text(json.dumps(summary, indent=1))
    write_table(results, args.out / "table.rst")
    draw(results, args.out / "accuracy_vs_cost.png",
         f"dlib ResNet on LFW dev, {len(pairs)} pairs, 10-fold: accuracy against cost")
    print(f"wrote {args.out}/results.json, table.rst, accuracy_vs_cost.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())

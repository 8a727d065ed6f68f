"""Which clustering groups unlabelled photos by person best? Measured on LFW's development view.

Input: the default pipeline's embeddings of every lfw-dev image (largest face), as written by
``facekit embed /path/to/lfw-dev/images -o lfw-dev.npz``. The person is the image's folder.

Protocol: lfw-dev's two pair files name disjoint people. Each method's threshold is chosen
on the images of the people of ``pairsDevTrain.txt`` only (the best BCubed F among
thresholds whose pairwise precision is at least 80 %), then reported, unchanged, on the
people of ``pairsDevTest.txt`` and on all of lfw-dev. facekit's default (average linkage
cut at the calibration's 0.1 %-false-match score, see ``facekit.collections.cluster.default_threshold``)
is reported as it ships, with no tuning at all.

Methods: dlib's Chinese whispers (the baseline, at dlib's 0.5 and at the chosen
threshold), agglomerative clustering with average / complete / single linkage (facekit's
numpy implementation), DBSCAN (min_samples 2) and HDBSCAN from scikit-learn (when
installed), and connected components of the mutual k-nearest-neighbour graph below a
distance.

Scores: pairwise precision / recall / F (over all pairs of images) and BCubed precision /
recall / F (per image, averaged).

    python benchmarks/bench_cluster.py --embeddings /tmp/lfw-dev.npz --out /tmp/facekit-out/bench_cluster
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from facekit.collections import cluster as fk_cluster


# ----------------------------------------------------------------------------- scores
def pair_counts(labels: np.ndarray, truth: np.ndarray) -> tuple[float, float, float]:
    """(pairs together in both, pairs together in the clustering, pairs of one person)."""
    _, clusters = np.unique(labels, return_inverse=True)
    _, people = np.unique(truth, return_inverse=True)
    cells = np.unique(clusters * (people.max() + 1) + people, return_counts=True)[1]

    def pairs(counts: np.ndarray) -> float:
        counts = counts.astype(np.float64)
        return float(np.sum(counts * (counts - 1) / 2))

    return pairs(cells), pairs(np.bincount(clusters)), pairs(np.bincount(people))


def scores(labels: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    both, predicted, actual = pair_counts(labels, truth)
    pp = both / predicted if predicted else 1.0
    pr = both / actual if actual else 1.0
    _, clusters = np.unique(labels, return_inverse=True)
    _, people = np.unique(truth, return_inverse=True)
    cell_index = clusters * (people.max() + 1) + people
    _, cell_of, cell_sizes = np.unique(cell_index, return_inverse=True, return_counts=True)
    together = cell_sizes[cell_of].astype(np.float64)  # per image: its cluster's images of its person
    bp = float(np.mean(together / np.bincount(clusters)[clusters]))
    br = float(np.mean(together / np.bincount(people)[people]))
    return {
        "pairwise_precision": pp,
        "pairwise_recall": pr,
        "pairwise_f": 2 * pp * pr / (pp + pr) if pp + pr else 0.0,
        "bcubed_precision": bp,
        "bcubed_recall": br,
        "bcubed_f": 2 * bp * br / (bp + br),
        "clusters": int(clusters.max() + 1),
    }


# ----------------------------------------------------------------------------- methods
Method = Callable[[np.ndarray, float], np.ndarray]


def chinese_whispers(vectors: np.ndarray, threshold: float) -> np.ndarray:
    import dlib

    descriptors = [dlib.vector(v.astype(np.float64).tolist()) for v in vectors]
    return np.asarray(dlib.chinese_whispers_clustering(descriptors, float(threshold)))


def linkage_method(linkage: str) -> Callable[[np.ndarray], Callable[[float], np.ndarray]]:
    """A method that computes the merges once and is cut at many thresholds."""

    def prepare(vectors: np.ndarray) -> Callable[[float], np.ndarray]:
        merges = fk_cluster.linkage_merges(fk_cluster.dissimilarities(vectors, "euclidean"), linkage)
        return lambda t: fk_cluster.labels_from_merges(len(vectors), merges, t, "euclidean")

    return prepare


def dbscan(vectors: np.ndarray, threshold: float) -> np.ndarray:
    from sklearn.cluster import DBSCAN

    labels = DBSCAN(eps=threshold, min_samples=2).fit_predict(vectors)
    return _noise_as_singletons(labels)


def hdbscan(vectors: np.ndarray, threshold: float) -> np.ndarray:
    from sklearn.cluster import HDBSCAN

    labels = HDBSCAN(min_cluster_size=2, min_samples=1, cluster_selection_epsilon=float(threshold)).fit_predict(vectors)
    return _noise_as_singletons(labels)


def mutual_knn(k: int) -> Callable[[np.ndarray], Callable[[float], np.ndarray]]:
    def prepare(vectors: np.ndarray) -> Callable[[float], np.ndarray]:
        d = fk_cluster.dissimilarities(vectors, "euclidean")
        np.fill_diagonal(d, np.inf)
        nearest = np.argsort(d, axis=1)[:, :k]
        is_near = np.zeros(d.shape, dtype=bool)
        np.put_along_axis(is_near, nearest, True, axis=1)
        mutual = is_near & is_near.T

        def cut(t: float) -> np.ndarray:
            edges = np.argwhere(np.triu(mutual & (d < t)))
            merges = [(int(a), int(b), 0.0) for a, b in edges]
            return fk_cluster.labels_from_merges(len(vectors), merges, 1.0, "euclidean")

        return cut

    return prepare


def _noise_as_singletons(labels: np.ndarray) -> np.ndarray:
    labels = np.asarray(labels).copy()
    noise = labels < 0
    labels[noise] = labels.max() + 1 + np.arange(noise.sum())
    return labels


def _plain(method: Method) -> Callable[[np.ndarray], Callable[[float], np.ndarray]]:
    return lambda vectors: (lambda t: method(vectors, t))


METHODS: dict[str, tuple[Callable[[np.ndarray], Callable[[float], np.ndarray]], np.ndarray]] = {
    "Chinese whispers (dlib)": (_plain(chinese_whispers), np.arange(0.30, 0.56, 0.0125)),
    "average linkage": (linkage_method("average"), np.arange(0.40, 0.65, 0.0125)),
    "complete linkage": (linkage_method("complete"), np.arange(0.45, 0.75, 0.0125)),
    "single linkage": (linkage_method("single"), np.arange(0.30, 0.56, 0.0125)),
    "DBSCAN (min_samples 2)": (_plain(dbscan), np.arange(0.30, 0.56, 0.025)),
    "HDBSCAN (eps)": (_plain(hdbscan), np.arange(0.30, 0.56, 0.05)),
    "mutual 5-NN graph": (mutual_knn(5), np.arange(0.35, 0.61, 0.025)),
}


# ----------------------------------------------------------------------------- data
def people_in(pairs_file: Path) -> set[str]:
    names: set[str] = set()
    for line in pairs_file.read_text().splitlines()[1:]:
        tokens = line.split()
        names.update(tokens[0::2] if len(tokens) == 4 else tokens[:1])
    return names


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--embeddings", default="/tmp/shared-emb/lfw-dev-default.npz")
    parser.add_argument("--faces", default=str(Path(__file__).resolve().parents[2] / "shared" / "faces"))
    parser.add_argument("--out", default="/tmp/facekit-out/bench_cluster")
    parser.add_argument("--only", nargs="*", default=None, help="method names to run (default: all)")
    parser.add_argument("--also", nargs="*", default=["deepface_dataset", "eastasian-lfw"],
                        help="other labelled collections to cluster end to end with facekit's defaults")
    args = parser.parse_args()
    lfw = Path(args.faces) / "lfw-dev"
    data = np.load(args.embeddings)
    sources = np.array([str(s) for s in data["sources"]])
    vectors = np.asarray(data["vectors"], dtype=np.float64)
    truth = np.array([Path(s).parent.name for s in sources])
    train_people = people_in(lfw / "pairsDevTrain.txt")
    test_people = people_in(lfw / "pairsDevTest.txt")
    subsets = {
        "train": np.isin(truth, sorted(train_people)),
        "test": np.isin(truth, sorted(test_people)),
        "all": np.ones(len(truth), dtype=bool),
    }
    print({k: int(v.sum()) for k, v in subsets.items()}, "images;", len(set(truth)), "people")

    import facekit

    pipeline = facekit.Pipeline.load("default")
    rule_threshold, rule = fk_cluster.default_threshold(pipeline)
    results: list[dict[str, Any]] = []

    def run(name: str, prepare: Callable[[np.ndarray], Callable[[float], np.ndarray]], thresholds: np.ndarray) -> None:
        started = time.perf_counter()
        cutters = {k: prepare(vectors[mask]) for k, mask in subsets.items()}
        sweep = []
        for t in thresholds:
            s = scores(cutters["train"](float(t)), truth[subsets["train"]])
            sweep.append((float(t), s))
        eligible = [(t, s) for t, s in sweep if s["pairwise_precision"] >= 0.8] or sweep
        chosen = max(eligible, key=lambda ts: ts[1]["bcubed_f"])[0]
        picks = [("chosen on train", chosen)]
        if name.startswith("Chinese"):
            picks.insert(0, ("dlib's default", 0.5))
        if name == "average linkage":
            picks.append(("facekit default rule", rule_threshold))
        for how, t in picks:
            row = {"method": name, "threshold": round(t, 4), "how": how}
            for subset in ("train", "test", "all"):
                row[subset] = scores(cutters[subset](t), truth[subsets[subset]])
            results.append(row)
            print(f"{name:26s} {how:21s} t={t:.3f}  test: BCubed F {row['test']['bcubed_f']:.3f} "
                  f"pairP {row['test']['pairwise_precision']:.3f}  all: BCubed F {row['all']['bcubed_f']:.3f} "
                  f"pairP {row['all']['pairwise_precision']:.3f} pairR {row['all']['pairwise_recall']:.3f}", flush=True)
        print(f"   ({time.perf_counter() - started:.1f} s)", flush=True)

    for name, (prepare, thresholds) in METHODS.items():
        if args.only and name not in args.only:
            continue
        try:
            run(name, prepare, thresholds)
        except ImportError as exc:
            print(f"{name}: skipped ({exc})")
    levels = level_sweep(pipeline, vectors[subsets["train"]], truth[subsets["train"]])
    others = {name: other_collection(pipeline, Path(args.faces), name) for name in args.also}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report = {
        "p_same_levels_on_train": levels,
        "other_collections": others,
        "embeddings": args.embeddings,
        "images": {k: int(v.sum()) for k, v in subsets.items()},
        "default_rule": {"threshold": rule_threshold, "rule": rule},
        "load_average": os.getloadavg(),
        "results": results,
    }
    (out / "bench_cluster.json").write_text(json.dumps(report, indent=1))
    (out / "bench_cluster.md").write_text(markdown_table(results))
    print(markdown_table(results))


def level_sweep(pipeline: Any, vectors: np.ndarray, truth: np.ndarray) -> list[dict[str, float]]:
    """facekit's rule at several P(same) levels, on the pairsDevTrain people: how the level was chosen."""
    cut = linkage_method("average")(vectors)
    rows = []
    for level in (0.9, 0.95, 0.98, 0.99, 0.995, 0.999):
        t = fk_cluster.score_at_probability(pipeline.calibration, level)
        s = scores(cut(t), truth)
        rows.append({"p_same": level, "threshold": t, **s})
        print(f"P(same) >= {level}: t={t:.3f} train BCubed F {s['bcubed_f']:.3f} pairwise P {s['pairwise_precision']:.3f}")
    return rows


def other_collection(pipeline: Any, faces: Path, name: str) -> dict[str, Any]:
    """``facekit.collections.cluster`` end to end, defaults only, on another labelled collection: each
    photo's largest face is scored against the photo's person."""
    folder = faces / name
    if name == "deepface_dataset":
        import csv

        with open(folder / "identities.csv") as handle:
            people = {str(folder / row["file"]): row["identity_group"] for row in csv.DictReader(handle)}
    else:
        people = {str(p): p.parent.name for p in sorted(folder.rglob("*.jpg"))}
    started = time.perf_counter()
    result = fk_cluster.cluster(sorted(people), pipeline)
    seconds = time.perf_counter() - started
    keep = [i for i, f in enumerate(result.faces) if f.index == 0]
    labels = result.labels[keep]
    truth = np.array([people[result.faces[i].source] for i in keep])
    s = scores(labels, truth)
    print(f"{name}: {len(people)} photos, {len(set(truth))} people, {len(result.faces)} faces, "
          f"{len(result.failures)} skipped: BCubed F {s['bcubed_f']:.3f} pairwise P {s['pairwise_precision']:.3f} "
          f"R {s['pairwise_recall']:.3f} ({seconds:.0f} s)")
    return {"photos": len(people), "people": len(set(truth)), "faces": len(result.faces),
            "skipped": len(result.failures), "threshold": result.threshold, "seconds": seconds, **s}


def markdown_table(results: list[dict[str, Any]]) -> str:
    lines = ["| method | threshold | how | pairwise P | pairwise R | BCubed P | BCubed R | BCubed F | test BCubed F | test pairwise P |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        a, t = r["all"], r["test"]
        lines.append(
            f"| {r['method']} | {r['threshold']:.3f} | {r['how']} | {a['pairwise_precision']:.1%} | {a['pairwise_recall']:.1%} "
            f"| {a['bcubed_precision']:.1%} | {a['bcubed_recall']:.1%} | {a['bcubed_f']:.1%} | {t['bcubed_f']:.1%} "
            f"| {t['pairwise_precision']:.1%} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()

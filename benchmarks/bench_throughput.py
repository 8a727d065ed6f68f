"""Throughput on many images: facekit's worker pool against face_recognition on every core.

One command, one run, the same images for everyone:

* **facekit** pipelines (``--pipelines``, default ``default`` and ``fast``) embed the
  images through the public API, ``Pipeline.embed(files, workers=N)``: N worker
  processes read, detect and align, the calling process embeds batches of chips;
* **face_recognition** runs as its own command line does with ``--cpus N``: a
  ``multiprocessing`` pool of N processes, each loading an image, finding faces (HOG,
  upsample 1) and computing dlib's descriptor of the largest face.

N is ``--workers`` (default: every core). The runners take turns on chunks of
``--chunk`` images, so on a shared machine they see the same background load. Reported:

* images/s end to end per runner and the ratio to face_recognition, for all of LFW's
  development view (4,992 images) and for the large photos (face_recognition's
  examples and deepface's photos, 94);
* pairsDevTest accuracy with the threshold chosen on pairsDevTrain (LFW's protocol; a
  pair with a failed image counts as wrong) and images where no face was found;
* a per-stage table (decode, detect, align, embed), in CPU milliseconds per image, from a
  single-process pass over ``--stage-sample`` images (CPU time is what the pool divides
  between the cores, and what other processes on a shared machine do not inflate);
* memory: the resident memory of each facekit runner's workers plus the calling process
  (shared by all runners) after every chunk, so that a run over 5,000 images shows
  whether it stays flat.

Usage::

    python benchmarks/bench_throughput.py                 # everything (about 10 minutes on 2 cores)
    python benchmarks/bench_throughput.py --limit 500     # a quick look: the first 500 LFW images
    python benchmarks/bench_throughput.py --json /tmp/throughput.json --markdown /tmp/throughput.md

Needs ``pip install --no-deps face_recognition`` (or ``--no-peer``) and, for the ``fast``
pipeline, facekit-mediapipe.
"""

from __future__ import annotations

import argparse
import datetime
import json
import multiprocessing
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_default_pipeline import DEFAULT_FACES, evaluate, photo_files, read_pairs  # noqa: E402

PEER = "face_recognition"


@dataclass
class Run:
    name: str
    vectors: dict[str, np.ndarray] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    images: int = 0
    start_s: float = 0.0
    memory_mb: list[float] = field(default_factory=list)  # after each chunk
    stages_ms: dict[str, float] = field(default_factory=dict)

    @property
    def images_per_s(self) -> float:
        return self.images / self.seconds if self.seconds else float("nan")


# ---------------------------------------------------------------------- memory
def _rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return 0.0


def _children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        out += [int(x) for x in task.read_text().split()]
    return out


def tree_rss_mb(pids: list[int]) -> float:
    """Resident memory of these processes (Linux /proc; 0 elsewhere)."""
    return sum(_rss_mb(pid) for pid in pids)


# ---------------------------------------------------------------------- facekit
class FacekitRunner:
    def __init__(self, pipeline_name: str, workers: int, embedder_threads: Optional[int] = None) -> None:
        from facekit import Pipeline

        config = Pipeline.load(pipeline_name).to_dict()
        config.pop("explainer", None)  # not used here; keeps torch out
        if embedder_threads is not None:
            config["embedder"]["params"] = {**config["embedder"].get("params", {}), "num_threads": embedder_threads}
        self.pipeline = Pipeline.from_dict(config)
        self.workers = workers
        label = "1 process" if workers == 1 else f"{workers} workers"
        self.run = Run(f"facekit {pipeline_name} ({label})")

    def setup(self, warm: list[str]) -> None:
        before = set(_children(os.getpid()))
        start = time.perf_counter()
        self.pipeline.warm_up()
        engine = self.pipeline.engine_for(len(warm) + 1000, self.workers)
        if hasattr(engine, "warm_up"):
            engine.warm_up()
        self.run.start_s = time.perf_counter() - start
        self.pipeline.embed(warm, on_error="skip", workers=self.workers)
        self._pids = [os.getpid()] + [p for p in _children(os.getpid()) if p not in before]

    def process(self, files: list[str]) -> None:
        start = time.perf_counter()
        batch = self.pipeline.embed(files, on_error="skip", progress=False, workers=self.workers)
        self.run.seconds += time.perf_counter() - start
        self.run.images += len(files)
        for emb in batch:
            self.run.vectors.setdefault(str(emb.source), emb.vector)
        self.run.failures.update(batch.failures)
        self.run.memory_mb.append(tree_rss_mb(self._pids))

    def stages(self, files: list[str]) -> None:
        """CPU ms per image of each stage, one process, one image at a time (embedding batched)."""
        from facekit.errors import FacekitError

        p = self.pipeline
        cpu = {"decode": 0.0, "detect": 0.0, "align": 0.0, "embed": 0.0}
        chips = []
        for path in files:
            t0 = time.process_time()
            try:
                pixels = p.read(path)
                t1 = time.process_time()
                chosen = p.select(p._detect_pixels(pixels), pixels.shape, path)
                t2 = time.process_time()
                chips += [a.chip for a in p.aligner.align_many(pixels, chosen)]
                t3 = time.process_time()
            except FacekitError:
                continue
            cpu["decode"] += t1 - t0
            cpu["detect"] += t2 - t1
            cpu["align"] += t3 - t2
        for start in range(0, len(chips), p.config.batch_size):
            t = time.process_time()
            p.embedder.embed(np.stack(chips[start : start + p.config.batch_size]))
            cpu["embed"] += time.process_time() - t
        self.run.stages_ms = {k: 1000.0 * v / max(len(files), 1) for k, v in cpu.items()}

    def close(self) -> None:
        self.pipeline.close()


# ------------------------------------------------------------- face_recognition
_fr: Any = None


def _peer_start() -> None:
    global _fr
    import face_recognition

    _fr = face_recognition


def _peer_one(path: str) -> tuple[str, Optional[np.ndarray], str]:
    """What face_recognition's CLI does per image (its test_image), for the largest face."""
    try:
        image = _fr.load_image_file(path)
    except Exception as exc:  # unreadable file
        return path, None, f"decode: {exc}"
    boxes = _fr.face_locations(image, number_of_times_to_upsample=1, model="hog")
    if not boxes:
        return path, None, "no face found"
    box = max(boxes, key=lambda b: (b[2] - b[0]) * (b[1] - b[3]))
    return path, np.asarray(_fr.face_encodings(image, [box], num_jitters=1)[0], dtype=np.float32), ""


class PeerRunner:
    def __init__(self, processes: int) -> None:
        try:
            import face_recognition  # noqa: F401
        except ImportError as exc:
            raise SystemExit(f"face_recognition is not installed ({exc}): pip install --no-deps face_recognition, "
                             "or pass --no-peer")
        self.processes = processes
        self.run = Run(f"{PEER} ({processes} processes)")
        self.pool: Any = None

    def setup(self, warm: list[str]) -> None:
        start = time.perf_counter()
        context = multiprocessing.get_context("spawn")  # this process holds threads a fork would copy
        self.pool = context.Pool(self.processes, initializer=_peer_start)
        self.pool.map(_peer_one, warm[: self.processes] * 1, chunksize=1)
        self.run.start_s = time.perf_counter() - start

    def process(self, files: list[str]) -> None:
        start = time.perf_counter()
        for path, vector, error in self.pool.imap(_peer_one, files, chunksize=4):
            if vector is None:
                self.run.failures[path] = error
            else:
                self.run.vectors[path] = vector
        self.run.seconds += time.perf_counter() - start
        self.run.images += len(files)

    def stages(self, files: list[str]) -> None:
        import face_recognition as fr
        import face_recognition.api as api

        cpu = {"decode": 0.0, "detect": 0.0, "align": 0.0, "embed": 0.0}
        for path in files:
            t0 = time.process_time()
            image = fr.load_image_file(path)
            t1 = time.process_time()
            boxes = fr.face_locations(image, number_of_times_to_upsample=1, model="hog")
            t2 = time.process_time()
            cpu["decode"] += t1 - t0
            cpu["detect"] += t2 - t1
            if not boxes:
                continue
            box = max(boxes, key=lambda b: (b[2] - b[0]) * (b[1] - b[3]))
            landmarks = api._raw_face_landmarks(image, [box], model="small")  # face_encodings' first step
            t3 = time.process_time()
            api.face_encoder.compute_face_descriptor(image, landmarks[0], 1)
            cpu["align"] += t3 - t2
            cpu["embed"] += time.process_time() - t3
        self.run.stages_ms = {k: 1000.0 * v / max(len(files), 1) for k, v in cpu.items()}

    def close(self) -> None:
        if self.pool is not None:
            self.pool.terminate()
            self.pool.join()


# ----------------------------------------------------------------------- running
def run_block(files: list[str], runners: list[Any], chunk: int, stage_sample: int,
              log: Callable[[str], None]) -> list[Run]:
    for runner in runners:
        runner.setup(files[:8])
        log(f"{runner.run.name}: started in {runner.run.start_s:.1f} s")
    for start in range(0, len(files), chunk):
        part = files[start : start + chunk]
        for runner in runners:
            runner.process(part)
        log(f"{start + len(part)}/{len(files)}: " + ", ".join(
            f"{r.run.name} {r.run.images_per_s:.1f} img/s" for r in runners) + f"; load {os.getloadavg()[0]:.1f}")
    sample = files[:: max(1, len(files) // stage_sample)][:stage_sample]
    for runner in runners:
        runner.stages(sample)
        runner.close()
    return [r.run for r in runners]


def summary(run: Run, peer: Optional[Run]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": run.name, "images": run.images, "seconds": round(run.seconds, 2),
        "images_per_s": round(run.images_per_s, 1), "start_s": round(run.start_s, 2),
        "failed_images": len(run.failures), "stage_cpu_ms_per_image": {k: round(v, 2) for k, v in run.stages_ms.items()},
    }
    if peer is not None and run is not peer and peer.images_per_s > 0:
        out["x_peer"] = round(run.images_per_s / peer.images_per_s, 2)
    if run.memory_mb:
        out["memory_mb"] = {"after_first_chunk": round(run.memory_mb[0]), "max": round(max(run.memory_mb)),
                            "after_last_chunk": round(run.memory_mb[-1]),
                            "after_each_chunk": [round(m) for m in run.memory_mb]}
    return out


def markdown(report: dict[str, Any]) -> str:
    lines = []
    for key, title in (("lfw", "LFW dev view"), ("photos", "Large photos")):
        block = report.get(key)
        if not block:
            continue
        lines += [f"### {title}: {block['images']} images", "",
                  "| runner | img/s | x face_recognition | failed img | pairsDevTest acc | decode | detect | align | embed "
                  "| CPU ms/img | memory MB (first chunk / max / last) |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
        for run in block["runs"]:
            ms = run["stage_cpu_ms_per_image"]
            acc = run.get("accuracy", {}).get("test_accuracy")
            mem = run.get("memory_mb")
            lines.append(
                f"| {run['name']} | {run['images_per_s']:.1f} | {run.get('x_peer', '')} | {run['failed_images']} | "
                f"{'' if acc is None else f'{100 * acc:.2f} %'} | "
                + " | ".join(f"{ms.get(k, 0):.1f}" for k in ("decode", "detect", "align", "embed"))
                + f" | {sum(ms.values()):.1f} | "
                + ("" if not mem else f"{mem['after_first_chunk']} / {mem['max']} / {mem['after_last_chunk']}") + " |")
        lines.append("")
    env = report["environment"]
    lines.append(f"{env['date']}, {env['cpus']} CPUs ({env['processor']}), python {env['python']}; "
                 f"load average {env['load_average_start']} at start, {env['load_average_end']} at end. "
                 "Stage columns: CPU ms per image in one process (embedding batched for facekit).")
    return "\n".join(lines) + "\n"


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lfw", type=Path, default=DEFAULT_FACES / "lfw-dev", help="LFW dev-view folder")
    parser.add_argument("--limit", type=int, default=None, help="use only the first N LFW images (quick check)")
    parser.add_argument("--pipelines", default="default,fast", help="facekit pipelines, comma-separated")
    parser.add_argument("--workers", type=int, default=os.cpu_count(), help="processes for everyone (default: every core)")
    parser.add_argument("--single", action="store_true", help="also run the first pipeline in one process (workers=1)")
    parser.add_argument("--embedder-threads", type=int, default=None,
                        help="the embedder's num_threads (default: its own default, one per core)")
    parser.add_argument("--chunk", type=int, default=500, help="images per turn when interleaving the runners")
    parser.add_argument("--stage-sample", type=int, default=300, help="images for the per-stage table")
    parser.add_argument("--no-peer", action="store_true", help="skip face_recognition")
    parser.add_argument("--no-photos", action="store_true", help="skip the large photos")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--markdown", type=Path, default=None)
    args = parser.parse_args(argv)

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    pipelines = [p for p in args.pipelines.split(",") if p]

    def runners() -> list[Any]:
        out: list[Any] = [FacekitRunner(name, args.workers, args.embedder_threads) for name in pipelines]
        if args.single:
            out.append(FacekitRunner(pipelines[0], 1, args.embedder_threads))
        if not args.no_peer:
            out.append(PeerRunner(args.workers))
        return out

    images = args.lfw / "images"
    files = sorted(str(p) for p in images.glob("*/*.jpg"))[: args.limit]
    train = read_pairs(args.lfw / "pairsDevTrain.txt", images, None)
    test = read_pairs(args.lfw / "pairsDevTest.txt", images, None)
    report: dict[str, Any] = {"environment": {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(), "workers": args.workers,
        "load_average_start": [round(x, 2) for x in os.getloadavg()],
    }}
    results = run_block(files, runners(), args.chunk, args.stage_sample, log)
    peer = next((r for r in results if r.name.startswith(PEER)), None)
    covered = set(files)
    runs = []
    for run in results:
        entry = summary(run, peer)
        if all(p in covered for a, b, _ in train.all() + test.all() for p in (a, b)):
            entry["accuracy"] = evaluate(run, train, test)  # type: ignore[arg-type]
        runs.append(entry)
    report["lfw"] = {"images": len(files), "runs": runs}
    if not args.no_photos:
        photos = photo_files(args.lfw.parent)
        photo_results = run_block(photos, runners(), max(1, args.chunk // 5), min(args.stage_sample, len(photos)), log)
        photo_peer = next((r for r in photo_results if r.name.startswith(PEER)), None)
        report["photos"] = {"images": len(photos), "runs": [summary(r, photo_peer) for r in photo_results]}
    report["environment"]["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    table = markdown(report)
    print(table)
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    if args.markdown:
        args.markdown.write_text(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())

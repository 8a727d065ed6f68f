"""Scale-out measurements for issue 19: the Ray engine against the local pool, and FAISS from Parquet.

Two parts, each printing JSON lines (and writing only under /tmp):

* ``throughput``: lfw-dev embedded into facekit's Parquet layout by the local process pool
  (``--workers`` processes align, this one embeds) and by the Ray engine with 1 and 2
  embedding actors on a local Ray instance; images/s, and Ray's overhead (its start, and
  the wall time beyond the local pool's)::

    .venv/bin/python benchmarks/bench_ray.py throughput --limit 600

* ``faiss``: N synthetic face-like vectors (lfw-dev's between- and within-person
  covariance, as in bench_faiss.py) written as a Parquet dataset in chunks, then an IVF
  index built from it chunk by chunk (facekit.collections.parquet.build_index) in a fresh process whose
  peak memory is reported; recall@10 against exact search (also computed chunk by chunk)
  for several ``nprobe``::

    .venv/bin/python benchmarks/bench_ray.py faiss --count 1000000
    .venv/bin/python benchmarks/bench_ray.py faiss --count 10000000 --nlist 2000

Report the load average (printed with each result): on a shared machine the numbers are
pessimistic.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_faiss import FaceLike, by_person, recall_at  # noqa: E402  (the same synthetic faces)

FACES = Path(os.environ.get("FACEKIT_FACES_DIR", HERE.parent.parent / "shared" / "faces"))


def load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def emit(row: dict) -> None:
    row["load_average"] = load()
    print(json.dumps(row), flush=True)


# ------------------------------------------------------------------ throughput
def throughput(args: argparse.Namespace) -> None:
    from facekit.collections import parquet
    from facekit.engine import ProcessPoolEngine
    from facekit.pipeline import Pipeline
    from facekit_ray import RayEngine

    files = sorted(str(p) for p in (FACES / "lfw-dev").rglob("*.jpg"))[: args.limit or None]
    pipeline = Pipeline.load(args.pipeline)
    pipeline.embedder.warm_up()
    root = Path(tempfile.mkdtemp(prefix="bench-ray-", dir="/tmp"))
    try:
        with ProcessPoolEngine(pipeline, args.workers) as pool:
            pool.warm_up()
            report = parquet.embed_to_parquet(pipeline, files, root / "local", engine=pool)
        local_s = report.seconds
        emit({"engine": f"local pool ({args.workers} processes)", "images": report.images, "faces": report.faces,
              "seconds": round(local_s, 1), "images_per_s": round(report.images / local_s, 1),
              "start_s": round(pool.start_seconds or 0, 1)})
        import ray

        for actors in args.actors:
            started = time.perf_counter()
            ray.init(num_cpus=args.workers, include_dashboard=False, log_to_driver=False,
                     _temp_dir=tempfile.mkdtemp(prefix="fkray", dir="/tmp"))
            start_s = time.perf_counter() - started
            with RayEngine(pipeline, workers=actors) as engine:
                report = parquet.embed_to_parquet(pipeline, files, root / f"ray{actors}", engine=engine)
            ray.shutdown()
            emit({"engine": f"ray ({actors} actor{'s' if actors > 1 else ''}, {args.workers} CPUs)",
                  "images": report.images, "faces": report.faces, "seconds": round(report.seconds, 1),
                  "images_per_s": round(report.images / report.seconds, 1), "start_s": round(start_s, 1),
                  "overhead_vs_local_s": round(report.seconds + start_s - local_s, 1)})
            local, on_ray = (sorted_vectors(root / name) for name in ("local", f"ray{actors}"))
            emit({"check": f"ray ({actors}) vs local", "rows": len(on_ray), "same_rows": len(local) == len(on_ray),
                  "max_abs_diff": float(np.abs(local - on_ray).max()) if len(local) == len(on_ray) else None})
    finally:
        shutil.rmtree(root, ignore_errors=True)


def sorted_vectors(out: Path) -> np.ndarray:
    """A dataset's vectors ordered by (source, face index): engines write rows in different orders."""
    from facekit.collections import parquet

    rows = [(s, i, v) for batch in parquet.read_batches(out, ["source", "face_index", "vector"])
            for s, i, v in zip(batch.column(0).to_pylist(), batch.column(1).to_pylist(), parquet.vectors_of(batch))]
    return np.stack([v for _, _, v in sorted(rows, key=lambda r: (r[0], r[1]))])


# ------------------------------------------------------------------ FAISS from Parquet
def write_synthetic(count: int, out: Path, embeddings: str, queries: int, chunk: int = 500_000,
                    per_person: int = 5) -> np.ndarray:
    """``count`` face-like vectors as a Parquet dataset at ``out``; returns ``queries`` queries
    (half new photos of people in it, half strangers)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    data = np.load(embeddings)
    rng = np.random.default_rng(0)
    model = FaceLike(data["vectors"].astype(np.float64), by_person(data["sources"]), rng)
    (out / "faces").mkdir(parents=True)
    (out / "failures").mkdir()
    dim = data["vectors"].shape[1]
    (out / "facekit.json").write_text(json.dumps({
        "format": "facekit-faces", "version": 1, "pipeline": "synthetic", "pipeline_yaml": "",
        "embedding_description": "synthetic", "model": "synthetic", "metric": "euclidean", "dim": dim}))
    known: list[np.ndarray] = []
    for start in range(0, count, chunk):
        rows = min(chunk, count - start)
        centres = model.identities(-(-rows // per_person))
        vectors = model.photos(centres, np.arange(rows) // per_person)
        known.append(centres[rng.choice(len(centres), 8, replace=False)])
        table = pa.table({
            "source": [f"synthetic/{start + i}.jpg" for i in range(rows)],
            "vector": pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()), dim),
        })
        pq.write_table(table, out / "faces" / f"part-{start:012d}.parquet")
    people = np.concatenate(known)
    owners = rng.integers(0, len(people), queries // 2)
    strangers = queries - queries // 2
    return np.concatenate([model.photos(people, owners), model.photos(model.identities(strangers), np.arange(strangers))])


def exact_neighbours(out: Path, queries: np.ndarray, k: int = 10) -> np.ndarray:
    """The exact ``k`` nearest rows (Euclidean) of each query, reading the dataset chunk by chunk."""
    from facekit.collections import parquet
    from facekit.builtin.index import top_k

    best_d = np.full((len(queries), 0), np.inf, np.float32)
    best_i = np.zeros((len(queries), 0), np.int64)
    offset = 0
    q_sq = np.einsum("ij,ij->i", queries, queries)[:, None]
    for chunk in parquet.iter_vectors(out, 65_536):
        d = q_sq - 2 * queries @ chunk.T + np.einsum("ij,ij->i", chunk, chunk)[None, :]
        d, i = top_k(np.concatenate([best_d, d], axis=1), k, higher_is_better=False)
        ids = np.concatenate([best_i, np.broadcast_to(np.arange(offset, offset + len(chunk)), (len(queries), len(chunk)))], axis=1)
        best_d, best_i = d, np.take_along_axis(ids, i, axis=1)
        offset += len(chunk)
    return best_i


def faiss_child(args: argparse.Namespace) -> None:
    """In a fresh process: exact truth in chunks, then the chunked IVF build and queries."""
    from facekit_faiss.index import FaissIndex

    from facekit.collections import parquet

    out = Path(args.dataset)
    queries = np.load(out / "queries.npy")
    index = FaissIndex(FaissIndex.Params(method="ivf", nlist=args.nlist, nprobe=args.nprobe[0]))
    started = time.perf_counter()
    parquet.build_index(index, out, batch_rows=262_144)
    build_s = time.perf_counter() - started
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # the build's peak: nothing else ran yet
    started = time.perf_counter()
    truth = exact_neighbours(out, queries)
    exact_s = time.perf_counter() - started
    offset = len(index)
    half = len(queries) // 2
    for nprobe in args.nprobe:
        index._index.nprobe = nprobe
        started = time.perf_counter()
        _, ids = index.search(queries, 10)
        ms = (time.perf_counter() - started) / len(queries) * 1000
        emit({"faces": offset, "index": f"ivf nlist {index._index.nlist}", "nprobe": nprobe,
              "recall_at_10": round(recall_at(ids, truth), 4),
              "recall_known": round(recall_at(ids[:half], truth[:half]), 4),
              "recall_strangers": round(recall_at(ids[half:], truth[half:]), 4),
              "ms_per_query_batch": round(ms, 2), "build_s": round(build_s, 1),
              "exact_ms_per_query": round(exact_s / len(queries) * 1000, 1),
              "peak_rss_gb": round(peak_gb, 2), "index_gb": round(index.memory_bytes() / 1e9, 2)})


def faiss_bench(args: argparse.Namespace) -> None:
    out = Path(tempfile.mkdtemp(prefix=f"bench-faiss-{args.count}-", dir="/tmp"))
    try:
        started = time.perf_counter()
        queries = write_synthetic(args.count, out, args.embeddings, args.queries)
        np.save(out / "queries.npy", queries.astype(np.float32))
        size = sum(p.stat().st_size for p in (out / "faces").iterdir())
        emit({"faces": args.count, "parquet_gb": round(size / 1e9, 2), "write_s": round(time.perf_counter() - started, 1)})
        command = [sys.executable, __file__, "faiss-child", "--dataset", str(out), "--nlist", str(args.nlist),
                   "--nprobe", *map(str, args.nprobe)]
        subprocess.run(command, check=True)
    finally:
        shutil.rmtree(out, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="part", required=True)
    p = sub.add_parser("throughput")
    p.add_argument("--limit", type=int, default=0, help="first N lfw-dev images (0: all 4,992)")
    p.add_argument("--workers", type=int, default=2, help="local processes, and the Ray instance's CPUs")
    p.add_argument("--actors", type=int, nargs="+", default=[1, 2])
    p.add_argument("--pipeline", default="default")
    for name in ("faiss", "faiss-child"):
        p = sub.add_parser(name)
        p.add_argument("--count", type=int, default=1_000_000)
        p.add_argument("--nlist", type=int, default=2000)
        p.add_argument("--nprobe", type=int, nargs="+", default=[128, 256, 512])
        p.add_argument("--embeddings", default="/tmp/shared-emb/lfw-dev-default.npz")
        p.add_argument("--dataset", default="")
        p.add_argument("--queries", type=int, default=1000, help="half known people, half strangers")
    args = parser.parse_args()
    {"throughput": throughput, "faiss": faiss_bench, "faiss-child": faiss_child}[args.part](args)


if __name__ == "__main__":
    main()

"""FAISS against exact search: recall@10, latency, build time and memory per face.

Two sets of vectors:

* real: the default pipeline's embeddings of every lfw-dev image (4,992, 128-D), each one
  a query against the others;
* synthetic, N of them (default 1,000,000), shaped like faces rather than uniform noise:
  identities are drawn from a Gaussian with the mean and covariance of lfw-dev's
  per-person mean vectors, and each identity's photos scatter around it with lfw-dev's
  within-person covariance (5 photos per identity). Queries are new photos: half of
  identities in the gallery, half of identities that are not.

Recall@10 = the share of the exact top 10 (``exact`` index, numpy) that the FAISS top 10
contains. Latency: a batch of queries (per query), and queries one at a time. Memory:
FAISS's serialised index size divided by N. Writes /tmp/bench_faiss.json.

    .venv/bin/python benchmarks/bench_faiss.py --embeddings /tmp/shared-emb/lfw-dev-default.npz
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time
from pathlib import Path

import numpy as np


def by_person(sources: np.ndarray) -> np.ndarray:
    names = [Path(s).parent.name for s in sources]
    lookup = {n: i for i, n in enumerate(sorted(set(names)))}
    return np.array([lookup[n] for n in names])


class FaceLike:
    """Synthetic faces with lfw-dev's between-person and within-person covariance."""

    def __init__(self, vectors: np.ndarray, people: np.ndarray, rng: np.random.Generator) -> None:
        groups = [vectors[people == p] for p in np.unique(people)]
        means = np.stack([g.mean(axis=0) for g in groups])
        residuals = np.concatenate([g - g.mean(axis=0) for g in groups if len(g) > 1])
        ridge = 1e-6 * np.eye(vectors.shape[1])
        self.centre = means.mean(axis=0)
        self.between = np.linalg.cholesky(np.cov(means.T) + ridge)
        # residuals around a sample mean underestimate the spread by (n-1)/n; lfw-dev's groups are small
        self.within = np.linalg.cholesky(np.cov(residuals.T) * 1.5 + ridge)
        self.rng = rng

    def identities(self, count: int) -> np.ndarray:
        return self.centre + self.rng.standard_normal((count, len(self.centre))) @ self.between.T

    def photos(self, centres: np.ndarray, owner: np.ndarray) -> np.ndarray:
        noise = self.rng.standard_normal((len(owner), len(self.centre))) @ self.within.T
        return (centres[owner] + noise).astype(np.float32)


def recall_at(approx: np.ndarray, exact: np.ndarray) -> float:
    hits = [len(set(a[a >= 0]) & set(e)) / len(e) for a, e in zip(approx, exact)]
    return float(np.mean(hits))


def measure(index_cls, params: dict, base: np.ndarray, queries: np.ndarray, truth: np.ndarray, metric: str,
            singles: int = 200) -> dict:
    index = index_cls(params)
    start = time.perf_counter()
    index.build(base, metric)
    build_s = time.perf_counter() - start
    start = time.perf_counter()
    _, ids = index.search(queries, 10)
    batch_ms = (time.perf_counter() - start) / len(queries) * 1000
    start = time.perf_counter()
    for query in queries[:singles]:
        index.search(query[None], 10)
    single_ms = (time.perf_counter() - start) / min(singles, len(queries)) * 1000
    row = {
        "params": params, "method": index.method, "build_s": round(build_s, 2),
        "recall_at_10": round(recall_at(ids, truth), 4),
        "batch_ms_per_query": round(batch_ms, 4), "single_query_ms": round(single_ms, 3),
        "bytes_per_face": round(index.memory_bytes() / len(base), 1),
    }
    print(json.dumps(row), flush=True)
    return row


def exact_truth(base: np.ndarray, queries: np.ndarray, metric: str) -> tuple[np.ndarray, float]:
    from facekit.builtin.index import ExactIndex

    index = ExactIndex(batch_size=16)
    index.build(base, metric)
    start = time.perf_counter()
    _, ids = index.search(queries, 10)
    return ids, (time.perf_counter() - start) / len(queries) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--embeddings", default="/tmp/shared-emb/lfw-dev-default.npz")
    parser.add_argument("--count", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--per-identity", type=int, default=5)
    parser.add_argument("--hnsw", action=argparse.BooleanOptionalAction, default=True,
                        help="also build an HNSW index at N (about 10 minutes at 1 M on 2 busy cores)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="/tmp/bench_faiss.json")
    args = parser.parse_args()

    from facekit_faiss.index import FaissIndex

    data = np.load(args.embeddings)
    vectors, metric = data["vectors"].astype(np.float32), str(data["metric"])
    people = by_person(data["sources"])
    rng = np.random.default_rng(0)
    report: dict = {"load": os.getloadavg(), "cpus": os.cpu_count(), "metric": metric, "model": str(data["model"])}

    # real vectors: each lfw-dev face a query against all of them (itself included, in both)
    truth, exact_ms = exact_truth(vectors, vectors, metric)
    report["real"] = {"count": len(vectors), "exact_ms_per_query": round(exact_ms, 4), "faiss": [
        measure(FaissIndex, {"method": "ivf", "nprobe": n, "threads": args.threads}, vectors, vectors, truth, metric)
        for n in (16, 64)
    ] + [measure(FaissIndex, {"method": "hnsw", "threads": args.threads}, vectors, vectors, truth, metric)]}

    faces = FaceLike(vectors, people, rng)
    centres = faces.identities(args.count // args.per_identity + 1)
    base = faces.photos(centres, np.arange(args.count) // args.per_identity)
    known = faces.photos(centres, rng.integers(0, len(centres), args.queries // 2))
    strangers = faces.identities(args.queries - args.queries // 2)
    unknown = faces.photos(strangers, np.arange(len(strangers)))
    queries = np.concatenate([known, unknown])
    truth, exact_ms = exact_truth(base, queries, metric)
    print(f"exact at {len(base)}: {exact_ms:.2f} ms per query", flush=True)
    rows = []
    sweeps = [("hnsw", "ef_search", (64, 128, 256, 512)), ("ivf", "nprobe", (16, 64, 128, 256))]
    for method, knob, values in sweeps if args.hnsw else sweeps[1:]:
        index = FaissIndex({"method": method, "threads": args.threads})
        start = time.perf_counter()
        index.build(base, metric)
        build_s = time.perf_counter() - start
        for value in values:  # one built index, several search widths
            if method == "hnsw":
                index._index.hnsw.efSearch = value
            else:
                index._index.nprobe = value
            start = time.perf_counter()
            _, ids = index.search(queries, 10)
            batch_ms = (time.perf_counter() - start) / len(queries) * 1000
            start = time.perf_counter()
            for query in queries[:200]:
                index.search(query[None], 10)
            single_ms = (time.perf_counter() - start) / 200 * 1000
            half = len(queries) // 2
            row = {"method": method, knob: value, "build_s": round(build_s, 1),
                   "recall_at_10": round(recall_at(ids, truth), 4),
                   "recall_known": round(recall_at(ids[:half], truth[:half]), 4),
                   "recall_unknown": round(recall_at(ids[half:], truth[half:]), 4),
                   "batch_ms_per_query": round(batch_ms, 4), "single_query_ms": round(single_ms, 3),
                   "bytes_per_face": round(index.memory_bytes() / len(base), 1)}
            if method == "ivf":
                row["nlist"] = index._index.nlist
            print(json.dumps(row), flush=True)
            rows.append(row)
        del index
    report["synthetic"] = {"count": len(base), "queries": len(queries), "per_identity": args.per_identity,
                           "exact_ms_per_query": round(exact_ms, 3), "faiss": rows}
    report["max_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    report["load_after"] = os.getloadavg()
    Path(args.out).write_text(json.dumps(report, indent=1))
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()

"""The ``faiss`` search index: FAISS's inverted-file (IVF) or HNSW index, or an exact one for small galleries."""

from __future__ import annotations

import math
from typing import Any, Iterable, Literal, Optional

import numpy as np
from pydantic import Field

from facekit.components import Lazy, Params, SearchIndex
from facekit.errors import DependencyError
from facekit.scoring.metric import COSINE, Metric, MetricName, metric_named


def _import_faiss() -> Any:
    try:
        import faiss
    except ImportError as exc:
        raise DependencyError(
            f"the 'faiss' search index needs the faiss-cpu package ({exc}); "
            "install it with `pip install facekit-faiss` (or `pip install 'faiss-cpu>=1.15,<1.16'`)"
        ) from exc
    return faiss


_FAISS = Lazy(_import_faiss)


class FaissIndex(SearchIndex):
    """FAISS nearest-neighbour search: exact below ``exact_below`` vectors, approximate above.

    ``hnsw`` (the default above the cut-off) walks a graph of the vectors: recall@10 0.96
    against exact search at 1 M face-like vectors with ``ef_search`` 256, 4.7 ms a query
    against 80 ms for exact search (see facekit's gallery how-to). ``ivf`` clusters the vectors into ``nlist`` lists with k-means and
    searches the ``nprobe`` lists nearest each query: less memory, lower recall. Cosine galleries are searched by inner product on unit
    vectors, Euclidean ones by L2; scores come back in the gallery's metric.
    """

    name = "faiss"
    description = "FAISS approximate search (IVF or HNSW; exact for small galleries), from facekit-faiss"
    exact = False
    persistent = True

    class Params(Params):
        method: Literal["auto", "flat", "ivf", "hnsw"] = Field(
            "auto", description="auto: flat (exact) below exact_below vectors, else hnsw"
        )
        exact_below: int = Field(20_000, ge=0, description="with method auto, galleries smaller than this are searched exactly")
        nlist: Optional[int] = Field(None, ge=1, description="IVF lists (default: 2 x sqrt(N), at most N / 39)")
        nprobe: int = Field(64, ge=1, description="IVF lists searched per query (recall against speed)")
        hnsw_m: int = Field(32, ge=4, le=128, description="HNSW links per node")
        ef_search: int = Field(256, ge=1, description="HNSW search breadth (recall against speed)")
        ef_construction: int = Field(80, ge=1, description="HNSW build breadth")
        threads: Optional[int] = Field(None, ge=1, description="OpenMP threads for FAISS (default: FAISS's own)")

    def __init__(self, params: Optional[Params] = None, **kwargs: Any) -> None:
        super().__init__(params, **kwargs)
        self._index: Any = None
        self._metric: Metric = COSINE
        self._count = 0
        self.method = ""

    def warm_up(self) -> None:
        _FAISS.get()

    def __len__(self) -> int:
        return self._count

    def build(self, vectors: np.ndarray, metric: MetricName) -> None:
        faiss = _FAISS.get()
        p: FaissIndex.Params = self.params  # type: ignore[assignment]
        if p.threads:
            faiss.omp_set_num_threads(p.threads)
        scoring = metric_named(metric)
        vectors = np.ascontiguousarray(scoring.prepare(vectors), dtype=np.float32)
        count, dim = vectors.shape
        index, method = self._empty_index(count, dim, scoring)
        if method == "ivf":
            # k-means on 64 points per list: enough for the centroids, bounded training time
            sample = np.random.default_rng(0).choice(count, min(count, 64 * index.nlist), replace=False)
            index.train(vectors[np.sort(sample)])
        index.add(vectors)
        self._use(index, scoring, method)

    def build_from_chunks(self, chunks: Iterable[np.ndarray], metric: MetricName, count: int) -> None:
        """:meth:`build` from ``count`` vectors arriving in chunks (e.g. read from Parquet), so they never
        sit in one Python array: FAISS's copy is the only full one. IVF trains on the first chunks."""
        faiss = _FAISS.get()
        p: FaissIndex.Params = self.params  # type: ignore[assignment]
        if p.threads:
            faiss.omp_set_num_threads(p.threads)
        scoring = metric_named(metric)
        index: Any = None
        method = ""
        waiting: list[np.ndarray] = []  # IVF: chunks held until enough rows to train on
        for chunk in chunks:
            chunk = np.ascontiguousarray(scoring.prepare(chunk), dtype=np.float32)
            if index is None:
                index, method = self._empty_index(count, chunk.shape[1], scoring)
            if method == "ivf" and not index.is_trained:
                waiting.append(chunk)
                if sum(len(c) for c in waiting) < min(count, 64 * index.nlist):
                    continue
                index.train(np.concatenate(waiting)[: 64 * index.nlist])
                chunk, waiting = np.concatenate(waiting), []
            index.add(chunk)
        if waiting:  # fewer rows than the training sample wanted: train on all of them
            rows = np.concatenate(waiting)
            index.train(rows)
            index.add(rows)
        if index is None:
            raise ValueError("no vectors to index")
        self._use(index, scoring, method)

    def _empty_index(self, count: int, dim: int, metric: Metric) -> tuple[Any, str]:
        """A new, empty FAISS index for ``count`` vectors of ``dim`` dimensions, and its method."""
        faiss = _FAISS.get()
        p: FaissIndex.Params = self.params  # type: ignore[assignment]
        # cosine: inner product of unit vectors; Euclidean: (squared) L2
        faiss_metric = faiss.METRIC_INNER_PRODUCT if metric.higher_is_more_similar else faiss.METRIC_L2
        method = p.method if p.method != "auto" else ("flat" if count < max(p.exact_below, 39) else "hnsw")
        if method == "flat":
            return faiss.IndexFlat(dim, faiss_metric), method
        if method == "hnsw":
            index = faiss.IndexHNSWFlat(dim, p.hnsw_m, faiss_metric)
            index.hnsw.efConstruction = p.ef_construction
            return index, method
        nlist = max(1, min(p.nlist or int(2 * math.sqrt(count)), count // 39))  # k-means wants ~39 points per list
        index = faiss.IndexIVFFlat(faiss.IndexFlat(dim, faiss_metric), dim, nlist, faiss_metric)
        index.cp.max_points_per_centroid = 64
        return index, method

    def _use(self, index: Any, metric: Metric, method: str) -> None:
        """Keep ``index`` and apply the search-time parameters (they may differ from the build's)."""
        if method == "hnsw":
            index.hnsw.efSearch = self.params.ef_search  # type: ignore[attr-defined]
        elif method == "ivf":
            index.nprobe = min(self.params.nprobe, index.nlist)  # type: ignore[attr-defined]
        self._index, self._metric, self._count, self.method = index, metric, int(index.ntotal), method

    def save(self, path: str) -> None:
        _FAISS.get().write_index(self._index, str(path))

    def load(self, path: str, metric: MetricName) -> None:
        faiss = _FAISS.get()
        index = faiss.read_index(str(path))
        method = "hnsw" if isinstance(index, faiss.IndexHNSW) else "ivf" if isinstance(index, faiss.IndexIVF) else "flat"
        self._use(index, metric_named(metric), method)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        queries = self._metric.prepare(np.atleast_2d(np.asarray(queries, dtype=np.float32)))
        k = min(k, self._count)
        if self._index is None or k <= 0:
            return np.zeros((len(queries), 0), dtype=np.float32), np.zeros((len(queries), 0), dtype=np.int64)
        scores, ids = self._index.search(np.ascontiguousarray(queries), k)
        if not self._metric.higher_is_more_similar:
            scores = np.sqrt(np.maximum(scores, 0.0))  # FAISS gives squared L2
        return scores.astype(np.float32), ids.astype(np.int64)

    def memory_bytes(self) -> int:
        """Size of the index as FAISS serialises it (vectors, lists or graph)."""
        if self._index is None:
            return 0
        return int(_FAISS.get().serialize_index(self._index).nbytes)

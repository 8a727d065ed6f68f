"""Nearest-neighbour search over stored embeddings: the built-in exact index.

A :class:`~facekit.components.SearchIndex` is a plugin kind like detectors and
embedders (hook ``register_indexes``); galleries use one to find the faces nearest a
query. facekit ships :class:`ExactIndex`, a brute-force numpy search run in batches of
queries so that memory stays bounded; the ``facekit-faiss`` plugin adds approximate
indexes for galleries of millions of faces.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
from pydantic import Field

from facekit.components import Params, SearchIndex
from facekit.scoring.metric import COSINE, Metric, MetricName, metric_named


def top_k(scores: np.ndarray, k: int, higher_is_better: bool) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` best entries of each row of ``scores``: (values, column ids), best first."""
    k = min(k, scores.shape[1])
    if k <= 0:
        empty = np.zeros((scores.shape[0], 0))
        return empty.astype(scores.dtype), empty.astype(np.int64)
    keyed = -scores if higher_is_better else scores
    if k < scores.shape[1]:
        part = np.argpartition(keyed, k - 1, axis=1)[:, :k]
    else:
        part = np.broadcast_to(np.arange(scores.shape[1]), scores.shape).copy()
    order = np.argsort(np.take_along_axis(keyed, part, axis=1), axis=1, kind="stable")
    ids = np.take_along_axis(part, order, axis=1)
    return np.take_along_axis(scores, ids, axis=1), ids.astype(np.int64)


class ExactIndex(SearchIndex):
    """Exact search: every query against every stored vector, with numpy, in batches."""

    name = "exact"
    description = "exact nearest neighbours with numpy (brute force, batched); built in"
    exact = True

    class Params(Params):
        batch_size: int = Field(256, ge=1, description="queries scored together (memory: batch_size x gallery size)")

    def __init__(self, params: Optional[Params] = None, **kwargs: object) -> None:
        super().__init__(params, **kwargs)
        self._vectors = np.zeros((0, 0), dtype=np.float32)
        self._sq_norms = np.zeros(0, dtype=np.float32)
        self._metric: Metric = COSINE

    def build(self, vectors: np.ndarray, metric: MetricName) -> None:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2:
            raise ValueError(f"expected an (N, D) array of vectors, got shape {vectors.shape}")
        self._metric = metric_named(metric)
        self._vectors = self._metric.prepare(vectors)
        self._sq_norms = np.einsum("ij,ij->i", self._vectors, self._vectors)

    def __len__(self) -> int:
        return int(self._vectors.shape[0])

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        queries = self._metric.prepare(np.atleast_2d(queries))
        all_scores, all_ids = [], []
        for start in range(0, len(queries), self.params.batch_size):  # type: ignore[attr-defined]
            batch = queries[start : start + self.params.batch_size]  # type: ignore[attr-defined]
            products = batch @ self._vectors.T if len(self) else np.zeros((len(batch), 0), dtype=np.float32)
            if self._metric.higher_is_more_similar:  # cosine of unit rows: the products themselves
                scores, ids = top_k(products, k, higher_is_better=True)
            else:  # distances from the products: |q|^2 - 2 q.v + |v|^2
                squared = np.einsum("ij,ij->i", batch, batch)[:, None] - 2.0 * products + self._sq_norms[None, :]
                scores, ids = top_k(squared, k, higher_is_better=False)
                scores = np.sqrt(np.maximum(scores, 0.0))
            all_scores.append(scores)
            all_ids.append(ids)
        if not all_scores:
            return np.zeros((0, 0), dtype=np.float32), np.zeros((0, 0), dtype=np.int64)
        return np.concatenate(all_scores).astype(np.float32), np.concatenate(all_ids)

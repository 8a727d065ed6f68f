"""The Ray engine: facekit's per-image work as Ray tasks, embedding on a Ray Data actor pool."""

from __future__ import annotations

import json
import os
import socket
import time
from collections import deque
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Optional, Sequence

import numpy as np

from facekit.engine import Engine, ImageFaces, align_one
from facekit.errors import ConfigError, DependencyError
from facekit.collections.parquet import Part, ParquetReport, face_row, pending_sources

if TYPE_CHECKING:  # pragma: no cover
    from facekit.pipeline import Pipeline

#: images per align task: each task costs Ray a few milliseconds to schedule, an image about
#: 10 ms to decode, detect and align, so a few dozen make the overhead small
ALIGN_BATCH = 32
#: images per embed call of an actor (and per part file it writes)
EMBED_BATCH = 256
#: the install command said when ray is missing
INSTALL = "`pip install -e plugins/facekit-ray` from a facekit checkout (or `pip install 'ray[data]>=2.40,<2.61'`)"

Description = tuple[dict[str, Any], str]


def import_ray() -> Any:
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as exc:
        raise DependencyError(f"the Ray engine needs the ray package ({exc}); install it with {INSTALL}") from exc
    return ray


class RayEngine(Engine):
    """Decode, detect and align as Ray tasks; with :meth:`embed_to_parquet`, embed on an actor pool.

    ``address``: a running cluster (``"auto"``, ``"HOST:6379"``, ``"ray://HOST:10001"``);
    None joins the cluster this process is already connected to or, failing that, starts a
    local one (``init_options`` go to ``ray.init``), which :meth:`close` stops again.
    ``workers``: embedding actors (default: one per GPU when the cluster has GPUs, else
    one per CPU: without GPUs Ray Data runs the align step inside the actors);
    ``gpus_per_worker``: GPUs per actor (default: 1 when the
    cluster has GPUs, else 0).
    """

    name = "ray"

    def __init__(self, pipeline: "Pipeline", address: Optional[str] = None, *, workers: Optional[int] = None,
                 gpus_per_worker: Optional[float] = None, align_batch: int = ALIGN_BATCH,
                 embed_batch: int = EMBED_BATCH, progress: bool = False, **init_options: Any) -> None:
        super().__init__(pipeline)
        self.address = address
        self.workers = workers
        self.gpus_per_worker = gpus_per_worker
        self.align_batch = max(1, align_batch)
        self.embed_batch = max(1, embed_batch)
        self.progress = progress
        self.init_options = init_options
        self._ray: Any = None
        self._started_here = False
        self._description: Description = ({**pipeline.to_dict(), "workers": 1}, pipeline.where)

    # ------------------------------------------------------------ connecting
    def connect(self) -> Any:
        """Join (or start) the Ray cluster; returns the ``ray`` module."""
        if self._ray is not None:
            return self._ray
        ray = import_ray()
        if self.address not in (None, "auto", "local"):
            check_reachable(self.address)
        if not ray.is_initialized():
            options = {"include_dashboard": False, "log_to_driver": False, **self.init_options}
            try:
                ray.init(address=self.address, **options)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise ConfigError(
                    f"cannot connect to the Ray cluster at {self.address or 'a new local instance'!r} ({exc}); "
                    "check the address printed by `ray start --head` on the head node (HOST:6379), "
                    "or leave out --ray-address to start a local instance"
                ) from None
            self._started_here = True
        self._ray = ray
        return ray

    def close(self) -> None:
        ray, self._ray = self._ray, None
        if ray is not None and self._started_here:
            ray.shutdown()
            self._started_here = False

    def _resources(self) -> tuple[int, float]:
        """(embedding actors, GPUs per actor) for this cluster."""
        resources = self.connect().cluster_resources()
        gpus = float(resources.get("GPU", 0))
        per_worker = self.gpus_per_worker if self.gpus_per_worker is not None else (1.0 if gpus >= 1 else 0.0)
        if self.workers:
            return self.workers, per_worker
        if per_worker > 0:
            return max(1, int(gpus // per_worker)), per_worker
        # CPU only: Ray Data fuses the align tasks into the actors (same resources), so each
        # actor does both and one per CPU keeps every core busy
        return max(1, int(resources.get("CPU", 1))), 0.0

    # ------------------------------------------------------------ the Engine interface
    def map_faces(self, items: Iterable[Any]) -> Iterator[ImageFaces]:
        """Align as Ray tasks, ``align_batch`` images each; results come back here in input order."""
        ray = self.connect()
        remote = ray.remote(_align_chunk)
        description = ray.put(self._description)
        in_flight = 2 * max(1, int(ray.cluster_resources().get("CPU", 1)))
        source = iter(items)
        pending: deque[Any] = deque()

        def send() -> bool:
            chunk = list(islice(source, self.align_batch))
            if chunk:
                pending.append(remote.remote(description, chunk))
            return bool(chunk)

        try:
            while len(pending) < in_flight and send():
                pass
            while pending:
                results = ray.get(pending.popleft())
                send()
                yield from results
        finally:
            for ref in pending:
                ray.cancel(ref)

    # ------------------------------------------------------------ Parquet, all on the cluster
    def embed_to_parquet(self, sources: Sequence[str], out_dir: os.PathLike) -> ParquetReport:
        """Embed ``sources`` into the Parquet layout at ``out_dir`` (made by :func:`facekit.collections.parquet.open_dataset`).

        Ray Data streams the paths through align tasks (CPU) into an actor pool that embeds
        and writes one part file per batch, so ``out_dir`` must be on storage every node
        can write (a shared file system) for a cluster of several machines.
        """
        started = time.perf_counter()
        out = Path(out_dir).resolve()
        todo = pending_sources(out, sources)
        report = ParquetReport(out, skipped=len(sources) - len(todo))
        if not todo:
            return report
        ray = self.connect()
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = self.progress
        actors, gpus = self._resources()
        # at least two blocks per actor, or the pool has nothing to share out
        blocks = min(len(todo), max(2 * actors, -(-len(todo) // self.align_batch)), 10_000)
        dataset = ray.data.from_items([{"source": s} for s in todo], override_num_blocks=blocks)
        aligned = dataset.map_batches(_align_batch, fn_args=(self._description,), batch_size=self.align_batch,
                                      batch_format="pyarrow", num_cpus=1)
        # small runs: batches small enough that every actor gets a share
        embed_batch = max(1, min(self.embed_batch, -(-len(todo) // (4 * actors))))
        written = aligned.map_batches(
            _EmbedAndWrite, fn_constructor_args=(self._description, str(out)), batch_size=embed_batch,
            batch_format="pyarrow", compute=ray.data.ActorPoolStrategy(size=actors), num_gpus=gpus,
            num_cpus=0 if gpus else 1,
        )
        for batch in written.iter_batches(batch_format="pyarrow", batch_size=None):
            report.images += sum(batch.column("images").to_pylist())
            report.faces += sum(batch.column("faces").to_pylist())
            report.failures += sum(batch.column("failures").to_pylist())
        report.seconds = time.perf_counter() - started
        return report


def check_reachable(address: str, timeout: float = 3.0) -> None:
    """Fail in seconds, not after Ray's minute of retries, when nothing listens at ``address``."""
    target = address.split("://", 1)[-1]
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"Ray address {address!r} is not HOST:PORT (e.g. 10.0.0.5:6379), 'auto' or ray://HOST:PORT")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            pass
    except OSError as exc:
        raise ConfigError(
            f"no Ray cluster answers at {address!r} ({exc}); start one with `ray start --head` on the head node "
            "and pass the address it prints, or leave out --ray-address to start a local instance"
        ) from None


# ------------------------------------------------------------ in the Ray workers
_pipelines: dict[str, Any] = {}


def _pipeline(description: Description) -> Any:
    """The pipeline of ``description``, built once per worker process (Ray reuses its workers)."""
    key = json.dumps(description, sort_keys=True)
    if key not in _pipelines:
        from facekit.pipeline import Pipeline

        config, where = description
        _pipelines[key] = Pipeline.from_dict(config, where=where)
    return _pipelines[key]


def _align_chunk(description: Description, items: list[Any]) -> list[ImageFaces]:
    pipeline = _pipeline(description)
    return [align_one(pipeline, item) for item in items]


def _align_batch(batch: Any, description: Description) -> Any:
    """Paths -> one row per image: its chips (bytes) and faces (JSON), or the error."""
    import pyarrow as pa

    pipeline = _pipeline(description)
    rows: dict[str, list[Any]] = {"source": [], "chips": [], "faces": [], "error_type": [], "error": []}
    for source in batch.column("source").to_pylist():
        _, faces, error = align_one(pipeline, source)
        rows["source"].append(source)
        rows["chips"].append(b"".join(np.ascontiguousarray(f.chip, np.uint8).tobytes() for f in faces))
        rows["faces"].append(json.dumps([face_row(f) for f in faces]))
        rows["error_type"].append(type(error).__name__ if error is not None else None)
        rows["error"].append(str(error) if error is not None else None)
    return pa.table({**rows, "chips": pa.array(rows["chips"], pa.binary())})


class _EmbedAndWrite:
    """A Ray Data actor: loads the pipeline once, embeds every batch of aligned images, writes a part."""

    def __init__(self, description: Description, out_dir: str) -> None:
        self.pipeline = _pipeline(description)
        self.pipeline.embedder.warm_up()
        self.out_dir = out_dir
        self.chip_size = int(self.pipeline.aligner.chip_size)

    def __call__(self, batch: Any) -> Any:
        import pyarrow as pa

        part = Part.for_pipeline(self.pipeline)
        images: list[tuple[str, list[dict[str, Any]]]] = []
        chips: list[np.ndarray] = []
        for source, blob, faces, error_type, error in zip(*(batch.column(c).to_pylist() for c in (
                "source", "chips", "faces", "error_type", "error"))):
            if error_type is not None:
                part.add_failure(source, error_type, error)
                continue
            rows = json.loads(faces)
            size = self.chip_size
            chips.extend(np.frombuffer(blob, np.uint8).reshape(len(rows), size, size, 3))
            images.append((source, rows))
        vectors = self._embed(chips)
        start = 0
        for source, rows in images:
            part.add_rows(source, rows, vectors[start : start + len(rows)])
            start += len(rows)
        part.write(self.out_dir)
        return pa.table({"images": [len(images) + len(part.failures)], "faces": [len(part.faces)],
                         "failures": [len(part.failures)]})

    def _embed(self, chips: list[np.ndarray]) -> np.ndarray:
        """The vectors of ``chips`` in the pipeline's batches, as :meth:`Pipeline.embed_chips` computes them."""
        embedder = self.pipeline.embedder
        size = self.pipeline.config.batch_size
        out = [np.asarray(embedder.embed(np.stack(chips[i : i + size])), np.float32) for i in range(0, len(chips), size)]
        return np.concatenate(out) if out else np.zeros((0, embedder.dim), np.float32)


__all__ = ["RayEngine", "check_reachable", "import_ray"]

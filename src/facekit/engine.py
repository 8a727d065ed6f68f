"""Engines: where a pipeline's per-image work (decode, detect, align) runs.

An engine is bound to one :class:`~facekit.pipeline.Pipeline` and has one job::

    engine.map_faces(images) -> iterator of ImageFaces, one per image, in input order

Each :class:`ImageFaces` holds the aligned chips of the faces the pipeline's multi-face
policy selects, or the :class:`~facekit.errors.FacekitError` that stopped that image
(unreadable file, no face...). Embedding stays with the caller: chips from many images
are batched for the embedder in the calling process, where its threads and weights are.

Two engines ship with facekit:

* :class:`SequentialEngine`: everything in the calling thread, one image after another.
* :class:`ProcessPoolEngine`: a pool of worker processes (default: one per CPU core).
  Each worker builds the pipeline from its description once and loads the detector and
  aligner on first use; the embedder's weights are never loaded there. Images go out in
  small chunks with a bounded number in flight, so memory stays flat however many images
  there are, and come back in input order.

A third engine (a cluster, say) only needs to subclass :class:`Engine` and implement
``map_faces`` and ``close``. :func:`engine_for` picks an engine from the ``workers``
setting; ``Pipeline.embed`` and ``Pipeline.aggregate`` use it.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import threading
import time
from collections import deque
from contextlib import contextmanager
from itertools import islice
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, NamedTuple, Optional, Sequence

from facekit.errors import ConfigError, FacekitError
from facekit.types import AlignedFace

if TYPE_CHECKING:  # pragma: no cover
    from facekit.pipeline import Pipeline

#: with ``workers: 0`` (automatic), a pool is started only for at least this many images to
#: compute: starting workers costs about a second (measured: docs/howto/throughput.rst),
#: which a few images do not repay
AUTO_POOL_MIN_IMAGES = 48
#: images per task sent to a worker: large enough that sending costs little next to
#: detecting (about 8 ms an image), small enough to keep every worker busy to the end
CHUNK_IMAGES = 4
#: once images take longer than this each (large photos, the CNN fallback), they are sent
#: one at a time, so that one slow task does not keep the other workers waiting at the end
SLOW_IMAGE_SECONDS = 0.05
#: start method of the workers: a fresh interpreter per worker, since the calling process
#: may hold threads (torch's OpenMP pool, MediaPipe's graph) that do not survive a fork
START_METHOD = "spawn"


class ImageFaces(NamedTuple):
    """An engine's result for one image: its chips, or why there are none."""

    item: Any
    faces: list[AlignedFace]
    error: Optional[FacekitError] = None


class Engine:
    """Runs a pipeline's decode, detect and align steps over many images.

    A plugin offers an engine under its ``name`` through the hook ``register_engines``;
    ``facekit embed --engine NAME -o FOLDER`` then builds it as
    ``cls(pipeline, address=ADDRESS, progress=BOOL)`` (``address``: ``--ray-address``, None
    when not given; ``progress``: whether to show progress), passes it to
    :func:`facekit.collections.parquet.embed_to_parquet` and closes it afterwards.
    """

    name = ""

    def __init__(self, pipeline: "Pipeline") -> None:
        self.pipeline = pipeline

    def map_faces(self, items: Iterable[Any]) -> Iterator[ImageFaces]:
        """One :class:`ImageFaces` per item, in input order. Consumes ``items`` lazily."""
        raise NotImplementedError

    def close(self) -> None:
        """Release workers and other resources. Safe to call twice."""

    def __enter__(self) -> "Engine":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def align_one(pipeline: "Pipeline", item: Any) -> ImageFaces:
    """The chips of one image, its error caught (the work each engine does per image)."""
    if isinstance(item, AlignedFace):
        return ImageFaces(item, [item])
    try:
        return ImageFaces(item, pipeline.align(item))
    except FacekitError as exc:
        return ImageFaces(item, [], exc)


class SequentialEngine(Engine):
    """Everything in the calling thread: today's path for ``workers: 1``."""

    name = "sequential"

    def map_faces(self, items: Iterable[Any]) -> Iterator[ImageFaces]:
        for item in items:
            yield align_one(self.pipeline, item)


class ProcessPoolEngine(Engine):
    """Decode, detect and align in worker processes; results come back in input order.

    The workers rebuild the pipeline from its description (``pipeline.rebuild_recipe()``), so its
    components must come from installed plugins, not from classes registered in the
    calling process only. Each worker ignores Ctrl-C (the caller stops the pool) and
    exits if the calling process dies.
    """

    name = "process-pool"

    def __init__(self, pipeline: "Pipeline", workers: Optional[int] = None, *,
                 chunk: int = CHUNK_IMAGES, in_flight: Optional[int] = None) -> None:
        super().__init__(pipeline)
        self.workers = workers or os.cpu_count() or 1
        self.chunk = max(1, chunk)
        # enough queued work that the workers never wait while the caller embeds a batch
        images = in_flight or max(4 * pipeline.config.batch_size, 4 * self.workers * self.chunk)
        self.in_flight_chunks = max(2 * self.workers, images // self.chunk)
        self._executor: Any = None
        self._lock = threading.Lock()
        #: seconds the last pool took to start (every worker's pipeline built), for reports
        self.start_seconds: Optional[float] = None

    def _pool(self) -> Any:
        with self._lock:
            if self._executor is None:
                from concurrent.futures import ProcessPoolExecutor

                started = time.perf_counter()
                context = multiprocessing.get_context(START_METHOD)
                executor = ProcessPoolExecutor(self.workers, mp_context=context, initializer=_start_worker,
                                               initargs=(self.pipeline.rebuild_recipe(), os.getpid()))
                try:  # every worker up before any timing starts, and a broken description said at once
                    with _main_module_hidden():  # the workers are spawned by these first tasks
                        list(executor.map(_ready, range(self.workers)))
                except Exception:
                    executor.shutdown(wait=False, cancel_futures=True)
                    raise
                self.start_seconds = time.perf_counter() - started
                self._executor = executor
            return self._executor

    def warm_up(self) -> "ProcessPoolEngine":
        """Start the workers now (otherwise they start on the first ``map_faces``)."""
        self._pool()
        return self

    def map_faces(self, items: Iterable[Any]) -> Iterator[ImageFaces]:
        source = iter(items)
        executor = self._pool()
        pending: deque[Any] = deque()
        size = self.chunk

        def send() -> bool:
            chunk = list(islice(source, size))
            if chunk:
                pending.append(executor.submit(_align_chunk, chunk))
            return bool(chunk)

        try:
            while len(pending) < self.in_flight_chunks and send():
                pass
            while pending:
                results, seconds = pending.popleft().result()
                if seconds > SLOW_IMAGE_SECONDS * len(results):
                    size = 1
                send()
                yield from results
        except BaseException as exc:
            from concurrent.futures import CancelledError
            from concurrent.futures.process import BrokenProcessPool

            if isinstance(exc, BrokenProcessPool):
                self.close()
                raise FacekitError(
                    f"a worker process of pipeline {self.pipeline.name!r} died ({exc}); rerun with "
                    "workers=1 (`--workers 1`) to see the error in this process"
                ) from None
            if isinstance(exc, CancelledError) or (isinstance(exc, RuntimeError) and "shutdown" in str(exc)):
                raise FacekitError(
                    f"the worker pool of pipeline {self.pipeline.name!r} was closed while this call was "
                    "reading from it (another thread closed the pipeline or asked for another number of "
                    "workers); give each thread its own pipeline, or use one worker count"
                ) from None
            raise
        finally:
            for future in pending:
                future.cancel()

    def close(self) -> None:
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)

    def __del__(self) -> None:  # pragma: no cover - a pool nobody closed: stop it without waiting
        executor = self.__dict__.get("_executor")
        if executor is not None:
            try:
                executor.shutdown(wait=False, cancel_futures=True)
            except Exception:
                pass


@contextmanager
def _main_module_hidden() -> Iterator[None]:
    """Spawned workers need nothing from the caller's ``__main__``; without this they would
    run it again, and a user's script without an ``if __name__ == "__main__":`` guard would
    start its whole job once more in every worker."""
    main = sys.modules.get("__main__")
    if main is None:
        yield
        return
    saved = {key: main.__dict__[key] for key in ("__file__", "__spec__") if key in main.__dict__}
    main.__dict__.pop("__file__", None)
    main.__spec__ = None
    try:
        yield
    finally:
        main.__dict__.pop("__spec__", None)
        main.__dict__.update(saved)


def resolve_workers(workers: int) -> int:
    """The number of processes a ``workers`` setting means (0: one per CPU core)."""
    if workers < 0:
        raise ConfigError(f"workers must be 0 (one per CPU core) or a positive number, got {workers}")
    return workers or os.cpu_count() or 1


def wants_pool(workers: int, images: int) -> bool:
    """Whether ``images`` images to compute are worth a pool under this ``workers`` setting."""
    if images < 2 or resolve_workers(workers) < 2:
        return False
    if multiprocessing.current_process().daemon:  # e.g. inside a multiprocessing.Pool worker
        if workers == 0:
            return False
        raise ConfigError(
            f"workers: {workers} asks for worker processes, but this is a daemonic process (a "
            "multiprocessing pool's worker, say), which may not start any; use workers: 1 here"
        )
    return workers != 0 or images >= AUTO_POOL_MIN_IMAGES


# ------------------------------------------------------------------ in the workers
_worker_pipeline: Optional["Pipeline"] = None
_worker_error: Optional[BaseException] = None


def _start_worker(recipe: Callable[[], "Pipeline"], parent_pid: int) -> None:
    global _worker_pipeline, _worker_error
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the caller's to handle
    threading.Thread(target=_exit_with_parent, args=(parent_pid,), daemon=True).start()
    try:
        _worker_pipeline = recipe()
    except Exception as exc:  # kept, and raised in the caller by the first task (a failed
        _worker_error = exc  # initializer would only say "broken pool")


def _exit_with_parent(parent_pid: int) -> None:
    """A worker whose caller was killed (SIGKILL leaves no time to stop the pool) ends itself."""
    while True:
        time.sleep(1.0)
        if os.getppid() != parent_pid:
            os._exit(0)


def _ready(_: int) -> bool:
    if _worker_error is not None:
        raise _worker_error
    return True


def _align_chunk(items: Sequence[Any]) -> tuple[list[ImageFaces], float]:
    """The chunk's results and the seconds they took."""
    _ready(0)
    started = time.perf_counter()
    return [align_one(_worker_pipeline, item) for item in items], time.perf_counter() - started

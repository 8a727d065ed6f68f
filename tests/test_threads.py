"""One Pipeline shared by several threads gives the same answers as using it from one thread.

The Pipeline holds one lock per component; these tests start the threads together (a
barrier) on a cold pipeline, so lazy weight loading, detection, alignment and embedding all
overlap, and compare every answer with a sequential run.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from facekit import Pipeline

PHOTOS = (
    "face_recognition_examples/examples/obama_small.jpg",
    "face_recognition_examples/examples/obama-240p.jpg",
    "face_recognition_examples/examples/knn_examples/train/kit_harington/john2.jpeg",
    "face_recognition_examples/examples/alex-lacamoire.png",
    "lfw-dev/images/George_W_Bush/George_W_Bush_0353.jpg",
    "lfw-dev/images/Colin_Powell/Colin_Powell_0038.jpg",
)
THREADS = 4
#: the same chip through the same network gives the same vector; allow float noise from
#: torch's intra-op threads
ATOL = 1e-5


@pytest.fixture(scope="module")
def photos(faces_dir: Path) -> list[Path]:
    paths = [faces_dir / p for p in PHOTOS]
    assert all(p.is_file() for p in paths)
    return paths


@pytest.fixture(scope="module")
def sequential(photos: list[Path]) -> dict[str, np.ndarray]:
    pipeline = Pipeline.load("default")
    return {str(p): pipeline.embed_one(p).vector for p in photos}


def test_cold_pipeline_shared_by_threads(photos: list[Path], sequential: dict[str, np.ndarray]) -> None:
    pipeline = Pipeline.load("default")  # nothing loaded yet: the first calls race to load weights
    start = threading.Barrier(THREADS)
    jobs = [photos[i % len(photos)] for i in range(THREADS * 3)]  # each photo 2x, in different threads

    def work(index: int) -> list[tuple[str, np.ndarray]]:
        start.wait()
        return [(str(p), pipeline.embed_one(p).vector) for p in jobs[index::THREADS]]

    with ThreadPoolExecutor(THREADS) as pool:
        results = [item for part in pool.map(work, range(THREADS)) for item in part]
    assert len(results) == len(jobs)
    for source, vector in results:
        assert np.allclose(vector, sequential[source], atol=ATOL), source


def test_mixed_calls_from_threads(photos: list[Path], sequential: dict[str, np.ndarray]) -> None:
    """detect, embed (batched), compare at once, on one warm pipeline."""
    pipeline = Pipeline.load("default").warm_up()
    reference_faces = {str(p): len(pipeline.detect(p)) for p in photos[:3]}
    a, b = photos[0], photos[1]
    reference_score = float(np.linalg.norm(sequential[str(a)] - sequential[str(b)]))
    start = threading.Barrier(THREADS)

    def work(index: int) -> None:
        start.wait()
        if index == 0:
            batch = pipeline.embed(photos)
            for emb, photo in zip(batch, photos):
                assert np.allclose(emb.vector, sequential[str(photo)], atol=ATOL)
        elif index == 1:
            for photo, count in reference_faces.items():
                assert len(pipeline.detect(photo)) == count
        else:
            for _ in range(2):
                result = pipeline.compare(a, b)
                assert abs(result.score - reference_score) < ATOL and result.same

    with ThreadPoolExecutor(THREADS) as pool:
        for future in [pool.submit(work, i) for i in range(THREADS)]:
            future.result()  # re-raises a thread's assertion error here


def test_lazy_makes_its_value_once_across_threads_and_retries_after_a_failure() -> None:
    import time

    from facekit.components import Lazy

    calls: list[int] = []

    def make() -> object:
        calls.append(1)
        time.sleep(0.05)  # long enough for every thread to arrive while the first is making it
        return object()

    lazy = Lazy(make)
    barrier = threading.Barrier(6)

    def get() -> object:
        barrier.wait()
        return lazy.get()

    with ThreadPoolExecutor(6) as pool:
        values = list(pool.map(lambda _: get(), range(6)))
    assert len(calls) == 1 and all(v is values[0] for v in values)

    attempts: list[int] = []

    def flaky() -> str:
        attempts.append(1)
        if len(attempts) == 1:
            raise OSError("first try fails")
        return "ok"

    retrying = Lazy(flaky)
    with pytest.raises(OSError):
        retrying.get()
    assert retrying.get() == "ok" and retrying.get() == "ok" and len(attempts) == 2

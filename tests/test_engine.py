"""The worker-pool engine (facekit.engine): real photos, the default pipeline's real models.

A pool gives what the sequential path gives, in the same order, with the same failures;
the cache, resume after a kill and skip-bad-files keep working with workers; workers
never import torch for a pipeline that does not need it, and never outlive their caller.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from facekit import Pipeline
from facekit.cache import EmbeddingCache
from facekit.cli import main
from facekit.engine import AUTO_POOL_MIN_IMAGES, ProcessPoolEngine, SequentialEngine, resolve_workers, wants_pool
from facekit.errors import ConfigError

LFW = "lfw-dev/images"


def _lfw_photos(faces_dir: Path, count: int, skip: int = 0) -> list[Path]:
    """``count`` photos of different people (one per folder, in name order)."""
    folders = sorted(p for p in (faces_dir / LFW).iterdir() if p.is_dir())[skip : skip + count]
    return [sorted(folder.glob("*.jpg"))[0] for folder in folders]


def _mixed_inputs(faces_dir: Path, folder: Path) -> list[str]:
    """Good photos with a two-person photo, a text file and a truncated JPEG among them."""
    photos = [str(p) for p in _lfw_photos(faces_dir, 8, skip=40)]
    text = folder / "notes.jpg"
    text.write_text("not a photo\n")
    truncated = folder / "truncated.jpg"
    truncated.write_bytes(Path(photos[0]).read_bytes()[:1500])
    two = str(faces_dir / "face_recognition_examples" / "examples" / "two_people.jpg")
    return [str(text), *photos[:4], two, str(truncated), *photos[4:]]


@pytest.fixture(scope="module")
def pipeline() -> Pipeline:
    built = Pipeline.load("default")
    yield built
    built.close()


def test_pool_gives_the_sequential_results_in_input_order(pipeline: Pipeline, faces_dir: Path, tmp_path: Path) -> None:
    inputs = _mixed_inputs(faces_dir, tmp_path)
    every_face = Pipeline.from_dict({**pipeline.to_dict(), "multi_face": "all"})
    try:
        for built in (pipeline, every_face):
            alone = built.embed(inputs, on_error="skip", workers=1)
            pooled = built.embed(inputs, on_error="skip", workers=2)
            assert isinstance(built.engine_for(len(inputs), 2), ProcessPoolEngine)
            assert [e.source for e in pooled] == [e.source for e in alone]
            assert np.allclose(np.stack([e.vector for e in pooled]), np.stack([e.vector for e in alone]), atol=1e-5)
            assert pooled.failures == alone.failures and len(pooled.failures) == 2
            assert [f[0] for f in pooled.failures] == [inputs[0], inputs[6]]
        # with every face kept, the two-person photo gives two chips, in place
        sources = [e.source for e in pooled]
        assert sources.count(inputs[5]) == 2 and sources.index(inputs[5]) == 4
    finally:
        every_face.close()


def test_pool_workers_never_import_torch_and_run_elsewhere(pipeline: Pipeline, faces_dir: Path) -> None:
    engine = pipeline.engine_for(100, 2)
    assert isinstance(engine, ProcessPoolEngine) and engine.workers == 2
    photo = str(_lfw_photos(faces_dir, 1)[0])
    # each fact is gathered right after that worker aligned a photo, whichever worker runs it
    facts = [engine._pool().submit(_worker_facts, photo).result() for _ in range(4)]
    assert all(pid != os.getpid() for pid, _, _, _ in facts)
    assert all(faces == 1 for _, faces, _, _ in facts)
    assert all(dlib_loaded for _, _, dlib_loaded, _ in facts), "the workers did the detecting"
    assert not any(torch_loaded for _, _, _, torch_loaded in facts), "a worker imported torch"


def _worker_facts(photo: str) -> tuple[int, int, bool, bool]:
    from facekit.engine import _align_chunk

    (result,), _ = _align_chunk([photo])
    return (os.getpid(), len(result.faces), "dlib" in sys.modules or "_dlib_pybind11" in sys.modules,
            "torch" in sys.modules)


def test_pool_with_a_cache_resumes_and_matches(pipeline: Pipeline, faces_dir: Path, tmp_path: Path) -> None:
    photos = [str(p) for p in _lfw_photos(faces_dir, 6, skip=80)]
    first = EmbeddingCache(tmp_path / "cache", pipeline.embedding_description())
    pipeline.embed(photos[:3], cache=first, workers=2)
    assert (first.hits, first.misses) == (0, 3)
    again = EmbeddingCache(tmp_path / "cache", pipeline.embedding_description())
    resumed = pipeline.embed(photos, cache=again, workers=2)
    assert (again.hits, again.misses) == (3, 3), "cached photos are read, not sent to the workers"
    fresh = pipeline.embed(photos, workers=1)
    assert [e.source for e in resumed] == photos
    assert np.allclose(np.stack([e.vector for e in resumed]), np.stack([e.vector for e in fresh]), atol=1e-5)


def test_aggregate_with_workers_is_the_same_mean_face(pipeline: Pipeline, faces_dir: Path) -> None:
    photos = [str(p) for p in sorted((faces_dir / LFW / "Amelie_Mauresmo").glob("*.jpg"))[:6]]
    alone = pipeline.aggregate(photos, "meanface", workers=1)
    pooled = pipeline.aggregate(photos, "meanface", workers=2)
    assert pooled.count == alone.count == 6
    assert np.array_equal(pooled.image, alone.image)


def test_the_workers_setting() -> None:
    assert resolve_workers(0) == (os.cpu_count() or 1) and resolve_workers(3) == 3
    assert not wants_pool(1, 10_000), "1 means the calling process only"
    assert not wants_pool(4, 1), "one image is never worth a pool"
    assert wants_pool(2, 2)
    cores = os.cpu_count() or 1
    assert wants_pool(0, AUTO_POOL_MIN_IMAGES) == (cores > 1)
    assert not wants_pool(0, AUTO_POOL_MIN_IMAGES - 1), "automatic: a few images are not worth starting workers"
    with pytest.raises(ConfigError, match="workers"):
        Pipeline.from_dict({**Pipeline.load("default").to_dict(), "workers": -1})
    built = Pipeline.from_dict({**Pipeline.load("default").to_dict(), "workers": 1})
    assert isinstance(built.engine_for(10_000), SequentialEngine)
    assert Pipeline.from_yaml(built.to_yaml()).config.workers == 1


def test_cli_embed_with_workers_writes_what_one_process_writes(faces_dir: Path, tmp_path: Path) -> None:
    inputs = _mixed_inputs(faces_dir, tmp_path)
    outputs = {}
    for workers in ("1", "2"):
        out = tmp_path / f"out{workers}.npz"
        result = CliRunner().invoke(main, ["embed", *inputs, "-o", str(out), "--no-progress", "--workers", workers])
        assert result.exit_code == 0, result.output
        assert "9 embedding(s) from 11 file(s)" in result.stdout and "2 file(s) skipped" in result.stderr
        with np.load(out, allow_pickle=False) as data:
            outputs[workers] = {key: data[key].copy() for key in ("sources", "vectors", "failed_sources", "failed_errors")}
    for key in ("sources", "failed_sources", "failed_errors"):
        assert list(outputs["1"][key]) == list(outputs["2"][key])
    assert np.allclose(outputs["1"]["vectors"], outputs["2"]["vectors"], atol=1e-5)


def _children(pid: int) -> set[int]:
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            found |= {int(x) for x in task.read_text().split()}
        except OSError:
            pass
    return found


def _alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in status


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads worker ids from Linux /proc")
def test_killed_pooled_embed_leaves_no_workers_and_resumes(pipeline: Pipeline, faces_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    photos = _lfw_photos(faces_dir, 32, skip=120)  # enough that neither interruption comes too late
    for i, photo in enumerate(photos):
        (folder / f"{i:02d}_{photo.name}").symlink_to(photo)
    (folder / "99_broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really")
    small_batches = tmp_path / "pipeline.yaml"  # cache entries every 2 photos
    small_batches.write_text(Pipeline.from_dict({**pipeline.to_dict(), "batch_size": 2}).to_yaml())
    cache, out = tmp_path / "cache", tmp_path / "out.npz"
    command = [sys.executable, "-m", "facekit", "embed", str(folder), "--cache", str(cache), "-o", str(out),
               "--pipeline", str(small_batches), "--no-progress", "--workers", "2"]

    def run_until(entries: int, sig: int) -> tuple[subprocess.Popen, set[int]]:
        child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 240
        while not cache.is_dir() or _cache_entries(cache) < entries:
            assert child.poll() is None, (f"the run ended before it could be interrupted at {entries} cached "
                                          f"photos: {child.communicate()}")
            assert time.monotonic() < deadline, "no progress"
            time.sleep(0.05)
        workers = _children(child.pid)
        assert len(workers) >= 2, f"the pool's workers are running (children: {workers}, returncode {child.poll()})"
        child.send_signal(sig)
        child.wait(timeout=60)
        return child, workers

    def gone(pids: set[int], seconds: float = 30) -> bool:  # a worker ends its current image first
        deadline = time.monotonic() + seconds
        while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.1)
        return not any(_alive(pid) for pid in pids)

    child, workers = run_until(4, signal.SIGTERM)  # `kill`: handled like Ctrl-C, the pool is stopped
    stderr = child.stderr.read()  # type: ignore[union-attr]
    assert child.returncode == 130 and "run the same command again to resume" in stderr, stderr
    assert "Traceback" not in stderr
    assert gone(workers), "SIGTERM left worker processes behind"
    after_term = _cache_entries(cache)

    child, workers = run_until(after_term + 4, signal.SIGKILL)  # no chance to clean up: workers end themselves
    assert child.returncode == -signal.SIGKILL
    assert gone(workers), "worker processes outlived a killed caller"
    assert not out.exists()
    cached = _cache_entries(cache)

    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert f"{len(photos)} embedding(s) from {len(photos) + 1} file(s) ({cached} read from the cache)" in done.stdout
    with np.load(out, allow_pickle=False) as data:
        assert list(data["failed_sources"]) == [str(folder / "99_broken.jpg")]
        resumed = dict(zip(data["sources"], data["vectors"]))
    for name in (f"00_{photos[0].name}", f"31_{photos[31].name}"):
        assert np.allclose(resumed[str(folder / name)], pipeline.embed_one(folder / name).vector, atol=1e-4)


@pytest.mark.parametrize("command", ["embed", "evaluate", "calibrate", "audit", "average"])
def test_every_long_command_takes_workers(command: str) -> None:
    result = CliRunner().invoke(main, [command, "--help"])
    assert result.exit_code == 0 and "--workers" in result.output
    bad = CliRunner().invoke(main, [command, "--workers", "-1"])
    assert bad.exit_code == 2 and "--workers" in bad.output



def test_automatic_workers_stay_in_process_for_components_registered_here(facekit_plugin) -> None:  # type: ignore[no-untyped-def]
    """Workers load plugins from entry points only: a pipeline using a component registered in
    this process would fail to build there, so the automatic setting never starts a pool for it."""
    from .fakes import FakePlugin

    facekit_plugin(FakePlugin(), name="toy-in-process")
    toy = Pipeline.from_dict({"name": "toy", "detector": "test.center", "aligner": "test.resize",
                              "embedder": "test.meancolour"})
    assert isinstance(toy.engine_for(AUTO_POOL_MIN_IMAGES * 2), SequentialEngine)
    assert Pipeline.load("default")._rebuildable_in_workers()  # installed plugins: a pool may serve it


def test_a_daemonic_process_never_starts_workers() -> None:
    """Inside a multiprocessing pool's worker (daemonic), automatic means in-process, and an
    explicit worker count is a clear error rather than Python's assertion."""
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(1) as pool:
        assert pool.apply(wants_pool, (0, AUTO_POOL_MIN_IMAGES * 2)) is False
        with pytest.raises(ConfigError, match="daemonic process.*workers: 1"):
            pool.apply(wants_pool, (2, AUTO_POOL_MIN_IMAGES * 2))


def _cache_entries(cache: Path) -> int:
    """Finished cache entries: an atomic write's temporary file (a dot-file) is not one."""
    return sum(1 for p in cache.glob("*.npy") if not p.name.startswith("."))

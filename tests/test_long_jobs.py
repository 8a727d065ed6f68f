"""Long jobs (``embed``, ``average``, ``evaluate``): a bad file never aborts the run, the
failures are listed, outputs are written atomically, and an interrupted ``embed`` (Ctrl-C or
SIGKILL) leaves no half-written output and resumes from its cache without recomputing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from facekit import Pipeline
from facekit.cache import EmbeddingCache
from facekit.cli import main

LFW = "lfw-dev/images"


def _lfw_photos(faces_dir: Path, count: int) -> list[Path]:
    """``count`` photos of different people (one per folder, in name order)."""
    folders = sorted(p for p in (faces_dir / LFW).iterdir() if p.is_dir())
    return [sorted(folder.glob("*.jpg"))[0] for folder in folders[:count]]


def _bad_files(folder: Path, faces_dir: Path) -> list[Path]:
    text = folder / "notes.jpg"
    text.write_text("not a photo\n")
    truncated = folder / "truncated.jpg"
    truncated.write_bytes(_lfw_photos(faces_dir, 1)[0].read_bytes()[:2000])
    return [text, truncated]


def _temp_files(folder: Path) -> list[str]:
    return [p.name for p in folder.rglob(".*.tmp*")]


@pytest.fixture(scope="module")
def pipeline() -> Pipeline:
    return Pipeline.load("default")


def test_embed_skips_bad_files_lists_them_and_writes_both_formats(faces_dir: Path, tmp_path: Path) -> None:
    photos = _lfw_photos(faces_dir, 3)
    bad = _bad_files(tmp_path, faces_dir)
    args = [str(bad[0]), *map(str, photos[:2]), str(bad[1]), str(photos[2])]  # bad files first and in the middle
    runner = CliRunner()
    result = runner.invoke(main, ["embed", *args, "-o", str(tmp_path / "out.npz"), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "3 embedding(s) from 5 file(s)" in result.stdout
    assert "2 file(s) skipped" in result.stderr
    assert f"skipped {bad[0]}: not a recognised image format" in result.stderr
    assert f"skipped {bad[1]}: corrupt or truncated image" in result.stderr
    with np.load(tmp_path / "out.npz", allow_pickle=False) as data:
        assert list(data["sources"]) == [str(p) for p in photos]
        assert data["vectors"].shape == (3, 128) and np.isfinite(data["vectors"]).all()
        assert list(data["failed_sources"]) == [str(b) for b in bad]
        assert all(data["failed_errors"])
        npz_vectors = data["vectors"].copy()
    result = runner.invoke(main, ["embed", *args, "-o", str(tmp_path / "out.json"), "--no-progress"])
    assert result.exit_code == 0
    report = json.loads((tmp_path / "out.json").read_text())
    assert [e["source"] for e in report["embeddings"]] == [str(p) for p in photos]
    assert np.allclose([e["vector"] for e in report["embeddings"]], npz_vectors, atol=1e-6)
    assert [f["source"] for f in report["failures"]] == [str(b) for b in bad]
    assert (tmp_path / "out.npz").stat().st_mode & 0o044, "outputs are readable like any new file, not 0600"


def test_a_failed_write_keeps_the_previous_output(faces_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    photo = str(_lfw_photos(faces_dir, 1)[0])
    out = tmp_path / "out.npz"
    out.write_bytes(b"the previous, complete output")
    import facekit.cli.embed as embed_module

    def broken_savez(handle, **arrays):  # type: ignore[no-untyped-def]
        handle.write(b"PK\x03\x04 half an archive")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(embed_module.np, "savez", broken_savez)
    result = CliRunner().invoke(main, ["embed", photo, "-o", str(out), "--no-progress"])
    assert result.exit_code != 0
    assert out.read_bytes() == b"the previous, complete output"
    assert _temp_files(tmp_path) == []


def test_api_cache_resumes_without_recomputing(pipeline: Pipeline, faces_dir: Path, tmp_path: Path) -> None:
    photos = _lfw_photos(faces_dir, 4)
    first = EmbeddingCache(tmp_path / "cache", pipeline.to_yaml())
    fresh = pipeline.embed(photos[:2], cache=first)
    assert (first.hits, first.misses) == (0, 2)
    again = EmbeddingCache(tmp_path / "cache", pipeline.to_yaml())
    resumed = pipeline.embed(photos, cache=again)
    assert (again.hits, again.misses) == (2, 2), "the two cached photos are read, not recomputed"
    assert np.array_equal(np.stack([e.vector for e in resumed[:2]]), np.stack([e.vector for e in fresh]))
    other = Pipeline.from_dict({**pipeline.to_dict(), "aligner": {"name": "dlib.chip5", "params": {"size": 150, "padding": 0.3}}})
    stale = EmbeddingCache(tmp_path / "cache", other.to_yaml())
    other.embed(photos[:1], cache=stale)
    assert stale.hits == 0, "a changed pipeline never reuses another pipeline's vectors"


def _start_embed(folder: Path, cache: Path, out: Path, pipeline_yaml: Path) -> subprocess.Popen:
    command = [sys.executable, "-m", "facekit", "embed", str(folder), "--cache", str(cache), "-o", str(out),
               "--pipeline", str(pipeline_yaml), "--no-progress"]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _cached(cache: Path) -> dict[str, int]:
    """Cache entry -> mtime (ns)."""
    if not cache.is_dir():
        return {}
    return {p.name: p.stat().st_mtime_ns for p in cache.iterdir() if not p.name.startswith(".")}


def _interrupt_after(child: subprocess.Popen, cache: Path, at_least: int, sig: int, timeout: float = 240) -> dict[str, int]:
    deadline = time.monotonic() + timeout
    while len(_cached(cache)) < at_least:
        assert child.poll() is None, f"the run ended before it could be interrupted: {child.communicate()}"
        assert time.monotonic() < deadline, "no progress"
        time.sleep(0.05)
    child.send_signal(sig)
    child.wait(timeout=60)
    return _cached(cache)


def _check_output_complete_or_absent(out: Path, expected: int) -> None:
    if out.exists():
        with np.load(out, allow_pickle=False) as data:
            assert len(data["sources"]) + len(data["failed_sources"]) == expected


def test_interrupted_embed_leaves_no_partial_output_and_resumes(pipeline: Pipeline, faces_dir: Path,
                                                                tmp_path: Path) -> None:
    """SIGTERM (what `kill` sends; Ctrl-C takes the same KeyboardInterrupt path), then SIGKILL, then
    a run to the end: no half-written output at any point, and each run computes only the photos
    the earlier runs had not cached."""
    folder = tmp_path / "photos"
    folder.mkdir()
    photos = _lfw_photos(faces_dir, 24)
    for i, photo in enumerate(photos):
        (folder / f"{i:02d}_{photo.name}").symlink_to(photo)
    (folder / "99_broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really")
    total = len(photos) + 1
    small_batches = tmp_path / "pipeline.yaml"  # the default pipeline, caching every 2 photos
    small_batches.write_text(Pipeline.from_dict({**pipeline.to_dict(), "batch_size": 2}).to_yaml())
    cache, out = tmp_path / "cache", tmp_path / "out.npz"

    # 1. `kill` (SIGTERM, handled like Ctrl-C): a clean exit, status 130, with a hint how to resume
    child = _start_embed(folder, cache, out, small_batches)
    after_term = _interrupt_after(child, cache, 4, signal.SIGTERM)
    stderr = child.stderr.read()  # type: ignore[union-attr]
    assert child.returncode == 130, stderr
    assert "Interrupted" in stderr and "run the same command again to resume" in stderr
    assert "Traceback" not in stderr
    _check_output_complete_or_absent(out, total)
    assert not out.exists()
    assert _temp_files(tmp_path) == []

    # 2. SIGKILL: nothing can be cleaned up, yet there is still no partial output
    child = _start_embed(folder, cache, out, small_batches)
    after_kill = _interrupt_after(child, cache, len(after_term) + 4, signal.SIGKILL)
    assert child.returncode == -signal.SIGKILL
    _check_output_complete_or_absent(out, total)
    assert not out.exists()
    assert all(after_kill[name] == mtime for name, mtime in after_term.items()), "cached entries not rewritten"

    # 3. a rerun finishes the job, reading what is cached instead of recomputing it
    child = _start_embed(folder, cache, out, small_batches)
    stdout, stderr = child.communicate(timeout=600)
    done = subprocess.CompletedProcess(child.args, child.returncode, stdout, stderr)
    assert done.returncode == 0, done.stderr
    assert f"{len(photos)} embedding(s) from {total} file(s) ({len(after_kill)} read from the cache)" in done.stdout
    final = _cached(cache)
    assert all(final[name] == mtime for name, mtime in after_kill.items()), "cached entries not recomputed"
    assert len(final) == len(photos)
    with np.load(out, allow_pickle=False) as data:
        assert len(data["sources"]) == len(photos) and list(data["failed_sources"]) == [str(folder / "99_broken.jpg")]
        resumed = dict(zip(data["sources"], data["vectors"]))
    # the resumed vectors are the ones a fresh run computes
    for name in (f"00_{photos[0].name}", f"23_{photos[23].name}"):
        assert np.allclose(resumed[str(folder / name)], pipeline.embed_one(folder / name).vector, atol=1e-4)
    assert not list(out.parent.glob(".out.npz.*")), "no temporary output left beside the result"


def test_average_skips_a_bad_file(faces_dir: Path, tmp_path: Path) -> None:
    photos = [str(p) for p in sorted((faces_dir / LFW / "George_W_Bush").glob("*.jpg"))[:3]]
    bad = _bad_files(tmp_path, faces_dir)
    out = tmp_path / "mean.png"
    result = CliRunner().invoke(main, ["average", str(bad[0]), *photos, str(bad[1]), "-o", str(out), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert out.is_file() and out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for path in bad:
        assert str(path) in result.stderr
    assert _temp_files(tmp_path) == []


def _pair_set(faces_dir: Path, root: Path, lines: str) -> tuple[Path, Path, Path]:
    """Four people with two photos each (LFW layout), Person_C's second photo broken."""
    images = root / "images"
    sources = iter(_lfw_photos(faces_dir, 8))
    for person in ("Person_A", "Person_B", "Person_C", "Person_D"):
        (images / person).mkdir(parents=True)
        for n in (1, 2):
            (images / person / f"{person}_{n:04d}.jpg").symlink_to(next(sources))
    broken = images / "Person_C" / "Person_C_0002.jpg"
    broken.unlink()
    broken.write_bytes(b"GIF89a broken")
    pairs = root / "pairs.txt"
    pairs.write_text(lines)
    return images, pairs, broken


def test_evaluate_lists_a_bad_image_and_still_reports(faces_dir: Path, tmp_path: Path) -> None:
    images, pairs, broken = _pair_set(faces_dir, tmp_path, (
        "4\nPerson_A\t1\t2\nPerson_B\t1\t2\nPerson_C\t1\t2\nPerson_D\t1\t2\n"
        "Person_A\t1\tPerson_B\t1\nPerson_B\t2\tPerson_C\t2\nPerson_C\t1\tPerson_D\t1\nPerson_D\t2\tPerson_A\t2\n"))
    out = tmp_path / "report.json"
    result = CliRunner().invoke(main, ["evaluate", "--pairs", str(pairs), "--images", str(images), "--folds", "2",
                                       "-o", str(out), "--no-plot", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert str(broken) in result.stderr
    assert str(broken) in out.read_text(), "the report lists the failed image"


def test_evaluate_with_too_few_usable_pairs_fails_cleanly(faces_dir: Path, tmp_path: Path) -> None:
    images, pairs, _ = _pair_set(faces_dir, tmp_path, (
        "2\nPerson_A\t1\t2\nPerson_C\t1\t2\nPerson_A\t1\tPerson_B\t1\nPerson_B\t2\tPerson_C\t2\n"))
    result = CliRunner().invoke(main, ["evaluate", "--pairs", str(pairs), "--images", str(images), "--folds", "2",
                                       "-o", str(tmp_path / "r.json"), "--no-plot", "--no-progress"])
    assert isinstance(result.exception, SystemExit) and result.exit_code in (2, 5), result.output
    assert result.stderr.startswith("Error: ")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="POSIX only")
def test_a_fifo_among_the_inputs_never_blocks_a_cached_run(pipeline: Pipeline, faces_dir: Path, tmp_path: Path) -> None:
    fifo = tmp_path / "fifo.jpg"
    os.mkfifo(fifo)
    photo = _lfw_photos(faces_dir, 1)[0]
    results: list = []
    worker = threading.Thread(target=lambda: results.append(
        pipeline.embed([fifo, photo], on_error="skip", cache=tmp_path / "cache")), daemon=True)
    worker.start()
    worker.join(timeout=120)
    assert not worker.is_alive(), "reading the FIFO blocked the run"
    batch = results[0]
    assert len(batch) == 1 and batch.failures == [(str(fifo), f"{fifo}: not a regular file (a device, FIFO or socket); "
                                                  "pass an image file")]

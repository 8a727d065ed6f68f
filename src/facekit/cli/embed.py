"""``facekit embed PATHS... -o FILE``."""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any, Optional

import click
import numpy as np

from facekit.cli import pipeline_option
from facekit.cli.common import expand_image_paths, handle_errors, load_pipeline
from facekit.io import atomic_write, atomic_write_text

#: images handed to Pipeline.embed at a time, in embedder batches: only the vectors of
#: finished chunks are kept, so memory stays flat however many images there are
CHUNK_BATCHES = 4


@click.command("embed")
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False),
              help="output file: .npz (arrays `sources`, `vectors`) or .json")
@pipeline_option
@click.option("--cache", type=click.Path(file_okay=False), default=None,
              help="directory to keep per-image results in; a rerun resumes from it")
@click.option("--progress/--no-progress", default=True, show_default=True)
@handle_errors
def embed_command(paths: tuple[str, ...], output: str, pipeline: str, cache: Optional[str], progress: bool) -> None:
    """Embed the faces in PATHS (files or folders) and write them to OUTPUT.

    Bad files and photos with no face are reported and skipped; OUTPUT is written
    atomically, so an interrupted run leaves either the whole file or none. With
    --cache DIR, each image's result is kept as soon as it is computed: after an
    interruption (Ctrl-C, kill, crash) the same command resumes where it stopped.
    """
    files = expand_image_paths(paths)
    built = load_pipeline(pipeline)
    store = None
    if cache is not None:
        from facekit.cache import EmbeddingCache

        store = EmbeddingCache(cache, built.to_yaml())
    previous_sigterm = _sigterm_as_interrupt()
    try:
        sources, vectors, failures = _embed_streaming(built, files, store, progress)
    except KeyboardInterrupt:
        if store is not None:
            click.echo(f"the results computed before the interruption are kept in {cache}; "
                       "run the same command again to resume.", err=True)
        raise
    finally:
        if previous_sigterm is not _NOT_SET:
            signal.signal(signal.SIGTERM, previous_sigterm if previous_sigterm is not None else signal.SIG_DFL)
    out = Path(output)
    if out.suffix == ".json":
        atomic_write_text(out, json.dumps({
            "pipeline": built.name, "model": built.embedder.model_name, "metric": built.embedder.metric,
            "embeddings": [{"source": s, "vector": v.tolist()} for s, v in zip(sources, vectors)],
            "failures": failures,
        }))
    else:
        if out.suffix != ".npz":
            out = out.with_suffix(out.suffix + ".npz")

        def write(tmp: Path) -> None:
            with open(tmp, "wb") as handle:
                np.savez(handle, sources=np.array(sources, dtype=str), vectors=vectors,
                         model=np.array(built.embedder.model_name), metric=np.array(built.embedder.metric),
                         failed_sources=np.array([f["source"] for f in failures], dtype=str),
                         failed_errors=np.array([f["error"] for f in failures], dtype=str))
        atomic_write(out, write)
    cached = f" ({store.hits} read from the cache)" if store is not None else ""
    click.echo(f"{len(sources)} embedding(s) from {len(files)} file(s){cached} written to {out}")
    if failures:
        click.echo(f"{len(failures)} file(s) skipped:", err=True)
    for failure in failures:
        source, error = failure["source"], failure["error"]
        click.echo(f"skipped {error}" if error.startswith(source) else f"skipped {source}: {error}", err=True)


def _embed_streaming(built: Any, files: list[str], store: Any, progress: bool) -> tuple[list[str], np.ndarray, list[dict[str, str]]]:
    """Embed ``files`` chunk by chunk, keeping only sources, vectors and failures."""
    from tqdm.auto import tqdm

    chunk = max(1, built.config.batch_size * CHUNK_BATCHES)
    sources: list[str] = []
    vectors: list[np.ndarray] = []
    failures: list[dict[str, str]] = []
    with tqdm(total=len(files), desc=f"embedding ({built.name})", unit="img", disable=not progress,
              dynamic_ncols=True) as bar:
        for start in range(0, len(files), chunk):
            part = files[start : start + chunk]
            batch = built.embed(part, on_error="skip", progress=False, cache=store)
            sources.extend(e.source or "" for e in batch)
            vectors.extend(np.asarray(e.vector, dtype=np.float32) for e in batch)
            failures.extend({"source": s, "error": m} for s, m in batch.failures)
            bar.update(len(part))
    stacked = np.stack(vectors) if vectors else np.zeros((0, built.embedder.dim), np.float32)
    return sources, stacked, failures


def _sigterm_as_interrupt() -> Any:
    """Treat SIGTERM like Ctrl-C (clean exit, temporary files removed); returns the old handler."""

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    try:
        return signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread (e.g. called from a test runner's worker)
        return _NOT_SET


_NOT_SET = object()

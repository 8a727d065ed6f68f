"""``facekit embed PATHS... -o FILE``."""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any, Optional

import click
import numpy as np

from facekit.cli import pipeline_option, workers_option
from facekit.cli.common import expand_image_paths, handle_errors, load_pipeline
from facekit.io import atomic_write, atomic_write_text
from facekit.plugins import LOCAL_ENGINE, get_registry

#: images handed to Pipeline.embed at a time, in embedder batches: only the vectors of
#: finished chunks are kept, so memory stays flat however many images there are
CHUNK_BATCHES = 4
#: with worker processes, chunks this many times longer: the pool drains at the end of each
#: chunk (the workers wait while the last batch is embedded), so fewer ends keep them busy
POOL_CHUNK_FACTOR = 8


@click.command("embed")
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option("-o", "--output", required=True, type=click.Path(),
              help="output file: .npz (arrays `sources`, `vectors`, `boxes`, `face_indices`, `faces_found`) or .json; "
              "or a folder (any other name): facekit's Parquet layout, resumable")
@pipeline_option
@click.option("--engine", default=LOCAL_ENGINE, show_default=True, metavar="NAME",
              help="where the work runs: 'local' (this machine, see --workers) or an engine a plugin registers, "
              "such as 'ray' (a Ray cluster, from the facekit-ray plugin; `facekit plugins` lists them); "
              "engines other than local write a Parquet folder")
@click.option("--ray-address", default=None, metavar="ADDR",
              help="the Ray cluster to join (HOST:6379 from `ray start --head`, or 'auto'); default: a local instance. "
              "Given to any --engine other than local as its `address`")
@click.option("--path-column", default=None, metavar="NAME",
              help="with a .parquet or .csv file among PATHS: its column of image paths [default: path, source, file]")
@click.option("--cache", type=click.Path(file_okay=False), default=None,
              help="directory to keep per-image results in; a rerun resumes from it")
@click.option("--progress/--no-progress", default=True, show_default=True)
@workers_option
@handle_errors
def embed_command(paths: tuple[str, ...], output: str, pipeline: str, engine: str, ray_address: Optional[str],
                  path_column: Optional[str], cache: Optional[str], progress: bool, workers: Optional[int]) -> None:
    """Embed the faces in PATHS (files or folders) and write them to OUTPUT.

    Bad files and photos with no face are reported and skipped; OUTPUT is written
    atomically, so an interrupted run leaves either the whole file or none. With
    --cache DIR, each image's result is kept as soon as it is computed: after an
    interruption (Ctrl-C, kill, crash) the same command resumes where it stopped.

    An OUTPUT folder gets one Parquet row per face and a table of failures (see the
    "Running on a cluster" how-to); there PATHS may also be text files of paths (.txt) or
    .parquet/.csv files with a column of paths, and a rerun skips the images already written.
    """
    engine_class = get_registry().get_engine(engine)  # None: local
    if engine_class is not None or Path(output).suffix.lower() not in (".npz", ".json"):
        if cache is not None:
            raise click.UsageError("--cache is for .npz/.json output; an output folder resumes by itself "
                                   "(a rerun skips the images already written)")
        _embed_to_folder(paths, output, pipeline, engine, engine_class, ray_address, path_column, progress, workers)
        return
    files = expand_image_paths(paths)
    built = load_pipeline(pipeline, workers)
    store = None
    if cache is not None:
        from facekit.cache import EmbeddingCache

        store = EmbeddingCache(cache, built.embedding_description())  # shared with evaluate and audit
    previous_sigterm = _sigterm_as_interrupt()
    try:
        sources, vectors, failures, faces = _embed_streaming(built, files, store, progress)
    except KeyboardInterrupt:
        if store is not None:
            click.echo(f"the results computed before the interruption are kept in {cache}; "
                       "run the same command again to resume.", err=True)
        raise
    finally:
        built.close()  # the worker processes, if any
        if previous_sigterm is not _NOT_SET:
            signal.signal(signal.SIGTERM, previous_sigterm if previous_sigterm is not None else signal.SIG_DFL)
    out = Path(output)
    if out.suffix.lower() == ".json":
        atomic_write_text(out, json.dumps({
            "pipeline": built.name, "model": built.embedder.model_name, "metric": built.embedder.metric,
            "multi_face": built.config.multi_face,
            "embeddings": [{"source": s, **f, "vector": v.tolist()} for s, f, v in zip(sources, faces, vectors)],
            "failures": failures,
        }))
    else:
        if out.suffix != ".npz":
            out = out.with_suffix(out.suffix + ".npz")

        def write(tmp: Path) -> None:
            with open(tmp, "wb") as handle:
                np.savez(handle, sources=np.array(sources, dtype=str), vectors=vectors,
                         model=np.array(built.embedder.model_name), metric=np.array(built.embedder.metric),
                         **_face_arrays(faces),
                         failed_sources=np.array([f["source"] for f in failures], dtype=str),
                         failed_errors=np.array([f["error"] for f in failures], dtype=str))
        atomic_write(out, write)
    cached = f" ({store.hits} read from the cache)" if store is not None else ""
    click.echo(f"{len(sources)} embedding(s) from {len(files)} file(s){cached} written to {out}")
    crowded = len({s for s, f in zip(sources, faces) if (f["faces_found"] or 0) > 1})
    if crowded:
        click.echo(f"note: {crowded} file(s) had more than one face; multi_face: {built.config.multi_face} chose "
                   "which to embed (see `faces_found` and `boxes` in the output)", err=True)
    if failures:
        click.echo(f"{len(failures)} file(s) skipped:", err=True)
    for failure in failures:
        source, error = failure["source"], failure["error"]
        click.echo(f"skipped {error}" if error.startswith(source) else f"skipped {source}: {error}", err=True)


def _embed_to_folder(paths: tuple[str, ...], output: str, pipeline: str, engine: str, engine_class: Optional[type],
                     address: Optional[str], path_column: Optional[str], progress: bool, workers: Optional[int]) -> None:
    """``embed -o FOLDER``: the Parquet layout of :mod:`facekit.collections.parquet`, on this machine
    (``engine_class`` None) or on the engine a plugin registered (a Ray cluster, say)."""
    from facekit.collections.parquet import embed_to_parquet, input_paths

    if Path(output).suffix.lower() in (".npz", ".json"):
        raise click.UsageError(f"--engine {engine} writes a Parquet folder, not {output!r}; name a folder with -o")
    files = input_paths(paths, column=path_column)
    built = load_pipeline(pipeline, workers)
    # the constructor contract of a registered engine: see facekit.engine.Engine
    runner = engine_class(built, address=address, progress=progress) if engine_class is not None else None
    try:
        report = embed_to_parquet(built, files, output, engine=runner, progress=progress)
    finally:
        if runner is not None:
            runner.close()
        built.close()
    click.echo(str(report))


def _embed_streaming(built: Any, files: list[str], store: Any,
                     progress: bool) -> tuple[list[str], np.ndarray, list[dict[str, str]], list[dict[str, Any]]]:
    """Embed ``files`` chunk by chunk, keeping only sources, vectors, failures and which face each vector is."""
    from tqdm.auto import tqdm

    from facekit.engine import wants_pool

    chunk = max(1, built.config.batch_size * CHUNK_BATCHES)
    if wants_pool(built.config.workers, len(files)):
        chunk *= POOL_CHUNK_FACTOR
    sources: list[str] = []
    vectors: list[np.ndarray] = []
    failures: list[dict[str, str]] = []
    faces: list[dict[str, Any]] = []
    with tqdm(total=len(files), desc=f"embedding ({built.name})", unit="img", disable=not progress,
              dynamic_ncols=True) as bar:
        for start in range(0, len(files), chunk):
            part = files[start : start + chunk]
            batch = built.embed(part, on_error="skip", progress=False, cache=store)
            sources.extend(e.source or "" for e in batch)
            vectors.extend(np.asarray(e.vector, dtype=np.float32) for e in batch)
            faces.extend(_used_face(e) for e in batch)
            failures.extend({"source": s, "error": m} for s, m in batch.failures)
            bar.update(len(part))
    stacked = np.stack(vectors) if vectors else np.zeros((0, built.embedder.dim), np.float32)
    return sources, stacked, failures, faces


def _used_face(embedding: Any) -> dict[str, Any]:
    """Box (x0, y0, x1, y1), index among the image's faces (0 = largest) and faces found;
    None for an embedding read from the cache, which keeps vectors only."""
    face = embedding.face
    if face is None:
        return {"box": None, "face_index": None, "faces_found": None}
    used = face.used_face()
    return {key: used[key] for key in ("box", "face_index", "faces_found")}


def _face_arrays(faces: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    """The npz form of :func:`_used_face`: NaN boxes and -1 counts where unknown."""
    boxes = np.array([f["box"] if f["box"] is not None else [np.nan] * 4 for f in faces], np.float32).reshape(-1, 4)
    index = np.array([-1 if f["face_index"] is None else f["face_index"] for f in faces], np.int32)
    found = np.array([-1 if f["faces_found"] is None else f["faces_found"] for f in faces], np.int32)
    return {"boxes": boxes, "face_indices": index, "faces_found": found}


def _sigterm_as_interrupt() -> Any:
    """Treat SIGTERM like Ctrl-C (clean exit, temporary files removed); returns the old handler."""

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    try:
        return signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread (e.g. called from a test runner's worker)
        return _NOT_SET


_NOT_SET = object()

"""``facekit embed PATHS... -o FILE``."""

from __future__ import annotations

import json
from pathlib import Path

import click
import numpy as np

from facekit.cli import pipeline_option
from facekit.cli.common import expand_image_paths, handle_errors, load_pipeline
from facekit.io import atomic_write, atomic_write_text


@click.command("embed")
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False),
              help="output file: .npz (arrays `sources`, `vectors`) or .json")
@pipeline_option
@click.option("--cache", type=click.Path(file_okay=False), default=None,
              help="directory to keep per-image results in; a rerun resumes from it")
@click.option("--progress/--no-progress", default=True, show_default=True)
@handle_errors
def embed_command(paths: tuple[str, ...], output: str, pipeline: str, cache: str | None, progress: bool) -> None:
    """Embed the faces in PATHS (files or folders) and write them to OUTPUT.

    Bad files and photos with no face are reported and skipped; OUTPUT is written
    atomically, so an interrupted run leaves either the whole file or none.
    """
    files = expand_image_paths(paths)
    built = load_pipeline(pipeline)
    batch = built.embed(files, on_error="skip", progress=progress, cache=cache)
    sources = [e.source or "" for e in batch]
    vectors = np.stack([e.vector for e in batch]) if len(batch) else np.zeros((0, built.embedder.dim), np.float32)
    failures = [{"source": s, "error": m} for s, m in batch.failures]
    out = Path(output)
    if out.suffix == ".json":
        atomic_write_text(out, json.dumps({
            "pipeline": built.name, "model": built.embedder.model_name, "metric": built.embedder.metric,
            "embeddings": [{"source": s, "vector": v.tolist()} for s, v in zip(sources, vectors)],
            "failures": failures,
        }))
    else:
        def write(tmp: Path) -> None:
            with open(tmp, "wb") as handle:
                np.savez(handle, sources=np.array(sources, dtype=str), vectors=vectors,
                         model=np.array(built.embedder.model_name), metric=np.array(built.embedder.metric),
                         failed_sources=np.array([f["source"] for f in failures], dtype=str),
                         failed_errors=np.array([f["error"] for f in failures], dtype=str))
        atomic_write(out if out.suffix == ".npz" else out.with_suffix(out.suffix + ".npz"), write)
    click.echo(f"{len(batch)} embedding(s) from {len(files)} file(s) written to {out}")
    for failure in failures:
        click.echo(f"skipped {failure['source']}: {failure['error']}", err=True)

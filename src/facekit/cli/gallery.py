"""``facekit gallery ...``, ``facekit identify`` and ``facekit search``."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path
from typing import Any, Callable, Optional

import click

from facekit.cli import workers_option
from facekit.cli.common import expand_image_paths, handle_errors
from facekit.collections.gallery import Gallery
from facekit.collections.identification import DEFAULT_TEMPLATE_RULE
from facekit.collections.video import VIDEO_SUFFIXES
from facekit.errors import FacekitError, ImageError, NoFaceError

#: file suffix -> "module:function" that identifies people in such a file: ``function(gallery, path, k)``
#: returns the JSON-ready dict of one input (``{"input": ..., "faces": [...]}`` plus whatever it adds).
#: Photos need no entry; videos get a face per track and a timeline (facekit.collections.video).
INPUT_HANDLERS: dict[str, str] = {suffix: "facekit.collections.video:identify_video" for suffix in VIDEO_SUFFIXES}


def _open(path: str, pipeline: Optional[str] = None) -> Gallery:
    return Gallery.open(path, pipeline)


def _progress(items: list[Any], label: str) -> Any:
    """A progress bar on stderr when it is a terminal and the job is not tiny."""
    if len(items) < 2 or not sys.stderr.isatty():
        return items
    from tqdm.auto import tqdm

    return tqdm(items, desc=label, unit="file", dynamic_ncols=True)


def _expand(inputs: tuple[str, ...]) -> tuple[list[str], list[tuple[str, str, int]]]:
    """Files and folders' images, and (input, message, exit code) for what does not exist."""
    paths: list[str] = []
    missing: list[tuple[str, str, int]] = []
    for raw in inputs:
        try:
            paths.extend(expand_image_paths([raw]))
        except FacekitError as exc:
            missing.append((raw, str(exc), exc.exit_code))
    return paths, missing


def _skipped(where: str, message: str) -> None:
    click.echo(f"skipped: {message}" if where in message else f"skipped {where}: {message}", err=True)


def _handler_for(path: str) -> Callable[[Gallery, str, int], dict[str, Any]]:
    """The INPUT_HANDLERS function for a file that is not a photo (a video)."""
    module_name, attr = INPUT_HANDLERS[Path(path).suffix.lower()].split(":")
    return getattr(importlib.import_module(module_name), attr)  # type: ignore[no-any-return]


# --------------------------------------------------------------------------- gallery group
@click.group("gallery")
def gallery_group() -> None:
    """Keep known people and their photos in a gallery file (SQLite).

    \b
    facekit gallery create G.db [-p PIPELINE]   make an empty gallery
    facekit gallery add G.db NAME PHOTOS...     enrol photos of a person
    facekit gallery list G.db                   who is in it, with counts
    facekit gallery remove G.db NAME            forget a person
    facekit gallery rename G.db OLD NEW         give a person another name
    facekit gallery merge G.db SOURCE INTO      move SOURCE's photos to INTO

    Then `facekit identify G.db PHOTOS...` says who is in photos, and `facekit search
    G.db PHOTO` lists the gallery's photos nearest to a face.
    """


@gallery_group.command("create")
@click.argument("gallery", type=click.Path(dir_okay=False))
@click.option("--pipeline", "-p", default="default", show_default=True,
              help="bundled pipeline name, or path to a pipeline YAML file; the gallery keeps it")
@click.option("--index", "index_name", default="exact", show_default=True,
              help="search index (`facekit list index` shows the installed ones)")
@click.option("--index-param", "index_params", multiple=True, metavar="KEY=VALUE",
              help="a parameter of the search index, e.g. ef_search=512 (repeatable)")
@click.option("--template", type=click.Choice(["max", "mean", "mean_score"]), default=None,
              help="how a person with several photos is scored (default: max, chosen by measurement)")
@handle_errors
def create_command(gallery: str, pipeline: str, index_name: str, index_params: tuple[str, ...],
                   template: Optional[str]) -> None:
    """Make an empty gallery file for a pipeline's embeddings."""
    import yaml

    from facekit.errors import ConfigError

    params = {}
    for item in index_params:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--index-param {item!r}: write KEY=VALUE, e.g. --index-param ef_search=512")
        params[key.strip()] = yaml.safe_load(value)
    made = Gallery.create(gallery, pipeline, index=index_name, index_params=params,
                          template=template or DEFAULT_TEMPLATE_RULE)
    click.echo(f"created {gallery} (pipeline {made.pipeline.name!r}, model {made.pipeline.embedder.model_name!r})")


@gallery_group.command("add")
@click.argument("gallery", type=click.Path(dir_okay=False))
@click.argument("name")
@click.argument("photos", nargs=-1, required=True)
@workers_option
@handle_errors
def add_command(gallery: str, name: str, photos: tuple[str, ...], workers: Optional[int]) -> None:
    """Enrol PHOTOS (files or folders) of the person NAME: the largest face of each photo.

    Photos already in the gallery are left alone; unreadable photos and photos without a
    face are reported and skipped. Nothing is written until every photo is embedded.
    """
    paths, missing = _expand(photos)
    with _open(gallery) as opened:
        report = opened.add(name, paths, progress=len(paths) > 1 and sys.stderr.isatty(), workers=workers)
    report.failures[:0] = [(where, message) for where, message, _ in missing]
    for where, reason in report.failures:
        _skipped(where, reason)
    click.echo(f"{name}: {len(report.added)} photo(s) added, {len(report.unchanged)} already there, "
               f"{len(report.failures)} skipped")
    if not report.added and not report.unchanged:
        raise SystemExit(NoFaceError.exit_code)


@gallery_group.command("import")
@click.argument("gallery", type=click.Path(dir_okay=False))
@click.argument("embeddings", type=click.Path(file_okay=False, exists=True))
@click.option("--name-column", default=None, metavar="COLUMN",
              help="column of the faces table that names each person [default: the folder each photo is in]")
@handle_errors
def import_command(gallery: str, embeddings: str, name_column: Optional[str]) -> None:
    """Enrol the faces of an EMBEDDINGS folder (`facekit embed ... -o FOLDER`, any engine).

    The largest face of each photo is added, named by the photo's folder (.../NAME/photo.jpg)
    or by --name-column; rows are read in batches, so the folder may hold millions.
    """
    from facekit.collections.parquet import import_to_gallery

    with _open(gallery) as opened:
        added, unchanged, failures = import_to_gallery(opened, embeddings, name_column=name_column)
    for where, reason in failures:
        _skipped(where, reason)
    click.echo(f"{added} photo(s) added, {unchanged} already there, {len(failures)} skipped")


@gallery_group.command("list")
@click.argument("gallery", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="print as JSON")
@handle_errors
def list_command(gallery: str, as_json: bool) -> None:
    """List the people in a gallery with their numbers of photos and faces."""
    with _open(gallery) as opened:
        people = opened.people()
    if as_json:
        click.echo(json.dumps([{"name": p.name, "photos": p.photos, "faces": p.faces} for p in people], indent=2))
        return
    width = max([len(p.name) for p in people] + [6])
    click.echo(f"{'person':<{width}}  photos  faces")
    for person in people:
        click.echo(f"{person.name:<{width}}  {person.photos:>6}  {person.faces:>5}")
    click.echo(f"{len(people)} people, {sum(p.photos for p in people)} photos")


@gallery_group.command("remove")
@click.argument("gallery", type=click.Path(dir_okay=False))
@click.argument("name")
@handle_errors
def remove_command(gallery: str, name: str) -> None:
    """Forget a person and their photos."""
    with _open(gallery) as opened:
        count = opened.remove(name)
    click.echo(f"removed {name} ({count} photo(s))")


@gallery_group.command("rename")
@click.argument("gallery", type=click.Path(dir_okay=False))
@click.argument("old")
@click.argument("new")
@handle_errors
def rename_command(gallery: str, old: str, new: str) -> None:
    """Give a person another name."""
    with _open(gallery) as opened:
        opened.rename(old, new)
    click.echo(f"renamed {old} to {new}")


@gallery_group.command("merge")
@click.argument("gallery", type=click.Path(dir_okay=False))
@click.argument("source")
@click.argument("into")
@handle_errors
def merge_command(gallery: str, source: str, into: str) -> None:
    """Move every photo of SOURCE to INTO (two names for one person) and forget SOURCE."""
    with _open(gallery) as opened:
        moved = opened.merge(source, into)
    click.echo(f"merged {source} into {into} ({moved} photo(s) moved)")


# --------------------------------------------------------------------------- identify, search
@click.command("identify")
@click.argument("gallery", type=click.Path(dir_okay=False))
@click.argument("inputs", nargs=-1, required=True)
@click.option("-k", "k", default=3, show_default=True, type=click.IntRange(1), help="candidates listed per face")
@click.option("--pipeline", "-p", default=None,
              help="another pipeline with the gallery's aligner and embedder (default: the gallery's own)")
@click.option("--json", "as_json", is_flag=True, help="print JSON: per input, per face: box, person or 'unknown', candidates")
@workers_option
@handle_errors
def identify_command(gallery: str, inputs: tuple[str, ...], k: int, pipeline: Optional[str], as_json: bool,
                     workers: Optional[int]) -> None:
    """Say who is in each photo: every face, its best match or "unknown", and candidates.

    A face is "unknown" when no one in the gallery passes the pipeline's threshold, or
    when the best person is not clearly nearer than the second (the ratio test).
    Unreadable files and photos without a face are reported and skipped.
    """
    paths, missing = _expand(inputs)
    found: dict[str, dict[str, Any]] = {}
    failures = [{"input": where, "error": message} for where, message, _ in missing]
    exit_codes = [code for _, _, code in missing]

    def skip(where: str, message: str, code: int) -> None:
        failures.append({"input": where, "error": message})
        exit_codes.append(code)
        if not as_json:
            _skipped(where, message)

    if not as_json:
        for where, message, _ in missing:
            _skipped(where, message)
    photos = [path for path in paths if Path(path).suffix.lower() not in INPUT_HANDLERS]
    with _open(gallery, pipeline) as opened:
        if photos:  # one batched pass (worker processes) over every photo
            identified, skipped = opened.identify_many(photos, k=k, workers=workers,
                                                       progress=len(photos) > 1 and sys.stderr.isatty())
            for where, faces in identified:
                found[where] = {"input": where, "faces": [face.to_dict() for face in faces]}
            for where, message in skipped:
                skip(where, message, ImageError.exit_code)
        for path in _progress([p for p in paths if p not in photos], "identifying"):
            try:
                found[path] = _handler_for(path)(opened, path, k)
            except FacekitError as exc:
                skip(path, str(exc), exc.exit_code)
    results = [found[path] for path in dict.fromkeys(paths) if path in found]
    if as_json:
        click.echo(json.dumps({"gallery": gallery, "inputs": results, "failures": failures}, indent=2))
    else:
        for result in results:
            faces = result["faces"]
            click.echo(f"{result['input']}: {len(faces)} face(s)")
            for face in faces:
                box = ",".join(f"{v:.0f}" for v in face["box"])
                best = face["candidates"][0] if face["candidates"] else None
                detail = ""
                if best is not None:
                    detail = f" (closest {best['person']}, {best['metric']} {best['score']:.3f}"
                    detail += f", P(same) {best['probability']:.2f})" if best["probability"] is not None else ")"
                click.echo(f"  [{box}] {face['person']}{detail}")
    if failures and not results:
        raise SystemExit(max(exit_codes))


@click.command("search")
@click.argument("gallery", type=click.Path(dir_okay=False))
@click.argument("photo")
@click.option("-k", "k", default=10, show_default=True, type=click.IntRange(1), help="photos to list")
@click.option("--pipeline", "-p", default=None,
              help="another pipeline with the gallery's aligner and embedder (default: the gallery's own)")
@click.option("--json", "as_json", is_flag=True, help="print as JSON")
@handle_errors
def search_command(gallery: str, photo: str, k: int, pipeline: Optional[str], as_json: bool) -> None:
    """List the gallery's photos nearest to the largest face in PHOTO, best first."""
    with _open(gallery, pipeline) as opened:
        hits = opened.search(photo, k=k)
    if as_json:
        click.echo(json.dumps({"query": photo, "hits": [hit.to_dict() for hit in hits]}, indent=2))
        return
    for rank, hit in enumerate(hits, 1):
        verdict = "same" if hit.same else "different"
        probability = f"  P(same) {hit.probability:.2f}" if hit.probability is not None else ""
        click.echo(f"{rank:>3}. {hit.person}  {hit.metric} {hit.score:.3f} ({verdict}){probability}  {hit.photo}")

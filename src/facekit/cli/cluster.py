"""``facekit cluster PATHS... -o DIR``: group unlabelled photos by person."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import click

from facekit.cli import pipeline_option
from facekit.cli.common import expand_image_paths, handle_errors, load_pipeline


@click.command("cluster")
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option("-o", "--output", required=True, type=click.Path(file_okay=False),
              help="folder for clusters.json, clusters.csv and the contact sheets")
@pipeline_option
@click.option("--threshold", type=float, default=None,
              help="cut in the pipeline's metric (distance or cosine similarity); "
                   "default: the calibration's P(same person) >= 99 % point")
@click.option("--linkage", type=click.Choice(["average", "complete", "single"]), default="average", show_default=True)
@click.option("--links", is_flag=True, help="also make OUTPUT/links/cluster_NNN/ folders of links to the photos")
@click.option("--min-size", type=click.IntRange(min=1), default=2, show_default=True,
              help="smallest cluster that gets a contact sheet and a links folder")
@click.option("--json", "as_json", is_flag=True, help="print the result as JSON")
@click.option("--progress/--no-progress", default=True, show_default=True)
@handle_errors
def cluster_command(paths: tuple[str, ...], output: str, pipeline: str, threshold: Optional[float], linkage: str,
                    links: bool, min_size: int, as_json: bool, progress: bool) -> None:
    """Group the faces in PATHS (photos or folders) by person, without names.

    Every face of every photo is clustered. OUTPUT gets clusters.json and clusters.csv
    (photo, face index and box -> cluster; cluster 0 is the largest) and a contact sheet
    per cluster in OUTPUT/sheets/. Unreadable files and photos without a face are
    reported and skipped.
    """
    from tqdm.auto import tqdm

    from facekit.collections.cluster import cluster
    from facekit.errors import ImageError
    from facekit.io import atomic_write_text

    files: list[str] = []
    missing: list[tuple[str, str]] = []
    for raw in paths:
        try:
            files.extend(expand_image_paths([raw]))
        except ImageError as exc:
            missing.append((raw, str(exc)))
    built = load_pipeline(pipeline)
    with tqdm(total=len(files), desc=f"clustering ({built.name})", unit="img", disable=not progress,
              dynamic_ncols=True) as bar:
        result = cluster(files, built, threshold=threshold, linkage=linkage, progress=bar.update)
    result.failures[:0] = missing
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    _clear_previous_run(out)
    text = result.to_json(indent=2)
    atomic_write_text(out / "clusters.json", text)
    atomic_write_text(out / "clusters.csv", result.to_csv())
    sheets = result.contact_sheets(out / "sheets", min_size=min_size)
    if links:
        result.write_links(out / "links", min_size=min_size)
    if as_json:
        click.echo(text)
    else:
        sizes = [len(c) for c in result.clusters]
        grouped = sum(1 for s in sizes if s >= min_size)
        click.echo(f"{len(result.faces)} face(s) from {len(files)} file(s): {grouped} cluster(s) of {min_size} or more "
                   f"faces, {len(sizes) - grouped} smaller; threshold {result.threshold:.4g} ({result.threshold_rule})")
        click.echo(f"written to {out}: clusters.json, clusters.csv, {len(sheets)} contact sheet(s) in sheets/"
                   + (", links/" if links else ""))
    for source, error in result.failures:
        click.echo(f"skipped {error}" if error.startswith(source) else f"skipped {source}: {error}", err=True)
    if result.failures and not result.faces:
        raise SystemExit(3)  # nothing could be read or no face was found: as identify, not a success


def _clear_previous_run(out: Path) -> None:
    """Remove what an earlier run wrote in OUT (its contact sheets and links), so that no
    stale cluster survives; nothing else is touched, and links are removed, never their photos."""
    for sheet in (out / "sheets").glob("cluster_*.png"):
        sheet.unlink()
    links = out / "links"
    if links.is_dir():
        for folder in links.iterdir():
            if folder.is_dir() and not folder.is_symlink():
                for link in folder.iterdir():
                    if link.is_symlink():
                        link.unlink()
                if not any(folder.iterdir()):
                    folder.rmdir()

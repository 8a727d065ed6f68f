"""``facekit average PATHS... -o mean.png``: the mean face of a group of photos."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import click

from facekit.cli import workers_option
from facekit.cli.common import IMAGE_SUFFIXES, expand_image_paths, handle_errors, load_pipeline
from facekit.errors import ConfigError, ImageError

#: used when --pipeline is not given and the MediaPipe plugin is installed
PREFERRED_PIPELINE = "mediapipe"


@click.command("average")
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="PNG file to write")
@click.option(
    "--pipeline",
    "-p",
    default=None,
    help="bundled pipeline name, or path to a pipeline YAML file "
    "[default: 'mediapipe' when the MediaPipe plugin is installed, else 'default']",
)
@click.option("--min-faces", default=2, show_default=True, type=click.IntRange(min=1),
              help="fail unless at least this many faces (per group) could be used")
@click.option("--method", type=click.Choice(["warp", "similarity"]), default=None,
              help="warp: onto the mean landmark shape (sharp); similarity: one similarity transform per face "
              "[default: the pipeline's aggregator setting, else warp]")
@click.option("--size", type=click.IntRange(16, 4096), default=None, help="side of each mean face in pixels")
@click.option("--side-by-side", is_flag=True,
              help="treat each PATH as a group (a folder, or one file) and draw the groups' mean faces "
              "side by side with labels")
@click.option("--label", "labels", multiple=True, help="label of each group in --side-by-side (default: folder names)")
@click.option("--progress/--no-progress", default=True, show_default=True)
@workers_option
@handle_errors
def average_command(
    paths: tuple[str, ...],
    output: str,
    pipeline: Optional[str],
    min_faces: int,
    method: Optional[str],
    size: Optional[int],
    side_by_side: bool,
    labels: tuple[str, ...],
    progress: bool,
    workers: Optional[int],
) -> None:
    """Average the faces in PATHS (files or folders) into one mean face, written to OUTPUT.

    Every face is aligned by the pipeline and warped onto the group's mean landmark
    shape (the pipeline's aggregator, or `meanface`). Photos with no face, or whose face
    cannot be aligned, are listed and skipped; the run fails only if fewer than
    --min-faces faces are left. OUTPUT is written atomically.

    \b
    Examples:
      facekit average photos/alice/ -o alice_mean.png
      facekit average group_a/ group_b/ --side-by-side -o pair.png
    """
    from facekit.image import save_png

    out = Path(output)
    if out.suffix.lower() != ".png":
        raise click.BadParameter(f"{output!r}: the mean face is written as PNG; name the file *.png", param_hint="-o")
    if labels and not side_by_side:
        raise click.BadParameter("--label only applies with --side-by-side", param_hint="--label")
    built = _pipeline(pipeline)
    if workers is not None:
        built.config.workers = workers
    aggregator, params = _aggregator(built, method, size)

    if not side_by_side:
        files = expand_image_paths(paths)
        result = _average(built, files, aggregator, params, min_faces, progress, what=", ".join(paths))
        save_png(out, result.image)
        click.echo(f"mean of {result.count} face(s) from {len(files)} file(s) written to {out}")
        return

    from facekit.builtin.meanface import side_by_side as draw_side_by_side

    if len(paths) < 2:
        raise click.BadParameter("--side-by-side needs at least two groups (one folder each)")
    if labels and len(labels) != len(paths):
        raise click.BadParameter(f"got {len(labels)} --label value(s) for {len(paths)} group(s)", param_hint="--label")
    means, captions = [], []
    for path in paths:
        files = expand_image_paths([path])
        result = _average(built, files, aggregator, params, min_faces, progress, what=path)
        means.append(result.image)
        captions.append(f"mean of {result.count} face{'s' if result.count != 1 else ''}")
    names = list(labels) or [(Path(p).name or str(p)).replace("_", " ") for p in paths]
    save_png(out, draw_side_by_side(means, names, captions))
    click.echo(f"{len(paths)} mean faces side by side written to {out}")


def _pipeline(spec: Optional[str]) -> Any:
    if spec is not None:
        return load_pipeline(spec)
    try:
        return load_pipeline(PREFERRED_PIPELINE)
    except ConfigError:  # the MediaPipe or PyTorch plugin is not installed
        return load_pipeline("default")


def _aggregator(built: Any, method: Optional[str], size: Optional[int]) -> tuple[Optional[str], dict[str, Any]]:
    """Which aggregator to run (None: the pipeline's own stage) and parameter overrides."""
    stage = built.components.get("aggregator")
    own = stage is not None and getattr(stage, "consumes", "") == "faces"
    overrides = {k: v for k, v in (("method", method), ("size", size)) if v is not None}
    if own and not overrides:
        return None, {}
    if own:
        # keep the pipeline's other settings for its aggregator, change only what was asked
        settings = {**built.config.aggregator.params, **overrides}
        return stage.name, settings
    return "meanface", overrides


def _average(built: Any, files: list[str], aggregator: Optional[str], params: dict[str, Any],
             min_faces: int, progress: bool, what: str) -> Any:
    if not files:
        raise ImageError(f"{what}: no image files found (looked for {', '.join(sorted(IMAGE_SUFFIXES))})")
    result = built.aggregate(files, aggregator, min_faces=min_faces, progress=progress, **params)
    for source, reason in result.skipped:
        click.echo(f"skipped {source}: {reason}", err=True)
    if result.image is None:
        raise ConfigError(
            f"the aggregator {result.method!r} makes no picture; use `--pipeline` with a mean-face aggregator "
            "such as meanface"
        )
    return result

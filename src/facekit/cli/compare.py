"""``facekit compare A B``."""

from __future__ import annotations

import click

from facekit.cli import pipeline_option
from facekit.cli.common import handle_errors, load_pipeline, refuse_urls


@click.command("compare")
@click.argument("image_a", type=click.Path(dir_okay=False))
@click.argument("image_b", type=click.Path(dir_okay=False))
@pipeline_option
@click.option("--json", "as_json", is_flag=True, help="print the result as JSON")
@handle_errors
def compare_command(image_a: str, image_b: str, pipeline: str, as_json: bool) -> None:
    """Are the faces in IMAGE_A and IMAGE_B the same person?

    The result says which face of each photo was compared (its box, and how many faces
    the photo had): with several faces the pipeline's multi_face policy picks one
    (`largest` in the bundled pipelines). A tiny, blurred or profile face is flagged
    (facekit.quality): the verdict then reads "uncertain", a note says why, and the
    JSON has `"confident": false` with each face's `quality`.
    """
    refuse_urls(image_a, image_b)
    result = load_pipeline(pipeline).compare(image_a, image_b)
    click.echo(result.to_json(indent=2) if as_json else str(result))
    for note in result.warnings():
        click.echo(f"note: {note}", err=True)

"""``facekit explain A B -o card.png``."""

from __future__ import annotations

from typing import Optional

import click

from facekit.cli import pipeline_option
from facekit.cli.common import handle_errors, load_pipeline, refuse_urls


@click.command("explain")
@click.argument("image_a", type=click.Path(dir_okay=False))
@click.argument("image_b", type=click.Path(dir_okay=False))
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None,
              help="write the comparison card here (PNG) [default: card-A-B.png in the current folder, "
                   "from the two file names]")
@pipeline_option
@click.option("--explainer", "explainer_name", default=None,
              help="explainer to use instead of the pipeline's own (e.g. gradcam, occlusion)")
@click.option("--method", default=None,
              help="CAM method for the gradcam explainer: gradcam, gradcam++, hirescam, layercam, eigencam, scorecam...")
@click.option("--layer", default=None, help="gradcam: dotted name of the network layer to explain")
@click.option("--chips", is_flag=True, help="show the aligned chips on the card instead of photo crops")
@click.option("--json", "as_json", is_flag=True, help="print the result as JSON")
@handle_errors
def explain_command(image_a: str, image_b: str, output: Optional[str], pipeline: str, explainer_name: Optional[str],
                    method: Optional[str], layer: Optional[str], chips: bool, as_json: bool) -> None:
    """Compare the faces in IMAGE_A and IMAGE_B and show which parts of each face drive the result.

    Writes a comparison card (both faces, their heatmaps, the score and the verdict) to
    OUTPUT (by default card-A-B.png, named after the two photos), prints the comparison
    and says where the card is. With --json the card's path is in the JSON.
    """
    import json

    from facekit.errors import ConfigError
    from facekit.pictures.cards import save_png

    refuse_urls(image_a, image_b)
    built = load_pipeline(pipeline)
    params = {key: value for key, value in (("method", method), ("layer", layer)) if value is not None}
    name = explainer_name
    if name is None and "explainer" not in built.components:
        # no explainer in the pipeline: Grad-CAM for PyTorch embedders, occlusion for any other
        name = "gradcam" if built.embedder.gives_gradients() else "occlusion"
    chosen = name or (built.components["explainer"].name if "explainer" in built.components else None)
    if params and chosen not in (None, "gradcam"):
        raise ConfigError(f"--method and --layer are options of the gradcam explainer, not of {chosen!r}")
    result = built.explain(image_a, image_b, explainer=name, **params)
    written = save_png(output or default_card_path(image_a, image_b), result.card(use_photos=not chips))
    if as_json:
        data = result.to_dict()
        data["card"] = written
        click.echo(json.dumps(data, indent=2))
        return
    click.echo(str(result))
    click.echo(f"card written to {written}")


def default_card_path(image_a: str, image_b: str) -> str:
    """``card-<A>-<B>.png`` in the current folder: a name that says which pair it shows."""
    from pathlib import Path

    return f"card-{Path(image_a).stem}-{Path(image_b).stem}.png"

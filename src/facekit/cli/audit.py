"""``facekit audit``: a pipeline's error rates, population by population."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import click

from facekit.cli import pipeline_option, workers_option
from facekit.cli.common import fit_markdown_table, fit_text, handle_errors, load_pipeline, terminal_width
from facekit.errors import ConfigError


@click.command("audit")
@click.argument("populations", nargs=-1, required=True, metavar="[NAME=]FOLDER|MANIFEST ...")
@pipeline_option
@click.option("--population-column", default=None,
              help="for an identity table (.tsv/.csv): the column naming each identity's population "
                   "[default: population]")
@click.option("--target-fmr", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.01,
              show_default=True, help="report the threshold that gives this false-match rate in each population")
@click.option("--max-impostor-pairs", type=click.IntRange(1000), default=1_000_000, show_default=True,
              help="above this many different-person pairs a population uses a fixed random sample of them")
@click.option("-o", "--output", default="audit", show_default=True, type=click.Path(file_okay=False),
              help="folder for audit.json, audit.md and audit.png")
@click.option("--cache", type=click.Path(file_okay=False), default=None,
              help="folder to keep each image's embedding in; reruns (and `facekit evaluate`) reuse it")
@click.option("--progress/--no-progress", default=True, show_default=True)
@workers_option
@handle_errors
def audit_command(populations: tuple[str, ...], pipeline: str, population_column: Optional[str], target_fmr: float,
                  max_impostor_pairs: int, output: str, cache: Optional[str], progress: bool,
                  workers: Optional[int]) -> None:
    """Measure false matches and false non-matches per population.

    Each POPULATION is a folder of identity folders (FOLDER/<person>/<photos>, LFW's
    layout), optionally named as NAME=FOLDER; a YAML manifest of named populations; or
    an identity table (.tsv/.csv) whose --population-column splits the identities beside
    it into populations. Every pair within a population is scored with the pipeline:
    the report gives, side by side, the false-match rate (different people judged the
    same) and false-non-match rate at the pipeline's threshold, the threshold that would
    give --target-fmr there, and the score distributions (audit.png).

    This is a measurement, not a fix: it shows for whom the pipeline's "same person"
    means what it says. To change the scoring for a population, use a population
    profile (e.g. `-p eastasian`; see scripts/fit_eastasian_profile.py).

    \b
    Examples:
      facekit audit east-asian=faces/eastasian-lfw lfw-dev=faces/lfw-dev/images -o audit/
      facekit audit faces/eastasian-lfw/identities.tsv --population-column country_or_heritage
      facekit audit -p eastasian populations.yaml --cache /tmp/facekit-cache
    """
    from facekit.io import atomic_write_text
    from facekit.pictures.audit import audit_figure
    from facekit.studies.audit import audit
    from facekit.studies.populations import load_populations

    sets = []
    for spec in populations:
        name, _, path = spec.rpartition("=") if "=" in spec and not Path(spec).exists() else ("", "", spec)
        found = load_populations(path, column=population_column, name=name or None)
        if name and len(found) > 1:
            raise ConfigError(f"{spec}: NAME= names a single folder, but {path} holds {len(found)} populations")
        sets.extend(found)
    with load_pipeline(pipeline, workers) as built:
        report = audit(built, sets, target_fmr=target_fmr, cache=cache, progress=progress,
                       max_impostor_pairs=max_impostor_pairs)
    folder = Path(output)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(folder / "audit.json", report.to_json(indent=1) + "\n")
    atomic_write_text(folder / "audit.md", report.summary() + "\n")
    png = audit_figure(report, folder / "audit.png")
    width = terminal_width()
    table = fit_markdown_table(report.table(), width)
    click.echo(fit_text(report.summary().replace(report.table(), "\0"), width).replace("\0", table))
    for population in report.populations:
        for source, reason in population.failed_images[:5]:
            click.echo(f"  left out ({population.name}): {source}: {reason}", err=True)
        if len(population.failed_images) > 5:
            click.echo(f"  ... and {len(population.failed_images) - 5} more (listed in audit.json)", err=True)
    click.echo(f"report: {folder / 'audit.json'}, {folder / 'audit.md'}\nplot:   {png}")

"""``facekit plugins``, ``facekit list`` and ``facekit check``."""

from __future__ import annotations

import json

import click

from facekit.cli import pipeline_option
from facekit.cli.common import handle_errors, load_pipeline
from facekit.components import KINDS


@click.command("plugins")
@click.option("--json", "as_json", is_flag=True, help="print as JSON")
@handle_errors
def plugins_command(as_json: bool) -> None:
    """List installed plugins, their versions and what each registered."""
    from facekit.plugins import get_registry

    registry = get_registry()
    data = [
        {
            "name": info.name,
            "version": info.version,
            "distribution": info.distribution,
            "components": [{"kind": r.kind, "name": r.name} for r in info.components],
            "pipelines": info.pipelines,
        }
        for info in registry.plugins.values()
    ]
    failures = [{"name": f.name, "error": f.error, "hint": f.hint} for f in registry.failures]
    if as_json:
        click.echo(json.dumps({"plugins": data, "failures": failures}, indent=2))
        return
    for info in data:
        click.echo(f"{info['name']} {info['version'] or ''}".rstrip())
        for comp in info["components"]:
            click.echo(f"  {comp['kind']:<11} {comp['name']}")
        for name in info["pipelines"]:
            click.echo(f"  {'pipeline':<11} {name}")
    for failure in failures:
        click.echo(f"FAILED {failure['name']}: {failure['error']}\n  hint: {failure['hint']}", err=True)


@click.command("list")
@click.argument("kind", type=click.Choice(list(KINDS) + ["pipeline"]))
@handle_errors
def list_command(kind: str) -> None:
    """List registered component names of one KIND (or bundled pipelines)."""
    from facekit.plugins import get_registry

    registry = get_registry()
    if kind == "pipeline":
        for name in sorted(registry.pipelines):
            click.echo(name)
        return
    for name in registry.names(kind):
        reg = registry.components[kind][name]
        click.echo(f"{name:<24} {reg.cls.description}  [{reg.plugin}]")


@click.command("check")
@click.argument("pipeline")
@handle_errors
def check_command(pipeline: str) -> None:
    """Validate a pipeline (YAML file or bundled name) without loading any model."""
    built = load_pipeline(pipeline)
    click.echo(f"OK: {built!r}")
    click.echo(f"threshold {built.threshold:g} ({built.embedder.metric})")


__all__ = ["check_command", "list_command", "plugins_command", "pipeline_option"]

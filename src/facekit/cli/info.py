"""``facekit plugins``, ``facekit list`` and ``facekit check``."""

from __future__ import annotations

import json
from typing import Optional

import click

from facekit.cli import pipeline_option
from facekit.cli.common import handle_errors, load_pipeline
from facekit.components import KINDS
from facekit.errors import ConfigError


@click.command("plugins")
@click.option("--json", "as_json", is_flag=True, help="print as JSON")
@handle_errors
def plugins_command(as_json: bool) -> None:
    """List installed plugins, their versions and what each registered (components, engines, pipelines)."""
    from facekit.plugins import get_registry

    registry = get_registry()
    data = [
        {
            "name": info.name,
            "version": info.version,
            "distribution": info.distribution,
            "components": [{"kind": r.kind, "name": r.name} for r in _by_kind_then_name(info.components)],
            "engines": sorted(info.engines),
            "pipelines": sorted(info.pipelines),
        }
        for info in sorted(registry.plugins.values(), key=lambda info: info.name)
    ]
    failures = [{"name": f.name, "error": f.error, "hint": f.hint} for f in registry.failures]
    if as_json:
        click.echo(json.dumps({"plugins": data, "failures": failures}, indent=2))
        return
    for info in data:
        click.echo(f"{info['name']} {info['version'] or ''}".rstrip())
        for comp in info["components"]:
            click.echo(f"  {comp['kind']:<11} {comp['name']}")
        for name in info["engines"]:
            click.echo(f"  {'engine':<11} {name}")
        for name in info["pipelines"]:
            click.echo(f"  {'pipeline':<11} {name}")
    for failure in failures:
        click.echo(f"FAILED {failure['name']}: {failure['error']}\n  hint: {failure['hint']}", err=True)


def _by_kind_then_name(registrations: list) -> list:  # type: ignore[type-arg]
    order = {kind: i for i, kind in enumerate(KINDS)}
    return sorted(registrations, key=lambda r: (order.get(r.kind, len(order)), r.name))


@click.command("list")
@click.argument("kind", type=click.Choice(list(KINDS) + ["pipeline"]))
@handle_errors
def list_command(kind: str) -> None:
    """List registered component names of one KIND (or bundled pipelines)."""
    from facekit.plugins import get_registry, install_hint

    registry = get_registry()
    if kind == "pipeline":
        # only the pipelines that load here go to stdout; the others, and what they need, to stderr
        for name in sorted(registry.pipelines):
            missing = registry.missing_for_pipeline(name)
            if not missing:
                click.echo(name)
                continue
            namespaces = sorted({m.split(".")[0] for m in missing if "." in m})
            hints = "; ".join(f"install with {install_hint(n)}" for n in namespaces) or "install their plugins"
            click.echo(f"(not loadable: {name} needs {', '.join(missing)}, which no installed plugin "
                       f"registers; {hints})", err=True)
        return
    for name in registry.names(kind):
        reg = registry.components[kind][name]
        click.echo(f"{name:<24} {reg.cls.description}  [{reg.plugin}]")


@click.command("check")
@click.argument("pipeline_arg", metavar="[PIPELINE]", required=False)
@click.option("--pipeline", "-p", default=None,
              help="bundled pipeline name, or path to a pipeline YAML file (the same as PIPELINE) [default: default]")
@handle_errors
def check_command(pipeline_arg: Optional[str], pipeline: Optional[str]) -> None:
    """Validate a pipeline (YAML file or bundled name) without loading any model.

    Every problem is listed at once, each with its path in the YAML.
    """
    if pipeline_arg and pipeline and pipeline_arg != pipeline:
        raise ConfigError(f"two pipelines given ({pipeline_arg!r} and -p {pipeline!r}); check one at a time")
    built = load_pipeline(pipeline_arg or pipeline or "default")
    click.echo(f"OK: {built!r}")
    click.echo(f"threshold {built.threshold:g} ({built.embedder.metric})")


__all__ = ["check_command", "list_command", "plugins_command", "pipeline_option"]

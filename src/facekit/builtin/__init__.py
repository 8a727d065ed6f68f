"""facekit's built-in plugin: components that need nothing beyond the core's dependencies.

Registered through the same hooks as any third-party plugin.
"""

from __future__ import annotations

from importlib import resources

from facekit.hookspecs import hookimpl


@hookimpl
def register_detectors(register):  # type: ignore[no-untyped-def]
    from facekit.builtin.basic import WholeImageDetector

    register(WholeImageDetector)


@hookimpl
def register_aggregators(register):  # type: ignore[no-untyped-def]
    from facekit.builtin.basic import CentroidAggregator

    register(CentroidAggregator)


@hookimpl
def register_pipelines(register):  # type: ignore[no-untyped-def]
    for entry in sorted(resources.files("facekit.pipelines").iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".yaml"):
            register(entry.name[: -len(".yaml")], entry.read_text(encoding="utf-8"))

"""Every hook a facekit plugin can implement.

A plugin is a module (or object) with functions decorated by :data:`hookimpl` and
named after these specifications. Each ``register_*`` hook receives a ``register``
callback; call it once per class. facekit records which plugin registered what and
refuses a name that is already taken. See the plugin author's guide in the docs.
"""

from __future__ import annotations

from typing import Callable

import pluggy

hookspec = pluggy.HookspecMarker("facekit")
#: Decorate your hook functions with this.
hookimpl = pluggy.HookimplMarker("facekit")


@hookspec
def register_detectors(register: Callable[[type], None]) -> None:
    """Register :class:`~facekit.components.Detector` subclasses."""


@hookspec
def register_aligners(register: Callable[[type], None]) -> None:
    """Register :class:`~facekit.components.Aligner` subclasses."""


@hookspec
def register_embedders(register: Callable[[type], None]) -> None:
    """Register :class:`~facekit.components.Embedder` subclasses."""


@hookspec
def register_explainers(register: Callable[[type], None]) -> None:
    """Register :class:`~facekit.components.Explainer` subclasses."""


@hookspec
def register_aggregators(register: Callable[[type], None]) -> None:
    """Register :class:`~facekit.components.Aggregator` subclasses."""


@hookspec
def register_indexes(register: Callable[[type], None]) -> None:
    """Register :class:`~facekit.components.SearchIndex` subclasses (nearest-neighbour search for galleries)."""


@hookspec
def register_engines(register: Callable[[type], None]) -> None:
    """Register :class:`~facekit.engine.Engine` subclasses, by their ``name``: where the
    per-image work runs (``facekit embed --engine NAME``). The command line builds one as
    ``cls(pipeline, address=ADDRESS, progress=BOOL)``; see :class:`~facekit.engine.Engine`."""


@hookspec
def register_pipelines(register: Callable[[str, str], None]) -> None:
    """Register bundled pipelines: ``register(name, yaml_text)``."""


@hookspec
def register_calibrations(register: Callable[[str, str], None]) -> None:
    """Register score calibrations (population profiles): ``register(name, path_to_json)``."""


@hookspec
def register_commands(cli) -> None:  # type: ignore[no-untyped-def]
    """Add subcommands to the ``facekit`` command line; ``cli`` is its click group."""

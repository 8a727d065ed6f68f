"""facekit-ray: run facekit pipelines on a Ray cluster.

:class:`RayEngine` is an :class:`~facekit.engine.Engine`: decode, detect and align run as
Ray tasks on CPUs, embedding runs on a pool of actors (one pipeline each, GPUs when the
cluster has them), and the faces land in facekit's Parquet layout
(:mod:`facekit.collections.parquet`). ``ray`` is imported only when an engine first connects, so
loading the plugin costs nothing. The plugin registers it as the engine ``ray`` (hook
``register_engines``), so the command line finds it by name:
``facekit embed PATHS... --engine ray -o OUT_DIR``.

Layout: one module per engine, :mod:`facekit_ray.engine`; this module holds the hook.
"""

from __future__ import annotations

from facekit.hookspecs import hookimpl
from facekit_ray.engine import RayEngine

__version__ = "0.1.0"
__all__ = ["RayEngine", "register_engines"]


@hookimpl
def register_engines(register):  # type: ignore[no-untyped-def]
    register(RayEngine)

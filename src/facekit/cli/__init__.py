"""The ``facekit`` command line.

Subcommands live in their own modules and are imported only when used, so
``facekit --help`` stays fast and never imports torch, dlib or mediapipe. Plugins add
commands through the ``register_commands`` hook.

Exit codes: 0 success, 1 unexpected error, 2 usage or configuration error, 3 bad
image, 4 bad model file, 5 no face (or too many) found.
"""

from __future__ import annotations

import importlib
import os
from typing import Any, Optional

import click

#: command name -> "module:function"; each module defines one click command
COMMANDS = {
    "plugins": "facekit.cli.info:plugins_command",
    "list": "facekit.cli.info:list_command",
    "check": "facekit.cli.info:check_command",
    "compare": "facekit.cli.compare:compare_command",
    "embed": "facekit.cli.embed:embed_command",
    "explain": "facekit.cli.explain:explain_command",
    "average": "facekit.cli.average:average_command",
    "evaluate": "facekit.cli.evaluate:evaluate_command",
    "calibrate": "facekit.cli.evaluate:calibrate_command",
    "audit": "facekit.cli.audit:audit_command",
    "cluster": "facekit.cli.cluster:cluster_command",
    "gallery": "facekit.cli.gallery:gallery_group",
    "identify": "facekit.cli.gallery:identify_command",
    "search": "facekit.cli.gallery:search_command",
}


class LazyGroup(click.Group):
    """A click group whose subcommands are imported on demand."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        self._load_plugin_commands()
        return sorted(set(COMMANDS) | set(self.commands))

    def get_command(self, ctx: click.Context, name: str) -> Optional[click.Command]:
        if name in COMMANDS:
            module_name, attr = COMMANDS[name].split(":")
            return getattr(importlib.import_module(module_name), attr)
        self._load_plugin_commands()
        return self.commands.get(name)

    _plugins_loaded = False

    def _load_plugin_commands(self) -> None:
        if self._plugins_loaded:
            return
        self._plugins_loaded = True
        from facekit.plugins import get_plugin_manager

        get_plugin_manager().pm.hook.register_commands(cli=self)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="facekit")
@click.option("-v", "--verbose", is_flag=True,
              help="show the log lines of third-party libraries (MediaPipe, TensorFlow Lite), hidden by default")
def main(verbose: bool) -> None:
    """facekit: how similar are two faces, and why?"""
    if verbose:
        # an environment variable, so that worker processes and plugins see it too
        os.environ["FACEKIT_VERBOSE"] = "1"


def workers_option(func: Any) -> Any:
    return click.option(
        "--workers",
        type=click.IntRange(0, 256),
        default=None,
        help="processes that read, detect and align the images, while this one embeds them "
        "[default: the pipeline's `workers`, normally 0 = one per CPU core]; 1 = all in this process",
    )(func)


def pipeline_option(func: Any) -> Any:
    return click.option(
        "--pipeline",
        "-p",
        default="default",
        show_default=True,
        help="bundled pipeline name, or path to a pipeline YAML file",
    )(func)

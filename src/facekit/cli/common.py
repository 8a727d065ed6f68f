"""Helpers shared by the CLI commands."""

from __future__ import annotations

import functools
import sys
from typing import Any, Callable, Optional

import click

from facekit.errors import FacekitError
from facekit.image import IMAGE_SUFFIXES, expand_image_paths, refuse_urls  # noqa: F401  (the CLI's names)


def handle_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Turn facekit errors into one line on stderr and the error's exit code."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except FacekitError as exc:
            click.echo(f"Error: {exc}", err=True)
            sys.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("Interrupted.", err=True)
            sys.exit(130)

    return wrapper


def load_pipeline(spec: str, workers: Optional[int] = None) -> Any:
    """A pipeline by name or YAML path; ``workers`` (the ``--workers`` option) overrides its setting."""
    from facekit.pipeline import Pipeline

    built = Pipeline.load(spec)
    if workers is not None:
        built.config.workers = workers
    return built


def terminal_width() -> int:
    """Columns of the terminal (80 when not a terminal); COLUMNS overrides, as for any tool."""
    import shutil

    return max(40, shutil.get_terminal_size((80, 24)).columns)


def fit_markdown_table(table: str, width: int) -> str:
    """A Markdown table for a terminal of ``width`` columns: aligned columns when they fit,
    otherwise one block per row, ``header: value`` a line."""
    import textwrap

    rows = [[cell.strip() for cell in line.strip().strip("|").split("|")]
            for line in table.splitlines() if line.strip() and not set(line.strip()) <= set("|-: ")]
    if not rows:
        return table
    head, body = rows[0], rows[1:]
    widths = [max(len(row[i]) for row in rows if i < len(row)) for i in range(len(head))]
    if sum(widths) + 2 * (len(widths) - 1) <= width:
        return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows)
    label = max(len(h) for h in head[1:]) + 2
    blocks = []
    for row in body:
        lines = [row[0]]
        for name, value in zip(head[1:], row[1:]):
            lines.append(textwrap.fill(value, width, initial_indent=f"  {name + ':':<{label}}",
                                       subsequent_indent=" " * (label + 2)))
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def fit_text(text: str, width: int) -> str:
    """Long prose lines wrapped to ``width``; short lines and blank lines kept as they are."""
    import textwrap

    return "\n".join(textwrap.fill(line, width) if len(line) > width else line for line in text.splitlines())

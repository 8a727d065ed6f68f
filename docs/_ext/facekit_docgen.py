"""Reference pages generated from the code at build time, so they are never written twice.

Two directives:

``.. facekit-yaml-reference::``
    The pipeline YAML format, from the pydantic models in :mod:`facekit.config`
    (``PipelineConfig``, ``StageConfig``, ``ScoringConfig``), then every registered
    component of every kind with its ``Params`` model: each parameter's YAML type,
    default, allowed range and description.

``.. facekit-cli-reference::``
    Every ``facekit`` command, including the lazily imported ones and those that
    plugins add through ``register_commands``: usage, help text, arguments, options.

Both render reStructuredText lines (:func:`yaml_reference_lines`,
:func:`cli_reference_lines`), which ``tests/test_docs.py`` also checks directly.
"""

from __future__ import annotations

import inspect
import re
import textwrap
import types
import typing
from typing import Any, Iterable, Optional

KIND_TITLES = {
    "detector": "Detectors",
    "aligner": "Aligners",
    "embedder": "Embedders",
    "explainer": "Explainers",
    "aggregator": "Aggregators",
    "index": "Search indexes",
}


# ----------------------------------------------------------------------------- text helpers
def inline(text: str) -> str:
    """Prose from docstrings, help texts and field descriptions, made safe as inline rST.

    Single backticks (Markdown-style code) become literals; characters that rST would
    read as markup are escaped.
    """
    parts = re.split(r"(`[^`]+`)", text or "")
    out = []
    for part in parts:
        if len(part) > 2 and part.startswith("`") and part.endswith("`"):
            out.append(literal(part[1:-1]))
        else:
            escaped = re.sub(r"([\\*|_`])", r"\\\1", part)
            # command-line options as literals (prose would turn "--" into a dash)
            escaped = re.sub(r"(?<![\w\\-])(--?[A-Za-z][\w\\-]*)", lambda m: literal(m.group(1).replace("\\", "")), escaped)
            out.append(escaped)
    return "".join(out)


def literal(text: str) -> str:
    text = str(text).replace("\n", " ")
    return f"``{text}``" if text.strip() else "``''``"


def heading(title: str, char: str) -> list[str]:
    return [title, char * max(len(title), 3), ""]


def list_table(header: list[str], rows: list[list[str]], widths: Optional[list[int]] = None,
               title: str = "") -> list[str]:
    lines = [f".. list-table:: {title}".rstrip(), "   :header-rows: 1"]
    if widths:
        lines.append("   :widths: " + " ".join(map(str, widths)))
    lines.append("")
    for row in [header, *rows]:
        for i, cell in enumerate(row):
            cell_lines = (cell or "").split("\n") or [""]
            lines.append(("   * - " if i == 0 else "     - ") + cell_lines[0])
            lines.extend("       " + extra for extra in cell_lines[1:])
    lines.append("")
    return lines


# ----------------------------------------------------------------------------- pydantic fields
def yaml_type(annotation: Any) -> str:
    """A pydantic field's type as a YAML writer sees it."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Literal:
        return "one of " + ", ".join(literal(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        kinds = [yaml_type(a) for a in args if a is not type(None)]
        text = " or ".join(kinds)
        return text + " or ``null``" if type(None) in args else text
    if origin in (dict,) or annotation is dict:
        return "mapping"
    if origin in (list, tuple):
        return "list"
    if isinstance(annotation, type):
        names = {str: "string", int: "integer", float: "number", bool: "boolean"}
        if annotation in names:
            return names[annotation]
        if hasattr(annotation, "model_fields"):
            if annotation.__module__ == "facekit.config":  # sections of the YAML reference
                return f"mapping (see :ref:`{annotation.__name__} <yaml-{annotation.__name__.lower()}>`)"
            return f"mapping (``{annotation.__name__}``)"
        return annotation.__name__
    return str(annotation).replace("typing.", "")


def bounds(field: Any) -> str:
    signs = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<", "min_length": "length >=", "max_length": "length <="}
    out = []
    for item in field.metadata:
        for attr, sign in signs.items():
            value = getattr(item, attr, None)
            if value is not None:
                out.append(f"{sign} {value}")
    return ", ".join(out)


def default_text(field: Any) -> str:
    from pydantic_core import PydanticUndefined

    if field.is_required():
        return "**required**"
    if field.default_factory is not None:
        value = field.default_factory()
        if hasattr(value, "model_dump"):
            return "(its defaults)"
        return literal(repr(value)) if value not in ({}, []) else literal("{}" if value == {} else "[]")
    value = field.default
    if value is PydanticUndefined:
        return ""
    if value is None:
        return "``null``"
    if isinstance(value, bool):
        return literal(str(value).lower())
    return literal(value if isinstance(value, str) else repr(value))


def fields_table(model: Any, title: str = "") -> list[str]:
    rows = []
    for name, field in model.model_fields.items():
        extra = bounds(field)
        rows.append(
            [
                f"``{name}``",
                yaml_type(field.annotation) + (f" ({extra})" if extra else ""),
                default_text(field),
                inline(field.description or ""),
            ]
        )
    if not rows:
        return ["No parameters: write the name alone (``aggregator: NAME``).", ""]
    return list_table(["key", "type", "default", "meaning"], rows, [16, 26, 14, 44], title)


def first_paragraph(obj: Any) -> str:
    doc = inspect.getdoc(obj) or ""
    return doc.split("\n\n")[0].replace("\n", " ").strip()


# ----------------------------------------------------------------------------- YAML reference
def yaml_reference_lines() -> list[str]:
    from facekit.components import KINDS
    from facekit.config import PipelineConfig, ScoringConfig, StageConfig
    from facekit.plugins import get_registry

    registry = get_registry()
    lines: list[str] = []
    lines += [".. _yaml-pipelineconfig:", ""]
    lines += heading("The pipeline file", "-")
    lines += [inline(first_paragraph(PipelineConfig)) + " Top-level keys (unknown keys are errors):", ""]
    lines += fields_table(PipelineConfig)
    lines += [".. _yaml-stageconfig:", ""]
    lines += heading("A stage", "-")
    lines += [
        inline(first_paragraph(StageConfig))
        + " Write it as a mapping, or as the bare name when the defaults suit you "
        "(``aligner: dlib.chip5`` is ``aligner: {name: dlib.chip5}``).",
        "",
    ]
    lines += fields_table(StageConfig)
    lines += [
        "The keys allowed under ``params`` depend on the component: see its section below.",
        "",
        ".. _yaml-scoringconfig:",
        "",
    ]
    lines += heading("Scoring", "-")
    lines += [inline(first_paragraph(ScoringConfig)), ""]
    lines += fields_table(ScoringConfig)

    lines += heading("Components", "-")
    plugins = sorted(
        (info.name, info.version or "?", info.distribution or "-") for info in registry.plugins.values()
    )
    lines += [
        "Generated from the plugins installed when these pages were built: "
        + ", ".join(f"{literal(name)} {version}" for name, version, _ in plugins)
        + ". Run ``facekit list KIND`` to see what your installation has.",
        "",
    ]
    for kind in KINDS:
        names = registry.names(kind)
        lines += heading(KIND_TITLES[kind], "~")
        if not names:
            lines += ["None installed.", ""]
        for name in names:
            lines += component_lines(kind, name, registry.components[kind][name])
    if registry.calibrations:
        lines += heading("Registered calibrations", "~")
        lines += [
            "Names accepted by ``scoring.calibration`` (a path to a calibration JSON file works too):",
            "",
        ]
        for name, (_path, plugin) in sorted(registry.calibrations.items()):
            lines.append(f"* {literal(name)} (from plugin {literal(plugin)})")
        lines.append("")
    if registry.pipelines:
        lines += heading("Bundled pipelines", "~")
        lines += ["Names accepted wherever a pipeline is asked for (``-p NAME``, ``Pipeline.load(NAME)``):", ""]
        for name, (text, plugin) in sorted(registry.pipelines.items()):
            lines += [f".. _pipeline-{name}:", ""]
            lines += [f"``{name}`` (from plugin {literal(plugin)})", ""]
            lines += [".. code-block:: yaml", ""] + ["   " + line for line in text.rstrip().splitlines()] + [""]
    return lines


def component_lines(kind: str, name: str, registration: Any) -> list[str]:
    cls = registration.cls
    lines = [f".. _component-{name}:", ""]
    lines += heading(name, "^")
    lines += [inline(cls.description or first_paragraph(cls)), ""]
    facts = [f"plugin {literal(registration.plugin)}", f"class ``{cls.__module__}.{cls.__qualname__}``"]
    if kind == "detector":
        scheme = getattr(cls, "provides_landmarks", None)
        facts.append(f"landmarks {literal(scheme)}" if scheme else "boxes only (no landmarks)")
    elif kind == "aligner":
        accepts = getattr(cls, "accepts_landmarks", ())
        facts.append(
            "needs detector landmarks " + " or ".join(map(literal, accepts)) if accepts else "finds its own landmarks"
        )
        if getattr(cls, "provides_chip_landmarks", False):
            facts.append("chips carry landmarks")
    elif kind == "embedder":
        facts.append(f"metric {literal(cls.metric)}, default threshold {literal(cls.default_threshold)}")
        if cls.input_size:
            facts.append(f"{cls.input_size}x{cls.input_size} chips")
        if cls.dim:
            facts.append(f"{cls.dim}-D")
    elif kind == "explainer" and getattr(cls, "needs_torch", False):
        facts.append("needs a PyTorch embedder")
    elif kind == "aggregator":
        facts.append(f"consumes {cls.consumes}")
        if getattr(cls, "needs_landmarks", False):
            facts.append("needs chip landmarks")
    lines += ["; ".join(facts) + ".", ""]
    lines += fields_table(cls.Params)
    return lines


# ----------------------------------------------------------------------------- CLI reference
def all_commands() -> list[tuple[str, Any]]:
    """Every ``facekit`` subcommand as (name, click command), lazy and plugin ones included."""
    import click

    from facekit.cli import main

    ctx = click.Context(main, info_name="facekit")
    return [(name, main.get_command(ctx, name)) for name in main.list_commands(ctx)]


def help_blocks(text: str) -> list[str]:
    r"""A click help text as rST: paragraphs as prose, ``\b`` blocks as literal blocks."""
    out: list[str] = []
    for block in re.split(r"\n\s*\n", inspect.cleandoc(text or "")):
        if block.lstrip().startswith("\b"):
            body = block.split("\n", 1)[1] if "\n" in block else ""
            out += ["::", ""] + ["   " + line for line in textwrap.dedent(body).strip("\n").splitlines()] + [""]
        else:
            out += [inline(" ".join(block.split())), ""]
    return out


def cli_reference_lines() -> list[str]:
    import click

    from facekit.cli import main

    root = click.Context(main, info_name="facekit")
    lines: list[str] = []
    lines += help_blocks(main.help or "")
    lines += ["Global options: ``--version`` and ``-h``/``--help`` (on every command).", ""]
    for name, command in all_commands():
        ctx = click.Context(command, info_name=name, parent=root)
        lines += [f".. _cli-{name}:", ""]
        lines += heading(f"facekit {name}", "-")
        usage = " ".join(command.collect_usage_pieces(ctx))
        lines += [".. code-block:: text", "", f"   facekit {name} {usage}", ""]
        lines += help_blocks(command.help or "")
        module = getattr(command.callback, "__module__", "") or ""
        if module and not module.startswith("facekit."):
            lines += [f"Added by a plugin (module {literal(module)}) through the ``register_commands`` hook.", ""]
        arguments = [p for p in command.params if isinstance(p, click.Argument)]
        if arguments:
            lines += ["**Arguments:** " + ", ".join(
                literal(a.human_readable_name) + ("" if a.required else " (optional)")
                + (" (one or more)" if a.nargs == -1 else "")
                for a in arguments
            ), ""]
        rows = []
        for param in command.params:
            if not isinstance(param, click.Option) or param.hidden:
                continue
            record = param.get_help_record(ctx)
            if record is None:
                continue
            opts, help_text = record
            rows.append([literal(opts), inline(help_text) or "\\-"])
        if rows:
            lines += list_table(["option", "meaning"], rows, [35, 65])
    return lines


# ----------------------------------------------------------------------------- the architecture picture
def load_layers() -> list[tuple[str, tuple[str, ...]]]:
    """The core's layers as ``tests/test_layers.py`` enforces them (one list, read by both)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "tests" / "test_layers.py"
    spec = importlib.util.spec_from_file_location("_facekit_layers", path)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return list(module.LAYERS)


#: the data path of ``Pipeline.compare``: (step, where it lives), drawn left to right
COMPARE_PATH = [
    ("two photos", "paths, arrays,\nPIL images"),
    ("load_image", "facekit.image"),
    ("detect + select", "detector plugin\nmulti_face policy"),
    ("align", "aligner plugin\n(chip, landmarks)"),
    ("embed", "embedder plugin\n(batch of chips)"),
    ("score + decide", "scoring.metric\nscoring.similarity"),
    ("calibrate", "scoring.calibration\n(optional)"),
    ("Comparison", "facekit.types\n-> card: pictures"),
]


def draw_architecture(path: Any) -> None:
    """The layers (bottom to top) and, under them, the data path of ``compare``, as one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

    layers = load_layers()
    figure = Figure(figsize=(11, 8.6), dpi=110)
    ax = figure.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, 11)
    ax.set_ylim(0, 8.6)
    ax.axis("off")
    colours = ["#dfe7f2", "#d6ecd2", "#f6e3c4", "#eadcf0", "#d4ebee", "#f3d6d6", "#e6e6cc", "#d9d9d9"]
    band, bottom = 0.56, 2.75
    ax.text(0.2, bottom + band * len(layers) + 0.9, "facekit's layers: a module imports only its own layer and those below",
            fontsize=12, weight="bold")
    plugins_top = bottom + band * len(layers) + 0.55
    ax.add_patch(FancyBboxPatch((0.2, plugins_top - 0.42), 10.6, 0.38, boxstyle="round,pad=0.02",
                                facecolor="#fff4cc", edgecolor="#b59b3b"))
    ax.text(0.35, plugins_top - 0.23, "plugins (facekit-dlib, -mediapipe, -torch, -faiss, -ray, third parties): "
            "above the core, reached only through hooks", fontsize=8.5, va="center")
    for rank, (title, prefixes) in enumerate(layers):
        y = bottom + rank * band
        ax.add_patch(FancyBboxPatch((0.2, y + 0.04), 10.6, band - 0.08, boxstyle="round,pad=0.02",
                                    facecolor=colours[rank % len(colours)], edgecolor="#777777"))
        ax.text(0.35, y + band / 2, f"{rank}  {title}", fontsize=9.5, weight="bold", va="center")
        names = ", ".join(p.removeprefix("facekit.") for p in prefixes)
        ax.text(3.0, y + band / 2, names, fontsize=8.5, va="center", family="monospace")
    ax.text(0.2, 2.25, "The data path of  pipeline.compare(a, b)", fontsize=12, weight="bold")
    width, gap = 1.15, 0.2
    for i, (step, where) in enumerate(COMPARE_PATH):
        x = 0.2 + i * (width + gap)
        ax.add_patch(FancyBboxPatch((x, 0.85), width, 0.95, boxstyle="round,pad=0.03",
                                    facecolor="#ffffff", edgecolor="#3b6ea8"))
        ax.text(x + width / 2, 1.52, step, ha="center", va="center", fontsize=8.5, weight="bold")
        ax.text(x + width / 2, 1.12, where, ha="center", va="center", fontsize=6.8, family="monospace")
        if i:
            ax.add_patch(FancyArrowPatch((x - gap - 0.02, 1.32), (x + 0.02, 1.32), arrowstyle="-|>",
                                         mutation_scale=10, color="#3b6ea8"))
    ax.text(0.2, 0.45, "Detect and align run in the engine (here, or in worker processes with workers > 1); "
            "embedding stays in the calling process, batched.", fontsize=8.5)
    figure.savefig(path)


def _architecture_directive() -> Any:
    from docutils import nodes
    from sphinx.util.docutils import SphinxDirective

    class Architecture(SphinxDirective):
        """``.. facekit-architecture::``: the layers picture, drawn from tests/test_layers.py."""

        def run(self) -> list[Any]:
            from pathlib import Path

            target = Path(self.env.srcdir) / "_generated" / "architecture.png"
            target.parent.mkdir(exist_ok=True)
            draw_architecture(target)
            self.env.note_dependency(str(Path(__file__).resolve().parents[2] / "tests" / "test_layers.py"))
            return [nodes.image(uri="/_generated/architecture.png", alt="facekit's layers and the data path of compare",
                                candidates={"*": "_generated/architecture.png"})]

    return Architecture


# ----------------------------------------------------------------------------- Sphinx glue
def _directive(make_lines: Any) -> Any:
    from docutils.statemachine import StringList
    from sphinx.util.docutils import SphinxDirective
    from sphinx.util.nodes import nested_parse_with_titles
    from docutils import nodes

    class Generated(SphinxDirective):
        has_content = False

        def run(self) -> list[Any]:
            source = f"<generated by {make_lines.__name__}>"
            content = StringList(make_lines(), source=source)
            container = nodes.section()
            container.document = self.state.document
            nested_parse_with_titles(self.state, content, container)
            return list(container.children)

    return Generated


def model_fields_lines(dotted: str) -> list[str]:
    """The fields table of any pydantic model, by import path (``package.module.Model``)."""
    import importlib

    module_name, _, attr = dotted.rpartition(".")
    model = getattr(importlib.import_module(module_name), attr)
    return fields_table(model, title=attr)


def _fields_directive() -> Any:
    from docutils import nodes
    from docutils.statemachine import StringList
    from sphinx.util.docutils import SphinxDirective

    class Fields(SphinxDirective):
        """``.. facekit-fields:: package.module.Model``: a table of the model's YAML keys."""

        required_arguments = 1

        def run(self) -> list[Any]:
            container = nodes.container()
            content = StringList(model_fields_lines(self.arguments[0]), source=f"<fields of {self.arguments[0]}>")
            self.state.nested_parse(content, self.content_offset, container)
            return list(container.children)

    return Fields


def setup(app: Any) -> dict[str, Any]:
    app.add_directive("facekit-yaml-reference", _directive(yaml_reference_lines))
    app.add_directive("facekit-cli-reference", _directive(cli_reference_lines))
    app.add_directive("facekit-fields", _fields_directive())
    app.add_directive("facekit-architecture", _architecture_directive())
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}


def _lines_of(items: Iterable[str]) -> str:  # pragma: no cover - for debugging: python facekit_docgen.py
    return "\n".join(items)


if __name__ == "__main__":  # pragma: no cover
    import sys

    print(_lines_of(cli_reference_lines() if sys.argv[1:] == ["cli"] else yaml_reference_lines()))

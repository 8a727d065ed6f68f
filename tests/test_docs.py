"""The documentation is tested like code.

* every hook in ``facekit/hookspecs.py`` has its own section in the plugin guide (and
  every hook section there is a real hook);
* every ``.. code-block:: python`` in ``docs/`` runs, page by page in one namespace, in a
  working folder where ``../shared/faces`` is the test photos (as from the repository
  root); a block with ``:class: norun`` is shown, not run;
* every ``$ facekit ...`` line in a ``console`` block names a real command and real
  options; every ``yaml`` block is a valid pipeline (or a fragment of one, checked
  inside the default pipeline);
* the quickstart starts with the README's two commands, verbatim;
* the generated YAML and CLI references cover every registered component, pipeline
  field and command; the exit-code table matches :mod:`facekit.errors`;
* the gallery pictures exist, are few and small, and are all shown.

``.ci/run`` builds the HTML with warnings as errors; this file checks what a build
cannot.
"""

from __future__ import annotations

import ast
import importlib.util
import re
import shlex
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
DOCS = REPO_ROOT / "docs"
PAGES = sorted(p for p in DOCS.rglob("*.rst") if "_build" not in p.parts)
GALLERY = DOCS / "_static" / "gallery"


# --------------------------------------------------------------------------- reading rST
@dataclass
class Block:
    page: Path
    line: int  # 1-based line of the directive
    language: str
    options: dict[str, str]
    code: str

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(REPO_ROOT)}:{self.line}"


_DIRECTIVE = re.compile(r"^(\s*)\.\. code-block::\s*(\S+)\s*$")


def code_blocks(page: Path, language: str | None = None) -> list[Block]:
    lines = page.read_text(encoding="utf-8").splitlines()
    blocks = []
    i = 0
    while i < len(lines):
        match = _DIRECTIVE.match(lines[i])
        if not match:
            i += 1
            continue
        indent, lang = len(match.group(1)), match.group(2)
        start = i + 1
        j = i + 1
        options = {}
        while j < len(lines) and re.match(r"^\s+:(\w[\w-]*):(.*)$", lines[j]):
            key, value = re.match(r"^\s+:(\w[\w-]*):(.*)$", lines[j]).groups()  # type: ignore[union-attr]
            options[key] = value.strip()
            j += 1
        body = []
        while j < len(lines) and (not lines[j].strip() or len(lines[j]) - len(lines[j].lstrip()) > indent):
            body.append(lines[j])
            j += 1
        while body and not body[-1].strip():
            body.pop()
        text = "\n".join(body)
        if language is None or lang == language:
            blocks.append(Block(page, start, lang, options, textwrap.dedent(text).strip("\n") + "\n"))
        i = j
    return blocks


def section_titles(page: Path) -> list[str]:
    lines = page.read_text(encoding="utf-8").splitlines()
    titles = []
    for above, below in zip(lines, lines[1:]):
        if above.strip() and re.fullmatch(r"([=\-~^\"'`#*+])\1{2,}", below.strip()) and len(below.strip()) >= len(above.strip()):
            titles.append(above.strip())
    return titles


def docgen():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("facekit_docgen", DOCS / "_ext" / "facekit_docgen.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


# --------------------------------------------------------------------------- hooks
def hook_names() -> list[str]:
    tree = ast.parse((REPO_ROOT / "src" / "facekit" / "hookspecs.py").read_text(encoding="utf-8"))
    return [
        node.name
        for node in tree.body
        if isinstance(node, ast.FunctionDef) and any(getattr(d, "id", None) == "hookspec" for d in node.decorator_list)
    ]


def test_every_hook_has_a_section_in_the_plugin_guide() -> None:
    hooks = hook_names()
    assert len(hooks) >= 8, hooks
    guide = DOCS / "plugin-guide.rst"
    titles = section_titles(guide)
    missing = [hook for hook in hooks if hook not in titles]
    assert not missing, f"hooks without a section in {guide.name}: {missing}"
    stale = [t for t in titles if t.startswith("register_") and t not in hooks]
    assert not stale, f"sections for hooks that do not exist: {stale}"
    text = guide.read_text(encoding="utf-8")
    for hook in hooks:  # each section shows how the hook is called
        section = text.split(f"\n{hook}\n", 1)[1].split("\n.. _plugin-hook-", 1)[0]
        assert f"{hook}(" in section, f"the {hook} section does not show its signature"


# --------------------------------------------------------------------------- python snippets
@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory, faces_dir: Path) -> Path:
    """A folder beside which ``shared/faces`` holds the photos, as beside the repository."""
    root = tmp_path_factory.mktemp("docs-run")
    (root / "shared").mkdir()
    (root / "shared" / "faces").symlink_to(faces_dir, target_is_directory=True)
    work = root / "work"
    work.mkdir()
    return work


PYTHON_PAGES = [p for p in PAGES if code_blocks(p, "python")]


@pytest.mark.parametrize("page", PYTHON_PAGES, ids=[str(p.relative_to(DOCS)) for p in PYTHON_PAGES])
def test_python_snippets_run(page: Path, workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(workdir)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    namespace: dict[str, object] = {"__name__": f"docs.{page.stem}"}
    ran = 0
    for block in code_blocks(page, "python"):
        if "norun" in block.options.get("class", ""):
            continue
        code = compile(block.code, block.where, "exec")
        exec(code, namespace)  # noqa: S102 - our own documentation
        ran += 1
    assert ran, f"{page.name}: every python block is marked norun"


def test_few_snippets_are_exempt() -> None:
    exempt = [b.where for p in PAGES for b in code_blocks(p, "python") if "norun" in b.options.get("class", "")]
    assert len(exempt) <= 3, f"too many python blocks are not run: {exempt}"


# --------------------------------------------------------------------------- console and YAML
def facekit_invocations() -> list[tuple[str, list[str]]]:
    out = []
    for page in PAGES:
        for block in code_blocks(page, "console"):
            # a command continued with a backslash is one command
            for line in re.sub(r"\\\n\s*", " ", block.code).splitlines():
                if not line.startswith("$ "):
                    continue
                for part in line[2:].split("&&"):
                    words = shlex.split(part)
                    if words and Path(words[0]).name == "facekit":
                        out.append((f"{block.where}: {part.strip()}", words[1:]))
    return out


def test_console_examples_use_real_commands_and_options() -> None:
    import click

    from facekit.cli import main

    ctx = click.Context(main, info_name="facekit")
    commands = set(main.list_commands(ctx))
    invocations = facekit_invocations()
    assert len(invocations) >= 15
    used = set()
    for where, words in invocations:
        assert words and words[0] in commands, f"{where}: no command {words[:1]}"
        command = main.get_command(ctx, words[0])
        used.add(words[0])
        known = {opt for p in command.params for opt in (*p.opts, *p.secondary_opts)} | {"-h", "--help"}
        for word in words[1:]:
            if word.startswith("-") and not re.fullmatch(r"-?\d+(\.\d+)?", word):
                assert word.split("=", 1)[0] in known, f"{where}: facekit {words[0]} has no option {word}"
    # the main commands are all shown somewhere
    assert {"compare", "explain", "average", "evaluate", "calibrate", "embed", "check", "plugins"} <= used


def test_quickstart_starts_with_the_readme_commands() -> None:
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    commands = re.findall(r"```bash\n(python3 -m venv[^\n]*)\n```", readme)
    assert len(commands) == 2, "the README's two commands"
    quickstart = [b.code.strip() for b in code_blocks(DOCS / "quickstart.rst", "console")]
    assert [line.removeprefix("$ ") for line in quickstart[:2]] == commands


def test_yaml_examples_are_valid_pipelines() -> None:
    import facekit
    from facekit.config import PipelineConfig
    from facekit.plugins import get_registry

    default = yaml.safe_load(get_registry().pipelines["default"][0])
    blocks = [b for p in PAGES for b in code_blocks(p, "yaml")]
    assert len(blocks) >= 6
    for block in blocks:
        data = yaml.safe_load(block.code)
        assert isinstance(data, dict), block.where
        unknown = set(data) - set(PipelineConfig.model_fields)
        assert not unknown, f"{block.where}: not pipeline keys: {unknown}"
        whole = {**default, **data}  # a fragment is checked inside the default pipeline
        try:
            facekit.Pipeline.from_dict(whole, where=block.where)
        except facekit.errors.FacekitError as exc:
            pytest.fail(f"{block.where}: {exc}")


# --------------------------------------------------------------------------- generated references
def test_yaml_reference_covers_every_component_and_field() -> None:
    from facekit.components import KINDS
    from facekit.config import PipelineConfig, ScoringConfig, StageConfig
    from facekit.plugins import get_registry

    text = "\n".join(docgen().yaml_reference_lines())
    registry = get_registry()
    for kind in KINDS:
        for name, registration in registry.components[kind].items():
            assert f".. _component-{name}:" in text
            for field in registration.cls.Params.model_fields:
                assert f"``{field}``" in text, f"{name}: parameter {field} missing"
    for model in (PipelineConfig, StageConfig, ScoringConfig):
        for field in model.model_fields:
            assert f"``{field}``" in text
    assert "haar.frontalface" in registry.components["detector"], "install examples/facekit-haar"
    assert "OpenCV's Haar-cascade frontal face detector" in text


def test_cli_reference_covers_every_command() -> None:
    module = docgen()
    text = "\n".join(module.cli_reference_lines())
    names = [name for name, _ in module.all_commands()]
    assert {"compare", "explain", "average", "evaluate", "plugins"} <= set(names)
    for name, command in module.all_commands():
        assert f"facekit {name}\n" in text
        for param in command.params:
            for opt in param.opts:
                if opt.startswith("-"):
                    assert opt in text, f"facekit {name}: option {opt} missing"


def test_exit_code_table_matches_the_errors() -> None:
    from facekit import errors

    text = (DOCS / "howto" / "bad-inputs.rst").read_text(encoding="utf-8")
    rows = re.findall(r":class:`~facekit\.errors\.(\w+)`\n\s+- (\d+)\n", text)
    assert len(rows) >= 7
    for name, code in rows:
        assert getattr(errors, name).exit_code == int(code), name
    documented = {name for name, _ in rows}
    raised = {name for name, obj in vars(errors).items()
              if isinstance(obj, type) and issubclass(obj, errors.FacekitError) and obj is not errors.FacekitError}
    assert raised <= documented, f"errors missing from the table: {raised - documented}"


# --------------------------------------------------------------------------- pictures and includes
def test_gallery_pictures_are_few_small_and_shown() -> None:
    from PIL import Image

    pictures = sorted(GALLERY.glob("*.png"))
    assert 4 <= len(pictures) <= 10, [p.name for p in pictures]
    shown = set()
    for page in PAGES:
        for ref in re.findall(r"\.\. image:: (\S+)", page.read_text(encoding="utf-8")):
            target = (page.parent / ref).resolve()
            assert target.is_file(), f"{page.name}: missing picture {ref}"
            shown.add(target)
    for picture in pictures:
        assert picture.stat().st_size < 150_000, f"{picture.name} is {picture.stat().st_size} bytes"
        with Image.open(picture) as image:
            assert image.format == "PNG" and min(image.size) >= 200
        assert picture.resolve() in shown, f"{picture.name} is not shown on any page"


def test_literalincludes_and_example_plugin_install() -> None:
    includes = []
    for page in PAGES:
        for ref in re.findall(r"\.\. literalinclude:: (\S+)", page.read_text(encoding="utf-8")):
            assert (page.parent / ref).is_file(), f"{page.name}: {ref}"
            includes.append(ref)
    assert any(ref.endswith("facekit_haar/detector.py") for ref in includes)
    requirements = (REPO_ROOT / "requirements-test.txt").read_text(encoding="utf-8").split()
    assert "examples/facekit-haar" in requirements, "CI must install the example plugin as a third party would"

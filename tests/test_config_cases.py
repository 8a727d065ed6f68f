"""Bad pipeline descriptions at the command line: ``facekit check`` and ``compare --pipeline``.

tests/test_pipeline_config.py covers the validation itself with toy components; here the
real plugins' names and parameters go through the CLI, which must print one clear
``Error:`` message (no traceback) and exit 2, before any model is loaded.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from facekit.cli import main
from facekit.plugins import reset_plugin_manager

GOOD = """\
name: good
detector: {name: dlib.hog, params: {upsample: 1}}
aligner: {name: dlib.chip5, params: {size: 150, padding: 0.25}}
embedder: torch.dlib_resnet
"""

OBAMA = "face_recognition_examples/examples/obama.jpg"


def _billion_laughs(levels: int = 9) -> str:
    lines = ["name: laughs", "detector:", "  name: dlib.hog", "  params:",
             '    l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"    l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, levels + 1)]
    lines += [f"    upsample: *l{levels}", "aligner: dlib.chip5", "embedder: torch.dlib_resnet"]
    return "\n".join(lines) + "\n"


#: (id, YAML text or None for "no such file", fragments the message must contain)
CASES = [
    ("unknown_component", GOOD.replace("torch.dlib_resnet", "torch.dlib_resnett"),
     ["embedder.name", "unknown embedder 'torch.dlib_resnett'", "did you mean 'torch.dlib_resnet'", "Choices"]),
    ("misspelled_parameter", GOOD.replace("upsample: 1", "upsampel: 1"),
     ["detector.params.upsampel", "unknown key", "did you mean 'upsample'"]),
    ("wrong_type", GOOD.replace("upsample: 1", "upsample: lots"), ["detector.params.upsample", "'lots'"]),
    ("out_of_range", GOOD.replace("padding: 0.25", "padding: -3"), ["aligner.params.padding", "-3"]),
    ("wrong_top_level_type", GOOD + "batch_size: many\n", ["batch_size", "'many'"]),
    ("misspelled_stage", GOOD.replace("aligner:", "alinger:"),
     ["alinger", "unknown key", "did you mean 'aligner'", "aligner: Field required"]),
    ("stages_do_not_fit", GOOD.replace("size: 150", "size: 112"),
     ["aligner.params.size", "expects 150x150 chips", "set `size: 150`"]),
    ("missing_file", None, ["pipeline file not found", "missing.yaml", "bundled pipeline name (accurate, default"]),
    ("unsafe_python_tag", "name: x\ndetector: !!python/object/apply:os.system ['touch {marker}']\n",
     ["tags that construct Python objects are not allowed"]),
    ("unsafe_python_name", "name: !!python/name:os.system\n", ["not allowed"]),
    ("uninstalled_plugin", GOOD.replace("torch.dlib_resnet", "insightface.arcface_r100"),
     ["unknown embedder 'insightface.arcface_r100'", "is it installed", "facekit plugins"]),
    ("yaml_syntax", GOOD.replace("{name: dlib.hog,", "{name: [dlib.hog,"), ["invalid YAML", "line"]),
    ("empty_file", "", ["expected a mapping", "NoneType"]),
    ("a_list", "- dlib.hog\n- dlib.chip5\n", ["expected a mapping", "list"]),
    ("binary_file", "\udcff\udcfe\x00garbage", ["cannot read pipeline file"]),
    ("billion_laughs", _billion_laughs(), ["expands to more than", "billion laughs"]),
    ("self_reference", "name: x\ndetector: &d {name: dlib.hog, params: {upsample: [*d]}}\naligner: dlib.chip5\n"
     "embedder: torch.dlib_resnet\n", ["refers to itself"]),
]


def _write_case(tmp_path: Path, case_id: str, text: str | None) -> Path:
    path = tmp_path / f"{case_id}.yaml"
    if text is None:
        return tmp_path / "missing.yaml"
    data = text.replace("{marker}", str(tmp_path / "pwned")).encode("utf-8", "surrogateescape")
    path.write_bytes(data)
    return path


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def photo(faces_dir: Path) -> str:
    return str(faces_dir / OBAMA)


@pytest.mark.parametrize("case_id, text, fragments", CASES, ids=[c[0] for c in CASES])
def test_check_gives_one_clear_message(runner: CliRunner, tmp_path: Path, case_id: str, text: str | None,
                                       fragments: list[str]) -> None:
    path = _write_case(tmp_path, case_id, text)
    result = runner.invoke(main, ["check", str(path)])
    assert result.exit_code == 2, result.output
    assert result.stdout == "", "nothing on stdout for a failed check"
    assert result.stderr.startswith("Error: ") and "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in result.stderr
    assert str(path.name) in result.stderr or case_id in ("unsafe_python_tag",), "the message names the file"
    assert not (tmp_path / "pwned").exists(), "a YAML tag ran code"


@pytest.mark.parametrize("case_id, text, fragments", [c for c in CASES if c[0] in (
    "unknown_component", "misspelled_parameter", "wrong_type", "missing_file", "unsafe_python_tag",
    "uninstalled_plugin")], ids=lambda v: v if isinstance(v, str) and "\n" not in v and len(v) < 40 else "")
def test_compare_with_a_bad_pipeline_fails_before_reading_images(runner: CliRunner, tmp_path: Path, photo: str,
                                                                 case_id: str, text: str | None,
                                                                 fragments: list[str]) -> None:
    path = _write_case(tmp_path, case_id, text)
    result = runner.invoke(main, ["compare", photo, str(tmp_path / "not_an_image.jpg"), "--pipeline", str(path)])
    assert result.exit_code == 2, result.output
    assert "not_an_image" not in result.stderr, "the pipeline is checked before any image"
    for fragment in fragments:
        assert fragment in result.stderr


def test_good_pipeline_passes_check(runner: CliRunner, tmp_path: Path) -> None:
    path = _write_case(tmp_path, "good", GOOD)
    result = runner.invoke(main, ["check", str(path)])
    assert result.exit_code == 0, result.output
    assert "OK" in result.stdout and "torch.dlib_resnet" in result.stdout


def test_unknown_bundled_name(runner: CliRunner) -> None:
    result = runner.invoke(main, ["check", "defualt"])
    assert result.exit_code == 2
    # one message, not two glued together (issue 17)
    assert "unknown pipeline 'defualt'; did you mean 'default'?" in result.stderr
    assert result.stderr.count("defualt") == 1


def test_plugin_switched_off_is_reported_as_not_installed(runner: CliRunner, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A pipeline naming a component of a plugin that is not loaded (here: switched off)."""
    monkeypatch.setenv("FACEKIT_LOAD_PLUGINS", "dlib")
    reset_plugin_manager()
    try:
        path = _write_case(tmp_path, "torch_off", GOOD)
        result = runner.invoke(main, ["check", str(path)])
    finally:
        monkeypatch.delenv("FACEKIT_LOAD_PLUGINS")
        reset_plugin_manager()
    assert result.exit_code == 2
    assert "unknown embedder 'torch.dlib_resnet'" in result.stderr


def test_plugin_not_loaded_message_says_install(runner: CliRunner, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FACEKIT_LOAD_PLUGINS", "dlib")
    reset_plugin_manager()
    try:
        result = runner.invoke(main, ["check", str(_write_case(tmp_path, "torch_off", GOOD))])
    finally:
        monkeypatch.delenv("FACEKIT_LOAD_PLUGINS")
        reset_plugin_manager()
    assert "is it installed" in result.stderr


def test_bad_images_at_the_cli_exit_3(runner: CliRunner, tmp_path: Path, photo: str) -> None:
    text_file = tmp_path / "notes.jpg"
    text_file.write_text("not a photo\n")
    for other, fragment in [(text_file, "not a recognised image format"), (tmp_path / "gone.jpg", "no such file")]:
        result = runner.invoke(main, ["compare", photo, str(other)])
        assert result.exit_code == 3, result.output
        assert result.stderr.startswith("Error: ") and str(other) in result.stderr and fragment in result.stderr


def test_real_process_exit_code_and_no_traceback(tmp_path: Path) -> None:
    """The same through a real interpreter, as a shell script would see it."""
    path = _write_case(tmp_path, "typo", GOOD.replace("upsample: 1", "upsampel: 1"))
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    done = subprocess.run([sys.executable, "-m", "facekit", "check", str(path)], capture_output=True, text=True,
                          timeout=120, env=env)
    assert done.returncode == 2
    assert done.stdout == ""
    assert "Traceback" not in done.stderr and "did you mean 'upsample'" in done.stderr

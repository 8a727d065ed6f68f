"""What a new user trips over in the first hour (issue 17), each with a test that could fail.

Real models on a handful of real photos: the default pipeline on face_recognition's
examples (``two_people.jpg`` holds Obama and Biden), the MediaPipe plugin on the actors'
crops, lfw-dev's pair file for ``--limit``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from facekit.cli import main
from facekit.errors import ConfigError
from facekit.scoring import similarity
from facekit.scoring.metric import COSINE, metric_named

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def examples(faces_dir: Path) -> Path:
    return faces_dir / "face_recognition_examples" / "examples"


@pytest.fixture(scope="module")
def pipeline():  # type: ignore[no-untyped-def]
    from facekit.pipeline import Pipeline

    return Pipeline.load("default")


def _invoke(*args: str, env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


# ----------------------------------------------------------------- 1. the faces used
def test_compare_says_which_face_of_a_group_photo_was_used(examples: Path, pipeline) -> None:  # type: ignore[no-untyped-def]
    group, obama = str(examples / "two_people.jpg"), str(examples / "obama.jpg")
    result = _invoke("compare", group, obama, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    used_a, used_b = data["faces"]
    assert data["multi_face"] == "largest"
    assert (used_a["faces_found"], used_b["faces_found"]) == (2, 1)
    # the box reported is the largest of the faces the detector finds in the group photo
    detected = pipeline.detect(group)
    largest = max(detected, key=lambda face: face.area)
    assert used_a["face_index"] == 0
    np.testing.assert_allclose(used_a["box"], largest.box, atol=0.1)
    assert "has 2 faces" in result.stderr and "only one of them was compared" in result.stderr

    table = str(pipeline.compare(group, obama))
    assert re.search(r"face A\s+2 faces found; compared the largest \(multi_face: largest\), box x \d+", table)
    assert re.search(r"face B\s+1 face found, box x \d+", table)


def test_embed_output_carries_boxes_and_face_indices(examples: Path, tmp_path: Path) -> None:
    files = [str(examples / "two_people.jpg"), str(examples / "obama.jpg")]
    npz, as_json = tmp_path / "e.npz", tmp_path / "e.json"
    for out in (npz, as_json):
        result = _invoke("embed", *files, "-o", str(out), "--no-progress", "-p", "default")
        assert result.exit_code == 0, result.output
        assert "1 file(s) had more than one face" in result.stderr
    arrays = np.load(npz)
    assert {"sources", "vectors", "model", "metric"} <= set(arrays.files), "old readers' arrays are kept"
    assert arrays["boxes"].shape == (2, 4) and np.isfinite(arrays["boxes"]).all()
    assert arrays["face_indices"].tolist() == [0, 0] and arrays["faces_found"].tolist() == [2, 1]
    data = json.loads(as_json.read_text())
    first = data["embeddings"][0]
    assert {"source", "vector"} <= set(first) and first["faces_found"] == 2 and first["face_index"] == 0
    np.testing.assert_allclose(first["box"], arrays["boxes"][0], atol=0.1)


# --------------------------------------------------------- 2. percentage and verdict
metrics_and_thresholds = st.one_of(
    st.tuples(st.just("cosine"), st.floats(-0.95, 0.99)),
    st.tuples(st.just("euclidean"), st.floats(0.01, 50.0)),
)


@settings(max_examples=400, deadline=None)
@given(metrics_and_thresholds, st.floats(-1.0, 1.0), st.floats(-1.0, 1.0))
def test_percentage_never_contradicts_the_verdict(metric_threshold: tuple[str, float], u: float, v: float) -> None:
    metric, threshold = metric_threshold
    if metric == "cosine":
        scores = (u, v)
    else:  # distances from 0 to four times the threshold
        scores = (2 * threshold * (u + 1), 2 * threshold * (v + 1))
    for score in scores:
        value = similarity.percentage(score, metric, threshold)
        assert 0.0 <= value <= 100.0
        assert (value >= 90.0) == metric_named(metric).is_same(score, threshold), (metric, threshold, score, value)
    # monotonic: the more similar score never gets the lower percentage
    a, b = sorted(scores, key=lambda s: metric_named(metric).as_similarity(s))
    assert similarity.percentage(a, metric, threshold) <= similarity.percentage(b, metric, threshold)


@given(st.floats(-0.95, 0.99))
def test_the_threshold_is_90_percent(threshold: float) -> None:
    assert similarity.percentage(threshold, "cosine", threshold) == 90.0
    assert similarity.percentage(threshold * 0.999 + 0.001 * -1, "cosine", threshold) < 90.0


@given(st.floats(-1.0, 1.0).filter(lambda c: abs(c - similarity.FACE01_COS_AT_90) > 1e-3))
def test_face01_formula_where_the_threshold_is_face01s(cos: float) -> None:
    assert similarity.percentage(cos, "cosine", similarity.FACE01_COS_AT_90) == similarity.face01_percentage(cos)


def test_the_reported_case_a_cosine_plugin_with_threshold_0_7() -> None:
    # issue 17: "different people" printed next to 94.25 % before the threshold was used
    assert not COSINE.is_same(0.6, 0.7)
    assert similarity.percentage(0.6, "cosine", 0.7) < 90.0 < similarity.face01_percentage(0.6)


# ---------------------------------------------------------------- 4. facekit check
BAD_YAML = """name: typo
detector: {name: dlib.hog, params: {upsampel: 1}}
aligner: dlib.chip5
embedder: torch.dlib_resnt
multi_face: biggest
"""


def test_check_lists_every_problem_at_once(tmp_path: Path) -> None:
    path = tmp_path / "typos.yaml"
    path.write_text(BAD_YAML)
    result = _invoke("check", str(path))
    assert result.exit_code == 2 and result.stdout == ""
    lines = result.stderr.splitlines()
    assert lines[0] == f"Error: invalid pipeline in {path} (3 problems):"
    assert lines[1].startswith("  multi_face: 'biggest' is not a choice") and "Choices: largest, central" in lines[1]
    assert lines[2].startswith("  detector.params.upsampel: unknown key; did you mean 'upsample'?")
    assert lines[3].startswith("  embedder.name: unknown embedder 'torch.dlib_resnt'; did you mean 'torch.dlib_resnet'?")

    from facekit.pipeline import Pipeline

    with pytest.raises(ConfigError) as caught:
        Pipeline.from_yaml(path)
    assert [p.split(":")[0] for p in caught.value.problems] == ["multi_face", "detector.params.upsampel",
                                                               "embedder.name"]


def test_check_takes_p_like_every_other_command() -> None:
    for args in (["check", "-p", "default"], ["check", "--pipeline", "default"], ["check", "default"]):
        result = _invoke(*args)
        assert result.exit_code == 0, result.output
        assert result.stdout.startswith("OK: Pipeline('default'")
    assert _invoke("check", "default", "-p", "eastasian").exit_code == 2


def test_yaml_syntax_error_shows_the_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "syntax.yaml"
    path.write_text("name: x\ndetector: name: dlib.hog\n")
    result = _invoke("check", str(path))
    assert result.exit_code == 2
    assert f"invalid YAML in {path}, line 2, column 15: mapping values are not allowed here" in result.stderr
    lines = result.stderr.splitlines()
    assert lines[1] == "  2 | detector: name: dlib.hog"
    assert lines[2].index("^") == lines[1].index(": dlib.hog")  # under the second colon


# ------------------------------------------------------------- 5. explain without -o
def test_explain_without_output_writes_a_named_card(examples: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = _invoke("explain", str(examples / "obama.jpg"), str(examples / "obama2.jpg"), "--explainer", "occlusion")
    assert result.exit_code == 0, result.output
    card = tmp_path / "card-obama-obama2.png"
    assert card.is_file() and card.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert result.stdout.strip().endswith("card written to card-obama-obama2.png")


# ------------------------------------------------------------ 6. quiet MediaPipe logs
def test_mediapipe_logs_are_quiet_unless_verbose(faces_dir: Path, tmp_path: Path) -> None:
    folder = str(faces_dir / "similarity_of_two_persons" / "eguchi_yosuke")
    command = [sys.executable, "-m", "facekit", "average", folder, "-o", str(tmp_path / "mean.png"), "--no-progress",
               "-p", "mediapipe"]
    env = {**os.environ, "FACEKIT_LOAD_PLUGINS": "dlib,torch,mediapipe"}
    env.pop("FACEKIT_VERBOSE", None)
    quiet = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert quiet.returncode == 0, quiet.stderr
    assert "TensorFlow Lite" not in quiet.stderr and ".cc:" not in quiet.stderr, quiet.stderr
    loud = subprocess.run(command[:3] + ["-v"] + command[3:], capture_output=True, text=True, env=env, timeout=300)
    assert loud.returncode == 0
    assert "TensorFlow Lite" in loud.stderr or ".cc:" in loud.stderr, "-v should let MediaPipe's own lines through"


# ------------------------------------------------------------------ 7. list pipeline
def test_list_pipeline_shows_only_loadable_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    from facekit.plugins import reset_plugin_manager

    monkeypatch.setenv("FACEKIT_LOAD_PLUGINS", "dlib,torch")
    reset_plugin_manager()
    try:
        listed = _invoke("list", "pipeline")
        checked = _invoke("check", "mediapipe")
    finally:
        reset_plugin_manager()
    assert listed.exit_code == 0
    assert "default" in listed.stdout.split() and "mediapipe" not in listed.stdout
    assert "not loadable: mediapipe needs mediapipe.blazeface, mediapipe.mesh" in listed.stderr
    install = "`pip install -e plugins/facekit-mediapipe` from the root of a facekit checkout"
    assert install in listed.stderr
    assert checked.exit_code == 2 and install in checked.stderr
    assert "`pip install facekit-mediapipe`" not in checked.stderr
    assert (REPO_ROOT / "plugins" / "facekit-mediapipe" / "pyproject.toml").is_file(), "the command must be real"


# ------------------------------------------------------------- 8. the quickstart block
def test_quickstart_shows_what_compare_prints(examples: Path) -> None:
    page = (REPO_ROOT / "docs" / "quickstart.rst").read_text(encoding="utf-8")
    block = re.search(r"It prints.*?:class: compare-output\n\n(.*?)\n\n\S", page, re.S)
    assert block, "the quickstart's 'It prints' block"
    shown = textwrap.dedent(block.group(1))
    printed = _invoke("compare", str(examples / "obama.jpg"), str(examples / "obama2.jpg"))
    assert printed.exit_code == 0
    assert printed.stdout.rstrip("\n") == shown, "update the block in docs/quickstart.rst"


# ---------------------------------------------------------------------------- 9.
def test_limit_spreads_the_pairs_over_the_file(faces_dir: Path) -> None:
    from facekit.studies.pairs import read_pairs

    path = faces_dir / "lfw-dev" / "pairsDevTest.txt"
    full, limited = read_pairs(path), read_pairs(path, limit=10)
    same = [p for p in limited.pairs if p.same]
    different = [p for p in limited.pairs if not p.same]
    assert len(same) == len(different) == 10
    all_same = [p for p in full.pairs if p.same]
    assert same[0] == all_same[0] and same[-1] == all_same[-1], "from the first line to the last"
    people = {Path(p.a).parent.name for p in same}
    first_ten = {Path(p.a).parent.name for p in all_same[:10]}
    assert len(people) == 10 and len(first_ten) < len(people), "the first lines are few people; the spread is not"


def test_a_url_is_refused_as_not_a_local_file(examples: Path, tmp_path: Path) -> None:
    for args in (["compare", "https://example.org/a.jpg", str(examples / "obama.jpg")],
                 ["embed", "http://example.org/b.png", "-o", str(tmp_path / "x.npz")]):
        result = _invoke(*args)
        assert result.exit_code == 3
        assert "facekit reads local files" in result.stderr and "no such file" not in result.stderr


def test_audit_table_fits_the_terminal(faces_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = faces_dir / "similarity_of_two_persons"
    monkeypatch.chdir(tmp_path)  # short output paths: a long path cannot be wrapped
    result = _invoke("audit", f"actors={folder}", "-o", "audit", "--no-progress", env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    too_wide = [line for line in result.stdout.splitlines() if len(line) > 80]
    assert not too_wide, too_wide
    assert re.search(r"^  FMR at 0\.6:\s+\S", result.stdout, re.M), result.stdout
    assert "| population |" in (tmp_path / "audit" / "audit.md").read_text(), "the Markdown file is unchanged"


def test_plugins_are_listed_sorted() -> None:
    result = _invoke("plugins")
    names = [line.split()[0] for line in result.stdout.splitlines() if line and not line.startswith(" ")]
    assert len(names) >= 3 and names == sorted(names)
    data = json.loads(_invoke("plugins", "--json").stdout)
    assert [p["name"] for p in data["plugins"]] == sorted(p["name"] for p in data["plugins"])


# ------------------------------------------------------------------------ 10. contracts
def test_contract_failures_say_which_contract_and_what_was_expected() -> None:
    from facekit.testing import EmbedderContract

    class WrongWidth:
        dim = 5
        input_size = 0

        def embed(self, chips: np.ndarray) -> np.ndarray:
            return np.zeros((len(chips), 1024), np.float32)

    chips = np.zeros((3, 8, 8, 3), np.uint8)
    with pytest.raises(AssertionError) as caught:
        EmbedderContract().test_batch_first(WrongWidth(), chips)  # type: ignore[arg-type]
    message = str(caught.value)
    assert message.startswith("EmbedderContract: embed() of 3 chips gives 3 rows of `dim` = 5 values")
    assert "got shape (3, 1024)" in message


# ---------------------------------------------------------------------- 11. notebook
def test_html_view_shows_the_coloured_verdict_and_the_faces(examples: Path, pipeline) -> None:  # type: ignore[no-untyped-def]
    same = pipeline.compare(str(examples / "obama.jpg"), str(examples / "obama2.jpg"))
    different = pipeline.compare(str(examples / "two_people.jpg"), str(examples / "obama.jpg"))
    same_html, different_html = same._repr_html_(), different._repr_html_()
    assert "background:#1a7f37" in same_html and "SAME PERSON" in same_html
    assert "background:#c62828" in different_html and "DIFFERENT PEOPLE" in different_html
    assert same_html.count("<img src='data:image/png;base64,") == 2
    assert "has 2 faces" in different_html and "has 2 faces" not in same_html

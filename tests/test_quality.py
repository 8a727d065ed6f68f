"""Face-quality flags (facekit.quality): a tiny, blurred or profile face makes a comparison say so."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFilter

from facekit import quality
from facekit.types import Landmarks

OBAMA = "face_recognition_examples/examples/obama.jpg"
OBAMA2 = "face_recognition_examples/examples/obama2.jpg"
#: an LFW dev photo of a face turned far to one side (yaw -0.52 by dlib's 5 points; 1 % of LFW dev is past 0.35)
PROFILE = "lfw-dev/images/Christine_Todd_Whitman/Christine_Todd_Whitman_0002.jpg"


# --------------------------------------------------------------------------- the signals
def _five(eye_a: tuple[float, float], eye_b: tuple[float, float], nose: tuple[float, float]) -> Landmarks:
    def corners(c: tuple[float, float]) -> list[tuple[float, float]]:
        return [(c[0] - 5, c[1]), (c[0] + 5, c[1])]

    return Landmarks(np.array(corners(eye_a) + corners(eye_b) + [nose], dtype=np.float32), "dlib5")


def test_yaw_and_eye_distance_from_landmarks() -> None:
    frontal = _five((100, 100), (140, 100), (120, 130))
    assert quality.eye_distance(frontal) == pytest.approx(40.0)
    assert quality.yaw(frontal) == pytest.approx(0.0)
    turned = _five((100, 100), (140, 100), (140, 130))  # nose under one eye
    assert quality.yaw(turned) == pytest.approx(0.5)
    assert quality.yaw(_five((100, 100), (140, 100), (100, 130))) == pytest.approx(-0.5)
    assert quality.flags_for(40.0, 1.0, 0.5) == ("profile",)
    assert quality.flags_for(10.0, 0.0, 0.0) == ("tiny", "blurred")
    assert quality.eye_distance(None) is None and quality.yaw(None) is None


def test_sharpness_falls_with_blur(faces_dir: Path) -> None:
    photo = Image.open(faces_dir / OBAMA).convert("RGB").resize((150, 188))
    values = [quality.sharpness(np.asarray(photo.filter(ImageFilter.GaussianBlur(r)))) for r in (0.01, 1, 2, 4)]
    assert values == sorted(values, reverse=True) and values[0] > 3 * values[-1]
    assert quality.sharpness(np.full((150, 150, 3), 90, np.uint8)) == 0.0  # flat: no detail at all


# --------------------------------------------------------------------------- on comparisons
@pytest.fixture(scope="module")
def pipeline():  # type: ignore[no-untyped-def]
    pytest.importorskip("facekit_dlib")
    from facekit.pipeline import Pipeline
    from facekit.plugins import reset_plugin_manager

    reset_plugin_manager()
    return Pipeline.load("default").warm_up()


def _photo(faces_dir: Path, name: str) -> np.ndarray:
    return np.asarray(Image.open(faces_dir / name).convert("RGB"))


def _tiny(faces_dir: Path) -> np.ndarray:
    photo = Image.open(faces_dir / OBAMA).convert("RGB")
    return np.asarray(photo.resize((130, round(130 * photo.height / photo.width)), Image.LANCZOS))


def _blurred(faces_dir: Path) -> np.ndarray:
    return np.asarray(Image.open(faces_dir / OBAMA).convert("RGB").filter(ImageFilter.GaussianBlur(6)))


def test_good_photos_raise_no_flag(pipeline, faces_dir: Path) -> None:  # type: ignore[no-untyped-def]
    result = pipeline.compare(faces_dir / OBAMA, faces_dir / OBAMA2)
    assert result.same and result.confident
    assert all(q is not None and q.flags == () for q in result.quality)
    data = json.loads(result.to_json())
    assert data["confident"] is True and [q["flags"] for q in data["quality"]] == [[], []]
    assert data["quality"][0]["eye_distance"] > 2 * quality.MIN_EYE_DISTANCE
    assert "uncertain" not in str(result) and not result.warnings()


@pytest.mark.parametrize("variant, flag", [(_tiny, "tiny"), (_blurred, "blurred")])
def test_tiny_or_blurred_face_is_flagged(pipeline, faces_dir: Path, variant, flag: str) -> None:  # type: ignore[no-untyped-def]
    result = pipeline.compare(variant(faces_dir), faces_dir / OBAMA2)
    assert flag in result.quality[0].flags and result.quality[1].flags == ()
    assert not result.confident
    data = json.loads(result.to_json())
    assert data["confident"] is False and flag in data["quality"][0]["flags"]
    assert f"uncertain ({flag} face)" in str(result)
    assert any(f"is {flag}" in note for note in result.warnings())


def test_profile_face_is_flagged(pipeline, faces_dir: Path) -> None:  # type: ignore[no-untyped-def]
    result = pipeline.compare(faces_dir / OBAMA2, faces_dir / PROFILE)
    assert "profile" in result.quality[1].flags and abs(result.quality[1].yaw) > quality.MAX_YAW
    assert not result.confident and re.search(r"uncertain \(.*profile face\)", str(result))


def test_compare_cli_shows_the_flag(pipeline, faces_dir: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from click.testing import CliRunner

    from facekit.cli import main

    tiny = tmp_path / "tiny.png"
    Image.fromarray(_tiny(faces_dir)).save(tiny)
    runner = CliRunner()
    table = runner.invoke(main, ["compare", str(tiny), str(faces_dir / OBAMA2)])
    assert table.exit_code == 0, table.output
    assert "uncertain (tiny face)" in table.output and "is tiny" in table.output
    as_json = runner.invoke(main, ["compare", "--json", str(tiny), str(faces_dir / OBAMA2)])
    data = json.loads(as_json.stdout)
    assert data["confident"] is False and data["quality"][0]["flags"] == ["tiny"]

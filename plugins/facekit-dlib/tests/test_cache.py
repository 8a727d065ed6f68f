"""facekit-dlib's cache of derived files (the HOG detector, the ResNet's ONNX graph): same results, fast start."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from facekit import load_image

from facekit_dlib import _cache
from facekit_dlib.detectors import HogDetector
from facekit_dlib.resnet import DlibResnetOnnxEmbedder

EXAMPLES = "face_recognition_examples/examples"


@pytest.fixture
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(_cache.ENV_VAR, str(tmp_path))
    return tmp_path / "dlib"


@pytest.fixture(scope="module")
def two_people(faces_dir: Path) -> np.ndarray:
    return load_image(faces_dir / EXAMPLES / "two_people.jpg")


def _chips(count: int) -> np.ndarray:
    return np.random.default_rng(3).integers(0, 256, size=(count, 150, 150, 3), dtype=np.uint8)


def test_hog_detector_from_the_cache_finds_the_same_faces(cache_dir: Path, two_people: np.ndarray) -> None:
    import dlib

    first = HogDetector(upsample=1).detect(two_people)  # made by dlib, then saved
    assert [p.name for p in cache_dir.iterdir()] == [f"frontal_face_detector-dlib-{dlib.__version__}.svm"]
    second = HogDetector(upsample=1).detect(two_people)  # read back from the file
    builtin_rects, builtin_scores, _ = dlib.get_frontal_face_detector().run(two_people, 1, 0.0)
    assert len(first) == len(second) == len(builtin_rects) == 2
    assert [f.box for f in first] == [f.box for f in second]
    assert sorted(f.score for f in second) == pytest.approx(sorted(builtin_scores))


def test_onnx_graph_from_the_cache_gives_the_same_descriptors(cache_dir: Path) -> None:
    chips = _chips(3)
    built = DlibResnetOnnxEmbedder().embed(chips)
    (saved,) = cache_dir.glob("*.onnx")
    assert saved.name.startswith("dlib_face_recognition_resnet_model_v1-55533b28a95800a5-graph")
    np.testing.assert_array_equal(DlibResnetOnnxEmbedder().embed(chips), built)


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_a_damaged_cache_file_is_made_again(cache_dir: Path, two_people: np.ndarray, damage: str) -> None:
    chips = _chips(2)
    expected = DlibResnetOnnxEmbedder().embed(chips)
    faces = HogDetector(upsample=1).detect(two_people)
    good = {path.name: path.read_bytes() for path in cache_dir.iterdir()}
    for path in cache_dir.iterdir():
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 3] if damage == "truncated" else b"not a model" * 100)
    np.testing.assert_allclose(DlibResnetOnnxEmbedder().embed(chips), expected, atol=1e-6)
    assert [f.box for f in HogDetector(upsample=1).detect(two_people)] == [f.box for f in faces]
    # and the damaged files were replaced, so the next start is fast again
    assert {path.name: path.read_bytes() for path in cache_dir.iterdir()} == good


def test_cache_turned_off_writes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(_cache.ENV_VAR, "")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setenv("HOME", str(tmp_path))
    assert _cache.cache_folder() is None
    assert DlibResnetOnnxEmbedder().embed(_chips(1)).shape == (1, 128)
    assert list(tmp_path.iterdir()) == []


def test_unwritable_cache_folder_is_not_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("a file where the cache folder should be")
    monkeypatch.setenv(_cache.ENV_VAR, str(blocker))
    made = _cache.cached("x.bin", lambda: b"value", lambda v, p: p.write_bytes(v), lambda p: p.read_bytes())
    assert made == b"value" and blocker.read_text().startswith("a file")

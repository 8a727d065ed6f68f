"""facekit-haar's own tests, as a third-party plugin would write them.

facekit's pytest plugin (installed with facekit) provides the ``facekit_plugin`` fixture
and the contract test classes; ``faces_dir`` comes from the facekit checkout's
conftest.py (a plugin of your own would point at its own test photos instead).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import facekit
from facekit.errors import ConfigError
from facekit.testing import DetectorContract
from facekit_haar.detector import HaarFaceDetector

EXAMPLES = "face_recognition_examples/examples"


@pytest.fixture(scope="module")
def detector() -> HaarFaceDetector:
    return HaarFaceDetector()


@pytest.fixture(scope="module")
def face_image(faces_dir: Path) -> np.ndarray:
    return facekit.load_image(faces_dir / EXAMPLES / "obama.jpg")


class TestHaarContract(DetectorContract):
    """Every detector must pass facekit's detector contract."""

    @pytest.fixture
    def component(self, detector: HaarFaceDetector) -> HaarFaceDetector:
        return detector


def iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    x0, y0, x1, y1 = max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])
    inter = max(x1 - x0, 0) * max(y1 - y0, 0)
    area = lambda box: (box[2] - box[0]) * (box[3] - box[1])  # noqa: E731
    return inter / (area(a) + area(b) - inter)


def test_registered_through_the_entry_point() -> None:
    registry = facekit.get_registry()
    registration = registry.components["detector"]["haar.frontalface"]
    assert registration.cls is HaarFaceDetector
    assert registration.plugin == "haar"
    assert "haar" in registry.pipelines


def test_box_agrees_with_dlib_on_obama(detector: HaarFaceDetector, face_image: np.ndarray) -> None:
    # face_recognition's own test gives dlib HOG's box for this photo as (top, right, bottom, left)
    top, right, bottom, left = 142, 617, 409, 349
    faces = detector.detect(face_image)
    assert len(faces) == 1
    assert iou(faces[0].box, (left, top, right, bottom)) > 0.6


def test_two_people_left_to_right(detector: HaarFaceDetector, faces_dir: Path) -> None:
    image = facekit.load_image(faces_dir / EXAMPLES / "two_people.jpg")  # Obama left, Biden right
    faces = detector.detect(image)
    assert len(faces) == 2
    left, right = sorted(faces, key=lambda f: f.center[0])
    assert left.center[0] < image.shape[1] / 2 < right.center[0]


def test_boxes_are_in_source_pixels_at_every_resolution(faces_dir: Path) -> None:
    # the same photo at 720p and 1080p: scanned at the same size, boxes must scale with the photo
    boxes = {}
    for name in ("obama-720p.jpg", "obama-1080p.jpg"):
        image = facekit.load_image(faces_dir / EXAMPLES / name)
        faces = HaarFaceDetector(max_side=640).detect(image)
        assert len(faces) == 1, name
        boxes[name] = np.array(faces[0].box) / image.shape[1]
    np.testing.assert_allclose(boxes["obama-720p.jpg"], boxes["obama-1080p.jpg"], atol=0.02)


def test_bad_parameter_names_its_yaml_path() -> None:
    yaml_text = """
detector: {name: haar.frontalface, params: {cascade: profile}}
aligner: dlib.chip5
embedder: torch.dlib_resnet
"""
    with pytest.raises(ConfigError, match=r"detector\.params\.cascade"):
        facekit.Pipeline.from_yaml(yaml_text)


def test_plugin_registered_for_one_test(facekit_plugin) -> None:  # type: ignore[no-untyped-def]
    # facekit_plugin registers a plugin object for one test: here a variant detector
    class Strict(HaarFaceDetector):
        name = "haar.strict"

    class StrictPlugin:
        @facekit.hookimpl
        def register_detectors(self, register):  # type: ignore[no-untyped-def]
            register(Strict)

    facekit_plugin(StrictPlugin(), name="haar-strict")
    assert "haar.strict" in facekit.list_components("detector")


@pytest.fixture(scope="module")
def haar_pipeline() -> facekit.Pipeline:
    registry = facekit.get_registry()
    if "dlib.chip5" not in registry.components["aligner"] or "torch.dlib_resnet" not in registry.components["embedder"]:
        pytest.skip("the haar pipeline needs the facekit-dlib and facekit-torch plugins")
    return facekit.Pipeline.load("haar")


def test_haar_pipeline_tells_people_apart(haar_pipeline: facekit.Pipeline, faces_dir: Path) -> None:
    photos = faces_dir / EXAMPLES
    same = haar_pipeline.compare(photos / "obama.jpg", photos / "obama2.jpg")
    different = haar_pipeline.compare(photos / "obama.jpg", photos / "biden.jpg")
    assert same.same and not different.same
    assert same.score < 0.5 < different.score
    assert same.faces[0] is not None and same.faces[0].face.detector == "haar.frontalface"

"""facekit-mediapipe on real photos: detection, mesh alignment, agreement with dlib, the pin."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from facekit.errors import DependencyError, ModelFileError, NoFaceError
from facekit.image import load_image
from facekit.plugins import get_registry
from facekit.testing import AlignerContract, DetectorContract, modules_imported_by
from facekit.types import Face
from facekit_mediapipe._runtime import PINNED_VERSION, check_version
from facekit_mediapipe.blazeface import BlazeFaceDetector
from facekit_mediapipe.mesh import LEFT_EYE_OUTER, RIGHT_EYE_OUTER, TEMPLATE_5, FaceMeshAligner, eye_centres, five_points

EXAMPLES = "face_recognition_examples"


# Components are cheap to build but MediaPipe graphs take a moment to start: share them.
@pytest.fixture(scope="module")
def detector() -> BlazeFaceDetector:
    return BlazeFaceDetector()


@pytest.fixture(scope="module")
def mesh_aligner() -> FaceMeshAligner:
    return FaceMeshAligner()


@pytest.fixture(scope="module")
def face_image(faces_dir: Path) -> np.ndarray:
    return load_image(faces_dir / EXAMPLES / "examples" / "obama.jpg")


@pytest.fixture(scope="module")
def labelled(faces_dir: Path) -> list[dict[str, str]]:
    with open(faces_dir / EXAMPLES / "LABELS.tsv", encoding="utf-8") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


# ---------------------------------------------------------------- contracts
class TestBlazeFaceContract(DetectorContract):
    @pytest.fixture
    def component(self, detector: BlazeFaceDetector) -> BlazeFaceDetector:
        return detector


class TestMeshContract(AlignerContract):
    @pytest.fixture
    def component(self, mesh_aligner: FaceMeshAligner) -> FaceMeshAligner:
        return mesh_aligner


def test_registered_through_the_entry_point() -> None:
    registry = get_registry()
    assert registry.components["detector"]["mediapipe.blazeface"].plugin == "mediapipe"
    assert registry.components["aligner"]["mediapipe.mesh"].plugin == "mediapipe"


# ---------------------------------------------------------------- detection
def test_finds_every_labelled_face(faces_dir: Path, detector: BlazeFaceDetector, labelled: list[dict[str, str]]) -> None:
    wrong = []
    for row in labelled:
        faces = detector.detect(load_image(faces_dir / EXAMPLES / row["path"]))
        expected = row["faces_expected"]
        ok = len(faces) >= int(expected[2:]) if expected.startswith(">=") else len(faces) == int(expected)
        if not ok:
            wrong.append(f"{row['path']}: expected {expected}, found {len(faces)}")
    assert not wrong, "\n".join(wrong)


def test_two_people_left_and_right(faces_dir: Path, detector: BlazeFaceDetector) -> None:
    image = load_image(faces_dir / EXAMPLES / "examples" / "two_people.jpg")
    faces = detector.detect(image)
    assert len(faces) == 2
    left, right = sorted(faces, key=lambda f: f.center[0])
    width = image.shape[1]
    assert left.center[0] < width / 2 < right.center[0]  # Obama left, Biden right
    for face in faces:
        assert face.landmarks is not None and face.landmarks.scheme == "blazeface6"
        x0, y0, x1, y1 = face.box
        right_eye, left_eye = face.landmarks.points[:2]
        # the person's right eye is on the left of the picture, both inside the box
        assert x0 < right_eye[0] < left_eye[0] < x1 and y0 < right_eye[1] < y1
        assert 0.5 < face.score <= 1.0


def test_short_range_model_finds_tight_crops(faces_dir: Path) -> None:
    crop = load_image(next((faces_dir / "similarity_of_two_persons" / "eguchi_yosuke").glob("*.png")))
    assert len(BlazeFaceDetector(model="short").detect(crop)) == 1


def test_min_confidence_filters(faces_dir: Path) -> None:
    image = load_image(faces_dir / EXAMPLES / "examples" / "two_people.jpg")
    scores = [f.score for f in BlazeFaceDetector(min_confidence=0.5).detect(image)]
    strict = BlazeFaceDetector(min_confidence=min(scores) + 0.01).detect(image)
    assert len(strict) == len(scores) - 1


def test_tasks_model_file_is_used(faces_dir: Path) -> None:
    """A user-supplied MediaPipe Tasks model replaces the bundled one (the route for newer MediaPipe)."""
    import mediapipe

    model = Path(mediapipe.__path__[0]) / "modules" / "face_detection" / "face_detection_short_range.tflite"
    image = load_image(faces_dir / EXAMPLES / "examples" / "two_people.jpg")
    tasks = BlazeFaceDetector(model_path=str(model)).detect(image)
    legacy = BlazeFaceDetector(model="short").detect(image)
    assert len(tasks) == len(legacy) == 2
    for a, b in zip(sorted(tasks, key=lambda f: f.center[0]), sorted(legacy, key=lambda f: f.center[0])):
        assert np.abs(a.landmarks.points - b.landmarks.points).max() < 3.0  # same model, same keypoints


def test_bad_model_file_is_a_model_file_error(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="does not exist"):
        BlazeFaceDetector(model_path=str(tmp_path / "missing.tflite")).warm_up()


# --------------------------------------------------------------- the pin
def test_newer_mediapipe_is_explained() -> None:
    with pytest.raises(DependencyError) as info:
        check_version("mediapipe.mesh", None, version="0.10.32")
    message = str(info.value)
    assert f"mediapipe=={PINNED_VERSION}" in message and "0.10.32" in message and "model_path" in message
    check_version("mediapipe.mesh", "/some/face_landmarker.task", version="0.10.32")  # a model file is enough
    check_version("mediapipe.mesh", None, version=PINNED_VERSION)


def test_missing_mediapipe_is_explained(monkeypatch: pytest.MonkeyPatch) -> None:
    from facekit_mediapipe import _runtime

    monkeypatch.setattr(_runtime, "installed_version", lambda: None)
    with pytest.raises(DependencyError, match="pip install 'mediapipe==0.10.21'"):
        _runtime.import_mediapipe("mediapipe.blazeface")


def test_loading_the_plugin_does_not_import_mediapipe() -> None:
    code = "import facekit_mediapipe\nfrom facekit.plugins import get_registry\nget_registry()"
    assert "mediapipe" not in modules_imported_by(code), "mediapipe imported eagerly"


# --------------------------------------------------------------- alignment
def test_mesh_chip_maps_back_to_the_photo(face_image: np.ndarray, detector: BlazeFaceDetector, mesh_aligner: FaceMeshAligner) -> None:
    face = detector.detect(face_image)[0]
    aligned = mesh_aligner.align(face_image, face)
    assert aligned.chip.shape == (224, 224, 3)
    assert aligned.landmarks is not None and aligned.landmarks.scheme == "mediapipe468"
    source = mesh_aligner.mesh(face_image, face).points
    np.testing.assert_allclose(aligned.to_source(aligned.landmarks.points), source, atol=0.05)
    # the 5 key points sit on the template, up to the residual of a similarity fit (a wide
    # smile moves the mouth corners; the eyes stay put)
    template = ((TEMPLATE_5 - 0.5) / 1.5 + 0.5) * 224 - 0.5
    residual = np.linalg.norm(five_points(aligned.landmarks.points) - template, axis=1)
    assert residual[:2].max() < 5.0 and residual.max() < 0.08 * 224
    # BlazeFace's eye keypoints land near the mesh's eye centres
    assert np.abs(eye_centres(source) - face.landmarks.points[:2]).max() < 0.1 * face.width


def test_eyes_level_method_levels_the_eyes(faces_dir: Path, detector: BlazeFaceDetector) -> None:
    image = load_image(faces_dir / EXAMPLES / "examples" / "knn_examples" / "test" / "kit_with_rose.jpg")
    aligner = FaceMeshAligner(method="eyes_level", size=200)
    for face in detector.detect(image):
        aligned = aligner.align(image, face)
        points = aligned.landmarks.points
        assert aligned.chip.shape == (200, 200, 3)
        assert abs(points[RIGHT_EYE_OUTER, 1] - points[LEFT_EYE_OUTER, 1]) < 0.5
        assert points[RIGHT_EYE_OUTER, 0] < points[LEFT_EYE_OUTER, 0]
        # padding 0: the mesh fills the chip edge to edge along its longer side
        extent = points.max(axis=0) - points.min(axis=0)
        assert extent.max() == pytest.approx(200, abs=1.5)


def test_whole_image_box_on_a_tight_crop(faces_dir: Path, mesh_aligner: FaceMeshAligner) -> None:
    crop = load_image(next((faces_dir / "similarity_of_two_persons" / "matsumura_hokuto").glob("*.png")))
    aligned = mesh_aligner.align(crop, Face((0, 0, crop.shape[1], crop.shape[0])))
    right_eye, left_eye = eye_centres(aligned.to_source(aligned.landmarks.points))
    assert right_eye[0] < crop.shape[1] / 2 < left_eye[0]  # eyes either side of the centre of the crop


def test_mesh_is_deterministic(face_image: np.ndarray, detector: BlazeFaceDetector, mesh_aligner: FaceMeshAligner) -> None:
    face = detector.detect(face_image)[0]
    a, b = mesh_aligner.align(face_image, face), mesh_aligner.align(face_image, face)
    assert np.array_equal(a.chip, b.chip) and np.array_equal(a.landmarks.points, b.landmarks.points)


def test_no_face_in_the_box_is_a_no_face_error(mesh_aligner: FaceMeshAligner) -> None:
    blank = np.full((300, 300, 3), 127, np.uint8)
    with pytest.raises(NoFaceError, match="found no face"):
        mesh_aligner.align(blank, Face((50, 50, 250, 250)))


# ------------------------------------------------------ agreement with dlib
AGREEMENT_PHOTOS = [
    "examples/obama.jpg",
    "examples/biden.jpg",
    "examples/two_people.jpg",
    "examples/knn_examples/train/rose_leslie/img1.jpg",
    "examples/knn_examples/train/kit_harington/john2.jpeg",
    "examples/knn_examples/test/alex_lacamoire1.jpg",
]


def test_eye_centres_agree_with_dlib(faces_dir: Path, detector: BlazeFaceDetector, mesh_aligner: FaceMeshAligner) -> None:
    registry = get_registry()
    if "dlib.chip68" not in registry.components["aligner"]:
        pytest.skip("the facekit-dlib plugin is not installed")
    hog = registry.get("detector", "dlib.hog")()
    chip68 = registry.get("aligner", "dlib.chip68")()
    errors, relative = [], []
    for name in AGREEMENT_PHOTOS:
        image = load_image(faces_dir / EXAMPLES / name)
        for face in hog.detect(image):
            dlib_points = chip68.landmarks(image, face).points
            # iBUG 68: 36-41 the person's right eye, 42-47 the left
            dlib_eyes = np.stack([dlib_points[36:42].mean(axis=0), dlib_points[42:48].mean(axis=0)])
            mesh_eyes = eye_centres(mesh_aligner.mesh(image, face).points)
            error = np.linalg.norm(mesh_eyes - dlib_eyes, axis=1)
            errors.extend(error)
            relative.extend(error / np.linalg.norm(dlib_eyes[1] - dlib_eyes[0]))
    assert len(errors) >= 7
    print(f"eye centres, mesh vs dlib 68: mean {np.mean(errors):.2f} px, max {np.max(errors):.2f} px, "
          f"max {np.max(relative):.1%} of the eye distance")
    assert np.mean(errors) < 3.0 and np.max(errors) < 8.0
    assert np.max(relative) < 0.06


# ----------------------------------------------------- the bundled pipeline
def test_mediapipe_pipeline_fits_dlib_resnet(faces_dir: Path) -> None:
    """The mesh chips frame faces as dlib's do, so dlib's ResNet separates people as usual."""
    from facekit.pipeline import Pipeline

    if "torch.dlib_resnet" not in get_registry().components["embedder"]:
        pytest.skip("the facekit-torch plugin is not installed")
    pipeline = Pipeline.load("mediapipe")
    root = faces_dir / EXAMPLES / "examples"
    obama, obama2, biden = (root / "obama.jpg", root / "obama2.jpg", root / "biden.jpg")
    embeddings = pipeline.embed([obama, obama2, biden])
    same = pipeline.compare(embeddings[0], embeddings[1])
    different = pipeline.compare(embeddings[0], embeddings[2])
    assert same.same and same.score < 0.5
    assert not different.same and different.score > 0.7

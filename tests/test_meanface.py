"""The mean-face aggregator, its geometry, the side-by-side picture and `facekit average`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from pydantic import ValidationError

from facekit.errors import ConfigError, NoFaceError
from facekit.image import load_image
from facekit.builtin.meanface import MeanFaceAggregator, delaunay, fit_similarity, mean_face, side_by_side
from facekit.plugins import get_registry
from facekit.types import AlignedFace, Face, Landmarks

CROPS = "similarity_of_two_persons"


def laplacian_variance(image: np.ndarray) -> float:
    """Sharpness: variance of the Laplacian of the grey image."""
    import cv2

    return float(cv2.Laplacian(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), cv2.CV_64F).var())


# ------------------------------------------------------------------ geometry
def test_fit_similarity_recovers_a_known_transform() -> None:
    rng = np.random.default_rng(0)
    src = rng.uniform(0, 100, size=(20, 2))
    angle, scale, shift = 0.3, 1.7, np.array([12.0, -5.0])
    linear = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    dst = src @ linear.T + shift
    np.testing.assert_allclose(fit_similarity(src, dst), np.hstack([linear, shift[:, None]]), atol=1e-9)
    # never a reflection, even for mirrored points
    mirrored = fit_similarity(src, src * [-1, 1])
    assert np.linalg.det(mirrored[:, :2]) > 0


def test_delaunay_tiles_the_hull() -> None:
    rng = np.random.default_rng(1)
    points = np.vstack([rng.uniform(10, 90, size=(40, 2)), [[0, 0], [100, 0], [100, 100], [0, 100]]])
    triangles = delaunay(points)
    corners = points[triangles]
    areas = 0.5 * np.abs(np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0]))
    assert areas.sum() == pytest.approx(100 * 100, rel=1e-6)  # the hull is the square: no gap, no overlap
    assert np.array_equal(triangles, delaunay(points))  # stable order
    assert set(np.unique(triangles)) == set(range(len(points)))  # every point is used


def test_same_shape_everywhere_gives_the_chip_back() -> None:
    rng = np.random.default_rng(2)
    chip = rng.integers(0, 256, size=(64, 64, 3), dtype=np.uint8)
    points = rng.uniform(8, 56, size=(12, 2))
    for method in ("warp", "similarity"):
        out = mean_face([chip, chip.copy()], [points, points], method=method)
        assert np.abs(out.astype(int) - chip.astype(int)).max() <= 1, method


def test_warp_moves_landmarks_onto_the_mean_shape() -> None:
    """A bright dot at a landmark that sits in a different place on each chip ends up,
    after the warp, as one dot at the mean position (the plain average keeps two)."""
    base = np.array([[16, 16], [48, 16], [32, 34], [20, 50], [44, 50]], dtype=np.float64)
    chips, shapes = [], []
    for dx in (-4, 4):
        shape = base.copy()
        shape[2, 0] += dx  # only the nose moves
        chip = np.zeros((64, 64, 3), np.uint8)
        chip[int(shape[2, 1]) - 1 : int(shape[2, 1]) + 2, int(shape[2, 0]) - 1 : int(shape[2, 0]) + 2] = 255
        chips.append(chip)
        shapes.append(shape)
    warped = mean_face(chips, shapes, method="warp")
    assert warped[34, 32].min() > 200  # both dots landed on the mean nose position
    plain = np.mean(chips, axis=0)
    assert plain[34, 32].max() == 0


def test_margin_frames_the_mean_shape() -> None:
    chip = np.full((100, 100, 3), 90, np.uint8)
    points = np.array([[30, 30], [70, 30], [50, 70]], dtype=np.float64)
    out = mean_face([chip], [points], size=80, margin=0.0)
    assert out.shape == (80, 80, 3) and out.min() == 90  # the landmarks' square, filled by the chip


def test_bad_inputs_are_clear() -> None:
    chip = np.zeros((32, 32, 3), np.uint8)
    with pytest.raises(NoFaceError):
        mean_face([], [])
    with pytest.raises(ConfigError, match="warp"):
        mean_face([chip], [np.zeros((3, 2))], method="blend")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="same number of landmarks"):
        mean_face([chip, chip], [np.ones((3, 2)), np.ones((4, 2))])


# ---------------------------------------------------------------- component
def test_registered_by_the_core(core_only: None) -> None:
    registry = get_registry()
    assert registry.components["aggregator"]["meanface"].plugin == "facekit.builtin"
    assert MeanFaceAggregator.needs_landmarks and MeanFaceAggregator.consumes == "faces"
    with pytest.raises(ValidationError, match="(?s)blend.*Extra inputs are not permitted"):
        MeanFaceAggregator(blend=1)


def test_faces_without_landmarks_are_skipped() -> None:
    chip = np.full((40, 40, 3), 100, np.uint8)
    points = np.array([[10, 10], [30, 10], [20, 30]], dtype=np.float64)
    face = Face((0, 0, 40, 40))
    marked = [AlignedFace(chip, np.eye(2, 3), face, landmarks=Landmarks(points, "toy3"), source=f"{i}.png") for i in range(2)]
    bare = AlignedFace(chip, np.eye(2, 3), face, source="bare.png")
    result = MeanFaceAggregator().aggregate(marked + [bare])
    assert result.count == 2 and result.image is not None
    assert result.skipped == (("bare.png", "no landmarks on the chip"),)
    with pytest.raises(NoFaceError, match="chip landmarks"):
        MeanFaceAggregator().aggregate([bare])


# -------------------------------------------------------------- real photos
@pytest.fixture(scope="module")
def mesh_faces(faces_dir: Path) -> list[AlignedFace]:
    """The 10 Eguchi crops aligned by the MediaPipe face mesh (whole-image boxes: they are crops)."""
    if "mediapipe.mesh" not in get_registry().components["aligner"]:
        pytest.skip("the facekit-mediapipe plugin is not installed")
    aligner = get_registry().get("aligner", "mediapipe.mesh")(size=224, padding=0.25)
    faces = []
    for path in sorted((faces_dir / CROPS / "eguchi_yosuke").glob("*.png")):
        image = load_image(path)
        faces.append(aligner.align(image, Face((0, 0, image.shape[1], image.shape[0]))))
    assert len(faces) == 10
    return faces


def test_warp_is_sharper_than_the_plain_average(mesh_faces: list[AlignedFace]) -> None:
    warp = MeanFaceAggregator(method="warp", margin=0.0).aggregate(mesh_faces).image
    plain = MeanFaceAggregator(method="similarity", margin=0.0).aggregate(mesh_faces).image
    # Measured inside the face (the middle half: eyes, nose, mouth), not on the frame's edges.
    inner = (slice(56, 168), slice(56, 168))
    sharp_warp, sharp_plain = laplacian_variance(warp[inner]), laplacian_variance(plain[inner])
    print(f"Laplacian variance, eguchi_yosuke inner face: warp {sharp_warp:.2f}, similarity {sharp_plain:.2f}")
    assert sharp_warp > 1.1 * sharp_plain  # measured: 11.4 vs 9.5


def test_aggregate_is_deterministic(mesh_faces: list[AlignedFace]) -> None:
    aggregator = MeanFaceAggregator()
    first = aggregator.aggregate(mesh_faces)
    second = aggregator.aggregate(list(mesh_faces))
    assert first.count == 10 and first.method == "meanface/warp"
    assert np.array_equal(first.image, second.image)
    # the order of the faces changes float rounding only
    shuffled = aggregator.aggregate(mesh_faces[::-1])
    assert np.abs(shuffled.image.astype(int) - first.image.astype(int)).max() <= 1


def test_mean_face_looks_like_a_face(mesh_faces: list[AlignedFace]) -> None:
    """The mean face's eyes are darker than the skin between them and under them."""
    image = MeanFaceAggregator().aggregate(mesh_faces).image
    target = np.mean([f.landmarks.points for f in mesh_faces], axis=0)
    grey = image.astype(float).mean(axis=2)
    from facekit_mediapipe.mesh import eye_centres

    right, left = eye_centres(target).round().astype(int)
    between = ((right + left) / 2).astype(int)
    cheek = (right + np.array([0, 40])).astype(int)
    eye_brightness = min(grey[right[1], right[0]], grey[left[1], left[0]])
    assert eye_brightness < grey[between[1], between[0]] - 20
    assert eye_brightness < grey[cheek[1], cheek[0]] - 20


def test_side_by_side_picture() -> None:
    a = np.full((100, 100, 3), 60, np.uint8)
    b = np.full((150, 150, 3), 200, np.uint8)
    picture = side_by_side([a, b], ["Yosuke Eguchi", "Hokuto Matsumura"], ["mean of 10 faces", "mean of 12 faces"])
    assert picture.dtype == np.uint8 and picture.shape[1] > picture.shape[0]
    # both tiles scaled to the same height (320 px), whatever their size
    assert (picture == 60).all(axis=2).sum() >= 320 * 320 and (picture == 200).all(axis=2).sum() >= 320 * 320
    assert (picture < 50).all(axis=2).sum() > 200  # dark label text was drawn
    with pytest.raises(ValueError):
        side_by_side([a], ["one", "two"])


# ---------------------------------------------------------------------- CLI
def test_cli_average_writes_a_mean_face(faces_dir: Path, tmp_path: Path) -> None:
    from facekit.cli import main

    if "mediapipe.mesh" not in get_registry().components["aligner"]:
        pytest.skip("the facekit-mediapipe plugin is not installed")
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    blank = tmp_path / "blank.png"
    from facekit.image import save_png

    save_png(blank, np.full((120, 120, 3), 127, np.uint8))
    out = tmp_path / "m.png"
    folder = faces_dir / CROPS / "matsumura_hokuto"
    result = CliRunner().invoke(main, ["average", str(folder), str(broken), str(blank), "-o", str(out), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "mean of 12 face(s) from 14 file(s)" in result.output
    assert "skipped" in result.output and "broken.jpg" in result.output and "blank.png" in result.output
    image = load_image(out)
    assert image.shape == (224, 224, 3) and image.std() > 20

    too_many = CliRunner().invoke(main, ["average", str(broken), str(blank), "-o", str(tmp_path / "x.png"), "--no-progress"])
    assert too_many.exit_code == 5 and "at least 2 needed" in too_many.output
    assert not (tmp_path / "x.png").exists()


def test_cli_side_by_side(faces_dir: Path, tmp_path: Path) -> None:
    from facekit.cli import main

    if "mediapipe.mesh" not in get_registry().components["aligner"]:
        pytest.skip("the facekit-mediapipe plugin is not installed")
    groups = [str(faces_dir / CROPS / name) for name in ("eguchi_yosuke", "matsumura_hokuto")]
    out = tmp_path / "pair.png"
    result = CliRunner().invoke(
        main, ["average", *groups, "--side-by-side", "--method", "similarity", "-o", str(out), "--no-progress"]
    )
    assert result.exit_code == 0, result.output
    picture = load_image(out)
    assert picture.shape[1] > 1.5 * picture.shape[0]
    bad = CliRunner().invoke(main, ["average", groups[0], "-o", str(tmp_path / "y.jpg")])
    assert bad.exit_code == 2 and "PNG" in bad.output

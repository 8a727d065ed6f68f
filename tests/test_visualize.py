"""Pictures (facekit.pictures.cards) and the way back from chip to photo (Heatmap.on_source).

No models: the "chip" is cut from a real photo by hand, so these run in a second or two.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from facekit.pictures import cards as visualize
from facekit.image import load_image
from facekit.types import AlignedFace, Comparison, Explanation, Face, Heatmap

#: dlib HOG's box for examples/obama.jpg (x0, y0, x1, y1), from LABELS.tsv
OBAMA_BOX = (349.0, 142.0, 617.0, 409.0)


def _rotated_chip(photo: np.ndarray, box: tuple[float, float, float, float], angle: float = 20.0,
                  size: int = 150, source: str | None = None) -> AlignedFace:
    """A square chip of ``box`` grown by 40 %, rotated by ``angle`` degrees, with its chip->photo transform."""
    x0, y0, x1, y1 = box
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    scale = (x1 - x0) * 1.4 / size  # photo pixels per chip pixel
    t = np.deg2rad(angle)
    rot = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]]) * scale
    offset = np.array([cx, cy]) - rot @ np.array([size / 2, size / 2])
    to_photo = np.hstack([rot, offset[:, None]])
    chip = cv2.warpAffine(photo, to_photo, (size, size), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)
    return AlignedFace(chip, to_photo, Face(box, 1.0, None, "test"), "test.rotated", None, source)


@pytest.fixture(scope="module")
def obama_path(faces_dir: Path) -> str:
    return str(faces_dir / "face_recognition_examples" / "examples" / "obama.jpg")


@pytest.fixture(scope="module")
def obama(obama_path: str) -> np.ndarray:
    return load_image(obama_path)


def _spot(size: int, x: float, y: float, sigma: float = 3.0) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size]
    return np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * sigma**2)).astype(np.float32)


def test_on_source_puts_a_chip_point_where_the_transform_says(obama: np.ndarray) -> None:
    face = _rotated_chip(obama, OBAMA_BOX, angle=25.0)
    for chip_x, chip_y in [(40, 100), (75, 75), (120, 30)]:
        heat = Heatmap(_spot(150, chip_x, chip_y), face, "spot")
        warped = heat.on_source(obama.shape[:2])
        assert warped.shape == obama.shape[:2]
        py, px = np.unravel_index(int(np.argmax(warped)), warped.shape)
        expected = face.to_source(np.array([[chip_x, chip_y]]))[0]
        assert np.hypot(px - expected[0], py - expected[1]) < 2.5, (px, py, expected)
    corner = Heatmap(np.ones((150, 150), np.float32), face, "flat").on_source(obama.shape[:2])
    assert corner[0, 0] == 0.0 and corner[int(face.face.center[1]), int(face.face.center[0])] == pytest.approx(1.0)


def test_overlay_is_the_articles_half_and_half_jet() -> None:
    image = np.full((10, 10, 3), 200, np.uint8)
    values = np.zeros((10, 10), np.float32)
    values[:, 5:] = 1.0
    out = visualize.overlay_heatmap(image, values)
    jet = cv2.cvtColor(cv2.applyColorMap(np.uint8(values * 255), cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)
    assert np.array_equal(out, cv2.addWeighted(image, 0.5, jet, 0.5, 0))
    assert out[0, 9, 0] > out[0, 9, 2] and out[0, 0, 2] > out[0, 0, 0]  # hot = red, cold = blue
    assert np.array_equal(visualize.overlay_heatmap(image, values, alpha=1.0), image)


def test_heatmap_on_photo_paints_only_where_the_chip_came_from(obama: np.ndarray) -> None:
    face = _rotated_chip(obama, OBAMA_BOX)
    painted = visualize.heatmap_on_photo(obama, Heatmap(np.ones((150, 150), np.float32), face, "flat"))
    assert painted.shape == obama.shape
    assert np.array_equal(painted[:40, :40], obama[:40, :40])  # far outside the face
    cx, cy = (int(v) for v in face.face.center)
    assert not np.array_equal(painted[cy, cx], obama[cy, cx])


def _explanation(obama: np.ndarray, same: bool, source: str | None, probability: float | None = 0.97) -> Explanation:
    face_a = _rotated_chip(obama, OBAMA_BOX, 10.0, source=source)
    face_b = _rotated_chip(obama, OBAMA_BOX, -15.0, source=source)
    comparison = Comparison(
        score=0.35 if same else 0.85, metric="euclidean", threshold=0.6, same=same, percentage=96.3 if same else 80.7,
        model="dlib_face_recognition_resnet_model_v1", probability=probability,
        impostor_percentile=0.9981 if probability is not None else None, profile="lfw-dev", pipeline="default",
        faces=(face_a, face_b),
    )
    heat = (_spot(150, 60, 70, 15.0), _spot(150, 90, 70, 15.0))
    return Explanation(comparison, (Heatmap(heat[0], face_a, "test"), Heatmap(heat[1], face_b, "test")), "test")


def _count_colour(image: np.ndarray, hex_colour: str, tolerance: int = 4) -> int:
    rgb = np.array([int(hex_colour[i : i + 2], 16) for i in (1, 3, 5)])
    return int((np.abs(image.astype(int) - rgb).max(axis=2) <= tolerance).sum())


@pytest.mark.parametrize("same", [True, False])
def test_card_layout_and_verdict_colour(obama: np.ndarray, obama_path: str, same: bool, tmp_path: Path) -> None:
    card = _explanation(obama, same, obama_path).card()
    assert card.shape == (780, 1200, 3) and card.dtype == np.uint8
    green, red = _count_colour(card, "#1a7f37"), _count_colour(card, "#c62828")
    assert (green > 5000 and red < 1000) if same else (red > 5000 and green < 1000)
    written = visualize.save_png(tmp_path / "card.png", card)
    assert cv2.imread(written).shape == (780, 1200, 3)


def test_card_uses_photo_crops_when_it_can_and_chips_otherwise(obama: np.ndarray, obama_path: str) -> None:
    with_photo = _explanation(obama, True, obama_path).card()
    without = _explanation(obama, True, None).card()  # no source: the chips are shown
    assert with_photo.shape == without.shape
    assert np.abs(with_photo.astype(int) - without.astype(int)).mean() > 1.0
    # a photo crop is upright, the 10-degree chip is not: the pictures differ, the text does not
    assert np.array_equal(with_photo[650:], without[650:])


def test_score_lines_show_every_number_present(obama: np.ndarray) -> None:
    lines = visualize.score_lines(_explanation(obama, True, None))
    text = "\n".join(lines)
    assert "distance 0.350" in text and "below 0.6" in text and "96.30 %" in text
    assert "97.0 %" in text and "lfw-dev" in text and "99.81 %" in text
    sure = _explanation(obama, True, None, probability=0.99996)
    assert "probability of same person >99.9 %" in "\n".join(visualize.score_lines(sure))  # never "100.0 %"
    bare = visualize.score_lines(_explanation(obama, True, None, probability=None))
    assert not any("probability" in line or "more alike than" in line for line in bare)


def test_explanation_shows_its_card_in_a_notebook(obama: np.ndarray) -> None:
    html = _explanation(obama, False, None)._repr_html_()
    assert "data:image/png;base64," in html and "different people" in html


def test_light_modules_import_neither_torch_nor_matplotlib() -> None:
    code = (
        "import sys, facekit.pictures.cards, facekit.builtin.occlusion, facekit.studies.faithfulness, facekit.cli.explain;"
        "heavy = [m for m in ('torch', 'matplotlib', 'dlib', 'mediapipe') if m in sys.modules];"
        "print(heavy); sys.exit(1 if heavy else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr

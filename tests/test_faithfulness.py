"""Faithfulness measurements (facekit.studies.faithfulness) and the occlusion map, on toy embedders
whose right answer is known. Real-photo checks are in test_occlusion.py and the torch plugin."""

from __future__ import annotations

import numpy as np
import pytest

from facekit.studies import faithfulness as fa
from facekit.components import Embedder
from facekit.builtin.occlusion import occlusion_map, patch_positions, to_unit


class TopLeftEmbedder(Embedder):
    """Looks only at the top-left 20x20 pixels: mean colour there (a toy with a known answer)."""

    name = "test.topleft"
    description = "mean colour of the top-left corner"
    metric = "euclidean"
    input_size = 0

    def embed(self, chips: np.ndarray) -> np.ndarray:
        return np.asarray(chips, dtype=np.float32)[:, :20, :20].mean(axis=(1, 2)) / 255.0


def _chip(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(60, 60, 3), dtype=np.uint8)


def test_patch_positions_cover_the_chip_edge_to_edge() -> None:
    assert patch_positions(150, 30, 15) == [0, 15, 30, 45, 60, 75, 90, 105, 120]
    assert patch_positions(150, 25, 12)[-1] == 125  # last patch pushed flush with the edge
    assert patch_positions(20, 30, 10) == [0]
    for size, patch, stride in [(150, 30, 15), (112, 22, 11), (224, 45, 22), (150, 38, 28)]:
        starts = patch_positions(size, patch, stride)
        covered = np.zeros(size, bool)
        for s in starts:
            covered[s : s + patch] = True
        assert covered.all() and starts[-1] + patch == size


def test_occlusion_finds_the_only_region_the_model_looks_at() -> None:
    embedder = TopLeftEmbedder()
    a, b = _chip(0), _chip(1)
    raw = occlusion_map(embedder.embed, a, embedder.embed(b[None])[0], "euclidean", patch=10, stride=10, fill="grey")
    outside = raw.copy()
    outside[:20, :20] = 0
    assert np.abs(outside).max() == 0, "pixels the model never sees got importance"
    assert np.abs(raw[:20, :20]).max() > 0
    unit = to_unit(raw)
    assert unit.max() == pytest.approx(1.0) and unit.min() == 0.0


def test_top_mask_takes_exactly_the_fraction_and_the_highest_values() -> None:
    values = np.arange(100, dtype=np.float32).reshape(10, 10)
    mask = fa.top_mask(values, 0.2)
    assert mask.sum() == 20 and values[mask].min() == 80
    flat = fa.top_mask(np.zeros((10, 10)), 0.3)  # ties still give the exact count
    assert flat.sum() == 30


@pytest.mark.parametrize("smooth", [True, False])
def test_random_mask_has_the_same_area(smooth: bool) -> None:
    rng = np.random.default_rng(0)
    for fraction in (0.05, 0.2, 0.5):
        assert fa.random_mask((150, 150), fraction, rng, smooth=smooth).sum() == round(fraction * 150 * 150)


def test_smooth_random_masks_are_blobs_and_scattered_ones_are_not() -> None:
    rng = np.random.default_rng(0)

    def edges(mask: np.ndarray) -> int:  # boundary length: small for blobs, large for scattered pixels
        return int((mask[1:] != mask[:-1]).sum() + (mask[:, 1:] != mask[:, :-1]).sum())

    assert edges(fa.random_mask((150, 150), 0.2, rng, smooth=True)) * 10 < edges(fa.random_mask((150, 150), 0.2, rng, smooth=False))


def test_deletion_curve_beats_random_for_the_true_map() -> None:
    embedder = TopLeftEmbedder()
    a = _chip(2)
    a[:20, :20] = a[:20, :20] // 4  # a dark corner, far from the grey that deletes it
    b = np.clip(a.astype(int) + np.random.default_rng(3).integers(-6, 7, a.shape), 0, 255).astype(np.uint8)
    truth = np.zeros((60, 60), np.float32)
    truth[:20, :20] = 1.0  # the only pixels the toy model uses
    reference = embedder.embed(b[None])[0]
    curve = fa.deletion_curve(embedder, a, reference, truth, fractions=(0.05, 0.1), mode="grey", n_random=4)
    assert curve.original == pytest.approx(-np.linalg.norm(embedder.embed(a[None])[0] - reference), abs=1e-5)
    assert (curve.top > 0).all() and (curve.top > curve.random).all()
    assert fa.deletion_ratio([curve], 0.1) > 2


def test_deletion_with_extra_maps_and_scattered_baseline() -> None:
    embedder = TopLeftEmbedder()
    a, b = _chip(4), _chip(5)
    reference = embedder.embed(b[None])[0]
    curve = fa.deletion_curve(embedder, a, reference, np.zeros((60, 60)), fractions=(0.1, 0.2), n_random=0,
                              n_scattered=2, extra_maps={"centre": fa.centre_prior((60, 60))})
    assert np.isnan(curve.random).all()
    assert set(curve.baselines) == {"scattered", "centre"}
    assert curve.baselines["centre"].shape == (2,)


def test_baseline_image_modes() -> None:
    chip = _chip(6)
    assert (fa.baseline_image(chip, "grey") == 128).all()
    blurred = fa.baseline_image(chip, "blur")
    assert blurred.shape == chip.shape and blurred.dtype == np.uint8 and blurred.std() < chip.std() / 4
    with pytest.raises(ValueError, match="blur"):
        fa.baseline_image(chip, "noise")  # type: ignore[arg-type]
    mask = np.zeros((60, 60), bool)
    mask[:10] = True
    out = fa.delete_pixels(chip, mask, "grey")
    assert (out[:10] == 128).all() and (out[10:] == chip[10:]).all()


def test_map_correlation() -> None:
    rng = np.random.default_rng(0)
    x = rng.random((150, 150)).astype(np.float32)
    assert fa.map_correlation(x, x) == pytest.approx(1.0)
    assert fa.map_correlation(x, 1 - x) == pytest.approx(-1.0)
    assert fa.map_correlation(x, np.zeros_like(x)) == 0.0
    assert abs(fa.map_correlation(x, rng.random((150, 150)).astype(np.float32))) < 0.2
    assert fa.map_correlation(x, x**3, method="spearman", size=None) == pytest.approx(1.0)  # rank-based

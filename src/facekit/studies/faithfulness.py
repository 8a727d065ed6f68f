"""Is a heatmap faithful to the model? Measurements, not impressions.

Pure functions over an :class:`~facekit.components.Embedder` and an
:class:`~facekit.components.Explainer` (numpy and OpenCV only, any embedder):

* **Deletion test.** Remove ("delete": blur or grey out) the top *k* % most important
  pixels of face A and measure how far its similarity to face B falls. A faithful map
  picks pixels whose removal hurts more than the same area chosen at random
  (:func:`deletion_curve`, :func:`pair_deletion`). The random area is a *smooth* random
  field thresholded to the same pixel count (blobs, like a real heatmap's), not scattered
  single pixels, which a blur barely changes; :func:`random_mask` can give either.
* **Model randomisation** (Adebayo et al., "Sanity Checks for Saliency Maps", NeurIPS
  2018). A map that stays the same when the model's weights are re-initialised describes
  the image, not the model. :func:`randomization_similarity` compares the maps of a
  trained and a randomised embedder (Spearman rank correlation; near 1 is a failed check).
* **Agreement** between two explainers: :func:`map_correlation`.

"Similarity" is always oriented so that higher means more alike: the negative distance
for Euclidean embedders, the cosine similarity for cosine ones
(:meth:`facekit.scoring.metric.Metric.as_similarity`). A *drop* is ``similarity(original) -
similarity(deleted)``: for the dlib model, how much the distance grew.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional, Sequence

import numpy as np

from facekit.components import Embedder, Explainer
from facekit.image import DeletionMode, baseline_image
from facekit.scoring.metric import metric_named
from facekit.types import AlignedFace


#: fractions of the chip deleted for a deletion curve (5 % .. 50 %)
DEFAULT_FRACTIONS: tuple[float, ...] = (0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5)


# ------------------------------------------------------------------------------- deleting pixels
def centre_prior(shape: tuple[int, int], sigma: float = 0.25) -> np.ndarray:
    """A round blob on the chip centre (``sigma`` as a fraction of the side): the trivial
    "the middle of the face matters" map an explainer should beat."""
    height, width = int(shape[0]), int(shape[1])
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    r2 = ((x - (width - 1) / 2) / width) ** 2 + ((y - (height - 1) / 2) / height) ** 2
    return np.exp(-r2 / (2 * sigma**2)).astype(np.float32)


def delete_pixels(chip: np.ndarray, mask: np.ndarray, mode: DeletionMode = "blur",
                  baseline: Optional[np.ndarray] = None) -> np.ndarray:
    """``chip`` with the pixels where ``mask`` is True replaced by :func:`baseline_image`."""
    base = baseline_image(chip, mode) if baseline is None else baseline
    return np.where(np.asarray(mask, dtype=bool)[..., None], base, chip).astype(chip.dtype)


def top_mask(values: np.ndarray, fraction: float) -> np.ndarray:
    """Boolean mask of the ``fraction`` of pixels with the highest ``values`` (exact count)."""
    values = np.asarray(values, dtype=np.float64)
    count = int(round(float(fraction) * values.size))
    mask = np.zeros(values.size, dtype=bool)
    if count > 0:
        # a stable sort on the negated values: ties (flat regions) resolve in raster order
        mask[np.argsort(-values.reshape(-1), kind="stable")[:count]] = True
    return mask.reshape(values.shape)


def random_mask(shape: tuple[int, int], fraction: float, rng: np.random.Generator,
                smooth: bool = True, grain: int = 8) -> np.ndarray:
    """A random mask of ``fraction`` of the pixels, of the same size as :func:`top_mask`.

    ``smooth=True`` thresholds a random field drawn on a ``grain`` x ``grain`` grid and
    upsampled (blobs the size of a CAM cell); ``smooth=False`` picks scattered pixels.
    """
    height, width = int(shape[0]), int(shape[1])
    if smooth:
        import cv2

        coarse = rng.standard_normal((grain, grain)).astype(np.float32)
        field_ = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    else:
        field_ = rng.random((height, width))
    return top_mask(field_ + 1e-6 * rng.random((height, width)), fraction)


# ------------------------------------------------------------------------------- deletion curves
def similarities(embedder: Embedder, chips: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Similarity (higher = more alike) of each chip's embedding to ``reference``."""
    vectors = np.asarray(embedder.embed(np.asarray(chips)), dtype=np.float64)
    refs = np.broadcast_to(np.asarray(reference, dtype=np.float64), vectors.shape)
    metric = metric_named(embedder.metric)
    return metric.as_similarity(metric.pairwise(vectors, refs))


@dataclass
class DeletionCurve:
    """How far one face's similarity to the other falls as pixels are deleted.

    ``top[i]``: drop after deleting the ``fractions[i]`` most important pixels;
    ``random[i]``: mean drop over random masks of the same size; ``baselines``: drops for
    any extra named maps (e.g. a centred blob), same layout as ``top``.
    """

    fractions: np.ndarray
    top: np.ndarray
    random: np.ndarray
    original: float
    baselines: dict[str, np.ndarray] = field(default_factory=dict)

    def at(self, fraction: float) -> tuple[float, float]:
        """(top, random) drops at the fraction nearest ``fraction``."""
        i = int(np.argmin(np.abs(self.fractions - fraction)))
        return float(self.top[i]), float(self.random[i])


def deletion_curve(
    embedder: Embedder,
    chip: np.ndarray,
    reference: np.ndarray,
    values: np.ndarray,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    mode: DeletionMode = "blur",
    n_random: int = 3,
    rng: Optional[np.random.Generator] = None,
    n_scattered: int = 0,
    extra_maps: Optional[dict[str, np.ndarray]] = None,
) -> DeletionCurve:
    """Deletion curve of one chip against the other face's embedding ``reference``.

    ``n_random`` smooth random masks per fraction give ``curve.random``; ``n_scattered``
    masks of scattered single pixels, if asked for, give ``curve.baselines["scattered"]``
    (an easier baseline: a blur barely changes isolated pixels). ``extra_maps`` (name ->
    map) are deleted top-first like the explainer's map, into ``curve.baselines[name]``.
    All deleted variants are embedded in one batch through ``embedder.embed``.
    """
    rng = rng if rng is not None else np.random.default_rng(0)
    chip = np.asarray(chip)
    base = baseline_image(chip, mode)
    shape = chip.shape[:2]
    fractions_arr = np.asarray(list(fractions), dtype=np.float64)
    maps = {"top": [top_mask(values, f) for f in fractions_arr]}
    maps["random"] = [random_mask(shape, f, rng, True) for f in fractions_arr for _ in range(n_random)]
    if n_scattered:
        maps["scattered"] = [random_mask(shape, f, rng, False) for f in fractions_arr for _ in range(n_scattered)]
    for name, extra in (extra_maps or {}).items():
        maps[name] = [top_mask(extra, f) for f in fractions_arr]
    batch = [chip] + [delete_pixels(chip, m, mode, base) for masks in maps.values() for m in masks]
    sims = similarities(embedder, np.stack(batch), reference)
    original, rest = float(sims[0]), sims[1:]
    drops: dict[str, np.ndarray] = {}
    start = 0
    for name, masks in maps.items():
        drops[name] = original - rest[start : start + len(masks)]
        start += len(masks)
    random_drops = drops.pop("random")
    random = random_drops.reshape(len(fractions_arr), n_random).mean(axis=1) if n_random else np.full(len(fractions_arr), np.nan)
    if n_scattered:
        drops["scattered"] = drops["scattered"].reshape(len(fractions_arr), n_scattered).mean(axis=1)
    top = drops.pop("top")
    return DeletionCurve(fractions_arr, top, random, original, drops)


def pair_deletion(
    embedder: Embedder,
    a: AlignedFace,
    b: AlignedFace,
    maps: tuple[np.ndarray, np.ndarray],
    **kwargs,
) -> tuple[DeletionCurve, DeletionCurve]:
    """Deletion curves of both directions of a pair: A's map against B, B's map against A.

    ``maps`` are the two chip heatmaps (e.g. ``[h.values for h in explainer.explain(...)]``).
    Extra keyword arguments go to :func:`deletion_curve`.
    """
    vectors = np.asarray(embedder.embed(np.stack([a.chip, b.chip])), dtype=np.float64)
    curve_a = deletion_curve(embedder, a.chip, vectors[1], maps[0], **kwargs)
    curve_b = deletion_curve(embedder, b.chip, vectors[0], maps[1], **kwargs)
    return curve_a, curve_b


def mean_curve(curves: Sequence[DeletionCurve]) -> DeletionCurve:
    """Average of several deletion curves (same fractions)."""
    if not curves:
        raise ValueError("no deletion curves to average")
    names = curves[0].baselines.keys()
    return DeletionCurve(
        fractions=curves[0].fractions,
        top=np.mean([c.top for c in curves], axis=0),
        random=np.mean([c.random for c in curves], axis=0),
        original=float(np.mean([c.original for c in curves])),
        baselines={n: np.mean([c.baselines[n] for c in curves], axis=0) for n in names},
    )


def deletion_ratio(curves: Sequence[DeletionCurve], fraction: float = 0.2) -> float:
    """Mean drop for the explainer's top ``fraction`` over the mean drop for random masks."""
    tops, randoms = zip(*(c.at(fraction) for c in curves))
    return float(np.mean(tops) / max(float(np.mean(randoms)), 1e-12))


# ------------------------------------------------------------------------------- comparing maps
def _ranks(values: np.ndarray) -> np.ndarray:
    flat = np.asarray(values, dtype=np.float64).reshape(-1)
    order = np.argsort(flat, kind="stable")
    ranks = np.empty(flat.size, dtype=np.float64)
    ranks[order] = np.arange(flat.size, dtype=np.float64)
    # ties get their mean rank, so flat regions (e.g. all-zero CAM areas) do not add order
    uniq, inverse = np.unique(flat, return_inverse=True)
    if uniq.size < flat.size:
        sums = np.bincount(inverse, weights=ranks)
        counts = np.bincount(inverse)
        ranks = (sums / counts)[inverse]
    return ranks


def map_correlation(a: np.ndarray, b: np.ndarray, method: Literal["spearman", "pearson"] = "spearman",
                    size: Optional[int] = 32) -> float:
    """Correlation of two heatmaps of the same chip (both resized to ``size`` x ``size`` first).

    Resizing to a coarse grid compares where the maps put importance, not how each method
    happens to interpolate. Returns 0 when either map is flat.
    """
    a = np.asarray(a, dtype=np.float32)
    b = np.asarray(b, dtype=np.float32)
    if size:
        import cv2

        a = cv2.resize(a, (size, size), interpolation=cv2.INTER_AREA)
        b = cv2.resize(b, (size, size), interpolation=cv2.INTER_AREA)
    x, y = (_ranks(a), _ranks(b)) if method == "spearman" else (a.reshape(-1), b.reshape(-1))
    x = x - x.mean()
    y = y - y.mean()
    denom = float(np.sqrt((x * x).sum() * (y * y).sum()))
    return float((x * y).sum() / denom) if denom > 0 else 0.0


def explain_maps(explainer: Explainer, embedder: Embedder, a: AlignedFace, b: AlignedFace) -> tuple[np.ndarray, np.ndarray]:
    """The two chip heatmaps of a pair, as arrays."""
    heat_a, heat_b = explainer.explain(embedder, a, b)
    return heat_a.values, heat_b.values


def randomization_similarity(
    explainer: Explainer,
    embedder: Embedder,
    randomized: Embedder,
    pairs: Sequence[tuple[AlignedFace, AlignedFace]],
    method: Literal["spearman", "pearson"] = "spearman",
) -> np.ndarray:
    """Model-randomisation check: per face, the correlation between the explainer's map on
    the trained ``embedder`` and on ``randomized`` (the same architecture with re-initialised
    weights). Low values pass; values near 1 mean the map ignores what the model learned.
    """
    out: list[float] = []
    for a, b in pairs:
        trained = explain_maps(explainer, embedder, a, b)
        random = explain_maps(explainer, randomized, a, b)
        out.extend(map_correlation(t, r, method) for t, r in zip(trained, random))
    return np.asarray(out)

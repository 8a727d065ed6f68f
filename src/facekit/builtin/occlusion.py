"""Occlusion explainer: works with any embedder (dlib, ONNX, PyTorch), numpy only.

Slide a patch over face A's chip, hiding what is under it (a heavy blur of the chip, or
flat grey), and embed every occluded chip. Where hiding the patch makes A *less similar*
to B, the pixels under it mattered for this comparison. B's map is made the same way
against A. Every occluded chip goes through ``embedder.embed`` in batches, so the cost
is about ``2 * (positions per side)^2`` embeddings per pair: 2 x 81 = 162 for the
defaults on a 150 px chip (30 px patches, stride 15).

The map is the mean similarity drop of the patches covering each pixel, lightly blurred
(half a stride) to hide the patch grid, clipped at zero (patches whose removal makes the
faces *more* alike count as unimportant), then scaled to [0, 1]. :func:`occlusion_map`
gives the raw, signed drops.

On 50 same-person LFW pairs (benchmarks/bench_explain.py) blurring the top 20 % of a chip
by this map raises the dlib model's distance 2.9x as much as blurring random blobs of the
same area: the most faithful of facekit's explainers, and the slowest.
"""

from __future__ import annotations

from typing import Callable, Literal, Optional

import numpy as np
from pydantic import Field

from facekit.components import Embedder, Explainer, Params
from facekit.image import baseline_image
from facekit.scoring.metric import metric_named
from facekit.types import AlignedFace, Heatmap


def patch_positions(size: int, patch: int, stride: int) -> list[int]:
    """Top-left offsets along one side so that patches cover ``0..size`` edge to edge."""
    if patch >= size:
        return [0]
    starts = list(range(0, size - patch + 1, stride))
    if starts[-1] != size - patch:
        starts.append(size - patch)
    return starts


def occlusion_map(
    embed: Callable[[np.ndarray], np.ndarray],
    chip: np.ndarray,
    reference: np.ndarray,
    metric: str,
    patch: int,
    stride: int,
    fill: Literal["blur", "grey"] = "blur",
    batch_size: int = 64,
) -> np.ndarray:
    """Signed similarity drop per pixel when a patch covering it is hidden.

    ``embed``: (N, S, S, 3) uint8 -> (N, D) vectors; ``reference``: the other face's vector;
    ``metric``: the embedder's metric. Returns an (S, S) float32 array: positive where
    hiding the pixels lowers the similarity (in the metric's units: distance gained for
    ``euclidean``, cosine lost for ``cosine``).
    """
    chip = np.asarray(chip)
    height, width = chip.shape[:2]
    filler = baseline_image(chip, fill)
    boxes = [(y, x) for y in patch_positions(height, patch, stride) for x in patch_positions(width, patch, stride)]
    ref = np.asarray(reference, dtype=np.float64)[None]
    scoring = metric_named(metric)

    def sims(chips: np.ndarray) -> np.ndarray:
        vectors = np.asarray(embed(chips), dtype=np.float64)
        return scoring.as_similarity(scoring.pairwise(vectors, np.repeat(ref, len(vectors), axis=0)))

    original = float(sims(chip[None])[0])
    total = np.zeros((height, width), dtype=np.float64)
    cover = np.zeros((height, width), dtype=np.float64)
    for start in range(0, len(boxes), batch_size):
        chunk = boxes[start : start + batch_size]
        batch = np.repeat(chip[None], len(chunk), axis=0)
        for i, (y, x) in enumerate(chunk):
            batch[i, y : y + patch, x : x + patch] = filler[y : y + patch, x : x + patch]
        drops = original - sims(batch)
        for (y, x), drop in zip(chunk, drops):
            total[y : y + patch, x : x + patch] += drop
            cover[y : y + patch, x : x + patch] += 1.0
    return (total / np.maximum(cover, 1.0)).astype(np.float32)


def to_unit(values: np.ndarray) -> np.ndarray:
    """Positive part of a signed map, scaled so its maximum is 1 (all zeros if none)."""
    positive = np.maximum(np.asarray(values, dtype=np.float32), 0.0)
    top = float(positive.max()) if positive.size else 0.0
    return positive / top if top > 0 else positive


def _soften(values: np.ndarray, stride: int) -> np.ndarray:
    """Blur away the patch grid's stair steps (half a stride), keeping where the mass is."""
    import cv2

    sigma = max(stride / 2.0, 0.5)
    return cv2.GaussianBlur(values, (0, 0), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REPLICATE)


class OcclusionExplainer(Explainer):
    """Model-agnostic heatmaps by occlusion: hide one patch at a time, see the similarity fall."""

    name = "occlusion"
    description = "hide a sliding patch of each face and measure the similarity drop (any embedder)"
    needs_torch = False

    class Params(Params):
        patch: Optional[int] = Field(
            None, ge=2, description="patch side in chip pixels (default: a fifth of the chip side, 30 px at 150)"
        )
        stride: Optional[int] = Field(None, ge=1, description="step between patches (default: half the patch)")
        fill: Literal["blur", "grey"] = Field("blur", description="what hides the patch: a heavy blur or flat grey")
        batch_size: int = Field(64, ge=1, le=4096, description="occluded chips per embedder call")

    def sizes(self, chip_side: int) -> tuple[int, int]:
        """(patch, stride) in pixels for chips of this side."""
        patch = self.params.patch or max(2, int(round(chip_side / 5)))
        stride = self.params.stride or max(1, patch // 2)
        return patch, stride

    def explain(self, embedder: Embedder, a: AlignedFace, b: AlignedFace) -> tuple[Heatmap, Heatmap]:
        vectors = np.asarray(embedder.embed(np.stack([a.chip, b.chip])), dtype=np.float64)
        maps = []
        for face, other in ((a, vectors[1]), (b, vectors[0])):
            patch, stride = self.sizes(min(face.chip.shape[:2]))
            raw = occlusion_map(
                embedder.embed, face.chip, other, embedder.metric, patch, stride, self.params.fill, self.params.batch_size
            )
            method = f"{self.params.fill} {patch} px patch, stride {stride}"
            maps.append(Heatmap(to_unit(_soften(raw, stride)), face, method))
        return maps[0], maps[1]

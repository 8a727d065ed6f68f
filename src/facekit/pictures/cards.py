"""Pictures of results: heatmap overlays and comparison cards.

* :func:`overlay_heatmap`: a heatmap blended onto an image, the origin article's look
  (JET colour map, alpha 0.5: half photo, half colour).
* :func:`heatmap_on_photo`: a chip heatmap drawn back onto the original photo through the
  aligner's transform, only where the chip came from.
* :func:`comparison_card`: one picture that answers "same person?" and "why?": both
  faces, both heatmaps, the score, FACE01's percentage, the calibrated probability when
  the pipeline has one, the verdict, the pipeline and model, and how to read it.

All functions take and return RGB ``uint8`` arrays; :func:`save_png` writes one
atomically. OpenCV draws the overlays; matplotlib (imported only here, Agg canvas, no
pyplot state touched) lays out the card's text.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Optional, Sequence, Union

import numpy as np

from facekit.scoring.metric import metric_named
from facekit.scoring.similarity import bounded_percent

if TYPE_CHECKING:  # pragma: no cover
    from facekit.types import AlignedFace, Explanation, Heatmap

#: how much of the photo shows through the colour (the article's cv2.addWeighted 0.5 / 0.5)
DEFAULT_ALPHA = 0.5

HOW_TO_READ = (
    "How to read this: red and yellow mark the parts of each face that make it resemble the other face to the "
    "model (hiding them would make the two look less alike); blue parts matter little. It shows what the model "
    "relied on for this score, not proof that the two are or are not the same person."
)


# ------------------------------------------------------------------------------------- colour
def colorize(values: np.ndarray, colormap: int | None = None) -> np.ndarray:
    """A [0, 1] map as an RGB image in an OpenCV colour map (JET by default)."""
    import cv2

    scaled = np.uint8(np.round(np.clip(np.nan_to_num(np.asarray(values, np.float32)), 0.0, 1.0) * 255))
    bgr = cv2.applyColorMap(scaled, cv2.COLORMAP_JET if colormap is None else colormap)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def overlay_heatmap(image: np.ndarray, values: np.ndarray, alpha: float = DEFAULT_ALPHA,
                    colormap: int | None = None, mask: Optional[np.ndarray] = None) -> np.ndarray:
    """``image`` with the heatmap ``values`` (same height and width, in [0, 1]) blended on it.

    ``alpha`` is the photo's share (0.5: the article's look). Where ``mask`` (float in
    [0, 1] or bool) is 0 the photo is left untouched.
    """
    import cv2

    image = _as_rgb(image)
    values = np.asarray(values, dtype=np.float32)
    if values.shape != image.shape[:2]:
        values = cv2.resize(values, (image.shape[1], image.shape[0]), interpolation=cv2.INTER_LINEAR)
    blended = cv2.addWeighted(image, alpha, colorize(values, colormap), 1.0 - alpha, 0.0)
    if mask is None:
        return blended
    weight = np.clip(np.asarray(mask, dtype=np.float32), 0.0, 1.0)[..., None]
    return np.round(weight * blended + (1.0 - weight) * image).astype(np.uint8)


def heatmap_on_photo(photo: np.ndarray, heatmap: "Heatmap", alpha: float = DEFAULT_ALPHA) -> np.ndarray:
    """The chip heatmap warped onto the original ``photo`` and blended where the chip lies."""
    import cv2

    photo = _as_rgb(photo)
    values = heatmap.on_source(photo.shape[:2])
    footprint = np.ones(heatmap.values.shape, dtype=np.float32)
    inside = _warp_to_source(footprint, heatmap.face, photo.shape[:2])
    # soften the chip's border so the overlay does not end in a hard, rotated edge
    inside = cv2.GaussianBlur(inside, (0, 0), sigmaX=2.0)
    return overlay_heatmap(photo, values, alpha, mask=inside)


def _warp_to_source(values: np.ndarray, face: "AlignedFace", shape: Sequence[int]) -> np.ndarray:
    import cv2

    to_chip = cv2.invertAffineTransform(np.asarray(face.transform, dtype=np.float64))
    return cv2.warpAffine(values.astype(np.float32), to_chip, (int(shape[1]), int(shape[0])),
                          flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderValue=0.0)


def face_region(face: "AlignedFace", shape: Sequence[int], margin: float = 0.15) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1): a square around the chip's footprint in the photo, grown by ``margin``."""
    side = face.chip.shape[0]
    corners = face.to_source(np.array([[0, 0], [side, 0], [0, side], [side, side]], dtype=np.float64))
    x0, y0 = corners.min(axis=0)
    x1, y1 = corners.max(axis=0)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    half = max(x1 - x0, y1 - y0) * (0.5 + margin)
    height, width = int(shape[0]), int(shape[1])
    half = min(half, max(width, height))  # never ask for more than the photo
    left, top = int(round(cx - half)), int(round(cy - half))
    right, bottom = int(round(cx + half)), int(round(cy + half))
    return max(left, 0), max(top, 0), min(right, width), min(bottom, height)


def face_pictures(heatmap: "Heatmap", photo: Optional[np.ndarray] = None,
                  alpha: float = DEFAULT_ALPHA) -> tuple[np.ndarray, np.ndarray]:
    """(face, face with heatmap): a crop of the photo around the face, or the chip itself."""
    if photo is None:
        return heatmap.face.chip, overlay_heatmap(heatmap.face.chip, heatmap.values, alpha)
    photo = _as_rgb(photo)
    x0, y0, x1, y1 = face_region(heatmap.face, photo.shape[:2])
    if x1 - x0 < 8 or y1 - y0 < 8:  # the chip lies (almost) outside this photo: wrong photo?
        return heatmap.face.chip, overlay_heatmap(heatmap.face.chip, heatmap.values, alpha)
    painted = heatmap_on_photo(photo, heatmap, alpha)
    return photo[y0:y1, x0:x1], painted[y0:y1, x0:x1]


def _as_rgb(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    if image.shape[2] == 4:
        image = image[..., :3]
    return np.ascontiguousarray(image.astype(np.uint8, copy=False))


# -------------------------------------------------------------------------------------- card
def _photo_of(face: "AlignedFace") -> Optional[np.ndarray]:
    """The face's source photo when it is a readable file (the chip transform refers to it)."""
    if not face.source or not os.path.isfile(face.source):
        return None
    from facekit.errors import FacekitError
    from facekit.image import load_image

    try:
        return load_image(face.source)
    except FacekitError:
        return None


def _fit_square(image: np.ndarray, side: int) -> np.ndarray:
    import cv2

    h, w = image.shape[:2]
    scale = side / max(h, w)
    resized = cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))),
                         interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC)
    canvas = np.full((side, side, 3), 255, np.uint8)
    top, left = (side - resized.shape[0]) // 2, (side - resized.shape[1]) // 2
    canvas[top : top + resized.shape[0], left : left + resized.shape[1]] = resized
    return canvas


def _label(source: Optional[str], fallback: str) -> str:
    if not source:
        return fallback
    name = os.path.basename(str(source))
    return name if len(name) <= 38 else name[:17] + "..." + name[-18:]


def score_lines(explanation: "Explanation") -> list[str]:
    """The numbers of the card as text lines (also used by the CLI)."""
    c = explanation.comparison
    metric = metric_named(c.metric)
    lines = [f"{metric.score_name} {c.score:.3f}  ({metric.rule_in_words(c.threshold)})"]
    lines.append(f"similarity {c.percentage:.2f} %  (FACE01 scale: 90 % is the model's threshold)")
    if c.probability is not None:
        where = f" on {c.profile}" if c.profile else ""
        lines.append(f"probability of same person {bounded_percent(c.probability)}  (calibrated{where})")
    if c.impostor_percentile is not None:
        lines.append(f"more alike than {bounded_percent(c.impostor_percentile, 2)} of pairs of different people")
    return lines


def comparison_card(explanation: "Explanation", photos: Optional[Sequence[Optional[np.ndarray]]] = None,
                    alpha: float = DEFAULT_ALPHA, use_photos: bool = True) -> np.ndarray:
    """The comparison card of an :class:`~facekit.types.Explanation`, as a 1200 x 780 RGB image.

    Shows each face (a crop of its photo, or the chip when no photo is at hand) beside its
    heatmap, then the verdict, the numbers, the pipeline, model and explainer, a colour
    scale and a line on how to read it. ``photos``: the two source images (default: read
    from each face's ``source`` path when it is a file); ``use_photos=False`` shows chips.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    comparison = explanation.comparison
    heat_a, heat_b = explanation.heatmaps
    if not use_photos:
        photos = (None, None)
    elif photos is None:
        photos = (_photo_of(heat_a.face), _photo_of(heat_b.face))
    tile = 264
    pics = [face_pictures(h, p, alpha) for h, p in zip((heat_a, heat_b), photos)]
    tiles = [_fit_square(img, 2 * tile) for pair in pics for img in pair]  # A, A-heat, B, B-heat

    width, height, dpi = 1200, 780, 100
    fig = Figure(figsize=(width / dpi, height / dpi), dpi=dpi, facecolor="white")
    canvas = FigureCanvasAgg(fig)

    def box(left: float, top: float, w: float, h: float) -> tuple[float, float, float, float]:
        """Axes rectangle from pixel coordinates measured from the top-left corner."""
        return (left / width, 1 - (top + h) / height, w / width, h / height)

    def text(x: float, y: float, value: str, **kwargs) -> None:  # type: ignore[no-untyped-def]
        fig.text(x / width, 1 - y / height, value, va="center", **kwargs)

    accent = "#1a7f37" if comparison.same else "#c62828"
    lines = score_lines(explanation)

    # verdict and the deciding number
    text(width / 2, 38, comparison.verdict.upper(), ha="center", fontsize=26, fontweight="bold", color="white",
         bbox=dict(boxstyle="round,pad=0.35", facecolor=accent, edgecolor="none"))
    text(width / 2, 92, lines[0], ha="center", fontsize=14, fontweight="bold", color=accent)

    # A | A's heatmap      B | B's heatmap
    titles = ["face A", "A: what makes it look like B", "face B", "B: what makes it look like A"]
    lefts = (36, 36 + tile + 8, width - 36 - 2 * tile - 8, width - 36 - tile)
    for left, picture, title in zip(lefts, tiles, titles):
        ax = fig.add_axes(box(left, 140, tile, tile))
        ax.imshow(picture)
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_color("#bbbbbb")
        ax.set_title(title, fontsize=12, pad=5)
    text(lefts[1] - 4, 140 + tile + 16, _label(heat_a.face.source, "image A"), ha="center", fontsize=10, color="#444444")
    text(lefts[3] - 4, 140 + tile + 16, _label(heat_b.face.source, "image B"), ha="center", fontsize=10, color="#444444")
    fig.add_artist(_line(fig, 0.5, 1 - 120 / height, 0.5, 1 - (150 + tile) / height))

    # colour scale under the pictures
    cax = fig.add_axes(box(width / 2 - 220, 452, 440, 16))
    cax.imshow(colorize(np.tile(np.linspace(0, 1, 256), (8, 1))), aspect="auto")
    cax.set_xticks([])
    cax.set_yticks([])
    text(width / 2 - 228, 460, "heatmap: matters little", ha="right", fontsize=10.5)
    text(width / 2 + 228, 460, "matters most", ha="left", fontsize=10.5)

    # the other numbers and what produced them (left), the score on a scale (right)
    y = 525.0
    for line in lines[1:]:
        text(60, y, line, fontsize=12)
        y += 28
    method = heat_a.method if heat_a.method == heat_b.method else f"{heat_a.method} / {heat_b.method}"
    y = max(y + 6, 615.0)
    text(60, y, f"pipeline: {comparison.pipeline or '-'}     model: {comparison.model} ({comparison.metric})",
         fontsize=10, color="#444444")
    text(60, y + 22, f"explainer: {explanation.explainer} ({method})", fontsize=10, color="#444444")
    _gauge(fig.add_axes(box(730, 530, 410, 40)), comparison, accent)
    fig.add_artist(_line(fig, 36 / width, 1 - 685 / height, 1 - 36 / width, 1 - 685 / height))
    text(60, 728, _wrap(HOW_TO_READ, 132), fontsize=10.5, color="#222222")

    canvas.draw()
    rgba = np.asarray(canvas.buffer_rgba())
    return np.ascontiguousarray(rgba[..., :3])


def _line(fig, x0: float, y0: float, x1: float, y1: float):  # type: ignore[no-untyped-def]
    from matplotlib.lines import Line2D

    return Line2D([x0, x1], [y0, y1], transform=fig.transFigure, color="#cccccc", linewidth=1)


def _wrap(text: str, width: int) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(text, width))


def _gauge(ax, comparison, accent: str) -> None:  # type: ignore[no-untyped-def]
    """A bar from "different" to "same" with the threshold and this pair's score on it."""
    threshold = comparison.threshold
    metric = metric_named(comparison.metric)
    if metric.higher_is_more_similar:  # a cosine similarity: at most 1
        lo, hi = min(-0.2, comparison.score - 0.05), 1.0
        same_span, diff_span = (threshold, hi), (lo, threshold)
    else:  # a distance: 0 or more
        lo, hi = 0.0, max(1.2, threshold * 2, comparison.score * 1.05)
        same_span, diff_span = (lo, threshold), (threshold, hi)
    ax.axvspan(*same_span, color="#1a7f37", alpha=0.25, lw=0)
    ax.axvspan(*diff_span, color="#c62828", alpha=0.18, lw=0)
    ax.axvline(threshold, color="#333333", lw=1.2, ls="--")
    ax.plot([comparison.score], [0.4], marker="v", markersize=13, color=accent, markeredgecolor="black")
    ax.set_xlim(lo, hi)
    ax.set_ylim(0, 1)
    ax.set_yticks([])
    ax.tick_params(axis="x", labelsize=8)
    for span, word, colour in ((same_span, "same", "#1a7f37"), (diff_span, "different", "#c62828")):
        ax.text(span[0] + 0.015 * (hi - lo), 0.78, word, ha="left", va="center", fontsize=9, color=colour)
    ax.set_title(f"{metric.score_name}: {comparison.score:.3f}  (threshold {threshold:g})", fontsize=9.5, pad=3)


def save_png(path: Union[str, os.PathLike], image: np.ndarray) -> str:
    """Write an RGB image as PNG, atomically. Returns the path written."""
    import cv2

    from facekit.errors import ImageError
    from facekit.io import atomic_write_bytes

    ok, buf = cv2.imencode(".png", cv2.cvtColor(_as_rgb(image), cv2.COLOR_RGB2BGR))
    if not ok:  # pragma: no cover - PNG encoding of a valid uint8 image does not fail
        raise ImageError(f"{path}: could not encode the picture as PNG")
    return str(atomic_write_bytes(path, buf.tobytes()))

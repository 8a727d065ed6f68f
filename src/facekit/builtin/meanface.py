"""Mean faces: the average of many aligned faces, as one picture.

Two methods, both working on aligned chips that carry landmarks (any scheme, as long
as every face of the group uses the same one):

* ``warp`` (default): every face is warped onto the group's mean landmark shape with a
  piecewise-affine warp over a Delaunay triangulation of the landmarks plus points on
  the frame's border, the way face-averaging research does it. Eyes, nose and mouth of
  every face land on the same pixels, so the mean stays sharp.
* ``similarity``: every face is moved onto the mean shape by the one similarity
  transform (rotation, scale, shift) that fits its landmarks best, then averaged. The
  simple option: features that differ in shape between people blur.

Pixels are averaged in floating point; a pixel only counts faces whose chip covers it.
Everything is deterministic. Only numpy and OpenCV are used.

:func:`mean_face` is the computation, :class:`MeanFaceAggregator` (registered as
``meanface``) the pipeline component, :func:`side_by_side` draws labelled mean faces
next to each other.
"""

from __future__ import annotations

from typing import Literal, Optional, Sequence

import numpy as np
from pydantic import Field

from facekit.components import Aggregator, Params
from facekit.errors import ConfigError, NoFaceError
from facekit.types import AggregateResult, AlignedFace, Embedding

Method = Literal["warp", "similarity"]


# ------------------------------------------------------------------ geometry
def fit_similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The 2x3 similarity transform (rotation, uniform scale, shift; no reflection) that
    maps the points ``src`` onto ``dst`` with the least squared error (Umeyama's method)."""
    src = np.asarray(src, dtype=np.float64).reshape(-1, 2)
    dst = np.asarray(dst, dtype=np.float64).reshape(-1, 2)
    if len(src) != len(dst) or len(src) < 2:
        raise ValueError(f"need two equally long point lists of at least 2 points, got {len(src)} and {len(dst)}")
    mu_src, mu_dst = src.mean(axis=0), dst.mean(axis=0)
    a, b = src - mu_src, dst - mu_dst
    var_src = float((a**2).sum()) / len(src)
    if var_src <= 1e-12:
        raise ValueError("the source points are all the same point")
    cov = b.T @ a / len(src)
    u, sigma, vt = np.linalg.svd(cov)
    sign = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[-1] = -1.0
    rotation = u @ np.diag(sign) @ vt
    scale = float((sigma * sign).sum()) / var_src
    linear = scale * rotation
    return np.hstack([linear, (mu_dst - linear @ mu_src)[:, None]])


def border_points(x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
    """8 anchor points on a rectangle: its corners and the middles of its sides."""
    xm, ym = (x0 + x1) / 2.0, (y0 + y1) / 2.0
    return np.array([[x0, y0], [xm, y0], [x1, y0], [x1, ym], [x1, y1], [xm, y1], [x0, y1], [x0, ym]], dtype=np.float64)


def delaunay(points: np.ndarray) -> np.ndarray:
    """Delaunay triangles of ``points`` as (T, 3) indices into ``points``.

    A point given twice is used once. The order of the triangles does not depend on
    the order OpenCV reports them in.
    """
    import cv2

    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    rect = (float(lo[0]) - 1.0, float(lo[1]) - 1.0, float(hi[0] - lo[0]) + 4.0, float(hi[1] - lo[1]) + 4.0)
    subdiv = cv2.Subdiv2D(tuple(int(np.floor(v)) for v in rect))
    for x, y in pts:
        subdiv.insert((float(x), float(y)))
    corners = subdiv.getTriangleList().reshape(-1, 3, 2).astype(np.float64)
    # Map each returned vertex back to the nearest input point; triangles that use one of
    # Subdiv2D's virtual outer vertices have a vertex far from every input point.
    dist = ((corners[:, :, None, :] - pts[None, None, :, :]) ** 2).sum(axis=-1)
    index = dist.argmin(axis=-1)
    near = np.take_along_axis(dist, index[..., None], axis=-1)[..., 0] < 1e-4
    keep = near.all(axis=1) & (index[:, 0] != index[:, 1]) & (index[:, 1] != index[:, 2]) & (index[:, 0] != index[:, 2])
    triangles = index[keep]
    # a stable order, independent of Subdiv2D's internal edge order
    triangles = np.sort(triangles, axis=1)
    triangles = triangles[np.lexsort(triangles.T[::-1])]
    return triangles.astype(np.int32)


def _triangle_labels(points: np.ndarray, triangles: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(H, W) int32: which triangle (index + 1) each output pixel lies in, 0 for none."""
    import cv2

    width, height = size
    labels = np.zeros((height, width), dtype=np.int32)
    shift = 4  # sub-pixel vertex precision for the rasteriser
    for t, tri in enumerate(triangles):
        corners = np.round(points[tri] * (1 << shift)).astype(np.int32)
        cv2.fillConvexPoly(labels, corners, int(t + 1), lineType=cv2.LINE_8, shift=shift)
    return labels


def _triangle_affines(dst_points: np.ndarray, src_points: np.ndarray, triangles: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    """(T + 1, 2, 3): for each triangle the affine mapping its ``dst`` corners onto its
    ``src`` corners; entry 0 (pixels outside every triangle, degenerate triangles) is
    ``fallback``."""
    d = dst_points[triangles]  # (T, 3, 2)
    s = src_points[triangles]
    ones = np.ones(d.shape[:2] + (1,))
    dh = np.concatenate([d, ones], axis=2)  # (T, 3, 3) rows [x, y, 1]
    det = np.linalg.det(dh)
    ok = np.abs(det) > 1e-6
    out = np.repeat(fallback[None], len(triangles) + 1, axis=0)
    if ok.any():
        solved = np.linalg.solve(dh[ok], s[ok])  # (n, 3, 2): [x, y, 1] @ M = src
        out[1:][ok] = np.transpose(solved, (0, 2, 1))
    return out


def _remap(chip: np.ndarray, map_x: np.ndarray, map_y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sample ``chip`` at the given maps: float32 pixels and a coverage weight in [0, 1]."""
    import cv2

    pixels = cv2.remap(
        chip.astype(np.float32), map_x, map_y, interpolation=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT, borderValue=(0.0, 0.0, 0.0),
    )
    coverage = cv2.remap(
        np.ones(chip.shape[:2], np.float32), map_x, map_y, interpolation=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT, borderValue=0.0,
    )
    return pixels, coverage


def _scale_points(points: np.ndarray, chip_size: tuple[int, int], size: int) -> np.ndarray:
    """Chip pixel coordinates -> output pixel coordinates (pixel centres at integers)."""
    factor = np.array([size / chip_size[0], size / chip_size[1]])
    return (np.asarray(points, dtype=np.float64) + 0.5) * factor - 0.5


# --------------------------------------------------------------- computation
def mean_face(
    chips: Sequence[np.ndarray],
    landmarks: Sequence[np.ndarray],
    method: Method = "warp",
    size: Optional[int] = None,
    margin: Optional[float] = None,
) -> np.ndarray:
    """The mean of aligned face chips, as an ``(size, size, 3)`` uint8 RGB image.

    ``landmarks[i]`` are the (K, 2) points of ``chips[i]`` in its own pixel coordinates
    (the same K points, in the same order, for every chip). ``size`` defaults to the
    first chip's side. The mean face is framed as the chips are; with ``margin`` it is
    framed instead by the square around the mean landmarks, grown by ``margin`` (a
    fraction of that square) on each side.
    """
    if len(chips) == 0:
        raise NoFaceError("no faces to average")
    if len(chips) != len(landmarks):
        raise ValueError(f"{len(chips)} chips but {len(landmarks)} landmark sets")
    if method not in ("warp", "similarity"):
        raise ConfigError(f"unknown mean-face method {method!r}; choose 'warp' or 'similarity'")
    shapes = [np.asarray(p, dtype=np.float64).reshape(-1, 2) for p in landmarks]
    if len({len(s) for s in shapes}) != 1:
        raise ValueError(f"every face needs the same number of landmarks, got {sorted({len(s) for s in shapes})}")
    if len(shapes[0]) < 2:
        raise ValueError("a mean face needs at least 2 landmarks per face")
    out_size = int(size or chips[0].shape[1])
    # Every face's landmarks in one common frame (the chip frame at the output size);
    # their mean is the target shape.
    common = [_scale_points(s, (c.shape[1], c.shape[0]), out_size) for c, s in zip(chips, shapes)]
    mean_shape = np.mean(common, axis=0)
    # framing: common frame -> output pixels (a scale and a shift)
    if margin is None:
        zoom, origin = 1.0, np.zeros(2)
    else:
        lo, hi = mean_shape.min(axis=0), mean_shape.max(axis=0)
        side = float((hi - lo).max()) * (1.0 + 2.0 * margin)
        zoom = out_size / max(side, 1e-6)
        origin = (lo + hi) / 2.0 - (out_size - 1) / 2.0 / zoom
    target = (mean_shape - origin) * zoom  # the mean shape in output pixels

    ys, xs = np.mgrid[0:out_size, 0:out_size].astype(np.float64)
    total = np.zeros((out_size, out_size, 3), np.float64)
    weight = np.zeros((out_size, out_size), np.float64)

    if method == "warp":
        # One triangulation, made on the mean shape plus a frame around everything; the
        # frame's points map by the framing alone, so the warp is smooth out to the edge.
        every = np.vstack([target] + [(c - origin) * zoom for c in common] + [np.array([[0.0, 0.0], [out_size - 1.0] * 2])])
        lo, hi = every.min(axis=0) - 2.0, every.max(axis=0) + 2.0
        frame_out = border_points(lo[0], lo[1], hi[0], hi[1])
        frame_common = frame_out / zoom + origin
        target_all = np.vstack([target, frame_out])
        triangles = delaunay(target_all)
        labels = _triangle_labels(target_all, triangles, (out_size, out_size))

    for chip, points in zip(chips, common):
        # output pixel -> this face's point in the common frame
        whole = fit_similarity(target, points)
        if method == "warp":
            affines = _triangle_affines(target_all, np.vstack([points, frame_common]), triangles, whole)
            m = affines[labels]  # (H, W, 2, 3)
            src_x = m[..., 0, 0] * xs + m[..., 0, 1] * ys + m[..., 0, 2]
            src_y = m[..., 1, 0] * xs + m[..., 1, 1] * ys + m[..., 1, 2]
        else:
            src_x = whole[0, 0] * xs + whole[0, 1] * ys + whole[0, 2]
            src_y = whole[1, 0] * xs + whole[1, 1] * ys + whole[1, 2]
        # common frame -> this chip's pixels
        map_x = ((src_x + 0.5) * (chip.shape[1] / out_size) - 0.5).astype(np.float32)
        map_y = ((src_y + 0.5) * (chip.shape[0] / out_size) - 0.5).astype(np.float32)
        pixels, coverage = _remap(np.asarray(chip), map_x, map_y)
        total += pixels.astype(np.float64)
        weight += coverage
    # Warped pixels were already multiplied by coverage (black border), so divide it out.
    mean = total / np.maximum(weight, 1e-6)[:, :, None]
    mean[weight < 1e-3] = 0.0
    return np.clip(np.rint(mean), 0, 255).astype(np.uint8)


# ---------------------------------------------------------------- component
class MeanFaceAggregator(Aggregator):
    """The mean face of a group of photos (as in the origin article's average faces).

    Needs an aligner that puts landmarks on its chips (e.g. ``mediapipe.mesh``).
    """

    name = "meanface"
    description = "mean face of a group: faces warped onto their mean landmark shape and averaged"
    consumes = "faces"
    needs_landmarks = True

    class Params(Params):
        method: Method = Field(
            "warp",
            description="warp: piecewise-affine onto the mean landmark shape (sharp); "
            "similarity: one similarity transform per face (simple, softer)",
        )
        size: Optional[int] = Field(None, ge=16, le=4096, description="side of the mean face (default: the chip size)")
        margin: Optional[float] = Field(
            None,
            ge=0.0,
            le=2.0,
            description="frame the mean face by the square around its mean landmarks, grown by this fraction "
            "on each side (default: frame it as the chips are)",
        )

    def aggregate(self, faces: Sequence[AlignedFace], embeddings: Sequence[Embedding] = ()) -> AggregateResult:
        usable, skipped = usable_faces(faces)
        if not usable:
            raise NoFaceError(
                f"the meanface aggregator got {len(faces)} face(s) and none with chip landmarks; use an aligner "
                "that provides them (e.g. mediapipe.mesh)"
            )
        image = mean_face(
            [f.chip for f in usable],
            [f.landmarks.points for f in usable],  # type: ignore[union-attr]
            method=self.params.method,
            size=self.params.size,
            margin=self.params.margin,
        )
        return AggregateResult(method=f"{self.name}/{self.params.method}", count=len(usable), image=image, skipped=tuple(skipped))


def usable_faces(faces: Sequence[AlignedFace]) -> tuple[list[AlignedFace], list[tuple[str, str]]]:
    """The faces that share the group's most common landmark scheme, and the rest as (source, reason)."""
    schemes: dict[str, int] = {}
    for face in faces:
        if face.landmarks is not None:
            schemes[face.landmarks.scheme] = schemes.get(face.landmarks.scheme, 0) + 1
    if not schemes:
        return [], [(str(f.source), "no landmarks on the chip") for f in faces]
    scheme = max(sorted(schemes), key=lambda s: schemes[s])
    counts = {len(f.landmarks.points) for f in faces if f.landmarks is not None and f.landmarks.scheme == scheme}
    count = max(counts)
    usable, skipped = [], []
    for face in faces:
        if face.landmarks is None:
            skipped.append((str(face.source), "no landmarks on the chip"))
        elif face.landmarks.scheme != scheme or len(face.landmarks.points) != count:
            skipped.append((str(face.source), f"landmarks in scheme {face.landmarks.scheme!r}, the group uses {scheme!r}"))
        else:
            usable.append(face)
    return usable, skipped


# ----------------------------------------------------------------- pictures
def _font(size: int):  # type: ignore[no-untyped-def]
    """A scalable font: DejaVu Sans from matplotlib (a core dependency), else PIL's default."""
    from PIL import ImageFont

    try:
        from pathlib import Path

        import matplotlib

        path = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
        return ImageFont.truetype(str(path), size)
    except Exception:  # pragma: no cover - matplotlib's font is always there in practice
        return ImageFont.load_default()


def side_by_side(
    images: Sequence[np.ndarray],
    labels: Sequence[str],
    captions: Optional[Sequence[str]] = None,
    title: Optional[str] = None,
    height: int = 320,
) -> np.ndarray:
    """Mean faces next to each other, each with a label above and a caption below.

    Returns an RGB uint8 picture (save it with :func:`facekit.image.save_png`).
    """
    import cv2
    from PIL import Image as PILImage
    from PIL import ImageDraw

    if len(images) == 0 or len(images) != len(labels):
        raise ValueError("side_by_side needs one label per image and at least one image")
    captions = list(captions) if captions is not None else [""] * len(images)
    gap = max(height // 12, 12)
    label_font, caption_font, title_font = _font(max(height // 12, 14)), _font(max(height // 18, 12)), _font(max(height // 10, 16))
    tiles = []
    for img in images:
        img = np.asarray(img)
        width = max(int(round(img.shape[1] * height / img.shape[0])), 1)
        tiles.append(cv2.resize(img, (width, height), interpolation=cv2.INTER_AREA if img.shape[0] > height else cv2.INTER_CUBIC))
    label_h = int(label_font.size * 1.6)
    caption_h = int(caption_font.size * 1.6) if any(captions) else 0
    title_h = int(title_font.size * 1.8) if title else 0
    total_w = sum(t.shape[1] for t in tiles) + gap * (len(tiles) + 1)
    total_h = title_h + label_h + height + caption_h + gap * 2
    canvas = PILImage.new("RGB", (total_w, total_h), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    if title:
        draw.text((total_w / 2, gap / 2 + title_h / 2), title, fill=(20, 20, 20), font=title_font, anchor="mm")
    x = gap
    top = gap + title_h + label_h
    for tile, label, caption in zip(tiles, labels, captions):
        centre = x + tile.shape[1] / 2
        draw.text((centre, top - label_h / 2), _fit(draw, label, label_font, tile.shape[1]), fill=(20, 20, 20), font=label_font, anchor="mm")
        canvas.paste(PILImage.fromarray(tile), (x, top))
        if caption:
            draw.text((centre, top + height + caption_h / 2), _fit(draw, caption, caption_font, tile.shape[1]),
                      fill=(90, 90, 90), font=caption_font, anchor="mm")
        x += tile.shape[1] + gap
    return np.asarray(canvas, dtype=np.uint8)


def _fit(draw, text: str, font, width: int) -> str:  # type: ignore[no-untyped-def]
    """``text``, shortened with an ellipsis until it fits ``width`` pixels."""
    if draw.textlength(text, font=font) <= width:
        return text
    while len(text) > 1 and draw.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text + "…"

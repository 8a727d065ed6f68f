"""Small helpers shared by the dlib components (no dlib import here)."""

from __future__ import annotations

from typing import Any

import numpy as np

from facekit.errors import ImageError


def as_rgb(image: np.ndarray) -> np.ndarray:
    """A C-contiguous ``(H, W, 3)`` uint8 array, as dlib's bindings want."""
    arr = np.asarray(image)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8:
        raise ImageError(f"expected an (H, W, 3) uint8 RGB image, got shape {arr.shape} dtype {arr.dtype}")
    return np.ascontiguousarray(arr)


def box_to_rect(dlib: Any, box: tuple[float, float, float, float]) -> Any:
    """A facekit box ``(x0, y0, x1, y1)`` (exclusive end) as a dlib ``rectangle`` (inclusive)."""
    x0, y0, x1, y1 = (float(v) for v in box)
    left, top = int(round(x0)), int(round(y0))
    right, bottom = max(int(round(x1)) - 1, left), max(int(round(y1)) - 1, top)
    return dlib.rectangle(left, top, right, bottom)


def rect_to_box(rect: Any, scale: float = 1.0) -> tuple[float, float, float, float]:
    """A dlib ``rectangle`` (inclusive corners) as a facekit box, scaled by ``scale``."""
    return (
        float(rect.left()) * scale,
        float(rect.top()) * scale,
        float(rect.right() + 1) * scale,
        float(rect.bottom() + 1) * scale,
    )


def chip_to_source_transform(details: Any) -> np.ndarray:
    """The 2x3 affine matrix mapping chip pixels to source pixels for dlib ``chip_details``.

    dlib's geometry (``get_mapping_to_chip`` in ``image_transforms/interpolation.h``):
    ``details.rect`` rotated by ``details.angle`` about its centre, its top-left,
    top-right and bottom-right corners going to chip pixels ``(0, 0)``, ``(cols-1, 0)``
    and ``(cols-1, rows-1)``. This is the inverse of that mapping, from the same three
    point pairs.

    When a chip is much smaller than its rectangle, ``extract_image_chip`` samples a
    level of a ``pyramid_down<2>`` image pyramid rather than the image itself, and the
    pyramid's pixels sit ``(2**n - 1) / 2`` source pixels off the nominal mapping after
    ``n`` levels (left in x, down in y). The returned matrix includes that shift, so it
    gives the source point each chip pixel was really sampled from (checked to 1e-9 px
    against chips of coordinate images; see the tests).
    """
    rect = details.rect
    left, top, right, bottom = float(rect.left()), float(rect.top()), float(rect.right()), float(rect.bottom())
    cx, cy = (left + right) / 2.0, (top + bottom) / 2.0
    cos, sin = np.cos(details.angle), np.sin(details.angle)

    def rotated(x: float, y: float) -> tuple[float, float]:
        dx, dy = x - cx, y - cy
        return (cos * dx - sin * dy + cx, sin * dx + cos * dy + cy)

    x0, y0 = rotated(left, top)  # chip (0, 0)
    x1, y1 = rotated(right, top)  # chip (cols - 1, 0)
    x2, y2 = rotated(right, bottom)  # chip (cols - 1, rows - 1)
    du = max(float(details.cols) - 1.0, 1.0)
    dv = max(float(details.rows) - 1.0, 1.0)
    shift = (2.0 ** pyramid_levels(details) - 1.0) / 2.0
    # columns: source step per chip column, per chip row, and the source point of chip (0, 0)
    return np.array(
        [
            [(x1 - x0) / du, (x2 - x1) / dv, x0 - shift],
            [(y1 - y0) / du, (y2 - y1) / dv, y0 + shift],
        ],
        dtype=np.float64,
    )


def pyramid_levels(details: Any) -> int:
    """How many ``pyramid_down<2>`` levels dlib's ``extract_image_chips`` goes down for ``details``.

    dlib halves the rectangle (``rect_down``: each corner ``p -> (p - 0.3) / 2``) while the
    halved rectangle still has more pixels than the chip.
    """
    rect = details.rect
    left, top, right, bottom = float(rect.left()), float(rect.top()), float(rect.right()), float(rect.bottom())
    pixels = float(details.rows) * float(details.cols)
    levels = 0
    while levels < 64:
        left, top, right, bottom = ((v - 0.3) * 0.5 for v in (left, top, right, bottom))
        width, height = right - left + 1.0, bottom - top + 1.0
        if width <= 0 or height <= 0 or width * height <= pixels:
            break
        levels += 1
    return levels


def invert_affine(affine: np.ndarray) -> np.ndarray:
    """The inverse of a 2x3 affine matrix (closed form; LAPACK is slow for 2x2 under load)."""
    (a, b, tx), (c, d, ty) = np.asarray(affine, dtype=np.float64).reshape(2, 3)
    det = a * d - b * c
    if det == 0:
        raise ValueError("affine matrix is singular")
    ia, ib, ic, id_ = d / det, -b / det, -c / det, a / det
    return np.array([[ia, ib, -(ia * tx + ib * ty)], [ic, id_, -(ic * tx + id_ * ty)]], dtype=np.float64)


def downscale(image: np.ndarray, max_side: int | None) -> tuple[np.ndarray, float]:
    """``image`` shrunk so its longer side is at most ``max_side``, and the factor back to full size."""
    height, width = image.shape[:2]
    longest = max(height, width)
    if max_side is None or longest <= max_side:
        return image, 1.0
    import cv2

    factor = max_side / float(longest)
    size = (max(1, int(round(width * factor))), max(1, int(round(height * factor))))
    small = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    # Map boxes back with the exact per-axis ratio; the two differ by under a pixel.
    return np.ascontiguousarray(small), width / float(size[0])

"""Reading images from anything a caller may have.

:func:`load_image` accepts a path, raw bytes, a numpy array or a PIL image and always
returns an ``(H, W, 3)`` uint8 RGB array: EXIF orientation applied, grayscale, RGBA,
palette, CMYK and 16-bit images converted. Images larger than ``max_pixels`` are
refused before decoding (decompression bombs). Every failure is an
:class:`~facekit.errors.ImageError` naming the source.
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path
from typing import Any, Union

import numpy as np

from facekit.errors import ImageError

ImageSource = Union[str, os.PathLike, bytes, bytearray, memoryview, np.ndarray, Any]

DEFAULT_MAX_PIXELS = 50_000_000
#: images smaller than this on either side cannot hold a usable face
MIN_SIDE = 8


def describe_source(source: ImageSource) -> str:
    """A short name for a source, for messages and reports."""
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return f"<{len(source)} bytes>"
    if isinstance(source, np.ndarray):
        return f"<array {source.shape} {source.dtype}>"
    return f"<{type(source).__name__}>"


def load_image(source: ImageSource, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode ``source`` into an ``(H, W, 3)`` uint8 RGB array."""
    where = describe_source(source)
    if isinstance(source, np.ndarray):
        return _check_size(_from_array(source, where), where, max_pixels)
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.exists():
            raise ImageError(f"{where}: no such file")
        if path.is_dir():
            raise ImageError(f"{where}: is a directory, not an image")
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ImageError(f"{where}: cannot read ({exc.strerror or exc})") from None
        return _decode(data, where, max_pixels)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return _decode(bytes(source), where, max_pixels)
    try:
        from PIL import Image as PILImage
    except ImportError:  # pragma: no cover - pillow is a core dependency
        PILImage = None
    if PILImage is not None and isinstance(source, PILImage.Image):
        _check_declared(source.size, where, max_pixels)
        return _from_pil(source, where)
    raise ImageError(
        f"{where}: unsupported image source; pass a path, bytes, a numpy (H, W, 3) uint8 array or a PIL image"
    )


def _decode(data: bytes, where: str, max_pixels: int) -> np.ndarray:
    from PIL import Image as PILImage
    from PIL import UnidentifiedImageError

    if not data:
        raise ImageError(f"{where}: empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", PILImage.DecompressionBombWarning)
            image = PILImage.open(io.BytesIO(data))
            _check_declared(image.size, where, max_pixels)
            image.load()  # decode now, so a truncated file fails here and not later
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError(f"{where}: not a recognised image format (is it really an image?)") from None
    except (PILImage.DecompressionBombError, PILImage.DecompressionBombWarning) as exc:
        raise ImageError(f"{where}: image too large to decode safely ({exc})") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageError(f"{where}: corrupt or truncated image ({exc})") from None
    return _from_pil(image, where)


def _check_declared(size: tuple[int, int], where: str, max_pixels: int) -> None:
    width, height = size
    if width * height > max_pixels:
        raise ImageError(
            f"{where}: image declares {width}x{height} = {width * height:,} pixels, more than the limit of "
            f"{max_pixels:,} (raise the pipeline's max_pixels if this is a real photo)"
        )


def _from_pil(image: Any, where: str) -> np.ndarray:
    from PIL import ImageOps

    try:
        image = ImageOps.exif_transpose(image)
    except Exception:  # a broken EXIF block must not lose the picture
        pass
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(image, dtype=np.uint32 if mode == "I" else np.uint16)
        arr = _to_uint8(arr)
        return np.ascontiguousarray(np.repeat(arr[:, :, None], 3, axis=2))
    if mode == "F":
        arr = np.asarray(image, dtype=np.float32)
        arr = np.clip(arr, 0, 255).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(arr[:, :, None], 3, axis=2))
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in image.info):
        image = _flatten_alpha(image.convert("RGBA"))
    elif mode != "RGB":
        image = image.convert("RGB")
    arr = np.asarray(image, dtype=np.uint8)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ImageError(f"{where}: could not convert image of mode {mode} to RGB")
    _check_min(arr, where)
    return np.ascontiguousarray(arr)


def _flatten_alpha(rgba: Any) -> Any:
    from PIL import Image as PILImage

    background = PILImage.new("RGBA", rgba.size, (255, 255, 255, 255))
    return PILImage.alpha_composite(background, rgba).convert("RGB")


def _to_uint8(arr: np.ndarray) -> np.ndarray:
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == np.uint16:
        return (arr >> 8).astype(np.uint8)
    if np.issubdtype(arr.dtype, np.integer):
        top = max(int(arr.max()), 1)
        return (arr.astype(np.float64) * (255.0 / top)).round().astype(np.uint8) if top > 255 else arr.astype(np.uint8)
    raise ImageError(f"unsupported pixel type {arr.dtype}")


def _from_array(arr: np.ndarray, where: str) -> np.ndarray:
    if arr.dtype == np.bool_:
        raise ImageError(f"{where}: boolean arrays are masks, not images")
    if np.issubdtype(arr.dtype, np.floating):
        if not np.isfinite(arr).all():
            raise ImageError(f"{where}: array contains NaN or infinite values")
        if arr.size and (arr.min() < 0 or arr.max() > 1):
            raise ImageError(f"{where}: float arrays must hold values in [0, 1]; pass uint8 for 0..255")
        arr = (arr * 255).round().astype(np.uint8)
    elif arr.dtype != np.uint8:
        if not np.issubdtype(arr.dtype, np.integer) or (arr.size and arr.min() < 0):
            raise ImageError(f"{where}: unsupported array dtype {arr.dtype}")
        arr = _to_uint8(arr)
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    elif arr.ndim == 3 and arr.shape[2] == 1:
        arr = np.repeat(arr, 3, axis=2)
    elif arr.ndim == 3 and arr.shape[2] == 4:
        alpha = arr[:, :, 3:4].astype(np.float32) / 255.0
        arr = (arr[:, :, :3].astype(np.float32) * alpha + 255.0 * (1 - alpha)).round().astype(np.uint8)
    elif not (arr.ndim == 3 and arr.shape[2] == 3):
        raise ImageError(f"{where}: expected an (H, W), (H, W, 3) or (H, W, 4) array, got shape {arr.shape}")
    _check_min(arr, where)
    return np.ascontiguousarray(arr)


def _check_min(arr: np.ndarray, where: str) -> None:
    if arr.shape[0] < MIN_SIDE or arr.shape[1] < MIN_SIDE:
        raise ImageError(f"{where}: image is {arr.shape[1]}x{arr.shape[0]} pixels, too small to hold a face")


def _check_size(arr: np.ndarray, where: str, max_pixels: int) -> np.ndarray:
    _check_declared((arr.shape[1], arr.shape[0]), where, max_pixels)
    return arr


def save_png(path: Union[str, os.PathLike], image: np.ndarray) -> Path:
    """Write an RGB image as PNG atomically (temp file + rename)."""
    import cv2

    from facekit.io import atomic_write_bytes

    ok, buf = cv2.imencode(".png", cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2BGR))
    if not ok:  # pragma: no cover - cv2 only fails on invalid arrays
        raise ImageError(f"could not encode PNG for {path}")
    return atomic_write_bytes(path, buf.tobytes())

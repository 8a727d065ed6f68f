"""Reading images from anything a caller may have.

:func:`load_image` accepts a path, raw bytes, a numpy array or a PIL image and always
returns an ``(H, W, 3)`` uint8 RGB array: EXIF orientation applied; grayscale, RGBA,
palette, CMYK and 16-bit images converted. Every failure is an
:class:`~facekit.errors.ImageError` naming the source, whatever the bytes are.

Files are untrusted input, so decoding is defensive:

* only common photo formats are decoded (:data:`ACCEPTED_FORMATS`); Pillow's other
  plugins (EPS, which runs Ghostscript; PSD; ICNS; ...) are never reached;
* images declaring more than ``max_pixels`` are refused from their header, before any
  pixel is decoded (decompression bombs);
* only regular files are read (a FIFO or a device such as ``/dev/zero`` would hang);
* images smaller than :data:`MIN_SIDE` on either side are refused: no face detector
  can find a face in them, and a whole-image fallback would embed noise.
"""

from __future__ import annotations

import io
import os
import stat
import warnings
from pathlib import Path
from typing import Any, Literal, Union

import numpy as np

from facekit.errors import ImageError

ImageSource = Union[str, os.PathLike, bytes, bytearray, memoryview, np.ndarray, Any]

DEFAULT_MAX_PIXELS = 50_000_000
#: images smaller than this on either side cannot hold a usable face (dlib's HOG detector
#: needs about 40 px at upsample 1, 20 px at upsample 2)
MIN_SIDE = 16
#: Pillow format names decoded; everything else is "not a recognised image format"
ACCEPTED_FORMATS = ("JPEG", "MPO", "PNG", "BMP", "GIF", "TIFF", "WEBP", "PPM")
_formats: tuple[str, ...] = ()
_FORMAT_NAMES = "JPEG, PNG, BMP, GIF, TIFF, WebP, PGM/PPM"


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
    """Decode ``source`` into an ``(H, W, 3)`` uint8 RGB array.

    Raises :class:`~facekit.errors.ImageError` (and nothing else) for anything that is
    not a usable image.
    """
    where = describe_source(source)
    if isinstance(source, np.ndarray):
        if source.ndim >= 2:
            _check_declared((source.shape[1], source.shape[0]), where, max_pixels)
        return _from_array(source, where)
    if isinstance(source, (str, os.PathLike)):
        return _decode_file(source, where, max_pixels)
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        if not data:
            raise ImageError(f"{where}: empty data (0 bytes)")
        return _decode(io.BytesIO(data), where, max_pixels)
    try:
        from PIL import Image as PILImage
    except ImportError:  # pragma: no cover - pillow is a core dependency
        PILImage = None
    if PILImage is not None and isinstance(source, PILImage.Image):
        _check_declared(source.size, where, max_pixels)
        try:
            return _from_pil(source, where)
        except ImageError:
            raise
        except Exception as exc:  # a lazily opened PIL image may still fail to decode
            raise ImageError(f"{where}: could not convert the PIL image ({type(exc).__name__}: {exc})") from None
    raise ImageError(
        f"{where}: unsupported image source; pass a path, bytes, a numpy (H, W, 3) uint8 array or a PIL image"
    )


def _decode_file(source: Union[str, os.PathLike], where: str, max_pixels: int) -> np.ndarray:
    path = Path(source)
    try:
        info = path.stat()
    except FileNotFoundError:
        raise ImageError(f"{where}: no such file") from None
    except (OSError, ValueError) as exc:  # ValueError: embedded NUL in the name
        raise ImageError(f"{where}: cannot read ({getattr(exc, 'strerror', None) or exc})") from None
    if stat.S_ISDIR(info.st_mode):
        raise ImageError(f"{where}: is a directory, not an image")
    if not stat.S_ISREG(info.st_mode):
        raise ImageError(f"{where}: not a regular file (a device, FIFO or socket); pass an image file")
    if info.st_size == 0:
        raise ImageError(f"{where}: empty file (0 bytes)")
    try:
        handle = open(path, "rb")
    except OSError as exc:
        raise ImageError(f"{where}: cannot read ({exc.strerror or exc})") from None
    with handle:  # Pillow reads only what it needs; the whole file is never slurped
        return _decode(handle, where, max_pixels)


def _decode(stream: Any, where: str, max_pixels: int) -> np.ndarray:
    from PIL import Image as PILImage
    from PIL import UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            # our own limit (checked next, from the header) replaces Pillow's warning;
            # Pillow's DecompressionBombError (2x its limit) still refuses the worst
            warnings.simplefilter("ignore", PILImage.DecompressionBombWarning)
            image = PILImage.open(stream, formats=_accepted_formats())
            _check_declared(image.size, where, max_pixels)
            image.load()  # decode now, so a truncated file fails here and not later
            return _from_pil(image, where)
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError(
            f"{where}: not a recognised image format (facekit reads {_FORMAT_NAMES}); is it really an image?"
        ) from None
    except PILImage.DecompressionBombError as exc:
        raise ImageError(
            f"{where}: image too large to decode safely ({exc}); refused before decoding"
        ) from None
    except MemoryError:
        raise ImageError(f"{where}: out of memory while decoding; the image is too large") from None
    except Exception as exc:  # noqa: BLE001 - any decoder failure on untrusted bytes is a bad image
        detail = f"{type(exc).__name__}: {exc}" if not isinstance(exc, OSError) else str(exc)
        raise ImageError(f"{where}: corrupt or truncated image ({detail})") from None


def _accepted_formats() -> tuple[str, ...]:
    """The accepted formats this Pillow knows (some Pillows read MPO through the JPEG plugin)."""
    global _formats
    if not _formats:
        from PIL import Image as PILImage

        PILImage.init()
        _formats = tuple(f for f in ACCEPTED_FORMATS if f in PILImage.OPEN)
    return _formats


def _check_declared(size: tuple[int, int], where: str, max_pixels: int) -> None:
    width, height = (int(v) for v in size)
    if width * height > max_pixels:
        raise ImageError(
            f"{where}: image too large: it declares {width}x{height} = {width * height:,} pixels, more than the limit of "
            f"{max_pixels:,} (raise the pipeline's max_pixels if this is a real photo)"
        )


def _from_pil(image: Any, where: str) -> np.ndarray:
    from PIL import ImageOps

    try:
        image = ImageOps.exif_transpose(image)
    except Exception:  # noqa: BLE001 - a broken EXIF block must not lose the picture
        pass
    mode = image.mode
    if mode.startswith("I"):  # 16- and 32-bit grayscale
        arr = np.asarray(image)
        arr = _int_to_uint8(arr.astype(np.int64), bits16=mode.startswith("I;16"))
        return _finish(np.repeat(arr[:, :, None], 3, axis=2), where)
    if mode == "F":
        arr = np.nan_to_num(np.asarray(image, dtype=np.float32), nan=0.0, posinf=255.0, neginf=0.0)
        arr = np.clip(arr, 0, 255).round().astype(np.uint8)
        return _finish(np.repeat(arr[:, :, None], 3, axis=2), where)
    try:
        if mode in ("RGBA", "RGBa", "LA", "La", "PA") or (mode == "P" and "transparency" in image.info):
            image = _flatten_alpha(image.convert("RGBA"))
        elif mode != "RGB":
            image = image.convert("RGB")
    except ValueError as exc:
        raise ImageError(f"{where}: cannot convert an image of mode {mode} to RGB ({exc})") from None
    arr = np.asarray(image, dtype=np.uint8)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ImageError(f"{where}: could not convert image of mode {mode} to RGB")
    return _finish(arr, where)


def _flatten_alpha(rgba: Any) -> Any:
    """Composite onto white: transparent areas become background, not black blobs."""
    from PIL import Image as PILImage

    background = PILImage.new("RGBA", rgba.size, (255, 255, 255, 255))
    return PILImage.alpha_composite(background, rgba).convert("RGB")


def _int_to_uint8(arr: np.ndarray, bits16: bool = False) -> np.ndarray:
    """Map non-negative integer pixels onto 0..255: 8-bit data as is, 16-bit data by its top byte,
    anything wider by its maximum."""
    if arr.size == 0:
        return arr.astype(np.uint8)
    arr = np.clip(arr, 0, None)
    top = int(arr.max())
    if top <= 255 and not bits16:
        return arr.astype(np.uint8)
    if top <= 65535:
        return (arr >> 8).astype(np.uint8)
    return (arr.astype(np.float64) * (255.0 / top)).round().astype(np.uint8)


def _from_array(arr: np.ndarray, where: str) -> np.ndarray:
    if arr.dtype == np.bool_:
        raise ImageError(f"{where}: boolean arrays are masks, not images")
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (1, 3, 4)):
        raise ImageError(f"{where}: expected an (H, W), (H, W, 3) or (H, W, 4) array, got shape {arr.shape}")
    _check_min(arr.shape, where)
    if np.issubdtype(arr.dtype, np.floating):
        if not np.isfinite(arr).all():
            raise ImageError(f"{where}: array contains NaN or infinite values")
        if arr.min() < 0 or arr.max() > 1:
            raise ImageError(f"{where}: float arrays must hold values in [0, 1]; pass uint8 for 0..255")
        arr = (arr.astype(np.float64) * 255).round().astype(np.uint8)
    elif arr.dtype != np.uint8:
        if not np.issubdtype(arr.dtype, np.integer) or arr.min() < 0:
            raise ImageError(
                f"{where}: unsupported array dtype {arr.dtype}; pass uint8 (0..255), uint16 or floats in [0, 1]"
            )
        arr = _int_to_uint8(arr.astype(np.int64) if arr.dtype != np.uint64 else arr, bits16=arr.dtype == np.uint16)
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    elif arr.shape[2] == 1:
        arr = np.repeat(arr, 3, axis=2)
    elif arr.shape[2] == 4:
        alpha = arr[:, :, 3:4].astype(np.float32) / 255.0
        arr = (arr[:, :, :3].astype(np.float32) * alpha + 255.0 * (1 - alpha)).round().astype(np.uint8)
    return _finish(arr, where)


def _finish(arr: np.ndarray, where: str) -> np.ndarray:
    _check_min(arr.shape, where)
    return np.ascontiguousarray(arr, dtype=np.uint8)


def _check_min(shape: tuple[int, ...], where: str) -> None:
    height, width = shape[0], shape[1]
    if height < MIN_SIDE or width < MIN_SIDE:
        raise ImageError(
            f"{where}: image is {width}x{height} pixels; a face needs at least {MIN_SIDE} pixels "
            "on each side"
        )


def save_png(path: Union[str, os.PathLike], image: np.ndarray) -> Path:
    """Write an RGB image as PNG atomically (temp file + rename)."""
    import cv2

    from facekit.io import atomic_write_bytes

    ok, buf = cv2.imencode(".png", cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2BGR))
    if not ok:  # pragma: no cover - cv2 only fails on invalid arrays
        raise ImageError(f"could not encode PNG for {path}")
    return atomic_write_bytes(path, buf.tobytes())


# --------------------------------------------------------------------------- paths
def refuse_urls(*paths: str) -> None:
    """A URL is not a file: say so, instead of "no such file"."""
    for path in paths:
        scheme = str(path).split("://", 1)[0].lower() if "://" in str(path) else ""
        if scheme and scheme.isalpha():
            raise ImageError(f"{path}: facekit reads local files, not URLs; download the image first "
                             "(e.g. `curl -O URL`) and pass the file's path")


IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif", ".pgm", ".ppm"}


def expand_image_paths(paths: Any) -> list[str]:
    """Files as given, plus the images inside any folder (recursively, sorted)."""
    refuse_urls(*paths)
    out: list[str] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            out.extend(str(p) for p in sorted(path.rglob("*")) if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        elif path.exists():
            out.append(str(path))
        else:
            raise ImageError(f"{raw}: no such file or folder")
    return out


#: what deleted pixels become (:func:`baseline_image`)
DeletionMode = Literal["blur", "grey"]


def baseline_image(chip: np.ndarray, mode: DeletionMode = "blur") -> np.ndarray:
    """What deleted pixels are replaced with: a heavy blur of the chip, or flat mid-grey.

    The blur (sigma = 1/12 of the chip side, 12.5 px on a 150 px chip) wipes out eyes,
    brows and mouth shape but keeps the colours, so it removes identity cues without
    pasting an unnatural grey square into the face.
    """
    chip = np.asarray(chip)
    if mode == "grey":
        return np.full_like(chip, 128)
    if mode == "blur":
        import cv2

        sigma = max(chip.shape[0], chip.shape[1]) / 12.0
        return cv2.GaussianBlur(chip, (0, 0), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REFLECT)
    raise ValueError(f"unknown deletion mode {mode!r}; use 'blur' or 'grey'")

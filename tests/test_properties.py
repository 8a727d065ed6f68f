"""Property-based tests (hypothesis) for the two places untrusted input comes in.

* Image decoding: any bytes (random, or a real photo's bytes damaged at random) and any
  numpy array give either an ``(H, W, 3)`` uint8 RGB image or an :class:`ImageError`;
  nothing else ever escapes.
* Pipeline YAML: any text, and any mapping built from the real keys and odd values, gives
  either a pipeline or a :class:`ConfigError`.

The example counts are kept small for CI; ``benchmarks/fuzz_decode.py`` runs the same
properties for minutes (and with atheris when it is installed).
"""

from __future__ import annotations

import io
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from facekit import Pipeline, load_image
from facekit.errors import ConfigError, ImageError
from facekit.image import MIN_SIDE

PHOTO = "face_recognition_examples/examples/obama_small.jpg"
#: formats the seeds are written in: every format facekit decodes
SEED_FORMATS = ("JPEG", "PNG", "GIF", "BMP", "TIFF", "WEBP", "PPM")
#: small max_pixels so a mutated header that declares a big image is refused fast
MAX_PIXELS = 4_000_000

#: Pillow warns about the damage it skips over (corrupt EXIF...); the property is about what is raised
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:PIL")

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def check_decode(source: object, max_pixels: int = MAX_PIXELS) -> None:
    """The property: a valid RGB image or ImageError, nothing else."""
    try:
        image = load_image(source, max_pixels=max_pixels)
    except ImageError as exc:
        assert str(exc), "an ImageError always says why"
        return
    assert isinstance(image, np.ndarray) and image.dtype == np.uint8
    assert image.ndim == 3 and image.shape[2] == 3
    assert image.shape[0] >= MIN_SIDE and image.shape[1] >= MIN_SIDE
    assert image.shape[0] * image.shape[1] <= max_pixels
    assert image.flags.c_contiguous


@lru_cache(maxsize=None)
def seed_images(faces_root: str) -> tuple[bytes, ...]:
    """The real photo, 48x36, in every accepted format (some with EXIF, alpha or 16 bits)."""
    from PIL import Image

    with Image.open(Path(faces_root) / PHOTO) as raw:
        small = raw.convert("RGB").resize((48, 36))
    seeds = []
    for fmt in SEED_FORMATS:
        buffer = io.BytesIO()
        small.save(buffer, fmt)
        seeds.append(buffer.getvalue())
    exif = Image.Exif()
    exif[0x0112] = 6
    for image, fmt, kwargs in [
        (small, "JPEG", {"exif": exif.tobytes(), "progressive": True}),
        (small.convert("RGBA"), "PNG", {}),
        (small.convert("P"), "GIF", {"transparency": 0}),
        (small.convert("CMYK"), "JPEG", {}),
        (Image.fromarray(np.asarray(small.convert("L")).astype(np.uint16) * 257), "PNG", {}),
        (small.convert("L"), "TIFF", {"compression": "tiff_deflate"}),
    ]:
        buffer = io.BytesIO()
        image.save(buffer, fmt, **kwargs)
        seeds.append(buffer.getvalue())
    return tuple(seeds)


@st.composite
def damaged(draw: st.DrawFn, seeds: tuple[bytes, ...]) -> bytes:
    """A seed image with a few random edits: flipped bytes, a cut, an insertion, a header poke."""
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["flip", "cut", "insert", "header", "int"]))
        if not data:
            break
        at = draw(st.integers(0, len(data) - 1))
        if kind == "flip":
            data[at] ^= draw(st.integers(1, 255))
        elif kind == "cut":
            del data[at:]
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=64))
        elif kind == "header":  # headers hold sizes, counts and offsets: hit them more often
            at = draw(st.integers(0, min(len(data), 64) - 1))
            data[at] = draw(st.integers(0, 255))
        else:  # a big number where a small one was
            value = draw(st.sampled_from([0, 1, 0x7F, 0xFF, 0x7FFF, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF]))
            data[at : at + 4] = value.to_bytes(4, draw(st.sampled_from(["big", "little"])))
    return bytes(data)


@FAST
@given(st.binary(max_size=2048))
def test_arbitrary_bytes_decode_or_raise_image_error(data: bytes) -> None:
    check_decode(data)


def test_damaged_real_images_decode_or_raise_image_error(faces_dir: Path) -> None:
    seeds = seed_images(str(faces_dir))
    for seed in seeds:  # every undamaged seed decodes
        image = load_image(seed)
        assert image.shape in ((36, 48, 3), (48, 36, 3))

    @settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(damaged(seeds))
    def prop(data: bytes) -> None:
        check_decode(data)

    prop()


def test_damaged_files_on_disk(faces_dir: Path, tmp_path: Path) -> None:
    """The path route (file handle, not bytes) under the same property."""
    seeds = seed_images(str(faces_dir))
    target = tmp_path / "photo.jpg"

    @settings(max_examples=60, deadline=None)
    @given(damaged(seeds))
    def prop(data: bytes) -> None:
        target.write_bytes(data)
        check_decode(target)

    prop()


DTYPES = st.sampled_from([np.uint8, np.uint16, np.uint32, np.int8, np.int16, np.int32, np.int64, np.uint64,
                          np.float16, np.float32, np.float64, np.bool_, np.complex64])


@FAST
@given(hnp.arrays(DTYPES, hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=40)))
def test_arbitrary_arrays_convert_or_raise_image_error(array: np.ndarray) -> None:
    check_decode(array)


@FAST
@given(hnp.arrays(np.uint8, st.tuples(st.integers(MIN_SIDE, 40), st.integers(MIN_SIDE, 40), st.sampled_from([1, 3, 4]))))
def test_valid_uint8_arrays_keep_their_pixels(array: np.ndarray) -> None:
    image = load_image(array)
    assert image.shape == array.shape[:2] + (3,)
    if array.shape[2] == 3:
        assert np.array_equal(image, array)
    elif array.shape[2] == 1:
        assert np.array_equal(image, np.repeat(array, 3, axis=2))


# ------------------------------------------------------------------------------ YAML
def check_config(text: str) -> None:
    """The property: a pipeline or ConfigError, nothing else."""
    try:
        pipeline = Pipeline.from_yaml(text)
    except ConfigError as exc:
        assert str(exc)
        return
    assert Pipeline.from_yaml(pipeline.to_yaml()).to_dict() == pipeline.to_dict(), "a valid pipeline round-trips"


@FAST
@given(st.text(max_size=300))
def test_arbitrary_text_is_a_pipeline_or_a_config_error(text: str) -> None:
    check_config(text)


KEYS = ["name", "description", "detector", "fallback_detector", "aligner", "embedder", "explainer", "aggregator",
        "multi_face", "batch_size", "max_pixels", "scoring", "params", "threshold", "calibration", "upsample",
        "size", "padding", "preset", "margin", "weights", "format", "device"]
NAMES = ["dlib.hog", "dlib.cnn", "dlib.chip5", "dlib.chip68", "torch.dlib_resnet", "dlib.resnet", "whole_image",
         "gradcam", "meanface", "centroid", "largest", "all", "default", "nope.nope"]
SCALARS = (st.none() | st.booleans() | st.integers(-10, 10**6) | st.floats(allow_nan=True)
           | st.sampled_from(NAMES) | st.text(max_size=8))
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(KEYS), inner, max_size=4),
    max_leaves=12,
)


@FAST
@given(st.dictionaries(st.sampled_from(KEYS), VALUES, min_size=1, max_size=7))
def test_structured_yaml_is_a_pipeline_or_a_config_error(data: dict) -> None:
    check_config(yaml.safe_dump(data, allow_unicode=True))


@FAST
@given(st.sampled_from(["detector", "aligner", "embedder", "fallback_detector", "aggregator", "explainer"]),
       st.dictionaries(st.sampled_from(KEYS), SCALARS, max_size=3))
def test_random_params_on_a_real_pipeline(stage: str, params: dict) -> None:
    base = {"detector": {"name": "dlib.hog"}, "aligner": {"name": "dlib.chip5", "params": {"size": 150}},
            "embedder": {"name": "torch.dlib_resnet"}}
    names = {"fallback_detector": "whole_image", "aggregator": "meanface", "explainer": "gradcam"}
    base[stage] = {"name": base.get(stage, {}).get("name", names.get(stage)), "params": params}
    check_config(yaml.safe_dump(base))


@pytest.mark.parametrize("text", [
    "[" * 1000, "{" * 1000, "a: " + "[" * 1000 + "]" * 1000, "&a [*a]", "!!binary AAAA", "? [a]\n: b\n",
    "\t", "---\n...\n---\n", "a: !!float nan", "%YAML 1.1\n---\na: 1", "!<tag:yaml.org,2002:python/none> x",
])
def test_pathological_yaml(text: str) -> None:
    check_config(text)


def test_deeply_nested_dict() -> None:
    data: dict = {}
    level = data
    for _ in range(5000):
        level["params"] = {}
        level = level["params"]
    with pytest.raises(ConfigError, match="nested too deeply"):
        Pipeline.from_dict(data)

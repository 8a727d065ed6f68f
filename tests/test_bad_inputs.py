"""The bad-input corpus: every odd file a user may hand facekit, made from real photos.

Each :class:`Case` says how its file is made and what facekit must do with it. The test
runs every case through :func:`facekit.load_image` and through the bundled ``default``
pipeline, and checks the answer: the right embedding (compared with the upright photo)
or a :mod:`facekit.errors` exception with a clear message; never a crash, a hang or a
silently wrong answer.

The same case list renders the table in the docs, together with what facekit actually
said for each case, so the table cannot drift from the behaviour::

    python tests/test_bad_inputs.py --table docs/bad_inputs_table.md
"""

from __future__ import annotations

import io
import os
import shutil
import struct
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import pytest

from facekit import Pipeline, load_image
from facekit.errors import FacekitError, ImageError, ModelFileError, NoFaceError
from facekit.image import MIN_SIDE

#: Euclidean distance below which two embeddings are "the same photo" (dlib ResNet; a JPEG
#: re-encode moves it by ~0.05, the same person in another photo is ~0.3-0.5, another
#: person ~0.8); grayscale loses colour and moves it by ~0.2.
SAME_PHOTO = 0.12
SAME_PHOTO_GRAY = 0.3
#: the default pipeline's threshold: below it is "same person"
SAME_PERSON = 0.6

OBAMA = "face_recognition_examples/examples/obama.jpg"  # EXIF orientation tag 1, 910x1137
PARTIAL = "face_recognition_examples/tests/test_images/obama_partial_face.jpg"  # face cut by the left edge
COLLAGE = (  # four people, one photo each
    "face_recognition_examples/examples/obama.jpg",
    "face_recognition_examples/examples/knn_examples/train/biden/biden2.jpg",
    "face_recognition_examples/examples/knn_examples/train/rose_leslie/img2.jpg",
    "face_recognition_examples/examples/knn_examples/train/alex_lacamoire/img1.jpg",
)
UPRIGHT_WIDTH = 364  # small enough for fast HOG detection, face still ~110 px wide


# ----------------------------------------------------------------------------- making files
def _pil(path: Path, width: Optional[int] = None):  # type: ignore[no-untyped-def]
    from PIL import Image, ImageOps

    with Image.open(path) as raw:
        image = ImageOps.exif_transpose(raw).convert("RGB")
    if width:
        image = image.resize((width, round(image.height * width / image.width)), Image.LANCZOS)
    return image


def _upright(faces: Path):  # type: ignore[no-untyped-def]
    return _pil(faces / OBAMA, UPRIGHT_WIDTH)


def _save(image, out: Path, name: str, **kwargs) -> Path:  # type: ignore[no-untyped-def]
    path = out / name
    image.save(path, **kwargs)
    return path


def _write(out: Path, name: str, data: bytes) -> Path:
    path = out / name
    path.write_bytes(data)
    return path


def _png_bytes(image) -> bytes:  # type: ignore[no-untyped-def]
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def _jpeg_bytes(image, **kwargs) -> bytes:  # type: ignore[no-untyped-def]
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=92, **kwargs)
    return buffer.getvalue()


def make_png_bomb(faces: Path, out: Path) -> Path:
    """A valid small PNG whose header claims 100,000 x 100,000 pixels (CRC fixed up)."""
    data = bytearray(_png_bytes(_upright(faces)))
    assert data[12:16] == b"IHDR"
    data[16:24] = struct.pack(">II", 100_000, 100_000)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])) & 0xFFFFFFFF)
    return _write(out, "bomb.png", bytes(data))


def make_jpeg_bomb(faces: Path, out: Path) -> Path:
    """A valid small JPEG whose frame header claims 10,000 x 8,000 pixels (over max_pixels,
    under Pillow's own limit: facekit's check is what stops it)."""
    data = bytearray(_jpeg_bytes(_upright(faces)))
    sof = data.find(b"\xff\xc0")
    assert sof > 0, "expected a baseline JPEG"
    data[sof + 5 : sof + 9] = struct.pack(">HH", 8_000, 10_000)  # height, width
    return _write(out, "bomb.jpg", bytes(data))


def make_exif(orientation: int) -> Callable[[Path, Path], Path]:
    """The upright photo stored as a camera would for EXIF ``orientation`` (1..8), tagged so."""

    def make(faces: Path, out: Path) -> Path:
        from PIL import Image

        up = np.asarray(_upright(faces))
        # stored pixels such that "apply the orientation" gives the upright photo back
        # (EXIF 2.3, tag 0x0112): 5 = transpose, 7 = transverse, 6/8 = rotated 90 CW/CCW to view
        stored = {
            1: up,
            2: up[:, ::-1],
            3: up[::-1, ::-1],
            4: up[::-1, :],
            5: up.transpose(1, 0, 2),
            6: np.rot90(up, 1),
            7: up[::-1, ::-1].transpose(1, 0, 2),
            8: np.rot90(up, -1),
        }[orientation]
        exif = Image.Exif()
        exif[0x0112] = orientation
        image = Image.fromarray(np.ascontiguousarray(stored))
        return _write(out, f"exif{orientation}.jpg", _jpeg_bytes(image, exif=exif.tobytes()))

    return make


def make_collage(faces: Path, out: Path) -> Path:
    from PIL import Image

    tiles = [_pil(faces / rel, 300) for rel in COLLAGE]
    height = max(t.height for t in tiles)
    canvas = Image.new("RGB", (600, 2 * height), (255, 255, 255))
    for i, tile in enumerate(tiles):
        canvas.paste(tile, ((i % 2) * 300, (i // 2) * height))
    return _save(canvas, out, "four_people.jpg", quality=92)


def make_rgba(faces: Path, out: Path) -> Path:
    up = _upright(faces).convert("RGBA")
    alpha = np.zeros((up.height, up.width), np.uint8)
    alpha[20:-20, 20:-20] = 255  # a transparent frame around an opaque photo
    from PIL import Image

    up.putalpha(Image.fromarray(alpha))
    return _save(up, out, "rgba.png")


def make_gray16(faces: Path, out: Path) -> Path:
    from PIL import Image

    gray = np.asarray(_upright(faces).convert("L")).astype(np.uint16) * 257  # full 16-bit range
    return _save(Image.fromarray(gray), out, "gray16.png")


def make_rgb16(faces: Path, out: Path) -> Path:
    import cv2

    rgb = np.asarray(_upright(faces)).astype(np.uint16) * 257
    path = out / "rgb16.png"
    assert cv2.imwrite(str(path), np.ascontiguousarray(rgb[:, :, ::-1]))
    return path


def make_fifo(faces: Path, out: Path) -> Path:
    path = out / "fifo.jpg"
    os.mkfifo(path)
    return path


def make_dir(faces: Path, out: Path) -> Path:
    path = out / "folder.jpg"
    path.mkdir()
    return path


def make_no_face(faces: Path, out: Path) -> Path:
    """The wall behind the subject: the top strip of the photo, above his head."""
    top = np.asarray(_pil(faces / OBAMA))[:130, :340]
    from PIL import Image

    return _save(Image.fromarray(top), out, "no_face.jpg", quality=92)


def make_tiny_face(faces: Path, out: Path) -> Path:
    """The photo at 56x70: the face is ~17 px wide, below what HOG can find (~27 px is borderline)."""
    return _save(_pil(faces / OBAMA, 56), out, "tiny_face.jpg", quality=92)


def make_small_face(faces: Path, out: Path) -> Path:
    """The photo at 136x170: the face is ~40 px wide, about the smallest HOG finds."""
    return _save(_pil(faces / OBAMA, 136), out, "small_face.jpg", quality=92)


# ----------------------------------------------------------------------------- the cases
@dataclass(frozen=True)
class Case:
    """One bad input.

    ``expect`` is one of:
      ``"refused"``  load_image raises ImageError whose message contains ``fragment``;
      ``"same"``     embeds (a detected face) within ``tolerance`` of the upright photo;
      ``"person"``   embeds (a detected face) and is the same person as the upright photo;
      ``"faces"``    the detector finds ``count`` faces; ``largest`` picks the biggest;
      ``"noface"``   no face is detected (HOG, then CNN): the default pipeline raises NoFaceError; a
                     pipeline given ``fallback_detector: whole_image`` embeds the whole
                     image and flags it (``face.detector == "whole_image"``).
    """

    id: str
    what: str
    does: str
    make: Callable[[Path, Path], Path]
    expect: str
    fragment: str = ""
    tolerance: float = SAME_PHOTO
    count: int = 0
    posix_only: bool = False


CASES: tuple[Case, ...] = (
    Case("zero_byte", "zero-byte file `empty.jpg`", "ImageError: empty file",
         lambda f, o: _write(o, "empty.jpg", b""), "refused", "empty file"),
    Case("truncated_jpeg", "first 40% of a JPEG", "ImageError: corrupt or truncated",
         lambda f, o: _write(o, "truncated.jpg", _jpeg_bytes(_upright(f))[: len(_jpeg_bytes(_upright(f))) * 2 // 5]),
         "refused", "truncated"),
    Case("truncated_png", "first half of a PNG", "ImageError: corrupt or truncated",
         lambda f, o: _write(o, "truncated.png", _png_bytes(_upright(f))[: len(_png_bytes(_upright(f))) // 2]),
         "refused", "truncated"),
    Case("header_only_jpeg", "JPEG cut after 300 bytes (headers only)", "ImageError: corrupt or truncated",
         lambda f, o: _write(o, "header_only.jpg", _jpeg_bytes(_upright(f))[:300]), "refused", "image"),
    Case("text_as_jpg", "a text file renamed `notes.jpg`", "ImageError: not a recognised image format",
         lambda f, o: _write(o, "notes.jpg", b"shopping list\n- eggs\n- milk\n" * 20), "refused", "not a recognised image"),
    Case("random_bytes", "64 KiB of random bytes named `.jpg`", "ImageError: not a recognised image format",
         lambda f, o: _write(o, "random.jpg", np.random.default_rng(8).bytes(65536)), "refused", "not a recognised image"),
    Case("jpeg_magic_garbage", "JPEG magic bytes followed by random bytes", "ImageError: corrupt or truncated",
         lambda f, o: _write(o, "garbage.jpg", b"\xff\xd8\xff\xe0" + np.random.default_rng(9).bytes(4096)), "refused", ""),
    Case("eps", "an EPS (PostScript) file", "ImageError: not a recognised image format (Ghostscript is never run)",
         lambda f, o: _write(o, "drawing.eps", b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 64 64\nnewpath 0 0 moveto 64 64 lineto stroke\nshowpage\n"),
         "refused", "not a recognised image"),
    Case("png_bomb", "PNG whose header declares 100,000 x 100,000 px",
         "ImageError before decoding: too large (Pillow's decompression-bomb limit)", make_png_bomb, "refused", "too large"),
    Case("jpeg_bomb", "JPEG whose header declares 10,000 x 8,000 px",
         "ImageError before decoding: too large (over the pipeline's max_pixels, 50 M)", make_jpeg_bomb, "refused",
         "10000x8000"),
    Case("one_pixel", "1x1 PNG", f"ImageError: too small (a face needs {MIN_SIDE} px a side)",
         lambda f, o: _save(_upright(f).resize((1, 1)), o, "one_pixel.png"), "refused", "1x1 pixels"),
    Case("strip", "10000x10 PNG", f"ImageError: too small (a face needs {MIN_SIDE} px a side)",
         lambda f, o: _save(_upright(f).resize((10_000, 10)), o, "strip.png"), "refused", "10000x10 pixels"),
    Case("missing", "a path that does not exist", "ImageError: no such file",
         lambda f, o: o / "missing.jpg", "refused", "no such file"),
    Case("directory", "a folder named `folder.jpg`", "ImageError: is a directory", make_dir, "refused", "directory"),
    Case("fifo", "a named pipe `fifo.jpg` (would block a naive reader)", "ImageError: not a regular file",
         make_fifo, "refused", "not a regular file", posix_only=True),
    Case("grayscale", "8-bit grayscale JPEG", "embedded; close to the colour photo",
         lambda f, o: _save(_upright(f).convert("L"), o, "gray.jpg", quality=92), "same", tolerance=SAME_PHOTO_GRAY),
    Case("rgba", "RGBA PNG with a transparent frame", "embedded (alpha composited on white)", make_rgba, "same"),
    Case("palette", "palette (P mode) PNG, 256 colours", "embedded",
         lambda f, o: _save(_upright(f).quantize(256), o, "palette.png"), "same", tolerance=SAME_PHOTO_GRAY),
    Case("gray16", "16-bit grayscale PNG", "embedded (top byte kept); close to the colour photo",
         make_gray16, "same", tolerance=SAME_PHOTO_GRAY),
    Case("rgb16", "16-bit RGB PNG", "embedded (top byte kept)", make_rgb16, "same"),
    Case("cmyk", "CMYK JPEG", "embedded (converted to RGB)",
         lambda f, o: _save(_upright(f).convert("CMYK"), o, "cmyk.jpg", quality=92), "same"),
    Case("png_named_jpg", "a PNG named `.jpg`", "embedded (format read from the content, not the name)",
         lambda f, o: _write(o, "really_png.jpg", _png_bytes(_upright(f))), "same"),
    *(
        Case(f"exif{k}", f"JPEG stored with EXIF orientation {k}", "embedded upright: same as the upright photo",
             make_exif(k), "same")
        for k in range(1, 9)
    ),
    Case("border_face", "real photo with the face cut by the left edge (`obama_partial_face.jpg`)",
         "embedded; same person as the full photo",
         lambda f, o: Path(shutil.copy(f / PARTIAL, o / "partial_face.jpg")), "person"),
    Case("many_faces", "collage of four people", "4 faces detected; `multi_face: largest` embeds the largest",
         make_collage, "faces", count=4),
    Case("small_face", "face ~40 px wide (136x170 photo)", "detected; same person", make_small_face, "person"),
    Case("tiny_face", "face ~17 px wide (56x70 photo)",
         "no face detected: NoFaceError (never scored); with `fallback_detector: whole_image` the whole "
         "photo is embedded and flagged `detector: whole_image`", make_tiny_face, "noface"),
    Case("no_face", "a wall, no face (crop of a real photo)",
         "no face detected: NoFaceError (never scored); with `fallback_detector: whole_image` the whole "
         "photo is embedded and flagged `detector: whole_image`", make_no_face, "noface"),
)


def build_corpus(faces: Path, out: Path) -> dict[str, Path]:
    """Write every case's file into ``out``; returns case id -> path."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {"upright": _save(_upright(faces), out, "upright.png")}
    for case in CASES:
        if case.posix_only and not hasattr(os, "mkfifo"):
            continue
        paths[case.id] = case.make(faces, out)
    return paths


# ----------------------------------------------------------------------------- running them
@dataclass
class Outcome:
    error: Optional[FacekitError] = None
    detector: str = ""
    distance: Optional[float] = None  # to the upright photo
    faces_found: int = 0
    embeddings: int = 0

    def describe(self) -> str:
        if self.error is not None:
            return f"{type(self.error).__name__}: {self.error}"
        text = f"{self.embeddings} embedding(s); face from `{self.detector}`"
        if self.faces_found > 1:
            text += f"; {self.faces_found} faces detected"
        if self.distance is not None:
            text += f"; distance to the upright photo {self.distance:.3f}"
        return text


def run_case(pipeline: Pipeline, case: Case, path: Path, reference: np.ndarray) -> Outcome:
    """What the default pipeline does with one case's file (errors are caught and kept)."""
    try:
        batch = pipeline.embed([path], on_error="raise")
        faces = pipeline.detect(path) if case.expect == "faces" else []
    except FacekitError as exc:
        return Outcome(error=exc)
    first = batch[0]
    return Outcome(
        detector=first.face.face.detector if first.face is not None else "",
        distance=float(np.linalg.norm(first.vector - reference)),
        faces_found=len(faces),
        embeddings=len(batch),
    )


def _text_without_path(exc: BaseException, path: Path) -> str:
    return str(exc).replace(str(path.parent) + os.sep, "")


@pytest.fixture(scope="module")
def corpus(faces_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return build_corpus(faces_dir, tmp_path_factory.mktemp("bad_inputs"))


@pytest.fixture(scope="module")
def pipeline() -> Pipeline:
    return Pipeline.load("default")


@pytest.fixture(scope="module")
def outcomes(pipeline: Pipeline, corpus: dict[str, Path]) -> dict[str, Outcome]:
    reference = pipeline.embed_one(corpus["upright"]).vector
    return {case.id: run_case(pipeline, case, corpus[case.id], reference) for case in CASES if case.id in corpus}


def _cases(*kinds: str) -> list:  # type: ignore[type-arg]
    return [
        pytest.param(c, id=c.id, marks=pytest.mark.skipif(c.posix_only and not hasattr(os, "mkfifo"), reason="POSIX only"))
        for c in CASES
        if c.expect in kinds
    ]


@pytest.mark.parametrize("case", _cases("refused"))
def test_refused_by_load_image_with_a_clear_message(case: Case, corpus: dict[str, Path]) -> None:
    path = corpus[case.id]
    with pytest.raises(ImageError) as info:
        load_image(path)
    message = str(info.value)
    assert str(path) in message, "the message names the file"
    assert case.fragment in message
    # the same bytes handed over in memory fail the same way (and still say why)
    if path.is_file() and path.stat().st_size:
        with pytest.raises(ImageError, match=case.fragment or "image"):
            load_image(path.read_bytes())


@pytest.mark.parametrize("case", _cases("refused"))
def test_refused_by_the_pipeline_too(case: Case, outcomes: dict[str, Outcome]) -> None:
    outcome = outcomes[case.id]
    assert isinstance(outcome.error, ImageError), outcome.describe()
    assert case.fragment in str(outcome.error)


@pytest.mark.parametrize("case", _cases("same"))
def test_decodes_to_the_same_face(case: Case, corpus: dict[str, Path], outcomes: dict[str, Outcome]) -> None:
    pixels = load_image(corpus[case.id])
    assert pixels.dtype == np.uint8 and pixels.ndim == 3 and pixels.shape[2] == 3
    upright = load_image(corpus["upright"])
    assert pixels.shape == upright.shape, "orientation applied: same shape as the upright photo"
    if case.tolerance == SAME_PHOTO:  # colour cases: the pixels themselves match (inside the RGBA frame)
        inner = (slice(20, -20), slice(20, -20))
        assert np.abs(pixels[inner].astype(int) - upright[inner].astype(int)).mean() < 4
    outcome = outcomes[case.id]
    assert outcome.error is None, outcome.describe()
    assert outcome.detector == "dlib.hog", "a real face was detected, not the whole-image fallback"
    assert outcome.distance is not None and outcome.distance < case.tolerance, outcome.describe()


@pytest.mark.parametrize("case", _cases("person"))
def test_same_person(case: Case, outcomes: dict[str, Outcome]) -> None:
    outcome = outcomes[case.id]
    assert outcome.error is None, outcome.describe()
    assert outcome.detector == "dlib.hog"
    assert outcome.distance is not None and outcome.distance < SAME_PERSON, outcome.describe()


def test_many_faces(pipeline: Pipeline, corpus: dict[str, Path], outcomes: dict[str, Outcome]) -> None:
    outcome = outcomes["many_faces"]
    assert outcome.faces_found == 4 and outcome.embeddings == 1, outcome.describe()
    faces = pipeline.detect(corpus["many_faces"])
    assert all(faces[0].area >= f.area for f in faces)
    chosen = pipeline.align(corpus["many_faces"])[0].face
    assert chosen.box == faces[0].box, "multi_face: largest picks the largest face"
    every = Pipeline.from_dict({**pipeline.to_dict(), "multi_face": "all"}).embed([corpus["many_faces"]])
    assert len(every) == 4
    vectors = np.stack([e.vector for e in every])
    distances = np.linalg.norm(vectors[:, None] - vectors[None], axis=2)[np.triu_indices(4, 1)]
    assert distances.min() > SAME_PERSON, "four different people"
    # exactly one of them is the man in the upright photo (Obama's tile)
    obama = pipeline.embed_one(corpus["upright"]).vector
    assert sum(np.linalg.norm(vectors - obama, axis=1) < SAME_PERSON) == 1


@pytest.mark.parametrize("case", _cases("noface"))
def test_no_detectable_face_is_refused_or_flagged(case: Case, pipeline: Pipeline, corpus: dict[str, Path],
                                                  outcomes: dict[str, Outcome]) -> None:
    outcome = outcomes[case.id]
    assert isinstance(outcome.error, NoFaceError), outcome.describe()
    assert "no face found by 'dlib.hog' or 'dlib.cnn'" in str(outcome.error) and str(corpus[case.id]) in str(outcome.error)
    assert "fallback_detector: whole_image" in str(outcome.error), "the message says how to accept tight crops"
    crops = Pipeline.from_dict({**pipeline.to_dict(), "fallback_detector": "whole_image"})
    assert crops.embed_one(corpus[case.id]).face.face.detector == "whole_image"


def test_two_photos_without_faces_are_not_the_same_person(pipeline: Pipeline, corpus: dict[str, Path]) -> None:
    """Issue 8: with the old whole-image fallback, a wall and a grey square scored "same person"."""
    wall = corpus["no_face"]
    gray = np.full((300, 300, 3), 128, np.uint8)
    with pytest.raises(NoFaceError):
        pipeline.compare(wall, gray)
    with pytest.raises(NoFaceError):
        pipeline.compare(wall, corpus["upright"])


def test_one_run_over_the_whole_corpus_skips_and_lists_the_bad_files(pipeline: Pipeline, corpus: dict[str, Path]) -> None:
    good = [corpus[c.id] for c in CASES if c.id in ("exif6", "cmyk")]
    paths = [corpus[c.id] for c in CASES if c.id in corpus and c.expect == "refused"] + good
    paths = paths[::2] + good + paths[1::2]  # good files in the middle of bad ones
    batch = pipeline.embed(paths, on_error="skip")
    refused = {str(corpus[c.id]) for c in CASES if c.expect == "refused" and c.id in corpus}
    assert {source for source, _ in batch.failures} == refused
    assert all(message for _, message in batch.failures)
    assert len(batch) == len(paths) - len(refused)
    assert [e.source for e in batch] == [str(p) for p in paths if str(p) not in refused], "input order kept"


def test_arrays_and_pil_images(corpus: dict[str, Path]) -> None:
    from PIL import Image

    upright = load_image(corpus["upright"])
    assert np.array_equal(load_image(upright.astype(np.float32) / 255), upright)
    assert np.array_equal(load_image(upright.astype(np.uint16) * 257), upright)
    with Image.open(corpus["exif6"]) as image:
        assert load_image(image).shape == upright.shape, "EXIF orientation applied to PIL images too"
    for bad, fragment in [
        (np.zeros((100, 100), bool), "mask"),
        (np.full((100, 100, 3), np.nan, np.float32), "NaN"),
        (np.full((100, 100, 3), 2.0), r"\[0, 1\]"),
        (np.zeros((100, 100, 2), np.uint8), "shape"),
        (np.zeros((100,), np.uint8), "shape"),
        (np.zeros((4, 4, 3), np.uint8), "4x4 pixels"),
        (-np.ones((100, 100, 3), np.int16), "dtype"),
        (np.zeros((100, 100, 3), complex), "dtype"),
        (np.zeros((8000, 8000, 3), np.uint8), "more than the limit"),
        ([[1, 2], [3, 4]], "unsupported image source"),
    ]:
        with pytest.raises(ImageError, match=fragment):
            load_image(bad, max_pixels=50_000_000 if fragment != "more than the limit" else 1_000_000)


def test_max_pixels_is_the_pipelines_setting(pipeline: Pipeline, corpus: dict[str, Path]) -> None:
    small = Pipeline.from_dict({**pipeline.to_dict(), "max_pixels": 10_000})
    with pytest.raises(ImageError, match="10,000.*max_pixels"):
        small.read(corpus["upright"])


# ----------------------------------------------------------------------------- model files
def _corrupt_copies(source: Path, out: Path) -> dict[str, Path]:
    """A truncated copy and a same-size copy with one flipped byte."""
    data = source.read_bytes()
    truncated = _write(out, "truncated_" + source.name, data[: len(data) // 3])
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0xFF
    return {"truncated": truncated, "flipped": _write(out, "flipped_" + source.name, bytes(flipped))}


def test_shipped_dat_files_are_verified(tmp_path: Path) -> None:
    """dlib's .dat files are checked by size and SHA-256 before use (no component takes a path,
    so the check itself is run on corrupted copies)."""
    dlib_models = pytest.importorskip("facekit_dlib._models")
    torch_embedders = pytest.importorskip("facekit_torch.dlib_resnet")
    shipped = dlib_models.model_path(dlib_models.FACE_RESNET)  # the real file passes
    assert torch_embedders.model_file() == shipped
    copies = _corrupt_copies(shipped, tmp_path)
    for verify in (lambda p: dlib_models.verify_model_file(p, dlib_models.FACE_RESNET), torch_embedders.verify_model_file):
        with pytest.raises(ModelFileError, match=r"corrupt model file .*bytes, expected 22,466,066.*pip install"):
            verify(copies["truncated"])
        with pytest.raises(ModelFileError, match=r"corrupt model file .*SHA-256 .* does not match.*pip install"):
            verify(copies["flipped"])


class _Pwn:
    """Unpickling this would create a file: what a malicious checkpoint does."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (Path.touch, (self.marker,))


def test_torch_checkpoints_never_unpickle_code(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    pytest.importorskip("facekit_torch.efficientnet")
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    torch.save({"trunk.weight": _Pwn(marker)}, evil)
    pipeline = Pipeline.from_dict({
        "detector": "whole_image", "aligner": {"name": "dlib.chip5", "params": {"size": 224, "padding": 0.1}},
        "embedder": {"name": "efficientnetv2_arcface", "params": {"weights": str(evil), "device": "cpu"}},
    })
    with pytest.raises(ModelFileError, match="weights_only=True refuses") as info:
        pipeline.embedder.warm_up()
    assert str(evil) in str(info.value)
    assert not marker.exists(), "the checkpoint's pickled code ran"


@pytest.mark.parametrize("kind", ["missing", "random_bytes", "truncated_checkpoint"])
def test_bad_weight_files_give_model_file_errors(kind: str, tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    pytest.importorskip("facekit_torch.efficientnet")
    if kind == "missing":
        weights, fragment = tmp_path / "gone.onnx", "ONNX file not found"
    elif kind == "random_bytes":
        weights, fragment = _write(tmp_path, "noise.onnx", np.random.default_rng(1).bytes(4096)), "not a loadable ONNX"
    else:
        good = tmp_path / "full.pt"
        torch.save({"trunk.weight": torch.zeros(64, 64)}, good)
        weights, fragment = _write(tmp_path, "cut.pt", good.read_bytes()[:300]), "cannot load"
    pipeline = Pipeline.from_dict({
        "detector": "whole_image", "aligner": {"name": "dlib.chip5", "params": {"size": 224, "padding": 0.1}},
        "embedder": {"name": "efficientnetv2_arcface", "params": {"weights": str(weights), "device": "cpu"}},
    })
    with pytest.raises(ModelFileError, match=fragment) as info:
        pipeline.embedder.warm_up()
    assert str(weights) in str(info.value)


# ----------------------------------------------------------------------------- the docs table
def render_table(outcomes: dict[str, Outcome], corpus: dict[str, Path]) -> str:
    lines = [
        "| case | input | what facekit does | what it said (default pipeline) |",
        "|---|---|---|---|",
    ]
    for case in CASES:
        if case.id not in outcomes:
            continue
        said = outcomes[case.id]
        text = said.describe() if said.error is None else _text_without_path(said.error, corpus[case.id])
        if said.error is not None:
            text = f"{type(said.error).__name__}: {text}"
        lines.append(f"| `{case.id}` | {case.what} | {case.does} | {text.replace('|', '/')} |")
    return "\n".join(lines) + "\n"


def render_config_table() -> str:
    """The pipeline-file cases of tests/test_config_cases.py, with what ``facekit check`` says."""
    import importlib.util
    import tempfile

    from click.testing import CliRunner

    from facekit.cli import main as cli

    spec = importlib.util.spec_from_file_location("facekit_config_cases", Path(__file__).with_name("test_config_cases.py"))
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    lines = ["| case | `facekit check FILE` exit status | message |", "|---|---|---|"]
    with tempfile.TemporaryDirectory() as tmp:
        for case_id, text, _ in module.CASES:
            path = module._write_case(Path(tmp), case_id, text)
            result = CliRunner().invoke(cli, ["check", str(path)])
            message = " ".join(result.stderr.split()).replace(tmp + os.sep, "").replace(str(Path(tmp).resolve()) + os.sep, "")
            lines.append(f"| `{case_id}` | {result.exit_code} | {message.replace('|', '/')} |")
    return "\n".join(lines) + "\n"


def main(argv: Optional[list[str]] = None) -> int:
    import argparse
    import tempfile

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from conftest import _faces_root  # the one place that knows where the photos are

    parser = argparse.ArgumentParser(description="Render the bad-input table for the docs.")
    parser.add_argument("--table", type=Path, help="write the Markdown table here (default: stdout)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        corpus = build_corpus(_faces_root(), Path(tmp))
        pipe = Pipeline.load("default")
        reference = pipe.embed_one(corpus["upright"]).vector
        results = {c.id: run_case(pipe, c, corpus[c.id], reference) for c in CASES if c.id in corpus}
        table = (
            "Bad images (`python tests/test_bad_inputs.py --table FILE`; every row is a test case)\n\n"
            + render_table(results, corpus)
            + "\nBad pipeline files (tests/test_config_cases.py)\n\n"
            + render_config_table()
        )
    if args.table:
        from facekit.io import atomic_write_text

        atomic_write_text(args.table, table)
    else:
        print(table, end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Embeddings as a Parquet dataset: one row per face, a table of failures, resumable.

The layout every engine writes (the local ones through :func:`embed_to_parquet`, the Ray
engine of the facekit-ray plugin from its actors), so downstream tools do not care which ran::

    OUT_DIR/facekit.json              which pipeline made the vectors (checked on every rerun)
    OUT_DIR/faces/part-*.parquet      source, face_index, faces_found, box, score, landmarks,
                                      vector, model, pipeline: one row per face
    OUT_DIR/failures/part-*.parquet   source, error_type, error: one row per image without a face

A part file is written atomically (temporary name, then renamed), and all the faces of one
image go into the same part, so an interrupted run leaves whole images or nothing. A rerun
skips every source already in ``faces/`` or ``failures/``.

Only this module needs pyarrow, and only when called: ``import facekit`` does not load it.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Optional, Sequence, Union

import numpy as np

from facekit.components import SearchIndex
from facekit.engine import Engine
from facekit.errors import ConfigError, DependencyError
from facekit.image import expand_image_paths
from facekit.io import atomic_write, atomic_write_text
from facekit.pipeline import Pipeline
from facekit.types import AlignedFace, Embedding

if TYPE_CHECKING:  # pragma: no cover - a gallery is only written to by import_to_gallery (sqlite3 stays unloaded)
    from facekit.collections.gallery import Gallery

FORMAT = "facekit-faces"
FORMAT_VERSION = 1
MANIFEST = "facekit.json"
FACES = "faces"
FAILURES = "failures"
#: images per part file written by the local engines: big enough for few files, small
#: enough that an interruption loses little
PART_IMAGES = 256
#: rows per batch when reading a dataset back (vectors, gallery import, index build)
READ_ROWS = 65_536
#: columns of a file of paths that are tried, in order, when none is named
PATH_COLUMNS = ("path", "source", "file", "filename")


def _pyarrow() -> Any:
    try:
        import pyarrow
        import pyarrow.parquet  # noqa: F401  (the submodule is used as pyarrow.parquet)
    except ImportError as exc:
        raise DependencyError(
            f"writing or reading facekit's Parquet layout needs pyarrow ({exc}); install it with "
            "`pip install 'pyarrow>=17,<21'` (pyarrow 21 and later need numpy 2, facekit pins numpy<2)"
        ) from exc
    return pyarrow


# ---------------------------------------------------------------- the manifest
def manifest_for(pipeline: Pipeline) -> dict[str, Any]:
    embedder = pipeline.embedder
    return {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "pipeline": pipeline.name,
        "pipeline_yaml": pipeline.to_yaml(),
        "embedding_description": pipeline.embedding_description(),
        "model": embedder.model_name,
        "metric": embedder.metric,
        "dim": int(embedder.dim),
    }


def read_manifest(out_dir: Union[str, os.PathLike]) -> dict[str, Any]:
    """The manifest of a dataset written by :func:`open_dataset`; ConfigError if there is none."""
    path = Path(out_dir) / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(
            f"{out_dir}: not a facekit embeddings folder (no {MANIFEST}); make one with "
            f"`facekit embed PATHS... -o {out_dir}`"
        ) from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: unreadable ({exc}); remove the folder and embed again") from None
    if manifest.get("format") != FORMAT or int(manifest.get("version", 0)) > FORMAT_VERSION:
        raise ConfigError(f"{path}: format {manifest.get('format')!r} version {manifest.get('version')!r} "
                          f"is not one this facekit reads ({FORMAT} {FORMAT_VERSION}); upgrade facekit")
    return manifest


def open_dataset(out_dir: Union[str, os.PathLike], pipeline: Pipeline) -> Path:
    """Make ``out_dir`` for ``pipeline``'s embeddings, or check that an existing one holds the same kind.

    A folder of another pipeline's vectors is refused: mixing them would make the vectors
    incomparable. Returns the folder.
    """

    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out}: is a file; an embeddings dataset is a folder (name a new or existing folder)")
    manifest = manifest_for(pipeline)
    if (out / MANIFEST).exists():
        existing = read_manifest(out)
        if existing.get("embedding_description") != manifest["embedding_description"]:
            raise ConfigError(
                f"{out}: holds embeddings of pipeline {existing.get('pipeline')!r} (model {existing.get('model')!r}); "
                f"pipeline {pipeline.name!r} makes other embeddings. Write to another folder, or rerun with the "
                "dataset's own pipeline to resume it"
            )
        return out
    if out.is_dir() and any(out.iterdir()):
        raise ConfigError(f"{out}: a folder that is not empty and not a facekit embeddings folder; "
                          "name a new or empty folder")
    (out / FACES).mkdir(parents=True, exist_ok=True)
    (out / FAILURES).mkdir(exist_ok=True)
    atomic_write_text(out / MANIFEST, json.dumps(manifest, indent=1))
    return out


# ---------------------------------------------------------------- writing
def _faces_schema(dim: int) -> Any:
    pa = _pyarrow()
    return pa.schema([
        ("source", pa.string()),
        ("face_index", pa.int32()),
        ("faces_found", pa.int32()),
        ("box", pa.list_(pa.float32(), 4)),
        ("score", pa.float32()),
        ("landmarks", pa.list_(pa.float32())),  # x0, y0, x1, y1, ... in image pixels; null if none
        ("vector", pa.list_(pa.float32(), dim)),
        ("model", pa.string()),
        ("pipeline", pa.string()),
    ])


def _failures_schema() -> Any:
    pa = _pyarrow()
    return pa.schema([("source", pa.string()), ("error_type", pa.string()), ("error", pa.string())])


def face_row(face: AlignedFace) -> dict[str, Any]:
    """The columns of a face row, less ``source`` and ``vector``: which face of the image, where."""
    landmarks = face.face.landmarks
    return {
        "face_index": face.face_index,
        "faces_found": face.faces_found,
        "box": [float(x) for x in face.face.box],
        "score": float(face.face.score),
        "landmarks": None if landmarks is None else [float(x) for x in landmarks.points.ravel()],
    }


@dataclass
class Part:
    """The faces and failures of some images, written together as one part (see module doc)."""

    pipeline: str
    model: str
    dim: int
    #: face rows: :func:`face_row` plus ``source`` and ``vector``
    faces: list[dict[str, Any]] = field(default_factory=list)
    failures: list[tuple[str, str, str]] = field(default_factory=list)

    @classmethod
    def for_pipeline(cls, pipeline: Pipeline) -> "Part":
        return cls(pipeline.name, pipeline.embedder.model_name, int(pipeline.embedder.dim))

    def add_rows(self, source: str, rows: Sequence[dict[str, Any]], vectors: np.ndarray) -> None:
        """The faces of one image: rows from :func:`face_row` and their vectors."""
        for row, vector in zip(rows, vectors):
            self.faces.append({**row, "source": source, "vector": vector})

    def add_failure(self, source: str, error_type: str, error: str) -> None:
        self.failures.append((source, error_type, error))

    def write(self, out_dir: Union[str, os.PathLike]) -> None:
        """Write the faces part, then the failures part, each atomically (nothing if empty)."""
        pa = _pyarrow()
        name = f"part-{time.time_ns():020d}-{uuid.uuid4().hex[:8]}.parquet"
        if self.faces:
            dim = self.dim or len(self.faces[0]["vector"])
            vectors = np.stack([np.asarray(row["vector"], np.float32) for row in self.faces])
            columns: dict[str, Any] = {key: [row[key] for row in self.faces]
                                       for key in ("source", "face_index", "faces_found", "box", "score", "landmarks")}
            columns["vector"] = pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()), dim)
            columns["model"] = [self.model] * len(self.faces)
            columns["pipeline"] = [self.pipeline] * len(self.faces)
            table = pa.table(columns, schema=_faces_schema(dim))
            atomic_write(Path(out_dir) / FACES / name, lambda tmp: pa.parquet.write_table(table, tmp))
        if self.failures:
            table = pa.table({k: [row[i] for row in self.failures] for i, k in enumerate(("source", "error_type", "error"))},
                             schema=_failures_schema())
            atomic_write(Path(out_dir) / FAILURES / name, lambda tmp: pa.parquet.write_table(table, tmp))


# ---------------------------------------------------------------- reading
def _batches(out_dir: Union[str, os.PathLike], table: str, columns: Optional[Sequence[str]],
             batch_rows: int = READ_ROWS) -> Iterator[Any]:
    """Record batches of one table of the dataset (none while it has no part file)."""
    import pyarrow.dataset as ds  # after _pyarrow() has said what to install

    files = sorted(str(p) for p in (Path(out_dir) / table).glob("part-*.parquet"))  # not the .part-*.tmp files
    if files:
        yield from ds.dataset(files, format="parquet").to_batches(
            columns=list(columns) if columns else None, batch_size=batch_rows)


def done_sources(out_dir: Union[str, os.PathLike]) -> set[str]:
    """Every source with a row in ``faces/`` or ``failures/``: what a rerun skips."""
    _pyarrow()
    done: set[str] = set()
    for table in (FACES, FAILURES):
        for batch in _batches(out_dir, table, ["source"]):
            done.update(batch.column(0).to_pylist())
    return done


def read_batches(out_dir: Union[str, os.PathLike], columns: Optional[Sequence[str]] = None, *,
                 table: str = FACES, batch_rows: int = READ_ROWS) -> Iterator[Any]:
    """The rows of ``faces`` (or ``failures``) as pyarrow record batches of at most ``batch_rows`` rows."""
    _pyarrow()
    read_manifest(out_dir)
    yield from _batches(out_dir, table, columns, batch_rows)


def vectors_of(batch: Any) -> np.ndarray:
    """The ``vector`` column of a record batch as an (N, D) float32 array (no copy per row)."""
    column = batch.column(batch.schema.get_field_index("vector"))
    dim = column.type.list_size
    return column.flatten().to_numpy(zero_copy_only=False).reshape(-1, dim).astype(np.float32, copy=False)


def iter_vectors(out_dir: Union[str, os.PathLike], batch_rows: int = READ_ROWS) -> Iterator[np.ndarray]:
    """The dataset's vectors, ``batch_rows`` at a time, in row order: never all in one list."""
    for batch in read_batches(out_dir, ["vector"], batch_rows=batch_rows):
        if batch.num_rows:
            yield vectors_of(batch)


def count_rows(out_dir: Union[str, os.PathLike], table: str = FACES) -> int:
    _pyarrow()
    return sum(batch.num_rows for batch in _batches(out_dir, table, ["source"]))


# ---------------------------------------------------------------- inputs
def input_paths(paths: Iterable[Union[str, os.PathLike]], column: Optional[str] = None) -> list[str]:
    """Image paths from folders (recursively), image files, text files of paths (one a line,
    ``#`` comments) and the path column of ``.parquet`` / ``.csv`` files."""

    out: list[str] = []
    for raw in paths:
        path = Path(raw)
        suffix = path.suffix.lower()
        if path.is_file() and suffix in (".txt", ".lst"):
            lines = path.read_text(encoding="utf-8").splitlines()
            out.extend(line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#"))
        elif path.is_file() and suffix in (".parquet", ".csv"):
            out.extend(_path_column(path, column))
        else:
            out.extend(expand_image_paths([str(path)]))
    # absolute, so that a rerun from another folder resumes and cluster nodes find the files
    return [os.path.abspath(p) for p in out]


def _path_column(path: Path, column: Optional[str]) -> list[str]:
    pa = _pyarrow()
    if path.suffix.lower() == ".csv":
        import pyarrow.csv

        table = pyarrow.csv.read_csv(path)
    else:
        table = pa.parquet.read_table(path)
    names = table.column_names
    chosen = column or next((c for c in PATH_COLUMNS if c in names), None)
    if chosen is None or chosen not in names:
        raise ConfigError(
            f"{path}: no column {chosen or ' / '.join(PATH_COLUMNS)!r} of image paths (columns: {', '.join(names)}); "
            "name it with --path-column"
        )
    return [str(p) for p in table.column(chosen).to_pylist() if p]


# ---------------------------------------------------------------- the local engines
@dataclass
class ParquetReport:
    """What a run wrote: images embedded now, skipped as already done, faces and failures written."""

    out_dir: Path
    images: int = 0
    skipped: int = 0
    faces: int = 0
    failures: int = 0
    seconds: float = 0.0

    def __str__(self) -> str:
        resumed = f", {self.skipped} already done" if self.skipped else ""
        return (f"{self.faces} face(s) from {self.images} image(s) ({self.failures} without a face or unreadable"
                f"{resumed}) written to {self.out_dir}")


def pending_sources(out_dir: Path, sources: Sequence[str]) -> list[str]:
    """``sources`` not yet written to ``out_dir``, each once, in order."""
    done = done_sources(out_dir)
    seen: set[str] = set()
    todo = []
    for source in sources:
        if source not in done and source not in seen:
            seen.add(source)
            todo.append(source)
    return todo


def embed_to_parquet(pipeline: Pipeline, sources: Sequence[str], out_dir: Union[str, os.PathLike], *,
                     engine: Optional[Engine] = None, part_images: int = PART_IMAGES,
                     progress: bool = False) -> ParquetReport:
    """Embed ``sources`` (image paths) into the Parquet layout at ``out_dir``; resumes a previous run.

    ``engine`` decodes, detects and aligns (default: the pipeline's own, from its ``workers``
    setting); vectors are computed here in the pipeline's batches. An engine with its own
    ``embed_to_parquet`` method (the Ray engine) does the whole job itself.
    """
    started = time.perf_counter()
    out = open_dataset(out_dir, pipeline)
    sources = [str(s) for s in sources]
    if engine is not None and hasattr(engine, "embed_to_parquet"):
        return engine.embed_to_parquet(sources, out)  # type: ignore[no-any-return]
    todo = pending_sources(out, sources)
    report = ParquetReport(out, skipped=len(sources) - len(todo))
    if not todo:
        return report
    engine = engine or pipeline.engine_for(len(todo))
    results = engine.map_faces(todo)
    from tqdm.auto import tqdm

    with tqdm(total=len(todo), desc=f"embedding ({pipeline.name})", unit="img", disable=not progress,
              dynamic_ncols=True) as bar:
        for start in range(0, len(todo), part_images):
            count = min(part_images, len(todo) - start)
            part = Part.for_pipeline(pipeline)
            aligned: list[tuple[str, list[Any]]] = []
            for _ in range(count):
                item, faces, error = next(results)
                if error is not None:
                    part.add_failure(str(item), type(error).__name__, str(error))
                else:
                    aligned.append((str(item), faces))
            add_embedded(pipeline, part, aligned)
            part.write(out)
            report.images += count
            report.faces += len(part.faces)
            report.failures += len(part.failures)
            bar.update(count)
    report.seconds = time.perf_counter() - started
    return report


def add_embedded(pipeline: Pipeline, part: Part, aligned: Sequence[tuple[str, Sequence[AlignedFace]]]) -> None:
    """Embed the chips of ``aligned`` images in the pipeline's batches and add them to ``part``."""
    chips = [face for _, faces in aligned for face in faces]
    embedded = pipeline.embed_chips(chips) if chips else []
    start = 0
    for source, faces in aligned:
        vectors = [e.vector for e in embedded[start : start + len(faces)]]
        part.add_rows(source, [face_row(f) for f in faces], np.asarray(vectors, np.float32))
        start += len(faces)


# ---------------------------------------------------------------- into a gallery
def name_from_folder(source: str) -> str:
    """The person of a photo kept as ``.../NAME/photo.jpg`` (LFW's layout)."""
    return Path(source).parent.name


def import_to_gallery(gallery: "Gallery", out_dir: Union[str, os.PathLike], *, name_column: Optional[str] = None,
                      batch_rows: int = READ_ROWS) -> tuple[int, int, list[tuple[str, str]]]:
    """Enrol a dataset's faces into ``gallery`` (a :class:`~facekit.collections.gallery.Gallery`), the largest face
    of each photo, named by ``name_column`` or by the photo's folder. Reads ``batch_rows`` rows
    at a time. Returns (added, unchanged, failures)."""

    manifest = read_manifest(out_dir)
    columns = ["source", "face_index", "vector"] + ([name_column] if name_column else [])
    if name_column:
        first = next(read_batches(out_dir, batch_rows=1), None)
        if first is not None and name_column not in first.schema.names:
            raise ConfigError(f"{out_dir}: no column {name_column!r} in the faces table "
                              f"(columns: {', '.join(first.schema.names)}); leave out --name-column to name "
                              "people by the folder of each photo")
    added = unchanged = 0
    failures: list[tuple[str, str]] = []
    for batch in read_batches(out_dir, columns, batch_rows=batch_rows):
        vectors = vectors_of(batch)
        sources = batch.column(batch.schema.get_field_index("source")).to_pylist()
        indices = batch.column(batch.schema.get_field_index("face_index")).to_pylist()
        names = (batch.column(batch.schema.get_field_index(name_column)).to_pylist() if name_column
                 else [name_from_folder(s) for s in sources])
        # one face per photo in a gallery: the first of the faces the pipeline kept (the
        # largest for `multi_face: largest` or `all`, the central one for `central`)
        first: dict[str, tuple[int, Any, Any]] = {}
        for source, index, name, vector in zip(sources, indices, names, vectors):
            rank = -1 if index is None else int(index)
            if source not in first or rank < first[source][0]:
                first[source] = (rank, name, vector)
        people: dict[str, list[Embedding]] = {}
        for source, (_, name, vector) in first.items():
            embedding = Embedding(vector, manifest["model"], manifest["metric"], source=source)
            people.setdefault(str(name), []).append(embedding)
        for name, embeddings in people.items():
            report = gallery.add_embeddings(name, embeddings)
            added += len(report.added)
            unchanged += len(report.unchanged)
            failures.extend(report.failures)
    return added, unchanged, failures


def build_index(index: SearchIndex, out_dir: Union[str, os.PathLike], *, batch_rows: int = READ_ROWS) -> SearchIndex:
    """Fill a :class:`~facekit.components.SearchIndex` with a dataset's vectors, read in chunks.

    Indexes with ``build_from_chunks`` (the ``faiss`` index) take the chunks one by one, so
    10 million faces never sit in one Python list; others get one array. Row ids are the
    dataset's row order (the order of :func:`read_batches`)."""
    manifest = read_manifest(out_dir)
    chunks = iter_vectors(out_dir, batch_rows)
    if hasattr(index, "build_from_chunks"):
        index.build_from_chunks(chunks, manifest["metric"], count_rows(out_dir))
    else:
        index.build(np.concatenate(list(chunks)), manifest["metric"])
    return index

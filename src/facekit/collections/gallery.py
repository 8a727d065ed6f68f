"""Galleries of known people: enrol photos, then identify and search.

A :class:`Gallery` is one SQLite file (stdlib :mod:`sqlite3`, WAL journal). Per face it
keeps the person, the source photo (path and SHA-256 of its content, so adding a photo
twice is a no-op), the face box and the embedding; the gallery keeps the pipeline that
made the embeddings and refuses a pipeline whose embeddings would not be comparable.

Every change is one transaction: an ``add`` that is killed leaves the gallery as it was
or complete, never half-written. Readers in other processes see the last committed
state and notice new commits on their next query.

:meth:`Gallery.identify` finds every face in a photo and ranks the known people for
each, open set: a face is "unknown" when no one passes the pipeline's threshold.
:meth:`Gallery.search` lists the gallery's photos nearest to a face. Nearest-neighbour
search goes through a :class:`~facekit.components.SearchIndex` plugin (``exact`` built
in, ``faiss`` from the facekit-faiss plugin).
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import time
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Literal, Optional, Sequence, Union

import numpy as np

from facekit.scoring import similarity
from facekit.errors import ConfigError, FacekitError, ImageError, NoFaceError
from facekit.image import ImageSource, describe_source
from facekit.types import Embedding, Face

if TYPE_CHECKING:  # pragma: no cover
    from facekit.components import SearchIndex
    from facekit.pipeline import Pipeline

#: ``PRAGMA application_id`` of every facekit gallery ("FKGL"): tells our files from other SQLite files
APPLICATION_ID = 0x464B474C
FORMAT_VERSION = 1
#: how a person's several photos score against a face (see :meth:`Gallery.match`)
TemplateRule = Literal["max", "mean", "mean_score"]
TEMPLATE_RULES: tuple[str, ...] = ("max", "mean", "mean_score")
#: chosen on lfw-dev by benchmarks/bench_gallery.py (docs/howto/gallery.rst has the numbers)
DEFAULT_TEMPLATE_RULE: TemplateRule = "max"
#: a face is "unknown" unless its best person is this much nearer than the next one (distance
#: ratio, Lowe's ratio test); 0.8 chosen on lfw-dev by benchmarks/bench_gallery.py. 1.0 turns it off.
DEFAULT_MAX_RATIO = 0.8
#: the parts of a pipeline that decide which vector space its embeddings live in
VECTOR_SPACE_FIELDS = ("aligner", "embedder")

_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE people (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    created REAL NOT NULL
);
CREATE TABLE photos (
    id INTEGER PRIMARY KEY,
    person_id INTEGER NOT NULL REFERENCES people(id) ON DELETE CASCADE,
    sha256 TEXT NOT NULL UNIQUE,
    path TEXT NOT NULL,
    added REAL NOT NULL
);
CREATE INDEX photos_person ON photos(person_id);
CREATE TABLE faces (
    id INTEGER PRIMARY KEY,
    photo_id INTEGER NOT NULL REFERENCES photos(id) ON DELETE CASCADE,
    x0 REAL NOT NULL, y0 REAL NOT NULL, x1 REAL NOT NULL, y1 REAL NOT NULL,
    vector BLOB NOT NULL
);
CREATE INDEX faces_photo ON faces(photo_id);
"""


# --------------------------------------------------------------------------- results
@dataclass(frozen=True)
class Candidate:
    """One known person as a match for a face."""

    person: str
    #: in the embedder's metric: a distance (euclidean, lower = closer) or a cosine similarity
    score: float
    metric: str
    #: passes the pipeline's threshold
    same: bool
    #: calibrated P(same person), if the pipeline has a calibration
    probability: Optional[float]
    #: share of different-person pairs less similar than this one, if calibrated
    impostor_percentile: Optional[float]
    #: the person's gallery photo nearest to the face
    photo: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "person": self.person,
            "score": round(self.score, 6),
            "metric": self.metric,
            "same": self.same,
            "probability": None if self.probability is None else round(self.probability, 6),
            "impostor_percentile": None if self.impostor_percentile is None else round(self.impostor_percentile, 6),
            "photo": self.photo,
        }


def distance_ratio(best: Candidate, second: Optional[Candidate] = None) -> float:
    """The best person's distance over the second's (1 - similarity for cosine); 0 without a second."""
    if second is None:
        return 0.0

    def distance(c: Candidate) -> float:
        return c.score if c.metric == "euclidean" else 1.0 - c.score

    return distance(best) / max(distance(second), 1e-12)


@dataclass(frozen=True)
class Identification:
    """A face found in a photo and the known people it may be, best first.

    The face is someone (``person``) when the best candidate passes the pipeline's
    threshold and is clearly nearer than the next person: ``ratio``, the best distance
    over the second-best, at most ``max_ratio``. Otherwise it is "unknown" (None).
    """

    face: Face
    candidates: tuple[Candidate, ...]
    source: Optional[str] = None
    ratio: float = 0.0
    max_ratio: float = DEFAULT_MAX_RATIO

    @property
    def person(self) -> Optional[str]:
        """The best candidate if it passes the threshold and the ratio test; None means "unknown"."""
        if self.candidates and self.candidates[0].same and self.ratio <= self.max_ratio:
            return self.candidates[0].person
        return None

    @property
    def best(self) -> Optional[Candidate]:
        return self.candidates[0] if self.candidates else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "box": [round(float(v), 1) for v in self.face.box],
            "person": self.person or "unknown",
            "ratio": round(self.ratio, 4),
            "candidates": [c.to_dict() for c in self.candidates],
        }

    def __str__(self) -> str:
        box = ",".join(f"{v:.0f}" for v in self.face.box)
        best = self.best
        if best is None:
            return f"[{box}] unknown (empty gallery)"
        closest = f"closest {best.person}, {best.metric} {best.score:.3f}, ratio {self.ratio:.2f}"
        if best.probability is not None:
            closest += f", P(same) {best.probability:.2f}"
        return f"[{box}] {self.person or 'unknown'} ({closest})"


@dataclass(frozen=True)
class SearchHit:
    """A gallery photo found by :meth:`Gallery.search`."""

    person: str
    photo: str
    box: tuple[float, float, float, float]
    score: float
    metric: str
    same: bool
    probability: Optional[float]
    impostor_percentile: Optional[float]

    def to_dict(self) -> dict[str, Any]:
        return {
            "person": self.person,
            "photo": self.photo,
            "box": [round(float(v), 1) for v in self.box],
            "score": round(self.score, 6),
            "metric": self.metric,
            "same": self.same,
            "probability": None if self.probability is None else round(self.probability, 6),
            "impostor_percentile": None if self.impostor_percentile is None else round(self.impostor_percentile, 6),
        }


@dataclass(frozen=True)
class PersonInfo:
    name: str
    photos: int
    faces: int


@dataclass
class AddReport:
    """What :meth:`Gallery.add` did: photos added, photos already there, photos skipped."""

    person: str
    added: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)


# --------------------------------------------------------------------------- helpers
def content_hash(image: Union[ImageSource, Embedding]) -> str:
    """SHA-256 of a photo's bytes (a file path, bytes) or of an array's pixels."""
    if isinstance(image, Embedding):
        if image.source and Path(image.source).is_file():
            return content_hash(image.source)
        return hashlib.sha256(np.ascontiguousarray(image.vector, dtype=np.float32).tobytes()).hexdigest()
    if isinstance(image, (str, os.PathLike)):
        try:
            digest = hashlib.sha256()
            with open(image, "rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
            return digest.hexdigest()
        except OSError as exc:
            raise ImageError(f"{image}: cannot read ({exc.strerror or exc}); check the path") from None
    if isinstance(image, (bytes, bytearray, memoryview)):
        return hashlib.sha256(bytes(image)).hexdigest()
    if isinstance(image, np.ndarray):
        digest = hashlib.sha256(repr((image.shape, str(image.dtype))).encode())
        digest.update(np.ascontiguousarray(image).tobytes())
        return digest.hexdigest()
    raise ImageError(f"cannot hash a {type(image).__name__}; pass a file path, bytes or an RGB array")


def vector_space(pipeline: "Pipeline") -> str:
    """The part of a pipeline's embedding description that decides the vector space."""
    description = json.loads(pipeline.embedding_description())
    return json.dumps({k: description.get(k) for k in VECTOR_SPACE_FIELDS}, sort_keys=True)


def person_scores(query: np.ndarray, vectors: np.ndarray, metric: str, rule: str) -> float:
    """How well one person's gallery ``vectors`` (M, D) match ``query`` (D,) under ``rule``.

    ``max``: the best single photo; ``mean``: the photo vectors' mean (each scaled to
    unit length first for cosine models); ``mean_score``: the mean of the photo scores.
    The result is in the metric's own units, so thresholds and calibrations apply.
    """
    query = np.asarray(query, dtype=np.float64)
    vectors = np.asarray(vectors, dtype=np.float64)
    if rule == "mean":
        if metric == "cosine":
            vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        return similarity.score(query, vectors.mean(axis=0), metric)
    scores = similarity.pairwise_scores(np.broadcast_to(query, vectors.shape), vectors, metric)
    if rule == "mean_score":
        return float(scores.mean())
    if rule == "max":
        return float(similarity.similarity_of(scores, metric).max() * (1 if metric == "cosine" else -1))
    raise ConfigError(f"unknown template rule {rule!r}; choose one of {', '.join(TEMPLATE_RULES)}")


def _check_name(name: str) -> str:
    cleaned = str(name).strip()
    if not cleaned:
        raise ConfigError("a person's name must not be empty")
    return cleaned


# --------------------------------------------------------------------------- the gallery
class Gallery:
    """Known people and their photos in one SQLite file. Open with :meth:`open`, make with :meth:`create`.

    ``pipeline`` (a :class:`~facekit.pipeline.Pipeline`, a bundled name or a YAML path)
    defaults to the one the gallery was made with; another one is accepted only if its
    aligner and embedder are the gallery's. ``index`` names a registered search index
    (default: the gallery's, ``exact`` unless chosen at creation); ``template`` is the
    rule that scores a person with several photos (``max``, ``mean``, ``mean_score``);
    ``max_ratio`` is the open-set ratio test of :class:`Identification` (1.0: off).
    """

    def __init__(
        self,
        path: Union[str, os.PathLike],
        pipeline: Union["Pipeline", str, None] = None,
        *,
        index: Optional[str] = None,
        index_params: Optional[dict[str, Any]] = None,
        template: Optional[str] = None,
        max_ratio: float = DEFAULT_MAX_RATIO,
    ) -> None:
        self.path = Path(path)
        self.max_ratio = float(max_ratio)
        self._conn = _connect_existing(self.path)
        self._meta = self._read_meta()
        self._pipeline: Optional["Pipeline"] = None
        self._given_pipeline = pipeline
        self.metric = self._meta["metric"]
        self.dim = int(self._meta["dim"])
        self.template = template or self._meta.get("template", DEFAULT_TEMPLATE_RULE)
        if self.template not in TEMPLATE_RULES:
            raise ConfigError(f"unknown template rule {self.template!r}; choose one of {', '.join(TEMPLATE_RULES)}")
        self._index_name = index or self._meta.get("index", "exact")
        self._index_params = index_params if index is not None else json.loads(self._meta.get("index_params", "{}"))
        self._loaded_version: Optional[tuple[int, int]] = None
        self._index: Optional["SearchIndex"] = None
        self._changes = 0
        if pipeline is not None:
            self.pipeline  # check compatibility now, not on the first photo  # noqa: B018

    # ------------------------------------------------------------- open / create
    @classmethod
    def open(cls, path: Union[str, os.PathLike], pipeline: Union["Pipeline", str, None] = None, **kwargs: Any) -> "Gallery":
        """Open an existing gallery file."""
        return cls(path, pipeline, **kwargs)

    @classmethod
    def create(
        cls,
        path: Union[str, os.PathLike],
        pipeline: Union["Pipeline", str, None] = None,
        *,
        index: str = "exact",
        index_params: Optional[dict[str, Any]] = None,
        template: str = DEFAULT_TEMPLATE_RULE,
    ) -> "Gallery":
        """Make a new, empty gallery for ``pipeline`` (default: the bundled default pipeline)."""
        from facekit.pipeline import Pipeline
        from facekit.plugins import get_registry

        path = Path(path)
        if path.exists():
            raise ConfigError(f"{path}: already exists; open it, or choose another file name to make a new gallery")
        if template not in TEMPLATE_RULES:
            raise ConfigError(f"unknown template rule {template!r}; choose one of {', '.join(TEMPLATE_RULES)}")
        pipe = Pipeline.load(pipeline)
        from facekit.config import validate_model

        # an unknown index or a bad parameter is an error now, not at the first query
        index_cls = get_registry().get("index", index)
        try:
            validate_model(index_cls.Params, index_params or {}, prefix=("index_params",))
        except ConfigError as exc:
            problems = str(exc).split("\n", 1)[-1].strip()  # the lines that name each bad key
            raise ConfigError(f"{path}: bad parameters for the search index {index!r}: {problems}") from None
        embedder = pipe.embedder
        meta = {
            "format": "facekit-gallery",
            "version": str(FORMAT_VERSION),
            "pipeline_yaml": pipe.to_yaml(),
            "pipeline_name": pipe.name,
            "embedding_description": pipe.embedding_description(),
            "vector_space": vector_space(pipe),
            "model": embedder.model_name,
            "metric": embedder.metric,
            "dim": str(embedder.dim),  # 0 when the embedder does not declare it: set by the first face
            "template": template,
            "index": index,
            "index_params": json.dumps(index_params or {}),
            "created": str(time.time()),
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".creating")
        partial.unlink(missing_ok=True)
        conn = sqlite3.connect(partial, isolation_level=None)
        try:
            conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.executescript("BEGIN;" + _SCHEMA)
            conn.executemany("INSERT INTO meta(key, value) VALUES (?, ?)", meta.items())
            conn.execute("COMMIT")
        finally:
            conn.close()
        os.replace(partial, path)  # a gallery file exists complete or not at all
        return cls(path, pipe)

    def _read_meta(self) -> dict[str, str]:
        with self._db_errors():
            app_id = self._conn.execute("PRAGMA application_id").fetchone()[0]
            tables = {row[0] for row in self._conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if app_id != APPLICATION_ID or not {"meta", "people", "photos", "faces"} <= tables:
                raise ConfigError(
                    f"{self.path}: an SQLite database, but not a facekit gallery (tables: "
                    f"{', '.join(sorted(tables)) or 'none'}); make one with `facekit gallery create {self.path.name}`"
                )
            meta = dict(self._conn.execute("SELECT key, value FROM meta").fetchall())
        if meta.get("format") != "facekit-gallery" or int(meta.get("version", "0")) > FORMAT_VERSION:
            raise ConfigError(
                f"{self.path}: gallery format {meta.get('format')!r} version {meta.get('version')!r} is not one this "
                f"facekit reads (version {FORMAT_VERSION}); upgrade facekit"
            )
        return meta

    @contextmanager
    def _db_errors(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise self._damaged(exc) from None
            raise ConfigError(
                f"{self.path}: another process is writing this gallery and did not finish within the "
                f"wait ({exc}); try again when it is done"
            ) from None
        except sqlite3.DatabaseError as exc:
            raise self._damaged(exc) from None

    def _damaged(self, exc: Exception) -> ConfigError:
        return ConfigError(
            f"{self.path}: the gallery file is damaged or not a gallery ({exc}); restore it from a copy "
            "or make a new one with `facekit gallery create`"
        )

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> "Gallery":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Gallery({str(self.path)!r}, model={self._meta['model']!r}, people={len(self.people())})"

    # ------------------------------------------------------------- pipeline
    @property
    def pipeline(self) -> "Pipeline":
        """The pipeline that embeds faces for this gallery, every face of a photo (``multi_face: all``)."""
        if self._pipeline is None:
            from facekit.pipeline import Pipeline

            given = self._given_pipeline
            if given is None:
                pipe = Pipeline.from_yaml(self._meta["pipeline_yaml"])
            else:
                pipe = Pipeline.load(given)
                if vector_space(pipe) != self._meta["vector_space"]:
                    raise ConfigError(
                        f"{self.path}: this gallery holds embeddings of model {self._meta['model']!r} "
                        f"(pipeline {self._meta['pipeline_name']!r}); pipeline {pipe.name!r} makes "
                        f"{pipe.embedder.model_name!r} embeddings with other settings, which cannot be "
                        "compared with them. Use the gallery's own pipeline (leave out -p) or make a new gallery"
                    )
            if pipe.config.multi_face != "all":
                pipe = Pipeline.from_dict({**pipe.to_dict(), "multi_face": "all"}, where=pipe.where)
            self._pipeline = pipe
        return self._pipeline

    def _check_embedding(self, embedding: Embedding, where: str) -> None:
        if embedding.model != self._meta["model"] or (self.dim and embedding.vector.shape != (self.dim,)):
            raise ConfigError(
                f"{where}: a {embedding.vector.shape[0]}-D embedding of model {embedding.model!r}; this gallery "
                f"holds {self.dim}-D embeddings of model {self._meta['model']!r}"
            )

    # ------------------------------------------------------------- writing
    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._db_errors():
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")
        self._changes += 1

    def faces_of(self, image: ImageSource) -> list[Embedding]:
        """Embeddings of every face in ``image`` (largest first); [] if there is none."""
        try:
            return list(self.pipeline.embed(image))
        except NoFaceError:
            return []

    def embed_photos(
        self, images: Sequence[ImageSource], *, progress: Optional[bool] = None, workers: Optional[int] = None
    ) -> tuple[list[list[Embedding]], list[tuple[str, str]]]:
        """Every face of each image (largest first), batched, and (image, reason) for the skipped ones.

        Files go through :meth:`Pipeline.embed <facekit.pipeline.Pipeline.embed>` in one
        call (its worker processes with ``workers``); other inputs (arrays, bytes) one by one.
        """
        files = list(dict.fromkeys(describe_source(i) for i in images if isinstance(i, (str, os.PathLike))))
        by_source: dict[str, list[Embedding]] = {}
        batch = self.pipeline.embed(files, on_error="skip", progress=progress, workers=workers) if files else []
        for embedding in batch:
            by_source.setdefault(str(embedding.source), []).append(embedding)
        failed = dict(getattr(batch, "failures", []))
        faces: list[list[Embedding]] = []
        failures: list[tuple[str, str]] = []
        for item in images:
            where = describe_source(item)
            if isinstance(item, (str, os.PathLike)):
                found = by_source.get(where, [])
                if where in failed:
                    failures.append((where, failed[where]))
            else:
                try:
                    found = self.faces_of(item)
                except FacekitError as exc:
                    failures.append((where, str(exc)))
                    found = []
            faces.append(found)
        return faces, failures

    def add(
        self,
        name: str,
        images: Union[ImageSource, Sequence[ImageSource]],
        *,
        progress: Optional[bool] = None,
        workers: Optional[int] = None,
    ) -> AddReport:
        """Enrol photos of ``name`` (made a new person if needed), the largest face of each.

        Photos already in the gallery are left as they are; unreadable photos and photos
        without a face are skipped and listed in ``report.failures``. Everything is
        written in one transaction at the end.
        """
        from facekit.pipeline import _is_single

        name = _check_name(name)
        items = [images] if _is_single(images) else list(images)  # type: ignore[arg-type]
        report = AddReport(name)
        new_items, digests = [], []
        for item in items:
            where = describe_source(item)
            try:
                digest = content_hash(item)
            except FacekitError as exc:
                report.failures.append((where, str(exc)))
                continue
            if self._is_new(digest, where, report) and digest not in digests:
                new_items.append(item)
                digests.append(digest)
        faces, failures = self.embed_photos(new_items, progress=progress, workers=workers)
        report.failures.extend(failures)
        failed = {where for where, _ in failures}
        chosen, kept = [], []
        for item, found, digest in zip(new_items, faces, digests):
            if found:
                chosen.append(found[0])
                kept.append(digest)
            elif describe_source(item) not in failed:
                report.failures.append((describe_source(item), "no face found"))
        self._insert(name, chosen, kept, report)
        return report

    def add_embeddings(self, name: str, embeddings: Sequence[Embedding]) -> AddReport:
        """Enrol faces already embedded (by this gallery's pipeline), one per photo."""
        name = _check_name(name)
        report = AddReport(name)
        chosen, digests = [], []
        for embedding in embeddings:
            self._check_embedding(embedding, embedding.source or "embedding")
            digest = content_hash(embedding)
            if not self._is_new(digest, embedding.source or digest[:12], report):
                continue
            chosen.append(embedding)
            digests.append(digest)
        self._insert(name, chosen, digests, report)
        return report

    def _insert(self, name: str, embeddings: list[Embedding], digests: list[str], report: AddReport) -> None:
        for embedding in embeddings:
            self._check_embedding(embedding, embedding.source or "embedding")
        with self._write() as conn:
            now = time.time()
            if embeddings and not self.dim:
                self.dim = int(embeddings[0].vector.shape[0])
                conn.execute("UPDATE meta SET value = ? WHERE key = 'dim'", (str(self.dim),))
            conn.execute("INSERT OR IGNORE INTO people(name, created) VALUES (?, ?)", (name, now))
            person_id = conn.execute("SELECT id FROM people WHERE name = ?", (name,)).fetchone()[0]
            for embedding, digest in zip(embeddings, digests):
                source = embedding.source or f"<{type(embedding).__name__} {digest[:12]}>"
                path = str(Path(source).resolve()) if Path(source).is_file() else source
                cursor = conn.execute(
                    "INSERT OR IGNORE INTO photos(person_id, sha256, path, added) VALUES (?, ?, ?, ?)",
                    (person_id, digest, path, now),
                )
                if cursor.rowcount == 0:  # another process enrolled it meanwhile
                    report.unchanged.append(source)
                    continue
                face = embedding.face.face if embedding.face is not None else None
                box = face.box if face is not None else (0.0, 0.0, 0.0, 0.0)
                conn.execute(
                    "INSERT INTO faces(photo_id, x0, y0, x1, y1, vector) VALUES (?, ?, ?, ?, ?, ?)",
                    (cursor.lastrowid, *map(float, box), np.asarray(embedding.vector, dtype=np.float32).tobytes()),
                )
                report.added.append(source)
            if not report.added and not conn.execute("SELECT 1 FROM photos WHERE person_id = ?", (person_id,)).fetchone():
                conn.execute("DELETE FROM people WHERE id = ?", (person_id,))  # no photo, no person
            if report.added:
                _next_generation(conn)

    def _is_new(self, digest: str, where: str, report: AddReport) -> bool:
        """True if no photo with this content is in the gallery; else note it in ``report``."""
        with self._db_errors():
            row = self._conn.execute(
                "SELECT people.name FROM photos JOIN people ON people.id = photos.person_id WHERE sha256 = ?", (digest,)
            ).fetchone()
        if row is None:
            return True
        if row[0] == report.person:
            report.unchanged.append(where)
        else:
            report.failures.append((where, f"already in the gallery as a photo of {row[0]!r}"))
        return False

    def _person_id(self, name: str) -> int:
        row = self._conn.execute("SELECT id FROM people WHERE name = ?", (name,)).fetchone()
        if row is None:
            import difflib

            names = [r[0] for r in self._conn.execute("SELECT name FROM people ORDER BY name")]
            close = difflib.get_close_matches(name, names, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigError(f"{self.path}: no person named {name!r}{hint} (`facekit gallery list` shows who is in it)")
        return int(row[0])

    def remove(self, name: str) -> int:
        """Forget a person and their photos; returns the number of photos removed."""
        with self._write() as conn:
            person_id = self._person_id(name)
            count = conn.execute("SELECT COUNT(*) FROM photos WHERE person_id = ?", (person_id,)).fetchone()[0]
            conn.execute("DELETE FROM faces WHERE photo_id IN (SELECT id FROM photos WHERE person_id = ?)", (person_id,))
            conn.execute("DELETE FROM photos WHERE person_id = ?", (person_id,))
            conn.execute("DELETE FROM people WHERE id = ?", (person_id,))
            _next_generation(conn)
        return int(count)

    def rename(self, old: str, new: str) -> None:
        """Give a person another name (to join two people, use :meth:`merge`)."""
        new = _check_name(new)
        with self._write() as conn:
            person_id = self._person_id(old)
            if conn.execute("SELECT 1 FROM people WHERE name = ?", (new,)).fetchone():
                raise ConfigError(f"{self.path}: {new!r} is already in the gallery; merge {old!r} into it instead")
            conn.execute("UPDATE people SET name = ? WHERE id = ?", (new, person_id))

    def merge(self, source: str, into: str) -> int:
        """Move every photo of ``source`` to ``into`` and forget ``source``; returns photos moved."""
        if source == into:
            raise ConfigError(f"cannot merge {source!r} into itself")
        with self._write() as conn:
            source_id, target_id = self._person_id(source), self._person_id(into)
            moved = conn.execute("UPDATE photos SET person_id = ? WHERE person_id = ?", (target_id, source_id)).rowcount
            conn.execute("DELETE FROM people WHERE id = ?", (source_id,))
        return int(moved)

    # ------------------------------------------------------------- reading
    def people(self) -> list[PersonInfo]:
        """Everyone in the gallery with their photo and face counts, by name."""
        with self._db_errors():
            rows = self._conn.execute(
                "SELECT people.name, COUNT(DISTINCT photos.id), COUNT(faces.id) FROM people "
                "LEFT JOIN photos ON photos.person_id = people.id LEFT JOIN faces ON faces.photo_id = photos.id "
                "GROUP BY people.id ORDER BY people.name"
            ).fetchall()
        return [PersonInfo(name, int(photos), int(faces)) for name, photos, faces in rows]

    def __contains__(self, name: object) -> bool:
        return any(p.name == name for p in self.people())

    def __len__(self) -> int:
        """The number of faces stored."""
        with self._db_errors():
            return int(self._conn.execute("SELECT COUNT(*) FROM faces").fetchone()[0])

    def _refresh(self) -> None:
        """(Re)load vectors and build the index if anyone committed since the last load."""
        with self._db_errors():
            version = (int(self._conn.execute("PRAGMA data_version").fetchone()[0]), self._changes)
            if self._index is not None and version == self._loaded_version:
                return
            self._conn.execute("BEGIN")  # one snapshot for the generation and the rows
            try:
                row = self._conn.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()
                generation = int(row[0]) if row else 0
                rows = self._conn.execute(
                    "SELECT faces.vector, faces.x0, faces.y0, faces.x1, faces.y1, photos.path, people.name "
                    "FROM faces JOIN photos ON photos.id = faces.photo_id JOIN people ON people.id = photos.person_id "
                    "ORDER BY faces.id"
                ).fetchall()
            finally:
                self._conn.execute("COMMIT")

        dim = self.dim or (len(rows[0][0]) // 4 if rows else 0)
        self._vectors = np.frombuffer(b"".join(r[0] for r in rows), dtype=np.float32).reshape(len(rows), dim)
        self._boxes = [tuple(r[1:5]) for r in rows]
        self._photos = [r[5] for r in rows]
        names = [r[6] for r in rows]
        self._names = sorted(set(names))
        lookup = {n: i for i, n in enumerate(self._names)}
        self._person_of = np.array([lookup[n] for n in names], dtype=np.int64)
        self._index = self._built_index(generation)
        self._loaded_version = version

    def index_file(self, generation: int) -> Path:
        """Where a persistent index of this gallery's faces at ``generation`` is kept."""
        # the creation time tells this gallery from an earlier file of the same name
        key = json.dumps([self._index_name, self._index_params, self.metric, self._meta.get("created")], sort_keys=True)
        digest = hashlib.sha256(key.encode()).hexdigest()[:10]
        return self.path.with_name(f"{self.path.name}.{self._index_name}-{digest}-g{generation}.index")

    def _built_index(self, generation: int) -> "SearchIndex":
        """The index over ``self._vectors``: read from its file when one matches, else built (and saved)."""
        from facekit.plugins import get_registry

        index: SearchIndex = get_registry().get("index", self._index_name)(self._index_params)  # type: ignore[assignment]
        if not index.persistent or not len(self._vectors):
            index.build(self._vectors, self.metric)
            return index
        target = self.index_file(generation)
        if target.is_file():
            try:
                index.load(str(target), self.metric)
                if len(index) == len(self._vectors):
                    return index
            except Exception:  # noqa: BLE001 - a damaged cache file is rebuilt, never trusted
                pass
        index.build(self._vectors, self.metric)
        partial = target.with_name(f"{target.name}.{os.getpid()}.tmp")
        try:
            index.save(str(partial))
            os.replace(partial, target)
            for stale in self.path.parent.glob(f"{self.path.name}.{self._index_name}-*.index"):
                if stale != target:
                    stale.unlink(missing_ok=True)
        except OSError:  # a read-only folder: the index works, it is just not kept
            partial.unlink(missing_ok=True)
        return index

    def _scored(self, score: float) -> tuple[bool, Optional[float], Optional[float]]:
        pipeline = self.pipeline
        calibration = pipeline.calibration
        same = similarity.is_same(score, self.metric, pipeline.threshold)
        if calibration is None:
            return same, None, None
        return same, calibration.probability(score), calibration.impostor_percentile(score)

    def match(self, vectors: np.ndarray, k: int = 5, *, rule: Optional[str] = None) -> list[list[Candidate]]:
        """Rank the known people for each of ``vectors`` (Q, D): up to ``k`` candidates each, best first.

        The index finds the nearest faces; each person among them is then scored over all
        of their photos with the template ``rule`` (default: the gallery's).
        """
        rule = rule or self.template
        vectors = np.atleast_2d(np.asarray(vectors, dtype=np.float32))
        self._refresh()
        if not len(self._vectors):
            return [[] for _ in vectors]
        if vectors.shape[1] != self._vectors.shape[1]:
            raise ConfigError(f"{self.path}: queries are {vectors.shape[1]}-D, the gallery's faces {self._vectors.shape[1]}-D")
        assert self._index is not None
        # widen the search until every query sees k people (people with many photos fill the nearest faces)
        wanted = min(k, len(self._names))
        reach = min(len(self._vectors), max(8 * k, 32))
        while True:
            face_scores, face_ids = self._index.search(vectors, reach)
            if reach == len(self._vectors) or all(
                len(set(self._person_of[row[row >= 0]].tolist())) >= wanted for row in face_ids
            ):
                break
            reach = min(len(self._vectors), reach * 4)
        sign = 1.0 if similarity.higher_is_more_similar(self.metric) else -1.0
        out = []
        for query, scores, ids in zip(vectors, face_scores, face_ids):
            nearest_photo: dict[int, tuple[float, int]] = {}
            for score, face_id in zip(scores, ids):
                if face_id < 0:
                    continue
                person = int(self._person_of[face_id])
                if person not in nearest_photo:
                    nearest_photo[person] = (float(score), int(face_id))
            ranked = []
            for person, (best_score, face_id) in nearest_photo.items():
                if rule != "max":
                    best_score = person_scores(query, self._vectors[self._person_of == person], self.metric, rule)
                ranked.append((sign * best_score, person, best_score, face_id))
            ranked.sort(key=lambda r: -r[0])
            out.append([
                Candidate(self._names[person], score, self.metric, *self._scored(score), photo=self._photos[face_id])
                for _, person, score, face_id in ranked[:k]
            ])
        return out

    def decide(self, candidates: Sequence[Candidate]) -> Optional[str]:
        """The person that :meth:`match`'s ``candidates`` for one face name, or None ("unknown").

        The same open-set rule as :meth:`identify`: the best candidate passes the threshold
        and the ratio test (pass at least two candidates, ``k >= 2``, for the ratio).
        """
        if not candidates:
            return None
        return Identification(Face((0.0, 0.0, 0.0, 0.0)), tuple(candidates), None,
                              distance_ratio(*candidates[:2]), self.max_ratio).person

    def identify(self, image: Union[ImageSource, Sequence[Embedding]], k: int = 5) -> list[Identification]:
        """Every face in ``image`` (a path, bytes or an RGB array, e.g. a video frame) with its candidates.

        Faces come largest first; a face whose best candidate does not pass the
        pipeline's threshold, or is not clearly nearer than the next person (the ratio
        test, see :class:`Identification`), has ``person`` None ("unknown"). A photo without a face
        gives an empty list. Faces already embedded may be passed as a list of
        :class:`~facekit.types.Embedding` instead.
        """
        if isinstance(image, (list, tuple)):
            faces = list(image)
            for embedding in faces:
                self._check_embedding(embedding, embedding.source or "embedding")
            source = None
        else:
            faces = self.faces_of(image)
            source = describe_source(image)
        return self._identified(faces, source, k)

    def identify_many(
        self, images: Sequence[ImageSource], k: int = 5, *, progress: Optional[bool] = None,
        workers: Optional[int] = None,
    ) -> tuple[list[tuple[str, list[Identification]]], list[tuple[str, str]]]:
        """:meth:`identify` for many photos, embedded in batches (and worker processes, see
        :meth:`embed_photos`): ``(source, faces)`` per readable photo in input order, and
        ``(source, reason)`` for the photos skipped (unreadable, or no face found)."""
        faces, failures = self.embed_photos(list(images), progress=progress, workers=workers)
        failed = {where for where, _ in failures}
        every = [f for found in faces for f in found]
        ranked = iter(self._identified(every, None, k))
        results = []
        for item, found in zip(images, faces):
            where = describe_source(item)
            if where not in failed:
                results.append((where, [replace(next(ranked), source=where) for _ in found]))
        return results, failures

    def _identified(self, faces: Sequence[Embedding], source: Optional[str], k: int) -> list[Identification]:
        if not faces:
            return []
        ranked = self.match(np.stack([f.vector for f in faces]), max(k, 2))
        return [
            Identification(_face_of(embedding), tuple(candidates[:k]), source,
                           distance_ratio(*candidates[:2]) if candidates else 0.0, self.max_ratio)
            for embedding, candidates in zip(faces, ranked)
        ]

    def search(self, image: Union[ImageSource, Embedding], k: int = 10) -> list[SearchHit]:
        """The ``k`` gallery photos nearest to the largest face in ``image``, best first."""
        if isinstance(image, Embedding):
            self._check_embedding(image, image.source or "embedding")
            query = image
        else:
            faces = self.faces_of(image)
            if not faces:
                raise NoFaceError(f"{describe_source(image)}: no face found to search with")
            query = faces[0]
        self._refresh()
        if not len(self._vectors):
            return []
        assert self._index is not None
        scores, ids = self._index.search(query.vector[None], k)
        hits = []
        for score, face_id in zip(scores[0], ids[0]):
            if face_id < 0:
                continue
            same, probability, impostor = self._scored(float(score))
            hits.append(SearchHit(
                self._names[self._person_of[face_id]], self._photos[face_id], self._boxes[face_id],
                float(score), self.metric, same, probability, impostor,
            ))
        return hits


def _next_generation(conn: sqlite3.Connection) -> None:
    """Count a change of the stored faces (persistent indexes are keyed by it)."""
    conn.execute(
        "INSERT INTO meta(key, value) VALUES ('generation', '1') "
        "ON CONFLICT(key) DO UPDATE SET value = CAST(value AS INTEGER) + 1"
    )


def _face_of(embedding: Embedding) -> Face:
    if embedding.face is not None:
        return embedding.face.face
    return Face((0.0, 0.0, 0.0, 0.0), score=0.0)


def _connect_existing(path: Path) -> sqlite3.Connection:
    """Open ``path`` read-write without ever creating it; a clear error for what is not SQLite."""
    if not path.is_file():
        raise ConfigError(f"{path}: no gallery there; make one with `facekit gallery create {path}`")
    with open(path, "rb") as handle:
        header = handle.read(16)
    if header != b"SQLite format 3\x00":
        raise ConfigError(
            f"{path}: not a facekit gallery (not an SQLite database: it starts with {header[:8]!r}); "
            "check the file name, or make a gallery with `facekit gallery create`"
        )
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=rw", uri=True, isolation_level=None, timeout=30.0)
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("PRAGMA busy_timeout = 30000")
    except sqlite3.DatabaseError as exc:
        raise ConfigError(f"{path}: cannot open the gallery ({exc}); check the file and its permissions") from None
    return conn

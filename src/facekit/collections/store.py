"""A gallery's SQLite file: the schema, its transactions and locking, and the index cache beside it.

One file (stdlib :mod:`sqlite3`, WAL journal) per gallery. Per face it keeps the person,
the source photo (path and SHA-256 of its content, :func:`content_hash`, so adding a
photo twice is a no-op), the face box and the embedding; ``meta`` keeps the pipeline
that made them. Every change is one transaction (:meth:`GalleryStore.write`): a writer
that is killed leaves the file as it was or complete. Each change of the stored faces
counts a *generation*, which names the persistent search index kept beside the file
(:meth:`GalleryStore.index_file`).

:class:`~facekit.collections.gallery.Gallery` is the facade users call; this module knows
nothing of pipelines or scores.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import sqlite3
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence, Union

import numpy as np

from facekit.components import SearchIndex
from facekit.errors import ConfigError, ImageError
from facekit.image import ImageSource
from facekit.types import Embedding

#: ``PRAGMA application_id`` of every facekit gallery ("FKGL"): tells our files from other SQLite files
APPLICATION_ID = 0x464B474C
FORMAT_VERSION = 1

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

#: one stored face as :meth:`GalleryStore.snapshot` reads it: vector bytes, x0, y0, x1, y1, photo path, person
FaceRow = tuple[bytes, float, float, float, float, str, str]


@dataclass(frozen=True)
class PersonInfo:
    name: str
    photos: int
    faces: int


@dataclass
class AddReport:
    """What :meth:`Gallery.add <facekit.collections.gallery.Gallery.add>` did: photos added, photos
    already there, photos skipped."""

    person: str
    added: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)


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


def check_name(name: str) -> str:
    """A person's name, stripped; an error if nothing is left."""
    cleaned = str(name).strip()
    if not cleaned:
        raise ConfigError("a person's name must not be empty")
    return cleaned


def create_file(path: Path, meta: dict[str, str]) -> None:
    """Write a new, empty gallery file with ``meta``: complete or not at all."""
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
    os.replace(partial, path)


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


def _next_generation(conn: sqlite3.Connection) -> None:
    """Count a change of the stored faces (persistent indexes are keyed by it)."""
    conn.execute(
        "INSERT INTO meta(key, value) VALUES ('generation', '1') "
        "ON CONFLICT(key) DO UPDATE SET value = CAST(value AS INTEGER) + 1"
    )


class GalleryStore:
    """An open gallery file: its ``meta``, people, photos and faces."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._conn = _connect_existing(path)
        #: commits made through this connection (SQLite's data_version counts only other connections')
        self.changes = 0
        self.meta = self._read_meta()

    def _read_meta(self) -> dict[str, str]:
        with self.errors():
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

    # ------------------------------------------------------------- transactions and locking
    @contextmanager
    def errors(self) -> Iterator[None]:
        """SQLite's errors as :class:`~facekit.errors.ConfigError`: busy (another writer) or damaged."""
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

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (other writers wait up to 30 s): all of it is committed, or none."""
        with self.errors():
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")
        self.changes += 1

    def close(self) -> None:
        self._conn.close()

    # ------------------------------------------------------------- writing
    def insert(self, name: str, embeddings: Sequence[Embedding], digests: Sequence[str], report: AddReport,
               dim: int) -> int:
        """Store one face per photo for ``name`` (made a person if new) in one transaction, noting
        each in ``report``. ``dim`` is the gallery's; 0 sets it from the first face. Returns the dim."""
        with self.write() as conn:
            now = time.time()
            if embeddings and not dim:
                dim = int(embeddings[0].vector.shape[0])
                conn.execute("UPDATE meta SET value = ? WHERE key = 'dim'", (str(dim),))
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
        return dim

    def owner_of(self, digest: str) -> Optional[str]:
        """The person a photo with this content belongs to, or None if it is not stored."""
        with self.errors():
            row = self._conn.execute(
                "SELECT people.name FROM photos JOIN people ON people.id = photos.person_id WHERE sha256 = ?", (digest,)
            ).fetchone()
        return None if row is None else str(row[0])

    def _person_id(self, name: str) -> int:
        row = self._conn.execute("SELECT id FROM people WHERE name = ?", (name,)).fetchone()
        if row is None:
            names = [r[0] for r in self._conn.execute("SELECT name FROM people ORDER BY name")]
            close = difflib.get_close_matches(name, names, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigError(f"{self.path}: no person named {name!r}{hint} (`facekit gallery list` shows who is in it)")
        return int(row[0])

    def remove(self, name: str) -> int:
        """Forget a person and their photos; returns the number of photos removed."""
        with self.write() as conn:
            person_id = self._person_id(name)
            count = conn.execute("SELECT COUNT(*) FROM photos WHERE person_id = ?", (person_id,)).fetchone()[0]
            conn.execute("DELETE FROM faces WHERE photo_id IN (SELECT id FROM photos WHERE person_id = ?)", (person_id,))
            conn.execute("DELETE FROM photos WHERE person_id = ?", (person_id,))
            conn.execute("DELETE FROM people WHERE id = ?", (person_id,))
            _next_generation(conn)
        return int(count)

    def rename(self, old: str, new: str) -> None:
        """Give a person another name (``new`` must be free)."""
        new = check_name(new)
        with self.write() as conn:
            person_id = self._person_id(old)
            if conn.execute("SELECT 1 FROM people WHERE name = ?", (new,)).fetchone():
                raise ConfigError(f"{self.path}: {new!r} is already in the gallery; merge {old!r} into it instead")
            conn.execute("UPDATE people SET name = ? WHERE id = ?", (new, person_id))

    def merge(self, source: str, into: str) -> int:
        """Move every photo of ``source`` to ``into`` and forget ``source``; returns photos moved."""
        if source == into:
            raise ConfigError(f"cannot merge {source!r} into itself")
        with self.write() as conn:
            source_id, target_id = self._person_id(source), self._person_id(into)
            moved = conn.execute("UPDATE photos SET person_id = ? WHERE person_id = ?", (target_id, source_id)).rowcount
            conn.execute("DELETE FROM people WHERE id = ?", (source_id,))
        return int(moved)

    # ------------------------------------------------------------- reading
    def people(self) -> list[PersonInfo]:
        """Everyone in the gallery with their photo and face counts, by name."""
        with self.errors():
            rows = self._conn.execute(
                "SELECT people.name, COUNT(DISTINCT photos.id), COUNT(faces.id) FROM people "
                "LEFT JOIN photos ON photos.person_id = people.id LEFT JOIN faces ON faces.photo_id = photos.id "
                "GROUP BY people.id ORDER BY people.name"
            ).fetchall()
        return [PersonInfo(name, int(photos), int(faces)) for name, photos, faces in rows]

    def count_faces(self) -> int:
        with self.errors():
            return int(self._conn.execute("SELECT COUNT(*) FROM faces").fetchone()[0])

    def version(self) -> tuple[int, int]:
        """Changes anyone committed: equal versions mean the same stored faces."""
        with self.errors():
            return int(self._conn.execute("PRAGMA data_version").fetchone()[0]), self.changes

    def snapshot(self) -> tuple[int, list[FaceRow]]:
        """The generation and every stored face (in storage order), read from one snapshot."""
        with self.errors():
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
        return generation, rows

    # ------------------------------------------------------------- the index cache
    def index_file(self, index_name: str, index_params: dict[str, Any], metric: str, generation: int) -> Path:
        """Where a persistent index of this gallery's faces at ``generation`` is kept."""
        # the creation time tells this gallery from an earlier file of the same name
        key = json.dumps([index_name, index_params, metric, self.meta.get("created")], sort_keys=True)
        digest = hashlib.sha256(key.encode()).hexdigest()[:10]
        return self.path.with_name(f"{self.path.name}.{index_name}-{digest}-g{generation}.index")

    def cached_index(self, index: SearchIndex, index_name: str, index_params: dict[str, Any], metric: str,
                     generation: int, vectors: np.ndarray) -> SearchIndex:
        """``index`` over ``vectors``: read from its file when one matches, else built (and saved,
        for a ``persistent`` index, replacing the files of earlier generations)."""
        if not index.persistent or not len(vectors):
            index.build(vectors, metric)  # type: ignore[arg-type]
            return index
        target = self.index_file(index_name, index_params, metric, generation)
        if target.is_file():
            try:
                index.load(str(target), metric)  # type: ignore[arg-type]
                if len(index) == len(vectors):
                    return index
            except Exception:  # noqa: BLE001 - a damaged cache file is rebuilt, never trusted
                pass
        index.build(vectors, metric)  # type: ignore[arg-type]
        partial = target.with_name(f"{target.name}.{os.getpid()}.tmp")
        try:
            index.save(str(partial))
            os.replace(partial, target)
            for stale in self.path.parent.glob(f"{self.path.name}.{index_name}-*.index"):
                if stale != target:
                    stale.unlink(missing_ok=True)
        except OSError:  # a read-only folder: the index works, it is just not kept
            partial.unlink(missing_ok=True)
        return index

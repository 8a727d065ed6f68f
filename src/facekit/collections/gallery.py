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

This module is the facade; the file, its schema and locking are
:mod:`facekit.collections.store`, the ranking and the open-set decision
:mod:`facekit.collections.identification`.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np

from facekit.collections.identification import (
    DEFAULT_MAX_RATIO,
    DEFAULT_TEMPLATE_RULE,
    Candidate,
    Identification,
    LoadedFaces,
    SearchHit,
    check_template_rule,
    decide,
    distance_ratio,
    rank_people,
)
from facekit.collections.store import (
    FORMAT_VERSION,
    AddReport,
    GalleryStore,
    PersonInfo,
    check_name,
    content_hash,
    create_file,
)
from facekit.components import SearchIndex
from facekit.config import validate_model
from facekit.errors import ConfigError, FacekitError, NoFaceError
from facekit.image import ImageSource, describe_source
from facekit.pipeline import Pipeline, _is_single
from facekit.plugins import get_registry
from facekit.scoring.metric import metric_named
from facekit.types import Embedding, Face

__all__ = ["VECTOR_SPACE_FIELDS", "Gallery", "vector_space"]

#: the parts of a pipeline that decide which vector space its embeddings live in
VECTOR_SPACE_FIELDS = ("aligner", "embedder")


def vector_space(pipeline: Pipeline) -> str:
    """The part of a pipeline's embedding description that decides the vector space."""
    description = json.loads(pipeline.embedding_description())
    return json.dumps({k: description.get(k) for k in VECTOR_SPACE_FIELDS}, sort_keys=True)


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
        pipeline: Union[Pipeline, str, os.PathLike, None] = None,
        *,
        index: Optional[str] = None,
        index_params: Optional[dict[str, Any]] = None,
        template: Optional[str] = None,
        max_ratio: float = DEFAULT_MAX_RATIO,
    ) -> None:
        self.path = Path(path)
        self.max_ratio = float(max_ratio)
        self._store = GalleryStore(self.path)
        self._meta = self._store.meta
        self._pipeline: Optional[Pipeline] = None
        self._given_pipeline = pipeline
        self.metric: str = self._meta["metric"]
        self._metric = metric_named(self.metric)
        self.dim = int(self._meta["dim"])
        self.template = check_template_rule(template or self._meta.get("template", DEFAULT_TEMPLATE_RULE))
        self._index_name = index or self._meta.get("index", "exact")
        self._index_params = index_params if index is not None else json.loads(self._meta.get("index_params", "{}"))
        self._loaded_version: Optional[tuple[int, int]] = None
        self._faces: Optional[LoadedFaces] = None
        if pipeline is not None:
            self.pipeline  # check compatibility now, not on the first photo  # noqa: B018

    # ------------------------------------------------------------- open / create
    @classmethod
    def open(cls, path: Union[str, os.PathLike], pipeline: Union[Pipeline, str, os.PathLike, None] = None,
             **kwargs: Any) -> "Gallery":
        """Open an existing gallery file."""
        return cls(path, pipeline, **kwargs)

    @classmethod
    def create(
        cls,
        path: Union[str, os.PathLike],
        pipeline: Union[Pipeline, str, os.PathLike, None] = None,
        *,
        index: str = "exact",
        index_params: Optional[dict[str, Any]] = None,
        template: str = DEFAULT_TEMPLATE_RULE,
    ) -> "Gallery":
        """Make a new, empty gallery for ``pipeline`` (default: the bundled default pipeline)."""
        path = Path(path)
        if path.exists():
            raise ConfigError(f"{path}: already exists; open it, or choose another file name to make a new gallery")
        check_template_rule(template)
        pipe = Pipeline.load(pipeline)
        # an unknown index or a bad parameter is an error now, not at the first query
        index_cls = get_registry().get("index", index)
        try:
            validate_model(index_cls.Params, index_params or {}, prefix=("index_params",))
        except ConfigError as exc:
            problems = str(exc).split("\n", 1)[-1].strip()  # the lines that name each bad key
            raise ConfigError(f"{path}: bad parameters for the search index {index!r}: {problems}") from None
        embedder = pipe.embedder
        create_file(path, {
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
        })
        return cls(path, pipe)

    def close(self) -> None:
        self._store.close()

    def __enter__(self) -> "Gallery":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Gallery({str(self.path)!r}, model={self._meta['model']!r}, people={len(self.people())})"

    # ------------------------------------------------------------- pipeline
    @property
    def pipeline(self) -> Pipeline:
        """The pipeline that embeds faces for this gallery, every face of a photo (``multi_face: all``)."""
        if self._pipeline is None:
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
        name = check_name(name)
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
        name = check_name(name)
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
        self.dim = self._store.insert(name, embeddings, digests, report, self.dim)

    def _is_new(self, digest: str, where: str, report: AddReport) -> bool:
        """True if no photo with this content is in the gallery; else note it in ``report``."""
        owner = self._store.owner_of(digest)
        if owner is None:
            return True
        if owner == report.person:
            report.unchanged.append(where)
        else:
            report.failures.append((where, f"already in the gallery as a photo of {owner!r}"))
        return False

    def remove(self, name: str) -> int:
        """Forget a person and their photos; returns the number of photos removed."""
        return self._store.remove(name)

    def rename(self, old: str, new: str) -> None:
        """Give a person another name (to join two people, use :meth:`merge`)."""
        self._store.rename(old, new)

    def merge(self, source: str, into: str) -> int:
        """Move every photo of ``source`` to ``into`` and forget ``source``; returns photos moved."""
        return self._store.merge(source, into)

    # ------------------------------------------------------------- reading
    def people(self) -> list[PersonInfo]:
        """Everyone in the gallery with their photo and face counts, by name."""
        return self._store.people()

    def __contains__(self, name: object) -> bool:
        return any(p.name == name for p in self.people())

    def __len__(self) -> int:
        """The number of faces stored."""
        return self._store.count_faces()

    def _loaded(self) -> LoadedFaces:
        """The stored faces and their index, (re)loaded if anyone committed since the last load."""
        version = self._store.version()
        if self._faces is not None and version == self._loaded_version:
            return self._faces
        generation, rows = self._store.snapshot()
        faces = LoadedFaces.from_rows(rows, self.dim)
        index: SearchIndex = get_registry().get("index", self._index_name)(self._index_params)  # type: ignore[assignment]
        faces.index = self._store.cached_index(index, self._index_name, self._index_params, self.metric,
                                               generation, faces.vectors)
        self._faces, self._loaded_version = faces, version
        return faces

    def index_file(self, generation: int) -> Path:
        """Where a persistent index of this gallery's faces at ``generation`` is kept."""
        return self._store.index_file(self._index_name, self._index_params, self.metric, generation)

    def _scored(self, score: float) -> tuple[bool, Optional[float], Optional[float]]:
        pipeline = self.pipeline
        calibration = pipeline.calibration
        same = self._metric.is_same(score, pipeline.threshold)
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
        faces = self._loaded()
        if not len(faces):
            return [[] for _ in vectors]
        if vectors.shape[1] != faces.vectors.shape[1]:
            raise ConfigError(f"{self.path}: queries are {vectors.shape[1]}-D, the gallery's faces {faces.vectors.shape[1]}-D")
        return [
            [Candidate(faces.names[person], score, self.metric, *self._scored(score), photo=faces.photos[face_id])
             for person, score, face_id in ranked]
            for ranked in rank_people(faces, vectors, k, rule, self._metric)
        ]

    def decide(self, candidates: Sequence[Candidate]) -> Optional[str]:
        """The person that :meth:`match`'s ``candidates`` for one face name, or None ("unknown").

        The same open-set rule as :meth:`identify`: the best candidate passes the threshold
        and the ratio test (pass at least two candidates, ``k >= 2``, for the ratio).
        """
        return decide(candidates, self.max_ratio)

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
        loaded = self._loaded()
        if not len(loaded):
            return []
        assert loaded.index is not None
        scores, ids = loaded.index.search(query.vector[None], k)
        hits = []
        for score, face_id in zip(scores[0], ids[0]):
            if face_id < 0:
                continue
            same, probability, impostor = self._scored(float(score))
            hits.append(SearchHit(
                loaded.names[loaded.person_of[face_id]], loaded.photos[face_id], loaded.boxes[face_id],
                float(score), self.metric, same, probability, impostor,
            ))
        return hits


def _face_of(embedding: Embedding) -> Face:
    if embedding.face is not None:
        return embedding.face.face
    return Face((0.0, 0.0, 0.0, 0.0), score=0.0)

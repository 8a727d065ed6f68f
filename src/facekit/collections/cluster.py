"""Group unlabelled photos by person: no names needed.

:func:`cluster` embeds every face of every photo (not only the largest) and groups the
faces with **average-linkage agglomerative clustering**, cut where the mean distance
between two groups reaches a threshold. The algorithm and the threshold rule were chosen
by measurement on LFW's development view (``benchmarks/bench_cluster.py``; the table is
in ``docs/howto/cluster.rst``): dlib's Chinese whispers, the usual choice, chains
different people into one big cluster through a few close pairs; average linkage needs a
group to be close *on average*, which keeps the clusters clean.

The threshold follows from the pipeline, whatever its embedder
(:func:`default_threshold`): the score at which the pipeline's calibration gives
P(same person) = :data:`CLUSTER_P_SAME`, or the pipeline's own same-person threshold
when it has no calibration.

The linkage runs on numpy alone (nearest-neighbour chain, O(n^2) time and memory: a
peak of about 600 MB for 5,000 faces, float64 with temporaries).
"""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Sequence, Union

import numpy as np

from facekit.errors import ConfigError
from facekit.pipeline import Pipeline
from facekit.scoring.calibration import Calibration
from facekit.scoring.metric import Metric, metric_named
from facekit.types import Embedding

#: calibrated P(same person) two groups need to be joined by default (see
#: :func:`default_threshold`); chosen on the people of LFW's pairsDevTrain.txt only
#: (benchmarks/bench_cluster.py)
CLUSTER_P_SAME = 0.99

#: linkages :func:`cluster_vectors` knows
LINKAGES = ("average", "complete", "single")

#: the most faces clustered in one go (the distance matrix is n x n float32)
MAX_FACES = 20_000


# ------------------------------------------------------------------------------ algorithm
def dissimilarities(vectors: np.ndarray, metric: Union[str, Metric]) -> np.ndarray:
    """All pairwise dissimilarities (lower = more alike) of ``(N, D)`` vectors, as float32:
    the metric's scores turned so that lower is more alike (distances as they are, cosine
    similarities negated)."""
    scoring = metric_named(metric)
    return (-scoring.as_similarity(scoring.matrix(vectors))).astype(np.float32)


def linkage_merges(dissimilarity: np.ndarray, linkage: str = "average") -> list[tuple[int, int, float]]:
    """Every merge of agglomerative clustering, as (kept index, merged index, height).

    Nearest-neighbour chain: O(n^2) time for the reducible linkages (average, complete,
    single), whose heights only grow towards the root, so cutting the tree at a height
    is applying the merges below it in any order.
    """
    if linkage not in LINKAGES:
        raise ConfigError(f"unknown linkage {linkage!r}; choose one of {', '.join(LINKAGES)}")
    d = np.array(dissimilarity, dtype=np.float32, copy=True)
    n = d.shape[0]
    np.fill_diagonal(d, np.inf)
    size = np.ones(n, dtype=np.float32)
    active = n
    chain: list[int] = []
    merges: list[tuple[int, int, float]] = []
    next_start = 0
    alive = np.ones(n, dtype=bool)
    while active > 1:
        if not chain:
            while not alive[next_start]:
                next_start += 1
            chain.append(next_start)
        a = chain[-1]
        row = d[a]
        b = int(np.argmin(row))
        if len(chain) > 1 and row[chain[-2]] <= row[b]:
            b = chain[-2]  # prefer the chain's previous link on ties, so the chain ends
        if len(chain) > 1 and b == chain[-2]:
            chain.pop()
            chain.pop()
            height = float(row[b])
            if linkage == "average":
                merged = (size[a] * d[a] + size[b] * d[b]) / (size[a] + size[b])
            elif linkage == "complete":
                merged = np.maximum(d[a], d[b])
            else:
                merged = np.minimum(d[a], d[b])
            merged[a] = np.inf
            merged[b] = np.inf
            merged[~alive] = np.inf
            d[a] = merged
            d[:, a] = merged
            d[b] = np.inf
            d[:, b] = np.inf
            size[a] += size[b]
            alive[b] = False
            active -= 1
            merges.append((a, b, height))
        else:
            chain.append(b)
    return merges


def cluster_vectors(vectors: np.ndarray, metric: Union[str, Metric], threshold: float, linkage: str = "average") -> np.ndarray:
    """Cluster labels (0 = largest cluster) of ``(N, D)`` vectors.

    Two groups join while their mean (``average``), largest (``complete``) or smallest
    (``single``) pairwise score still says "same person" by ``threshold``, in the
    metric's own terms: a distance below it (euclidean), a cosine similarity at or above
    it (cosine).
    """
    vectors = np.asarray(vectors)
    n = len(vectors)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    if n > MAX_FACES:
        raise ConfigError(
            f"{n} faces is more than facekit clusters at once ({MAX_FACES}: the distance matrix "
            "grows with the square); cluster the photos in smaller groups (e.g. per year or album)"
        )
    return labels_from_merges(n, linkage_merges(dissimilarities(vectors, metric), linkage), threshold, metric)


def labels_from_merges(n: int, merges: Iterable[tuple[int, int, float]], threshold: float,
                       metric: Union[str, Metric]) -> np.ndarray:
    """Cut a merge list from :func:`linkage_merges` at ``threshold`` (in ``metric``'s terms)."""
    metric = metric_named(metric)
    parent = np.arange(n)

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = int(parent[i])
        return i

    for a, b, height in merges:
        # a height is a dissimilarity, a negated similarity: back into the metric's own score
        if metric.is_same(float(metric.from_similarity(-height)), threshold):
            parent[root(b)] = root(a)
    return _relabel_by_size(np.array([root(i) for i in range(n)]))


def _relabel_by_size(raw: np.ndarray) -> np.ndarray:
    """Labels 0..k-1, largest cluster first (ties: first appearance)."""
    values, first, counts = np.unique(raw, return_index=True, return_counts=True)
    order = sorted(range(len(values)), key=lambda i: (-counts[i], first[i]))
    mapping = {int(values[i]): rank for rank, i in enumerate(order)}
    return np.array([mapping[int(v)] for v in raw], dtype=np.int64)


def default_threshold(pipeline: Pipeline) -> tuple[float, str]:
    """The clustering cut for ``pipeline``, and how it was chosen (for reports).

    With a calibration: the least strict score at which the calibrated P(same person)
    is still :data:`CLUSTER_P_SAME` (stricter than the verification threshold, because
    one wrong join merges two whole groups). Without one: the pipeline's own
    same-person threshold, which chains more people together.
    """
    calibration = pipeline.calibration
    if calibration is not None:
        value = score_at_probability(calibration, CLUSTER_P_SAME)
        if value is not None:
            return value, f"calibration {calibration.name!r}: P(same person) >= {CLUSTER_P_SAME:.0%}"
    return float(pipeline.threshold), "the pipeline's same-person threshold (it has no calibration)"


def score_at_probability(calibration: Calibration, level: float) -> Optional[float]:
    """The least similar score the calibration still gives P(same) >= ``level``, or None."""
    known = np.concatenate([calibration.impostor_scores, calibration.genuine_scores])
    low, high = float(np.min(known)), float(np.max(known))
    grid = np.linspace(low - 0.5 * (high - low), high + 0.5 * (high - low), 4001)
    passing = grid[calibration.probabilities(grid) >= level]
    if not len(passing):
        return None
    return float(passing[np.argmin(metric_named(calibration.metric).as_similarity(passing))])


# ------------------------------------------------------------------------------ photos
@dataclass(frozen=True)
class FoundFace:
    """One face of one photo (or video frame): where it is and its embedding."""

    source: str
    index: int  # 0 = the photo's largest face
    faces_in_photo: int
    box: tuple[float, float, float, float]  # x0, y0, x1, y1 in the photo's pixels
    vector: np.ndarray = field(repr=False, compare=False)


def every_face_pipeline(pipeline: Pipeline) -> Pipeline:
    """``pipeline`` itself if it keeps every face of a photo, else a copy that does."""
    if pipeline.config.multi_face == "all":
        return pipeline
    return Pipeline.from_dict({**pipeline.to_dict(), "multi_face": "all"}, where=pipeline.where)


def embed_every_face(
    pipeline: Pipeline, images: Sequence[Union[str, os.PathLike]], progress: Optional[Callable[[int], None]] = None
) -> tuple[list[FoundFace], list[tuple[str, str]]]:
    """Every face of every image with ``pipeline`` (made to keep all faces), in chunks so that
    memory holds vectors and boxes, not chips. Returns (faces, failures as (source, message))."""
    pipeline = every_face_pipeline(pipeline)
    faces: list[FoundFace] = []
    failures: list[tuple[str, str]] = []
    chunk = max(1, pipeline.config.batch_size * 4)
    for start in range(0, len(images), chunk):
        part = list(images[start : start + chunk])
        batch = pipeline.embed(part, on_error="skip", progress=False)
        failures.extend(batch.failures)
        per_source: dict[str, list[Embedding]] = {}
        for emb in batch:
            per_source.setdefault(str(emb.source), []).append(emb)
        for source, found in per_source.items():
            for index, emb in enumerate(found):
                box = tuple(float(v) for v in emb.face.face.box) if emb.face is not None else (0.0, 0.0, 0.0, 0.0)
                faces.append(FoundFace(source, index, len(found), box, np.asarray(emb.vector, dtype=np.float32)))  # type: ignore[arg-type]
        if progress is not None:
            progress(len(part))
    return faces, failures


@dataclass
class Clustering:
    """The result of :func:`cluster`: each face's cluster, the clusters, and what was skipped."""

    faces: list[FoundFace]
    labels: np.ndarray  # one per face; 0 = the largest cluster
    threshold: float
    threshold_rule: str
    linkage: str
    metric: str
    model: str
    pipeline: str
    failures: list[tuple[str, str]] = field(default_factory=list)

    @property
    def clusters(self) -> list[list[FoundFace]]:
        """Faces per cluster, largest cluster first."""
        out: list[list[FoundFace]] = [[] for _ in range(int(self.labels.max()) + 1 if len(self.labels) else 0)]
        for face, label in zip(self.faces, self.labels):
            out[int(label)].append(face)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "pipeline": self.pipeline,
            "model": self.model,
            "metric": self.metric,
            "linkage": self.linkage,
            "threshold": self.threshold,
            "threshold_rule": self.threshold_rule,
            "clusters": [
                {"cluster": number, "size": len(members), "faces": [_face_dict(f) for f in members]}
                for number, members in enumerate(self.clusters)
            ],
            "failures": [{"source": s, "error": e} for s, e in self.failures],
        }

    def to_json(self, **kwargs: Any) -> str:
        return json.dumps(self.to_dict(), **kwargs)

    def to_csv(self) -> str:
        """One row per face: source, face (0 = largest), faces_in_photo, box, cluster, cluster_size."""
        sizes = np.bincount(self.labels) if len(self.labels) else np.zeros(0, dtype=int)
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["source", "face", "faces_in_photo", "x0", "y0", "x1", "y1", "cluster", "cluster_size"])
        for face, label in zip(self.faces, self.labels):
            writer.writerow([face.source, face.index, face.faces_in_photo, *(f"{v:.1f}" for v in face.box),
                             int(label), int(sizes[label])])
        return buffer.getvalue()

    def write_links(self, folder: Union[str, os.PathLike], min_size: int = 2) -> Path:
        """A folder of symbolic links per cluster of at least ``min_size`` faces
        (``cluster_000/`` ...), the rest in ``unclustered/``. Returns the folder."""
        root = Path(folder)
        root.mkdir(parents=True, exist_ok=True)
        for number, members in enumerate(self.clusters):
            target = root / (cluster_name(number) if len(members) >= min_size else "unclustered")
            target.mkdir(exist_ok=True)
            for source in dict.fromkeys(f.source for f in members):  # a photo once, however many faces
                link = _free_name(target, Path(source).name)
                os.symlink(os.path.abspath(source), link)
        return root

    def contact_sheets(self, folder: Union[str, os.PathLike], min_size: int = 2, per_sheet: int = 48) -> list[Path]:
        """A contact-sheet PNG per cluster of at least ``min_size`` faces; returns the paths."""
        from facekit.pictures.cards import save_png

        root = Path(folder)
        root.mkdir(parents=True, exist_ok=True)
        written = []
        for number, members in enumerate(self.clusters):
            if len(members) < min_size:
                continue
            sheet = contact_sheet(members[:per_sheet], f"cluster {number}: {len(members)} faces"
                                  + (f" (first {per_sheet} shown)" if len(members) > per_sheet else ""))
            written.append(Path(save_png(root / f"{cluster_name(number)}.png", sheet)))
        return written


def cluster_name(number: int) -> str:
    return f"cluster_{number:03d}"


def _face_dict(face: FoundFace) -> dict[str, Any]:
    return {"source": face.source, "face": face.index, "faces_in_photo": face.faces_in_photo,
            "box": [round(v, 1) for v in face.box]}


def _free_name(folder: Path, name: str) -> Path:
    candidate = folder / name
    stem, suffix = Path(name).stem, Path(name).suffix
    number = 1
    while candidate.exists() or candidate.is_symlink():
        number += 1
        candidate = folder / f"{stem}-{number}{suffix}"
    return candidate


def cluster(
    images: Sequence[Union[str, os.PathLike]],
    pipeline: Union[Pipeline, str, os.PathLike, None] = None,
    *,
    threshold: Optional[float] = None,
    linkage: str = "average",
    progress: Optional[Callable[[int], None]] = None,
) -> Clustering:
    """Group the faces of the photos at the paths ``images`` by person.

    Every face of every photo is clustered (a group photo puts its people in different
    clusters). ``threshold`` is in the pipeline's metric (a distance for euclidean
    models, a cosine similarity for cosine ones); by default :func:`default_threshold`.
    Images that cannot be read, or have no face, are skipped and listed in
    ``result.failures``. ``progress`` is called with the number of images done per chunk.
    """
    unnamed = [i for i, image in enumerate(images) if not isinstance(image, (str, os.PathLike))]
    if unnamed:  # the results, the contact sheets and the links all name photos by their path
        raise ConfigError(
            f"cluster() takes paths of photos; item {unnamed[0]} is a {type(images[unnamed[0]]).__name__}. "
            "For vectors you already have, use cluster_vectors()"
        )
    pipeline = Pipeline.load(pipeline)
    if threshold is None:
        threshold, rule = default_threshold(pipeline)
    else:
        rule = "given"
    faces, failures = embed_every_face(pipeline, images, progress)
    vectors = np.stack([f.vector for f in faces]) if faces else np.zeros((0, 1), np.float32)
    labels = cluster_vectors(vectors, pipeline.embedder.metric, threshold, linkage)
    return Clustering(faces, labels, float(threshold), rule, linkage, pipeline.embedder.metric,
                      pipeline.embedder.model_name, pipeline.name, failures)


# ------------------------------------------------------------------------------ pictures
THUMB = 112
LABEL_HEIGHT = 16
TITLE_HEIGHT = 30


def face_thumbnail(photo: np.ndarray, box: Sequence[float], side: int = THUMB, margin: float = 0.25) -> np.ndarray:
    """A square crop around ``box`` (with ``margin`` of its size around it), ``side`` px."""
    import cv2

    x0, y0, x1, y1 = (float(v) for v in box)
    half = max(x1 - x0, y1 - y0) * (0.5 + margin)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    if half <= 0:
        half, cx, cy = min(photo.shape[:2]) / 2, photo.shape[1] / 2, photo.shape[0] / 2
    # an affine crop pads outside the photo with grey instead of failing at the edges
    scale = side / (2 * half)
    matrix = np.array([[scale, 0, side / 2 - scale * cx], [0, scale, side / 2 - scale * cy]], dtype=np.float64)
    return cv2.warpAffine(photo, matrix, (side, side), flags=cv2.INTER_AREA, borderValue=(128, 128, 128))


def contact_sheet(faces: Sequence[FoundFace], title: str, columns: int = 8,
                  read: Optional[Callable[[str], np.ndarray]] = None) -> np.ndarray:
    """A grid of face thumbnails, each labelled with its photo's name, under ``title``."""
    from PIL import Image, ImageDraw, ImageFont

    from facekit.image import load_image

    read = read or load_image
    columns = max(1, min(columns, len(faces)))
    rows = (len(faces) + columns - 1) // columns
    cell_h = THUMB + LABEL_HEIGHT
    width = max(columns * THUMB, 320)
    sheet = Image.new("RGB", (width, TITLE_HEIGHT + rows * cell_h), "white")
    draw = ImageDraw.Draw(sheet)
    draw.text((6, 6), title, fill="black", font=ImageFont.load_default(size=16))
    small = ImageFont.load_default(size=10)
    photos: dict[str, np.ndarray] = {}
    for i, face in enumerate(faces):
        if face.source not in photos:
            photos = {face.source: read(face.source)}  # keep one photo: faces come grouped by photo
        x, y = (i % columns) * THUMB, TITLE_HEIGHT + (i // columns) * cell_h
        sheet.paste(Image.fromarray(face_thumbnail(photos[face.source], face.box)), (x, y))
        label = Path(face.source).stem + (f" #{face.index}" if face.faces_in_photo > 1 else "")
        draw.text((x + 2, y + THUMB + 2), _fit(label, 19), fill="black", font=small)
    return np.asarray(sheet)


def _fit(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"

"""Data types that cross every boundary in facekit.

Images are ``numpy`` arrays of shape ``(H, W, 3)``, dtype ``uint8``, RGB. Points are
``(x, y)`` in pixels of the image they belong to. Every result type prints well in a
terminal (``str``), shows itself in a notebook (``_repr_html_``) and converts to plain
data (``to_dict``) and JSON (``to_json``).
"""

from __future__ import annotations

import base64
import functools
import html
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Optional, Sequence

import numpy as np

from facekit.scoring.metric import MetricName, metric_named
from facekit.scoring.similarity import bounded_percent

if TYPE_CHECKING:
    from facekit.quality import FaceQuality

#: An RGB image: ``(H, W, 3)`` uint8.
Image = np.ndarray

#: Landmark schemes known to the core, with their point counts. Plugins may use others.
LANDMARK_SCHEMES = {
    "dlib5": 5,  # dlib's 5-point model: right eye (2 corners), left eye (2 corners), nose base
    "dlib68": 68,  # iBUG 300-W 68-point markup
    "blazeface6": 6,  # MediaPipe BlazeFace: right eye, left eye, nose tip, mouth, right ear, left ear
    "mediapipe468": 468,  # MediaPipe face mesh
}


def _png_data_uri(image: np.ndarray) -> str:
    import cv2

    ok, buf = cv2.imencode(".png", cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2BGR))
    return "data:image/png;base64," + base64.b64encode(buf.tobytes()).decode("ascii") if ok else ""


class _Result:
    """Shared printing and conversion for result types."""

    def to_dict(self) -> dict[str, Any]:  # pragma: no cover - overridden
        raise NotImplementedError

    def to_json(self, **kwargs: Any) -> str:
        return json.dumps(self.to_dict(), **kwargs)

    def _summary(self) -> list[tuple[str, str]]:
        return [(k, _short(v)) for k, v in self.to_dict().items()]

    def __str__(self) -> str:
        rows = self._summary()
        width = max((len(k) for k, _ in rows), default=0)
        return f"{type(self).__name__}\n" + "\n".join(f"  {k:<{width}}  {v}" for k, v in rows)

    def _html_images(self) -> list[np.ndarray]:
        return []

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><th style='text-align:left'>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>"
            for k, v in self._summary()
        )
        pics = "".join(
            f"<img src='{_png_data_uri(img)}' style='height:150px;margin:2px'/>" for img in self._html_images()
        )
        return f"<div><b>{type(self).__name__}</b><br/>{pics}<table>{rows}</table></div>"


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    if isinstance(value, list) and len(value) > 6:
        return f"[{', '.join(_short(v) for v in value[:3])}, ... ({len(value)} values)]"
    if isinstance(value, dict):
        return ", ".join(f"{k}={_short(v)}" for k, v in value.items())
    return str(value)


@dataclass(frozen=True)
class Landmarks:
    """Facial landmark points of one face, in the named scheme."""

    points: np.ndarray  # (K, 2) float32, x then y
    scheme: str

    def __post_init__(self) -> None:
        pts = np.asarray(self.points, dtype=np.float32).reshape(-1, 2)
        object.__setattr__(self, "points", pts)
        expected = LANDMARK_SCHEMES.get(self.scheme)
        if expected is not None and len(pts) != expected:
            raise ValueError(f"landmark scheme {self.scheme!r} has {expected} points, got {len(pts)}")

    def transformed(self, affine: np.ndarray) -> "Landmarks":
        """These points mapped through a 2x3 affine matrix."""
        return Landmarks(apply_affine(affine, self.points), self.scheme)

    def to_dict(self) -> dict[str, Any]:
        return {"scheme": self.scheme, "points": self.points.round(2).tolist()}


@dataclass(frozen=True)
class Face(_Result):
    """A face found by a detector in one image."""

    box: tuple[float, float, float, float]  # x0, y0, x1, y1 in image pixels
    score: float = 1.0
    landmarks: Optional[Landmarks] = None
    detector: str = ""

    @property
    def width(self) -> float:
        return self.box[2] - self.box[0]

    @property
    def height(self) -> float:
        return self.box[3] - self.box[1]

    @property
    def area(self) -> float:
        return max(self.width, 0.0) * max(self.height, 0.0)

    @property
    def center(self) -> tuple[float, float]:
        return ((self.box[0] + self.box[2]) / 2, (self.box[1] + self.box[3]) / 2)

    def to_dict(self) -> dict[str, Any]:
        return {
            "box": [round(float(v), 2) for v in self.box],
            "score": float(self.score),
            "detector": self.detector,
            "landmarks": self.landmarks.to_dict() if self.landmarks is not None else None,
        }

    def _summary(self) -> list[tuple[str, str]]:
        marks = f"{len(self.landmarks.points)} ({self.landmarks.scheme})" if self.landmarks else "none"
        return [
            ("box", ", ".join(f"{v:.0f}" for v in self.box)),
            ("score", f"{self.score:.3f}"),
            ("landmarks", marks),
            ("detector", self.detector),
        ]


@dataclass(frozen=True)
class AlignedFace(_Result):
    """A face chip cut out of an image, and the way back to that image.

    ``transform`` is a 2x3 affine matrix mapping chip pixel coordinates to source image
    pixel coordinates, so a heatmap on the chip can be drawn on the original photo.
    """

    chip: np.ndarray  # (S, S, 3) uint8 RGB
    transform: np.ndarray  # (2, 3) chip -> source
    face: Face
    aligner: str = ""
    landmarks: Optional[Landmarks] = None  # in chip coordinates, when the aligner knows them
    source: Optional[str] = None  # where the image came from, for reports
    #: which of the image's detected faces this is (0 = the largest) and how many were found;
    #: set by :meth:`facekit.pipeline.Pipeline.align`, None when unknown
    face_index: Optional[int] = None
    faces_found: Optional[int] = None

    @property
    def size(self) -> tuple[int, int]:
        return (int(self.chip.shape[1]), int(self.chip.shape[0]))

    def to_source(self, points: np.ndarray) -> np.ndarray:
        """Map chip coordinates to source-image coordinates."""
        return apply_affine(self.transform, points)

    def to_dict(self) -> dict[str, Any]:
        return {
            "size": list(self.size),
            "transform": np.asarray(self.transform).round(5).tolist(),
            "face": self.face.to_dict(),
            "aligner": self.aligner,
            "source": self.source,
            "face_index": self.face_index,
            "faces_found": self.faces_found,
        }

    def used_face(self) -> dict[str, Any]:
        """Which face of its image this is: source, box, index (0 = largest) and faces found."""
        return {
            "source": self.source,
            "box": [round(float(v), 1) for v in self.face.box],
            "face_index": self.face_index,
            "faces_found": self.faces_found,
        }

    def _summary(self) -> list[tuple[str, str]]:
        return [("size", "x".join(map(str, self.size))), ("aligner", self.aligner), ("source", str(self.source))]

    def _html_images(self) -> list[np.ndarray]:
        return [self.chip]


@dataclass(frozen=True)
class Embedding(_Result):
    """A face descriptor and the model and metric it belongs to."""

    vector: np.ndarray
    model: str
    metric: MetricName  # "euclidean" or "cosine"; metric_named(metric) says what its scores mean
    source: Optional[str] = None
    face: Optional[AlignedFace] = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "metric": self.metric,
            "source": self.source,
            "vector": [float(v) for v in self.vector],
        }


@dataclass(frozen=True)
class Comparison(_Result):
    """The answer to "are these the same person?" for two faces.

    ``score`` is in the embedder's own metric: a distance for ``euclidean`` (lower is more
    similar), a similarity for ``cosine`` (higher is more similar); ask
    :func:`facekit.scoring.metric.metric_named` what it means. ``percentage`` is
    FACE01's presentation of a cosine similarity (see :func:`facekit.scoring.similarity.percentage`).
    ``probability`` and ``impostor_percentile`` are present when the pipeline carries a
    calibration (see :mod:`facekit.scoring.calibration`).
    """

    score: float
    metric: MetricName
    threshold: float
    same: bool
    percentage: float
    model: str
    probability: Optional[float] = None
    impostor_percentile: Optional[float] = None
    profile: Optional[str] = None
    pipeline: Optional[str] = None
    faces: tuple[Optional[AlignedFace], Optional[AlignedFace]] = field(default=(None, None), repr=False, compare=False)
    #: the pipeline's multi-face policy, which chose the face compared in each image
    multi_face: Optional[str] = None

    @property
    def verdict(self) -> str:
        return "same person" if self.same else "different people"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "score": float(self.score),
            "metric": self.metric,
            "score_kind": metric_named(self.metric).kind,
            "threshold": float(self.threshold),
            "same": bool(self.same),
            "verdict": self.verdict,
            "percentage": float(self.percentage),
            "model": self.model,
            "pipeline": self.pipeline,
            "profile": self.profile,
            "probability": None if self.probability is None else float(self.probability),
            "impostor_percentile": None if self.impostor_percentile is None else float(self.impostor_percentile),
            "sources": [f.source if f is not None else None for f in self.faces],
            "multi_face": self.multi_face,
            "faces": [f.used_face() if f is not None else None for f in self.faces],
            "confident": self.confident,
            "quality": [q.to_dict() if q is not None else None for q in self.quality],
        }
        return out

    @functools.cached_property  # measured once: the table, the JSON and the notebook view all ask
    def quality(self) -> tuple[Optional["FaceQuality"], Optional["FaceQuality"]]:
        """Each compared face's size, sharpness and yaw (:mod:`facekit.quality`); None without its chip."""
        from facekit.quality import assess

        a, b = (assess(f) if f is not None else None for f in self.faces)
        return a, b

    @property
    def confident(self) -> bool:
        """False when a compared face is tiny, blurred or turned towards profile: a weak verdict."""
        return not any(q is not None and q.flags for q in self.quality)

    def _quality_notes(self) -> list[tuple[str, str]]:
        """(image, sentence) for each quality flag of each compared face."""
        notes = []
        for label, face, q in zip("AB", self.faces, self.quality):
            if face is not None and q is not None:
                notes += [(face.source or f"image {label}", sentence) for sentence in q.describe()]
        return notes

    def _summary(self) -> list[tuple[str, str]]:
        metric = metric_named(self.metric)
        flagged = sorted({flag for q in self.quality if q is not None for flag in q.flags})
        verdict = self.verdict if not flagged else f"{self.verdict}, uncertain ({', '.join(flagged)} face)"
        rows = [
            ("verdict", verdict),
            (metric.score_name, f"{self.score:.4f}  ({metric.rule_in_words(self.threshold)})"),
            ("percentage", f"{self.percentage:.2f} %  (FACE01 scale, 90 % = threshold)"),
        ]
        if self.probability is not None:
            rows.append(("P(same person)", f"{bounded_percent(self.probability)}  (calibrated)"))
        if self.impostor_percentile is not None:
            rows.append(
                ("more similar than", f"{bounded_percent(self.impostor_percentile, 2)} of pairs of different people")
            )
        rows += self._face_rows()
        rows += [("model", self.model), ("pipeline", str(self.pipeline))]
        if self.profile:
            rows.append(("profile", self.profile))
        return rows

    def _face_rows(self) -> list[tuple[str, str]]:
        """One row per image: the face compared, its box, and how many faces the image had."""
        rows = []
        for label, face in zip("AB", self.faces):
            if face is None or face.faces_found is None:
                continue
            x0, y0, x1, y1 = face.face.box
            box = f"box x {x0:.0f}-{x1:.0f}, y {y0:.0f}-{y1:.0f}"
            if face.faces_found == 1:
                text = f"1 face found, {box}"
            else:
                rank = "largest" if face.face_index == 0 else f"no. {(face.face_index or 0) + 1} by size"
                why = "the most similar pair" if self.multi_face == "all" else f"multi_face: {self.multi_face}"
                text = f"{face.faces_found} faces found; compared the {rank} ({why}), {box}"
            rows.append((f"face {label}", text))
        return rows

    def warnings(self) -> list[str]:
        """Plain-language notes a reader should not miss (e.g. a photo with several faces)."""
        notes = []
        for label, face in zip("AB", self.faces):
            if face is not None and (face.faces_found or 0) > 1:
                where = face.source or f"image {label}"
                notes.append(f"{where} has {face.faces_found} faces; only one of them was compared "
                             f"(multi_face: {self.multi_face}); crop the photo to choose another")
        for where, sentence in self._quality_notes():
            notes.append(f"{where}: {sentence}, so the verdict is less sure than its score says; "
                         "compare a larger, sharper, frontal photo")
        return notes

    def _html_images(self) -> list[np.ndarray]:
        return [f.chip for f in self.faces if f is not None]

    def _repr_html_(self) -> str:
        """The verdict in the card's colours, the two chips and the table, with inline CSS only."""
        accent = "#1a7f37" if self.same else "#c62828"
        verdict = (f"<div style='display:inline-block;background:{accent};color:white;font-weight:bold;"
                   f"font-size:1.3em;padding:4px 14px;border-radius:8px'>{html.escape(self.verdict.upper())}</div>")
        pics = "".join(
            f"<img src='{_png_data_uri(img)}' style='height:150px;margin:2px;border:1px solid #bbb'/>"
            for img in self._html_images()
        )
        rows = "".join(
            f"<tr><th style='text-align:left;padding-right:1em'>{html.escape(k)}</th>"
            f"<td style='text-align:left'>{html.escape(v)}</td></tr>"
            for k, v in self._summary()
        )
        notes = "".join(f"<div style='color:#9a6700'>&#9888; {html.escape(n)}</div>" for n in self.warnings())
        return f"<div>{verdict}<div style='margin:6px 0'>{pics}</div>{notes}<table>{rows}</table></div>"


@dataclass(frozen=True)
class Heatmap(_Result):
    """Importance of each chip pixel for a result, in [0, 1], on the aligned chip."""

    values: np.ndarray  # (S, S) float32 in [0, 1]
    face: AlignedFace
    method: str

    def on_source(self, shape: Sequence[int]) -> np.ndarray:
        """The heatmap warped back onto the source image (``shape`` = its (H, W))."""
        import cv2

        height, width = int(shape[0]), int(shape[1])
        to_chip = cv2.invertAffineTransform(np.asarray(self.face.transform, dtype=np.float64))
        return cv2.warpAffine(
            self.values.astype(np.float32),
            to_chip,
            (width, height),
            flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
            borderValue=0.0,
        )

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "shape": list(self.values.shape), "face": self.face.to_dict()}

    def _html_images(self) -> list[np.ndarray]:
        from facekit.pictures.cards import overlay_heatmap

        return [overlay_heatmap(self.face.chip, self.values)]


@dataclass(frozen=True)
class Explanation(_Result):
    """Why two faces are (dis)similar: the comparison and a heatmap per face."""

    comparison: Comparison
    heatmaps: tuple[Heatmap, Heatmap]
    explainer: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "explainer": self.explainer,
            "comparison": self.comparison.to_dict(),
            "heatmaps": [h.to_dict() for h in self.heatmaps],
        }

    def _summary(self) -> list[tuple[str, str]]:
        return [("explainer", self.explainer)] + self.comparison._summary()

    def card(self, **kwargs: Any) -> np.ndarray:
        """The comparison card as an RGB image (see :func:`facekit.pictures.cards.comparison_card`)."""
        from facekit.pictures.cards import comparison_card

        return comparison_card(self, **kwargs)

    def _html_images(self) -> list[np.ndarray]:
        return [self.card()]


@dataclass(frozen=True)
class AggregateResult(_Result):
    """What an aggregator made of a group of faces: a picture, an embedding, or both."""

    method: str
    count: int
    image: Optional[np.ndarray] = None
    embedding: Optional[Embedding] = None
    skipped: tuple[tuple[str, str], ...] = ()  # (source, reason) of every face left out

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "count": self.count,
            "image_shape": list(self.image.shape) if self.image is not None else None,
            "embedding": self.embedding.to_dict() if self.embedding is not None else None,
            "skipped": [{"source": s, "reason": r} for s, r in self.skipped],
        }

    def _html_images(self) -> list[np.ndarray]:
        return [self.image] if self.image is not None else []


def apply_affine(affine: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a 2x3 affine matrix to ``(K, 2)`` points."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    m = np.asarray(affine, dtype=np.float64).reshape(2, 3)
    return (pts @ m[:, :2].T + m[:, 2]).astype(np.float32)

"""People in a video: sampled frames, faces tracked across them, a timeline of who appears when.

:func:`video_timeline` reads a frame every ``every_ms`` milliseconds with OpenCV's
``VideoCapture``, finds and embeds every face of each frame, and links the faces of
consecutive frames into **tracks**: a face continues a track when the track's mean
embedding says "same person" by the pipeline's threshold and the face either overlaps
the track's last box (IoU) or matches it by the stricter clustering cut
(:func:`facekit.collections.cluster.default_threshold`), so a person who moves fast or comes back
after a cut is still the same track. Each track is then named with a gallery
(:meth:`facekit.collections.gallery.Gallery.match` on its mean embedding, decided by
:meth:`~facekit.collections.gallery.Gallery.decide`: "unknown" when no one passes the threshold or
the best person is not clearly nearer than the next); unknown tracks, or every track without a gallery, are grouped by
:func:`facekit.collections.cluster.cluster_vectors` into "unknown 1", "unknown 2"...

Frames without a face are normal in a video, so the pipeline's fallback detector (slow,
meant for photos) is not used on frames.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Sequence, Union

import numpy as np

from facekit.collections.cluster import cluster_vectors, default_threshold, face_thumbnail
from facekit.collections.gallery import Gallery
from facekit.collections.identification import Candidate
from facekit.errors import FacekitError, ImageError
from facekit.pipeline import Pipeline
from facekit.scoring.metric import Metric, metric_named

#: video file suffixes ``facekit identify`` reads as videos
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv")


# ------------------------------------------------------------------------------ frames
def sample_frames(path: Union[str, os.PathLike], every_ms: float = 200.0) -> Iterator[tuple[float, np.ndarray]]:
    """(time in seconds, RGB frame) every ``every_ms`` ms of the video at ``path``."""
    import cv2

    if every_ms <= 0:
        raise ValueError("every_ms must be positive")
    if not Path(path).is_file():
        raise ImageError(f"{path}: no such video file")
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise ImageError(f"{path}: OpenCV cannot open this video (unknown format or corrupt file); "
                         "convert it to MP4 (H.264) or AVI (MJPG), e.g. with ffmpeg")
    fps = capture.get(cv2.CAP_PROP_FPS)
    fps = fps if fps and fps > 0 else 25.0
    try:
        index, due = 0, 0.0
        while capture.grab():
            ms = index * 1000.0 / fps
            index += 1
            if ms + 1e-6 < due:
                continue
            ok, frame = capture.retrieve()
            if not ok:
                break
            due += every_ms * max(1, int((ms - due) // every_ms) + 1)
            yield ms / 1000.0, cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        if index == 0:
            raise ImageError(f"{path}: no frame could be decoded; the file is empty, truncated or not a video")
    finally:
        capture.release()


def video_pipeline(pipeline: Pipeline) -> Pipeline:
    """``pipeline`` keeping every face of a frame and without its fallback detector."""
    config = pipeline.to_dict()
    if config.get("multi_face") == "all" and not config.get("fallback_detector"):
        return pipeline
    return Pipeline.from_dict({**config, "multi_face": "all", "fallback_detector": None}, where=pipeline.where)


@dataclass(frozen=True)
class FrameFace:
    """A face in one sampled frame."""

    time: float  # seconds from the start
    box: tuple[float, float, float, float]
    vector: np.ndarray = field(repr=False, compare=False)
    thumbnail: Optional[np.ndarray] = field(default=None, repr=False, compare=False)


def faces_in_frame(pipeline: Pipeline, frame: np.ndarray, time: float) -> list[FrameFace]:
    """Every face of one RGB frame, embedded ([] when there is none)."""
    batch = pipeline.embed(frame, on_error="skip", progress=False)
    out = []
    for emb in batch:
        box = tuple(float(v) for v in emb.face.face.box)
        out.append(FrameFace(time, box, np.asarray(emb.vector, dtype=np.float32),  # type: ignore[arg-type]
                             face_thumbnail(frame, box, side=64)))
    return out


# ------------------------------------------------------------------------------ tracking
def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two (x0, y0, x1, y1) boxes."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


@dataclass
class Track:
    """One person's face followed across frames."""

    number: int
    faces: list[FrameFace] = field(default_factory=list)
    person: str = "unknown"
    known: bool = False
    candidates: list[Candidate] = field(default_factory=list)

    @property
    def start(self) -> float:
        return self.faces[0].time

    @property
    def end(self) -> float:
        return self.faces[-1].time

    @property
    def mean_vector(self) -> np.ndarray:
        return np.mean([f.vector for f in self.faces], axis=0)

    @property
    def thumbnail(self) -> Optional[np.ndarray]:
        """The thumbnail of the track's largest face."""
        best = max(self.faces, key=lambda f: (f.box[2] - f.box[0]) * (f.box[3] - f.box[1]))
        return best.thumbnail

    def to_dict(self) -> dict[str, Any]:
        return {
            "track": self.number,
            "person": self.person,
            "known": self.known,
            "start_s": round(self.start, 3),
            "end_s": round(self.end, 3),
            "frames": len(self.faces),
            "box": [round(v, 1) for v in self.faces[0].box],
            "candidates": [c.to_dict() if hasattr(c, "to_dict") else c for c in self.candidates],
        }


class Tracker:
    """Links each frame's faces to the tracks of earlier frames (greedy, most similar first)."""

    def __init__(self, metric: Union[str, Metric], threshold: float, strict_threshold: float, min_iou: float = 0.3,
                 max_gap: float = 2.0) -> None:
        self.metric = metric_named(metric)
        self.threshold = threshold
        self.strict_threshold = strict_threshold
        self.min_iou = min_iou
        self.max_gap = max_gap
        self.tracks: list[Track] = []

    def update(self, faces: Sequence[FrameFace]) -> None:
        if not faces:
            return
        now = faces[0].time
        live = [t for t in self.tracks if now - t.end <= self.max_gap]
        pairs = []
        for track in live:
            mean = track.mean_vector
            last = track.faces[-1].box
            for j, face in enumerate(faces):
                score = self.metric.score(mean, face.vector)
                if not self.metric.is_same(score, self.threshold):
                    continue
                if box_iou(last, face.box) >= self.min_iou or self.metric.is_same(score, self.strict_threshold):
                    pairs.append((float(self.metric.as_similarity(score)), track.number, j))
        used_tracks: set[int] = set()
        used_faces: set[int] = set()
        by_number = {t.number: t for t in live}
        for _, number, j in sorted(pairs, reverse=True):
            if number in used_tracks or j in used_faces:
                continue
            by_number[number].faces.append(faces[j])
            used_tracks.add(number)
            used_faces.add(j)
        for j, face in enumerate(faces):
            if j not in used_faces:
                self.tracks.append(Track(len(self.tracks), [face]))


# ------------------------------------------------------------------------------ timeline
@dataclass
class Timeline:
    """Who appears when in a video: tracks, and per person the time spans they are seen in."""

    video: str
    duration: float  # seconds, up to the last sampled frame
    every_ms: float
    frames: int
    tracks: list[Track]
    pipeline: str
    threshold: float

    def people(self) -> dict[str, list[tuple[float, float]]]:
        """Person -> merged (start, end) spans in seconds, in order of first appearance."""
        spans: dict[str, list[tuple[float, float]]] = {}
        for track in sorted(self.tracks, key=lambda t: t.start):
            spans.setdefault(track.person, []).append((track.start, track.end))
        join = 1.5 * self.every_ms / 1000.0  # spans a sampling step apart are one span
        merged: dict[str, list[tuple[float, float]]] = {}
        for person, items in spans.items():
            out: list[tuple[float, float]] = []
            for start, end in sorted(items):
                if out and start - out[-1][1] <= join:
                    out[-1] = (out[-1][0], max(out[-1][1], end))
                else:
                    out.append((start, end))
            merged[person] = out
        return merged

    def to_dict(self) -> dict[str, Any]:
        return {
            "video": self.video,
            "duration_s": round(self.duration, 3),
            "every_ms": self.every_ms,
            "frames_sampled": self.frames,
            "pipeline": self.pipeline,
            "threshold": self.threshold,
            "people": [
                {"person": person, "known": any(t.known for t in self.tracks if t.person == person),
                 "segments": [[round(a, 3), round(b, 3)] for a, b in spans],
                 "tracks": [t.number for t in self.tracks if t.person == person]}
                for person, spans in self.people().items()
            ],
            "tracks": [t.to_dict() for t in self.tracks],
        }

    def to_json(self, **kwargs: Any) -> str:
        return json.dumps(self.to_dict(), **kwargs)

    def strip(self, width: int = 900) -> np.ndarray:
        """The timeline as an RGB picture: a row per person, their face, and bars where they are seen."""
        from PIL import Image, ImageDraw, ImageFont

        people = self.people()
        row, left, top = 72, 230, 34
        height = top + row * max(1, len(people)) + 26
        picture = Image.new("RGB", (width, height), "white")
        draw = ImageDraw.Draw(picture)
        font = ImageFont.load_default(size=14)
        small = ImageFont.load_default(size=11)
        draw.text((8, 8), f"{Path(self.video).name}: who appears when ({self.frames} frames, one every "
                          f"{self.every_ms:g} ms)", fill="black", font=font)
        span = max(self.duration, 1e-6)
        scale = (width - left - 16) / span

        def x_of(t: float) -> float:
            return left + t * scale

        colours = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75)]
        for i, (person, spans) in enumerate(people.items()):
            y = top + i * row
            first = min((t for t in self.tracks if t.person == person), key=lambda t: t.start)
            if first.thumbnail is not None:
                picture.paste(Image.fromarray(first.thumbnail), (6, y + 4))
            draw.text((76, y + 26), person[:20], fill="black", font=font)
            draw.line([(left, y + row / 2), (width - 16, y + row / 2)], fill=(225, 225, 225), width=1)
            colour = colours[i % len(colours)] if person != "unknown" else (150, 150, 150)
            for start, end in spans:
                x0, x1 = x_of(start), max(x_of(end), x_of(start) + 3)
                draw.rectangle([x0, y + 20, x1, y + row - 20], fill=colour)
        axis_y = top + row * max(1, len(people)) + 4
        draw.line([(left, axis_y), (width - 16, axis_y)], fill="black")
        step = _tick_step(span)
        t = 0.0
        while t <= span + 1e-9:
            draw.line([(x_of(t), axis_y), (x_of(t), axis_y + 4)], fill="black")
            draw.text((x_of(t) - 8, axis_y + 6), f"{t:g} s", fill="black", font=small)
            t += step
        return np.asarray(picture)

    def save_strip(self, path: Union[str, os.PathLike], width: int = 900) -> str:
        from facekit.pictures.cards import save_png

        return save_png(path, self.strip(width))


def _tick_step(seconds: float) -> float:
    for step in (0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1800, 3600):
        if seconds / step <= 10:
            return float(step)
    return 7200.0


def video_timeline(
    path: Union[str, os.PathLike],
    gallery: Optional[Gallery] = None,
    pipeline: Union[Pipeline, str, os.PathLike, None] = None,
    *,
    every_ms: float = 200.0,
    min_frames: int = 2,
    k: int = 3,
    progress: Optional[Callable[[float], None]] = None,
) -> Timeline:
    """Who appears when in the video at ``path``.

    With a ``gallery`` (a :class:`facekit.collections.gallery.Gallery`, or anything with its
    ``pipeline``, ``match(vectors, k)`` and ``decide(candidates)``), tracks are named after
    known people by the same rule as photos;
    without one, ``pipeline`` (default: the bundled one) embeds the faces and every
    person is "unknown N". Tracks seen in fewer than ``min_frames`` sampled frames are
    dropped (a stray detection is not a person). ``progress`` gets each frame's time.
    """
    base = gallery.pipeline if gallery is not None else Pipeline.load(pipeline)
    runner = video_pipeline(base)
    metric = base.embedder.metric
    threshold = base.threshold
    strict, _ = default_threshold(base)
    tracker = Tracker(metric, threshold, strict, max_gap=max(2.0, 3 * every_ms / 1000.0))
    frames = 0
    last_time = 0.0
    for time, frame in sample_frames(path, every_ms):
        frames += 1
        last_time = time
        try:
            tracker.update(faces_in_frame(runner, frame, time))
        except FacekitError as exc:
            raise type(exc)(f"{path} at {time:.2f} s: {exc}") from exc
        if progress is not None:
            progress(time)
    tracks = [t for t in tracker.tracks if len(t.faces) >= min_frames]
    for number, track in enumerate(tracks):
        track.number = number
    if gallery is not None and tracks:
        # at least two candidates, so that the ratio test sees the runner-up (as identify does)
        for track, candidates in zip(tracks, gallery.match(np.stack([t.mean_vector for t in tracks]), max(k, 2))):
            track.candidates = list(candidates[:k])
            person = gallery.decide(candidates)  # the open-set rule photos get (threshold and ratio test)
            if person is not None:
                track.person, track.known = person, True
    unknown = [t for t in tracks if not t.known]
    if unknown:
        labels = cluster_vectors(np.stack([t.mean_vector for t in unknown]), metric, strict)
        order: dict[int, int] = {}
        for track, label in sorted(zip(unknown, labels), key=lambda tl: tl[0].start):
            order.setdefault(int(label), len(order) + 1)
            track.person = f"unknown {order[int(label)]}"
    return Timeline(str(path), last_time, float(every_ms), frames, tracks, base.name, float(threshold))


def video_duration(path: Union[str, os.PathLike]) -> float:
    """The video's length in seconds as its header says (0 when it does not say)."""
    import cv2

    capture = cv2.VideoCapture(str(path))
    try:
        fps = capture.get(cv2.CAP_PROP_FPS)
        frames = capture.get(cv2.CAP_PROP_FRAME_COUNT)
        return float(frames / fps) if fps and fps > 0 and frames and frames > 0 else 0.0
    finally:
        capture.release()


def identify_video(gallery: Gallery, path: str, k: int) -> dict[str, Any]:
    """``facekit identify``'s entry for a video: a face per track, and the timeline.

    Shows a progress bar in seconds of video when stderr is a terminal.
    """
    import sys

    from tqdm.auto import tqdm

    total = video_duration(path)
    with tqdm(total=round(total, 1) or None, desc=Path(path).name, unit="s", dynamic_ncols=True,
              disable=not sys.stderr.isatty()) as bar:

        def advance(seconds: float) -> None:
            bar.update(round(seconds - bar.n, 1))

        timeline = video_timeline(path, gallery, k=k, progress=advance)
    return {"input": path, "faces": [t.to_dict() for t in timeline.tracks], "timeline": timeline.to_dict()}

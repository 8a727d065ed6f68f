"""facekit.collections.video on a short video the test writes from real photos: A, nobody, B, then A and B."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

pytest.importorskip("facekit_dlib")

from facekit.errors import ImageError  # noqa: E402
from facekit.collections.video import box_iou, video_timeline  # noqa: E402

EXAMPLES = "face_recognition_examples/examples"
FPS = 10
#: (photo or None for an empty frame, seconds): Obama, nobody, Biden, both
SCENES = [("obama.jpg", 2.0), (None, 1.0), ("biden.jpg", 2.0), ("two_people.jpg", 2.0)]
EVERY_MS = 250


def write_video(path: Path, examples: Path) -> Path:
    import cv2

    from facekit.image import load_image

    width, height = 480, 360

    def letterbox(photo: np.ndarray) -> np.ndarray:
        scale = min(width / photo.shape[1], height / photo.shape[0])
        small = cv2.resize(photo, (int(photo.shape[1] * scale), int(photo.shape[0] * scale)), interpolation=cv2.INTER_AREA)
        frame = np.full((height, width, 3), 40, np.uint8)
        y, x = (height - small.shape[0]) // 2, (width - small.shape[1]) // 2
        frame[y : y + small.shape[0], x : x + small.shape[1]] = small
        return frame

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), FPS, (width, height))
    assert writer.isOpened()
    for photo, seconds in SCENES:
        frame = letterbox(load_image(examples / photo)) if photo else np.full((height, width, 3), 40, np.uint8)
        for _ in range(int(seconds * FPS)):
            writer.write(np.ascontiguousarray(frame[:, :, ::-1]))
    writer.release()
    return path


@pytest.fixture(scope="module")
def examples(faces_dir: Path) -> Path:
    return faces_dir / EXAMPLES


@pytest.fixture(scope="module")
def video(examples: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from facekit.plugins import reset_plugin_manager

    reset_plugin_manager()
    return write_video(tmp_path_factory.mktemp("video") / "scenes.avi", examples)


def spans_cover(spans: list[tuple[float, float]], start: float, end: float) -> bool:
    """Some span runs from about ``start`` to about ``end`` (one sampling step of slack)."""
    slack = 1.5 * EVERY_MS / 1000
    return any(abs(a - start) <= slack and abs(b - end) <= slack for a, b in spans)


def test_timeline_without_a_gallery_tells_people_apart(video: Path, tmp_path: Path) -> None:
    timeline = video_timeline(video, every_ms=EVERY_MS)
    people = timeline.people()
    assert list(people) == ["unknown 1", "unknown 2"]  # in order of first appearance
    obama, biden = people["unknown 1"], people["unknown 2"]
    assert spans_cover(obama, 0.0, 2.0) and spans_cover(obama, 5.0, 7.0)
    assert spans_cover(biden, 3.0, 7.0)  # one span: the cut to the group photo does not break it
    assert not any(a < 2.9 for a, _ in biden)  # nobody is seen in the empty second
    assert timeline.frames == pytest.approx(7000 / EVERY_MS, abs=2)
    data = json.loads(timeline.to_json())
    assert {p["person"] for p in data["people"]} == {"unknown 1", "unknown 2"}
    strip = Path(timeline.save_strip(tmp_path / "strip.png"))
    from facekit.image import load_image

    picture = load_image(strip)
    assert picture.shape[1] == 900 and picture.shape[0] > 2 * 60
    assert picture.std() > 20  # faces and bars drawn, not a blank page


def test_identify_names_known_people_and_leaves_others_unknown(video: Path, examples: Path, tmp_path: Path) -> None:
    from facekit.collections.gallery import Gallery

    gallery = Gallery.create(tmp_path / "g.db")
    gallery.add("Barack Obama", [examples / "obama2.jpg"])  # not a frame of the video
    timeline = video_timeline(video, gallery, every_ms=EVERY_MS)
    people = timeline.people()
    assert set(people) == {"Barack Obama", "unknown 1"}  # Biden is not in the gallery
    assert spans_cover(people["Barack Obama"], 0.0, 2.0) and spans_cover(people["Barack Obama"], 5.0, 7.0)
    assert spans_cover(people["unknown 1"], 3.0, 7.0)
    known = [t for t in timeline.tracks if t.known]
    assert known and all(t.candidates[0].person == "Barack Obama" and t.candidates[0].same for t in known)


def test_identify_command_reads_videos(video: Path, examples: Path, tmp_path: Path) -> None:
    from facekit.cli import main

    db = str(tmp_path / "g.db")
    runner = CliRunner()
    assert runner.invoke(main, ["gallery", "create", db]).exit_code == 0
    for name, photo in (("Barack Obama", "obama2.jpg"), ("Joe Biden", "knn_examples/train/biden/biden2.jpg")):
        added = runner.invoke(main, ["gallery", "add", db, name, str(examples / photo)])
        assert added.exit_code == 0, added.output
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42 but nothing after")
    result = runner.invoke(main, ["identify", db, str(video), str(broken), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    (entry,) = report["inputs"]
    timeline = {p["person"]: p["segments"] for p in entry["timeline"]["people"]}
    assert set(timeline) == {"Barack Obama", "Joe Biden"}
    assert spans_cover([tuple(s) for s in timeline["Joe Biden"]], 3.0, 7.0)
    assert {f["person"] for f in entry["faces"]} == {"Barack Obama", "Joe Biden"}
    assert [f["input"] for f in report["failures"]] == [str(broken)]


def test_unreadable_video_is_a_clear_error(tmp_path: Path) -> None:
    broken = tmp_path / "broken.avi"
    broken.write_bytes(b"RIFF\x00\x00\x00\x00AVI garbage")
    with pytest.raises(ImageError, match="broken.avi"):
        video_timeline(broken)


def test_box_iou() -> None:
    assert box_iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert box_iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(50 / 150)
    assert box_iou((0, 0, 10, 10), (20, 20, 30, 30)) == 0.0

"""``facekit gallery``, ``facekit identify`` and ``facekit search`` with real photos, as the issue asks:
enrol from shared photos, identify a third photo of a known person, an unknown person comes out
"unknown", a photo of two people gives two faces; a killed ``gallery add`` leaves a whole gallery."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from facekit.cli import main

EXAMPLES = "face_recognition_examples/examples"


def run(*args: str) -> "object":
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def gallery(tmp_path_factory: pytest.TempPathFactory, faces_dir: Path) -> Path:
    path = tmp_path_factory.mktemp("cli") / "people.db"
    ex = faces_dir / EXAMPLES
    assert run("gallery", "create", path).exit_code == 0
    bad = path.parent / "notes.jpg"
    bad.write_text("not a photo")
    result = run("gallery", "add", path, "Barack Obama", ex / "obama.jpg", bad, ex / "obama2.jpg")
    assert result.exit_code == 0, result.output
    assert "Barack Obama: 2 photo(s) added, 0 already there, 1 skipped" in result.stdout
    assert f"skipped: {bad}: not a recognised image format" in result.stderr
    assert run("gallery", "add", path, "Joe Biden", ex / "biden.jpg").exit_code == 0
    assert run("gallery", "add", path, "Kit", ex / "knn_examples/train/kit_harington/john1.jpeg").exit_code == 0
    return path


def test_identify_json_known_unknown_and_two_faces(gallery: Path, faces_dir: Path) -> None:
    ex = faces_dir / EXAMPLES
    third = ex / "knn_examples/test/obama1.jpg"
    stranger = ex / "knn_examples/train/rose_leslie/img1.jpg"
    two = ex / "two_people.jpg"
    result = run("identify", gallery, third, stranger, two, gallery.parent / "missing.jpg", "--json", "-k", "2")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    by_input = {Path(item["input"]).name: item["faces"] for item in data["inputs"]}
    assert [f["person"] for f in by_input["obama1.jpg"]] == ["Barack Obama"]
    candidate = by_input["obama1.jpg"][0]["candidates"][0]
    assert candidate["same"] and candidate["probability"] > 0.9 and candidate["metric"] == "euclidean"
    assert len(by_input["obama1.jpg"][0]["candidates"]) == 2
    assert [f["person"] for f in by_input["img1.jpg"]] == ["unknown"]
    assert by_input["img1.jpg"][0]["candidates"][0]["same"] is False
    faces = sorted(by_input["two_people.jpg"], key=lambda f: f["box"][0])
    assert [f["person"] for f in faces] == ["Barack Obama", "Joe Biden"]
    assert all(len(f["box"]) == 4 for f in faces)
    assert [Path(f["input"]).name for f in data["failures"]] == ["missing.jpg"]


def test_identify_text_list_and_search(gallery: Path, faces_dir: Path) -> None:
    result = run("identify", gallery, faces_dir / EXAMPLES / "two_people.jpg")
    assert result.exit_code == 0 and "2 face(s)" in result.stdout
    assert "Joe Biden (closest Joe Biden" in result.stdout
    listing = run("gallery", "list", gallery, "--json")
    assert json.loads(listing.stdout) == [
        {"name": "Barack Obama", "photos": 2, "faces": 2},
        {"name": "Joe Biden", "photos": 1, "faces": 1},
        {"name": "Kit", "photos": 1, "faces": 1},
    ]
    found = run("search", gallery, faces_dir / EXAMPLES / "obama_small.jpg", "-k", "2", "--json")
    hits = json.loads(found.stdout)["hits"]
    assert [h["person"] for h in hits] == ["Barack Obama", "Barack Obama"] and hits[0]["score"] <= hits[1]["score"]


def test_rename_merge_remove_and_errors(tmp_path: Path, gallery: Path, faces_dir: Path) -> None:
    copy = tmp_path / "copy.db"
    copy.write_bytes(gallery.read_bytes())
    assert run("gallery", "rename", copy, "Kit", "Kit H").exit_code == 0
    assert run("gallery", "add", copy, "Jon Snow", faces_dir / EXAMPLES / "knn_examples/train/kit_harington/john2.jpeg").exit_code == 0
    merged = run("gallery", "merge", copy, "Jon Snow", "Kit H")
    assert merged.exit_code == 0 and "1 photo(s) moved" in merged.stdout
    removed = run("gallery", "remove", copy, "Joe Biden")
    assert removed.exit_code == 0 and "removed Joe Biden (1 photo(s))" in removed.stdout
    rows = [line.rsplit(None, 2) for line in run("gallery", "list", copy).stdout.splitlines()[1:-1]]
    assert rows == [["Barack Obama", "2", "2"], ["Kit H", "2", "2"]]
    missing = run("gallery", "remove", copy, "Nobody")
    assert missing.exit_code == 2 and "no person named 'Nobody'" in missing.stderr
    again = run("gallery", "create", copy)
    assert again.exit_code == 2 and "already exists" in again.stderr
    typo = run("gallery", "create", tmp_path / "new.db", "--index", "exact", "--index-param", "batch_sise=8")
    assert typo.exit_code == 2 and "did you mean 'batch_size'" in typo.stderr and not (tmp_path / "new.db").exists()
    foreign = tmp_path / "notes.db"
    foreign.write_text("hello")
    refused = run("identify", foreign, faces_dir / EXAMPLES / "obama.jpg")
    assert refused.exit_code == 2 and "not a facekit gallery" in refused.stderr
    other_model = run("identify", copy, faces_dir / EXAMPLES / "obama.jpg", "-p", "mediapipe")
    assert other_model.exit_code == 2 and "cannot be compared" in other_model.stderr


def test_gallery_add_killed_leaves_the_gallery_before_or_complete(tmp_path: Path, gallery: Path, faces_dir: Path) -> None:
    copy = tmp_path / "copy.db"
    copy.write_bytes(gallery.read_bytes())
    ex = faces_dir / EXAMPLES
    photos = [ex / "knn_examples/train/rose_leslie/img1.jpg", ex / "knn_examples/train/rose_leslie/img2.jpg",
              ex / "obama-720p.jpg", ex / "obama-1080p.jpg"]  # the same person, as far as this test cares
    proc = subprocess.Popen([sys.executable, "-m", "facekit", "gallery", "add", str(copy), "Batch", *map(str, photos)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(2.5)  # past start-up (about 2 s), into the embedding of the photos (about 1 s each)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    listing = json.loads(run("gallery", "list", copy, "--json").stdout)
    batch = [p for p in listing if p["name"] == "Batch"]
    assert batch in ([], [{"name": "Batch", "photos": 4, "faces": 4}]), batch
    assert [p["name"] for p in listing if p["name"] != "Batch"] == ["Barack Obama", "Joe Biden", "Kit"]

"""facekit.Gallery: enrolment, identify/search on real photos, the exact index, and reliability
(SIGKILL mid-transaction, readers beside a writer, damaged and foreign files, another model)."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from facekit.builtin.index import ExactIndex
from facekit.collections.gallery import Gallery
from facekit.collections.identification import distance_ratio, person_scores
from facekit.errors import ConfigError
from facekit.pipeline import Pipeline
from facekit.types import Embedding

EXAMPLES = "face_recognition_examples/examples"
MODEL = "dlib_face_recognition_resnet_model_v1"  # the default pipeline's model, for synthetic vectors


@pytest.fixture(scope="module")
def pipeline() -> Pipeline:
    return Pipeline.load("default")


@pytest.fixture(scope="module")
def enrolled(tmp_path_factory: pytest.TempPathFactory, faces_dir: Path, pipeline: Pipeline) -> Path:
    """A gallery of Obama (2 photos), Biden (2) and Kit Harington (1), made once for the module."""
    path = tmp_path_factory.mktemp("gallery") / "people.db"
    ex = faces_dir / EXAMPLES
    with Gallery.create(path, pipeline) as gallery:
        gallery.add("Barack Obama", [ex / "obama.jpg", ex / "obama2.jpg"])
        gallery.add("Joe Biden", [ex / "biden.jpg", ex / "knn_examples/train/biden/biden2.jpg"])
        gallery.add("Kit Harington", [ex / "knn_examples/train/kit_harington/john1.jpeg"])
    return path


def _model_name(pipeline: Pipeline) -> str:
    return pipeline.embedder.model_name


# --------------------------------------------------------------------------- the exact index
@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_exact_index_matches_brute_force_in_any_batch_size(metric: str) -> None:
    rng = np.random.default_rng(1)
    stored, queries = rng.normal(size=(500, 16)).astype(np.float32), rng.normal(size=(37, 16)).astype(np.float32)
    index = ExactIndex(batch_size=8)
    index.build(stored, metric)
    scores, ids = index.search(queries, 5)
    if metric == "euclidean":
        full = np.linalg.norm(queries[:, None] - stored[None], axis=2)
        order = np.argsort(full, axis=1)[:, :5]
    else:
        unit = stored / np.linalg.norm(stored, axis=1, keepdims=True)
        full = (queries / np.linalg.norm(queries, axis=1, keepdims=True)) @ unit.T
        order = np.argsort(-full, axis=1)[:, :5]
    assert ids.shape == (37, 5) and (ids == order).all()
    np.testing.assert_allclose(scores, np.take_along_axis(full, order, axis=1), atol=1e-4)
    assert index.search(queries[:2], 1000)[1].shape == (2, 500)  # k beyond the size: everything


def test_the_index_kind_is_registered_through_its_hook() -> None:
    from facekit.plugins import get_registry

    registration = get_registry().components["index"]["exact"]
    assert registration.cls is ExactIndex and registration.plugin == "facekit.builtin"
    with pytest.raises(ConfigError, match="unknown index 'exatc'; did you mean 'exact'"):
        get_registry().get("index", "exatc")


def test_template_rules_score_in_the_metric() -> None:
    query = np.array([0.0, 0.0])
    photos = np.array([[0.3, 0.0], [0.0, 0.5]])
    assert person_scores(query, photos, "euclidean", "max") == pytest.approx(0.3)
    assert person_scores(query, photos, "euclidean", "mean_score") == pytest.approx(0.4)
    assert person_scores(query, photos, "euclidean", "mean") == pytest.approx(np.hypot(0.15, 0.25))
    with pytest.raises(ConfigError, match="unknown template rule"):
        person_scores(query, photos, "euclidean", "median")


# --------------------------------------------------------------------------- real photos
def test_identify_every_face_open_set(enrolled: Path, faces_dir: Path) -> None:
    ex = faces_dir / EXAMPLES
    with Gallery.open(enrolled) as gallery:
        assert [(p.name, p.photos) for p in gallery.people()] == [("Barack Obama", 2), ("Joe Biden", 2), ("Kit Harington", 1)]
        third = gallery.identify(ex / "knn_examples/test/obama1.jpg")
        assert len(third) == 1 and third[0].person == "Barack Obama"
        best = third[0].best
        assert best.same and best.probability > 0.9 and best.impostor_percentile > 0.99
        assert [c.person for c in third[0].candidates][0] == "Barack Obama" and third[0].ratio < 0.8
        assert gallery.decide(third[0].candidates) == "Barack Obama"
        ambiguous = (best, replace(third[0].candidates[1], score=best.score * 1.1))  # a second person almost as near
        assert gallery.decide(ambiguous) is None and gallery.decide(ambiguous[:1]) == "Barack Obama"

        stranger = gallery.identify(ex / "knn_examples/train/rose_leslie/img1.jpg")
        assert len(stranger) == 1 and stranger[0].person is None and stranger[0].to_dict()["person"] == "unknown"

        two = gallery.identify(ex / "two_people.jpg")  # Obama left, Biden right
        assert len(two) == 2
        by_x = sorted(two, key=lambda f: f.face.box[0])
        assert [f.person for f in by_x] == ["Barack Obama", "Joe Biden"]

        # a decoded frame (RGB array) works like a path
        from facekit.image import load_image

        frame = load_image(ex / "knn_examples/test/obama1.jpg")
        assert gallery.identify(frame)[0].person == "Barack Obama"


def test_search_ranks_the_persons_photos_first(enrolled: Path, faces_dir: Path) -> None:
    with Gallery.open(enrolled) as gallery:
        hits = gallery.search(faces_dir / EXAMPLES / "obama_small.jpg", k=3)
    assert [h.person for h in hits] == ["Barack Obama", "Barack Obama", "Joe Biden"]
    assert hits[0].score <= hits[1].score <= hits[2].score and hits[0].same and not hits[2].same
    assert Path(hits[0].photo).name in {"obama.jpg", "obama2.jpg"}


def test_adding_a_photo_twice_is_a_no_op_and_people_can_be_renamed_merged_removed(
    tmp_path: Path, faces_dir: Path, pipeline: Pipeline
) -> None:
    ex = faces_dir / EXAMPLES
    with Gallery.create(tmp_path / "g.db", pipeline) as gallery:
        first = gallery.add("Obama", [ex / "obama.jpg"])
        # the same bytes under another path: knn_examples/train/obama/obama.jpg is a copy
        again = gallery.add("Obama", [ex / "knn_examples/train/obama/obama.jpg", tmp_path / "missing.jpg"])
        assert len(first.added) == 1 and len(again.added) == 0 and len(again.unchanged) == 1
        assert "cannot read" in again.failures[0][1]
        other = gallery.add("Someone", [ex / "obama.jpg"])
        assert "already in the gallery as a photo of 'Obama'" in other.failures[0][1]
        assert "Someone" not in gallery  # no photo, no person
        gallery.add("Barack", [ex / "obama2.jpg"])
        gallery.rename("Obama", "Barack Obama")
        with pytest.raises(ConfigError, match="already in the gallery; merge"):
            gallery.rename("Barack", "Barack Obama")
        assert gallery.merge("Barack", "Barack Obama") == 1
        assert [(p.name, p.photos, p.faces) for p in gallery.people()] == [("Barack Obama", 2, 2)]
        with pytest.raises(ConfigError, match="no person named 'Barak Obama'; did you mean 'Barack Obama'"):
            gallery.remove("Barak Obama")
        assert gallery.remove("Barack Obama") == 2
        assert gallery.people() == [] and len(gallery) == 0


def test_a_gallery_refuses_another_models_embeddings(enrolled: Path) -> None:
    with pytest.raises(ConfigError, match="cannot be compared"):
        Gallery.open(enrolled, "mediapipe")  # another aligner: another vector space
    with Gallery.open(enrolled) as gallery:
        foreign = Embedding(np.zeros(512, dtype=np.float32), "japanese_face_v1", "cosine", source="x")
        with pytest.raises(ConfigError, match="this gallery holds 128-D embeddings"):
            gallery.add_embeddings("Someone", [foreign])
        with pytest.raises(ConfigError, match="this gallery holds 128-D embeddings"):
            gallery.search(foreign)  # a query is checked like an enrolment, not scored as nonsense


# --------------------------------------------------------------------------- damaged and foreign files
def test_missing_foreign_and_damaged_files_give_clear_errors(tmp_path: Path, pipeline: Pipeline) -> None:
    with pytest.raises(ConfigError, match="no gallery there; make one with `facekit gallery create"):
        Gallery.open(tmp_path / "nothing.db")
    noise = tmp_path / "noise.db"
    noise.write_bytes(os.urandom(4096))
    with pytest.raises(ConfigError, match="not an SQLite database"):
        Gallery.open(noise)
    foreign = tmp_path / "foreign.db"
    with sqlite3.connect(foreign) as conn:
        conn.execute("CREATE TABLE songs (title TEXT)")
    conn.close()
    with pytest.raises(ConfigError, match=r"an SQLite database, but not a facekit gallery \(tables: songs\)"):
        Gallery.open(foreign)

    damaged = tmp_path / "damaged.db"
    with Gallery.create(damaged, pipeline) as gallery:
        rng = np.random.default_rng(0)
        gallery.add_embeddings("Many", [Embedding(v, _model_name(pipeline), "euclidean", source=f"s{i}")
                                        for i, v in enumerate(rng.normal(size=(2000, 128)).astype(np.float32))])
    data = bytearray(damaged.read_bytes())
    data[4096 * 3 : 4096 * 40] = os.urandom(4096 * 37)  # garbage over the tables' pages
    damaged.write_bytes(bytes(data))
    with pytest.raises(ConfigError, match="damaged or not a gallery"):
        with Gallery.open(damaged) as gallery:
            gallery.people()
            gallery.match(np.zeros((1, 128), dtype=np.float32))
    assert not list(tmp_path.glob("*.creating"))


# --------------------------------------------------------------------------- processes
_WORKER = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    from facekit.collections.gallery import Gallery
    from facekit.types import Embedding

    mode, path, model = sys.argv[1], sys.argv[2], sys.argv[3]
    gallery = Gallery.open(path)
    rng = np.random.default_rng(int(time.time() * 1e6) % 2**32)
    if mode == "big":  # one long transaction
        gallery.add_embeddings("Big", [Embedding(v, model, "euclidean", source=f"big{i}")
                                       for i, v in enumerate(rng.normal(size=(60000, 128)).astype(np.float32))])
    elif mode == "write":  # many small transactions of 10 faces
        for t in range(40):
            gallery.add_embeddings(f"P{t}", [Embedding(v, model, "euclidean", source=f"w{t}-{i}")
                                             for i, v in enumerate(rng.normal(size=(10, 128)).astype(np.float32))])
    else:  # read: every state seen must be whole transactions
        seen = set()
        deadline = time.time() + 60
        while time.time() < deadline:
            people = gallery.people()
            counts = {p.photos for p in people if p.name.startswith("P")}
            assert counts <= {10}, counts
            faces = len(gallery)
            assert (faces - 3) % 10 == 0, faces
            ranked = gallery.match(rng.normal(size=(2, 128)).astype(np.float32), k=3)
            assert all(1 <= len(r) <= 3 for r in ranked)
            seen.add(faces)
            if faces == 403:
                break
        print(len(seen))
    """
)


def _run_worker(tmp_path: Path, *args: str) -> subprocess.Popen:
    script = tmp_path / "worker.py"
    script.write_text(_WORKER)
    return subprocess.Popen([sys.executable, str(script), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _three_faces(path: Path, pipeline: Pipeline) -> None:
    with Gallery.create(path, pipeline) as gallery:
        rng = np.random.default_rng(0)
        gallery.add_embeddings("Base", [Embedding(v, _model_name(pipeline), "euclidean", source=f"b{i}")
                                        for i, v in enumerate(rng.normal(size=(3, 128)).astype(np.float32))])


def test_sigkill_in_the_middle_of_an_add_leaves_the_gallery_as_before(tmp_path: Path, pipeline: Pipeline) -> None:
    path = tmp_path / "g.db"
    _three_faces(path, pipeline)
    wal = Path(str(path) + "-wal")
    proc = _run_worker(tmp_path, "big", str(path), _model_name(pipeline))
    deadline = time.time() + 60
    while time.time() < deadline and proc.poll() is None and not (wal.exists() and wal.stat().st_size > 2_000_000):
        time.sleep(0.01)
    assert proc.poll() is None, f"the writer ended before it could be killed: {proc.communicate()}"
    proc.send_signal(signal.SIGKILL)  # the transaction is being written: pages are in the WAL
    proc.wait()
    with Gallery.open(path) as gallery:
        assert [(p.name, p.photos) for p in gallery.people()] == [("Base", 3)]
        assert len(gallery) == 3
        assert len(gallery.match(np.zeros((1, 128), dtype=np.float32), k=5)[0]) == 1


def test_readers_see_whole_transactions_while_a_writer_writes(tmp_path: Path, pipeline: Pipeline) -> None:
    path = tmp_path / "g.db"
    _three_faces(path, pipeline)
    readers = [_run_worker(tmp_path, "read", str(path), _model_name(pipeline)) for _ in range(2)]
    writer = _run_worker(tmp_path, "write", str(path), _model_name(pipeline))
    out, err = writer.communicate(timeout=120)
    assert writer.returncode == 0, err
    for reader in readers:
        out, err = reader.communicate(timeout=120)
        assert reader.returncode == 0, err
        assert int(out.strip()) >= 1
    with Gallery.open(path) as gallery:
        assert len(gallery) == 403 and len(gallery.people()) == 41


def test_people_with_many_photos_do_not_hide_the_second_candidate(tmp_path: Path, pipeline: Pipeline) -> None:
    rng = np.random.default_rng(3)
    crowd = rng.normal(size=(1, 128)) + 0.01 * rng.normal(size=(200, 128))  # 200 photos of one person
    with Gallery.create(tmp_path / "g.db", pipeline) as gallery:
        model = _model_name(pipeline)
        photos = [Embedding(v, model, "euclidean", source=f"m{i}") for i, v in enumerate(crowd.astype(np.float32))]
        gallery.add_embeddings("Many", photos)
        gallery.add_embeddings("Other", [Embedding(rng.normal(size=128).astype(np.float32), model, "euclidean", source="o")])
        ranked = gallery.match(crowd[:1].astype(np.float32), k=2)[0]
    assert [c.person for c in ranked] == ["Many", "Other"]


def test_distance_ratio_uses_distances_for_both_metrics() -> None:
    from facekit.collections.identification import Candidate

    def candidate(score: float, metric: str) -> Candidate:
        return Candidate("x", score, metric, True, None, None, "p")

    assert distance_ratio(candidate(0.3, "euclidean"), candidate(0.6, "euclidean")) == pytest.approx(0.5)
    assert distance_ratio(candidate(0.8, "cosine"), candidate(0.6, "cosine")) == pytest.approx(0.5)
    assert distance_ratio(candidate(0.8, "cosine")) == 0.0

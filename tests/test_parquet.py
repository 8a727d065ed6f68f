"""facekit's Parquet layout from the local engines: one row per face, failures with reasons,
resumable, readable in chunks, importable into a gallery and a search index."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from facekit.collections import parquet
from facekit.cli import main
from facekit.engine import SequentialEngine
from facekit.errors import ConfigError
from facekit.pipeline import Pipeline
from facekit.testing import modules_imported_by

KNN = "face_recognition_examples/examples/knn_examples"


@pytest.fixture(scope="module")
def pipeline() -> Pipeline:
    return Pipeline.from_dict({**Pipeline.load("default").to_dict(), "workers": 1})


@pytest.fixture()
def photos(faces_dir: Path, tmp_path: Path) -> list[str]:
    """Three photos of two people in LFW's folder-per-person layout, a two-person photo, a broken file."""
    people = tmp_path / "people"
    for name, files in {"obama": ["obama.jpg", "obama2.jpg"], "biden": ["biden.jpg"]}.items():
        (people / name).mkdir(parents=True)
        for file in files:
            source = faces_dir / "face_recognition_examples/examples" / file
            (people / name / file).symlink_to(source)  # the photos stay in shared/, only links here
    broken = people / "obama" / "broken.jpg"
    broken.write_bytes(b"not a jpeg at all")
    return sorted(str(p) for p in people.rglob("*.jpg")) + [str(faces_dir / KNN / "test/obama_and_biden.jpg")]


def test_import_facekit_does_not_load_pyarrow() -> None:
    loaded = modules_imported_by("import facekit")
    assert not {m for m in loaded if m.split(".")[0] == "pyarrow"}


def test_local_engine_writes_faces_and_failures_and_resumes(pipeline: Pipeline, photos: list[str], tmp_path: Path) -> None:
    out = tmp_path / "out"
    report = parquet.embed_to_parquet(pipeline, photos[:3], out, engine=SequentialEngine(pipeline))
    assert (report.images, report.failures, report.skipped) == (3, 1, 0)
    manifest = parquet.read_manifest(out)
    assert manifest["model"] == pipeline.embedder.model_name and manifest["pipeline"] == pipeline.name

    rows = [b.to_pylist() for b in parquet.read_batches(out)]
    faces = sorted((r for batch in rows for r in batch), key=lambda r: r["source"])
    assert [Path(r["source"]).name for r in faces] == ["biden.jpg", "obama.jpg"]
    expected = pipeline.embed([f["source"] for f in faces])
    got = np.stack([np.asarray(f["vector"], np.float32) for f in faces])
    assert np.abs(got - np.stack([e.vector for e in expected])).max() <= 1e-5
    for row, embedding in zip(faces, expected):
        np.testing.assert_allclose(row["box"], embedding.face.face.box, atol=1e-3)
        assert len(row["landmarks"]) == 2 * len(embedding.face.face.landmarks.points)
        assert row["face_index"] == 0 and row["model"] == manifest["model"] and row["pipeline"] == pipeline.name
    failures = [r for b in parquet.read_batches(out, table=parquet.FAILURES) for r in b.to_pylist()]
    assert [(Path(f["source"]).name, f["error_type"]) for f in failures] == [("broken.jpg", "ImageError")]

    parts = sorted((out / parquet.FACES).iterdir())
    again = parquet.embed_to_parquet(pipeline, photos, out, engine=SequentialEngine(pipeline))
    assert (again.skipped, again.images) == (3, 2), "only the two new photos are computed"
    assert set(parts) < set((out / parquet.FACES).iterdir()), "earlier parts are kept as they were"
    assert parquet.count_rows(out) == 4
    assert parquet.embed_to_parquet(pipeline, photos, out).images == 0


def test_a_folder_of_other_vectors_is_refused(pipeline: Pipeline, tmp_path: Path) -> None:
    parquet.open_dataset(tmp_path / "out", pipeline)
    other = Pipeline.from_dict({**pipeline.to_dict(), "aligner": {"name": "dlib.chip5", "params": {"size": 150, "padding": 0.3}}})
    with pytest.raises(ConfigError, match="makes other embeddings"):
        parquet.open_dataset(tmp_path / "out", other)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="not empty"):
        parquet.open_dataset(tmp_path / "busy", pipeline)


def test_inputs_from_text_csv_and_parquet(photos: list[str], tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    listing = tmp_path / "list.txt"
    listing.write_text("# my photos\n" + "\n".join(photos[:2]) + "\n\n")
    (tmp_path / "list.csv").write_text("id,path\n" + "".join(f"{i},{p}\n" for i, p in enumerate(photos[2:4])))
    pq.write_table(pa.table({"file_name": photos[4:]}), tmp_path / "list.parquet")
    with pytest.raises(ConfigError, match="--path-column"):
        parquet.input_paths([tmp_path / "list.parquet"])
    got = parquet.input_paths([listing, tmp_path / "list.csv"]) + parquet.input_paths([tmp_path / "list.parquet"], column="file_name")
    assert got == photos
    assert parquet.input_paths([Path(photos[0]).parent.parent]) == sorted(photos[:4])


def test_cli_folder_output_gallery_import_and_chunked_index(photos: list[str], tmp_path: Path) -> None:
    out = tmp_path / "embedded"
    result = CliRunner().invoke(main, ["embed", *photos, "-o", str(out), "--workers", "1", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "4 face(s) from 5 image(s) (1 without a face" in result.output
    gallery_path = tmp_path / "g.db"
    assert CliRunner().invoke(main, ["gallery", "create", str(gallery_path)]).exit_code == 0
    result = CliRunner().invoke(main, ["gallery", "import", str(gallery_path), str(out)])
    assert result.exit_code == 0, result.output
    assert "4 photo(s) added" in result.output
    from facekit.collections.gallery import Gallery

    with Gallery.open(gallery_path) as gallery:
        assert sorted(p.name for p in gallery.people()) == ["biden", "obama", "test"]  # folder names
    result = CliRunner().invoke(main, ["gallery", "import", str(gallery_path), str(out), "--name-column", "who"])
    assert result.exit_code != 0 and "no column 'who'" in result.output

    pytest.importorskip("facekit_faiss")
    from facekit_faiss.index import FaissIndex

    from facekit.builtin.index import ExactIndex

    index = parquet.build_index(FaissIndex(FaissIndex.Params(method="flat")), out, batch_rows=2)
    exact = ExactIndex()
    exact.build(np.concatenate(list(parquet.iter_vectors(out))), "euclidean")
    queries = np.concatenate(list(parquet.iter_vectors(out)))
    assert len(index) == 4
    assert np.array_equal(index.search(queries, 2)[1], exact.search(queries, 2)[1])


def test_faiss_ivf_built_from_chunks_finds_what_exact_search_finds() -> None:
    pytest.importorskip("facekit_faiss")
    from facekit_faiss.index import FaissIndex

    from facekit.builtin.index import ExactIndex

    rng = np.random.default_rng(0)
    people = rng.normal(size=(400, 16))
    vectors = (np.repeat(people, 5, axis=0) + 0.2 * rng.normal(size=(2000, 16))).astype(np.float32)
    index = FaissIndex(FaissIndex.Params(method="ivf", nlist=20, nprobe=20))  # every list probed: exact
    index.build_from_chunks((vectors[i : i + 300] for i in range(0, 2000, 300)), "euclidean", len(vectors))
    exact = ExactIndex()
    exact.build(vectors, "euclidean")
    assert len(index) == 2000 and index.method == "ivf"
    assert np.array_equal(index.search(vectors[:50], 5)[1], exact.search(vectors[:50], 5)[1])

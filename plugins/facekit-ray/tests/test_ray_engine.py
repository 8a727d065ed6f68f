"""The Ray engine on a local Ray instance (2 CPUs, no dashboard, started here): the same vectors
as the local engine, failures recorded, resumable, the Engine interface, and clear errors."""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
from click.testing import CliRunner

from facekit.collections import parquet
from facekit.cli import main
from facekit.engine import SequentialEngine
from facekit.errors import ConfigError, DependencyError
from facekit.pipeline import Pipeline
from facekit_ray import RayEngine

EXAMPLES = "face_recognition_examples/examples"


@pytest.fixture(scope="module")
def ray_instance() -> Iterator[None]:
    import ray

    temp = tempfile.mkdtemp(prefix="fkray", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
    ray.init(num_cpus=2, include_dashboard=False, _temp_dir=temp, log_to_driver=False)
    try:
        yield
    finally:
        ray.shutdown()
        shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture(scope="module")
def pipeline() -> Pipeline:
    return Pipeline.from_dict({**Pipeline.load("default").to_dict(), "workers": 1})


@pytest.fixture()
def photos(faces_dir: Path, tmp_path: Path) -> list[str]:
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 a truncated jpeg")
    names = ["obama.jpg", "biden.jpg", "two_people.jpg", "obama2.jpg", "alex-lacamoire.png"]
    return [str(faces_dir / EXAMPLES / n) for n in names[:3]] + [str(broken)] + [str(faces_dir / EXAMPLES / n) for n in names[3:]]


def _faces(out: Path) -> list[dict]:
    rows = [r for batch in parquet.read_batches(out) for r in batch.to_pylist()]
    return sorted(rows, key=lambda r: (r["source"], r["face_index"]))


def test_same_vectors_as_the_local_engine_failures_and_resume(ray_instance: None, pipeline: Pipeline,
                                                              photos: list[str], tmp_path: Path) -> None:
    local = tmp_path / "local"
    parquet.embed_to_parquet(pipeline, photos, local, engine=SequentialEngine(pipeline))
    on_ray = tmp_path / "ray"
    engine = RayEngine(pipeline, workers=1, embed_batch=2)  # parts of two images: resume sees several
    first = parquet.embed_to_parquet(pipeline, photos[:4], on_ray, engine=engine)
    assert (first.images, first.failures, first.skipped) == (4, 1, 0)
    second = parquet.embed_to_parquet(pipeline, photos, on_ray, engine=engine)
    assert (second.images, second.skipped) == (2, 4), "a rerun computes only what is not written yet"
    assert parquet.embed_to_parquet(pipeline, photos, on_ray, engine=engine).images == 0

    expected, got = _faces(local), _faces(on_ray)
    assert [(r["source"], r["face_index"]) for r in got] == [(r["source"], r["face_index"]) for r in expected]
    assert len(got) == len(photos) - 1
    vectors = [np.stack([np.asarray(r["vector"], np.float32) for r in rows]) for rows in (expected, got)]
    assert np.abs(vectors[0] - vectors[1]).max() <= 1e-5
    for a, b in zip(expected, got):
        assert a["box"] == b["box"] and a["landmarks"] == b["landmarks"] and a["faces_found"] == b["faces_found"]
    assert any(r["faces_found"] == 2 for r in got), "two_people.jpg: both faces counted"
    failures = [r for b in parquet.read_batches(on_ray, table=parquet.FAILURES) for r in b.to_pylist()]
    assert [(Path(f["source"]).name, f["error_type"]) for f in failures] == [("broken.jpg", "ImageError")]
    assert "broken.jpg" in failures[0]["error"]
    engine.close()


def test_map_faces_keeps_input_order(ray_instance: None, pipeline: Pipeline, photos: list[str]) -> None:
    with RayEngine(pipeline, align_batch=2) as engine:
        results = list(engine.map_faces(photos))
    assert [r.item for r in results] == photos
    assert [len(r.faces) for r in results] == [1, 1, 1, 0, 1, 1]
    assert type(results[3].error).__name__ == "ImageError"
    local = pipeline.align(photos[0])[0].chip
    assert np.array_equal(results[0].faces[0].chip, local)


def test_cli_engine_ray(ray_instance: None, photos: list[str], tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["embed", *photos[:4], "--engine", "ray", "-o", str(out), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "3 face(s) from 4 image(s) (1 without a face" in result.output
    result = CliRunner().invoke(main, ["embed", *photos[:4], "--engine", "ray", "-o", str(tmp_path / "v.npz")])
    assert result.exit_code != 0 and "Parquet folder" in result.output


def test_wrong_address_is_said_in_seconds(pipeline: Pipeline) -> None:
    started = time.perf_counter()
    with pytest.raises(ConfigError, match=r"no Ray cluster answers at '127\.0\.0\.1:9'.*ray start --head"):
        RayEngine(pipeline, "127.0.0.1:9").connect()
    with pytest.raises(ConfigError, match="is not HOST:PORT"):
        RayEngine(pipeline, "my-head-node").connect()
    assert time.perf_counter() - started < 10


def test_missing_ray_names_the_install_command(pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    with pytest.raises(DependencyError, match="pip install -e plugins/facekit-ray"):
        RayEngine(pipeline).connect()


def test_loading_the_plugin_imports_neither_ray_nor_pyarrow() -> None:
    from facekit.testing import modules_imported_by

    loaded = modules_imported_by("from facekit.plugins import get_registry; get_registry(); import facekit_ray")
    assert not {m.split(".")[0] for m in loaded} & {"ray", "pyarrow", "pandas"}

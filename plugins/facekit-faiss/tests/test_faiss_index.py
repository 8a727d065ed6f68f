"""The ``faiss`` search index: registered through the hook, same answers as the exact index where it
is exact, high recall where it is approximate, and a gallery on real photos identifies through it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from facekit.collections.gallery import Gallery
from facekit.builtin.index import ExactIndex
from facekit.plugins import get_registry
from facekit.testing import modules_imported_by
from facekit.types import Embedding

EXAMPLES = "face_recognition_examples/examples"


def clustered(count: int, dim: int = 32, per_cluster: int = 5, seed: int = 0) -> np.ndarray:
    """Vectors in tight groups (several photos per person), not uniform noise."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(count // per_cluster + 1, dim))
    return (np.repeat(centres, per_cluster, axis=0)[:count] + 0.3 * rng.normal(size=(count, dim))).astype(np.float32)


def test_registered_and_light_to_load() -> None:
    from facekit_faiss.index import FaissIndex

    registration = get_registry().components["index"]["faiss"]
    assert registration.cls is FaissIndex and registration.plugin == "faiss" and FaissIndex.exact is False
    assert "faiss" not in modules_imported_by("import facekit_faiss")


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
@pytest.mark.parametrize("method", ["flat", "ivf"])
def test_exact_settings_give_the_exact_answer(metric: str, method: str) -> None:
    from facekit_faiss.index import FaissIndex

    stored, queries = clustered(3000), clustered(50, seed=1)
    exact = ExactIndex()
    exact.build(stored, metric)
    want_scores, want_ids = exact.search(queries, 10)
    index = FaissIndex(method=method, nprobe=10_000)  # every list searched: exact
    index.build(stored, metric)
    scores, ids = index.search(queries, 10)
    assert index.method == method and len(index) == 3000
    assert (ids == want_ids).mean() > 0.99  # ties may swap
    np.testing.assert_allclose(scores, want_scores, atol=1e-3)


def test_approximate_methods_keep_recall_high() -> None:
    from facekit_faiss.index import FaissIndex

    stored, queries = clustered(20_000), clustered(200, seed=2)
    exact = ExactIndex()
    exact.build(stored, "euclidean")
    _, truth = exact.search(queries, 10)
    # auto above exact_below is HNSW; IVF trades recall for memory (about 0.92 here)
    for params, least in (({"method": "auto", "exact_below": 1000}, 0.97), ({"method": "ivf"}, 0.85)):
        index = FaissIndex(**params)
        index.build(stored, "euclidean")
        _, ids = index.search(queries, 10)
        recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ids, truth)])
        assert recall >= least, (params, recall)
    assert FaissIndex(method="auto").search(queries, 3)[1].shape == (200, 0)  # empty: nothing found
    small = FaissIndex()
    small.build(stored[:100], "euclidean")
    assert small.method == "flat" and small.search(queries[:1], 500)[1].shape == (1, 100)


def test_a_gallery_identifies_through_faiss(tmp_path: Path, faces_dir: Path) -> None:
    ex = faces_dir / EXAMPLES
    with Gallery.create(tmp_path / "g.db", index="faiss") as gallery:
        gallery.add("Barack Obama", [ex / "obama.jpg"])
        gallery.add("Joe Biden", [ex / "biden.jpg"])
        found = gallery.identify(ex / "two_people.jpg")
    assert sorted(f.person for f in found) == ["Barack Obama", "Joe Biden"]
    with Gallery.open(tmp_path / "g.db", index="exact") as exact, Gallery.open(tmp_path / "g.db") as approx:
        assert approx._index_name == "faiss"
        query = ex / "obama_small.jpg"
        assert [h.person for h in approx.search(query, 2)] == [h.person for h in exact.search(query, 2)]


def test_a_gallery_keeps_the_built_index_until_its_faces_change(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from facekit_faiss.index import FaissIndex

    model = "dlib_face_recognition_resnet_model_v1"
    vectors = clustered(3000, dim=128)
    params = {"method": "hnsw", "ef_search": 64}
    with Gallery.create(tmp_path / "g.db", index="faiss", index_params=params) as gallery:
        for start in range(0, 3000, 1000):
            gallery.add_embeddings(f"P{start}", [Embedding(v, model, "euclidean", source=f"v{start + i}")
                                                 for i, v in enumerate(vectors[start : start + 1000])])
        first = gallery.match(vectors[:5], k=1)
        kept = list(tmp_path.glob("g.db.faiss-*.index"))
        assert len(kept) == 1
    builds = []
    real_build = FaissIndex.build
    monkeypatch.setattr(FaissIndex, "build", lambda self, *a: builds.append(1) or real_build(self, *a))
    with Gallery.open(tmp_path / "g.db") as again:
        assert again.match(vectors[:5], k=1) == first and builds == []  # read from the file, not rebuilt
        again.remove("P0")
        assert [c[0].person for c in again.match(vectors[:2], k=1)] != ["P0", "P0"] and builds == [1]
    assert list(tmp_path.glob("g.db.faiss-*.index")) != kept and len(list(tmp_path.glob("g.db.faiss-*.index"))) == 1

"""The model-agnostic occlusion explainer on real LFW pairs and real models.

Uses the default pipeline's aligner (facekit-dlib) and the PyTorch port of dlib's network
(facekit-torch) for speed, and dlib's own network (``dlib.resnet``, no PyTorch) to show
that non-PyTorch embedders are explained too. Coarse patches keep it fast; the full
50-pair measurement is benchmarks/bench_explain.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("facekit_dlib")
pytest.importorskip("facekit_torch")

from facekit.studies import faithfulness as fa  # noqa: E402
from facekit.builtin.occlusion import OcclusionExplainer  # noqa: E402
from facekit.pipeline import Pipeline  # noqa: E402
from facekit.plugins import get_registry, reset_plugin_manager  # noqa: E402
from facekit.testing import ExplainerContract  # noqa: E402
from facekit.types import AlignedFace  # noqa: E402

N_PAIRS = 8
#: 38 px patches every 28 px: 5 x 5 positions per 150 px chip (the default is 9 x 9)
FAST = {"patch": 38, "stride": 28}
#: 50 px patches, 3 x 3 positions: enough to find the part of the face that matters
COARSE = {"patch": 50, "stride": 50}


@pytest.fixture(scope="module")
def pipeline() -> Pipeline:
    reset_plugin_manager()
    return Pipeline.load("default").warm_up()


@pytest.fixture(scope="module")
def embedder(pipeline: Pipeline):  # type: ignore[no-untyped-def]
    return pipeline.embedder


@pytest.fixture(scope="module")
def pairs(faces_dir: Path, pipeline: Pipeline) -> list[tuple[AlignedFace, AlignedFace]]:
    """N_PAIRS same-person pairs from pairsDevTrain, spread over the file (different people)."""
    from facekit.studies.pairs import read_pairs

    chosen = read_pairs(faces_dir / "lfw-dev" / "pairsDevTrain.txt").spread(N_PAIRS)
    return [(pipeline.align(p.a)[0], pipeline.align(p.b)[0]) for p in chosen]


@pytest.fixture(scope="module")
def aligned_pair(pairs: list[tuple[AlignedFace, AlignedFace]]) -> tuple[AlignedFace, AlignedFace]:
    return pairs[0]


class TestOcclusionContract(ExplainerContract):
    @pytest.fixture
    def component(self) -> OcclusionExplainer:
        return OcclusionExplainer(**FAST)


def test_registered_as_a_builtin_that_needs_no_torch() -> None:
    cls = get_registry().get("explainer", "occlusion")
    assert cls is OcclusionExplainer and not cls.needs_torch
    assert OcclusionExplainer().sizes(150) == (30, 15) and OcclusionExplainer().sizes(224) == (45, 22)


def test_deletion_of_the_top_pixels_beats_random_on_real_pairs(embedder, pairs) -> None:  # type: ignore[no-untyped-def]
    explainer = OcclusionExplainer(**COARSE)
    curves = []
    for a, b in pairs:
        maps = fa.explain_maps(explainer, embedder, a, b)
        curves += fa.pair_deletion(embedder, a, b, maps, fractions=(0.1, 0.2, 0.3), n_random=2,
                                   rng=np.random.default_rng(0))
    mean = fa.mean_curve(curves)
    assert (mean.top > mean.random).all(), (mean.top, mean.random)
    ratio = fa.deletion_ratio(curves, 0.2)
    print(f"occlusion: top-20 % / random-20 % = {ratio:.2f} over {len(curves)} faces")
    assert ratio > 1.5, f"top-20 % deletion moved the distance only {ratio:.2f}x as much as random"
    wins = np.mean([c.at(0.2)[0] > c.at(0.2)[1] for c in curves])
    assert wins >= 0.75, f"the map beat random on only {wins:.0%} of {len(curves)} faces"


def test_explains_a_non_pytorch_embedder_the_same_way(pipeline: Pipeline, embedder, aligned_pair) -> None:  # type: ignore[no-untyped-def]
    """dlib.resnet (dlib's own C++ network) has no torch_model(); occlusion explains it, and
    since it computes the same function as the PyTorch port, the maps match."""
    dlib_embedder = get_registry().get("embedder", "dlib.resnet")()
    assert dlib_embedder.torch_model() is None
    coarse = OcclusionExplainer(patch=50, stride=50)  # 3 x 3 positions: dlib runs one chip at a time
    a, b = aligned_pair
    by_dlib = coarse.explain(dlib_embedder, a, b)
    by_torch = coarse.explain(embedder, a, b)
    for ours, theirs in zip(by_dlib, by_torch):
        assert ours.values.max() == pytest.approx(1.0)
        np.testing.assert_allclose(ours.values, theirs.values, atol=2e-3)


def test_maps_land_on_the_face_in_the_photo(faces_dir: Path, pipeline: Pipeline, embedder) -> None:  # type: ignore[no-untyped-def]
    examples = faces_dir / "face_recognition_examples" / "examples"
    photo = pipeline.read(examples / "obama.jpg")
    a = pipeline.align(examples / "obama.jpg")[0]
    b = pipeline.align(examples / "obama2.jpg")[0]
    heat_a, _ = OcclusionExplainer(**FAST).explain(embedder, a, b)
    on_photo = heat_a.on_source(photo.shape[:2])
    assert on_photo.shape == photo.shape[:2]
    x0, y0, x1, y1 = a.face.box
    ys, xs = np.mgrid[0 : photo.shape[0], 0 : photo.shape[1]]
    total = on_photo.sum()
    cx, cy = (on_photo * xs).sum() / total, (on_photo * ys).sum() / total
    assert x0 <= cx <= x1 and y0 <= cy <= y1, ((cx, cy), a.face.box)
    inside = on_photo[int(y0) : int(y1), int(x0) : int(x1)].sum() / total
    assert inside > 0.6, f"only {inside:.0%} of the importance fell inside the detected face box"


def test_cli_explain_with_occlusion_writes_a_card(faces_dir: Path, pipeline: Pipeline, tmp_path: Path) -> None:
    import cv2
    import yaml
    from click.testing import CliRunner

    from facekit.cli import main

    # the default pipeline with a coarse occlusion stage: --explainer occlusion keeps its YAML params
    config = pipeline.to_dict()
    config["explainer"] = {"name": "occlusion", "params": {"patch": 50, "stride": 50}}
    yaml_path = tmp_path / "occlusion.yaml"
    yaml_path.write_text(yaml.safe_dump(config), encoding="utf-8")
    examples = faces_dir / "face_recognition_examples" / "examples"
    card = tmp_path / "card.png"
    args = ["explain", str(examples / "obama.jpg"), str(examples / "obama2.jpg"), "-p", str(yaml_path)]
    result = CliRunner().invoke(main, args + ["-o", str(card), "--explainer", "occlusion", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["explainer"] == "occlusion" and data["comparison"]["verdict"] == "same person"
    assert all("50 px patch" in h["method"] for h in data["heatmaps"])
    assert data["card"] == str(card) and cv2.imread(str(card)).shape == (780, 1200, 3)
    wrong = CliRunner().invoke(main, args + ["--method", "gradcam++"])
    assert wrong.exit_code == 2 and "gradcam" in wrong.output

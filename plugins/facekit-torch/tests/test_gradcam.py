"""The Grad-CAM explainer on real LFW pairs and dlib's network in PyTorch (torch.dlib_resnet).

Faithfulness is measured, not eyeballed: deleting the top pixels of a map must hurt the
similarity more than deleting random ones, and re-initialising the network's weights must
change the map (Adebayo et al. 2018). The 50-pair numbers are in benchmarks/bench_explain.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("facekit_dlib")
pytest.importorskip("pytorch_grad_cam")

from facekit.studies import faithfulness as fa  # noqa: E402
from facekit.config import validate_model  # noqa: E402
from facekit.errors import ConfigError  # noqa: E402
from facekit.builtin.occlusion import OcclusionExplainer  # noqa: E402
from facekit.pipeline import Pipeline  # noqa: E402
from facekit.plugins import get_registry, reset_plugin_manager  # noqa: E402
from facekit.testing import ExplainerContract, modules_imported_by  # noqa: E402
from facekit.types import AlignedFace  # noqa: E402
from facekit_torch.gradcam import (  # noqa: E402
    GRADIENT_METHODS,
    METHODS,
    GradCamExplainer,
    SimilarityTarget,
    randomized_copy,
)

N_PAIRS = 8
Pairs = list[tuple[AlignedFace, AlignedFace]]


@pytest.fixture(scope="module")
def pipeline() -> Pipeline:
    reset_plugin_manager()
    return Pipeline.load("default").warm_up()


@pytest.fixture(scope="module")
def embedder(pipeline: Pipeline):  # type: ignore[no-untyped-def]
    return pipeline.embedder


def _same_person_pairs(faces_dir: Path, pipeline: Pipeline, count: int) -> Pairs:
    """``count`` same-person pairs from pairsDevTrain, spread over the file (different people)."""
    from facekit.studies.pairs import read_pairs

    chosen = read_pairs(faces_dir / "lfw-dev" / "pairsDevTrain.txt").spread(count)
    return [(pipeline.align(p.a)[0], pipeline.align(p.b)[0]) for p in chosen]


@pytest.fixture(scope="module")
def pairs(faces_dir: Path, pipeline: Pipeline) -> Pairs:
    return _same_person_pairs(faces_dir, pipeline, N_PAIRS)


@pytest.fixture(scope="module")
def aligned_pair(pairs: Pairs) -> tuple[AlignedFace, AlignedFace]:
    return pairs[0]


@pytest.fixture(scope="module")
def default_maps(embedder, pairs: Pairs) -> list[tuple[np.ndarray, np.ndarray]]:  # type: ignore[no-untyped-def]
    """The default explainer's maps of every pair, computed once."""
    explainer = GradCamExplainer()
    return [fa.explain_maps(explainer, embedder, a, b) for a, b in pairs]


class TestGradCamContract(ExplainerContract):
    @pytest.fixture
    def component(self) -> GradCamExplainer:
        return GradCamExplainer()


# ------------------------------------------------------------------------------ the component
def test_registered_by_the_torch_plugin(embedder) -> None:  # type: ignore[no-untyped-def]
    assert get_registry().get("explainer", "gradcam") is GradCamExplainer
    assert GradCamExplainer.needs_torch
    layer, name = GradCamExplainer().target_layer(embedder)
    assert layer is embedder.torch_model().target_layer and name == "stages.res35"


def test_method_names_are_forgiving_and_mistakes_are_explained() -> None:
    assert GradCamExplainer(method="GradCAM++").params.method == "gradcam++"
    assert GradCamExplainer(method="grad_cam_plus_plus").params.method == "gradcam++"
    assert GradCamExplainer(method="Layer-CAM").params.method == "layercam"
    with pytest.raises(ConfigError) as info:
        validate_model(GradCamExplainer.Params, {"method": "gradcamm"}, prefix=("explainer", "params"))
    message = str(info.value)
    assert "explainer.params.method" in message and "did you mean 'gradcam'" in message and "hirescam" in message


def test_unknown_layer_names_the_choices(embedder, aligned_pair) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError, match=r"did you mean 'stages\.res8'"):
        GradCamExplainer(layer="stages.res88").explain(embedder, *aligned_pair)


def test_similarity_target_is_the_embedders_own_metric() -> None:
    a, b = torch.randn(128, requires_grad=True), torch.randn(128)
    assert SimilarityTarget(b, "euclidean")(a).item() == pytest.approx(-torch.dist(a, b).item(), abs=1e-5)
    assert SimilarityTarget(b, "cosine")(a).item() == pytest.approx(
        torch.nn.functional.cosine_similarity(a, b, dim=0).item(), abs=1e-6
    )
    batch = SimilarityTarget(b, "euclidean")(torch.stack([a, b]))
    assert batch.shape == (2,) and batch[1].item() == pytest.approx(0.0, abs=1e-5)
    same = b.clone().requires_grad_(True)  # a face compared with itself: gradient stays finite
    SimilarityTarget(b, "euclidean")(same).backward()
    assert torch.isfinite(same.grad).all()


def test_a_cosine_embedder_is_explained_with_its_own_metric(aligned_pair) -> None:  # type: ignore[no-untyped-def]
    """FACE01's EfficientNetV2 family (cosine, 224 px chips, layer trunk.blocks[-1]); untrained
    weights are enough to check the plumbing."""
    import cv2

    cosine = get_registry().get("embedder", "efficientnetv2_arcface")(weights="random")
    assert cosine.metric == "cosine"
    size = cosine.input_size
    scale = np.diag([150 / size, 150 / size, 1.0])
    faces = [AlignedFace(cv2.resize(f.chip, (size, size)), np.asarray(f.transform) @ scale, f.face, f.aligner)
             for f in aligned_pair]
    heat_a, heat_b = GradCamExplainer(method="gradcam").explain(cosine, *faces)
    assert heat_a.values.shape == (size, size) and heat_a.method == "gradcam @ trunk.blocks.5"
    vectors = torch.from_numpy(cosine.embed(np.stack([f.chip for f in faces])))
    target = SimilarityTarget(vectors[1], cosine.metric)(vectors[0])
    assert target.item() == pytest.approx(float(np.dot(vectors[0], vectors[1]) / np.linalg.norm(vectors[0]) / np.linalg.norm(vectors[1])), abs=1e-5)


@pytest.mark.parametrize("method", [m for m in METHODS if m != "scorecam"])
def test_every_method_gives_a_map_per_face(method: str, embedder, aligned_pair) -> None:  # type: ignore[no-untyped-def]
    heat_a, heat_b = GradCamExplainer(method=method).explain(embedder, *aligned_pair)
    for heat, face in ((heat_a, aligned_pair[0]), (heat_b, aligned_pair[1])):
        assert heat.values.shape == (150, 150) and heat.values.dtype == np.float32
        assert heat.values.min() >= 0 and heat.values.max() == pytest.approx(1.0, abs=1e-4)
        assert heat.face is face and heat.method == f"{method} @ stages.res35"
    assert not np.allclose(heat_a.values, heat_b.values)


@pytest.mark.parametrize("method", list(GRADIENT_METHODS))
def test_own_gradient_methods_give_pytorch_grad_cams_maps(method: str, embedder, aligned_pair) -> None:  # type: ignore[no-untyped-def]
    own = GradCamExplainer(method=method)
    library = GradCamExplainer(method=method, engine="pytorch-grad-cam")
    assert not own.uses_library and library.uses_library
    for mine, theirs in zip(own.explain(embedder, *aligned_pair), library.explain(embedder, *aligned_pair)):
        assert np.abs(mine.values - theirs.values).max() < 1e-5
        assert mine.method == theirs.method


def test_the_default_explainer_does_not_import_pytorch_grad_cam(faces_dir: Path) -> None:
    """pytorch-grad-cam's import (torchvision, scikit-learn, matplotlib) is most of a cold start."""
    examples = faces_dir / "face_recognition_examples" / "examples"
    code = (
        "from facekit import Pipeline\n"
        f"result = Pipeline.load('default').explain({str(examples / 'obama.jpg')!r}, {str(examples / 'obama2.jpg')!r})\n"
        "assert result.heatmaps[0].values.max() > 0\n"
    )
    loaded = modules_imported_by(code)
    assert "facekit_torch.gradcam" in loaded
    assert not {"pytorch_grad_cam", "torchvision", "sklearn"} & loaded


@pytest.mark.slow
@pytest.mark.parametrize("method", ["scorecam"])
def test_perturbation_methods_run(method: str, embedder, aligned_pair) -> None:  # type: ignore[no-untyped-def]
    heat_a, _ = GradCamExplainer(method=method).explain(embedder, *aligned_pair)
    assert heat_a.values.max() == pytest.approx(1.0, abs=1e-4)


def test_the_map_depends_on_the_other_face(embedder, pairs: Pairs) -> None:  # type: ignore[no-untyped-def]
    """The target is similarity to B: another B gives another map of the same A."""
    (a, b), (_, c) = pairs[0], pairs[1]
    explainer = GradCamExplainer(method="gradcam")
    towards_b = explainer.explain(embedder, a, b)[0].values
    towards_c = explainer.explain(embedder, a, c)[0].values
    assert fa.map_correlation(towards_b, towards_c) < 0.95


def test_another_layer_can_be_chosen(embedder, aligned_pair) -> None:  # type: ignore[no-untyped-def]
    heat, _ = GradCamExplainer(layer="stages.res8").explain(embedder, *aligned_pair)
    assert heat.method.endswith("@ stages.res8") and heat.values.shape == (150, 150)


def test_works_inside_inference_mode_and_leaves_no_hooks(embedder, aligned_pair) -> None:  # type: ignore[no-untyped-def]
    module = embedder.torch_model().module
    with torch.inference_mode():
        heat, _ = GradCamExplainer().explain(embedder, *aligned_pair)
    assert heat.values.max() > 0
    assert not any(m._forward_hooks for m in module.modules()), "CAM hooks left on the network"
    assert all(p.grad is None for p in module.parameters())


# ---------------------------------------------------------------------------- faithfulness
def test_deletion_of_the_top_pixels_beats_random_on_fifty_real_pairs(faces_dir: Path, pipeline: Pipeline,
                                                                       embedder) -> None:  # type: ignore[no-untyped-def]
    """Issue 9's check on 50 lfw-dev pairs (100 maps), against two random baselines of the same area:
    smooth blobs (the hard one: a blob often covers the middle of the face) and scattered pixels."""
    explainer, rng = GradCamExplainer(), np.random.default_rng(0)  # one generator: other masks for each face
    curves = []
    for a, b in _same_person_pairs(faces_dir, pipeline, 50):
        maps = fa.explain_maps(explainer, embedder, a, b)
        curves += fa.pair_deletion(embedder, a, b, maps, fractions=(0.1, 0.2, 0.3), n_random=2, n_scattered=1,
                                   rng=rng)
    mean = fa.mean_curve(curves)
    report = (f"mean distance increase at 10/20/30 % deleted: top {np.round(mean.top, 4)}, random blobs "
              f"{np.round(mean.random, 4)}, scattered pixels {np.round(mean.baselines['scattered'], 4)}")
    assert (mean.top > mean.random).all() and (mean.top > mean.baselines["scattered"]).all(), report
    blobs = fa.deletion_ratio(curves, 0.2)
    scattered = float(mean.top[1] / mean.baselines["scattered"][1])
    # measured on these 50 pairs: 2.7x blobs, 4.9x scattered pixels (the issue aims at 3x)
    assert blobs > 2.4 and scattered > 4.0, f"top-20 %: {blobs:.2f}x blobs, {scattered:.2f}x scattered; {report}"


def test_randomised_weights_change_the_map(embedder, pairs: Pairs, default_maps) -> None:  # type: ignore[no-untyped-def]
    randomized = randomized_copy(embedder, seed=0)
    chips = np.stack([pairs[0][0].chip, pairs[0][1].chip])
    assert not np.allclose(randomized.embed(chips), embedder.embed(chips))  # the weights really changed
    assert all(p is not q for p, q in zip(randomized.torch_model().module.parameters(),
                                          embedder.torch_model().module.parameters()))
    explainer = GradCamExplainer()
    sims = []
    for (a, b), trained in zip(pairs[:3], default_maps[:3]):
        random = fa.explain_maps(explainer, randomized, a, b)
        sims += [fa.map_correlation(t, r) for t, r in zip(trained, random)]
    assert np.mean(sims) < 0.5, f"maps barely change with random weights (Spearman {np.mean(sims):.2f})"


def test_gradcam_broadly_agrees_with_occlusion(embedder, pairs: Pairs, default_maps) -> None:  # type: ignore[no-untyped-def]
    occlusion = OcclusionExplainer(patch=38, stride=28)
    correlations = []
    for (a, b), cams in list(zip(pairs, default_maps))[:3]:
        occluded = fa.explain_maps(occlusion, embedder, a, b)
        correlations += [fa.map_correlation(c, o) for c, o in zip(cams, occluded)]
    assert np.mean(correlations) > 0.0, correlations  # loose on purpose: the benchmark reports the number


def test_maps_land_on_the_face_in_the_photo(faces_dir: Path, pipeline: Pipeline, embedder) -> None:  # type: ignore[no-untyped-def]
    examples = faces_dir / "face_recognition_examples" / "examples"
    photo = pipeline.read(examples / "obama.jpg")
    a = pipeline.align(examples / "obama.jpg")[0]
    b = pipeline.align(examples / "obama2.jpg")[0]
    heat_a, _ = GradCamExplainer().explain(embedder, a, b)
    on_photo = heat_a.on_source(photo.shape[:2])
    x0, y0, x1, y1 = a.face.box
    ys, xs = np.mgrid[0 : photo.shape[0], 0 : photo.shape[1]]
    total = on_photo.sum()
    cx, cy = (on_photo * xs).sum() / total, (on_photo * ys).sum() / total
    assert x0 <= cx <= x1 and y0 <= cy <= y1, ((cx, cy), a.face.box)
    inside = on_photo[int(y0) : int(y1), int(x0) : int(x1)].sum() / total
    assert inside > 0.6, f"only {inside:.0%} of the importance fell inside the detected face box"


# ------------------------------------------------------------------------ pipeline and CLI
def test_pipeline_explain_keeps_yaml_params_and_takes_overrides(faces_dir: Path, pipeline: Pipeline) -> None:
    config = pipeline.to_dict()
    config["explainer"] = {"name": "gradcam", "params": {"layer": "stages.res8"}}
    custom = Pipeline.from_dict(config)
    examples = faces_dir / "face_recognition_examples" / "examples"
    result = custom.explain(examples / "obama.jpg", examples / "obama2.jpg", method="hirescam")
    assert result.explainer == "gradcam" and result.comparison.same
    assert all(h.method == "hirescam @ stages.res8" for h in result.heatmaps)


def test_cli_explain_writes_a_card_with_the_default_pipeline(faces_dir: Path, tmp_path: Path) -> None:
    import cv2
    from click.testing import CliRunner

    from facekit.cli import main

    examples = faces_dir / "face_recognition_examples" / "examples"
    card = tmp_path / "card.png"
    result = CliRunner().invoke(main, ["explain", str(examples / "obama.jpg"), str(examples / "obama2.jpg"),
                                       "-o", str(card), "--method", "gradcam++", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["explainer"] == "gradcam" and data["comparison"]["same"] is True
    assert [h["method"] for h in data["heatmaps"]] == ["gradcam++ @ stages.res35"] * 2
    assert cv2.imread(str(card)).shape == (780, 1200, 3)

"""``dlib.resnet_onnx``: dlib's face ResNet as an ONNX graph run by ONNX Runtime, against dlib itself."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from facekit import Pipeline, load_image
from facekit.dlib_model.reader import ConvRecord, default_model_path, read_dlib_resnet_file
from facekit.testing import EmbedderContract, modules_imported_by

from facekit_dlib.resnet import DlibResnetEmbedder, DlibResnetOnnxEmbedder
from facekit_dlib.resnet_onnx import INPUT_NAME, OUTPUT_NAME, build_onnx_model

EXAMPLES = "face_recognition_examples/examples"
TEST_IMAGES = "face_recognition_examples/tests/test_images"
#: how far from dlib's own descriptors the ONNX ones may be (issue 16)
TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def onnx_resnet() -> DlibResnetOnnxEmbedder:
    embedder = DlibResnetOnnxEmbedder()
    embedder.warm_up()
    return embedder


@pytest.fixture(scope="module")
def real_chips(faces_dir: Path) -> np.ndarray:
    """The face chips of a few shared photos (7 faces, 4 people), cut by the default pipeline's stages."""
    pipeline = Pipeline.from_dict(
        {"detector": {"name": "dlib.hog", "params": {"upsample": 1}}, "aligner": "dlib.chip5", "embedder": "dlib.resnet"}
    )
    chips = []
    for rel in (f"{EXAMPLES}/obama.jpg", f"{EXAMPLES}/biden.jpg", f"{EXAMPLES}/two_people.jpg",
                f"{TEST_IMAGES}/obama3.jpg", f"{EXAMPLES}/alex-lacamoire.png"):
        image = load_image(faces_dir / rel)
        chips += [a.chip for a in pipeline.aligner.align_many(image, pipeline.detector.detect(image))]
    assert len(chips) >= 6
    return np.stack(chips)


class TestOnnxResnetContract(EmbedderContract):
    @pytest.fixture
    def component(self, onnx_resnet: DlibResnetOnnxEmbedder) -> DlibResnetOnnxEmbedder:
        return onnx_resnet


def test_construction_and_import_load_nothing_heavy() -> None:
    code = "import facekit_dlib.resnet as e; e.DlibResnetOnnxEmbedder(num_threads=1)"
    loaded = modules_imported_by(code)
    assert not {"onnxruntime", "torch", "dlib", "onnx"} & loaded


def test_same_descriptors_as_dlib(real_chips: np.ndarray, onnx_resnet: DlibResnetOnnxEmbedder) -> None:
    by_dlib = DlibResnetEmbedder().embed(real_chips)
    by_onnx = onnx_resnet.embed(real_chips)
    assert by_onnx.shape == by_dlib.shape == (len(real_chips), 128) and by_onnx.dtype == np.float32
    np.testing.assert_allclose(by_onnx, by_dlib, atol=TOLERANCE, rtol=0)
    # the chips are different faces: equal outputs would mean the graph ignores its input
    assert np.linalg.norm(by_onnx[0] - by_onnx[1]) > 0.3


def test_same_descriptors_as_the_torch_port(real_chips: np.ndarray, onnx_resnet: DlibResnetOnnxEmbedder) -> None:
    torch_dlib_resnet = pytest.importorskip("facekit_torch.dlib_resnet")
    by_torch = torch_dlib_resnet.DlibResnetTorchEmbedder(device="cpu").embed(real_chips)
    np.testing.assert_allclose(onnx_resnet.embed(real_chips), by_torch, atol=TOLERANCE, rtol=0)
    assert onnx_resnet.model_name == torch_dlib_resnet.DlibResnetTorchEmbedder().model_name


@pytest.mark.parametrize("settings", [{"optimization": "disabled", "num_threads": 1}, {"optimization": "basic", "num_threads": 2}])
def test_session_settings_do_not_change_the_numbers(
    settings: dict, real_chips: np.ndarray, onnx_resnet: DlibResnetOnnxEmbedder
) -> None:
    np.testing.assert_allclose(DlibResnetOnnxEmbedder(**settings).embed(real_chips), onnx_resnet.embed(real_chips), atol=1e-6)


def test_batches_larger_than_one_run(real_chips: np.ndarray, onnx_resnet: DlibResnetOnnxEmbedder) -> None:
    embedder = DlibResnetOnnxEmbedder()
    embedder.max_batch = 4  # instance override: split the chips over several runs
    np.testing.assert_allclose(embedder.embed(real_chips), onnx_resnet.embed(real_chips), atol=1e-6)


def test_pickles_without_its_session(real_chips: np.ndarray, onnx_resnet: DlibResnetOnnxEmbedder) -> None:
    copy = pickle.loads(pickle.dumps(onnx_resnet))  # the warm session is not sent
    assert copy.params == onnx_resnet.params and copy is not onnx_resnet
    np.testing.assert_allclose(copy.embed(real_chips[:2]), onnx_resnet.embed(real_chips[:2]), atol=1e-6)


def test_built_graph_is_valid_onnx() -> None:
    onnx = pytest.importorskip("onnx")  # installed by the test requirements, not by facekit-dlib
    model = onnx.load_from_string(build_onnx_model(read_dlib_resnet_file(default_model_path())))
    onnx.checker.check_model(model, full_check=True)
    assert [i.name for i in model.graph.input] == [INPUT_NAME]
    assert [o.name for o in model.graph.output] == [OUTPUT_NAME]
    ops = [node.op_type for node in model.graph.node]
    assert ops.count("Conv") == 29 and ops.count("Add") == 14 and ops.count("MatMul") == 1


def test_wrong_layers_are_refused() -> None:
    net = read_dlib_resnet_file(default_model_path())
    swapped = list(net.layers)
    swapped[0], swapped[1] = swapped[1], swapped[0]
    with pytest.raises(ValueError, match="stem conv: expected a ConvRecord"):
        build_onnx_model(type(net)(**{**net.__dict__, "layers": swapped}))
    with pytest.raises(ValueError, match="more layers"):
        build_onnx_model(type(net)(**{**net.__dict__, "layers": net.layers + [net.layers[0]]}))
    assert isinstance(net.layers[0], ConvRecord)


def test_pipeline_with_the_onnx_embedder(faces_dir: Path) -> None:
    pipeline = Pipeline.from_dict({"detector": "dlib.hog", "aligner": "dlib.chip5", "embedder": "dlib.resnet_onnx"})
    same = pipeline.compare(faces_dir / EXAMPLES / "obama.jpg", faces_dir / EXAMPLES / "obama2.jpg")
    different = pipeline.compare(faces_dir / EXAMPLES / "obama.jpg", faces_dir / EXAMPLES / "biden.jpg")
    assert same.same and not different.same and same.score < 0.6 < different.score


def test_gradcam_explains_through_the_torch_port(faces_dir: Path) -> None:
    pytest.importorskip("facekit_torch")
    stages = {"detector": "dlib.hog", "aligner": "dlib.chip5", "explainer": "gradcam"}
    a, b = faces_dir / EXAMPLES / "obama.jpg", faces_dir / EXAMPLES / "obama2.jpg"
    by_onnx = Pipeline.from_dict({**stages, "embedder": "dlib.resnet_onnx"}).explain(a, b)
    by_torch = Pipeline.from_dict({**stages, "embedder": "torch.dlib_resnet"}).explain(a, b)
    assert by_onnx.comparison.score == pytest.approx(by_torch.comparison.score, abs=1e-5)
    for onnx_map, torch_map in zip(by_onnx.heatmaps, by_torch.heatmaps):
        assert onnx_map.values.shape == (150, 150) and onnx_map.values.std() > 0
        np.testing.assert_allclose(onnx_map.values, torch_map.values, atol=1e-4)


def test_explaining_without_facekit_torch_says_what_to_install() -> None:
    code = (
        "from facekit.errors import DependencyError\n"
        "from facekit_dlib.resnet import DlibResnetOnnxEmbedder\n"
        "try:\n    DlibResnetOnnxEmbedder().torch_model()\n"
        "except DependencyError as exc:\n    print('ERROR', exc)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          env={**os.environ, "FACEKIT_LOAD_PLUGINS": "dlib"})
    assert "ERROR" in done.stdout and "plugins/facekit-torch" in done.stdout and "occlusion" in done.stdout

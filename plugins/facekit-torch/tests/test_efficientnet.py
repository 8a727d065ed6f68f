"""The efficientnetv2_arcface embedder: article checkpoints, ONNX, clear errors, pipeline use.

The checkpoint is made here the way the article's code makes one (its own module class,
timm with pretrained=False, random weights): equivalence and error handling do not need
trained weights, and none can be downloaded.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from facekit.errors import ConfigError, ModelFileError
from facekit.pipeline import Pipeline
from facekit.testing import EmbedderContract
from facekit_torch.efficientnet import network as efficientnet_network
from facekit_torch.efficientnet import EfficientNetV2ArcFaceEmbedder

timm = pytest.importorskip("timm")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch's legacy ONNX exporter
ort = pytest.importorskip("onnxruntime")

MAX_ABS_DIFF = 1e-4
PHOTOS = ("Junichiro_Koizumi/Junichiro_Koizumi_0001.jpg", "Junichiro_Koizumi/Junichiro_Koizumi_0002.jpg",
          "Hu_Jintao/Hu_Jintao_0001.jpg", "Yao_Ming/Yao_Ming_0001.jpg")


class ArticleModel(nn.Module):
    """The article's module, written independently of facekit: ``trunk`` + 512-D classifier."""

    def __init__(self, variant: str = "tf_efficientnetv2_b0", dim: int = 512) -> None:
        super().__init__()
        self.trunk = timm.create_model(variant, pretrained=False)
        self.trunk.classifier = nn.Linear(self.trunk.classifier.in_features, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.trunk(x)


def _article_model(variant: str = "tf_efficientnetv2_b0", dim: int = 512, seed: int = 0) -> ArticleModel:
    torch.manual_seed(seed)
    model = ArticleModel(variant, dim).eval()
    # random BatchNorm statistics too, so a loader that skipped buffers would be caught
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.normal_(0, 0.1)
                module.running_var.uniform_(0.5, 1.5)
    return model


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("effnet")
    model = _article_model()
    out = {"pt": folder / "face_model.pt", "onnx": folder / "face_model.onnx", "fixed": folder / "fixed1.onnx"}
    torch.save(model.state_dict(), out["pt"])
    efficientnet_network.export_onnx(model, out["onnx"], 224)
    # FACE01's JAPANESE_FACE_V1.onnx is fixed at 1 x 3 x 224 x 224: make one like it
    torch.onnx.export(model, (torch.zeros(1, 3, 224, 224),), str(out["fixed"]), dynamo=False,
                      input_names=["input"], output_names=["output"], opset_version=17)
    return out


@pytest.fixture(scope="module")
def chips(faces_dir: Path, files: dict[str, Path]) -> np.ndarray:
    """Real FACE01-style chips (dlib 5-point, 224 px, padding 0.1) of four photos."""
    pipeline = Pipeline.from_dict({
        "detector": {"name": "dlib.hog", "params": {"upsample": 1}},
        "aligner": {"name": "dlib.chip5", "params": {"preset": "face01"}},
        "embedder": {"name": "efficientnetv2_arcface", "params": {"weights": str(files["pt"])}},
    })
    return np.stack([pipeline.align(faces_dir / "eastasian-lfw" / p)[0].chip for p in PHOTOS])


def _embedder(path: Path, **params: object) -> EfficientNetV2ArcFaceEmbedder:
    return EfficientNetV2ArcFaceEmbedder(weights=str(path), device="cpu", **params)


# ------------------------------------------------------------------------------ equivalence
def test_article_checkpoint_matches_the_article_module(files: dict[str, Path], chips: np.ndarray) -> None:
    """Loading the article's file gives what the article's own module computes, with its preprocessing."""
    ours = _embedder(files["pt"]).embed(chips)
    model = ArticleModel()
    model.load_state_dict(torch.load(files["pt"], weights_only=True))
    model.eval()
    # the article: transforms.ToTensor() then Normalize(ImageNet mean, std)
    x = torch.from_numpy(chips).permute(0, 3, 1, 2).float() / 255.0
    x = (x - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)) / torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        reference = model(x).numpy()
    print(f"max abs difference facekit vs the article's module: {np.abs(ours - reference).max():.2e}")
    assert ours.shape == (4, 512) and ours.dtype == np.float32
    assert np.abs(reference).max() > 1e-2, "embeddings too small for the comparison to mean anything"
    np.testing.assert_allclose(ours, reference, atol=MAX_ABS_DIFF, rtol=0)


@pytest.mark.parametrize("onnx_file", ["onnx", "fixed"])
def test_onnx_and_checkpoint_give_the_same_embeddings(files: dict[str, Path], chips: np.ndarray, onnx_file: str) -> None:
    from_pt = _embedder(files["pt"]).embed(chips)
    runner = _embedder(files[onnx_file])
    from_onnx = runner.embed(chips)
    diff = float(np.abs(from_pt - from_onnx).max())
    print(f"max abs difference .pt vs {files[onnx_file].name}: {diff:.2e}")
    assert diff < MAX_ABS_DIFF
    assert runner.format == "onnx" and runner.torch_model() is None and not runner.gives_gradients()
    if onnx_file == "fixed":
        onnx = runner._model.get().onnx
        assert onnx is not None and onnx.fixed_batch == 1


def test_model_name_ties_a_checkpoint_to_its_onnx_export(files: dict[str, Path]) -> None:
    assert _embedder(files["pt"]).model_name == _embedder(files["onnx"]).model_name == "efficientnetv2_arcface:face_model"


def test_torch_model_exposes_the_articles_gradcam_layer(files: dict[str, Path], chips: np.ndarray) -> None:
    embedder = _embedder(files["pt"])
    assert embedder.gives_gradients()
    tm = embedder.torch_model()
    assert tm is not None
    assert tm.target_layer is tm.module.trunk.blocks[-1]
    x = tm.to_tensor(chips[:2])
    assert tuple(x.shape) == (2, 3, 224, 224) and x.dtype == torch.float32
    with torch.no_grad():
        np.testing.assert_allclose(tm.module(x).numpy(), embedder.embed(chips[:2]), atol=1e-5)


def test_pipeline_compares_two_photos(faces_dir: Path, files: dict[str, Path]) -> None:
    pipeline = Pipeline.from_dict({
        "detector": {"name": "dlib.hog"},
        "aligner": {"name": "dlib.chip5", "params": {"preset": "face01"}},
        "embedder": {"name": "efficientnetv2_arcface", "params": {"weights": str(files["onnx"])}},
    })
    result = pipeline.compare(*(faces_dir / "eastasian-lfw" / p for p in PHOTOS[:2]))
    assert result.metric == "cosine" and result.threshold == pytest.approx(0.4)
    assert -1.0 <= result.score <= 1.0 and result.same == (result.score >= 0.4)


def test_pipeline_refuses_chips_of_the_wrong_size(files: dict[str, Path]) -> None:
    with pytest.raises(ConfigError, match="size: 224"):
        Pipeline.from_dict({
            "detector": "dlib.hog",
            "aligner": {"name": "dlib.chip5", "params": {"size": 150}},
            "embedder": {"name": "efficientnetv2_arcface", "params": {"weights": str(files["pt"])}},
        })


# ------------------------------------------------------------------------------ clear errors
def test_weights_are_required_no_random_fallback() -> None:
    with pytest.raises(ConfigError, match=r"embedder\.params\.weights"):
        Pipeline.from_dict({"detector": "dlib.hog", "aligner": "dlib.chip5", "embedder": "efficientnetv2_arcface"})


def test_random_weights_only_when_asked_and_seeded() -> None:
    a = EfficientNetV2ArcFaceEmbedder(weights="random", size=64, seed=3)
    b = EfficientNetV2ArcFaceEmbedder(weights="random", size=64, seed=3)
    chip = np.random.default_rng(0).integers(0, 256, (1, 64, 64, 3), dtype=np.uint8)
    np.testing.assert_array_equal(a.embed(chip), b.embed(chip))
    assert a.model_name.startswith("efficientnetv2_arcface:random")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="not found.*missing.pt"):
        _embedder(tmp_path / "missing.pt").warm_up()
    with pytest.raises(ModelFileError, match="not found.*missing.onnx"):
        _embedder(tmp_path / "missing.onnx").warm_up()


def test_unknown_suffix_is_a_config_error_naming_the_yaml_path() -> None:
    with pytest.raises(ConfigError, match=r"embedder\.params.*weights\.h5.*format: torch"):
        Pipeline.from_dict({"detector": "dlib.hog", "aligner": {"name": "dlib.chip5", "params": {"preset": "face01"}},
                            "embedder": {"name": "efficientnetv2_arcface", "params": {"weights": "weights.h5"}}})


def test_wrong_dimension_names_the_shapes(files: dict[str, Path]) -> None:
    with pytest.raises(ModelFileError) as info:
        _embedder(files["pt"], dim=128).warm_up()
    message = str(info.value)
    assert "trunk.classifier.weight is (512, 1280), expected (128, 1280)" in message
    assert "set `dim: 512`" in message


def test_wrong_variant_names_missing_keys_and_the_variant_that_fits(tmp_path: Path) -> None:
    path = tmp_path / "b1.pt"
    torch.save(_article_model("tf_efficientnetv2_b1").state_dict(), path)
    with pytest.raises(ModelFileError) as info:
        _embedder(path).warm_up()  # the default variant is b0
    message = str(info.value)
    assert "'tf_efficientnetv2_b0'" in message and "Unexpected: trunk.blocks." in message
    assert "set `variant: tf_efficientnetv2_b1`" in message


def test_bare_timm_state_dict_explains_the_trunk_prefix(tmp_path: Path) -> None:
    path = tmp_path / "bare.pt"
    torch.save(_article_model().trunk.state_dict(), path)
    with pytest.raises(ModelFileError, match="Missing: trunk.conv_stem.weight.*no key starts with 'trunk.'"):
        _embedder(path).warm_up()


def test_pickled_module_is_refused_by_weights_only(tmp_path: Path) -> None:
    path = tmp_path / "whole.pt"
    torch.save(_article_model(), path)  # the whole module, not a state_dict
    with pytest.raises(ModelFileError, match=r"weights_only=True refuses.*state_dict\(\)"):
        _embedder(path).warm_up()


def test_garbage_files(tmp_path: Path) -> None:
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint at all")
    (tmp_path / "junk.onnx").write_bytes(b"not an onnx model")
    with pytest.raises(ModelFileError, match="junk.pt"):
        _embedder(tmp_path / "junk.pt").warm_up()
    with pytest.raises(ModelFileError, match="junk.onnx.*not a loadable ONNX model"):
        _embedder(tmp_path / "junk.onnx").warm_up()


def test_onnx_input_size_is_validated(files: dict[str, Path]) -> None:
    with pytest.raises(ModelFileError, match=r"takes 224x224 chips, not 112x112; set `size: 224`"):
        _embedder(files["fixed"], size=112).warm_up()
    with pytest.raises(ModelFileError, match=r"expected N x 256 \(set `dim: 512`\)"):
        _embedder(files["onnx"], dim=256).warm_up()


def test_onnx_with_a_non_image_input_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "flat.onnx"
    torch.onnx.export(nn.Linear(10, 512), (torch.zeros(1, 10),), str(path), dynamo=False, opset_version=17)
    with pytest.raises(ModelFileError, match=r"has shape \[1, 10\]; expected one input N x 3 x 224 x 224"):
        _embedder(path).warm_up()


def test_wrong_chips_are_an_image_error(files: dict[str, Path]) -> None:
    from facekit.errors import ImageError

    with pytest.raises(ImageError, match=r"\(N, 224, 224, 3\)"):
        _embedder(files["pt"]).embed(np.zeros((1, 150, 150, 3), np.uint8))


def test_importing_the_module_does_not_import_torch() -> None:
    code = "import sys, facekit_torch.efficientnet, facekit_torch.cli; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


# ------------------------------------------------------------------------------ contract
class TestContract(EmbedderContract):
    @pytest.fixture
    def component(self, files: dict[str, Path]) -> EfficientNetV2ArcFaceEmbedder:
        return _embedder(files["pt"], size=96)  # the network takes any size; small chips keep this quick

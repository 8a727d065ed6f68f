"""The PyTorch port of dlib's face ResNet: file reader, equivalence to dlib, error handling.

dlib itself is imported only here, as the reference.
"""

from __future__ import annotations

import importlib.resources
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

try:
    from facekit_torch.dlib_resnet import network as dlib_resnet
except ImportError:  # plugin not installed: use the source tree next to this test
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from facekit_torch.dlib_resnet import network as dlib_resnet

N_CHIPS = 10
MAX_ABS_DIFF = 1e-4


@pytest.fixture(scope="module")
def model_path() -> Path:
    return dlib_resnet.default_model_path()


@pytest.fixture(scope="module")
def model() -> dlib_resnet.DlibFaceResNet:
    return dlib_resnet.load_dlib_resnet()


@pytest.fixture(scope="module")
def chips_and_reference(faces_dir: Path, model_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """~10 real face chips made by dlib, and dlib's descriptor of each chip."""
    dlib = pytest.importorskip("dlib")
    images = sorted((faces_dir / "lfw-dev" / "images").glob("*/*.jpg"))
    if not images:
        pytest.skip(f"no lfw-dev photos under {faces_dir}")
    models = importlib.resources.files("face_recognition_models") / "models"
    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(str(models / "shape_predictor_5_face_landmarks.dat"))
    facerec = dlib.face_recognition_model_v1(str(model_path))

    chips, refs = [], []
    for image_path in images[::97]:  # spread over many people
        img = dlib.load_rgb_image(str(image_path))
        faces = detector(img, 1)
        if not faces:
            continue
        chip = dlib.get_face_chip(img, predictor(img, faces[0]), size=150, padding=0.25)
        chips.append(chip)
        refs.append(np.asarray(facerec.compute_face_descriptor(chip), dtype=np.float32))  # chip overload
        if len(chips) == N_CHIPS:
            break
    assert len(chips) == N_CHIPS, "too few faces detected in lfw-dev"
    return np.stack(chips), np.stack(refs)


def _to_batch(chips: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(chips).permute(0, 3, 1, 2).float()


# -- (a) reader -------------------------------------------------------------------------------


def test_reader_parses_the_real_file(model_path: Path) -> None:
    net = dlib_resnet.read_dlib_resnet_file(model_path)
    assert net.input_size == (150, 150)
    assert net.pixel_means == pytest.approx((122.782, 117.001, 104.298), abs=1e-4)
    assert net.distance_threshold == pytest.approx(0.6)
    kinds = [type(layer).__name__ for layer in net.layers]
    assert kinds.count("ConvRecord") == 29
    assert kinds.count("AffineRecord") == 29
    assert kinds.count("PoolRecord") == 1 + 4 + 1  # stem max pool, 4 shortcuts, final mean
    assert kinds[-1] == "FcRecord" and net.layers[-1].weight.shape == (256, 128)
    first = net.layers[0]
    assert first.weight.shape == (32, 3, 7, 7) and first.stride == 2 and first.padding == 0
    assert all(np.isfinite(getattr(layer, "weight", np.zeros(1))).all() for layer in net.layers)


def test_loaded_model_is_eval_and_differentiable(model: dlib_resnet.DlibFaceResNet) -> None:
    assert not model.training
    assert all(p.requires_grad for p in model.parameters())
    x = torch.full((1, 3, 150, 150), 128.0, requires_grad=True)
    model(x).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_stage_sizes_and_cam_layer(model: dlib_resnet.DlibFaceResNet) -> None:
    seen: dict[str, tuple[int, ...]] = {}
    hooks = [
        stage.register_forward_hook(lambda _m, _i, out, name=name: seen.__setitem__(name, tuple(out.shape[1:])))
        for name, stage in model.named_stages()
    ]
    try:
        with torch.no_grad():
            assert model(torch.zeros(2, 3, 150, 150)).shape == (2, 128)
    finally:
        for hook in hooks:
            hook.remove()
    assert seen == {info.name: (info.channels, info.size, info.size) for info in model.stage_info}
    assert model.cam_layer is model.stage_by_size(35) is model.stages.res35
    assert seen["res17"] == (64, 17, 17)
    with pytest.raises(KeyError):
        model.stage_by_size(16)


def test_forward_rejects_wrong_shapes(model: dlib_resnet.DlibFaceResNet) -> None:
    with pytest.raises(ValueError, match="N x 3 x 150 x 150"):
        model(torch.zeros(1, 150, 150, 3))


# -- (b) equivalence with dlib ----------------------------------------------------------------


def test_matches_dlib_on_real_chips(
    model: dlib_resnet.DlibFaceResNet, chips_and_reference: tuple[np.ndarray, np.ndarray]
) -> None:
    chips, reference = chips_and_reference
    with torch.inference_mode():
        ours = model(_to_batch(chips)).numpy()
    assert ours.shape == reference.shape == (N_CHIPS, 128)
    assert np.abs(ours - reference).max() < MAX_ABS_DIFF
    # one at a time gives the same as a batch
    with torch.inference_mode():
        single = model(_to_batch(chips[:1])).numpy()
    assert np.abs(single - ours[:1]).max() < 1e-5


# -- (c) broken files -------------------------------------------------------------------------


@pytest.mark.parametrize("keep", [0.5, 0.999, 100, 300])
def test_truncated_file_raises_clear_error(model_path: Path, tmp_path: Path, keep: float) -> None:
    data = model_path.read_bytes()
    cut = int(len(data) * keep) if keep < 1 else int(keep)  # middle of weights, near the end, header
    broken = tmp_path / "truncated.dat"
    broken.write_bytes(data[:cut])
    with pytest.raises(dlib_resnet.DlibModelFormatError, match="unexpected end of file") as info:
        dlib_resnet.load_dlib_resnet(broken)
    assert isinstance(info.value, ValueError)
    assert info.value.offset <= cut
    assert f"byte offset {info.value.offset}" in str(info.value)
    assert str(broken) in str(info.value)


def test_corrupt_version_tag_raises(model_path: Path) -> None:
    data = bytearray(model_path.read_bytes())
    pos = data.index(b"con_4")
    data[pos : pos + 5] = b"con_9"
    with pytest.raises(dlib_resnet.DlibModelFormatError, match="con_9") as info:
        dlib_resnet.read_dlib_resnet_file(bytes(data))
    assert info.value.offset == pos - 2  # at the string's length prefix


def test_trailing_bytes_raise(model_path: Path) -> None:
    with pytest.raises(dlib_resnet.DlibModelFormatError, match="trailing"):
        dlib_resnet.read_dlib_resnet_file(model_path.read_bytes() + b"\x00")


def test_other_file_is_rejected() -> None:
    predictor = importlib.resources.files("face_recognition_models") / "models" / "shape_predictor_5_face_landmarks.dat"
    with pytest.raises(dlib_resnet.DlibModelFormatError):
        dlib_resnet.read_dlib_resnet_file(Path(str(predictor)))

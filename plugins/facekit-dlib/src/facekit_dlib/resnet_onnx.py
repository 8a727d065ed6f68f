"""dlib's face ResNet as an ONNX graph, built straight from dlib's ``.dat`` weights.

:func:`build_onnx_model` turns the records of :func:`facekit.dlib_model.reader.read_dlib_resnet_file`
into a serialized ONNX ``ModelProto`` that ONNX Runtime runs: no dlib, no torch, and not the
``onnx`` package either. The graph is small (29 convolutions), so the protobuf is written by
the few lines of :class:`_Proto` below; the ``onnx`` package would add 86 MB to the install
and 0.2 s to the first embedding for the same bytes (measured on this project's venv).

Graph, for input ``chips`` float32 N x 3 x 150 x 150 RGB with pixel values 0..255::

    (x - channel means) / 256                    dlib's input layer
    Conv (affine folded in) + Relu, MaxPool 3/2  stem
    per block: Conv+Relu, Conv, shortcut (AveragePool 2/2 when down-sampling),
               Pad both to the larger shape (dlib's add_prev), Add, Relu
    GlobalAveragePool, Flatten, MatMul (256 x 128, no bias)  -> ``descriptors`` N x 128

dlib's per-channel ``affine`` (a frozen batch norm) is folded into the convolution before it:
``gamma * (W x + b) + beta`` is the convolution with weights ``gamma W`` and bias
``gamma b + beta``; the descriptors stay within 1e-5 of dlib's (tested).
"""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np

from facekit.dlib_model.reader import STAGES, AffineRecord, ConvRecord, DlibNetFile, FcRecord, PoolRecord

INPUT_NAME = "chips"
OUTPUT_NAME = "descriptors"
OPSET = 13
IR_VERSION = 8  # ONNX Runtime >= 1.10 reads it
#: bump when the graph built from the same weights changes: cached graphs are keyed by it
GRAPH_VERSION = 1

# TensorProto.DataType and AttributeProto.AttributeType values from onnx.proto
_FLOAT, _INT64 = 1, 7
_ATTR_INT, _ATTR_INTS = 2, 7


class _Proto:
    """Protocol-buffer wire format: just what an ONNX ModelProto of this graph needs."""

    @staticmethod
    def varint(value: int) -> bytes:
        value &= (1 << 64) - 1  # int64 fields: negatives as two's complement
        out = bytearray()
        while True:
            bits = value & 0x7F
            value >>= 7
            if value:
                out.append(bits | 0x80)
            else:
                out.append(bits)
                return bytes(out)

    @classmethod
    def int_field(cls, number: int, value: int) -> bytes:
        return cls.varint(number << 3) + cls.varint(value)

    @classmethod
    def bytes_field(cls, number: int, payload: bytes | str) -> bytes:
        if isinstance(payload, str):
            payload = payload.encode("utf-8")
        return cls.varint(number << 3 | 2) + cls.varint(len(payload)) + payload

    @classmethod
    def messages(cls, number: int, payloads: Iterable[bytes]) -> bytes:
        return b"".join(cls.bytes_field(number, p) for p in payloads)

    # -- ONNX messages (field numbers from onnx/onnx.proto) -----------------------------------

    @classmethod
    def tensor(cls, name: str, array: np.ndarray) -> bytes:
        """TensorProto: dims=1, data_type=2, name=8, raw_data=9 (little-endian)."""
        kinds = {np.dtype(np.float32): ("<f4", _FLOAT), np.dtype(np.int64): ("<i8", _INT64)}
        little, data_type = kinds[array.dtype]
        dims = b"".join(cls.int_field(1, d) for d in array.shape)
        raw = np.ascontiguousarray(array, dtype=little).tobytes()
        return dims + cls.int_field(2, data_type) + cls.bytes_field(8, name) + cls.bytes_field(9, raw)

    @classmethod
    def attribute(cls, name: str, value: int | Sequence[int]) -> bytes:
        """AttributeProto: name=1, i=3, ints=8, type=20."""
        if isinstance(value, int):
            return cls.bytes_field(1, name) + cls.int_field(3, value) + cls.int_field(20, _ATTR_INT)
        ints = b"".join(cls.int_field(8, v) for v in value)
        return cls.bytes_field(1, name) + ints + cls.int_field(20, _ATTR_INTS)

    @classmethod
    def node(cls, op_type: str, inputs: Sequence[str], outputs: Sequence[str], name: str, **attrs: int | Sequence[int]) -> bytes:
        """NodeProto: input=1, output=2, name=3, op_type=4, attribute=5."""
        return (
            b"".join(cls.bytes_field(1, i) for i in inputs)
            + b"".join(cls.bytes_field(2, o) for o in outputs)
            + cls.bytes_field(3, name)
            + cls.bytes_field(4, op_type)
            + cls.messages(5, (cls.attribute(k, v) for k, v in attrs.items()))
        )

    @classmethod
    def float_value_info(cls, name: str, dims: Sequence[int | str]) -> bytes:
        """ValueInfoProto(name=1, type=2) of a float tensor; a str dim is symbolic (the batch)."""
        shape = cls.messages(
            1, (cls.bytes_field(2, d) if isinstance(d, str) else cls.int_field(1, d) for d in dims)
        )
        tensor_type = cls.int_field(1, _FLOAT) + cls.bytes_field(2, shape)
        return cls.bytes_field(1, name) + cls.bytes_field(2, cls.bytes_field(1, tensor_type))


class _GraphBuilder:
    """Collects nodes and initializers while tracking each activation's (C, H, W) shape."""

    def __init__(self) -> None:
        self.nodes: list[bytes] = []
        self.initializers: list[bytes] = []
        self._count = 0

    def name(self, prefix: str) -> str:
        self._count += 1
        return f"{prefix}_{self._count}"

    def constant(self, prefix: str, array: np.ndarray) -> str:
        name = self.name(prefix)
        self.initializers.append(_Proto.tensor(name, array))
        return name

    def op(self, op_type: str, *inputs: str, **attrs: int | Sequence[int]) -> str:
        out = self.name(op_type.lower())
        self.nodes.append(_Proto.node(op_type, inputs, [out], out, **attrs))
        return out

    def conv(self, x: str, shape: tuple[int, int, int], conv: ConvRecord, affine: AffineRecord) -> tuple[str, tuple[int, int, int]]:
        gamma = affine.gamma.astype(np.float32)
        bias = conv.bias if conv.bias is not None else np.zeros(len(gamma), np.float32)
        weight = (conv.weight * gamma[:, None, None, None]).astype(np.float32)
        folded_bias = (bias * gamma + affine.beta).astype(np.float32)
        k, s, p = conv.weight.shape[2], conv.stride, conv.padding
        out = self.op(
            "Conv", x, self.constant("w", weight), self.constant("b", folded_bias),
            kernel_shape=[k, k], strides=[s, s], pads=[p, p, p, p],
        )
        size = (shape[1] + 2 * p - k) // s + 1
        return out, (weight.shape[0], size, size)

    def pool(self, x: str, shape: tuple[int, int, int], pool: PoolRecord) -> tuple[str, tuple[int, int, int]]:
        op_type = {"max": "MaxPool", "avg": "AveragePool"}[pool.kind]
        k, s = pool.size, pool.stride
        out = self.op(op_type, x, kernel_shape=[k, k], strides=[s, s])  # no padding, floor: dlib's 1+(n-k)/s
        size = (shape[1] - k) // s + 1
        return out, (shape[0], size, size)

    def pad_to(self, x: str, shape: tuple[int, int, int], target: tuple[int, int, int]) -> str:
        """Zero-pad at the end of C, H and W, as dlib's add_prev does with the smaller operand."""
        if shape == target:
            return x
        pads = np.array([0, 0, 0, 0, 0] + [t - s for s, t in zip(shape, target)], dtype=np.int64)
        return self.op("Pad", x, self.constant("pads", pads))


def build_onnx_model(net: DlibNetFile) -> bytes:
    """The serialized ONNX model (opset 13) of the network in ``net``.

    Raises ``ValueError`` if the records do not follow dlib's face ResNet layout.
    """
    records = iter(net.layers)

    def take(kind: type, where: str):  # type: ignore[no-untyped-def]
        record = next(records, None)
        if not isinstance(record, kind):
            raise ValueError(f"{where}: expected a {kind.__name__}, found {type(record).__name__}")
        return record

    g = _GraphBuilder()
    height, width = net.input_size
    means = np.asarray(net.pixel_means, dtype=np.float32).reshape(1, 3, 1, 1)
    x = g.op("Sub", INPUT_NAME, g.constant("pixel_mean", means))
    x = g.op("Mul", x, g.constant("scale", np.array(1.0 / 256.0, dtype=np.float32)))
    shape = (3, height, width)

    x, shape = g.conv(x, shape, take(ConvRecord, "stem conv"), take(AffineRecord, "stem affine"))
    x = g.op("Relu", x)
    x, shape = g.pool(x, shape, take(PoolRecord, "stem pool"))
    for stage, _channels, blocks, down, _size in STAGES:
        for i in range(blocks):
            where = f"{stage} block {i}"
            y, y_shape = g.conv(x, shape, take(ConvRecord, where + " conv1"), take(AffineRecord, where + " affine1"))
            y = g.op("Relu", y)
            y, y_shape = g.conv(y, y_shape, take(ConvRecord, where + " conv2"), take(AffineRecord, where + " affine2"))
            shortcut, s_shape = x, shape
            if down and i == 0:
                shortcut, s_shape = g.pool(x, shape, take(PoolRecord, where + " shortcut"))
            target = tuple(max(a, b) for a, b in zip(y_shape, s_shape))
            x = g.op("Add", g.pad_to(y, y_shape, target), g.pad_to(shortcut, s_shape, target))  # type: ignore[arg-type]
            x, shape = g.op("Relu", x), target  # type: ignore[assignment]
    final_pool: PoolRecord = take(PoolRecord, "final pool")
    if final_pool.size != 0:
        raise ValueError(f"final pool: expected a mean over the whole map, found a {final_pool.size}x{final_pool.size} pool")
    x = g.op("Flatten", g.op("GlobalAveragePool", x), axis=1)
    fc: FcRecord = take(FcRecord, "fc")
    if fc.weight.shape[0] != shape[0] or fc.bias is not None:
        raise ValueError(f"fc: dlib weights {fc.weight.shape} (bias: {fc.bias is not None}) do not fit {shape[0]} channels")
    matmul = _Proto.node("MatMul", [x, g.constant("fc", fc.weight.astype(np.float32))], [OUTPUT_NAME], "fc")
    g.nodes.append(matmul)
    if next(records, None) is not None:
        raise ValueError("the dlib file has more layers than the network")

    graph = (
        _Proto.messages(1, g.nodes)
        + _Proto.bytes_field(2, "dlib_face_recognition_resnet_model_v1")
        + _Proto.messages(5, g.initializers)
        + _Proto.bytes_field(11, _Proto.float_value_info(INPUT_NAME, ["N", 3, height, width]))
        + _Proto.bytes_field(12, _Proto.float_value_info(OUTPUT_NAME, ["N", fc.weight.shape[1]]))
    )
    opset = _Proto.bytes_field(1, "") + _Proto.int_field(2, OPSET)
    return (
        _Proto.int_field(1, IR_VERSION)
        + _Proto.bytes_field(2, "facekit-dlib")
        + _Proto.bytes_field(7, graph)
        + _Proto.bytes_field(8, opset)
    )


# ---------------------------------------------------------------------------------------------
# Running it with ONNX Runtime
# ---------------------------------------------------------------------------------------------

#: the graph optimisation levels of ONNX Runtime, by the names the embedder's params use
OPTIMIZATION_LEVELS = ("disabled", "basic", "extended", "all")


def import_onnxruntime():  # type: ignore[no-untyped-def]
    """The ``onnxruntime`` module, or a :class:`DependencyError` saying how to install it."""
    from facekit.errors import DependencyError

    try:
        import onnxruntime
    except ImportError as exc:
        raise DependencyError(
            f"the dlib.resnet_onnx embedder needs ONNX Runtime, which could not be imported ({exc}); "
            "install it with `pip install onnxruntime` (or reinstall facekit-dlib, which depends on it)"
        ) from exc
    return onnxruntime


def make_session(model: bytes, *, num_threads: int | None, optimization: str):  # type: ignore[no-untyped-def]
    """An ONNX Runtime CPU session for ``model``.

    ``num_threads=None`` keeps ONNX Runtime's default (one thread per physical core). Idle
    worker threads sleep instead of spinning, so that a session does not steal the CPU from
    the detector or from other processes between batches.
    """
    ort = import_onnxruntime()
    options = ort.SessionOptions()
    options.graph_optimization_level = {
        "disabled": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }[optimization]
    if num_threads is not None:
        options.intra_op_num_threads = num_threads
        options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])

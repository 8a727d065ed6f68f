"""Running an EfficientNetV2 + ArcFace model from an ONNX file (onnxruntime), its shapes checked on load."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import numpy as np

from facekit.errors import DependencyError, ModelFileError
from facekit_torch.efficientnet.network import EXTRA_HINT, NAME


def import_onnxruntime() -> Any:
    """The ``onnxruntime`` module, or a :class:`DependencyError` naming the extra to install."""
    try:
        import onnxruntime
    except ImportError as exc:
        raise DependencyError(
            f"running an ONNX model needs onnxruntime, which could not be imported ({exc}); "
            f"install it with `{EXTRA_HINT}` (or onnxruntime-gpu for CUDA)"
        ) from exc
    return onnxruntime


class OnnxNetwork:
    """An ONNX embedding model run by onnxruntime, its input and output shapes checked on load."""

    def __init__(self, path: Path, size: int, dim: int, device: str = "cpu", num_threads: Optional[int] = None) -> None:
        ort = import_onnxruntime()
        path = Path(path)
        if not path.is_file():
            raise ModelFileError(
                f"{NAME}: ONNX file not found: {path}; set `weights:` to an existing .onnx file "
                "(e.g. FACE01's JAPANESE_FACE_V1.onnx) or to an article-format .pt checkpoint"
            )
        options = ort.SessionOptions()
        if num_threads:
            options.intra_op_num_threads = num_threads
        providers = ["CPUExecutionProvider"]
        if device != "cpu" and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        try:
            self.session = ort.InferenceSession(str(path), sess_options=options, providers=providers)
        except Exception as exc:
            detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelFileError(f"{NAME}: {path} is not a loadable ONNX model ({detail})") from None
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        want = f"one input N x 3 x {size} x {size} (float) and one output N x {dim}"
        if len(inputs) != 1 or not outputs:
            raise ModelFileError(f"{NAME}: {path} has {len(inputs)} inputs and {len(outputs)} outputs; expected {want}")
        shape = list(inputs[0].shape)
        if len(shape) != 4 or shape[1] != 3:
            raise ModelFileError(f"{NAME}: {path}: input {inputs[0].name!r} has shape {shape}; expected {want}")
        side = [s for s in shape[2:] if isinstance(s, int)]
        if any(s != size for s in side):
            raise ModelFileError(
                f"{NAME}: {path}: input {inputs[0].name!r} has shape {shape}, so the model takes "
                f"{shape[2]}x{shape[3]} chips, not {size}x{size}; set `size: {side[0]}` (and the aligner's size)"
            )
        out_shape = list(outputs[0].shape)
        if len(out_shape) != 2 or (isinstance(out_shape[1], int) and out_shape[1] != dim):
            raise ModelFileError(
                f"{NAME}: {path}: output {outputs[0].name!r} has shape {out_shape}; expected N x {dim}"
                + (f" (set `dim: {out_shape[1]}`)" if len(out_shape) == 2 else "")
            )
        self.path = path
        self.input_name = inputs[0].name
        self.output_name = outputs[0].name
        #: FACE01's file is fixed at batch 1: feed such a model one chip at a time
        self.fixed_batch = shape[0] if isinstance(shape[0], int) else None

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if self.fixed_batch is None or self.fixed_batch == len(x):
            return np.asarray(self.session.run([self.output_name], {self.input_name: x})[0], dtype=np.float32)
        if self.fixed_batch != 1:
            raise ModelFileError(f"{NAME}: {self.path} takes batches of exactly {self.fixed_batch}")
        return np.concatenate([self(x[i : i + 1]) for i in range(len(x))])

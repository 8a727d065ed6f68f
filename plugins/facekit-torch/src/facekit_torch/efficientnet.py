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

This module imports torch, timm and onnxruntime only when a network is built or loaded.
"""

from __future__ import annotations

import re
import warnings
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Mapping, NamedTuple, Optional, get_args

import numpy as np
from pydantic import Field, field_validator, model_validator

from facekit.components import Embedder, Lazy, Params, TorchModel, check_chips
from facekit.errors import ConfigError, DependencyError, ModelFileError
from facekit_torch._torch import choose_device, import_torch

if TYPE_CHECKING:  # pragma: no cover
    import torch

NAME = "efficientnetv2_arcface"
#: how error messages name this module's user of torch
WHO = f"the {NAME} embedder"

#: timm EfficientNetV2 variants this embedder builds (all with pretrained=False)
Variant = Literal[
    "tf_efficientnetv2_b0",
    "tf_efficientnetv2_b1",
    "tf_efficientnetv2_b2",
    "tf_efficientnetv2_b3",
    "tf_efficientnetv2_s",
    "tf_efficientnetv2_m",
    "tf_efficientnetv2_l",
    "efficientnetv2_rw_t",
    "efficientnetv2_rw_s",
]
VARIANTS: tuple[str, ...] = get_args(Variant)

DEFAULT_VARIANT = "tf_efficientnetv2_b0"
DEFAULT_DIM = 512
DEFAULT_SIZE = 224
#: FACE01's threshold: cosine 0.4 (FACE01's percentage reaches 90 % at 0.4036)
DEFAULT_THRESHOLD = 0.4

#: torchvision's ImageNet normalisation, applied after scaling pixels to [0, 1]
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

TORCH_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin")
ONNX_SUFFIXES = (".onnx",)
#: chips per forward pass when embed() is handed a larger array
MAX_BATCH = 64

EXTRA_HINT = "pip install 'facekit-torch[efficientnet]'"


# --------------------------------------------------------------------------- dependencies
def import_timm() -> Any:
    try:
        import timm
    except ImportError as exc:
        raise DependencyError(
            f"the {NAME} embedder needs timm, which could not be imported ({exc}); install it with `{EXTRA_HINT}`"
        ) from exc
    return timm


def import_onnxruntime() -> Any:
    try:
        import onnxruntime
    except ImportError as exc:
        raise DependencyError(
            f"running an ONNX model needs onnxruntime, which could not be imported ({exc}); "
            f"install it with `{EXTRA_HINT}` (or onnxruntime-gpu for CUDA)"
        ) from exc
    return onnxruntime


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


# --------------------------------------------------------------------------- the network
def build_network(
    variant: str = DEFAULT_VARIANT,
    dim: int = DEFAULT_DIM,
    *,
    drop_rate: float = 0.0,
    drop_path_rate: float = 0.0,
) -> "torch.nn.Module":
    """The article's module: ``trunk`` = timm ``variant`` with ``trunk.classifier = Linear(num_features, dim)``.

    Built with ``pretrained=False`` (no download), randomly initialised. ``drop_rate`` is
    the dropout before the classifier (``trunk.drop_rate``, which may be changed between
    epochs), ``drop_path_rate`` timm's stochastic depth. Its forward maps a normalised
    ``N x 3 x S x S`` batch to ``N x dim`` embeddings; any S works (global pooling).
    """
    nn = import_torch(WHO).nn

    timm = import_timm()
    if variant not in VARIANTS:
        raise ConfigError(f"unknown EfficientNetV2 variant {variant!r}; choose one of {', '.join(VARIANTS)}")
    trunk = timm.create_model(variant, pretrained=False, drop_rate=drop_rate, drop_path_rate=drop_path_rate)
    trunk.classifier = nn.Linear(trunk.num_features, dim)
    # nn.Sequential with one named child: forward is trunk(x) and state_dict keys start
    # with "trunk.", as in the article, without defining a Module subclass here.
    return nn.Sequential(OrderedDict(trunk=trunk))


def cam_layer(network: "torch.nn.Module") -> "torch.nn.Module":
    """The Grad-CAM layer the article uses: the last block stage, ``trunk.blocks[-1]``."""
    return network.trunk.blocks[-1]  # type: ignore[index,union-attr]


def read_checkpoint(path: Path) -> dict[str, Any]:
    """The tensors of an article-format checkpoint, read with ``weights_only=True``.

    Also accepted: the same dict under a ``state_dict`` or ``model`` key (training
    checkpoints) and keys prefixed by ``module.`` (DataParallel).
    """
    torch = import_torch(WHO)

    path = Path(path)
    if not path.is_file():
        raise ModelFileError(
            f"{NAME}: weights file not found: {path}; set `weights:` to an article-format PyTorch checkpoint "
            "(.pt/.pth) or an ONNX file (.onnx), or write `weights: random` for an untrained network"
        )
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # UnpicklingError, RuntimeError (zip), EOFError...
        detail = re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).strip()
        detail = detail.splitlines()[0] if detail else type(exc).__name__
        hint = (
            "it holds pickled Python objects, which weights_only=True refuses (was the whole model saved with "
            "torch.save(model)? save model.state_dict() instead)"
            if "weights_only" in str(exc) or "Unpickl" in type(exc).__name__
            else "it is not a readable torch.save file (truncated or another format?)"
        )
        raise ModelFileError(f"{NAME}: cannot load {path}: {hint} [{type(exc).__name__}: {detail}]") from None
    for key in ("state_dict", "model"):
        if isinstance(data, Mapping) and isinstance(data.get(key), Mapping):
            data = data[key]
            break
    if not isinstance(data, Mapping) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise ModelFileError(
            f"{NAME}: {path} is not a state_dict (a mapping of parameter names to tensors), it holds a "
            f"{type(data).__name__}; save the article's module with torch.save(model.state_dict(), path)"
        )
    state = dict(data)
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    return state


def _expected_shapes(variant: str, dim: int) -> dict[str, tuple[int, ...]]:
    torch = import_torch(WHO)

    with torch.device("meta"):  # shapes only: no memory, no initialisation cost
        net = build_network(variant, dim)
    return {k: tuple(v.shape) for k, v in net.state_dict().items()}


def _describe_mismatch(
    state: Mapping[str, Any], expected: Mapping[str, tuple[int, ...]], variant: str, dim: int, path: Path
) -> Optional[str]:
    """None if ``state`` fits ``expected`` exactly, else a message that says how it does not."""
    got = {k: tuple(v.shape) for k, v in state.items()}
    missing = [k for k in expected if k not in got]
    unexpected = [k for k in got if k not in expected]
    wrong = [k for k in expected if k in got and got[k] != expected[k]]
    if not (missing or unexpected or wrong):
        return None

    def listing(keys: list[str], show: Any) -> str:
        shown = ", ".join(show(k) for k in keys[:4])
        return shown + (f", ... ({len(keys)} in all)" if len(keys) > 4 else "")

    parts = [
        f"{NAME}: {path} does not fit the network {variant!r} with dim {dim}: it should hold {len(expected)} tensors "
        f"named 'trunk.<timm parameter>' (e.g. 'trunk.conv_stem.weight' {expected.get('trunk.conv_stem.weight')}, "
        f"'trunk.classifier.weight' {expected.get('trunk.classifier.weight')})."
    ]
    if missing:
        parts.append(f"Missing: {listing(missing, lambda k: f'{k} {expected[k]}')}.")
    if unexpected:
        parts.append(f"Unexpected: {listing(unexpected, lambda k: f'{k} {got[k]}')}.")
    if wrong:
        parts.append(f"Wrong shape: {listing(wrong, lambda k: f'{k} is {got[k]}, expected {expected[k]}')}.")
    hints = []
    if got and not any(k.startswith("trunk.") for k in got):
        hints.append(
            "no key starts with 'trunk.': the article's format wraps the timm model as `trunk` "
            "(a bare timm state_dict needs its keys prefixed with 'trunk.')"
        )
    head = got.get("trunk.classifier.weight")
    if head is not None and len(head) == 2 and head[0] != dim:
        hints.append(f"the file's embedding has {head[0]} dimensions: set `dim: {head[0]}`")
    only_head = all(k.startswith("trunk.classifier.") for k in missing + unexpected + wrong)
    fits = None if only_head else _variants_that_fit(got, head[0] if head is not None and len(head) == 2 else dim, variant)
    if fits:
        hints.append(f"the file fits variant {fits!r}: set `variant: {fits}`")
    if hints:
        parts.append("Hint: " + "; ".join(hints) + ".")
    return " ".join(parts)


def _variants_that_fit(got: Mapping[str, tuple[int, ...]], dim: int, exclude: str) -> Optional[str]:
    """The first known variant whose tensors match ``got`` exactly (only on the error path)."""
    stem = got.get("trunk.conv_stem.weight")
    if stem is None:
        return None
    for candidate in VARIANTS:
        if candidate == exclude:
            continue
        try:
            shapes = _expected_shapes(candidate, dim)
        except Exception:  # pragma: no cover - a timm without this variant
            continue
        if shapes.get("trunk.conv_stem.weight") == stem and shapes == dict(got):
            return candidate
    return None


def load_network(path: Path, variant: str = DEFAULT_VARIANT, dim: int = DEFAULT_DIM) -> "torch.nn.Module":
    """Build ``variant``/``dim`` and load an article-format checkpoint into it, strictly."""
    path = Path(path)
    state = read_checkpoint(path)
    network = build_network(variant, dim)
    expected = {k: tuple(v.shape) for k, v in network.state_dict().items()}
    problem = _describe_mismatch(state, expected, variant, dim, path)
    if problem:
        raise ModelFileError(problem)
    network.load_state_dict(state, strict=True)
    return network.eval()


def random_network(variant: str = DEFAULT_VARIANT, dim: int = DEFAULT_DIM, seed: int = 0) -> "torch.nn.Module":
    """A randomly initialised network, the same for the same seed (process RNG left alone)."""
    torch = import_torch(WHO)

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build_network(variant, dim).eval()


def chips_to_tensor(chips: np.ndarray, device: Any = "cpu") -> "torch.Tensor":
    """(N, S, S, 3) uint8 RGB -> normalised float32 N x 3 x S x S (ToTensor + ImageNet Normalize)."""
    torch = import_torch(WHO)

    batch = torch.from_numpy(np.ascontiguousarray(chips)).to(device)  # uint8: 4x less to copy
    x = batch.permute(0, 3, 1, 2).to(torch.float32).div_(255.0)
    mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float32, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=torch.float32, device=x.device).view(1, 3, 1, 1)
    return x.sub_(mean).div_(std).contiguous()


def chips_to_array(chips: np.ndarray) -> np.ndarray:
    """The same normalisation in numpy, for ONNX: float32 N x 3 x S x S."""
    x = np.ascontiguousarray(chips).astype(np.float32) / 255.0
    x = (x - np.asarray(IMAGENET_MEAN, np.float32)) / np.asarray(IMAGENET_STD, np.float32)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


# --------------------------------------------------------------------------- ONNX
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


# --------------------------------------------------------------------------- export
def save_checkpoint(network: "torch.nn.Module", path: Any) -> Path:
    """Write the network in the article's format (``state_dict``, keys ``trunk.*``), atomically."""
    torch = import_torch(WHO)

    from facekit.io import atomic_write

    state = OrderedDict((k, v.detach().cpu().clone()) for k, v in network.state_dict().items())
    return atomic_write(path, lambda tmp: torch.save(state, tmp))


def export_onnx(network: "torch.nn.Module", path: Any, size: int, opset: int = 17) -> Path:
    """Write the network as ONNX (input ``input`` N x 3 x size x size, output ``embedding`` N x dim), atomically.

    Uses torch's TorchScript-based exporter, which needs no extra package.
    """
    import copy

    torch = import_torch(WHO)

    from facekit.io import atomic_write

    model = copy.deepcopy(network).cpu().eval()
    example = torch.zeros(1, 3, size, size)

    def write(tmp: Path) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the legacy exporter's deprecation notice
            torch.onnx.export(
                model,
                (example,),
                str(tmp),
                dynamo=False,
                input_names=["input"],
                output_names=["embedding"],
                dynamic_axes={"input": {0: "batch"}, "embedding": {0: "batch"}},
                opset_version=opset,
            )

    return atomic_write(path, write)


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

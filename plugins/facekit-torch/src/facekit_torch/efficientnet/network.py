"""The EfficientNetV2 + ArcFace network: building it, its weight files, and its input.

:func:`build_network` makes the article's module (``trunk`` = timm EfficientNetV2 with a
linear embedding head); :func:`load_network` reads an article-format checkpoint into it
strictly, explaining any mismatch; :func:`save_checkpoint` and :func:`export_onnx` write
a network; :func:`chips_to_tensor` and :func:`chips_to_array` normalise chips as the
network expects. torch and timm are imported when a function needs them.
"""

from __future__ import annotations

import re
import warnings
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Mapping, Optional, get_args

import numpy as np

from facekit.errors import ConfigError, DependencyError, ModelFileError
from facekit_torch._torch import import_torch

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

#: torchvision's ImageNet normalisation, applied after scaling pixels to [0, 1]
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

EXTRA_HINT = "pip install 'facekit-torch[efficientnet]'"


def import_timm() -> Any:
    """The ``timm`` module, or a :class:`DependencyError` naming the extra to install."""
    try:
        import timm
    except ImportError as exc:
        raise DependencyError(
            f"the {NAME} embedder needs timm, which could not be imported ({exc}); install it with `{EXTRA_HINT}`"
        ) from exc
    return timm


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

"""Grad-CAM family heatmaps of a face pair, for any PyTorch embedder (pytorch-grad-cam 1.5).

A face embedder has no classes, so the CAM target is the comparison itself: for face A it
is A's similarity to B's embedding, and for B its similarity to A's, in the embedder's own
metric (negative Euclidean distance for the dlib model, cosine similarity for ArcFace
models). B's embedding is held fixed (detached), so the gradients say which regions of A
move A towards B. Both faces go through the network as one batch of two.

The embedder says which layer to explain (:meth:`facekit.components.Embedder.torch_model`,
``TorchModel.target_layer``); ``layer`` picks another one by its dotted name in the module.
For the dlib ResNet the default is the 35x35 stage, the last before down-sampling.

The defaults are measured by benchmarks/bench_explain.py on 50 same-person pairs of LFW's
pairsDevTest (100 maps; blur the top 20 % of each chip and re-measure its distance to the
other face, against random blobs of the same area, the strict baseline; scattered random
pixels, an easy one, move the distance 40 % less than blobs):

* method: HiResCAM, 2.95x random blobs (5.0x scattered pixels), about as faithful as
  occlusion (2.93x) and 18 times faster. LayerCAM deletes as well (2.92x) but half of its
  map survives re-initialising the network's weights (Spearman 0.55 between trained and
  random weights, against 0.26 for HiResCAM): it partly draws the image, not the model.
  Grad-CAM++ 2.6x, plain Grad-CAM 1.6x.
* layer: the 35x35 stage (2.94x on the first 40 faces) beats the 17x17 one (2.44x);
  the 8x8 and 4x4 stages are too coarse (1.86x, 1.31x).
* smoothing: raw HiResCAM maps at a fine stage are spotty; blurring them with sigma = 4 %
  of the chip side (``smooth: 0.04``) took the 35x35 stage from 2.5x to 2.8x on 50
  pairsDevTrain pairs, and the map still passes the randomisation check.

Speed: the three methods whose map is a closed-form function of one layer's activations
A and gradients G (Grad-CAM: channel-mean of G times A; HiResCAM: G * A; LayerCAM:
max(G, 0) * A; each summed over channels) are computed here, with the same rectification
and min-max scaling as pytorch-grad-cam (tests check they agree with it). Importing
pytorch-grad-cam pulls in torchvision, scikit-learn, SciPy and matplotlib: 6.9 s of a
12.6 s ``facekit explain`` cold start on two quiet CPU cores, which now takes 6-7 s. The
other methods, ``eigen_smooth`` and ``engine: pytorch-grad-cam`` go through the library.

Caveat: a plain centred blob scores 2.66x: on aligned chips the middle of the face carries
most of the identity, and no map beats that prior by much (HiResCAM's maps correlate 0.63
with it, and 0.60 with occlusion's).

:func:`randomized_copy` gives the same embedder with re-initialised weights, for the
model-randomisation sanity check (:func:`facekit.studies.faithfulness.randomization_similarity`).
"""

from __future__ import annotations

import contextlib
import copy
import difflib
import io
from typing import TYPE_CHECKING, Literal, Optional

import numpy as np
from pydantic import Field, field_validator

from facekit.components import Embedder, Explainer, Params, TorchModel
from facekit.errors import ConfigError, DependencyError
from facekit.scoring.metric import Metric, metric_named
from facekit.types import AlignedFace, Heatmap
from facekit_torch._torch import import_torch

if TYPE_CHECKING:  # torch loads only when an explanation is made
    import torch

#: CAM methods by the name used in YAML and on the command line -> pytorch_grad_cam class name
METHODS: dict[str, str] = {
    "gradcam": "GradCAM",
    "gradcam++": "GradCAMPlusPlus",
    "hirescam": "HiResCAM",
    "xgradcam": "XGradCAM",
    "layercam": "LayerCAM",
    "eigencam": "EigenCAM",
    "eigengradcam": "EigenGradCAM",
    "gradcamelementwise": "GradCAMElementWise",
    "scorecam": "ScoreCAM",
}
_ALIASES = {"gradcamplusplus": "gradcam++", "gradcampp": "gradcam++"}


def _gradcam(acts: np.ndarray, grads: np.ndarray) -> np.ndarray:
    return (grads.mean(axis=(2, 3), keepdims=True) * acts).sum(axis=1)


def _hirescam(acts: np.ndarray, grads: np.ndarray) -> np.ndarray:
    return (grads * acts).sum(axis=1)


def _layercam(acts: np.ndarray, grads: np.ndarray) -> np.ndarray:
    return (np.maximum(grads, 0) * acts).sum(axis=1)


#: methods computed by facekit from (activations, gradients) of shape (N, C, H, W) -> (N, H, W)
GRADIENT_METHODS = {"gradcam": _gradcam, "hirescam": _hirescam, "layercam": _layercam}


def _canonical_method(value: str) -> str:
    key = "".join(ch for ch in str(value).lower() if ch not in "-_ ")
    return _ALIASES.get(key, key)


class SimilarityTarget:
    """CAM target: the similarity of one embedding to a fixed reference embedding.

    In the embedder's metric (:func:`facekit.scoring.metric.metric_named`), turned so that
    higher means more alike: a similarity (cosine) is used as it is, ``cos(e, ref)``; a
    distance (Euclidean) is negated, ``-||e - ref||`` (a tiny epsilon keeps the gradient
    finite when the two are identical). Accepts one embedding ``(D,)`` or a batch
    ``(N, D)`` (ScoreCAM calls it per output row).
    """

    def __init__(self, reference: torch.Tensor, metric: "str | Metric") -> None:
        self.reference = reference.detach()
        self.metric = metric_named(metric)

    def __call__(self, output: torch.Tensor) -> torch.Tensor:
        import torch
        ref = self.reference.to(output.device, output.dtype)
        if self.metric.higher_is_more_similar:
            return torch.nn.functional.cosine_similarity(output, ref.expand_as(output), dim=-1, eps=1e-8)
        return -torch.sqrt(((output - ref) ** 2).sum(dim=-1) + 1e-12)


def layer_name(module: torch.nn.Module, layer: torch.nn.Module) -> str:
    """Dotted name of ``layer`` inside ``module`` ("" if it is not a submodule)."""
    for name, sub in module.named_modules():
        if sub is layer:
            return name
    return ""


def find_layer(module: torch.nn.Module, name: str) -> torch.nn.Module:
    """The submodule called ``name`` (dotted, as in ``named_modules()``), or a ConfigError."""
    modules = dict(module.named_modules())
    if name in modules and name:
        return modules[name]
    names = [n for n in modules if n]
    close = difflib.get_close_matches(name, names, n=3)
    hint = f"; did you mean {' or '.join(map(repr, close))}?" if close else ""
    top = sorted({n.split(".")[0] for n in names})
    raise ConfigError(
        f"explainer.params.layer: no layer {name!r} in the embedder's network{hint} "
        f"(top-level modules: {', '.join(top)}; any dotted name from module.named_modules() works)"
    )


class GradCamExplainer(Explainer):
    """Grad-CAM (and relatives) with "similarity to the other face" as the target."""

    name = "gradcam"
    description = "Grad-CAM heatmaps: which regions raise each face's similarity to the other (PyTorch embedders)"
    needs_torch = True

    class Params(Params):
        method: str = Field(
            "hirescam",
            description="CAM method: " + ", ".join(METHODS) + " (case and -/_ ignored); default hirescam: "
            "the most faithful of those that pass the weight-randomisation check (benchmarks/bench_explain.py)",
        )
        layer: Optional[str] = Field(
            None, description="dotted module name to explain (default: the embedder's target_layer)"
        )
        eigen_smooth: bool = Field(False, description="keep only the first principal component of the CAM")
        smooth: float = Field(
            0.04, ge=0.0, le=0.5,
            description="Gaussian blur of the map, sigma as a fraction of the chip side (0.04: 6 px on a 150 px "
            "chip); CAM maps are spotty at a fine layer, and a smoothed map marks regions rather than pixels",
        )
        engine: Literal["auto", "pytorch-grad-cam"] = Field(
            "auto",
            description="auto: gradcam, hirescam and layercam are computed by facekit (same maps as "
            "pytorch-grad-cam, without its 7 s import), every other method by pytorch-grad-cam; "
            "pytorch-grad-cam: always the library",
        )

        @field_validator("method")
        @classmethod
        def _known_method(cls, value: str) -> str:
            key = _canonical_method(value)
            if key not in METHODS:
                close = difflib.get_close_matches(key, list(METHODS), n=2)
                hint = f" (did you mean {' or '.join(map(repr, close))}?)" if close else ""
                raise ValueError(f"unknown CAM method {value!r}{hint}; choices: {', '.join(METHODS)}")
            return key

    def _cam_class(self) -> type:
        try:
            import pytorch_grad_cam
        except ImportError as exc:  # pragma: no cover - the test requirements install it
            raise DependencyError(
                f"the gradcam explainer's method {self.params.method!r} (or engine 'pytorch-grad-cam') needs "
                "pytorch-grad-cam: pip install 'facekit-torch[explain]'"
            ) from exc
        return getattr(pytorch_grad_cam, METHODS[self.params.method])

    def _torch_model(self, embedder: Embedder) -> TorchModel:
        model = embedder.torch_model()
        if model is None:
            raise ConfigError(
                f"explainer 'gradcam' needs a PyTorch embedder and {embedder.name!r} is not one; "
                "use the model-agnostic 'occlusion' explainer"
            )
        return model

    def target_layer(self, embedder: Embedder) -> tuple[torch.nn.Module, str]:
        """The layer this explainer will use on ``embedder``, and its dotted name."""
        model = self._torch_model(embedder)
        if self.params.layer:
            return find_layer(model.module, self.params.layer), self.params.layer
        return model.target_layer, layer_name(model.module, model.target_layer) or type(model.target_layer).__name__

    @property
    def uses_library(self) -> bool:
        """Whether this configuration runs through pytorch-grad-cam (else facekit's own code)."""
        return (self.params.engine == "pytorch-grad-cam" or self.params.eigen_smooth
                or self.params.method not in GRADIENT_METHODS)

    def explain(self, embedder: Embedder, a: AlignedFace, b: AlignedFace) -> tuple[Heatmap, Heatmap]:
        torch = import_torch("the gradcam explainer")
        model = self._torch_model(embedder)
        layer, where = self.target_layer(embedder)
        cam_class = self._cam_class() if self.uses_library else None
        with torch.inference_mode(False), torch.enable_grad():
            inputs = model.to_tensor(np.stack([a.chip, b.chip]))
            inputs = inputs.detach().clone().requires_grad_(True)  # activations need grad even if weights do not
            if cam_class is None:
                maps = self._gradient_maps(model.module, layer, inputs, embedder.metric)
            else:
                with torch.no_grad():
                    vectors = model.module(inputs).detach()
                targets = [SimilarityTarget(vectors[1], embedder.metric), SimilarityTarget(vectors[0], embedder.metric)]
                cam = cam_class(model=model.module, target_layers=[layer])
                try:
                    # ScoreCAM draws tqdm bars on stderr; keep command-line output clean
                    quiet = (contextlib.redirect_stderr(io.StringIO()) if self.params.method == "scorecam"
                             else contextlib.nullcontext())
                    with quiet:
                        maps = cam(input_tensor=inputs, targets=targets, eigen_smooth=self.params.eigen_smooth)
                finally:
                    cam.activations_and_grads.release()
                    model.module.zero_grad(set_to_none=True)
        maps = np.nan_to_num(np.asarray(maps, dtype=np.float32), nan=0.0)
        if self.params.smooth > 0:
            maps = np.stack([_smoothed(m, self.params.smooth) for m in maps])
        label = f"{self.params.method} @ {where}"
        return tuple(  # type: ignore[return-value]
            Heatmap(np.clip(_fit(m, face.chip.shape[:2]), 0.0, 1.0), face, label) for m, face in zip(maps, (a, b))
        )

    def _gradient_maps(self, module: torch.nn.Module, layer: torch.nn.Module, inputs: torch.Tensor,
                       metric: str) -> np.ndarray:
        """The maps of a pair (``inputs`` holds A and B) from ``layer``'s activations and their
        gradients, in one forward and one backward pass: each face's target is its similarity
        to the other's (detached) embedding. Scaled to [0, 1] at the input's size (rectified,
        min-max scaled, resized, rectified and scaled again: pytorch-grad-cam's order, so the
        maps match the library's)."""
        import cv2
        import torch

        captured: list[torch.Tensor] = []
        handle = layer.register_forward_hook(lambda _module, _args, output: captured.append(output))
        try:
            outputs = module(inputs)
        finally:
            handle.remove()
        if len(captured) != 1 or not isinstance(captured[0], torch.Tensor) or captured[0].dim() != 4:
            raise ConfigError(
                "explainer.params.layer: the layer must run once per forward pass and output an (N, C, H, W) "
                "tensor; use engine: pytorch-grad-cam (with its reshape support) for other layers"
            )
        fixed = outputs.detach()
        targets = (SimilarityTarget(fixed[1], metric), SimilarityTarget(fixed[0], metric))
        score = sum(target(output) for target, output in zip(targets, outputs))
        (grads,) = torch.autograd.grad(score, captured[0])
        acts = captured[0].detach().float().cpu().numpy()
        cams = np.maximum(GRADIENT_METHODS[self.params.method](acts, grads.float().cpu().numpy()), 0)
        height, width = inputs.shape[-2:]
        maps = []
        for cam in cams:
            cam = _min_max(cam)
            cam = np.maximum(cv2.resize(cam.astype(np.float32), (int(width), int(height))), 0)
            maps.append(_min_max(cam))
        return np.stack(maps)


def _smoothed(values: np.ndarray, fraction: float) -> np.ndarray:
    """``values`` blurred with a Gaussian of sigma ``fraction`` of the side, rescaled to [0, 1]."""
    import cv2

    sigma = fraction * max(values.shape[:2])
    return _min_max(cv2.GaussianBlur(values.astype(np.float32), (0, 0), sigmaX=sigma, sigmaY=sigma,
                                     borderType=cv2.BORDER_REPLICATE))


def _min_max(values: np.ndarray) -> np.ndarray:
    values = values - values.min()
    return values / (1e-7 + values.max())


def _fit(values: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """The CAM at the chip's size (models with their own resize may return another size)."""
    if values.shape == tuple(shape[:2]):
        return values
    import cv2

    return cv2.resize(values, (int(shape[1]), int(shape[0])), interpolation=cv2.INTER_LINEAR)


# ------------------------------------------------------------------------------- sanity check
class RandomizedTorchEmbedder(Embedder):
    """A PyTorch embedder's network with re-initialised weights (for the randomisation check).

    Not registered: build one with :func:`randomized_copy`.
    """

    name = "randomized"
    description = "an embedder's network with random weights (sanity checks only)"

    def __init__(self, original: Embedder, model: TorchModel) -> None:
        super().__init__()
        self._model = model
        self.metric = original.metric  # type: ignore[misc]
        self.default_threshold = original.threshold  # type: ignore[misc]
        self.input_size = original.input_size  # type: ignore[misc]
        self.dim = original.dim  # type: ignore[misc]
        self.name = f"{original.name} (randomized)"  # type: ignore[misc]

    def embed(self, chips: np.ndarray) -> np.ndarray:
        import torch
        with torch.inference_mode():
            return self._model.module(self._model.to_tensor(np.asarray(chips))).float().cpu().numpy()

    def torch_model(self) -> TorchModel:
        return self._model


def _reinitialise(module: torch.nn.Module, generator: torch.Generator) -> None:
    import torch
    for sub in module.modules():
        own = dict(sub.named_parameters(recurse=False))
        if not own:
            continue
        for pname, param in own.items():
            with torch.no_grad():
                if param.dim() >= 2:
                    # Kaiming-uniform like torch's own conv/linear init, drawn from our generator
                    fan_in = param[0].numel()
                    bound = float(np.sqrt(6.0 / fan_in))
                    fresh = torch.empty(param.shape, dtype=param.dtype).uniform_(-bound, bound, generator=generator)
                    param.copy_(fresh)
                elif pname == "bias":
                    param.zero_()
                else:
                    param.fill_(1.0)  # scales of norm/affine layers


def randomized_copy(embedder: Embedder, seed: int = 0) -> RandomizedTorchEmbedder:
    """The embedder's network deep-copied with every weight re-initialised (Adebayo et al. 2018).

    Conv/linear weights are redrawn (Kaiming-uniform), biases zeroed, per-channel scales
    set to one: the architecture and input handling stay, everything learned is gone.
    """
    torch = import_torch("randomized_copy")
    model = embedder.torch_model()
    if model is None:
        raise ConfigError(f"{embedder.name!r} is not a PyTorch embedder; nothing to randomise")
    module = copy.deepcopy(model.module)
    generator = torch.Generator(device="cpu").manual_seed(int(seed))
    _reinitialise(module, generator)
    path = layer_name(model.module, model.target_layer)
    target = dict(module.named_modules())[path] if path else module
    return RandomizedTorchEmbedder(embedder, TorchModel(module, model.to_tensor, target))


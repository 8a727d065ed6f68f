"""The five kinds of component a pipeline is made of.

A component is a class with a short registered ``name``, a pydantic ``Params`` model
(``extra="forbid"``) for its YAML parameters, and one job. Constructing one is cheap:
weights load on first use or in :meth:`Component.warm_up`.

Subclass one of :class:`Detector`, :class:`Aligner`, :class:`Embedder`,
:class:`Explainer` or :class:`Aggregator` and register the class from a plugin hook
(see :mod:`facekit.hookspecs`).
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Generic, Literal, NamedTuple, Optional, Sequence, TypeVar

import numpy as np
from pydantic import BaseModel, ConfigDict

from facekit.errors import ImageError
from facekit.scoring.metric import MetricName
from facekit.types import AggregateResult, AlignedFace, Embedding, Face, Heatmap, Image

if TYPE_CHECKING:  # pragma: no cover
    import torch


class Params(BaseModel):
    """Base of every component's parameter model: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class NoParams(Params):
    """For components that take no parameters."""


KINDS = ("detector", "aligner", "embedder", "explainer", "aggregator", "index")
Kind = Literal["detector", "aligner", "embedder", "explainer", "aggregator", "index"]


class Component:
    """Common base: a name, a parameter model, lazy warm-up."""

    kind: ClassVar[str] = ""
    #: short registered name used in YAML, e.g. ``"dlib.hog"``
    name: ClassVar[str] = ""
    #: one line shown by ``facekit list``
    description: ClassVar[str] = ""
    Params: ClassVar[type[Params]] = NoParams

    def __init__(self, params: Optional[Params | dict[str, Any]] = None, **kwargs: Any) -> None:
        if params is None:
            params = self.Params(**kwargs)
        elif isinstance(params, dict):
            params = self.Params(**{**params, **kwargs})
        elif kwargs:
            params = params.model_copy(update=kwargs)
        self.params = params

    def warm_up(self) -> None:
        """Load weights now rather than on first use. Safe to call twice."""

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params.model_dump().items())
        return f"{type(self).__name__}({args})"


class Detector(Component):
    """Finds faces in an image."""

    kind = "detector"
    #: landmark scheme of the faces this detector returns, or None if it gives boxes only
    provides_landmarks: ClassVar[Optional[str]] = None
    #: True if it looks for faces in the pixels, so an image without a face gives none;
    #: False for one that returns a face whatever the image holds (``whole_image``: the frame)
    finds_faces: ClassVar[bool] = True

    def detect(self, image: Image) -> list[Face]:
        raise NotImplementedError

    def landmark_scheme(self) -> Optional[str]:
        """The scheme this instance gives; may depend on parameters."""
        return self.provides_landmarks


class Aligner(Component):
    """Cuts a normalised face chip out of an image."""

    kind = "aligner"
    #: landmark schemes this aligner accepts from a detector; empty = a box is enough
    #: (the aligner finds landmarks itself)
    accepts_landmarks: ClassVar[tuple[str, ...]] = ()
    #: True if the chips it returns carry landmarks (``AlignedFace.landmarks``)
    provides_chip_landmarks: ClassVar[bool] = False

    @property
    def chip_size(self) -> int:
        """Side of the square chips this aligner produces, in pixels."""
        return int(getattr(self.params, "size"))

    def align(self, image: Image, face: Face) -> AlignedFace:
        raise NotImplementedError

    def align_many(self, image: Image, faces: Sequence[Face]) -> list[AlignedFace]:
        return [self.align(image, face) for face in faces]


T = TypeVar("T")


class Lazy(Generic[T]):
    """A value made on first use, once, even when several threads ask for it at once.

    For a component's weights: ``self._model = Lazy(self._load)`` in ``__init__`` (cheap),
    then ``self._model.get()`` wherever the model is needed, and in ``warm_up``. If making
    it raises, nothing is kept and the next ``get()`` tries again.
    """

    def __init__(self, make: Callable[[], T]) -> None:
        self._make = make
        self._value: Optional[T] = None
        self._made = False
        self._lock = threading.Lock()

    def get(self) -> T:
        if not self._made:
            with self._lock:
                if not self._made:
                    self._value = self._make()
                    self._made = True
        return self._value  # type: ignore[return-value]


class TorchModel(NamedTuple):
    """What an embedder exposes so that gradient-based explainers can work on it."""

    module: "torch.nn.Module"  # chips tensor -> embeddings tensor
    to_tensor: Any  # callable: (N, S, S, 3) uint8 array -> input tensor on the module's device
    target_layer: "torch.nn.Module"  # default layer for CAM methods


class Embedder(Component):
    """Turns a batch of aligned chips into descriptors. Batch-first."""

    kind = "embedder"
    #: "euclidean" (a distance, lower = more similar) or "cosine" (a similarity, higher = more
    #: similar); ``facekit.scoring.metric.metric_named(metric)`` says what its scores mean
    metric: ClassVar[MetricName] = "cosine"
    #: default decision threshold in that metric
    default_threshold: ClassVar[float] = 0.4
    #: chip side the model expects (0: any size)
    input_size: ClassVar[int] = 112
    #: dimension of the descriptor
    dim: ClassVar[int] = 0

    @property
    def threshold(self) -> float:
        value = getattr(self.params, "threshold", None)
        return float(self.default_threshold if value is None else value)

    @property
    def model_name(self) -> str:
        return self.name

    def embed(self, chips: np.ndarray) -> np.ndarray:
        """(N, S, S, 3) uint8 RGB chips -> (N, D) float32 descriptors."""
        raise NotImplementedError

    def torch_model(self) -> Optional[TorchModel]:
        """The model as PyTorch, for gradient-based explainers; None if not PyTorch."""
        return None

    def gives_gradients(self) -> bool:
        """Whether gradient-based explainers (``needs_torch``) can work on this embedder.

        By default: whether the class provides :meth:`torch_model`. An embedder that wraps
        another (``adapted``) or whose weights decide (ONNX has no gradients) answers for
        itself, so that a pipeline that cannot explain is refused when it is built.
        """
        return type(self).torch_model is not Embedder.torch_model


def check_chips(chips: Any, size: int) -> np.ndarray:
    """``chips`` as an ``(N, size, size, 3)`` uint8 array, or an :class:`ImageError`."""
    arr = np.asarray(chips)
    if arr.ndim == 3:
        arr = arr[None]
    if arr.ndim != 4 or arr.shape[1:] != (size, size, 3) or arr.dtype != np.uint8:
        raise ImageError(
            f"expected chips of shape (N, {size}, {size}, 3) uint8 RGB, got shape {arr.shape} dtype {arr.dtype}; "
            f"align them with an aligner of size {size}"
        )
    return arr


class Explainer(Component):
    """Says which pixels of each face drive their similarity."""

    kind = "explainer"
    #: True if the explainer needs :meth:`Embedder.torch_model`
    needs_torch: ClassVar[bool] = False

    def explain(self, embedder: Embedder, a: AlignedFace, b: AlignedFace) -> tuple[Heatmap, Heatmap]:
        raise NotImplementedError


class Aggregator(Component):
    """Combines several faces into one result: a mean face, a template embedding..."""

    kind = "aggregator"
    #: what it consumes: aligned chips (with landmarks) or embeddings
    consumes: ClassVar[Literal["faces", "embeddings"]] = "faces"
    #: for "faces" aggregators: whether chips must carry landmarks
    needs_landmarks: ClassVar[bool] = False

    def aggregate(self, faces: Sequence[AlignedFace], embeddings: Sequence[Embedding] = ()) -> AggregateResult:
        raise NotImplementedError


class SearchIndex(Component):
    """Finds the stored vectors nearest to query vectors: the engine behind a gallery.

    ``build`` receives every stored vector at once (rows keep their order: a result's id
    is the row number); ``search`` is batch-first. Scores are in the embedder's metric:
    distances for ``"euclidean"`` (ascending), similarities for ``"cosine"`` (descending).
    """

    kind = "index"
    #: True if results are the true nearest neighbours, False for approximate indexes
    exact: ClassVar[bool] = True

    def build(self, vectors: np.ndarray, metric: MetricName) -> None:
        """Replace the index's contents with ``vectors``, an (N, D) float32 array."""
        raise NotImplementedError

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(Q, D) queries -> (scores, ids), both (Q, min(k, N)), best first."""
        raise NotImplementedError

    def __len__(self) -> int:
        raise NotImplementedError

    #: True if :meth:`save` and :meth:`load` work: a gallery then keeps the built index in a
    #: file beside it and reuses it until the faces change, instead of building it every run
    persistent: ClassVar[bool] = False

    def save(self, path: str) -> None:
        """Write the built index to ``path`` (only if ``persistent``)."""
        raise NotImplementedError

    def load(self, path: str, metric: MetricName) -> None:
        """Read an index written by :meth:`save`, in place of :meth:`build`."""
        raise NotImplementedError


BASES: dict[str, type[Component]] = {
    "detector": Detector,
    "aligner": Aligner,
    "embedder": Embedder,
    "explainer": Explainer,
    "aggregator": Aggregator,
    "index": SearchIndex,
}


#: the kind of component each stage of a pipeline takes (the YAML's stage keys)
STAGE_KINDS = {
    "detector": "detector",
    "fallback_detector": "detector",
    "aligner": "aligner",
    "embedder": "embedder",
    "explainer": "explainer",
    "aggregator": "aggregator",
}

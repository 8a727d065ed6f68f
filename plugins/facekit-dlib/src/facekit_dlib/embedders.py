"""dlib's face descriptor: ``dlib.resnet``.

dlib's 29-layer face ResNet (``dlib_face_recognition_resnet_model_v1``) run by dlib
itself: 150x150 chips cut by ``dlib.chip5`` (or ``dlib.chip68``) in, 128-D descriptors
out; two faces are the same person when their Euclidean distance is below 0.6. The
``torch.dlib_resnet`` embedder of facekit-torch runs the same network in PyTorch,
batched and much faster on a CPU, with the same numbers to about 1e-6.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
from pydantic import Field

from facekit.components import Lazy, check_chips
from facekit.dlib_descriptor import DIM, INPUT_SIZE, DlibDescriptorEmbedder
from facekit_dlib._models import FACE_RESNET, load_model


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

    def embed(self, chips: np.ndarray) -> np.ndarray:
        batch = check_chips(chips, INPUT_SIZE)
        if len(batch) == 0:
            return np.zeros((0, DIM), dtype=np.float32)
        model = self._model.get()
        images = [np.ascontiguousarray(chip) for chip in batch]
        with self._lock:
            vectors = model.compute_face_descriptor(images, self.params.num_jitters)
        return np.asarray([np.asarray(v, dtype=np.float32) for v in vectors], dtype=np.float32).reshape(len(batch), DIM)

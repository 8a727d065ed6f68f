"""What ``dlib.resnet`` (facekit-dlib) and ``torch.dlib_resnet`` (facekit-torch) share.

Both compute dlib's face descriptor, ``dlib_face_recognition_resnet_model_v1``: 150x150
chips in, 128-D descriptors out, Euclidean, same person below 0.6, under one model name
so that descriptors from either backend compare with each other. Neither plugin depends
on the other, so the common part lives here; it imports neither dlib nor torch.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
from pydantic import Field

from facekit.components import Embedder, Params, check_chips

#: the model name both backends give their embeddings
MODEL_NAME = "dlib_face_recognition_resnet_model_v1"
INPUT_SIZE = 150
DIM = 128


class DlibDescriptorEmbedder(Embedder):
    """Base of the embedders of dlib's face descriptor; a subclass computes it (``embed_batch``)."""

    metric = "euclidean"
    default_threshold = 0.6
    input_size = INPUT_SIZE
    dim = DIM

    class Params(Params):
        threshold: Optional[float] = Field(None, gt=0.0, description="same-person distance threshold (default 0.6)")

    @property
    def model_name(self) -> str:
        return MODEL_NAME

    def embed(self, chips: np.ndarray) -> np.ndarray:
        batch = check_chips(chips, INPUT_SIZE)
        if len(batch) == 0:
            return np.zeros((0, DIM), dtype=np.float32)
        return self.embed_batch(batch)

    def embed_batch(self, batch: np.ndarray) -> np.ndarray:
        """(N, 150, 150, 3) uint8 RGB chips, N >= 1, already checked -> (N, 128) float32 descriptors."""
        raise NotImplementedError

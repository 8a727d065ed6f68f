"""An on-disk cache of embeddings, so long jobs can resume after an interruption.

Entries are keyed by the SHA-256 of the image bytes and of the pipeline description,
so a changed photo or pipeline never reuses a stale vector. Each entry is a small
``.npy`` file written atomically; no pickle is ever read (``allow_pickle=False``).
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path
from typing import Optional, Union

import numpy as np

from facekit.io import atomic_write, atomic_write_text


class EmbeddingCache:
    def __init__(self, directory: Union[str, os.PathLike], pipeline_key: str) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.pipeline_key = hashlib.sha256(pipeline_key.encode("utf-8")).hexdigest()[:16]
        self.hits = 0
        self.misses = 0

    def key_for(self, path: Union[str, os.PathLike]) -> Optional[str]:
        """The entry key of a file, or None if it is not a readable regular file (a FIFO or a
        device would block or never end; load_image then says what is wrong)."""
        digest = hashlib.sha256()
        try:
            if not stat.S_ISREG(os.stat(path).st_mode):
                return None
            with open(path, "rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
        except (OSError, ValueError):
            return None
        return digest.hexdigest()[:32] + "-" + self.pipeline_key

    def get(self, key: str) -> Optional[Union[np.ndarray, str]]:
        """Cached vectors (K, D), a cached failure message, or None."""
        vec_path = self.directory / f"{key}.npy"
        if vec_path.exists():
            try:
                value = np.load(vec_path, allow_pickle=False)
            except (OSError, ValueError):
                return None  # a damaged entry is recomputed
            self.hits += 1
            return value
        fail_path = self.directory / f"{key}.fail.json"
        if fail_path.exists():
            try:
                message = json.loads(fail_path.read_text(encoding="utf-8"))["error"]
            except (OSError, ValueError, KeyError):
                return None
            self.hits += 1
            return str(message)
        self.misses += 1
        return None

    def put(self, key: str, vectors: np.ndarray) -> None:
        atomic_write(self.directory / f"{key}.npy", lambda tmp: _save_npy(tmp, vectors))

    def put_failure(self, key: str, message: str) -> None:
        atomic_write_text(self.directory / f"{key}.fail.json", json.dumps({"error": message}))


def _save_npy(tmp: Path, vectors: np.ndarray) -> None:
    with open(tmp, "wb") as handle:
        np.save(handle, np.asarray(vectors, dtype=np.float32), allow_pickle=False)

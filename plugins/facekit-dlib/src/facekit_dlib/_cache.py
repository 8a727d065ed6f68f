"""Files facekit-dlib derives once and keeps in the user's cache folder, for a fast cold start.

Two things are slow to make and quick to read back (measured on 2 busy cores): dlib's
built-in HOG face detector, which dlib decompresses from its own code on every
``get_frontal_face_detector()`` call (0.75 s; 7 ms from a saved file), and the ONNX graph of
dlib's face ResNet, read and built from the ``.dat`` file (0.3-1 s; 15 ms from a saved
file). Each is written once, atomically, under a name that holds everything it depends
on (dlib's version; the ``.dat`` file's SHA-256 and the graph builder's version), so a
changed input makes a new file instead of reusing a stale one. A file that cannot be read
back is made again.

The folder is ``$FACEKIT_CACHE_DIR``, else ``$XDG_CACHE_HOME/facekit``, else
``~/.cache/facekit``; ``FACEKIT_CACHE_DIR=""`` turns the cache off (everything is made in
memory on each start). A folder that cannot be written is not an error: the file is made
in memory, as without a cache.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Optional, TypeVar

from facekit.io import atomic_write

T = TypeVar("T")

ENV_VAR = "FACEKIT_CACHE_DIR"


def cache_folder() -> Optional[Path]:
    """Where facekit-dlib keeps its derived files; None when the cache is turned off."""
    configured = os.environ.get(ENV_VAR)
    if configured is not None:
        return Path(configured).expanduser() / "dlib" if configured.strip() else None
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "facekit" / "dlib"


def cached(
    filename: str,
    make: Callable[[], T],
    save: Callable[[T, Path], None],
    load: Callable[[Path], T],
) -> T:
    """``load`` the cached ``filename`` if it is there and readable; else ``make`` it and ``save`` it.

    ``save`` writes to a temporary path in the cache folder, renamed into place when done
    (:func:`facekit.io.atomic_write`), so a reader never sees half a file and parallel
    processes can race harmlessly.
    """
    folder = cache_folder()
    path = folder / filename if folder is not None else None
    if path is not None and path.is_file():
        try:
            return load(path)
        except Exception:  # unreadable (truncated, another version's format): make it again
            pass
    value = make()
    if path is not None:
        try:
            atomic_write(path, lambda temporary: save(value, temporary))
        except OSError:
            pass  # a read-only or full disk costs the speed-up, nothing else
    return value


def forget(filename: str) -> None:
    """Remove a cached file that turned out to be unusable, so the next :func:`cached` makes it anew."""
    folder = cache_folder()
    if folder is not None:
        try:
            (folder / filename).unlink(missing_ok=True)
        except OSError:
            pass

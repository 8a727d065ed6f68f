"""Small file helpers: outputs are written atomically so an interrupted run leaves
either the complete file or nothing."""

from __future__ import annotations

import os
import stat
import tempfile
import threading
from pathlib import Path
from typing import Callable, Optional, Union

PathLike = Union[str, os.PathLike]


_umask: Optional[int] = None
_umask_lock = threading.Lock()


def _new_file_mode(target: Path) -> int:
    """The mode a plainly created file would get: the existing file's, else 0o666 less the umask
    (mkstemp makes 0o600 files, which would make every output private)."""
    global _umask
    try:
        return stat.S_IMODE(target.stat().st_mode)
    except OSError:
        pass
    with _umask_lock:
        if _umask is None:
            _umask = _read_umask()
    return 0o666 & ~_umask


def _read_umask() -> int:
    try:  # Linux: read it without changing it
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # elsewhere the only way: set it, then put it back at once
    os.umask(mask)
    return mask


def atomic_write(path: PathLike, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_path)`` then rename the temporary file onto ``path``.

    Readers see either the old file or the complete new one, never a partial file; if
    ``write`` fails or the run is interrupted, the temporary file is removed (after a
    SIGKILL it may be left, named ``.NAME.*.tmp*``, and is never read).
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp" + target.suffix, dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        os.chmod(tmp, _new_file_mode(target))
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return target


def atomic_write_bytes(path: PathLike, data: bytes) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))


def atomic_write_text(path: PathLike, text: str) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def names_a_file(value: Union[PathLike, str], suffixes: tuple[str, ...]) -> bool:
    """Whether ``value``, given where a registered name or a file is accepted (a bundled
    pipeline or calibration), means a file: a path object, or one line of text that ends in
    one of ``suffixes`` or holds a folder separator. Pipelines, their YAML loader and
    calibrations all decide with this one rule."""
    if isinstance(value, os.PathLike):
        return True
    text = str(value)
    return "\n" not in text and (text.lower().endswith(suffixes) or "/" in text or os.sep in text)

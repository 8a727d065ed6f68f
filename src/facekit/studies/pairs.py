"""Pair files: the LFW format of labelled pairs.

The first line is either ``N`` (one set: ``N`` same-person lines, then ``N``
different-person lines; LFW's development view) or ``F N`` (``F`` folds, each ``N``
same-person lines then ``N`` different-person lines; LFW's 10-fold view, header ``10 300``).
A same-person line is ``Name i j``, a different-person line ``Name1 i Name2 j``; image ``i``
of ``Name`` is ``<images>/Name/Name_%04d.jpg``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import numpy as np

from facekit.errors import ConfigError

PathLike = Union[str, os.PathLike]

# --------------------------------------------------------------------------- pair files
@dataclass(frozen=True)
class Pair:
    """Two images and whether they show the same person."""

    a: str
    b: str
    same: bool
    fold: int = 0  # fold index from the file (0 for a single-set file)
    line: int = 0  # line number in the pair file, for messages


@dataclass
class PairFile:
    """The pairs of one file, in file order, and how many folds the file declares."""

    path: str
    images_dir: str
    pairs: list[Pair]
    folds: int  # 1 for a single-set file such as pairsDevTest.txt

    @property
    def labels(self) -> np.ndarray:
        return np.array([p.same for p in self.pairs], dtype=bool)

    @property
    def images(self) -> list[str]:
        """Every image the pairs use, each once, in first-use order."""
        return list(dict.fromkeys(path for p in self.pairs for path in (p.a, p.b)))

    def spread(self, count: int, same: bool = True) -> list[Pair]:
        """``count`` same-person (or different-person) pairs picked evenly over the file.

        Consecutive lines of an LFW file are often the same person, so an even spread gives
        pairs of different people; fewer come back if the file has fewer.
        """
        chosen = [p for p in self.pairs if p.same == same]
        return [chosen[i] for i in even_picks(len(chosen), count)]


def even_picks(total: int, count: int) -> list[int]:
    """``min(count, total)`` indices into ``range(total)``, spread evenly from first to last."""
    return sorted(set(np.linspace(0, total - 1, num=min(count, total)).round().astype(int).tolist()))


def lfw_image_path(images_dir: PathLike, name: str, index: int) -> str:
    """``<images_dir>/Name/Name_0001.jpg``: where LFW keeps image ``index`` of ``name``."""
    return str(Path(images_dir) / name / f"{name}_{index:04d}.jpg")


def default_images_dir(pairs_path: PathLike) -> Path:
    """An ``images`` folder beside the pair file if there is one, else the file's folder."""
    folder = Path(pairs_path).resolve().parent
    return folder / "images" if (folder / "images").is_dir() else folder


def read_pairs(path: PathLike, images_dir: Optional[PathLike] = None, limit: Optional[int] = None) -> PairFile:
    """Parse an LFW-format pair file (see the module docs).

    ``limit`` keeps ``limit`` same-person and ``limit`` different-person pairs of each
    fold, spread evenly over it (quick runs): the first lines of an LFW file are often
    a few people only, and would give a misleadingly perfect score.
    """
    pairs_path = Path(path)
    try:
        text = pairs_path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read pair file {pairs_path}: {exc}") from None
    images = Path(images_dir) if images_dir is not None else default_images_dir(pairs_path)
    lines = [(number, line.split()) for number, line in enumerate(text.splitlines(), start=1) if line.strip()]
    if not lines:
        raise ConfigError(f"{pairs_path}: the pair file is empty; expected an LFW header line such as `500` or `10 300`")
    header_line, header = lines[0]
    try:
        counts = [int(v) for v in header]
    except ValueError:
        counts = []
    if len(counts) not in (1, 2) or min(counts) < 1:
        raise ConfigError(
            f"{pairs_path}:{header_line}: expected a header `N` (N same-person then N different-person lines) "
            f"or `FOLDS N`, got {' '.join(header)!r}"
        )
    folds, per_fold = (1, counts[0]) if len(counts) == 1 else (counts[0], counts[1])
    body = lines[1:]
    expected = folds * 2 * per_fold
    if len(body) != expected:
        raise ConfigError(
            f"{pairs_path}: the header says {folds} fold(s) of {per_fold} same-person and {per_fold} "
            f"different-person pairs ({expected} lines), but the file has {len(body)} pair lines"
        )
    pairs: list[Pair] = []
    kept = set(even_picks(per_fold, limit)) if limit is not None else None
    for index, (number, tokens) in enumerate(body):
        fold, within = divmod(index, 2 * per_fold)
        same = within < per_fold
        if kept is not None and (within if same else within - per_fold) not in kept:
            continue
        pairs.append(_parse_pair_line(tokens, same, fold, number, pairs_path, images))
    return PairFile(str(pairs_path), str(images), pairs, folds)


def _parse_pair_line(tokens: list[str], same: bool, fold: int, number: int, path: Path, images: Path) -> Pair:
    want = "`Name i j` (same person)" if same else "`Name1 i Name2 j` (different people)"
    try:
        if same and len(tokens) == 3:
            name, i, j = tokens
            return Pair(lfw_image_path(images, name, int(i)), lfw_image_path(images, name, int(j)), True, fold, number)
        if not same and len(tokens) == 4:
            name_a, i, name_b, j = tokens
            return Pair(lfw_image_path(images, name_a, int(i)), lfw_image_path(images, name_b, int(j)), False, fold, number)
    except ValueError:
        pass
    raise ConfigError(f"{path}:{number}: expected {want}, got {' '.join(tokens)!r}")

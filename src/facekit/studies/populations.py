"""Labelled photos of populations, and the pairs within them.

A population is a set of photos, each labelled with its person. The studies built on
them live beside this module:

* :mod:`facekit.studies.audit` (``facekit audit``): a pipeline's error rates,
  population by population;
* :mod:`facekit.studies.profiles`: a population profile, a calibration (+ back-end)
  fitted on one population's labelled photos;
* :mod:`facekit.studies.lookalikes`: "do these two people look alike?" asked of
  several photos of each.

Labelled photos come as folders, one sub-folder per person (LFW's layout)::

    photos/<identity>/<image files>

and a population is named on the command line (``NAME=FOLDER``), in a YAML manifest::

    root: ../shared/faces          # optional; default: the manifest's folder
    populations:
      east-asian: [eastasian-lfw]  # folders of identity folders
      lfw-dev: {folders: [lfw-dev/images]}

or in an identity table (TSV or CSV with an ``identity`` column and a population
column, e.g. eastasian-lfw's ``identities.tsv`` with ``country_or_heritage``), whose
identities are folders beside the table.

:func:`identity_pairs` gives every same-person pair and the different-person pairs
(sampled above :data:`DEFAULT_MAX_IMPOSTOR_PAIRS`) of a labelled set, and
:func:`scores_of_pairs` scores them.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np

from facekit.errors import ConfigError
from facekit.image import IMAGE_SUFFIXES
from facekit.scoring.metric import metric_named

PathLike = Union[str, os.PathLike]

#: above this many different-person pairs, a deterministic random sample of this size is used
DEFAULT_MAX_IMPOSTOR_PAIRS = 1_000_000


# --------------------------------------------------------------------------- labelled photos
@dataclass
class IdentitySet:
    """Photos of one population, each labelled with its person."""

    name: str
    images: list[str]
    identities: list[str]
    source: str = ""  # where the labels came from, for reports

    def __post_init__(self) -> None:
        if len(self.images) != len(self.identities):
            raise ValueError(f"{len(self.images)} images but {len(self.identities)} identity labels")

    @property
    def people(self) -> list[str]:
        return sorted(set(self.identities))

    def __len__(self) -> int:
        return len(self.images)

    @classmethod
    def from_folder(cls, folder: PathLike, name: Optional[str] = None,
                    only: Optional[Sequence[str]] = None) -> "IdentitySet":
        """``folder/<identity>/<images>``; ``only`` keeps the named identities."""
        root = Path(folder)
        if not root.is_dir():
            raise ConfigError(f"population folder not found: {root}")
        wanted = set(only) if only is not None else None
        images: list[str] = []
        identities: list[str] = []
        for person in sorted(p for p in root.iterdir() if p.is_dir()):
            if wanted is not None and person.name not in wanted:
                continue
            for image in sorted(person.iterdir()):
                if image.is_file() and image.suffix.lower() in IMAGE_SUFFIXES:
                    images.append(str(image))
                    identities.append(person.name)
        if wanted is not None:
            missing = sorted(wanted - set(identities))
            if missing:
                raise ConfigError(f"{root}: no photo folder for identities {', '.join(missing[:10])}"
                                  + (f" and {len(missing) - 10} more" if len(missing) > 10 else ""))
        if not images:
            raise ConfigError(
                f"{root}: no labelled photos found; expected one sub-folder per person holding that person's "
                "photos (LFW's layout: <folder>/<identity>/<image>)"
            )
        return cls(name or root.name, images, identities, str(root))


def read_identity_table(path: PathLike, column: str = "population",
                        identity_column: str = "identity") -> dict[str, str]:
    """identity -> population from a TSV or CSV file with a header row."""
    table = Path(path)
    try:
        text = table.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read identity table {table}: {exc}") from None
    delimiter = "\t" if table.suffix.lower() == ".tsv" or "\t" in text.splitlines()[0] else ","
    rows = list(csv.DictReader(text.splitlines(), delimiter=delimiter))
    header = list(rows[0].keys()) if rows else []
    for wanted in (identity_column, column):
        if wanted not in header:
            raise ConfigError(
                f"{table}: no column {wanted!r}; the columns are {', '.join(header) or '(none)'}"
                + ("; name the population column with --population-column" if wanted == column else "")
            )
    return {row[identity_column].strip(): row[column].strip() for row in rows if row[identity_column].strip()}


def load_populations(spec: PathLike, column: Optional[str] = None, name: Optional[str] = None) -> list[IdentitySet]:
    """The populations one argument names: a folder, a YAML manifest, or an identity table.

    * a folder of identity folders: one population (named ``name`` or after the folder);
    * ``.yaml``/``.yml``: a manifest (see the module docs);
    * ``.tsv``/``.csv``: an identity table; ``column`` (default ``population``) gives each
      identity's population, and the identities' folders sit beside the table.
    """
    path = Path(spec)
    if path.is_dir():
        return [IdentitySet.from_folder(path, name)]
    if not path.is_file():
        raise ConfigError(f"{path}: no such folder or manifest")
    suffix = path.suffix.lower()
    if suffix in (".tsv", ".csv"):
        table = read_identity_table(path, column or "population")
        groups: dict[str, list[str]] = {}
        for identity, population in table.items():
            groups.setdefault(population, []).append(identity)
        return [IdentitySet.from_folder(path.parent, pop, only=people) for pop, people in sorted(groups.items())]
    if suffix in (".yaml", ".yml"):
        return _load_manifest(path)
    raise ConfigError(f"{path}: expected a folder of identity folders, a .yaml manifest or a .tsv/.csv identity table")


def _load_manifest(path: Path) -> list[IdentitySet]:
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read population manifest {path}: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("populations"), dict) or not data["populations"]:
        raise ConfigError(
            f"{path}: a population manifest needs a `populations:` mapping of NAME to folder(s), e.g.\n"
            "  populations:\n    east-asian: [eastasian-lfw]\n    lfw-dev: {folders: [lfw-dev/images]}"
        )
    unknown = sorted(set(data) - {"root", "populations"})
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {', '.join(unknown)}; allowed: root, populations")
    root = (path.parent / str(data["root"])) if data.get("root") else path.parent
    out = []
    for pop, entry in data["populations"].items():
        if isinstance(entry, (str, list)):
            entry = {"folders": entry}
        if not isinstance(entry, dict) or set(entry) - {"folders", "identities"}:
            raise ConfigError(f"{path}: populations.{pop}: expected a folder, a list of folders, "
                              "or {folders: [...], identities: [...]}")
        folders = entry.get("folders")
        folders = [folders] if isinstance(folders, str) else list(folders or [])
        if not folders:
            raise ConfigError(f"{path}: populations.{pop}: no folders given")
        images: list[str] = []
        identities: list[str] = []
        for folder in folders:
            part = IdentitySet.from_folder(root / str(folder), str(pop), only=entry.get("identities"))
            images += part.images
            identities += part.identities
        out.append(IdentitySet(str(pop), images, identities, str(path)))
    return out


# --------------------------------------------------------------------------- pairs
def identity_pairs(identities: Sequence[str], max_impostor_pairs: Optional[int] = DEFAULT_MAX_IMPOSTOR_PAIRS,
                   seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
    """Every same-person pair and the different-person pairs of a labelled set.

    Returns ``(i, j, same, sampled)``: index arrays (``i < j``), whether each pair is one
    person, and whether the different-person pairs are a deterministic random sample of
    ``max_impostor_pairs`` rather than all of them.
    """
    labels = np.asarray(identities)
    n = len(labels)
    _, codes = np.unique(labels, return_inverse=True)
    gi, gj = [], []
    for code in np.unique(codes):
        members = np.flatnonzero(codes == code)
        if len(members) > 1:
            a, b = np.triu_indices(len(members), 1)
            gi.append(members[a])
            gj.append(members[b])
    genuine_i = np.concatenate(gi) if gi else np.zeros(0, dtype=np.int64)
    genuine_j = np.concatenate(gj) if gj else np.zeros(0, dtype=np.int64)
    total = n * (n - 1) // 2
    n_impostor = total - len(genuine_i)
    sampled = max_impostor_pairs is not None and n_impostor > max_impostor_pairs
    if not sampled:
        ii, jj = np.triu_indices(n, 1)
        keep = codes[ii] != codes[jj]
        imp_i, imp_j = ii[keep], jj[keep]
    else:
        rng = np.random.default_rng(seed)
        want = int(max_impostor_pairs)  # type: ignore[arg-type]
        draw = rng.choice(total, size=min(total, int(want * 1.1) + 1000), replace=False)
        ii, jj = _triangle_pair(np.sort(draw), n)
        keep = codes[ii] != codes[jj]
        imp_i, imp_j = ii[keep][:want], jj[keep][:want]
    i = np.concatenate([genuine_i, imp_i]).astype(np.int64)
    j = np.concatenate([genuine_j, imp_j]).astype(np.int64)
    same = np.r_[np.ones(len(genuine_i), bool), np.zeros(len(imp_i), bool)]
    return i, j, same, bool(sampled)


def _triangle_pair(k: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The (i, j), i < j, of linear indices ``k`` into the upper triangle of an n x n matrix (row-major)."""
    k = np.asarray(k, dtype=np.int64)
    # row i starts at offset(i) = i*n - i*(i+1)/2; solve for the last row starting at or before k
    i = np.floor((2 * n - 1 - np.sqrt((2.0 * n - 1) ** 2 - 8.0 * k)) / 2).astype(np.int64)
    offset = i * n - i * (i + 1) // 2
    fix = offset > k  # floating-point slips at row boundaries
    i[fix] -= 1
    offset = i * n - i * (i + 1) // 2
    over = k - offset >= n - i - 1
    i[over] += 1
    offset = i * n - i * (i + 1) // 2
    j = k - offset + i + 1
    return i, j


def scores_of_pairs(vectors: Any, i: np.ndarray, j: np.ndarray, metric: str, chunk: int = 500_000) -> np.ndarray:
    """Raw scores (in ``metric``) of the pairs ``(i[k], j[k])`` of rows of ``vectors``, in chunks."""
    pairwise = metric_named(metric).pairwise
    x = np.asarray(vectors, dtype=np.float64)
    out = np.empty(len(i))
    for start in range(0, len(i), chunk):
        stop = start + chunk
        out[start:stop] = pairwise(x[i[start:stop]], x[j[start:stop]])
    return out

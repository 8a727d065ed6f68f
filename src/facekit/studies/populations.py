"""Who a face model works for: population audits, population profiles and look-alikes.

A face model's threshold is a statement about a population. dlib's 0.6 was set on
LFW-like photos, most of them of people from North America and Europe; among the 47 East
Asian people of LFW it calls 44 % of the pairs of *different* people "the same person".
This module measures that and offers a fitted alternative:

* **An audit** (:func:`audit`, ``facekit audit``) embeds labelled photos of each
  population and reports, side by side: the false-match rate (FMR: pairs of different
  people judged the same) and false-non-match rate (FNMR: pairs of one person judged
  different) at the pipeline's threshold, the threshold that would give a target FMR in
  that population, and the score distributions (PNG). It is a *measurement*, not a fix:
  it says for whom the pipeline's answer means what it claims.
* **A population profile** (:func:`fit_population_profile`): a calibration file
  (:mod:`facekit.scoring.calibration`: threshold, probability, impostor percentile) fitted on
  one population's pairs, plus an optional linear back-end (:mod:`facekit.builtin.adapted`).
  Everything is chosen on out-of-fold scores of a cross-validation over *identities*, so
  the threshold holds for people the profile has never seen.
* **Person-level comparison** (:func:`compare_groups`): the question "do these two people
  look alike?" asked of several photos of each, as image pairs and as templates.

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
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np

from facekit.scoring import similarity
from facekit.errors import ConfigError

PathLike = Union[str, os.PathLike]

#: above this many different-person pairs, a deterministic random sample of this size is used
DEFAULT_MAX_IMPOSTOR_PAIRS = 1_000_000
#: the false-match rate at which the audit reports each population's own threshold
DEFAULT_TARGET_FMR = 0.01


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
        from facekit.image import IMAGE_SUFFIXES

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


def scores_of_pairs(vectors: np.ndarray, i: np.ndarray, j: np.ndarray, metric: str, chunk: int = 500_000) -> np.ndarray:
    """Raw scores (in ``metric``) of the pairs ``(i[k], j[k])`` of rows of ``vectors``, in chunks."""
    x = np.asarray(vectors, dtype=np.float64)
    out = np.empty(len(i))
    for start in range(0, len(i), chunk):
        stop = start + chunk
        out[start:stop] = similarity.pairwise_scores(x[i[start:stop]], x[j[start:stop]], metric)
    return out


# --------------------------------------------------------------------------- the audit
@dataclass
class PopulationResult:
    """One population's numbers in an audit."""

    name: str
    identities: int
    images: int
    failed_images: list[tuple[str, str]]
    genuine_pairs: int
    impostor_pairs: int
    impostor_pairs_sampled: bool
    metric: str
    threshold: float  # the pipeline's
    false_matches: int
    false_non_matches: int
    target_fmr: float
    threshold_at_target: Optional[float]  # this population's own threshold for target_fmr
    fmr_at_target: Optional[float]
    fnmr_at_target: Optional[float]
    eer: Optional[float]
    genuine_median: Optional[float]
    impostor_median: Optional[float]
    source: str = ""
    scores: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False)
    same: np.ndarray = field(default_factory=lambda: np.zeros(0, bool), repr=False)

    @property
    def fmr(self) -> float:
        """False-match rate at the pipeline's threshold (NaN without different-person pairs)."""
        return self.false_matches / self.impostor_pairs if self.impostor_pairs else float("nan")

    @property
    def fnmr(self) -> float:
        """False-non-match rate at the pipeline's threshold (NaN without same-person pairs)."""
        return self.false_non_matches / self.genuine_pairs if self.genuine_pairs else float("nan")

    def to_dict(self) -> dict[str, Any]:
        def num(v: Optional[float], digits: int = 6) -> Optional[float]:
            return None if v is None or not np.isfinite(v) else round(float(v), digits)

        return {
            "population": self.name, "source": self.source, "identities": self.identities, "images": self.images,
            "failed_images": [{"image": s, "reason": r} for s, r in self.failed_images],
            "same_person_pairs": self.genuine_pairs, "different_person_pairs": self.impostor_pairs,
            "different_person_pairs_sampled": self.impostor_pairs_sampled,
            "threshold": self.threshold, "false_matches": self.false_matches,
            "false_non_matches": self.false_non_matches, "fmr": num(self.fmr), "fnmr": num(self.fnmr),
            "target_fmr": self.target_fmr, "threshold_at_target_fmr": num(self.threshold_at_target),
            "fmr_at_that_threshold": num(self.fmr_at_target), "fnmr_at_that_threshold": num(self.fnmr_at_target),
            "eer": num(self.eer), "median_same_person_score": num(self.genuine_median),
            "median_different_person_score": num(self.impostor_median),
        }


def audit_embeddings(vectors: Any, identities: Sequence[str], metric: str, threshold: float, *, name: str,
                     target_fmr: float = DEFAULT_TARGET_FMR,
                     max_impostor_pairs: Optional[int] = DEFAULT_MAX_IMPOSTOR_PAIRS,
                     failed_images: Sequence[tuple[str, str]] = (), source: str = "",
                     seed: int = 0) -> PopulationResult:
    """The audit numbers of one population from its descriptors (one row per photo)."""
    from facekit.studies.evaluation import eer, roc, tar_at_far, threshold_in_metric

    x = np.asarray(vectors, dtype=np.float64)
    if len(x) != len(identities):
        raise ValueError(f"{len(x)} vectors but {len(identities)} identity labels")
    i, j, same, sampled = identity_pairs(identities, max_impostor_pairs, seed)
    scores = scores_of_pairs(x, i, j, metric)
    sims = similarity.similarity_of(scores, metric)
    accepted = _accepts(scores, metric, threshold)
    n_gen, n_imp = int(same.sum()), int((~same).sum())
    own_threshold = fmr_t = fnmr_t = rate = None
    if n_gen and n_imp:
        curve = roc(sims, same)
        point = tar_at_far(curve, target_fmr)
        if point.resolved:
            own_threshold = threshold_in_metric(point.threshold, metric)
            fmr_t, fnmr_t = point.far, 1.0 - point.tar
        rate = eer(curve)[0]
    return PopulationResult(
        name=name, identities=len(set(identities)), images=len(x), failed_images=list(failed_images),
        genuine_pairs=n_gen, impostor_pairs=n_imp, impostor_pairs_sampled=sampled, metric=metric,
        threshold=float(threshold), false_matches=int(accepted[~same].sum()),
        false_non_matches=int((~accepted[same]).sum()), target_fmr=float(target_fmr),
        threshold_at_target=own_threshold, fmr_at_target=fmr_t, fnmr_at_target=fnmr_t, eer=rate,
        genuine_median=float(np.median(scores[same])) if n_gen else None,
        impostor_median=float(np.median(scores[~same])) if n_imp else None,
        source=source, scores=scores, same=same,
    )


@dataclass
class AuditReport:
    """An audit of one pipeline over several populations."""

    pipeline: str
    model: str
    metric: str
    threshold: float
    profile: Optional[str]
    target_fmr: float
    populations: list[PopulationResult]

    def to_dict(self) -> dict[str, Any]:
        return {
            "what": "a measurement of the pipeline's error rates per population (not a fix)",
            "pipeline": self.pipeline, "model": self.model, "metric": self.metric, "threshold": self.threshold,
            "profile": self.profile, "target_fmr": self.target_fmr,
            "populations": [p.to_dict() for p in self.populations],
        }

    def to_json(self, **kwargs: Any) -> str:
        return json.dumps(self.to_dict(), **kwargs)

    def table(self) -> str:
        """The audit as a Markdown table."""
        kind = "distance <" if self.metric == "euclidean" else "similarity >="
        head = (f"| population | people | photos | same-person pairs | different-person pairs | "
                f"FMR at {self.threshold:g} | FNMR at {self.threshold:g} | threshold for FMR {_pct(self.target_fmr)} "
                f"| FNMR there | EER |")
        lines = [head, "|" + "---|" * 10]
        for p in self.populations:
            own = "n/a (too few pairs)" if p.threshold_at_target is None else f"{kind} {p.threshold_at_target:.3f}"
            lines.append(
                f"| {p.name} | {p.identities} | {p.images} | {p.genuine_pairs:,} | {p.impostor_pairs:,}"
                f"{' (sample)' if p.impostor_pairs_sampled else ''} | {_pct(p.fmr)} | {_pct(p.fnmr)} | {own} | "
                f"{_pct(p.fnmr_at_target)} | {_pct(p.eer)} |"
            )
        return "\n".join(lines)

    def summary(self) -> str:
        profile = f", profile {self.profile}" if self.profile else ""
        out = [f"Audit of pipeline {self.pipeline!r} (model {self.model}{profile}): same person if "
               f"{'distance <' if self.metric == 'euclidean' else 'similarity >='} {self.threshold:g}", "",
               self.table(), ""]
        for p in self.populations:
            if p.failed_images:
                out.append(f"{p.name}: {len(p.failed_images)} photo(s) without a usable face were left out")
        out.append("FMR: share of pairs of different people judged the same person; FNMR: share of pairs of "
                   "one person judged different people. A measurement of this pipeline on these photos, not a fix.")
        return "\n".join(out)


def _pct(value: Optional[float]) -> str:
    if value is None or not np.isfinite(value):
        return "n/a"
    return f"{100 * value:.2f} %" if value < 0.1 else f"{100 * value:.1f} %"


def audit(pipeline: Any, populations: Sequence[IdentitySet], *, target_fmr: float = DEFAULT_TARGET_FMR,
          cache: Optional[PathLike] = None, progress: Optional[bool] = None,
          max_impostor_pairs: Optional[int] = DEFAULT_MAX_IMPOSTOR_PAIRS) -> AuditReport:
    """Embed each population's photos with ``pipeline`` and measure its error rates there.

    Photos without a usable face are left out and listed. ``pipeline``: a
    :class:`~facekit.pipeline.Pipeline`, a bundled name or a YAML path.
    """
    from facekit.studies.evaluation import embed_images
    from facekit.pipeline import Pipeline

    built = Pipeline.load(pipeline)
    if not populations:
        raise ConfigError("nothing to audit: name at least one population (a folder of identity folders)")
    names = [p.name for p in populations]
    if len(set(names)) != len(names):
        raise ConfigError(f"population names must differ; got {', '.join(names)} (name them NAME=FOLDER)")
    calibration = built.calibration
    results = []
    for population in populations:
        vectors, failures, _ = embed_images(built, population.images, cache=cache, progress=progress)
        keep = [k for k, path in enumerate(population.images) if vectors.get(path)]
        x = np.stack([vectors[population.images[k]][0] for k in keep]) if keep else np.zeros((0, 1))
        results.append(audit_embeddings(
            x, [population.identities[k] for k in keep], built.embedder.metric, built.threshold,
            name=population.name, target_fmr=target_fmr, max_impostor_pairs=max_impostor_pairs,
            failed_images=sorted(failures.items()), source=population.source,
        ))
    return AuditReport(built.name, built.embedder.model_name, built.embedder.metric, built.threshold,
                       calibration.name if calibration is not None else None, target_fmr, results)


def audit_figure(report: AuditReport, path: PathLike, title: Optional[str] = None) -> Path:
    """The audit as a PNG: error rates per population, then each population's score distributions."""
    from facekit.pictures.plots import DIFFERENT_COLOUR, SAME_COLOUR, _figure, _save, _score_label

    pops = report.populations
    figure = _figure(12.5, 2.6 + 2.0 * len(pops))
    grid = figure.add_gridspec(len(pops) + 1, 1, height_ratios=[1.25] + [1.0] * len(pops))
    ax = figure.add_subplot(grid[0])
    at = np.arange(len(pops))
    width = 0.38
    op = "<" if report.metric == "euclidean" else ">="
    for offset, values, colour, label in (
        (-width / 2, [p.fmr for p in pops], DIFFERENT_COLOUR, "false matches (different people judged the same)"),
        (width / 2, [p.fnmr for p in pops], SAME_COLOUR, "false non-matches (one person judged two)"),
    ):
        bars = ax.bar(at + offset, [100 * v if np.isfinite(v) else 0 for v in values], width, color=colour,
                      label=label)
        many = len(pops) > 4
        for bar, v in zip(bars, values):
            ax.annotate(_pct(v), (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center", va="bottom",
                        fontsize=7 if many else 9, rotation=90 if many else 0, xytext=(0, 2),
                        textcoords="offset points")
    ax.set_xticks(at, [f"{p.name}\n{p.identities} people\n{p.images} photos" for p in pops],
                  fontsize=8 if len(pops) > 4 else 9)
    ax.set_ylabel("% of pairs")
    top = max([100 * v for p in pops for v in (p.fmr, p.fnmr) if np.isfinite(v)] + [1.0])
    ax.set_ylim(0, top * (1.45 if len(pops) > 4 else 1.25))
    ax.legend(loc="upper left", bbox_to_anchor=(1.005, 1.0), fontsize=8, frameon=False)
    profile = f", profile {report.profile}" if report.profile else ""
    ax.set_title(title or f"{report.pipeline} pipeline{profile}: error rates at its threshold "
                 f"(same person if score {op} {report.threshold:g})", fontsize=11)
    scored = [p.scores for p in pops if len(p.scores)]
    lo = min(float(np.quantile(s, 0.0005)) for s in scored) if scored else 0.0
    hi = max(float(np.quantile(s, 0.9995)) for s in scored) if scored else 1.0
    bins = np.linspace(lo, hi, 70)
    first = None
    for k, p in enumerate(pops):
        axk = figure.add_subplot(grid[k + 1], sharex=first)
        first = first or axk
        if p.genuine_pairs:
            axk.hist(np.clip(p.scores[p.same], lo, hi), bins=bins, density=True, color=SAME_COLOUR, alpha=0.6,
                     label=f"same person ({p.genuine_pairs:,} pairs)")
        if p.impostor_pairs:
            axk.hist(np.clip(p.scores[~p.same], lo, hi), bins=bins, density=True, color=DIFFERENT_COLOUR, alpha=0.6,
                     label=f"different people ({p.impostor_pairs:,} pairs{', sample' if p.impostor_pairs_sampled else ''})")
        axk.axvline(report.threshold, color="black", lw=1.5,
                    label=f"pipeline threshold {report.threshold:g}: FMR {_pct(p.fmr)}, FNMR {_pct(p.fnmr)}")
        if p.threshold_at_target is not None:
            axk.axvline(p.threshold_at_target, color="#7570b3", lw=1.5, ls="--",
                        label=f"FMR {_pct(p.target_fmr)} here at {p.threshold_at_target:.3f} (FNMR {_pct(p.fnmr_at_target)})")
        axk.set_ylabel("density")
        axk.set_yticks([])
        axk.text(0.005, 0.96, p.name, transform=axk.transAxes, va="top", fontsize=10, fontweight="bold")
        axk.legend(loc="upper left", bbox_to_anchor=(1.005, 1.0), fontsize=8, frameon=False)
        if k == len(pops) - 1:
            axk.set_xlabel(_score_label(report.metric))
        else:
            axk.tick_params(labelbottom=False)
    return _save(figure, path)


# --------------------------------------------------------------------------- profiles
@dataclass
class CrossValidation:
    """Out-of-fold results of a profile's fitting procedure, cross-validated over identities.

    ``scores``/``same``: every within-fold pair's score from a back-end fitted without that
    fold's people. ``fmr``/``fnmr``: each fold judged at the threshold that the *other*
    folds' different-person scores give for ``target_fmr``, pooled over folds and repeats.
    """

    target_fmr: float
    folds: int
    repeats: int
    scores: np.ndarray
    same: np.ndarray
    false_matches: int
    impostor_pairs: int
    false_non_matches: int
    genuine_pairs: int

    @property
    def fmr(self) -> float:
        return self.false_matches / self.impostor_pairs

    @property
    def fnmr(self) -> float:
        return self.false_non_matches / self.genuine_pairs

    def to_dict(self) -> dict[str, Any]:
        return {"method": f"{self.folds}-fold cross-validation over identities, {self.repeats} repeat(s); each fold "
                          "judged at the threshold the other folds' different-person pairs give for the target FMR",
                "target_fmr": self.target_fmr, "fmr": round(self.fmr, 6), "fnmr": round(self.fnmr, 6),
                "false_matches": self.false_matches, "different_person_pairs": self.impostor_pairs,
                "false_non_matches": self.false_non_matches, "same_person_pairs": self.genuine_pairs}


def _backend_scores(train_x: np.ndarray, train_ids: np.ndarray, test_x: np.ndarray, test_ids: np.ndarray,
                    metric: str, dims: int) -> tuple[np.ndarray, np.ndarray]:
    from facekit.builtin.adapted import fit_nap, remove_directions

    if dims:
        directions = fit_nap(train_x, train_ids, dims)
        test_x = remove_directions(test_x, directions)
    i, j, same, _ = identity_pairs(test_ids, None)
    return scores_of_pairs(test_x, i, j, metric), same


def cross_validate_profile(vectors: Any, identities: Sequence[str], metric: str, *, target_fmr: float,
                           backend_dims: int = 1, folds: int = 5, repeats: int = 1, seed: int = 0) -> CrossValidation:
    """Cross-validate the profile procedure (back-end + threshold at ``target_fmr``) over identities."""
    x = np.asarray(vectors, dtype=np.float64)
    ids = np.asarray(identities)
    people = np.unique(ids)
    if len(people) < 2 * folds:
        raise ConfigError(f"cross-validation over {folds} folds needs at least {2 * folds} people; got {len(people)}")
    all_scores, all_same = [], []
    fm = imp = fnm = gen = 0
    for repeat in range(repeats):
        order = np.random.default_rng(seed + repeat).permutation(people)
        fold_scores, fold_same = [], []
        for f in range(folds):
            test = np.isin(ids, order[f::folds])
            s, same = _backend_scores(x[~test], ids[~test], x[test], ids[test], metric, backend_dims)
            fold_scores.append(s)
            fold_same.append(same)
        for f in range(folds):
            others = np.concatenate([fold_scores[g][~fold_same[g]] for g in range(folds) if g != f])
            threshold = _threshold_at_fmr(others, metric, target_fmr)
            accepted = _accepts(fold_scores[f], metric, threshold)
            fm += int(accepted[~fold_same[f]].sum())
            imp += int((~fold_same[f]).sum())
            fnm += int((~accepted[fold_same[f]]).sum())
            gen += int(fold_same[f].sum())
        if repeat == 0:
            all_scores, all_same = fold_scores, fold_same
    return CrossValidation(target_fmr, folds, repeats, np.concatenate(all_scores), np.concatenate(all_same),
                           fm, imp, fnm, gen)


def _threshold_at_fmr(impostor_scores: np.ndarray, metric: str, target_fmr: float) -> float:
    """The raw threshold that accepts at most ``target_fmr`` of these different-person scores.

    It sits at the (k+1)-th most similar of the n scores, k = floor(target * n), so exactly
    k of them pass the pipeline's rule (distance strictly below; similarity at or above a
    value nudged past it).
    """
    sims = np.sort(similarity.similarity_of(impostor_scores, metric))[::-1]
    k = min(int(np.floor(target_fmr * len(sims))), len(sims) - 1)
    if metric == "euclidean":
        return float(-sims[k])
    return float(np.nextafter(sims[k], np.inf))


def _accepts(scores: np.ndarray, metric: str, threshold: float) -> np.ndarray:
    return scores < threshold if metric == "euclidean" else scores >= threshold


def fit_population_profile(vectors: Any, identities: Sequence[str], metric: str, *, name: str,
                           target_fmr: float, backend_dims: int = 1, folds: int = 5, repeats: int = 5,
                           seed: int = 0, input_model: Optional[str] = None, description: str = "",
                           pipeline: Optional[str] = None, population: Optional[dict[str, Any]] = None,
                           fitted_on: Optional[dict[str, Any]] = None) -> tuple[Any, CrossValidation]:
    """Fit a population profile: a calibration (+ back-end) from one population's labelled photos.

    ``vectors`` are the descriptors *before* any back-end (one row per photo),
    ``identities`` their people. The back-end (``backend_dims`` nuisance directions; 0 for
    none) is fitted on every photo. Threshold, probability and impostor percentiles are
    fitted on the out-of-fold scores of a cross-validation over identities, so they
    describe people the profile has not seen; the probability is then moved to equal
    odds of same and different (``prior_same`` 0.5), as in LFW-fitted calibrations.

    Returns the :class:`~facekit.scoring.calibration.Calibration` (its ``extra`` holds
    ``backend``, ``population`` and ``cross_validation``) and the cross-validation.
    """
    from facekit.builtin.adapted import Backend, fit_nap
    from facekit.scoring.calibration import fit_calibration

    x = np.asarray(vectors, dtype=np.float64)
    ids = np.asarray(identities)
    cv = cross_validate_profile(x, ids, metric, target_fmr=target_fmr, backend_dims=backend_dims, folds=folds,
                                repeats=repeats, seed=seed)
    calibration = fit_calibration(
        cv.scores, cv.same, metric, name=name, method="logistic", fmr_targets=(target_fmr, 1e-2, 1e-3),
        threshold_rule=f"fmr={target_fmr:g}", description=description, pipeline=pipeline,
        model=None, fitted_on={**(fitted_on or {}), "scores": "out-of-fold (cross-validated over identities)",
                               "people": int(len(np.unique(ids))), "photos": int(len(ids))},
    )
    # three decimals are all a threshold can claim from a few hundred photos, and they read well on cards
    calibration.threshold = round(float(calibration.threshold), 3)
    _shift_prior(calibration, 0.5)
    if backend_dims:
        backend = Backend("nap", fit_nap(x, ids, backend_dims), input_model, name,
                          {"people": int(len(np.unique(ids))), "photos": int(len(ids))})
        calibration.extra["backend"] = backend.to_dict()
        calibration.model = input_model and f"{input_model}+{backend.tag}"
    else:
        calibration.model = input_model
    calibration.extra["population"] = population or {}
    calibration.extra["cross_validation"] = cv.to_dict()
    return calibration, cv


def _shift_prior(calibration: Any, prior: float) -> None:
    """Move a logistic calibration's probabilities to another share of same-person pairs."""
    pm = calibration.probability_map
    old = float(pm["prior_same"])
    if pm.get("method") != "logistic" or old in (0.0, 1.0) or abs(old - prior) < 1e-12:
        return
    shift = np.log(prior / (1 - prior)) - np.log(old / (1 - old))
    pm["intercept"] = float(pm["intercept"] + shift)
    pm["prior_same"] = prior
    pm["prior_note"] = (f"fitted on pairs with {old:.4f} same-person share; intercept moved by {shift:+.4f} "
                        f"to a {prior:g} share (pass prior= to probability() for another)")


# --------------------------------------------------------------------------- person vs person
@dataclass
class GroupComparison:
    """Several photos of person A against several of person B."""

    names: tuple[str, str]
    metric: str
    threshold: float
    profile: Optional[str]
    own_scores: tuple[np.ndarray, np.ndarray]  # every pair within A, within B
    cross_scores: np.ndarray  # (len A, len B)
    template_score: float  # A's centroid against B's centroid
    own_template_scores: tuple[np.ndarray, np.ndarray]  # each photo against its own group's centroid of the others
    other_template_scores: tuple[np.ndarray, np.ndarray]  # each photo against the other group's centroid

    def _same(self, scores: np.ndarray) -> np.ndarray:
        return _accepts(np.asarray(scores), self.metric, self.threshold)

    @property
    def cross_same(self) -> int:
        """Pairs of one photo of A and one of B judged "same person"."""
        return int(self._same(self.cross_scores).sum())

    @property
    def own_same_rates(self) -> tuple[float, float]:
        """Share of each person's own photo pairs judged "same person"."""
        return tuple(float(self._same(s).mean()) if len(s) else float("nan") for s in self.own_scores)  # type: ignore[return-value]

    @property
    def closer_to_own(self) -> tuple[int, int]:
        """Photos of each person closer to their own person's template (leave-one-out) than to the other's."""
        out = []
        for own, other in zip(self.own_template_scores, self.other_template_scores):
            sims_own = similarity.similarity_of(own, self.metric)
            sims_other = similarity.similarity_of(other, self.metric)
            out.append(int((sims_own > sims_other).sum()))
        return out[0], out[1]

    def to_dict(self) -> dict[str, Any]:
        a, b = self.names
        med = lambda s: round(float(np.median(s)), 6) if len(s) else None  # noqa: E731
        return {
            "people": [a, b], "metric": self.metric, "threshold": self.threshold, "profile": self.profile,
            "photos": [len(self.own_template_scores[0]), len(self.own_template_scores[1])],
            "cross_pairs": int(self.cross_scores.size), "cross_pairs_judged_same": self.cross_same,
            "own_pairs": [int(len(s)) for s in self.own_scores],
            "own_pairs_judged_same": [round(r, 6) for r in self.own_same_rates],
            "median_score": {"own " + a: med(self.own_scores[0]), "own " + b: med(self.own_scores[1]),
                             "cross": med(self.cross_scores.ravel())},
            "template_score": round(self.template_score, 6),
            "photos_closer_to_own_template": list(self.closer_to_own),
        }

    def summary(self) -> str:
        a, b = self.names
        d = self.to_dict()
        op = "<" if self.metric == "euclidean" else ">="
        ra, rb = self.own_same_rates
        ca, cb = self.closer_to_own
        return "\n".join([
            f"{a} ({d['photos'][0]} photos) vs {b} ({d['photos'][1]} photos); same person if score {op} "
            f"{self.threshold:g}" + (f" (profile {self.profile})" if self.profile else ""),
            f"  photo pairs of {a} and {b} judged the same person: {self.cross_same} of {d['cross_pairs']} "
            f"(median score {d['median_score']['cross']:.3f})",
            f"  {a}'s own pairs judged the same: {ra:.0%} (median {d['median_score']['own ' + a]:.3f}); "
            f"{b}'s: {rb:.0%} (median {d['median_score']['own ' + b]:.3f})",
            f"  person level: the two templates (mean descriptors) score {self.template_score:.3f}; "
            f"{ca} of {d['photos'][0]} photos of {a} and {cb} of {d['photos'][1]} of {b} are closer to their own "
            "person's template (made without them) than to the other's",
        ])


def compare_groups(vectors_a: Any, vectors_b: Any, metric: str, threshold: float, *,
                   names: tuple[str, str] = ("A", "B"), profile: Optional[str] = None) -> GroupComparison:
    """Compare two people photo by photo and as templates (see :class:`GroupComparison`).

    Templates are mean descriptors (the ``centroid`` aggregator's rule: for cosine models
    each vector is normalised first); each photo's own-person template leaves it out.
    """
    a = np.asarray(vectors_a, dtype=np.float64)
    b = np.asarray(vectors_b, dtype=np.float64)
    if len(a) < 2 or len(b) < 2:
        raise ConfigError("comparing two people needs at least two photos of each")

    def template(rows: np.ndarray) -> np.ndarray:
        if metric == "cosine":
            rows = rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)
        return rows.mean(axis=0)

    def own_pairs(rows: np.ndarray) -> np.ndarray:
        i, j = np.triu_indices(len(rows), 1)
        return similarity.pairwise_scores(rows[i], rows[j], metric)

    cross = similarity.pairwise_scores(np.repeat(a, len(b), axis=0), np.tile(b, (len(a), 1)), metric).reshape(len(a), len(b))
    own_t, other_t = [], []
    for rows, other in ((a, b), (b, a)):
        others_template = template(other)
        own_t.append(np.array([similarity.score(rows[k], template(np.delete(rows, k, axis=0)), metric)
                               for k in range(len(rows))]))
        other_t.append(np.array([similarity.score(rows[k], others_template, metric) for k in range(len(rows))]))
    return GroupComparison(
        names=names, metric=metric, threshold=float(threshold), profile=profile,
        own_scores=(own_pairs(a), own_pairs(b)), cross_scores=cross,
        template_score=similarity.score(template(a), template(b), metric),
        own_template_scores=(own_t[0], own_t[1]), other_template_scores=(other_t[0], other_t[1]),
    )

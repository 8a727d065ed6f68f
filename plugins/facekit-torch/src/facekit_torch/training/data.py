"""Training data: a folder of identities -> aligned chips cached on disk -> split, pairs and tensors.

The input is one sub-folder per person, each holding that person's photos. Every photo is
turned into one square chip once and kept as a PNG in a cache folder, so a second run (or
a resumed one) starts at once:

* by a pipeline's detector and aligner (the default: dlib's HOG detector, whole image if it
  finds nothing, and FACE01's ``dlib.chip5`` chip, 224 px, padding 0.1), or
* with ``aligned=True``, for photos that are already face chips: centre-cropped to a
  square and resized.

Photos that cannot be read or hold no face are skipped, listed, and remembered in the
cache (``failures.json``) so they are not tried again. Delete the cache folder when the
photos change.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional, Sequence

import numpy as np

from facekit.errors import ConfigError, FacekitError

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from facekit.pipeline import Pipeline

#: FACE01's chip: dlib 5-point face chip, 224 px, padding 0.1
FACE01_ALIGNER: dict[str, Any] = {"name": "dlib.chip5", "params": {"size": 224, "padding": 0.1}}


@dataclass
class ChipSet:
    """Aligned chips on disk and whose they are."""

    paths: list[Path]
    labels: np.ndarray  # identity index of each chip
    names: list[str]  # identity index -> folder name
    sources: list[str]  # the photo each chip came from
    chip_size: int
    failures: list[tuple[str, str]] = field(default_factory=list)  # (photo, why it was skipped)

    def __len__(self) -> int:
        return len(self.paths)

    def subset(self, identities: Sequence[int]) -> "ChipSet":
        """The chips of some identities, relabelled 0..k-1 in the order given."""
        index = {old: new for new, old in enumerate(identities)}
        keep = [i for i, label in enumerate(self.labels) if int(label) in index]
        return ChipSet(
            paths=[self.paths[i] for i in keep],
            labels=np.array([index[int(self.labels[i])] for i in keep], dtype=np.int64),
            names=[self.names[i] for i in identities],
            sources=[self.sources[i] for i in keep],
            chip_size=self.chip_size,
        )

    def read(self, i: int) -> np.ndarray:
        """Chip ``i`` as (S, S, 3) uint8 RGB."""
        import cv2

        bgr = cv2.imread(str(self.paths[i]), cv2.IMREAD_COLOR)
        if bgr is None:
            raise ConfigError(f"cached chip {self.paths[i]} cannot be read; delete the chip cache and run again")
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def scan_identities(
    root: Path, min_images: int = 2, max_identities: Optional[int] = None, max_images: Optional[int] = None
) -> dict[str, list[Path]]:
    """``{person: [photo, ...]}`` for every sub-folder of ``root`` with at least ``min_images`` photos.

    Sorted by name; ``max_identities`` keeps the first people, ``max_images`` the first photos
    of each (by file name).
    """
    from facekit.image import IMAGE_SUFFIXES

    root = Path(root)
    if not root.is_dir():
        raise ConfigError(f"training data folder not found: {root}; give a folder with one sub-folder per person")
    found: dict[str, list[Path]] = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        photos = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if len(photos) >= min_images:
            found[folder.name] = photos[:max_images]
        if max_identities is not None and len(found) >= max_identities:
            break
    if len(found) < 4:
        raise ConfigError(
            f"{root}: only {len(found)} sub-folder(s) hold at least {min_images} photos; training needs at least 4 "
            "people (some for training, some held out for validation), one sub-folder of photos per person"
        )
    return found


def alignment_pipeline(pipeline: str, aligner: Optional[dict[str, Any]]) -> "Pipeline":
    """A pipeline's detector (and fallback) with ``aligner`` (or the pipeline's own), largest face.

    The pipeline's embedder is not used: an untrained EfficientNet of the chip size stands in,
    so any aligner size fits.
    """
    from facekit.config import StageConfig, validate_model
    from facekit.pipeline import Pipeline
    from facekit.plugins import get_registry

    from facekit_torch.efficientnet.network import NAME

    base = Pipeline.load(pipeline).to_dict()
    stage = validate_model(StageConfig, aligner if aligner is not None else base["aligner"], prefix=("aligner",))
    cls = get_registry().get("aligner", stage.name)
    chip_size = cls(validate_model(cls.Params, stage.params, prefix=("aligner", "params"))).chip_size
    data = {
        "name": f"{base['name']}-alignment",
        "detector": base["detector"],
        "fallback_detector": base.get("fallback_detector"),
        "aligner": stage.model_dump(),
        "embedder": {"name": NAME, "params": {"weights": "random", "size": chip_size}},
        "multi_face": "largest",
        "max_pixels": base.get("max_pixels", 50_000_000),
    }
    return Pipeline.from_dict({k: v for k, v in data.items() if v is not None}, where="training alignment")


def square_chip(image: np.ndarray, size: int) -> np.ndarray:
    """Centre square of ``image`` resized to ``size`` (for photos that are already face chips)."""
    import cv2

    height, width = image.shape[:2]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    crop = image[top : top + side, left : left + side]
    interpolation = cv2.INTER_AREA if side > size else cv2.INTER_LINEAR
    return np.ascontiguousarray(cv2.resize(crop, (size, size), interpolation=interpolation))


def prepare_chips(
    identities: dict[str, list[Path]],
    cache_dir: Path,
    *,
    aligned: bool,
    pipeline: str = "default",
    aligner: Optional[dict[str, Any]] = None,
    chip_size: int = 224,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> ChipSet:
    """Align every photo once (or reuse the cached chip) and return the chips that exist."""
    from facekit.image import load_image, save_png
    from facekit.io import atomic_write_text

    if aligned:
        recipe: dict[str, Any] = {"aligned": True, "chip_size": chip_size}
        align_one: Optional[Callable[[Path], np.ndarray]] = lambda p: square_chip(load_image(p), chip_size)
    else:
        built = alignment_pipeline(pipeline, aligner)
        chip_size = built.aligner.chip_size
        recipe = {k: v for k, v in built.to_dict().items() if k in ("detector", "fallback_detector", "aligner")}
        align_one = lambda p: built.align(p)[0].chip  # noqa: E731
    key = hashlib.sha1(json.dumps(recipe, sort_keys=True, default=str).encode()).hexdigest()[:12]
    folder = Path(cache_dir) / key
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(folder / "recipe.json", json.dumps(recipe, indent=2, default=str))
    failures_file = folder / "failures.json"
    known_failures: dict[str, str] = json.loads(failures_file.read_text()) if failures_file.exists() else {}

    todo = [(name, photo) for name, photos in identities.items() for photo in photos]
    paths: list[Path] = []
    labels: list[int] = []
    sources: list[str] = []
    failures: list[tuple[str, str]] = []
    label_of = {name: i for i, name in enumerate(identities)}
    new_failures = 0
    bar = progress_bar(todo, progress, "aligning photos" if not aligned else "resizing chips", "photo")
    for name, photo in bar:
        chip_path = folder / name / f"{photo.stem}.png"
        source = str(photo)
        if not chip_path.exists():
            if source in known_failures:
                failures.append((source, known_failures[source]))
                continue
            try:
                save_png(chip_path, align_one(photo))
            except FacekitError as exc:
                known_failures[source] = str(exc)
                failures.append((source, str(exc)))
                new_failures += 1
                continue
        paths.append(chip_path)
        labels.append(label_of[name])
        sources.append(source)
    if new_failures:
        atomic_write_text(failures_file, json.dumps(known_failures, indent=1))
    if failures:
        log(f"skipped {len(failures)} photo(s) with no usable face (listed in {failures_file}):")
        for source, why in failures[:10]:
            log(f"  {source}: {why}")
        if len(failures) > 10:
            log(f"  ... and {len(failures) - 10} more")
    return ChipSet(paths, np.array(labels, dtype=np.int64), list(identities), sources, chip_size, failures)


def split_identities(chips: ChipSet, val_fraction: float, seed: int) -> tuple[ChipSet, ChipSet]:
    """Identity-disjoint train/validation split (validation people have >= 2 chips each)."""
    counts = np.bincount(chips.labels, minlength=len(chips.names))
    usable = [i for i in range(len(chips.names)) if counts[i] >= 1]
    rng = np.random.default_rng(seed)
    candidates = [i for i in usable if counts[i] >= 2]
    rng.shuffle(candidates)
    n_val = max(2, int(round(val_fraction * len(usable))))
    val = sorted(candidates[:n_val])
    train = [i for i in usable if i not in set(val)]
    if len(val) < 2 or len(train) < 2:
        raise ConfigError(
            f"cannot split {len(usable)} people into training and validation sets (need >= 2 of each, "
            "validation people with >= 2 usable photos); add people or photos"
        )
    return chips.subset(train), chips.subset(val)


def verification_pairs(labels: np.ndarray, max_pairs: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(i, j, same)``: up to ``max_pairs // 2`` same-person pairs and as many different-person pairs."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    same = [(i, j) for i in range(len(labels)) for j in range(i + 1, len(labels)) if labels[i] == labels[j]]
    possible_different = len(labels) * (len(labels) - 1) // 2 - len(same)
    half = max(1, max_pairs // 2)
    if len(same) > half:
        same = [same[k] for k in sorted(rng.choice(len(same), half, replace=False))]
    wanted = min(len(same), possible_different)
    different: set[tuple[int, int]] = set()
    tries = 0
    while len(different) < wanted and tries < 100 * wanted:
        i, j = sorted(int(x) for x in rng.choice(len(labels), 2, replace=False))
        if labels[i] != labels[j]:
            different.add((i, j))
        tries += 1
    pairs = same + sorted(different)
    first = np.array([p[0] for p in pairs], dtype=np.int64)
    second = np.array([p[1] for p in pairs], dtype=np.int64)
    is_same = np.array([True] * len(same) + [False] * len(different))
    return first, second, is_same


class ChipDataset:
    """Chips of one :class:`ChipSet` at one stage's size, as normalised tensors.

    Training (``augment=True``): random horizontal flip, then RandAugment(``num_ops``,
    ``magnitude``) on the uint8 chip, then ToTensor + ImageNet normalisation. The random
    draws come from torch's generator, so a seed fixes them.
    """

    def __init__(self, chips: ChipSet, size: int, *, augment: bool, magnitude: float = 0.0, num_ops: int = 2,
                 flip: bool = True) -> None:
        self.chips = chips
        self.size = size
        self.augment = augment
        self.flip = flip
        self.randaugment = None
        if augment and magnitude > 0:
            from torchvision.transforms import RandAugment

            self.randaugment = RandAugment(num_ops=num_ops, magnitude=int(round(magnitude)))

    def __len__(self) -> int:
        return len(self.chips)

    def resized(self, i: int) -> np.ndarray:
        import cv2

        chip = self.chips.read(i)
        if chip.shape[0] != self.size:
            interpolation = cv2.INTER_AREA if chip.shape[0] > self.size else cv2.INTER_LINEAR
            chip = cv2.resize(chip, (self.size, self.size), interpolation=interpolation)
        return chip

    def __getitem__(self, i: int) -> tuple["torch.Tensor", int]:
        import torch

        from facekit_torch.efficientnet.network import IMAGENET_MEAN, IMAGENET_STD

        image = torch.from_numpy(np.ascontiguousarray(self.resized(i))).permute(2, 0, 1)  # uint8 3 x S x S
        if self.augment:
            if self.flip and torch.rand(()) < 0.5:
                image = image.flip(-1)
            if self.randaugment is not None:
                image = self.randaugment(image)
        x = image.to(torch.float32).div_(255.0)
        mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
        std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
        return x.sub_(mean).div_(std), int(self.chips.labels[i])


def progress_bar(items: Sequence[Any], progress: bool, desc: str, unit: str) -> Any:
    if not progress:
        return items
    from tqdm.auto import tqdm

    return tqdm(items, desc=desc, unit=unit, dynamic_ncols=True, leave=False)

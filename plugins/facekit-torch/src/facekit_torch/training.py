"""Train the ``efficientnetv2_arcface`` embedder on a folder of identities, with progressive learning.

Python::

    from facekit_torch.training import TrainConfig, train

    config = TrainConfig(data="photos/", output="runs/b0", schedule={"preset": "article", "epochs": 12})
    result = train(config)                 # checkpoints every epoch, exports at the end
    result = train(config, resume=True)    # continues the same run after an interruption
    print(result.export.snippet)           # YAML to use the trained model in a pipeline

Command line: ``facekit train config.yaml`` or ``facekit train --data photos/ --output runs/b0``
(see ``facekit train --help``).

What a run does:

* **Data**: one sub-folder per person; each photo aligned once by a pipeline's detector and
  aligner (FACE01's ``dlib.chip5`` chip, 224 px, padding 0.1, by default) and cached as a PNG
  chip, or taken as it is with ``aligned: true`` (see :mod:`facekit_torch.training_data`).
  People are split into training and validation sets: nobody is in both.
* **Model and loss**: timm ``variant`` (random init, or ``init: path.pt`` to fine-tune) with a
  ``dim``-D linear head; pytorch-metric-learning's ``ArcFaceLoss`` (margin 28.6 degrees =
  0.5 rad, scale 64), whose class centres are trained with the network; AdamW; linear
  warm-up then cosine decay, per step; mixed precision on CUDA (bf16 where supported,
  else fp16 with loss scaling).
* **Progressive learning** (Tan & Le 2021, section 4): training runs in stages, and image
  size and regularisation (RandAugment magnitude, dropout before the head) rise together
  from stage to stage. The schedule is part of the config: the article's sizes
  (``preset: article``: 32/64/128/224 px), the paper's (``preset: paper``: 4 stages, 128 ->
  300 px, RandAugment 5 -> 15, dropout 0.1 -> 0.3, each rising linearly), any linear
  schedule, or an explicit list of stages.
* **Validation** after every epoch, at the stage's image size, on same/different pairs of
  the held-out people: accuracy at the best threshold (optimistic: the threshold is chosen
  on the same pairs), 10-fold accuracy (threshold chosen on the other folds, LFW's
  protocol) and ROC AUC. Before it, BatchNorm statistics are recomputed on unaugmented
  training chips at that size ("precise BN"): the running averages lag behind the weights
  and belong to the previous size, and at initialisation they map every face to nearly
  the same embedding.
* **Checkpoints** after every epoch (``checkpoint.pt``: model, ArcFace centres, optimizer,
  scheduler, loss scaler, RNG states and history), so ``resume`` continues the same run:
  same epochs, same learning-rate curve, same random draws. Deterministic for a seed on
  the same machine and thread count.
* **Export** at the end: the article's checkpoint format (``export/<run>.pt``), ONNX
  (``export/<run>.onnx``) and a pipeline YAML that uses it (``export/pipeline.yaml``).
* Optional **distillation** from a teacher embedder (e.g. ``torch.dlib_resnet``) for small
  datasets: the student's pairwise cosine similarities within a batch are pulled towards
  the teacher's.
"""

from __future__ import annotations

import copy
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal, Optional, Union

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from facekit.errors import ConfigError, ModelFileError
from facekit_torch.efficientnet import DEFAULT_DIM, DEFAULT_VARIANT, NAME, Variant
from facekit_torch.training_data import FACE01_ALIGNER, progress_bar

CHECKPOINT_FORMAT = "facekit-torch/efficientnetv2-arcface-training/1"
#: config fields that may differ when a run is resumed (they do not change what is computed)
RESUMABLE_CHANGES = frozenset({"output", "chip_cache", "device", "workers", "num_threads"})


# --------------------------------------------------------------------------- schedules
class Stage(BaseModel):
    """One stage of progressive learning."""

    model_config = ConfigDict(extra="forbid")

    epochs: int = Field(ge=1, description="epochs in this stage")
    size: int = Field(ge=16, le=1024, description="image side in pixels")
    randaugment: float = Field(0.0, ge=0.0, le=30.0, description="RandAugment magnitude (0: none; rounded)")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="dropout before the embedding layer")


class LinearSchedule(BaseModel):
    """``stages`` stages; size and regularisation rise linearly from the first value to the last."""

    model_config = ConfigDict(extra="forbid")

    stages: int = Field(4, ge=1, le=100)
    epochs: int = Field(ge=1, description="total epochs, split evenly (the last stages take the remainder)")
    size: tuple[int, int] = Field(description="image side in the first and last stage")
    randaugment: tuple[float, float] = (0.0, 0.0)
    dropout: tuple[float, float] = (0.0, 0.0)

    @model_validator(mode="after")
    def _enough_epochs(self) -> "LinearSchedule":
        if self.epochs < self.stages:
            raise ValueError(f"{self.epochs} epochs cannot fill {self.stages} stages")
        return self

    def expand(self) -> list[Stage]:
        n = self.stages

        def at(pair: tuple[float, float], i: int) -> float:
            return pair[0] if n == 1 else pair[0] + (pair[1] - pair[0]) * i / (n - 1)

        base, extra = divmod(self.epochs, n)
        return [
            Stage(
                epochs=base + (1 if i >= n - extra else 0),
                size=int(round(at(self.size, i))),
                randaugment=round(at(self.randaugment, i), 3),
                dropout=round(at(self.dropout, i), 4),
            )
            for i in range(n)
        ]


#: the article's sizes (its training loop), with the regularisation the article proposes adding
#: (RandAugment 5 -> 9) and the paper's dropout range, rising linearly; the paper's own schedule
PRESETS: dict[str, dict[str, Any]] = {
    "article": {"size": (32, 224), "sizes": (32, 64, 128, 224), "randaugment": (5.0, 9.0), "dropout": (0.1, 0.3)},
    "paper": {"size": (128, 300), "randaugment": (5.0, 15.0), "dropout": (0.1, 0.3)},
}


class PresetSchedule(BaseModel):
    """A named schedule: ``article`` (32/64/128/224 px) or ``paper`` (128 -> 300 px), 4 stages."""

    model_config = ConfigDict(extra="forbid")

    preset: Literal["article", "paper"]
    epochs: int = Field(12, ge=4, description="total epochs, split evenly over the 4 stages")

    def expand(self) -> list[Stage]:
        spec = PRESETS[self.preset]
        stages = LinearSchedule(stages=4, epochs=self.epochs, size=spec["size"], randaugment=spec["randaugment"],
                                dropout=spec["dropout"]).expand()
        if "sizes" in spec:  # the article's sizes double rather than rise linearly
            stages = [s.model_copy(update={"size": size}) for s, size in zip(stages, spec["sizes"])]
        return stages


Schedule = Union[PresetSchedule, LinearSchedule, list[Stage]]


def expand_schedule(schedule: Schedule) -> list[Stage]:
    """The stages of a schedule, in order."""
    return list(schedule) if isinstance(schedule, list) else schedule.expand()


# --------------------------------------------------------------------------- config
class DistillConfig(BaseModel):
    """Distillation from a registered teacher embedder (its own weights, frozen)."""

    model_config = ConfigDict(extra="forbid")

    teacher: str = Field("torch.dlib_resnet", description="registered embedder name")
    params: dict[str, Any] = Field(default_factory=dict, description="the teacher's parameters")
    weight: float = Field(10.0, ge=0.0, description="weight of the similarity-matching loss")


class TrainConfig(BaseModel):
    """Everything that defines a training run (YAML keys = field names)."""

    model_config = ConfigDict(extra="forbid")

    # data
    data: Path = Field(description="folder with one sub-folder of photos per person")
    output: Path = Field(Path("runs/efficientnetv2_arcface"), description="run folder: checkpoint, history, export")
    aligned: bool = Field(False, description="photos are already face chips: centre-crop and resize only")
    pipeline: str = Field("default", description="pipeline whose detector aligns the photos (bundled name or YAML)")
    aligner: Optional[dict[str, Any]] = Field(
        default_factory=lambda: copy.deepcopy(FACE01_ALIGNER),
        description="aligner stage used instead of the pipeline's (null: the pipeline's own); FACE01's by default",
    )
    chip_size: int = Field(224, ge=16, le=1024, description="chip side for `aligned: true`")
    chip_cache: Optional[Path] = Field(None, description="where aligned chips are cached (default <output>/chips)")
    min_images: int = Field(2, ge=1, description="people with fewer photos are left out")
    max_identities: Optional[int] = Field(None, ge=4, description="use only the first N people (by folder name)")
    max_images: Optional[int] = Field(None, ge=1, description="use at most N photos of each person (by file name)")
    val_fraction: float = Field(0.2, gt=0.0, lt=1.0, description="share of people held out for validation")
    val_pairs: int = Field(2000, ge=2, description="at most this many validation pairs (half same, half different)")
    # model
    variant: Variant = Field(DEFAULT_VARIANT, description="timm EfficientNetV2 backbone")
    dim: int = Field(DEFAULT_DIM, ge=2, le=8192, description="embedding dimension")
    init: str = Field("random", description="`random`, or an article-format checkpoint to start from")
    drop_path_rate: float = Field(0.0, ge=0.0, lt=1.0, description="stochastic depth (timm drop_path_rate)")
    # optimisation
    schedule: Schedule = Field(
        default_factory=lambda: PresetSchedule(preset="article", epochs=12),
        description="progressive learning: {preset: article|paper, epochs: N}, a linear schedule, or a list of stages",
    )
    batch_size: int = Field(64, ge=2, le=8192)
    lr: float = Field(1e-3, gt=0.0, description="peak learning rate (AdamW)")
    weight_decay: float = Field(0.05, ge=0.0)
    warmup_epochs: float = Field(1.0, ge=0.0, description="linear warm-up, then cosine decay to lr * min_lr_ratio")
    min_lr_ratio: float = Field(0.01, ge=0.0, le=1.0)
    arcface_margin: float = Field(28.6, gt=0.0, lt=90.0, description="ArcFace angular margin in degrees")
    arcface_scale: float = Field(64.0, gt=0.0)
    head_lr_multiplier: float = Field(10.0, gt=0.0, description="learning-rate factor for the ArcFace class centres")
    randaugment_ops: int = Field(2, ge=1, le=10, description="RandAugment num_ops")
    flip: bool = Field(True, description="random horizontal flips during training")
    amp: Literal["auto", "off", "bf16", "fp16"] = Field("auto", description="mixed precision on CUDA")
    distill: Optional[DistillConfig] = Field(None, description="distillation from a teacher embedder")
    # execution
    device: Literal["auto", "cpu", "cuda"] = "auto"
    workers: int = Field(0, ge=0, le=64, description="DataLoader worker processes")
    num_threads: Optional[int] = Field(None, ge=1, le=1024, description="torch CPU threads")
    seed: int = 0

    @field_validator("schedule", mode="before")
    @classmethod
    def _preset_name(cls, value: Any) -> Any:
        return {"preset": value} if isinstance(value, str) else value

    @field_validator("schedule")
    @classmethod
    def _not_empty(cls, value: Schedule) -> Schedule:
        if isinstance(value, list) and not value:
            raise ValueError("needs at least one stage")
        return value

    @property
    def stages(self) -> list[Stage]:
        return expand_schedule(self.schedule)

    @property
    def epochs(self) -> int:
        return sum(s.epochs for s in self.stages)

    @property
    def cache_dir(self) -> Path:
        return self.chip_cache if self.chip_cache is not None else self.output / "chips"


def load_train_config(source: Union[str, os.PathLike, dict[str, Any]], **overrides: Any) -> TrainConfig:
    """A :class:`TrainConfig` from a YAML file (relative paths are relative to it) or a dict."""
    data = dict(source) if isinstance(source, dict) else read_train_yaml(source)
    data.update({k: v for k, v in overrides.items() if v is not None})
    return validate_train_config(data, "" if isinstance(source, dict) else str(source))


def read_train_yaml(path: Union[str, os.PathLike]) -> dict[str, Any]:
    """The raw mapping of a training YAML file, its relative paths made relative to the file."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"training config not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"invalid YAML in {path}: {str(exc).replace(chr(10), ' ')}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a training config is a mapping of keys (data, output, schedule, ...)")
    base = path.resolve().parent
    for key in ("data", "output", "chip_cache", "init"):
        value = data.get(key)
        if isinstance(value, str) and value != "random" and not Path(value).expanduser().is_absolute():
            data[key] = str(base / value)
    return data


def validate_train_config(data: Any, where: str = "") -> TrainConfig:
    from facekit.config import validation_message

    try:
        return TrainConfig.model_validate(data)
    except ValidationError as exc:
        exc._facekit_model = TrainConfig  # type: ignore[attr-defined]  # for did-you-mean on unknown keys
        message = validation_message(exc, (), where).replace("invalid pipeline", "invalid training config", 1)
        raise ConfigError(message) from None


# --------------------------------------------------------------------------- results
@dataclass
class ExportResult:
    checkpoint: Path  # article format
    onnx: Optional[Path]
    pipeline: Path  # a pipeline YAML using the checkpoint
    size: int
    snippet: str  # the embedder stage, as YAML


@dataclass
class TrainResult:
    output: Path
    config: TrainConfig
    history: list[dict[str, Any]]
    epochs_done: int
    finished: bool
    export: Optional[ExportResult] = None
    failures: list[tuple[str, str]] = field(default_factory=list)

    @property
    def initial(self) -> dict[str, Any]:
        return self.history[0]

    @property
    def last(self) -> dict[str, Any]:
        return self.history[-1]


# --------------------------------------------------------------------------- helpers
def lr_factor(step: int, warmup_steps: int, total_steps: int, min_ratio: float) -> float:
    """Linear warm-up to 1, then cosine decay to ``min_ratio`` at ``total_steps``."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def verification_metrics(embeddings: np.ndarray, first: np.ndarray, second: np.ndarray, same: np.ndarray) -> dict[str, float]:
    """Best-threshold accuracy, 10-fold accuracy and ROC AUC of cosine similarities on pairs."""
    from facekit.studies import evaluation

    a, b = embeddings[first].astype(np.float64), embeddings[second].astype(np.float64)
    scores = np.sum(a * b, axis=1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12)
    threshold, accuracy = evaluation.best_threshold(scores, same)
    folds = evaluation.stratified_folds(same, min(10, int(min(same.sum(), (~same).sum()))))
    return {
        "val_accuracy": accuracy,
        "val_threshold": threshold,
        "val_accuracy_10fold": evaluation.kfold_accuracy(scores, same, folds).mean,
        "val_auc": evaluation.auc(evaluation.roc(scores, same)),
    }


def check_dependencies() -> None:
    """A :class:`DependencyError` naming the install command if a training package is missing."""
    import importlib

    from facekit.errors import DependencyError

    for module in ("torch", "torchvision", "timm", "pytorch_metric_learning", "onnx"):
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise DependencyError(
                f"facekit train needs {module}, which could not be imported ({exc}); "
                "install the training extras with `pip install 'facekit-torch[train]'`"
            ) from exc


def _choose_device(torch: Any, wanted: str) -> Any:
    if wanted == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' was asked for, but torch sees no CUDA device; use device: auto or cpu")
    return torch.device("cuda" if wanted != "cpu" and torch.cuda.is_available() else "cpu")


def _fmt(entry: dict[str, Any]) -> str:
    parts = [f"epoch {entry['epoch']}/{entry['epochs']}"]
    if entry["epoch"] > 0:
        parts.append(
            f"{entry['size']} px, RandAugment {entry['randaugment']:g}, dropout {entry['dropout']:g}: "
            f"loss {entry['train_loss']:.3f}, lr {entry['lr']:.2e}, {entry['images_per_s']:.0f} img/s"
        )
    else:
        parts.append(f"untrained, {entry['size']} px")
    parts.append(
        f"val acc {entry['val_accuracy']:.3f} (10-fold {entry['val_accuracy_10fold']:.3f}, AUC {entry['val_auc']:.3f})"
    )
    if entry.get("train_eval_loss") is not None:
        parts.append(f"train-set loss {entry['train_eval_loss']:.3f}, identification {entry['train_accuracy']:.3f}")
    return "  ".join(parts)


# --------------------------------------------------------------------------- the run
class _Run:
    """One training run's state: everything a checkpoint holds."""

    def __init__(self, config: TrainConfig, progress: bool, log: Callable[[str], None]) -> None:
        import torch

        from facekit_torch import training_data as data

        self.config = config
        self.progress = progress
        self.log = log
        self.stages = config.stages
        self.epochs = config.epochs
        if config.num_threads is not None:
            torch.set_num_threads(config.num_threads)
        self.device = _choose_device(torch, config.device)
        self.amp_dtype = None
        if self.device.type == "cuda" and config.amp != "off":
            bf16 = config.amp in ("auto", "bf16") and torch.cuda.is_bf16_supported()
            self.amp_dtype = torch.bfloat16 if bf16 else torch.float16
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = False
            torch.backends.cudnn.deterministic = True

        identities = data.scan_identities(config.data, config.min_images, config.max_identities, config.max_images)
        chips = data.prepare_chips(
            identities, config.cache_dir, aligned=config.aligned, pipeline=config.pipeline,
            aligner=config.aligner, chip_size=config.chip_size, progress=progress, log=log,
        )
        self.failures = chips.failures
        self.chip_size = chips.chip_size
        self.train_set, self.val_set = data.split_identities(chips, config.val_fraction, config.seed)
        self.pairs = data.verification_pairs(self.val_set.labels, config.val_pairs, config.seed)
        log(
            f"{len(self.train_set)} training chips of {len(self.train_set.names)} people, "
            f"{len(self.val_set)} validation chips of {len(self.val_set.names)} other people "
            f"({int(self.pairs[2].sum())} same + {int((~self.pairs[2]).sum())} different pairs); "
            f"{self.epochs} epochs in {len(self.stages)} stages on {self.device}"
        )

        torch.manual_seed(config.seed)
        self.shuffle = torch.Generator().manual_seed(config.seed)
        self.network = self._initial_network().to(self.device)
        if self.device.type == "cuda":
            self.network = self.network.to(memory_format=torch.channels_last)
        from pytorch_metric_learning.losses import ArcFaceLoss

        self.arcface = ArcFaceLoss(
            num_classes=len(self.train_set.names), embedding_size=config.dim,
            margin=config.arcface_margin, scale=config.arcface_scale,
        ).to(self.device)
        decay = [p for p in self.network.parameters() if p.ndim >= 2]
        no_decay = [p for p in self.network.parameters() if p.ndim < 2]
        self.optimizer = torch.optim.AdamW(
            [
                {"params": decay, "weight_decay": config.weight_decay},
                {"params": no_decay, "weight_decay": 0.0},
                {"params": list(self.arcface.parameters()), "weight_decay": 0.0,
                 "lr": config.lr * config.head_lr_multiplier},
            ],
            lr=config.lr,
        )
        self.batch_size = min(config.batch_size, len(self.train_set))
        self.steps_per_epoch = len(self.train_set) // self.batch_size
        total = self.steps_per_epoch * self.epochs
        warmup = int(round(config.warmup_epochs * self.steps_per_epoch))
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: lr_factor(step, warmup, total, config.min_lr_ratio)
        )
        self.scaler = torch.amp.GradScaler("cuda") if self.amp_dtype == torch.float16 else None
        self.teacher = self._teacher_similarities() if config.distill is not None else None
        self.history: list[dict[str, Any]] = []
        self.epoch = 0

    # -------------------------------------------------------------- pieces
    def _initial_network(self) -> Any:
        from facekit_torch.efficientnet import build_network, load_network

        config = self.config
        network = build_network(config.variant, config.dim, drop_path_rate=config.drop_path_rate)
        if config.init != "random":
            loaded = load_network(Path(config.init).expanduser(), config.variant, config.dim)
            network.load_state_dict(loaded.state_dict())
        return network

    def _teacher_similarities(self) -> Any:
        """The teacher's unit embeddings of every training chip (resized to the teacher's input)."""
        import cv2
        import torch

        from facekit.config import validate_model
        from facekit.plugins import get_registry

        spec = self.config.distill
        cls = get_registry().get("embedder", spec.teacher)  # type: ignore[union-attr]
        teacher = cls(validate_model(cls.Params, spec.params, prefix=("distill", "params")))  # type: ignore[union-attr]
        size = teacher.input_size or self.chip_size
        vectors = []
        for start in progress_bar(range(0, len(self.train_set), 64), self.progress, f"teacher {spec.teacher}", "batch"):  # type: ignore[union-attr]
            chips = [self.train_set.read(i) for i in range(start, min(start + 64, len(self.train_set)))]
            chips = [c if c.shape[0] == size else cv2.resize(c, (size, size), interpolation=cv2.INTER_AREA) for c in chips]
            vectors.append(np.asarray(teacher.embed(np.stack(chips)), dtype=np.float32))
        teacher_vectors = torch.from_numpy(np.concatenate(vectors))
        return torch.nn.functional.normalize(teacher_vectors, dim=1).to(self.device)

    def stage_of(self, epoch: int) -> tuple[int, Stage]:
        """The stage of 0-based ``epoch``."""
        end = 0
        for index, stage in enumerate(self.stages):
            end += stage.epochs
            if epoch < end:
                return index, stage
        return len(self.stages) - 1, self.stages[-1]

    def _loader(self, chips: Any, size: int, *, train: bool, magnitude: float = 0.0) -> Any:
        from torch.utils.data import DataLoader

        from facekit_torch.training_data import ChipDataset

        dataset = ChipDataset(chips, size, augment=train, magnitude=magnitude, num_ops=self.config.randaugment_ops,
                              flip=self.config.flip)
        return DataLoader(
            _Indexed(dataset),
            batch_size=self.batch_size if train else max(64, self.batch_size),
            shuffle=train,
            drop_last=train,
            generator=self.shuffle if train else None,
            num_workers=self.config.workers,
            pin_memory=self.device.type == "cuda",
        )

    def _autocast(self) -> Any:
        import contextlib

        import torch

        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type="cuda", dtype=self.amp_dtype)

    def _forward(self, x: Any) -> Any:
        import torch

        x = x.to(self.device, non_blocking=True)
        if self.device.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
        with self._autocast():
            out = self.network(x)
        return out.float()  # ArcFaceLoss casts its centres to the input's dtype: keep them float32

    def embed(self, chips: Any, size: int) -> np.ndarray:
        import torch

        self.network.eval()
        out = []
        with torch.no_grad():
            for x, _, _ in self._loader(chips, size, train=False):
                out.append(self._forward(x).cpu().numpy())
        return np.concatenate(out)

    def recalibrate_batchnorm(self, size: int, max_images: int = 512) -> None:
        """Recompute BatchNorm statistics on unaugmented training chips at ``size`` ("precise BN").

        The running averages kept during training lag behind the weights, start from an
        identity (which maps every face to nearly the same embedding) and are of the last
        image size; evaluation and export need statistics of the network as it is, at the
        size it will be used at (FixRes, Touvron et al. 2019). Uses no random numbers.
        """
        import torch

        norms = [m for m in self.network.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
        momenta = [m.momentum for m in norms]
        self.network.eval()
        for norm in norms:
            norm.reset_running_stats()
            norm.momentum = None  # cumulative average over the batches below
            norm.train()
        seen = 0
        with torch.no_grad():
            for x, _, _ in self._loader(self.train_set, size, train=False):
                self._forward(x)
                seen += len(x)
                if seen >= max_images:
                    break
        for norm, momentum in zip(norms, momenta):
            norm.momentum = momentum
        self.network.eval()

    def train_set_metrics(self, size: int) -> dict[str, float]:
        """ArcFace loss and identification accuracy on the whole training set, unaugmented, in eval mode.

        Identification: each chip's nearest ArcFace class centre (cosine) is its own person's.
        A correct training loop drives both towards memorisation on a small set (loss down,
        accuracy up to 1); the sanity test in the plugin's tests checks exactly that.
        """
        import torch

        self.network.eval()
        total, count, correct = 0.0, 0, 0
        centres = torch.nn.functional.normalize(self.arcface.W.detach(), dim=0)  # dim x classes
        with torch.no_grad():
            for x, labels, _ in self._loader(self.train_set, size, train=False):
                labels = labels.to(self.device)
                embeddings = self._forward(x)
                total += float(self.arcface(embeddings, labels)) * len(labels)
                nearest = (torch.nn.functional.normalize(embeddings, dim=1) @ centres).argmax(dim=1)
                correct += int((nearest == labels).sum())
                count += len(labels)
        return {"train_eval_loss": total / max(1, count), "train_accuracy": correct / max(1, count)}

    def validate(self, size: int) -> dict[str, float]:
        """Verification metrics on the held-out people (call :meth:`recalibrate_batchnorm` first)."""
        first, second, same = self.pairs
        return verification_metrics(self.embed(self.val_set, size), first, second, same)

    def train_epoch(self) -> dict[str, Any]:
        import torch

        index, stage = self.stage_of(self.epoch)
        self.network.trunk.drop_rate = stage.dropout  # timm applies it before the classifier
        loader = self._loader(self.train_set, stage.size, train=True, magnitude=stage.randaugment)
        self.network.train()
        losses, seen = [], 0
        started = time.perf_counter()
        bar = progress_bar(loader, self.progress, f"epoch {self.epoch + 1}/{self.epochs} ({stage.size} px)", "batch")
        for x, labels, indices in bar:
            labels = labels.to(self.device)
            embeddings = self._forward(x)
            loss = self.arcface(embeddings, labels)
            if self.teacher is not None:
                loss = loss + self.config.distill.weight * _similarity_matching(  # type: ignore[union-attr]
                    embeddings, self.teacher[indices.to(self.device)]
                )
            self.optimizer.zero_grad(set_to_none=True)
            if self.scaler is not None:
                self.scaler.scale(loss).backward()
                self.scaler.step(self.optimizer)
                self.scaler.update()
            else:
                loss.backward()
                self.optimizer.step()
            self.scheduler.step()
            losses.append(float(loss.detach()))
            seen += len(labels)
            if hasattr(bar, "set_postfix"):
                bar.set_postfix(loss=f"{losses[-1]:.3f}", lr=f"{self.scheduler.get_last_lr()[0]:.1e}")
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - started
        self.epoch += 1
        return {
            "epoch": self.epoch, "epochs": self.epochs, "stage": index, "size": stage.size,
            "randaugment": stage.randaugment, "dropout": stage.dropout,
            "lr": self.scheduler.get_last_lr()[0], "train_loss": float(np.mean(losses)),
            "first_batch_loss": losses[0], "last_batch_loss": losses[-1],
            "train_images": seen, "train_seconds": round(seconds, 2), "images_per_s": seen / max(seconds, 1e-9),
        }

    # -------------------------------------------------------------- checkpoints
    def state(self) -> dict[str, Any]:
        import torch

        return {
            "format": CHECKPOINT_FORMAT,
            "config": self.config.model_dump(mode="json"),
            "epoch": self.epoch,
            "model": self.network.state_dict(),
            "arcface": self.arcface.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "rng": {
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
                "shuffle": self.shuffle.get_state(),
            },
            "history": self.history,
            "people": {"train": self.train_set.names, "val": self.val_set.names},
        }

    def save(self, path: Path) -> None:
        import torch

        from facekit.io import atomic_write, atomic_write_text

        state = self.state()
        atomic_write(path, lambda tmp: torch.save(state, tmp))
        atomic_write_text(path.parent / "history.json", json.dumps(self.history, indent=1))

    def restore(self, state: dict[str, Any]) -> None:
        import torch

        people = state.get("people", {})
        if people.get("train") != self.train_set.names or people.get("val") != self.val_set.names:
            raise ConfigError(
                "the people found now differ from the checkpoint's (photos added, removed or failing to align?); "
                "the run cannot continue identically: start a new run in another output folder"
            )
        self.network.load_state_dict(state["model"])
        self.arcface.load_state_dict(state["arcface"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["rng"]["torch"])
        if state["rng"].get("cuda") is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["rng"]["cuda"])
        self.shuffle.set_state(state["rng"]["shuffle"])
        self.history = list(state["history"])
        self.epoch = int(state["epoch"])


class _Indexed:
    """A dataset that also returns each item's index (to look up teacher embeddings)."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> tuple[Any, int, int]:
        x, label = self.dataset[i]
        return x, label, i


def _similarity_matching(student: Any, teacher: Any) -> Any:
    """Mean squared difference between the batch's pairwise cosine similarities, student vs teacher."""
    import torch

    s = torch.nn.functional.normalize(student, dim=1)
    sim_s, sim_t = s @ s.T, teacher @ teacher.T
    off_diagonal = ~torch.eye(len(s), dtype=torch.bool, device=s.device)
    return ((sim_s - sim_t)[off_diagonal] ** 2).mean()


def read_training_checkpoint(path: Path) -> dict[str, Any]:
    """A run's ``checkpoint.pt`` (``weights_only=True``), or a :class:`ModelFileError`."""
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ModelFileError(f"cannot read training checkpoint {path}: {type(exc).__name__}: {exc}") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise ModelFileError(f"{path} is not a facekit EfficientNetV2-ArcFace training checkpoint")
    return state


def _check_same_run(config: TrainConfig, saved: dict[str, Any], path: Path) -> None:
    now = config.model_dump(mode="json")
    changed = sorted(k for k in now if k not in RESUMABLE_CHANGES and now.get(k) != saved.get(k))
    if changed:
        details = "; ".join(f"{k}: {saved.get(k)!r} -> {now.get(k)!r}" for k in changed[:5])
        raise ConfigError(
            f"{path} belongs to a run with a different config ({details}); resume with the run's own config "
            f"(`facekit train --resume --output {path.parent}` reads it from the checkpoint) or use another output folder"
        )


# --------------------------------------------------------------------------- entry points
def train(
    config: Union[TrainConfig, dict[str, Any], str, os.PathLike],
    *,
    resume: bool = False,
    until_epoch: Optional[int] = None,
    time_limit: Optional[float] = None,
    export: bool = True,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> TrainResult:
    """Train (or, with ``resume``, continue) the run ``config`` describes.

    ``until_epoch`` stops once that many epochs are done and ``time_limit`` (seconds) after
    the epoch during which it runs out; either way the checkpoint is saved and a later
    ``resume`` continues the same run. The trained model is exported when the last epoch is
    done (``export=False`` skips that).
    """
    if not isinstance(config, TrainConfig):
        config = load_train_config(config)  # type: ignore[arg-type]
    check_dependencies()
    output = Path(config.output)
    checkpoint = output / "checkpoint.pt"
    saved = None
    if checkpoint.exists():
        if not resume:
            raise ConfigError(
                f"{output} already holds a training run; continue it with resume=True "
                f"(`facekit train --resume --output {output}`) or choose another output folder"
            )
        saved = read_training_checkpoint(checkpoint)
        _check_same_run(config, saved["config"], checkpoint)
    output.mkdir(parents=True, exist_ok=True)
    from facekit.io import atomic_write_text

    atomic_write_text(output / "config.yaml", _config_yaml(config))

    run = _Run(config, progress, log)
    if saved is not None:
        run.restore(saved)
        log(f"resuming {output} after epoch {run.epoch} of {run.epochs}")
    else:
        run.recalibrate_batchnorm(run.stages[0].size)
        entry = {"epoch": 0, "epochs": run.epochs, "size": run.stages[0].size}
        entry.update(run.train_set_metrics(run.stages[0].size))
        entry.update(run.validate(run.stages[0].size))
        run.history.append(entry)
        log(_fmt(entry))
    started = time.monotonic()
    try:
        while run.epoch < run.epochs:
            if until_epoch is not None and run.epoch >= until_epoch:
                break
            if time_limit is not None and time.monotonic() - started > time_limit:
                log(f"time limit reached after epoch {run.epoch}; resume to continue")
                break
            entry = run.train_epoch()
            run.recalibrate_batchnorm(entry["size"])
            entry.update(run.validate(entry["size"]))
            if run.epoch == run.epochs:
                entry.update(run.train_set_metrics(entry["size"]))
            run.history.append(entry)
            run.save(checkpoint)
            log(_fmt(entry))
    except KeyboardInterrupt:
        log(f"interrupted during epoch {run.epoch + 1}; the checkpoint after epoch {run.epoch} is kept: "
            f"`facekit train --resume --output {output}` continues")
        raise
    result = TrainResult(output, config, run.history, run.epoch, run.epoch >= run.epochs, failures=run.failures)
    if result.finished and export:
        result.export = export_network(run.network, output / "export", output.name, run.stages[-1].size, config,
                                       threshold=run.history[-1]["val_threshold"])
        log(f"exported {result.export.checkpoint} and {result.export.onnx}; to use it in a pipeline:\n"
            + result.export.snippet)
    return result


def resume_run(output: Union[str, os.PathLike], **kwargs: Any) -> TrainResult:
    """Continue the run in ``output`` with the config stored in its checkpoint."""
    checkpoint = Path(output) / "checkpoint.pt"
    if not checkpoint.exists():
        raise ConfigError(f"nothing to resume: {checkpoint} does not exist")
    saved = read_training_checkpoint(checkpoint)["config"]
    saved["output"] = str(output)
    return train(validate_train_config(saved, str(checkpoint)), resume=True, **kwargs)


def export_network(network: Any, folder: Path, stem: str, size: int, config: TrainConfig,
                   threshold: Optional[float] = None) -> ExportResult:
    """Write ``network`` as ``<stem>.pt`` (article format), ``<stem>.onnx`` and ``pipeline.yaml``.

    ``threshold`` (the best one on the validation pairs) goes into the embedder's params: a
    freshly trained model's cosines need not sit around FACE01's 0.4.
    """
    from facekit.io import atomic_write_text
    from facekit_torch.efficientnet import export_onnx, save_checkpoint

    folder = Path(folder)
    checkpoint = save_checkpoint(network, folder / f"{stem}.pt")
    onnx_path = export_onnx(network, folder / f"{stem}.onnx", size)
    params: dict[str, Any] = {"weights": str(checkpoint.resolve()), "variant": config.variant, "dim": config.dim,
                              "size": size}
    if threshold is not None and math.isfinite(threshold):
        params["threshold"] = round(min(1.0, max(-1.0, float(threshold))), 4)
    embedder = {"name": NAME, "params": params}
    pipeline = _pipeline_for(config, size, embedder)
    import yaml

    pipeline_yaml = yaml.safe_dump(pipeline, sort_keys=False)
    pipeline_path = atomic_write_text(folder / "pipeline.yaml", pipeline_yaml)
    snippet = yaml.safe_dump({"embedder": embedder}, sort_keys=False)
    if "threshold" in params:
        snippet += "# threshold: the best one on the validation pairs (held-out people)\n"
    if config.aligned:
        snippet += f"# the model was trained on {size} px chips made like the training photos; align the same way\n"
    else:
        snippet += f"aligner: {json.dumps(pipeline['aligner'])}\n"
    snippet += f"# (ONNX: weights: {onnx_path.resolve()}) -- whole pipeline: {pipeline_path}\n"
    return ExportResult(checkpoint, onnx_path, pipeline_path, size, snippet)


def _pipeline_for(config: TrainConfig, size: int, embedder: dict[str, Any]) -> dict[str, Any]:
    from facekit.pipeline import Pipeline

    base = Pipeline.load(config.pipeline).to_dict()
    aligner = copy.deepcopy(config.aligner if config.aligner is not None else base["aligner"])
    aligner.setdefault("params", {})["size"] = size
    out = {
        "name": config.output.name,
        "description": f"EfficientNetV2-ArcFace ({config.variant}, {config.dim}-D) trained by facekit train",
        "detector": base["detector"],
        "fallback_detector": base.get("fallback_detector"),
        "aligner": aligner,
        "embedder": embedder,
        "multi_face": base.get("multi_face", "largest"),
    }
    return {k: v for k, v in out.items() if v is not None}


def export_run(output: Union[str, os.PathLike]) -> ExportResult:
    """Export the latest checkpoint of the run in ``output`` (also for unfinished runs)."""
    from facekit_torch.efficientnet import build_network

    checkpoint = Path(output) / "checkpoint.pt"
    state = read_training_checkpoint(checkpoint)
    config = validate_train_config(state["config"], str(checkpoint))
    network = build_network(config.variant, config.dim)
    network.load_state_dict(state["model"])
    stages = config.stages
    size = _stage_size(stages, int(state["epoch"]))
    threshold = state["history"][-1].get("val_threshold") if state["history"] else None
    return export_network(network.eval(), Path(output) / "export", Path(output).name, size, config, threshold)


def _stage_size(stages: list[Stage], epochs_done: int) -> int:
    end = 0
    for stage in stages:
        end += stage.epochs
        if epochs_done <= end:
            return stage.size
    return stages[-1].size


def _config_yaml(config: TrainConfig) -> str:
    import yaml

    data = config.model_dump(mode="json")
    header = (f"# facekit train config ({config.epochs} epochs: "
              + ", ".join(f"{s.epochs}x{s.size}px" for s in config.stages) + ")\n")
    return header + yaml.safe_dump(data, sort_keys=False)

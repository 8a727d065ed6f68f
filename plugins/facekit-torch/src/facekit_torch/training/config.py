"""What a training run is: its config (:class:`TrainConfig`) and its progressive-learning schedule.

Read from YAML (relative paths are relative to the file) or a dict, validated by pydantic;
errors name the key, as a pipeline's do.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from facekit.errors import ConfigError
from facekit_torch.efficientnet.network import DEFAULT_DIM, DEFAULT_VARIANT, Variant
from facekit_torch.training.data import FACE01_ALIGNER


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


def config_yaml(config: TrainConfig) -> str:
    """The config as the YAML a run writes to ``config.yaml``, with a comment listing its stages."""
    import yaml

    data = config.model_dump(mode="json")
    header = (f"# facekit train config ({config.epochs} epochs: "
              + ", ".join(f"{s.epochs}x{s.size}px" for s in config.stages) + ")\n")
    return header + yaml.safe_dump(data, sort_keys=False)

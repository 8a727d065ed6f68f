"""A run's checkpoint (``checkpoint.pt``): its format tag, reading it, and checking it belongs to a config.

What it holds (model, ArcFace centres, optimiser, scheduler, loss scaler, RNG states,
history) is written and restored by :class:`facekit_torch.training.loop.TrainingRun`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from facekit.errors import ConfigError, ModelFileError
from facekit_torch.training.config import TrainConfig

CHECKPOINT_FORMAT = "facekit-torch/efficientnetv2-arcface-training/1"
#: config fields that may differ when a run is resumed (they do not change what is computed)
RESUMABLE_CHANGES = frozenset({"output", "chip_cache", "device", "workers", "num_threads"})


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


def check_same_run(config: TrainConfig, saved: dict[str, Any], path: Path) -> None:
    """A :class:`ConfigError` unless ``config`` computes what the checkpoint's ``saved`` config did."""
    now = config.model_dump(mode="json")
    changed = sorted(k for k in now if k not in RESUMABLE_CHANGES and now.get(k) != saved.get(k))
    if changed:
        details = "; ".join(f"{k}: {saved.get(k)!r} -> {now.get(k)!r}" for k in changed[:5])
        raise ConfigError(
            f"{path} belongs to a run with a different config ({details}); resume with the run's own config "
            f"(`facekit train --resume --output {path.parent}` reads it from the checkpoint) or use another output folder"
        )

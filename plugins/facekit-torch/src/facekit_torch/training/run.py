"""Driving a run: start it or resume it, train epoch after epoch until done or stopped,
log a line per epoch, and export the trained model at the end.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Union

from facekit.errors import ConfigError
from facekit_torch.training.checkpoint import check_same_run, read_training_checkpoint
from facekit_torch.training.config import TrainConfig, config_yaml, load_train_config, validate_train_config
from facekit_torch.training.export import ExportResult, export_network
from facekit_torch.training.loop import TrainingRun


@dataclass
class TrainResult:
    """What :func:`train` did: the history of every epoch so far, and the export if the run finished."""

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
        check_same_run(config, saved["config"], checkpoint)
    output.mkdir(parents=True, exist_ok=True)
    from facekit.io import atomic_write_text

    atomic_write_text(output / "config.yaml", config_yaml(config))

    run = TrainingRun(config, progress, log)
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

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
  chip, or taken as it is with ``aligned: true`` (see :mod:`facekit_torch.training.data`).
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

The package, one job a module: :mod:`~facekit_torch.training.config` (what a run is),
:mod:`~facekit_torch.training.data` (photos to chips, the split, the pairs),
:mod:`~facekit_torch.training.loop` (the epochs: loss, optimiser, schedule, validation),
:mod:`~facekit_torch.training.checkpoint` (reading a run's checkpoint),
:mod:`~facekit_torch.training.export` (.pt, .onnx and pipeline YAML) and
:mod:`~facekit_torch.training.run` (:func:`train` and :func:`resume_run`). Its public names
are all importable from here.
"""

from __future__ import annotations

from facekit_torch.training.checkpoint import CHECKPOINT_FORMAT, RESUMABLE_CHANGES, read_training_checkpoint
from facekit_torch.training.config import (
    PRESETS,
    DistillConfig,
    LinearSchedule,
    PresetSchedule,
    Schedule,
    Stage,
    TrainConfig,
    config_yaml,
    expand_schedule,
    load_train_config,
    read_train_yaml,
    validate_train_config,
)
from facekit_torch.training.export import ExportResult, export_network, export_run
from facekit_torch.training.loop import lr_factor, verification_metrics
from facekit_torch.training.run import TrainResult, check_dependencies, resume_run, train

__all__ = [
    "CHECKPOINT_FORMAT",
    "PRESETS",
    "RESUMABLE_CHANGES",
    "DistillConfig",
    "ExportResult",
    "LinearSchedule",
    "PresetSchedule",
    "Schedule",
    "Stage",
    "TrainConfig",
    "TrainResult",
    "check_dependencies",
    "config_yaml",
    "expand_schedule",
    "export_network",
    "export_run",
    "load_train_config",
    "lr_factor",
    "read_train_yaml",
    "read_training_checkpoint",
    "resume_run",
    "train",
    "validate_train_config",
    "verification_metrics",
]

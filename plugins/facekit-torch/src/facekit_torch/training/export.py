"""Writing a trained network: the article's checkpoint format (.pt), ONNX, and a pipeline YAML that uses it."""

from __future__ import annotations

import copy
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Union

from facekit_torch.efficientnet.network import NAME
from facekit_torch.training.checkpoint import read_training_checkpoint
from facekit_torch.training.config import Stage, TrainConfig, validate_train_config


@dataclass
class ExportResult:
    """The files an export wrote, and the YAML that uses the model in a pipeline."""

    checkpoint: Path  # article format
    onnx: Optional[Path]
    pipeline: Path  # a pipeline YAML using the checkpoint
    size: int
    snippet: str  # the embedder stage, as YAML


def export_network(network: Any, folder: Path, stem: str, size: int, config: TrainConfig,
                   threshold: Optional[float] = None) -> ExportResult:
    """Write ``network`` as ``<stem>.pt`` (article format), ``<stem>.onnx`` and ``pipeline.yaml``.

    ``threshold`` (the best one on the validation pairs) goes into the embedder's params: a
    freshly trained model's cosines need not sit around FACE01's 0.4.
    """
    from facekit.io import atomic_write_text
    from facekit_torch.efficientnet.network import export_onnx, save_checkpoint

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
    from facekit_torch.efficientnet.network import build_network

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

"""``facekit train``: train the ``efficientnetv2_arcface`` embedder (added through ``register_commands``).

Only click is imported here; torch loads when the command runs.
"""

from __future__ import annotations

from typing import Any, Optional

import click

from facekit.cli.common import handle_errors


def _parse_set(values: tuple[str, ...]) -> dict[str, Any]:
    import yaml

    from facekit.errors import ConfigError

    out: dict[str, Any] = {}
    for item in values:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item!r}: write KEY=VALUE, e.g. --set lr=0.0005")
        out[key.strip()] = yaml.safe_load(raw)
    return out


@click.command("train")
@click.argument("config", required=False, type=click.Path(exists=True, dir_okay=False))
@click.option("--data", type=click.Path(exists=True, file_okay=False), help="folder with one sub-folder per person")
@click.option("--output", "-o", type=click.Path(file_okay=False), help="run folder (checkpoint, history, export)")
@click.option("--aligned", is_flag=True, default=None, help="photos are already face chips (no detection)")
@click.option("--pipeline", "-p", default=None, help="pipeline whose detector aligns the photos [default: default]")
@click.option("--variant", default=None, help="timm backbone, e.g. tf_efficientnetv2_b0 or tf_efficientnetv2_s")
@click.option("--schedule", type=click.Choice(["article", "paper"]), default=None,
              help="progressive-learning preset: article (32/64/128/224 px) or paper (128->300 px)")
@click.option("--epochs", type=int, default=None, help="total epochs of a preset or linear schedule")
@click.option("--batch-size", type=int, default=None)
@click.option("--lr", type=float, default=None, help="peak learning rate")
@click.option("--min-images", type=int, default=None, help="leave out people with fewer photos")
@click.option("--init", default=None, help="article-format checkpoint to start from (default: random)")
@click.option("--distill", default=None, help="teacher embedder to distil from, e.g. torch.dlib_resnet")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default=None)
@click.option("--workers", type=int, default=None, help="DataLoader worker processes")
@click.option("--threads", "num_threads", type=int, default=None, help="torch CPU threads")
@click.option("--seed", type=int, default=None)
@click.option("--set", "settings", multiple=True, metavar="KEY=VALUE",
              help="any config key, value in YAML (repeatable), e.g. --set 'schedule=[{epochs: 2, size: 64}]'")
@click.option("--resume", is_flag=True, help="continue the run in --output (its config is read from the checkpoint)")
@click.option("--until-epoch", type=int, default=None, help="stop after this many epochs (resume later)")
@click.option("--time-limit", type=float, default=None, help="minutes; stop after the epoch that passes it")
@click.option("--export-only", is_flag=True, help="only export the latest checkpoint of --output")
@click.option("--show-config", is_flag=True, help="print the resolved config and stages, then stop")
@click.option("--progress/--no-progress", default=True, show_default=True)
@handle_errors
def train_command(config: Optional[str], data: Optional[str], output: Optional[str], aligned: Optional[bool],
                  pipeline: Optional[str], variant: Optional[str], schedule: Optional[str], epochs: Optional[int],
                  batch_size: Optional[int], lr: Optional[float], min_images: Optional[int], init: Optional[str],
                  distill: Optional[str], device: Optional[str], workers: Optional[int], num_threads: Optional[int],
                  seed: Optional[int], settings: tuple[str, ...], resume: bool, until_epoch: Optional[int],
                  time_limit: Optional[float], export_only: bool, show_config: bool, progress: bool) -> None:
    """Train an EfficientNetV2-ArcFace face embedder with progressive learning.

    CONFIG is an optional YAML file of training settings (keys as in
    facekit_torch.training.TrainConfig); options override it. Examples:

    \b
      facekit train --data photos/ --output runs/b0 --schedule article --epochs 12
      facekit train train.yaml --set batch_size=32
      facekit train --resume --output runs/b0        # continue after an interruption
      facekit train --export-only --output runs/b0   # .pt + .onnx of the latest checkpoint

    Each epoch is checkpointed; validation accuracy on held-out people is printed after
    every epoch; the trained model is exported (article .pt, ONNX, pipeline YAML) at the end.
    """
    from facekit.errors import ConfigError
    from facekit_torch.training import (
        config_yaml, export_run, read_train_yaml, resume_run, train, validate_train_config,
    )

    log = click.echo
    if export_only or (resume and config is None):
        if output is None:
            raise ConfigError("--resume and --export-only need --output, the run folder")
        if export_only:
            result = export_run(output)
            click.echo(f"exported {result.checkpoint} and {result.onnx} ({result.size} px)\n{result.snippet}")
            return
        resume_run(output, until_epoch=until_epoch, time_limit=_seconds(time_limit), progress=progress, log=log)
        return

    overrides: dict[str, Any] = {
        "data": data, "output": output, "aligned": aligned, "pipeline": pipeline, "variant": variant,
        "batch_size": batch_size, "lr": lr, "min_images": min_images, "init": init, "device": device,
        "workers": workers, "num_threads": num_threads, "seed": seed,
    }
    if distill is not None:
        overrides["distill"] = {"teacher": distill}
    overrides.update(_parse_set(settings))
    merged = read_train_yaml(config) if config else {}
    merged.update({k: v for k, v in overrides.items() if v is not None})
    if "data" not in merged:
        raise ConfigError("give --data FOLDER (one sub-folder of photos per person) or a CONFIG file with `data:`")
    if schedule is not None:
        merged["schedule"] = {"preset": schedule}
    if epochs is not None:
        current = merged.get("schedule", {"preset": "article"})
        if isinstance(current, str):
            current = {"preset": current}
        if not isinstance(current, dict):
            raise ConfigError("--epochs applies to a preset or linear schedule; this config lists its stages")
        merged["schedule"] = {**current, "epochs": epochs}
    resolved = validate_train_config(merged, config or "")
    if show_config:
        click.echo(config_yaml(resolved), nl=False)
        for i, stage in enumerate(resolved.stages):
            click.echo(f"# stage {i}: {stage.epochs} epoch(s) at {stage.size} px, RandAugment {stage.randaugment:g}, "
                       f"dropout {stage.dropout:g}")
        return
    train(resolved, resume=resume, until_epoch=until_epoch, time_limit=_seconds(time_limit),
          progress=progress, log=log)


def _seconds(minutes: Optional[float]) -> Optional[float]:
    return None if minutes is None else minutes * 60.0

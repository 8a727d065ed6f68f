"""The training itself: one run's network, ArcFace loss, optimiser and learning-rate schedule,
its epochs, BatchNorm recalibration and validation, and what its checkpoint holds.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from facekit.errors import ConfigError
from facekit_torch._torch import choose_device
from facekit_torch.training.checkpoint import CHECKPOINT_FORMAT
from facekit_torch.training.config import Stage, TrainConfig
from facekit_torch.training.data import (
    ChipDataset,
    prepare_chips,
    progress_bar,
    scan_identities,
    split_identities,
    verification_pairs,
)


def lr_factor(step: int, warmup_steps: int, total_steps: int, min_ratio: float) -> float:
    """Linear warm-up to 1, then cosine decay to ``min_ratio`` at ``total_steps``."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def verification_metrics(embeddings: np.ndarray, first: np.ndarray, second: np.ndarray, same: np.ndarray) -> dict[str, float]:
    """Best-threshold accuracy, 10-fold accuracy and ROC AUC of cosine similarities on pairs."""
    from facekit.scoring import metrics
    from facekit.scoring.metric import metric_named

    scores = metric_named("cosine").pairwise(embeddings[first], embeddings[second])
    threshold, accuracy = metrics.best_threshold(scores, same)
    folds = metrics.stratified_folds(same, min(10, int(min(same.sum(), (~same).sum()))))
    return {
        "val_accuracy": accuracy,
        "val_threshold": threshold,
        "val_accuracy_10fold": metrics.kfold_accuracy(scores, same, folds).mean,
        "val_auc": metrics.auc(metrics.roc(scores, same)),
    }


class TrainingRun:
    """One training run's state: everything a checkpoint holds."""

    def __init__(self, config: TrainConfig, progress: bool, log: Callable[[str], None]) -> None:
        import torch

        self.config = config
        self.progress = progress
        self.log = log
        self.stages = config.stages
        self.epochs = config.epochs
        if config.num_threads is not None:
            torch.set_num_threads(config.num_threads)
        self.device = choose_device(config.device, "facekit train")
        self.amp_dtype = None
        if self.device.type == "cuda" and config.amp != "off":
            bf16 = config.amp in ("auto", "bf16") and torch.cuda.is_bf16_supported()
            self.amp_dtype = torch.bfloat16 if bf16 else torch.float16
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = False
            torch.backends.cudnn.deterministic = True

        identities = scan_identities(config.data, config.min_images, config.max_identities, config.max_images)
        chips = prepare_chips(
            identities, config.cache_dir, aligned=config.aligned, pipeline=config.pipeline,
            aligner=config.aligner, chip_size=config.chip_size, progress=progress, log=log,
        )
        self.failures = chips.failures
        self.chip_size = chips.chip_size
        self.train_set, self.val_set = split_identities(chips, config.val_fraction, config.seed)
        self.pairs = verification_pairs(self.val_set.labels, config.val_pairs, config.seed)
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
        from facekit_torch.efficientnet.network import build_network, load_network

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

"""Train a small EfficientNetV2-ArcFace face embedder on LFW people, on a CPU, and report it honestly.

Uses the people of LFW's development view with at least ``--min-images`` photos (4 by
default: 180 people, 868 photos), aligned by the default pipeline's dlib HOG detector and
FACE01's 5-point chip; 20 % of the people are held out, and verification accuracy on pairs
of those unseen people is measured after every epoch. Progressive learning: image size,
RandAugment magnitude and dropout rise together over four stages.

This is a demonstration of the training machinery on a CPU with a few hundred photos,
from random weights (nothing can be downloaded). Expect a weak model: FACE01's was trained
on 271,875 photos of 2,623 people.

    python examples/train_lfw.py --output runs/lfw-b0 --time-limit 20
    python examples/train_lfw.py --output runs/lfw-b0 --resume      # continue the same run

The photos are read from ``$FACEKIT_FACES_DIR/lfw-dev/images`` (default: ``../shared/faces``
beside the repository), never copied.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def faces_dir() -> Path:
    return Path(os.environ.get("FACEKIT_FACES_DIR", REPO.parent / "shared" / "faces"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", type=Path, default=Path("runs/lfw-b0"))
    parser.add_argument("--min-images", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=16, help="total epochs over the four stages")
    parser.add_argument("--sizes", type=int, nargs=2, default=(32, 64), metavar=("FIRST", "LAST"),
                        help="image side in the first and last stage")
    parser.add_argument("--variant", default="tf_efficientnetv2_b0")
    parser.add_argument("--distill", action="store_true", help="also match the dlib ResNet's similarities")
    parser.add_argument("--lr", type=float, default=1e-3, help="peak learning rate (the first runs used 2e-3)")
    parser.add_argument("--arcface-scale", type=float, default=16.0,
                        help="ArcFace scale (the first runs used 30: slower to start, see docs/howto/training.rst)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--time-limit", type=float, default=None, help="minutes; stop after the epoch that passes it")
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args()

    from facekit_torch.training import TrainConfig, resume_run, train

    started = time.time()
    if args.resume:
        result = resume_run(args.output, time_limit=args.time_limit and args.time_limit * 60, progress=False)
    else:
        config = TrainConfig(
            data=faces_dir() / "lfw-dev" / "images",
            output=args.output,
            min_images=args.min_images,
            val_fraction=0.2,
            variant=args.variant,
            schedule={"stages": 4, "epochs": args.epochs, "size": tuple(args.sizes),
                      "randaugment": (2, 6), "dropout": (0.0, 0.2)},
            batch_size=16,
            lr=args.lr,
            warmup_epochs=1,
            arcface_margin=5.7,  # 0.1 rad: a few hundred people train better with a gentle margin
            arcface_scale=args.arcface_scale,
            distill={"teacher": "torch.dlib_resnet"} if args.distill else None,
            num_threads=args.threads,
            seed=0,
        )
        result = train(config, time_limit=args.time_limit and args.time_limit * 60, progress=False)
    first, last = result.history[0], result.history[-1]
    summary = {
        "epochs_done": result.epochs_done,
        "finished": result.finished,
        "minutes": round((time.time() - started) / 60, 1),
        "train_set_loss_before": first.get("train_eval_loss"),
        "train_set_loss_after": last.get("train_eval_loss"),
        "train_set_identification_before": first.get("train_accuracy"),
        "train_set_identification_after": last.get("train_accuracy"),
        "first_epoch_loss": result.history[1]["train_loss"] if len(result.history) > 1 else None,
        "last_epoch_loss": last.get("train_loss"),
        "val_accuracy_before": first["val_accuracy"],
        "val_accuracy_after": last["val_accuracy"],
        "val_accuracy_10fold_before": first["val_accuracy_10fold"],
        "val_accuracy_10fold_after": last["val_accuracy_10fold"],
        "val_auc_before": first["val_auc"],
        "val_auc_after": last["val_auc"],
        "best_epoch": max(result.history[1:], key=lambda h: h["val_accuracy_10fold"], default=first)["epoch"],
        "images_per_s": [round(h["images_per_s"], 1) for h in result.history[1:]],
        "skipped_photos": len(result.failures),
    }
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()

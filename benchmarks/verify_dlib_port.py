"""Check the PyTorch port of dlib's face ResNet against dlib itself, and time both.

Makes 150x150 chips from lfw-dev photos with dlib (frontal detector, 5-point landmarks,
``get_face_chip(size=150, padding=0.25)``), compares the port's descriptors with
``face_recognition_model_v1.compute_face_descriptor`` on the same chips, and measures
batch-of-32 throughput of the port on 2 torch threads against dlib-bin (whichever of dlib's
per-chip or list-of-chips call is faster). Throughput = 32 / median batch time over the
full batches, the variants taking turns batch by batch so other load on a shared machine
hits them alike.

    python benchmarks/verify_dlib_port.py [-n 250] [--json out.json]

Exit status 1 if the max abs difference is not below --tolerance or the speed-up is below
--min-ratio.
"""

from __future__ import annotations

import argparse
import importlib.resources
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
try:
    from facekit_torch.dlib_resnet import network as dlib_resnet
except ImportError:  # plugin not installed: use the source tree
    sys.path.insert(0, str(REPO_ROOT / "plugins" / "facekit-torch" / "src"))
    from facekit_torch.dlib_resnet import network as dlib_resnet

import dlib  # the reference; imported only here and in the tests

BATCH = 32
THREADS = 2


def default_faces_dir() -> Path:
    return Path(os.environ.get("FACEKIT_FACES_DIR", REPO_ROOT.parent / "shared" / "faces"))


def make_chips(faces_dir: Path, n: int) -> tuple[list[np.ndarray], int]:
    """The first ``n`` lfw-dev photos (sorted) in which dlib finds a face, as dlib chips."""
    images = sorted((faces_dir / "lfw-dev" / "images").glob("*/*.jpg"))
    if not images:
        sys.exit(f"no photos under {faces_dir / 'lfw-dev' / 'images'}; pass --faces-dir or set FACEKIT_FACES_DIR")
    models = importlib.resources.files("face_recognition_models") / "models"
    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(str(models / "shape_predictor_5_face_landmarks.dat"))
    chips: list[np.ndarray] = []
    scanned = 0
    for path in images:
        if len(chips) == n:
            break
        scanned += 1
        img = dlib.load_rgb_image(str(path))
        faces = detector(img, 1)
        if faces:
            chips.append(dlib.get_face_chip(img, predictor(img, faces[0]), size=150, padding=0.25))
    return chips, scanned


def batches(items: Sequence, size: int) -> list[Sequence]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def time_round_robin(
    runners: dict[str, Callable[[int], object]], repeats: dict[str, int], num_batches: int
) -> dict[str, dict[str, float]]:
    """Per-batch wall times, the variants taking turns batch by batch.

    Taking turns means a burst of other load on a shared box hits every variant alike; the
    median batch time is then robust to the rest.
    """
    walls: dict[str, list[float]] = {name: [] for name in runners}
    cpus: dict[str, list[float]] = {name: [] for name in runners}
    for rep in range(max(repeats.values())):
        for i in range(num_batches):
            for name, run in runners.items():
                if rep >= repeats[name]:
                    continue
                cpu0, wall0 = time.process_time(), time.perf_counter()
                run(i)
                walls[name].append(time.perf_counter() - wall0)
                cpus[name].append(time.process_time() - cpu0)
    stats = {}
    for name in runners:
        median, best = float(np.median(walls[name])), float(min(walls[name]))
        stats[name] = {
            "batches_timed": len(walls[name]),
            "median_batch_s": median,
            "best_batch_s": best,
            "images_per_s": BATCH / median,
            "images_per_s_best": BATCH / best,
            "cpu_per_wall": float(sum(cpus[name]) / sum(walls[name])),  # ~1 = one core busy, ~2 = two
        }
    return stats


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", "--num-images", type=int, default=250, help="chips to use (default 250)")
    parser.add_argument("--faces-dir", type=Path, default=default_faces_dir())
    parser.add_argument("--json", type=Path, help="write the results here as JSON")
    parser.add_argument("--repeats", type=int, default=3, help="timed passes of the port over all full batches")
    parser.add_argument("--dlib-repeats", type=int, default=1, help="timed passes of dlib per call style")
    parser.add_argument("--tolerance", type=float, default=1e-4)
    parser.add_argument("--min-ratio", type=float, default=10.0)
    args = parser.parse_args(argv)

    torch.set_num_threads(THREADS)
    t0 = time.perf_counter()
    chips, scanned = make_chips(args.faces_dir, args.num_images)
    n = len(chips)
    print(f"{n} chips from {scanned} lfw-dev photos ({time.perf_counter() - t0:.1f}s)")

    model = dlib_resnet.load_dlib_resnet()
    facerec = dlib.face_recognition_model_v1(str(dlib_resnet.default_model_path()))
    x = torch.from_numpy(np.stack(chips)).permute(0, 3, 1, 2).float().contiguous()
    x_batches = [x[i : i + BATCH] for i in range(0, n, BATCH)]
    chip_batches = batches(chips, BATCH)

    # -- accuracy ------------------------------------------------------------------------------
    reference = np.array(facerec.compute_face_descriptor(chips), dtype=np.float32)
    single = np.array([facerec.compute_face_descriptor(c) for c in chips[:8]], dtype=np.float32)
    dlib_self_diff = float(np.abs(single - reference[:8]).max())  # dlib batch vs dlib per-chip
    with torch.inference_mode():
        ours = torch.cat([model(b) for b in x_batches]).numpy()
    diff = np.abs(ours - reference)
    norm_diff = np.abs(np.linalg.norm(ours, axis=1) - np.linalg.norm(reference, axis=1))
    accuracy = {
        "max_abs_diff": float(diff.max()),
        "mean_abs_diff": float(diff.mean()),
        "max_abs_diff_per_chip_mean": float(diff.max(axis=1).mean()),
        "max_norm_diff": float(norm_diff.max()),
        "dlib_batch_vs_single_max_abs_diff": dlib_self_diff,
    }
    print(
        f"max |port - dlib| = {accuracy['max_abs_diff']:.3g}, mean = {accuracy['mean_abs_diff']:.3g} "
        f"(dlib batch vs per-chip: {dlib_self_diff:.3g})"
    )

    # -- speed: full batches of 32 only, so every timed call does the same work -------------------
    full = n // BATCH
    if full == 0:
        sys.exit(f"need at least {BATCH} chips to time batches of {BATCH}")
    model_cl = dlib_resnet.load_dlib_resnet().to(memory_format=torch.channels_last)
    xs_cl = [b.contiguous(memory_format=torch.channels_last) for b in x_batches]

    def port(m: torch.nn.Module, xs: list[torch.Tensor]) -> Callable[[int], object]:
        def run(i: int) -> object:
            with torch.inference_mode():
                return m(xs[i])

        return run

    runners: dict[str, Callable[[int], object]] = {
        "port": port(model, x_batches),
        "port_channels_last": port(model_cl, xs_cl),
        # dlib: a list of chips in one call, or one call per chip; the faster one is compared.
        "dlib_batched_list": lambda i: facerec.compute_face_descriptor(list(chip_batches[i])),
        "dlib_per_chip": lambda i: [facerec.compute_face_descriptor(c) for c in chip_batches[i]],
    }
    for run in runners.values():
        run(0)  # warm-up (oneDNN primitive creation, dlib buffers)
    load_before = os.getloadavg()[0]
    repeats = {
        "port": args.repeats,
        "port_channels_last": args.repeats,
        "dlib_batched_list": args.dlib_repeats,
        "dlib_per_chip": args.dlib_repeats,
    }
    variants = time_round_robin(runners, repeats, full)

    dlib_best = max(("dlib_batched_list", "dlib_per_chip"), key=lambda k: variants[k]["images_per_s"])
    port_ips = variants["port"]["images_per_s"]
    dlib_ips = variants[dlib_best]["images_per_s"]
    speed = {
        "batch_size": BATCH,
        "torch_threads": THREADS,
        "port_images_per_s": port_ips,
        "port_channels_last_images_per_s": variants["port_channels_last"]["images_per_s"],
        "dlib_images_per_s": dlib_ips,
        "dlib_call_style": dlib_best,
        "ratio": port_ips / dlib_ips,
        "ratio_channels_last": variants["port_channels_last"]["images_per_s"] / dlib_ips,
        "variants": variants,
    }
    for name, v in variants.items():
        print(
            f"{name:>20}: {v['images_per_s']:8.1f} images/s median, {v['images_per_s_best']:8.1f} best "
            f"(cpu/wall {v['cpu_per_wall']:.2f}, {v['batches_timed']} batches)"
        )
    print(
        f"port {port_ips:.1f} images/s vs dlib {dlib_ips:.1f} images/s ({dlib_best}): "
        f"{speed['ratio']:.1f}x ({speed['ratio_channels_last']:.1f}x with channels_last)"
    )

    checks = {
        "accuracy_ok": accuracy["max_abs_diff"] < args.tolerance,
        "speed_ok": speed["ratio"] >= args.min_ratio,
    }
    result = {
        "num_chips": n,
        "photos_scanned": scanned,
        "faces_dir": str(args.faces_dir),
        "tolerance": args.tolerance,
        "min_ratio": args.min_ratio,
        "accuracy": accuracy,
        "speed": speed,
        "checks": checks,
        "env": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "dlib": dlib.__version__,
            "dlib_uses_blas": bool(getattr(dlib, "DLIB_USE_BLAS", False)),
            "cpu_count": os.cpu_count(),
            "machine": platform.machine(),
            # 1-minute load average; above the core count means other processes competed
            "load_avg_1min_before_timing": load_before,
            "load_avg_1min_after_timing": os.getloadavg()[0],
        },
    }
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.json}")
    for name, ok in checks.items():
        if not ok:
            print(f"FAILED: {name}")
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())

"""Does memory stay flat over a long ``facekit embed`` run?

Runs the real command line (``python -m facekit embed FOLDER --cache DIR -o OUT``) in a
child process over thousands of photos (lfw-dev's 4,992 by default), samples the child's
resident memory (RSS, from /proc) every ``--interval`` seconds, and counts the images done
from the cache folder (one file per image). Reports RSS at the first image, the peak and at
the end, the median RSS over the first and last fifth of the images, and the growth per 1,000
images (least-squares slope); writes a JSON report and a PNG plot.

    nice -n 10 python benchmarks/bench_memory.py [--images DIR] [--limit N] [--json out.json] [--plot out.png]

Linux only (reads /proc/PID/status). Exit status 1 if, over the second half of the run, RSS
grows by more than ``--max-growth-mb`` per 1,000 images.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_IMAGES = REPO_ROOT.parent / "shared" / "faces" / "lfw-dev" / "images"


def rss_mb(pid: int) -> tuple[Optional[float], Optional[float]]:
    """(current RSS, peak RSS) of ``pid`` in MiB, from /proc; (None, None) once it is gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None, None
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)

    def mb(key: str) -> Optional[float]:
        value = fields.get(key)
        return int(value.split()[0]) / 1024 if value else None

    return mb("VmRSS"), mb("VmHWM")


def count_done(cache: Path) -> int:
    try:
        return sum(1 for name in os.listdir(cache) if not name.startswith(".") and name.endswith((".npy", ".fail.json")))
    except OSError:
        return 0


def run(images: Path, limit: Optional[int], pipeline: str, interval: float, work: Path) -> dict:
    folder = images
    if limit:
        folder = work / "subset"  # symlinks to the first LIMIT photos, so the command sees a folder
        folder.mkdir()
        photos = sorted(p for p in images.rglob("*.jpg"))[:limit]
        for i, photo in enumerate(photos):
            (folder / f"{i:05d}_{photo.name}").symlink_to(photo)
    total = sum(1 for _ in folder.rglob("*.jpg"))
    cache, output = work / "cache", work / "embeddings.npz"
    command = [sys.executable, "-m", "facekit", "embed", str(folder), "--cache", str(cache), "-o", str(output),
               "--pipeline", pipeline, "--no-progress"]
    started = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    samples: list[dict] = []
    peak = 0.0
    while child.poll() is None:
        current, high = rss_mb(child.pid)
        if current is not None:
            peak = max(peak, high or current)
            samples.append({"t": round(time.perf_counter() - started, 2), "done": count_done(cache),
                            "rss_mb": round(current, 1)})
        time.sleep(interval)
    out, err = child.communicate()
    elapsed = time.perf_counter() - started
    if child.returncode != 0:
        raise SystemExit(f"facekit embed failed ({child.returncode}):\n{err[-3000:]}")
    report = {
        "command": " ".join(command[1:]),
        "images": total,
        "embedded_line": out.strip().splitlines()[-1] if out.strip() else "",
        "skipped": sum(1 for line in err.splitlines() if line.startswith("skipped ")),
        "seconds": round(elapsed, 1),
        "images_per_second": round(total / elapsed, 2),
        "rss_peak_mb": round(peak, 1),
        "samples": samples,
    }
    return summarise(report)


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2] if ordered else float("nan")


def _slope_per_1000(points: list[dict]) -> float:
    """Least-squares slope of RSS on images done, in MiB per 1,000 images."""
    if len(points) < 2:
        return 0.0
    xs = [p["done"] for p in points]
    ys = [p["rss_mb"] for p in points]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    var = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / var * 1000 if var else 0.0


def summarise(report: dict) -> dict:
    """The figures: RSS at the first image, peak, end; medians over the first and last fifth of the
    images (RSS swings by ~100 MiB from batch to batch, so single samples mislead); slopes."""
    report.pop("growth_mb_per_1000_images_after_warmup", None)  # the first version's single figure
    samples = report["samples"]
    total = report["images"]
    working = [s for s in samples if s["done"] > 0]
    fifth = max(total // 5, 1)
    first_part = [s["rss_mb"] for s in working if s["done"] <= fifth]
    last_part = [s["rss_mb"] for s in working if s["done"] > total - fifth]
    report.update({
        "rss_at_first_image_mb": working[0]["rss_mb"] if working else None,
        "rss_end_mb": samples[-1]["rss_mb"] if samples else None,
        "rss_median_first_fifth_mb": round(_median(first_part), 1),
        "rss_median_last_fifth_mb": round(_median(last_part), 1),
        "growth_first_to_last_fifth_mb": round(_median(last_part) - _median(first_part), 1),
        "slope_mb_per_1000_images_all": round(_slope_per_1000(working), 2),
        "slope_mb_per_1000_images_second_half": round(
            _slope_per_1000([s for s in working if s["done"] > total / 2]), 2),
    })
    return report


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    samples = [s for s in report["samples"] if s["done"] > 0]
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=110)
    ax.plot([s["done"] for s in samples], [s["rss_mb"] for s in samples], color="#1f77b4", lw=1.8, label="RSS")
    ax.axhline(report["rss_peak_mb"], color="#d62728", ls="--", lw=1, label=f"peak {report['rss_peak_mb']:.0f} MiB")
    ax.set_xlabel("images embedded")
    ax.set_ylabel("resident memory (MiB)")
    ax.set_ylim(0, report["rss_peak_mb"] * 1.25)
    ax.set_title(f"facekit embed over {report['images']:,} photos (default pipeline)\nRSS "
                 f"{report['rss_at_first_image_mb']:.0f} MiB at the first image, peak {report['rss_peak_mb']:.0f}, "
                 f"end {report['rss_end_mb']:.0f}; {report['slope_mb_per_1000_images_second_half']:+.1f} MiB per "
                 "1,000 images over the second half", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=Path, default=DEFAULT_IMAGES, help="folder of photos (recursive)")
    parser.add_argument("--limit", type=int, default=None, help="only the first N photos")
    parser.add_argument("--pipeline", default="default")
    parser.add_argument("--interval", type=float, default=0.5, help="seconds between RSS samples")
    parser.add_argument("--max-growth-mb", type=float, default=20.0,
                        help="allowed RSS growth per 1,000 images over the second half of the run")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--plot", type=Path, default=None)
    parser.add_argument("--from-json", type=Path, default=None, help="summarise and plot a saved report, no run")
    args = parser.parse_args(argv)
    if args.from_json:
        report = summarise(json.loads(args.from_json.read_text()))
    else:
        with tempfile.TemporaryDirectory(prefix="facekit-mem-") as tmp:
            report = run(args.images, args.limit, args.pipeline, args.interval, Path(tmp))
    summary = {k: v for k, v in report.items() if k != "samples"}
    print(json.dumps(summary, indent=1))
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n")
    if args.plot:
        plot(report, args.plot)
    return 1 if report["slope_mb_per_1000_images_second_half"] > args.max_growth_mb else 0


if __name__ == "__main__":
    raise SystemExit(main())

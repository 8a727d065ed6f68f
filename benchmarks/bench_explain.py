"""Are facekit's heatmaps faithful? Deletion curves, randomisation check, agreement, speed.

On ``--pairs`` same-person pairs of LFW's development view (``pairsDevTest.txt``, spread
evenly over the file so each pair is a different person), for the ``gradcam`` explainer
(each CAM method in ``--methods`` on the embedder's default layer, plus the default method
on each layer in ``--layers``) and the ``occlusion`` explainer:

* **deletion curves**: blur the top k % (5..50 %) pixels of face A by the explainer's map,
  re-measure A's distance to B (and the same for B against A); compare with the same area
  chosen at random (smooth random blobs, the strict baseline; and scattered pixels, an
  easy one) and with a centred blob (the trivial "middle of the face matters" map). The
  ratio top/random at 20 % is the headline number;
* **model randomisation** (Adebayo et al. 2018) on the first ``--random-pairs`` pairs:
  Spearman correlation between the maps of the trained network and of the same network
  with re-initialised weights (low = the map depends on what the model learned);
* **agreement**: Spearman correlation of each Grad-CAM map with the occlusion map, and
  with the centred blob;
* **time per explanation** (one pair, both maps), median.

Writes ``bench_explain.json``, ``bench_explain.md``, ``deletion_curves.png`` (the curves)
and ``examples.png`` (maps of a few pairs) into ``--out``.

    python benchmarks/bench_explain.py --out /tmp/facekit-out/bench_explain            # 50 pairs
    python benchmarks/bench_explain.py --pairs 8 --random-pairs 3 --out /tmp/quick     # a quick look

Timing depends on the machine's load; the report records the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_FACES = Path(os.environ.get("FACEKIT_FACES_DIR", REPO.parent / "shared" / "faces"))
FRACTIONS = (0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5)
SHORT_FRACTIONS = (0.1, 0.2, 0.3)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=50, help="same-person pairs to use")
    parser.add_argument("--random-pairs", type=int, default=8, help="pairs for the randomisation check")
    parser.add_argument("--layer-pairs", type=int, default=20, help="pairs for the comparison of layers")
    parser.add_argument("--pair-file", type=Path, default=DEFAULT_FACES / "lfw-dev" / "pairsDevTest.txt")
    parser.add_argument("--pipeline", default="default")
    parser.add_argument("--methods", default="gradcam,gradcam++,hirescam,layercam",
                        help="CAM methods compared on the default layer")
    parser.add_argument("--layers", default="stages.res35,stages.res17,stages.res8,stages.res4",
                        help="layers compared with the default method")
    parser.add_argument("--n-random", type=int, default=3, help="random masks per fraction and face")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (1: steady numbers on a shared machine; 0: torch's default)")
    parser.add_argument("--out", type=Path, default=Path("/tmp/facekit-out/bench_explain"))
    parser.add_argument("--from-json", type=Path, default=None,
                        help="redraw the report and curves from an earlier bench_explain.json (no measuring)")
    return parser.parse_args(argv)


def choose_pairs(pair_file: Path, count: int) -> list[tuple[str, str]]:
    from facekit.studies.pairs import read_pairs

    return [(p.a, p.b) for p in read_pairs(pair_file).spread(count)]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.from_json:
        report = json.loads(args.from_json.read_text(encoding="utf-8"))
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "bench_explain.md").write_text(markdown(report), encoding="utf-8")
        plot_curves(report, args.out / "deletion_curves.png")
        print(markdown(report))
        return 0
    from facekit.studies import faithfulness as fa
    from facekit.errors import FacekitError
    from facekit.builtin.occlusion import OcclusionExplainer
    from facekit.pipeline import Pipeline
    from facekit_torch.gradcam import GradCamExplainer, randomized_copy

    load_start = os.getloadavg()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    pipeline = Pipeline.load(args.pipeline)
    embedder = pipeline.embedder
    embedder.warm_up()
    default_method = GradCamExplainer().params.method
    default_layer = GradCamExplainer().target_layer(embedder)[1]
    methods = [m for m in args.methods.split(",") if m]
    if default_method not in methods:
        methods.insert(0, default_method)
    layers = [layer for layer in args.layers.split(",") if layer and layer != default_layer]

    # ------------------------------------------------------------------ faces
    pairs, skipped = [], []
    for path_a, path_b in choose_pairs(args.pair_file, args.pairs):
        try:
            pairs.append((pipeline.align(path_a)[0], pipeline.align(path_b)[0]))
        except FacekitError as exc:
            skipped.append(f"{path_a} / {path_b}: {exc}")
    print(f"{len(pairs)} pairs aligned, {len(skipped)} skipped", flush=True)

    explainers: dict[str, Any] = {f"gradcam:{m}": GradCamExplainer(method=m) for m in methods}
    explainers.update({f"gradcam:{default_method}@{layer}": GradCamExplainer(layer=layer) for layer in layers})
    explainers["occlusion"] = OcclusionExplainer()
    main_cam = f"gradcam:{default_method}"

    timings: dict[str, list[float]] = {name: [] for name in explainers}
    full: dict[str, list[Any]] = {"occlusion": [], main_cam: []}  # 10-fraction curves
    short: dict[str, list[Any]] = {name: [] for name in explainers}  # 3-fraction top drops per face
    agreement: dict[str, list[float]] = {name: [] for name in explainers if name != "occlusion"}
    centre_agreement: dict[str, list[float]] = {name: [] for name in explainers}
    distances: list[float] = []
    examples: list[tuple[Any, dict[str, np.ndarray]]] = []
    rng = np.random.default_rng(0)
    random_short: list[list[float]] = []  # per face: random-blob drops at SHORT_FRACTIONS
    started = time.time()
    for index, (a, b) in enumerate(pairs):
        maps: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for name, explainer in explainers.items():
            if "@" in name and index >= args.layer_pairs:
                continue
            tick = time.perf_counter()
            heat_a, heat_b = explainer.explain(embedder, a, b)
            timings[name].append(time.perf_counter() - tick)
            maps[name] = (heat_a.values, heat_b.values)
        vectors = embedder.embed(np.stack([a.chip, b.chip]))
        distances.append(float(np.linalg.norm(vectors[0] - vectors[1])))
        centre = fa.centre_prior(a.chip.shape[:2])
        for side, (face, other) in enumerate(((a, vectors[1]), (b, vectors[0]))):
            curve = fa.deletion_curve(
                embedder, face.chip, other, maps["occlusion"][side], FRACTIONS, n_random=args.n_random, rng=rng,
                n_scattered=1, extra_maps={main_cam: maps[main_cam][side], "centre": centre},
            )
            full["occlusion"].append(curve)
            full[main_cam].append(fa.DeletionCurve(curve.fractions, curve.baselines[main_cam], curve.random,
                                                   curve.original, curve.baselines))
            others = {n: m[side] for n, m in maps.items() if n not in ("occlusion", main_cam)}
            extra = fa.deletion_curve(embedder, face.chip, other, centre, SHORT_FRACTIONS, n_random=0,
                                      extra_maps=others)
            random_short.append([curve.at(f)[1] for f in SHORT_FRACTIONS])
            for name in maps:
                if name in others:
                    short[name].append(extra.baselines[name])
                else:
                    short[name].append(np.array([full[name][-1].at(f)[0] for f in SHORT_FRACTIONS]))
            for name in maps:
                if name != "occlusion":
                    agreement[name].append(fa.map_correlation(maps[name][side], maps["occlusion"][side]))
                centre_agreement[name].append(fa.map_correlation(maps[name][side], centre))
        if index < 4:
            examples.append(((a, b), {n: maps[n] for n in ["occlusion"] + [f"gradcam:{m}" for m in methods]}))
        elapsed = time.time() - started
        print(f"pair {index + 1}/{len(pairs)}  {elapsed:.0f}s", flush=True)

    # -------------------------------------------------------- randomisation
    randomized = randomized_copy(embedder, seed=0)
    rand_pairs = pairs[: args.random_pairs]
    randomization = {}
    for name in [f"gradcam:{m}" for m in methods] + ["occlusion"]:
        sims = fa.randomization_similarity(explainers[name], embedder, randomized, rand_pairs)
        randomization[name] = {"mean": float(sims.mean()), "max": float(sims.max()), "faces": int(sims.size)}
        print(f"randomisation {name}: mean Spearman {sims.mean():.3f}", flush=True)

    # --------------------------------------------------------------- report
    randoms = np.array(random_short)
    rand20 = float(randoms[:, 1].mean())
    summary: dict[str, Any] = {}
    for name in explainers:
        tops = np.array(short[name])
        base = randoms[: len(tops)]  # layer variants ran on the first --layer-pairs pairs only
        summary[name] = {
            "faces": len(tops),
            "drop_at_10_20_30": tops.mean(axis=0).round(5).tolist(),
            "ratio_at_20_vs_random": float(tops[:, 1].mean() / base[:, 1].mean()),
            "faces_where_top20_beats_random": float(np.mean(tops[:, 1] > base[:, 1])),
            "per_face_drop_at_20": tops[:, 1].round(5).tolist(),
            "median_seconds_per_explanation": float(np.median(timings[name])),
            "spearman_with_occlusion": float(np.mean(agreement[name])) if name in agreement else 1.0,
            "spearman_with_centre_blob": float(np.mean(centre_agreement[name])),
        }
    curves_out = {}
    for name, curves in full.items():
        mean = fa.mean_curve(curves)
        curves_out[name] = {"top": mean.top.round(5).tolist(), "random": mean.random.round(5).tolist(),
                            **{k: v.round(5).tolist() for k, v in mean.baselines.items() if k in ("scattered", "centre")}}
    at20 = FRACTIONS.index(0.2)
    centre20 = float(np.mean([c.baselines["centre"][at20] for c in full["occlusion"]]))
    scattered20 = float(np.mean([c.baselines["scattered"][at20] for c in full["occlusion"]]))
    report = {
        "pairs": len(pairs), "faces": 2 * len(pairs), "skipped": skipped, "pair_file": str(args.pair_file),
        "pipeline": args.pipeline, "model": embedder.model_name, "metric": embedder.metric,
        "default_method": default_method, "default_layer": default_layer,
        "mean_distance": float(np.mean(distances)),
        "fractions": list(FRACTIONS), "curves": curves_out,
        "random_drop_at_20": rand20, "scattered_drop_at_20": scattered20, "centre_blob_drop_at_20": centre20,
        "explainers": summary, "randomization_spearman": randomization,
        "per_face_random_drop_at_20": randoms[:, 1].round(5).tolist(),
        "recommended_method": recommend(summary, randomization),
        "load_average_start": load_start, "load_average_end": os.getloadavg(),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "torch_threads": args.threads or "default",
        "seconds": time.time() - started,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    from facekit.io import atomic_write_text

    atomic_write_text(args.out / "bench_explain.json", json.dumps(report, indent=2))
    atomic_write_text(args.out / "bench_explain.md", markdown(report))
    plot_curves(report, args.out / "deletion_curves.png")
    plot_examples(examples, args.out / "examples.png")
    print(markdown(report))
    return 0


def recommend(summary: dict[str, Any], randomization: dict[str, Any], max_spearman: float = 0.5) -> str:
    """The CAM method with the best deletion ratio among those that pass the randomisation
    check (mean Spearman below ``max_spearman``), on the default layer."""
    passing = [n for n in randomization if n.startswith("gradcam:") and randomization[n]["mean"] < max_spearman]
    pool = passing or [n for n in randomization if n.startswith("gradcam:")]
    return max(pool, key=lambda n: summary[n]["ratio_at_20_vs_random"]).split(":", 1)[1] if pool else ""


def markdown(report: dict[str, Any]) -> str:
    lines = [
        f"# Explanation faithfulness: {report['pairs']} same-person LFW pairs ({report['faces']} faces)",
        "",
        f"Model {report['model']} ({report['metric']}), pipeline `{report['pipeline']}`; mean distance of the "
        f"pairs {report['mean_distance']:.3f}. A drop is how much the distance to the other face grows when the "
        "pixels are blurred.",
        "",
        f"At 20 % of the chip: random smooth blobs raise the distance by {report['random_drop_at_20']:.4f}, "
        f"scattered random pixels by {report['scattered_drop_at_20']:.4f}, a centred blob by "
        f"{report['centre_blob_drop_at_20']:.4f}.",
        "",
        "| explainer | faces | drop at 10 / 20 / 30 % | top-20 % / random-20 % | faces where top beats random | "
        "Spearman with occlusion | Spearman with centre blob | s per explanation |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, row in sorted(report["explainers"].items(), key=lambda kv: -kv[1]["ratio_at_20_vs_random"]):
        drops = " / ".join(f"{v:.3f}" for v in row["drop_at_10_20_30"])
        lines.append(
            f"| {name} | {row['faces']} | {drops} | {row['ratio_at_20_vs_random']:.2f}x | {row['faces_where_top20_beats_random']:.0%} | "
            f"{row['spearman_with_occlusion']:.2f} | {row['spearman_with_centre_blob']:.2f} | "
            f"{row['median_seconds_per_explanation']:.2f} |"
        )
    layered = {n: r for n, r in report["explainers"].items() if "@" in n}
    if layered:
        count = min(r["faces"] for r in layered.values())
        randoms = np.array(report["per_face_random_drop_at_20"][:count])
        default = f"gradcam:{report['default_method']}"
        same_faces = {f"{default}@{report['default_layer']}": report["explainers"][default], **layered}
        ratios = ", ".join(
            f"{n.split('@')[1]} {np.mean(r['per_face_drop_at_20'][:count]) / randoms.mean():.2f}x"
            for n, r in same_faces.items()
        )
        lines += ["", f"Layers for {report['default_method']}, on the same first {count} faces (top-20 % / random): "
                  f"{ratios}."]
    lines += ["", "Model randomisation (Spearman between maps of the trained and the re-initialised network; "
              "low passes):", ""]
    for name, row in report["randomization_spearman"].items():
        lines.append(f"* {name}: mean {row['mean']:.3f}, max {row['max']:.3f} over {row['faces']} faces")
    lines += ["", f"Recommended CAM method (best top-20 % ratio among methods with randomisation Spearman < 0.5): "
              f"**{report['recommended_method']}**; explainer default now: {report['default_method']} on "
              f"{report['default_layer']}."]
    lines += ["", f"Load average at start {report['load_average_start']}, at end {report['load_average_end']} "
              f"({report['machine']}, torch threads: {report['torch_threads']}); {report['seconds']:.0f} s in all."]
    return "\n".join(lines) + "\n"


def plot_curves(report: dict[str, Any], path: Path) -> None:
    from facekit.pictures.plots import _figure, _save

    fig = _figure(11, 4.6)
    axes = fig.subplots(1, 2)
    x = np.array(report["fractions"]) * 100
    ax = axes[0]
    styles = {"occlusion": ("#d62728", "-o"), f"gradcam:{report['default_method']}": ("#1f77b4", "-s")}
    for name, curve in report["curves"].items():
        colour, style = styles.get(name, ("#333333", "-"))
        ax.plot(x, curve["top"], style, color=colour, label=f"{name}: top k %")
    any_curve = next(iter(report["curves"].values()))
    ax.plot(x, any_curve["random"], "--", color="#555555", label="random blobs (same area)")
    ax.plot(x, any_curve["scattered"], ":", color="#999999", label="random scattered pixels")
    ax.plot(x, any_curve["centre"], "-.", color="#2ca02c", label="centred blob")
    ax.set_xlabel("pixels blurred (% of the face chip)")
    ax.set_ylabel("distance to the other face: increase")
    ax.set_title(f"Deletion curves, {report['faces']} faces ({report['pairs']} LFW pairs)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)

    ax = axes[1]
    rows = sorted(report["explainers"].items(), key=lambda kv: kv[1]["ratio_at_20_vs_random"])
    names = [n.replace("gradcam:", "") for n, _ in rows]
    ratios = [r["ratio_at_20_vs_random"] for _, r in rows]
    colours = ["#d62728" if n == "occlusion" else "#1f77b4" for n, _ in rows]
    ax.barh(names, ratios, color=colours)
    for y, value in enumerate(ratios):
        ax.text(value + 0.05, y, f"{value:.2f}x", va="center", fontsize=8)
    ax.axvline(1.0, color="#555555", ls="--", lw=1)
    centre_ratio = report["centre_blob_drop_at_20"] / report["random_drop_at_20"]
    ax.axvline(centre_ratio, color="#2ca02c", ls="-.", lw=1)
    ax.text(centre_ratio, -0.45, " centred blob", color="#2ca02c", fontsize=8, va="center")
    ax.set_xlabel("top-20 % drop / random-20 % drop")
    ax.set_title("Which map finds the pixels that matter (at 20 %)")
    ax.tick_params(axis="y", labelsize=8)
    ax.set_xlim(0, max(ratios) * 1.18)
    _save(fig, path)


def plot_examples(examples: list[Any], path: Path) -> None:
    from facekit.pictures.plots import _figure, _save
    from facekit.pictures.cards import overlay_heatmap

    if not examples:
        return
    names = list(examples[0][1])
    fig = _figure(1.9 * (1 + len(names)), 1.9 * 2 * len(examples) + 0.3)
    axes = fig.subplots(2 * len(examples), 1 + len(names), squeeze=False)
    for row, ((a, b), maps) in enumerate(examples):
        for side, face in enumerate((a, b)):
            r = 2 * row + side
            axes[r, 0].imshow(face.chip)
            axes[r, 0].set_ylabel(Path(face.source or "").stem, fontsize=7)
            for col, name in enumerate(names, start=1):
                axes[r, col].imshow(overlay_heatmap(face.chip, maps[name][side]))
                if r == 0:
                    axes[r, col].set_title(name.replace("gradcam:", "Grad-CAM "), fontsize=8)
            for ax in axes[r]:
                ax.set_xticks([])
                ax.set_yticks([])
    axes[0, 0].set_title("chip", fontsize=8)
    _save(fig, path)


if __name__ == "__main__":
    sys.exit(main())

"""Open-set identification on lfw-dev: facekit's Gallery against "the face_recognition way".

Protocol (built from lfw-dev's people, a fixed random half of them "known"):

* known people: their first ``--enrol`` photos (sorted by name) are enrolled; their other
  photos are probes that should be identified;
* unknown people: never enrolled; every photo of theirs is a probe that should come out
  "unknown".

Both methods use the same embeddings (the default pipeline's, largest face; read from the
``.npz`` that ``facekit embed`` writes). The face_recognition way is the nearest enrolled
face, accepted when its distance is under the tolerance 0.6. facekit runs its own code path:
``Gallery.add_embeddings`` then ``Gallery.match`` with each template rule, and decides as
``Gallery.identify`` does: the best person must pass the pipeline's threshold and be clearly
nearer than the second (distance ratio at most ``max_ratio``); its open-set score for the
DIR-at-FPIR sweep is that ratio (faces failing the threshold are never accepted).

Reported: rank-1 (known probes whose best candidate is right), DIR at 1 % FPIR (known
probes identified correctly when the acceptance score is set so that 1 % of unknown probes
are accepted) and the operating point each method actually uses (its own threshold).
``--enrol 1`` is the issue's protocol; ``--enrol 2`` (people with 3+ photos) compares the
template rules. Writes /tmp/bench_gallery.json.

    .venv/bin/python benchmarks/bench_gallery.py --embeddings /tmp/shared-emb/lfw-dev-default.npz
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

FACE_RECOGNITION_TOLERANCE = 0.6


def split_people(sources: np.ndarray, enrol: int, seed: int) -> tuple[dict[str, list[int]], dict[str, list[int]]]:
    """Known people (with more than ``enrol`` photos, half of all eligible) and unknown ones."""
    photos: dict[str, list[int]] = defaultdict(list)
    for i, source in enumerate(sources):
        photos[Path(source).parent.name].append(i)
    names = sorted(photos)
    rng = np.random.default_rng(seed)
    chosen = set(rng.choice(names, len(names) // 2, replace=False))
    known = {n: sorted(photos[n], key=lambda i: sources[i]) for n in names if n in chosen and len(photos[n]) > enrol}
    unknown = {n: photos[n] for n in names if n not in chosen}
    return known, unknown


def open_set(best_sims: np.ndarray, correct: np.ndarray, is_known: np.ndarray, fpir: float) -> dict[str, float]:
    """Rank-1 and DIR at ``fpir``; ``best_sims``: best candidate's score, higher = more similar."""
    impostor = np.sort(best_sims[~is_known])[::-1]
    cut = impostor[int(np.floor(fpir * len(impostor)))]  # accept only scores above this
    known_sims, known_correct = best_sims[is_known], correct[is_known]
    return {"rank1": float(known_correct.mean()), f"dir_at_{fpir:g}_fpir": float((known_correct & (known_sims > cut)).mean())}


def at_threshold(best_sims: np.ndarray, correct: np.ndarray, is_known: np.ndarray, threshold_sim: float) -> dict[str, float]:
    accepted = best_sims >= threshold_sim
    return {"dir": float((correct & accepted)[is_known].mean()), "fpir": float(accepted[~is_known].mean())}


def summarise(protocols: list[dict]) -> list[str]:
    """One line per (photos enrolled, method): the mean over the random halves."""
    groups: dict[tuple[int, str], list[dict]] = defaultdict(list)
    for protocol in protocols:
        for method, row in protocol["methods"].items():
            groups[(protocol["enrolled_per_person"], method)].append(row)
    lines = []
    for (enrol, method), rows in groups.items():
        def mean(get) -> float:  # type: ignore[no-untyped-def]
            return 100 * float(np.mean([get(r) for r in rows]))

        lines.append(
            f"enrol {enrol} | {method:<40} | rank-1 {mean(lambda r: r['rank1']):5.1f} % | "
            f"DIR@1%FPIR {mean(lambda r: r['dir_at_0.01_fpir']):5.1f} % | own threshold: "
            f"DIR {mean(lambda r: r['at_own_threshold']['dir']):5.1f} %, FPIR {mean(lambda r: r['at_own_threshold']['fpir']):5.1f} %"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--embeddings", default="/tmp/shared-emb/lfw-dev-default.npz")
    parser.add_argument("--pipeline", "-p", default="default", help="the pipeline that made the embeddings")
    parser.add_argument("--enrol", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="random halves of the people")
    parser.add_argument("--out", default="/tmp/bench_gallery.json")
    args = parser.parse_args()

    from facekit.collections.gallery import Gallery
    from facekit.collections.identification import DEFAULT_MAX_RATIO, TEMPLATE_RULES, distance_ratio
    from facekit.pipeline import Pipeline
    from facekit.scoring.metric import metric_named
    from facekit.types import Embedding

    data = np.load(args.embeddings)
    sources, vectors = data["sources"], data["vectors"].astype(np.float32)
    model, metric = str(data["model"]), str(data["metric"])
    pipeline = Pipeline.load(args.pipeline)
    if pipeline.embedder.model_name != model:
        raise SystemExit(f"{args.embeddings} holds {model!r} embeddings; pipeline {args.pipeline!r} makes "
                         f"{pipeline.embedder.model_name!r} ones: pass the right -p")
    threshold_sim = float(metric_named(metric).as_similarity(pipeline.threshold))
    report: dict = {"load": os.getloadavg(), "model": model, "metric": metric,
                    "pipeline_threshold": pipeline.threshold, "protocols": []}
    for enrol, seed in [(e, s) for e in args.enrol for s in args.seeds]:
        known, unknown = split_people(sources, enrol, seed)
        gallery_ids = {n: ids[:enrol] for n, ids in known.items()}
        probes = [(i, n) for n, ids in known.items() for i in ids[enrol:]] + [(i, None) for ids in unknown.values() for i in ids]
        probe_ids = np.array([i for i, _ in probes])
        truth = [n for _, n in probes]
        is_known = np.array([n is not None for n in truth])
        protocol = {"enrolled_per_person": enrol, "seed": seed, "known_people": len(known), "unknown_people": len(unknown),
                    "known_probes": int(is_known.sum()), "unknown_probes": int((~is_known).sum()), "methods": {}}

        # the face_recognition way: nearest enrolled face, tolerance 0.6 (Euclidean models)
        enrolled = np.array([i for ids in gallery_ids.values() for i in ids])
        owner = np.array([n for n, ids in gallery_ids.items() for _ in ids])
        distances = np.linalg.norm(vectors[probe_ids][:, None, :] - vectors[enrolled][None, :, :], axis=2)
        nearest = distances.argmin(axis=1)
        best = -distances[np.arange(len(probes)), nearest]
        correct = np.array([owner[j] == t for j, t in zip(nearest, truth)])
        row = open_set(best, correct, is_known, 0.01)
        if not metric_named(metric).higher_is_more_similar:  # face_recognition's tolerance is a distance
            row["at_own_threshold"] = {"threshold": FACE_RECOGNITION_TOLERANCE,
                                       **at_threshold(best, correct, is_known, -FACE_RECOGNITION_TOLERANCE)}
        protocol["methods"]["face_recognition (nearest face, 0.6)"] = row
        print(enrol, "face_recognition", json.dumps(row), flush=True)

        with tempfile.TemporaryDirectory() as tmp:
            gallery = Gallery.create(Path(tmp) / "bench.db", pipeline)
            start = time.perf_counter()
            for name, ids in gallery_ids.items():
                gallery.add_embeddings(name, [Embedding(vectors[i], model, metric, source=str(sources[i])) for i in ids])
            enrol_s = time.perf_counter() - start
            for rule in TEMPLATE_RULES:
                if rule != "max" and enrol == 1:
                    continue  # one photo each: every rule is the same
                start = time.perf_counter()
                ranked = gallery.match(vectors[probe_ids], k=2, rule=rule)
                match_s = time.perf_counter() - start
                best = metric_named(metric).as_similarity([r[0].score for r in ranked])
                passes = best >= threshold_sim
                ratios = np.array([distance_ratio(*r[:2]) for r in ranked])
                correct = np.array([r[0].person == t for r, t in zip(ranked, truth)])
                row = {"rank1": float(correct[is_known].mean()),
                       "dir_at_0.01_fpir": open_set(np.where(passes, -ratios, -np.inf), correct, is_known, 0.01)[
                           "dir_at_0.01_fpir"],
                       "dir_at_0.01_fpir_threshold_only": open_set(best, correct, is_known, 0.01)["dir_at_0.01_fpir"]}
                row["at_own_threshold"] = {"threshold": pipeline.threshold, "max_ratio": DEFAULT_MAX_RATIO,
                                           **at_threshold(np.where(passes, -ratios, -np.inf), correct, is_known,
                                                          -DEFAULT_MAX_RATIO)}
                row["enrol_s"], row["match_ms_per_probe"] = round(enrol_s, 2), round(match_s / len(probes) * 1000, 3)
                protocol["methods"][f"facekit Gallery (template {rule})"] = row
                print(enrol, rule, json.dumps(row), flush=True)
            gallery.close()
        report["protocols"].append(protocol)
    report["summary"] = summarise(report["protocols"])
    for line in report["summary"]:
        print(line)
    report["load_after"] = os.getloadavg()
    Path(args.out).write_text(json.dumps(report, indent=1))
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()

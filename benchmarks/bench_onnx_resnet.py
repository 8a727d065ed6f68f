"""dlib's face ResNet in ONNX Runtime (``dlib.resnet_onnx``): session settings and int8 quantisation.

Speed: chips/s for one batch of 32 real lfw-dev chips, per ONNX Runtime graph optimisation
level, thread count (1, 2) and idle-thread spinning, next to the torch port
(``torch.dlib_resnet``, same threads) when facekit-torch is installed. Best of ``--repeat``
runs after one warm-up run. The machine's load average is printed with the numbers: on a
shared machine, read the ratios rather than the absolute values.

Quantisation (``--quantize``): ONNX Runtime's dynamic and static (QDQ, calibrated on
pairsDevTrain chips) int8 quantisation of the same graph, each judged by its descriptors'
distance from the float32 ones and by pairsDevTest accuracy (threshold 0.6) on the first
``--pairs`` pairs of each kind, next to float32 on the same pairs. Needs the ``onnx`` package.

    python benchmarks/bench_onnx_resnet.py [--faces ../shared/faces] [--quantize --pairs 300]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]


def chips_of(pipeline, paths: list[Path]) -> tuple[np.ndarray, list[int]]:  # type: ignore[no-untyped-def]
    """The largest face's chip of each photo; also the indices of the photos where one was found."""
    from facekit import load_image

    chips, found = [], []
    for i, path in enumerate(paths):
        image = load_image(path)
        faces = pipeline.detector.detect(image)
        if not faces:
            continue
        face = max(faces, key=lambda f: f.width * f.height)
        chips.append(pipeline.aligner.align(image, face).chip)
        found.append(i)
    return np.stack(chips), found


def best_rate(run, batch: np.ndarray, repeat: int) -> float:  # type: ignore[no-untyped-def]
    run(batch)  # warm-up
    best = min(_timed(run, batch) for _ in range(repeat))
    return len(batch) / best


def _timed(run, batch: np.ndarray) -> float:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    run(batch)
    return time.perf_counter() - start


def speed(batch: np.ndarray, repeat: int) -> None:
    from facekit_dlib.resnet import DlibResnetOnnxEmbedder
    from facekit_dlib.resnet_onnx import INPUT_NAME, build_onnx_model, make_session

    from facekit.dlib_model.reader import default_model_path, read_dlib_resnet_file

    model = build_onnx_model(read_dlib_resnet_file(default_model_path()))
    tensor = np.ascontiguousarray(batch.transpose(0, 3, 1, 2), dtype=np.float32)
    print(f"load average {os.getloadavg()[0]:.2f} (shared machine); batch of {len(batch)} chips, best of {repeat}")
    print(f"{'backend':<34}{'1 thread':>12}{'2 threads':>12}")
    for level in ("disabled", "basic", "extended", "all"):
        for spinning in ("0", "1"):
            rates = []
            for threads in (1, 2):
                session = make_session(model, num_threads=threads, optimization=level)
                if spinning == "1":  # make_session turns spinning off; rebuild with it on
                    import onnxruntime as ort

                    options = ort.SessionOptions()
                    options.graph_optimization_level = session.get_session_options().graph_optimization_level
                    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
                    session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
                rates.append(best_rate(lambda x: session.run(None, {INPUT_NAME: tensor}), tensor, repeat))
            print(f"{'onnx ' + level + ' spin=' + spinning:<34}{rates[0]:>10.1f}/s{rates[1]:>10.1f}/s")
    embedder = DlibResnetOnnxEmbedder()
    print(f"{'dlib.resnet_onnx (defaults)':<34}{'':>12}{best_rate(embedder.embed, batch, repeat):>10.1f}/s")
    try:
        import torch
        from facekit_torch.dlib_resnet import DlibResnetTorchEmbedder
    except ImportError:
        print("torch.dlib_resnet: facekit-torch not installed")
        return
    rates = []
    for threads in (1, 2):
        torch.set_num_threads(threads)
        rates.append(best_rate(DlibResnetTorchEmbedder(device="cpu").embed, batch, repeat))
    print(f"{'torch.dlib_resnet':<34}{rates[0]:>10.1f}/s{rates[1]:>10.1f}/s")


def quantization(pipeline, lfw: Path, pairs: int, calibration_chips: np.ndarray) -> None:  # type: ignore[no-untyped-def]
    import onnxruntime as ort
    from onnxruntime.quantization import CalibrationDataReader, QuantType, quantize_dynamic, quantize_static

    from facekit.dlib_model.reader import default_model_path, read_dlib_resnet_file
    from facekit.studies.pairs import read_pairs
    from facekit_dlib.resnet_onnx import INPUT_NAME, build_onnx_model

    chosen = read_pairs(lfw / "pairsDevTest.txt", lfw / "images", limit=pairs).pairs
    same = [p for p in chosen if p.same]
    different = [p for p in chosen if not p.same]
    paths = sorted({p.a for p in chosen} | {p.b for p in chosen})
    chips, found = chips_of(pipeline, paths)
    index = {paths[i]: k for k, i in enumerate(found)}
    tensor = np.ascontiguousarray(chips.transpose(0, 3, 1, 2), dtype=np.float32)

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            data = np.ascontiguousarray(calibration_chips.transpose(0, 3, 1, 2), dtype=np.float32)
            self._batches = iter([{INPUT_NAME: data[i : i + 8]} for i in range(0, len(data), 8)])

        def get_next(self):  # type: ignore[no-untyped-def]
            return next(self._batches, None)

    work = Path(tempfile.mkdtemp(prefix="facekit-quant-"))
    fp32 = work / "fp32.onnx"
    fp32.write_bytes(build_onnx_model(read_dlib_resnet_file(default_model_path())))
    variants = {"float32": fp32}
    quantize_dynamic(fp32, work / "dynamic.onnx", weight_type=QuantType.QInt8)
    variants["int8 dynamic"] = work / "dynamic.onnx"
    quantize_static(fp32, work / "static.onnx", Reader(), activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    variants["int8 static (QDQ)"] = work / "static.onnx"

    print(f"\nquantisation: {len(same)} same + {len(different)} different pairsDevTest pairs "
          f"({len(paths)} photos, {len(found)} with a face), threshold 0.6; load {os.getloadavg()[0]:.2f}")
    reference = None
    for name, path in variants.items():
        options = ort.SessionOptions()
        options.intra_op_num_threads = 2
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        vectors = np.concatenate([session.run(None, {INPUT_NAME: tensor[i : i + 32]})[0] for i in range(0, len(tensor), 32)])
        reference = vectors if reference is None else reference
        correct = total = 0
        for pair in chosen:
            if pair.a in index and pair.b in index:
                distance = np.linalg.norm(vectors[index[pair.a]] - vectors[index[pair.b]])
                correct += (distance < 0.6) == pair.same
                total += 1
        rate = best_rate(lambda x: session.run(None, {INPUT_NAME: x}), tensor[:32], 3)
        drift = np.abs(vectors - reference).max()
        print(f"{name:<20} accuracy {100 * correct / total:6.2f} % ({total} pairs)  max |diff| vs float32 {drift:.4f}  "
              f"{rate:6.1f} chips/s (2 threads)  {path.stat().st_size / 1e6:.1f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--faces", type=Path, default=REPO_ROOT.parent / "shared" / "faces")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--quantize", action="store_true")
    parser.add_argument("--pairs", type=int, default=300, help="pairs of each kind for the quantisation accuracy")
    args = parser.parse_args()

    from facekit import Pipeline

    pipeline = Pipeline.from_dict({"detector": {"name": "dlib.hog", "params": {"upsample": 1}},
                                   "aligner": "dlib.chip5", "embedder": "dlib.resnet_onnx"})
    lfw = args.faces / "lfw-dev"
    train_photos = sorted((lfw / "images").glob("*/*.jpg"))[::40][:40]
    batch, _ = chips_of(pipeline, train_photos)
    batch = batch[:32]
    speed(batch, args.repeat)
    if args.quantize:
        quantization(pipeline, lfw, args.pairs, batch)


if __name__ == "__main__":
    main()

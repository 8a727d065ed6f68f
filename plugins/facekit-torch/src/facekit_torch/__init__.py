"""facekit-torch: face embedders that run in PyTorch, an explainer that needs them, and training.

Registered components (see ``facekit list embedder``):

* embedder ``torch.dlib_resnet``: dlib's face ResNet ported to PyTorch (same weights, same
  128-D descriptors as ``dlib.resnet`` to ~1e-6), batched, and exposing its layers to
  gradient-based explainers through ``torch_model()``.
* embedder ``efficientnetv2_arcface``: FACE01's EfficientNetV2 + ArcFace model family
  (timm backbone, 512-D, cosine), weights from an article-format ``.pt`` or an ONNX file.
* explainer ``gradcam``: Grad-CAM-family heatmaps for any embedder with a PyTorch network.

Command: ``facekit train`` trains the EfficientNetV2 embedder (:mod:`facekit_torch.training`).

Layout: one module (or package) per model, each holding that model's network and its component:

* :mod:`facekit_torch.dlib_resnet`: the ``torch.dlib_resnet`` embedder and the checks of its
  weights file; its torch network (the port, and the fast inference copy) is
  :mod:`facekit_torch.dlib_resnet.network`.
* :mod:`facekit_torch.efficientnet`: the ``efficientnetv2_arcface`` embedder; its network and
  weight files (reading and writing .pt, exporting ONNX) are
  :mod:`facekit_torch.efficientnet.network`, and running an ONNX file is
  :mod:`facekit_torch.efficientnet.onnx_runner`.
* :mod:`facekit_torch.gradcam`: the ``gradcam`` explainer and the weight-randomisation check.
* :mod:`facekit_torch.training`: training the EfficientNetV2 embedder (a package, one job a module).
* :mod:`facekit_torch.cli`: the ``facekit train`` command (click only).
* :mod:`facekit_torch._torch`: the one place that imports torch for a component and turns a
  ``device`` setting into a torch device (one error message for each problem).

Importing this package does not import torch; that happens when a component is first
used (models load once, on first use, through :class:`facekit.components.Lazy`). Each
component kind has one hook below: add new classes to the matching hook.
"""

from __future__ import annotations

from facekit.hookspecs import hookimpl

__version__ = "0.1.0"


@hookimpl
def register_embedders(register):  # type: ignore[no-untyped-def]
    from facekit_torch.efficientnet import EfficientNetV2ArcFaceEmbedder
    from facekit_torch.dlib_resnet import DlibResnetTorchEmbedder

    register(DlibResnetTorchEmbedder)
    register(EfficientNetV2ArcFaceEmbedder)


@hookimpl
def register_explainers(register):  # type: ignore[no-untyped-def]
    from facekit_torch.gradcam import GradCamExplainer

    register(GradCamExplainer)


@hookimpl
def register_commands(cli):  # type: ignore[no-untyped-def]
    from facekit_torch.cli import train_command

    cli.add_command(train_command)

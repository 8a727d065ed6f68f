"""facekit-torch: face embedders that run in PyTorch.

Registered components (see ``facekit list embedder``):

* embedder ``torch.dlib_resnet``: dlib's face ResNet ported to PyTorch (same weights, same
  128-D descriptors as ``dlib.resnet`` to ~1e-6), batched, and exposing its layers to
  gradient-based explainers through ``torch_model()``.
* embedder ``efficientnetv2_arcface``: FACE01's EfficientNetV2 + ArcFace model family
  (timm backbone, 512-D, cosine), weights from an article-format ``.pt`` or an ONNX file.

Command: ``facekit train`` trains that embedder (:mod:`facekit_torch.training`).

Importing this package does not import torch; that happens when a component is first
used. Each component kind has one hook below: add new classes to the matching hook.
"""

from __future__ import annotations

from facekit.hookspecs import hookimpl

__version__ = "0.1.0"


@hookimpl
def register_embedders(register):  # type: ignore[no-untyped-def]
    from facekit_torch.efficientnet import EfficientNetV2ArcFaceEmbedder
    from facekit_torch.embedders import DlibResnetTorchEmbedder

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

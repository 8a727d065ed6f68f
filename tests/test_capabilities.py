"""A pipeline that cannot explain is refused when it is built, also through a wrapping embedder.

The check asks the embedder (``Embedder.gives_gradients``) instead of comparing its class's
methods, so ``adapted`` answers as the model underneath does (issue 15).
"""

from __future__ import annotations

import numpy as np
import pytest

import facekit
from facekit import Pipeline
from facekit.components import Explainer, TorchModel
from facekit.errors import ConfigError

from .fakes import TOY_YAML, FakePlugin, MeanColourEmbedder


class NeedsGradients(Explainer):
    name = "test.needsgrad"
    description = "stands in for Grad-CAM: only its needs_torch flag matters here"
    needs_torch = True

    def explain(self, embedder, a, b):  # pragma: no cover - never reached: the pipeline is refused or not run
        raise AssertionError


class WithTorchModel(MeanColourEmbedder):
    name = "test.withgrad"

    def torch_model(self) -> TorchModel:  # pragma: no cover - only its presence matters
        raise AssertionError


class CapabilityPlugin:
    @facekit.hookimpl
    def register_explainers(self, register):
        register(NeedsGradients)

    @facekit.hookimpl
    def register_embedders(self, register):
        register(WithTorchModel)


@pytest.fixture
def plugins(core_only, facekit_plugin):
    facekit_plugin(FakePlugin(), name="toyplugin")
    facekit_plugin(CapabilityPlugin(), name="capabilities")


def _yaml(embedder: str) -> str:
    return TOY_YAML.replace("embedder: test.meancolour", f"embedder: {embedder}\nexplainer: test.needsgrad")


def test_an_embedder_without_gradients_is_refused_at_load(plugins):
    with pytest.raises(ConfigError, match="needs a PyTorch embedder"):
        Pipeline.from_yaml(_yaml("test.meancolour"))


def test_adapted_answers_as_the_model_underneath(plugins):
    wrapped_plain = "{name: adapted, params: {embedder: test.meancolour, flip: false}}"
    with pytest.raises(ConfigError, match="needs a PyTorch embedder"):
        Pipeline.from_yaml(_yaml(wrapped_plain))
    wrapped_torch = "{name: adapted, params: {embedder: test.withgrad, flip: false}}"
    pipeline = Pipeline.from_yaml(_yaml(wrapped_torch))
    assert pipeline.embedder.gives_gradients() and pipeline.components["explainer"].name == "test.needsgrad"


def test_an_explainer_asked_for_later_is_checked_too(plugins):
    pipeline = Pipeline.from_yaml(TOY_YAML.replace("embedder: test.meancolour", "embedder: {name: adapted, params: {embedder: test.meancolour}}"))
    image = np.full((64, 64, 3), 90, dtype=np.uint8)
    with pytest.raises(ConfigError, match="needs a PyTorch embedder"):
        pipeline.explain(image, image, explainer="test.needsgrad")

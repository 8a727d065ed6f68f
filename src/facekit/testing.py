"""Test helpers for facekit and for plugin authors.

Fixtures (available once ``facekit`` is installed, through its ``pytest11`` entry point):

* ``facekit_plugin``: ``facekit_plugin(obj)`` registers a plugin (module, class or object
  with hook functions) for one test and removes it afterwards.

Import checks: :func:`modules_imported_by` runs code in a fresh interpreter and says
which modules it loaded, to check that a plugin imports its heavy libraries lazily.

Contract tests: subclass :class:`DetectorContract`, :class:`AlignerContract`,
:class:`EmbedderContract`, :class:`ExplainerContract` or :class:`AggregatorContract` in
your test module and provide a ``component`` fixture (and ``face_image``, an RGB array
with one clear face, where the contract needs a photo). Every component of that kind
must pass them.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any, Callable, Iterator

import numpy as np
import pytest

from facekit.components import Aggregator, Aligner, Detector, Embedder, Explainer
from facekit.plugins import get_plugin_manager
from facekit.types import AlignedFace, Face, Heatmap


@pytest.fixture
def facekit_plugin() -> Iterator[Callable[..., str]]:
    """Register plugins for the duration of one test."""
    manager = get_plugin_manager()
    names: list[str] = []

    def register(plugin: Any, name: str | None = None) -> str:
        registered = manager.register(plugin, name=name)
        names.append(registered)
        return registered

    yield register
    for name in reversed(names):
        manager.unregister(name)


def modules_imported_by(code: str) -> set[str]:
    """Every module loaded after running ``code`` in a fresh Python interpreter (this one's
    executable and environment); the code's own failures raise ``CalledProcessError``."""
    listing = "\nimport sys as _sys, json as _json; print(_json.dumps(sorted(_sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code + listing], capture_output=True, text=True, check=True)
    return set(json.loads(done.stdout.strip().splitlines()[-1]))


def _check_params_forbid_unknown(component: Any) -> None:
    with pytest.raises(Exception):
        type(component).Params(this_parameter_does_not_exist=1)


class _Contract:
    kind: type

    def test_is_a_registered_kind(self, component: Any) -> None:
        assert isinstance(component, self.kind)
        assert component.name, "components need a short registered name"
        assert type(component).description, "give the component a one-line description"

    def test_params_forbid_unknown_keys(self, component: Any) -> None:
        _check_params_forbid_unknown(component)

    def test_warm_up_is_idempotent(self, component: Any) -> None:
        component.warm_up()
        component.warm_up()


class DetectorContract(_Contract):
    kind = Detector

    def test_finds_a_face(self, component: Detector, face_image: np.ndarray) -> None:
        faces = component.detect(face_image)
        assert faces, "no face found in the contract's face image"
        height, width = face_image.shape[:2]
        for face in faces:
            assert isinstance(face, Face)
            x0, y0, x1, y1 = face.box
            assert x1 > x0 and y1 > y0
            assert -width * 0.5 <= x0 < width and -height * 0.5 <= y0 < height
            scheme = component.landmark_scheme()
            if scheme is not None:
                assert face.landmarks is not None and face.landmarks.scheme == scheme

    def test_blank_image_gives_no_face(self, component: Detector) -> None:
        if component.name == "whole_image":
            pytest.skip("whole_image reports the frame by design")
        assert component.detect(np.full((200, 200, 3), 127, np.uint8)) == []


class AlignerContract(_Contract):
    kind = Aligner

    @pytest.fixture
    def face(self, face_image: np.ndarray, detector: Detector) -> Face:
        return detector.detect(face_image)[0]

    def test_chip_shape_and_transform(self, component: Aligner, face_image: np.ndarray, face: Face) -> None:
        aligned = component.align(face_image, face)
        assert isinstance(aligned, AlignedFace)
        size = component.chip_size
        assert aligned.chip.shape == (size, size, 3) and aligned.chip.dtype == np.uint8
        assert np.asarray(aligned.transform).shape == (2, 3)
        # the chip centre must map back inside the detected box (grown by half its size)
        cx, cy = aligned.to_source(np.array([[size / 2, size / 2]]))[0]
        x0, y0, x1, y1 = face.box
        mx, my = (x1 - x0) / 2, (y1 - y0) / 2
        assert x0 - mx <= cx <= x1 + mx and y0 - my <= cy <= y1 + my


class EmbedderContract(_Contract):
    kind = Embedder

    @pytest.fixture
    def chips(self, component: Embedder) -> np.ndarray:
        size = component.input_size or 112
        rng = np.random.default_rng(0)
        return rng.integers(0, 256, size=(3, size, size, 3), dtype=np.uint8)

    def test_declares_metric_and_threshold(self, component: Embedder) -> None:
        assert component.metric in ("euclidean", "cosine")
        assert np.isfinite(component.threshold)

    def test_batch_first(self, component: Embedder, chips: np.ndarray) -> None:
        out = np.asarray(component.embed(chips))
        assert out.ndim == 2 and out.shape[0] == len(chips)
        if component.dim:
            assert out.shape[1] == component.dim
        assert np.isfinite(out).all()

    def test_batch_equals_singles(self, component: Embedder, chips: np.ndarray) -> None:
        batch = np.asarray(component.embed(chips))
        single = np.concatenate([np.asarray(component.embed(chips[i : i + 1])) for i in range(len(chips))])
        np.testing.assert_allclose(batch, single, atol=1e-4)


class ExplainerContract(_Contract):
    kind = Explainer

    def test_heatmaps_on_chips(self, component: Explainer, embedder: Embedder, aligned_pair: tuple[AlignedFace, AlignedFace]) -> None:
        a, b = aligned_pair
        maps = component.explain(embedder, a, b)
        assert len(maps) == 2
        for heatmap, face in zip(maps, (a, b)):
            assert isinstance(heatmap, Heatmap)
            assert heatmap.values.shape == face.chip.shape[:2]
            assert heatmap.values.min() >= 0 and heatmap.values.max() <= 1 + 1e-6


class AggregatorContract(_Contract):
    kind = Aggregator

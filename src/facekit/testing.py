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
must pass them. A failure names the contract and says what was expected, e.g.
"EmbedderContract: embed() of 3 chips must give 3 rows of `dim` = 5 values; got shape
(3, 1024)".
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any, Callable, Iterator

import numpy as np
import pytest
from pydantic import ValidationError

from facekit.components import Aggregator, Aligner, Detector, Embedder, Explainer
from facekit.plugins import get_plugin_manager
from facekit.scoring.metric import METRICS
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


def _broken(contract: str, expected: str, got: str) -> str:
    """A contract failure message: which contract, what it expects, what the component did."""
    return f"{contract}: {expected}; got {got}"


def _check_params_forbid_unknown(component: Any) -> None:
    expected = ("unknown parameters must be refused with a pydantic ValidationError "
                "(a pydantic model with model_config = ConfigDict(extra='forbid'))")
    try:
        type(component).Params(this_parameter_does_not_exist=1)
    except ValidationError:
        return
    except Exception as exc:
        pytest.fail(_broken(f"{type(component).__name__}.Params", expected, f"{type(exc).__name__}: {exc}"))
    pytest.fail(_broken(f"{type(component).__name__}.Params", expected, "it accepted one"))


class _Contract:
    kind: type

    def test_is_a_registered_kind(self, component: Any) -> None:
        contract = type(self).__name__
        assert isinstance(component, self.kind), _broken(
            contract, f"the component must subclass facekit.components.{self.kind.__name__}",
            f"a {type(component).__mro__[1:]!r}")
        assert component.name, _broken(contract, "a short registered `name`, e.g. 'myplugin.detector'", "''")
        assert type(component).description, _broken(contract, "a one-line `description`", "none")

    def test_params_forbid_unknown_keys(self, component: Any) -> None:
        _check_params_forbid_unknown(component)

    def test_warm_up_is_idempotent(self, component: Any) -> None:
        component.warm_up()
        component.warm_up()


class DetectorContract(_Contract):
    kind = Detector

    def test_finds_a_face(self, component: Detector, face_image: np.ndarray) -> None:
        faces = component.detect(face_image)
        contract = "DetectorContract"
        assert faces, _broken(contract, "detect() finds the face in the `face_image` fixture", "no face")
        height, width = face_image.shape[:2]
        for face in faces:
            assert isinstance(face, Face), _broken(contract, "detect() returns facekit.types.Face objects",
                                                   type(face).__name__)
            x0, y0, x1, y1 = face.box
            assert x1 > x0 and y1 > y0, _broken(contract, "a box (x0, y0, x1, y1) with x1 > x0 and y1 > y0",
                                                f"{face.box}")
            assert -width * 0.5 <= x0 < width and -height * 0.5 <= y0 < height, _broken(
                contract, f"a box that starts inside the {width}x{height} image (in pixels, not fractions)",
                f"{face.box}")
            scheme = component.landmark_scheme()
            if scheme is not None:
                got = None if face.landmarks is None else face.landmarks.scheme
                assert got == scheme, _broken(
                    contract, f"landmarks in the scheme landmark_scheme() declares ({scheme!r})", repr(got))

    def test_blank_image_gives_no_face(self, component: Detector) -> None:
        if not component.finds_faces:
            pytest.skip(f"{component.name} does not look for faces (finds_faces = False): "
                        "it returns a face whatever the image holds")
        found = component.detect(np.full((200, 200, 3), 127, np.uint8))
        assert found == [], _broken("DetectorContract", "no face in a blank grey image", f"{len(found)} face(s)")


class AlignerContract(_Contract):
    kind = Aligner

    @pytest.fixture
    def face(self, face_image: np.ndarray, detector: Detector) -> Face:
        return detector.detect(face_image)[0]

    def test_chip_shape_and_transform(self, component: Aligner, face_image: np.ndarray, face: Face) -> None:
        aligned = component.align(face_image, face)
        contract = "AlignerContract"
        assert isinstance(aligned, AlignedFace), _broken(contract, "align() returns a facekit.types.AlignedFace",
                                                         type(aligned).__name__)
        size = component.chip_size
        assert aligned.chip.shape == (size, size, 3) and aligned.chip.dtype == np.uint8, _broken(
            contract, f"a ({size}, {size}, 3) uint8 chip (chip_size = {size})",
            f"{aligned.chip.shape} {aligned.chip.dtype}")
        assert np.asarray(aligned.transform).shape == (2, 3), _broken(
            contract, "a 2x3 affine `transform` from chip to image pixels", f"shape {np.asarray(aligned.transform).shape}")
        # the chip centre must map back inside the detected box (grown by half its size)
        cx, cy = aligned.to_source(np.array([[size / 2, size / 2]]))[0]
        x0, y0, x1, y1 = face.box
        mx, my = (x1 - x0) / 2, (y1 - y0) / 2
        assert x0 - mx <= cx <= x1 + mx and y0 - my <= cy <= y1 + my, _broken(
            contract, f"`transform` maps the chip's centre into the face box {tuple(round(v) for v in face.box)}",
            f"({cx:.0f}, {cy:.0f}): is the transform chip -> image, not image -> chip?")


class EmbedderContract(_Contract):
    kind = Embedder

    @pytest.fixture
    def chips(self, component: Embedder) -> np.ndarray:
        size = component.input_size or 112
        rng = np.random.default_rng(0)
        return rng.integers(0, 256, size=(3, size, size, 3), dtype=np.uint8)

    def test_declares_metric_and_threshold(self, component: Embedder) -> None:
        contract = "EmbedderContract"
        assert component.metric in METRICS, _broken(
            contract, f"`metric` {' or '.join(map(repr, METRICS))}", repr(component.metric))
        assert np.isfinite(component.threshold), _broken(contract, "a finite `threshold`", repr(component.threshold))

    def test_batch_first(self, component: Embedder, chips: np.ndarray) -> None:
        out = np.asarray(component.embed(chips))
        dim = f"`dim` = {component.dim}" if component.dim else "the same number of"
        expected = f"embed() of {len(chips)} chips gives {len(chips)} rows of {dim} values"
        assert out.ndim == 2 and out.shape[0] == len(chips), _broken("EmbedderContract", expected, f"shape {out.shape}")
        if component.dim:
            assert out.shape[1] == component.dim, _broken("EmbedderContract", expected, f"shape {out.shape}")
        assert np.isfinite(out).all(), _broken("EmbedderContract", "finite values", "NaN or infinity")

    def test_batch_equals_singles(self, component: Embedder, chips: np.ndarray) -> None:
        batch = np.asarray(component.embed(chips))
        single = np.concatenate([np.asarray(component.embed(chips[i : i + 1])) for i in range(len(chips))])
        worst = float(np.max(np.abs(batch - single))) if batch.shape == single.shape else float("inf")
        assert worst <= 1e-4, _broken(
            "EmbedderContract", "a chip's vector does not depend on the batch it is in (within 1e-4)",
            f"a largest difference of {worst:.3g} between batch and one-by-one" if np.isfinite(worst)
            else f"shapes {batch.shape} and {single.shape}")


class ExplainerContract(_Contract):
    kind = Explainer

    def test_heatmaps_on_chips(self, component: Explainer, embedder: Embedder, aligned_pair: tuple[AlignedFace, AlignedFace]) -> None:
        a, b = aligned_pair
        maps = component.explain(embedder, a, b)
        contract = "ExplainerContract"
        assert len(maps) == 2, _broken(contract, "explain() returns two heatmaps, one per face", f"{len(maps)}")
        for heatmap, face in zip(maps, (a, b)):
            assert isinstance(heatmap, Heatmap), _broken(contract, "facekit.types.Heatmap objects",
                                                         type(heatmap).__name__)
            assert heatmap.values.shape == face.chip.shape[:2], _broken(
                contract, f"heatmap values the chip's size {face.chip.shape[:2]}", f"{heatmap.values.shape}")
            low, high = float(heatmap.values.min()), float(heatmap.values.max())
            assert low >= 0 and high <= 1 + 1e-6, _broken(contract, "values in [0, 1]", f"[{low:.3g}, {high:.3g}]")


class AggregatorContract(_Contract):
    kind = Aggregator

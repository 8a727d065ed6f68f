"""The plugin machinery: registration, duplicates, broken plugins, env switches."""

from __future__ import annotations

import sys
import types

import pytest

import facekit
from facekit.errors import ConfigError, PluginError
from facekit.plugins import PluginManager, get_plugin_manager, get_registry, reset_plugin_manager

from .fakes import CenterBoxDetector, FakePlugin


def test_builtin_plugin_registers_through_hooks(core_only):
    registry = get_registry()
    assert "whole_image" in registry.names("detector")
    assert registry.components["detector"]["whole_image"].plugin == "facekit.builtin"
    assert "default" in registry.pipelines


def test_registry_records_which_plugin_registered_what(core_only, facekit_plugin):
    facekit_plugin(FakePlugin(), name="toyplugin")
    registry = get_registry()
    reg = registry.components["detector"]["test.center"]
    assert reg.plugin == "toyplugin" and reg.cls is CenterBoxDetector
    assert {r.name for r in registry.plugins["toyplugin"].components} >= {"test.center", "test.resize"}


PROBE_TESTS = """
import facekit
from facekit.components import Detector
from facekit.plugins import get_registry


class ProbeDetector(Detector):
    name = "probe.detector"
    description = "registered by the first test only"


class Probe:
    @facekit.hookimpl
    def register_detectors(self, register):
        register(ProbeDetector)


def test_registers(facekit_plugin):
    facekit_plugin(Probe(), name="probe")
    assert "probe.detector" in get_registry().names("detector")


def test_the_next_test_does_not_see_it():
    assert "probe" not in get_registry().plugins
    assert "probe.detector" not in get_registry().names("detector")
"""


def test_plugin_fixture_unregisters_after_the_test(core_only, pytester):
    # Two tests in one pytest run share the process-wide plugin manager (nothing resets it
    # between them), so the second sees whatever the first's `facekit_plugin` left behind.
    manager = get_plugin_manager()
    pytester.makepyfile(test_probe=PROBE_TESTS)
    result = pytester.runpytest_inprocess("-p", "no:randomly", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)
    assert get_plugin_manager() is manager, "the two tests used the manager this test set up"
    assert manager.pm.get_plugin("probe") is None


CONTRACT_TESTS = """
import numpy as np
import pytest

from facekit.builtin.whole_image import WholeImageDetector
from facekit.testing import DetectorContract


class AlwaysAFace(WholeImageDetector):
    name = "probe.always"
    finds_faces = True  # claims to look for faces, yet reports one on any image


class TestWholeImage(DetectorContract):
    @pytest.fixture
    def component(self):
        return WholeImageDetector()

    @pytest.fixture
    def face_image(self):
        return np.zeros((60, 50, 3), np.uint8)


class TestAlwaysAFace(TestWholeImage):
    @pytest.fixture
    def component(self):
        return AlwaysAFace()
"""


def test_detector_contract_checks_blank_images_for_detectors_that_find_faces(core_only, pytester):
    # The blank-image check follows `Detector.finds_faces`, not a detector's name.
    pytester.makepyfile(test_contract=CONTRACT_TESTS)
    result = pytester.runpytest_inprocess("-p", "no:randomly", "-p", "no:cacheprovider", "-rs")
    result.assert_outcomes(passed=8, skipped=1, failed=1)
    result.stdout.fnmatch_lines(["*TestAlwaysAFace.test_blank_image_gives_no_face*",
                                 "E*DetectorContract: no face in a blank grey image; got 1 face(s)"])
    result.stdout.fnmatch_lines(["SKIPPED*whole_image does not look for faces (finds_faces = False)*"])


def test_duplicate_names_are_refused_with_both_plugins_named(core_only, facekit_plugin):
    class Again:
        @facekit.hookimpl
        def register_detectors(self, register):
            register(CenterBoxDetector)

    facekit_plugin(FakePlugin(), name="first")
    facekit_plugin(Again(), name="second")
    with pytest.raises(PluginError) as info:
        get_registry()
    message = str(info.value)
    assert "test.center" in message and "first" in message and "second" in message


def test_registering_a_non_component_is_refused(core_only, facekit_plugin):
    class Bad:
        @facekit.hookimpl
        def register_embedders(self, register):
            register(dict)

    facekit_plugin(Bad(), name="bad")
    with pytest.raises(PluginError, match="not a Embedder subclass"):
        get_registry()


def _fake_entry_point(monkeypatch, name, target):
    """Make importlib.metadata report one extra entry point in the facekit group."""
    from importlib import metadata

    ep = metadata.EntryPoint(name=name, value=target, group="facekit")
    real = metadata.entry_points

    def entry_points(**kwargs):
        found = real(**kwargs)
        if kwargs.get("group") == "facekit":
            return metadata.EntryPoints(list(found) + [ep])
        return found

    monkeypatch.setattr(metadata, "entry_points", entry_points)


def test_broken_plugin_is_reported_and_the_rest_keeps_working(monkeypatch):
    monkeypatch.delenv("FACEKIT_LOAD_PLUGINS", raising=False)
    monkeypatch.delenv("FACEKIT_STRICT_PLUGINS", raising=False)
    _fake_entry_point(monkeypatch, "brokenplugin", "facekit_no_such_module_xyz")
    with pytest.warns(UserWarning, match="brokenplugin"):
        manager = PluginManager()
    failure = next(f for f in manager.failures if f.name == "brokenplugin")
    assert "facekit_no_such_module_xyz" in failure.error
    assert "install" in failure.hint
    assert "whole_image" in manager.registry.names("detector")


def test_strict_mode_makes_a_broken_plugin_fatal(monkeypatch):
    monkeypatch.delenv("FACEKIT_LOAD_PLUGINS", raising=False)
    monkeypatch.setenv("FACEKIT_STRICT_PLUGINS", "1")
    _fake_entry_point(monkeypatch, "brokenplugin", "facekit_no_such_module_xyz")
    with pytest.raises(PluginError, match="brokenplugin"):
        PluginManager()


def test_env_variable_limits_which_plugins_load(monkeypatch):
    module = types.ModuleType("facekit_toy_ep")
    module.plugin = FakePlugin()
    monkeypatch.setitem(sys.modules, "facekit_toy_ep", module)
    _fake_entry_point(monkeypatch, "toy", "facekit_toy_ep:plugin")
    monkeypatch.setenv("FACEKIT_LOAD_PLUGINS", "toy")
    assert "test.center" in PluginManager().registry.names("detector")
    monkeypatch.setenv("FACEKIT_LOAD_PLUGINS", "somethingelse")
    assert "test.center" not in PluginManager().registry.names("detector")


def test_unknown_component_lists_choices_and_did_you_mean(core_only, facekit_plugin):
    facekit_plugin(FakePlugin())
    with pytest.raises(ConfigError) as info:
        get_registry().get("detector", "test.centre")
    assert "did you mean 'test.center'" in str(info.value)
    assert "whole_image" in str(info.value)


def teardown_module(module):
    reset_plugin_manager()

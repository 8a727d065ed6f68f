"""The plugin machinery: registration, duplicates, broken plugins, env switches."""

from __future__ import annotations

import sys
import types

import pytest

import facekit
from facekit.errors import ConfigError, PluginError
from facekit.plugins import PluginManager, get_registry, reset_plugin_manager

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


def test_plugin_fixture_unregisters_after_the_test(core_only):
    assert "test.center" not in get_registry().names("detector")


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

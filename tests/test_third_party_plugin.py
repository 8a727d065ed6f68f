"""A throwaway plugin installed from a temporary directory, found through the entry point."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

PLUGIN_CODE = '''
import numpy as np
import facekit
from facekit.components import Embedder, Params


class ConstantEmbedder(Embedder):
    name = "throwaway.constant"
    description = "always the same vector"
    metric = "cosine"
    default_threshold = 0.5
    input_size = 150
    dim = 3

    class Params(Params):
        value: float = 1.0

    def embed(self, chips):
        return np.full((len(chips), 3), self.params.value, dtype=np.float32)


@facekit.hookimpl
def register_embedders(register):
    register(ConstantEmbedder)
'''


@pytest.fixture(scope="module")
def installed_plugin(tmp_path_factory) -> Path:
    src = tmp_path_factory.mktemp("throwaway-src")
    (src / "facekit_throwaway.py").write_text(PLUGIN_CODE)
    (src / "pyproject.toml").write_text(textwrap.dedent('''
        [build-system]
        requires = ["setuptools"]
        build-backend = "setuptools.build_meta"
        [project]
        name = "facekit-throwaway"
        version = "0.0.1"
        [project.entry-points.facekit]
        throwaway = "facekit_throwaway"
        [tool.setuptools]
        py-modules = ["facekit_throwaway"]
    '''))
    target = tmp_path_factory.mktemp("throwaway-site")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--target", str(target), str(src)],
        check=True,
    )
    return target


def _run(site: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(site))
    env.pop("FACEKIT_LOAD_PLUGINS", None)
    return subprocess.run([sys.executable, "-m", "facekit", *args], capture_output=True, text=True, env=env)


def test_installed_plugin_shows_in_facekit_plugins(installed_plugin):
    result = _run(installed_plugin, "plugins", "--json")
    assert result.returncode == 0, result.stderr
    plugins = {p["name"]: p for p in json.loads(result.stdout)["plugins"]}
    assert plugins["throwaway"]["version"] == "0.0.1"
    assert {"kind": "embedder", "name": "throwaway.constant"} in plugins["throwaway"]["components"]


def test_installed_plugin_is_usable_from_yaml(installed_plugin, tmp_path):
    yaml_path = tmp_path / "p.yaml"
    yaml_path.write_text(
        "name: throwaway\ndetector: whole_image\n"
        "aligner: {name: dlib.chip5, params: {size: 150}}\n"
        "embedder: {name: throwaway.constant, params: {value: 2.0}}\n"
    )
    result = _run(installed_plugin, "check", str(yaml_path))
    assert result.returncode == 0, result.stderr
    assert "embedder=throwaway.constant" in result.stdout
    # a misspelled parameter of the plugin's component is caught with its YAML path
    yaml_path.write_text(yaml_path.read_text().replace("value:", "valeu:"))
    bad = _run(installed_plugin, "check", str(yaml_path))
    assert bad.returncode == 2 and "embedder.params.valeu" in bad.stderr


def test_env_switch_hides_the_plugin(installed_plugin):
    env = dict(os.environ, PYTHONPATH=str(installed_plugin), FACEKIT_LOAD_PLUGINS="")
    result = subprocess.run([sys.executable, "-m", "facekit", "list", "embedder"], capture_output=True, text=True, env=env)
    assert "throwaway.constant" not in result.stdout

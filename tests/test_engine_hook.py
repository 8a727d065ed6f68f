"""The ``register_engines`` hook: a plugin's engine is found by name by ``facekit embed --engine``.

The engine here is a fake (it aligns in this process, like the sequential engine) that
records how it was built and used: this tests the plugin machinery, not a backend.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import facekit
from facekit.cli import main
from facekit.engine import Engine, ImageFaces, align_one
from facekit.errors import ConfigError, PluginError
from facekit.plugins import get_registry

from .fakes import TOY_YAML, FakePlugin


class FakeEngine(Engine):
    name = "fake"
    built: list["FakeEngine"] = []

    def __init__(self, pipeline: Any, address: Optional[str] = None, *, progress: bool = False) -> None:
        super().__init__(pipeline)
        self.address, self.progress = address, progress
        self.mapped: list[Any] = []
        self.closed = False
        FakeEngine.built.append(self)

    def map_faces(self, items: Iterable[Any]) -> Iterator[ImageFaces]:
        for item in items:
            self.mapped.append(item)
            yield align_one(self.pipeline, item)

    def close(self) -> None:
        self.closed = True


class EnginePlugin:
    @facekit.hookimpl
    def register_engines(self, register):  # type: ignore[no-untyped-def]
        register(FakeEngine)


@pytest.fixture
def toy(core_only: None, facekit_plugin: Any, tmp_path: Path) -> Path:
    """The toy components and the fake engine registered; the toy pipeline's YAML file."""
    facekit_plugin(FakePlugin(), name="toyplugin")
    facekit_plugin(EnginePlugin(), name="engineplugin")
    FakeEngine.built.clear()
    path = tmp_path / "toy.yaml"
    path.write_text(TOY_YAML + "workers: 1\n", encoding="utf-8")
    return path


def _photos(folder: Path, count: int) -> list[str]:
    rng = np.random.default_rng(0)
    paths = []
    for i in range(count):
        path = folder / f"photo{i}.png"
        Image.fromarray(rng.integers(0, 256, (80, 60, 3), dtype=np.uint8)).save(path)
        paths.append(str(path))
    return paths


def test_embed_engine_name_builds_the_registered_engine(toy: Path, tmp_path: Path) -> None:
    from facekit.collections import parquet

    photos = _photos(tmp_path, 3)
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["embed", *photos, "-p", str(toy), "--engine", "fake",
                                       "--ray-address", "head:6379", "--no-progress", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "3 face(s) from 3 image(s)" in result.output
    [engine] = FakeEngine.built
    assert (engine.address, engine.progress) == ("head:6379", False), "the documented constructor contract"
    assert sorted(engine.mapped) == photos, "the engine did the per-image work"
    assert engine.closed
    rows = [row for batch in parquet.read_batches(out) for row in batch.to_pylist()]
    assert sorted(Path(r["source"]).name for r in rows) == [Path(p).name for p in photos]


def test_plugin_engines_need_a_folder_output(toy: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["embed", *_photos(tmp_path, 1), "-p", str(toy), "--engine", "fake",
                                       "-o", str(tmp_path / "v.npz")])
    assert result.exit_code != 0 and "--engine fake writes a Parquet folder" in result.output
    assert not FakeEngine.built


def test_facekit_plugins_lists_engines(toy: Path) -> None:
    result = CliRunner().invoke(main, ["plugins"])
    assert result.exit_code == 0, result.output
    listed = result.output.split("engineplugin", 1)[1].splitlines()
    assert "  engine      fake" in listed
    data = json.loads(CliRunner().invoke(main, ["plugins", "--json"]).output)
    by_name = {p["name"]: p for p in data["plugins"]}
    assert by_name["engineplugin"]["engines"] == ["fake"] and by_name["toyplugin"]["engines"] == []
    assert get_registry().engines["fake"].plugin == "engineplugin"


def test_unknown_engines_are_said_like_unknown_components(toy: Path, tmp_path: Path) -> None:
    registry = get_registry()
    assert registry.get_engine("local") is None and registry.get_engine("fake") is FakeEngine
    with pytest.raises(ConfigError, match=r"unknown engine 'fkae'; did you mean 'fake'\? Choices: local, fake\."):
        registry.get_engine("fkae")
    photos = _photos(tmp_path, 1)
    result = CliRunner().invoke(main, ["embed", *photos, "-p", str(toy), "--engine", "ray", "-o", str(tmp_path / "o")])
    assert result.exit_code == ConfigError.exit_code
    assert "unknown engine 'ray'" in result.output and "facekit-ray plugin" in result.output
    assert "pip install -e plugins/facekit-ray" in result.output and "Choices: local, fake." in result.output


def test_engine_registrations_are_checked(core_only: None, facekit_plugin: Any) -> None:
    class Twice:
        @facekit.hookimpl
        def register_engines(self, register):  # type: ignore[no-untyped-def]
            register(FakeEngine)

    facekit_plugin(EnginePlugin(), name="first")
    facekit_plugin(Twice(), name="second")
    with pytest.raises(PluginError, match=r"the engine 'fake', but plugin 'first' already registered"):
        get_registry()


@pytest.mark.parametrize("cls, message", [
    (dict, "not a facekit.engine.Engine subclass"),
    (type("Nameless", (Engine,), {}), "without a `name`"),
    (type("Local", (Engine,), {"name": "local"}), "'local' is facekit's name for this machine's engines"),
])
def test_bad_engine_registrations_are_refused(core_only: None, facekit_plugin: Any, cls: type, message: str) -> None:
    class Bad:
        @facekit.hookimpl
        def register_engines(self, register):  # type: ignore[no-untyped-def]
            register(cls)

    facekit_plugin(Bad(), name="bad")
    with pytest.raises(PluginError, match=message):
        get_registry()

"""YAML pipelines: validation before anything loads, clear errors, round-trip."""

from __future__ import annotations

import numpy as np
import pytest

from facekit import Pipeline
from facekit.errors import ConfigError, MultipleFacesError, NoFaceError

from .fakes import TOY_YAML, FakePlugin


@pytest.fixture
def toy(core_only, facekit_plugin):
    facekit_plugin(FakePlugin(), name="toyplugin")


def test_yaml_round_trip(toy):
    pipeline = Pipeline.from_yaml(TOY_YAML)
    again = Pipeline.from_yaml(pipeline.to_yaml())
    assert again.to_dict() == pipeline.to_dict()
    assert again.detector.params.fraction == 0.6
    assert again.embedder.name == "test.meancolour"


def test_yaml_from_file(toy, tmp_path):
    path = tmp_path / "toy.yaml"
    path.write_text(TOY_YAML)
    assert Pipeline.from_yaml(path).name == "toy"
    assert Pipeline.load(str(path)).name == "toy"


@pytest.mark.parametrize(
    "yaml_text, expected",
    [
        (TOY_YAML.replace("test.meancolour", "test.meancolor"), ["embedder.name", "did you mean 'test.meancolour'", "Choices"]),
        (TOY_YAML.replace("fraction: 0.6", "fracton: 0.6"), ["detector.params.fracton", "unknown key", "did you mean 'fraction'"]),
        (TOY_YAML.replace("fraction: 0.6", "fraction: lots"), ["detector.params.fraction", "'lots'"]),
        (TOY_YAML.replace("fraction: 0.6", "fraction: 3"), ["detector.params.fraction", "less than or equal to 1"]),
        (TOY_YAML + "multi_face: biggest\n", ["multi_face", "'biggest'"]),
        (TOY_YAML + "detectr: {name: x}\n", ["detectr", "unknown key", "did you mean 'detector'"]),
        (TOY_YAML.replace("aligner: {name: test.resize, params: {size: 32}}\n", ""), ["aligner", "Field required"]),
        ("name: x\ndetector: !!python/object/apply:os.system ['echo hi']\n", ["not allowed"]),
        ("- just\n- a list\n", ["expected a mapping"]),
        ("detector: {name: [unclosed\n", ["invalid YAML"]),
    ],
)
def test_bad_yaml_gives_one_clear_message(toy, yaml_text, expected):
    with pytest.raises(ConfigError) as info:
        Pipeline.from_yaml(yaml_text)
    for fragment in expected:
        assert fragment in str(info.value)


def test_python_tags_never_execute(toy, tmp_path):
    marker = tmp_path / "pwned"
    with pytest.raises(ConfigError):
        Pipeline.from_yaml(f"detector: !!python/object/apply:os.system ['touch {marker}']\n")
    assert not marker.exists()


def test_missing_file_is_a_config_error(toy, tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        Pipeline.from_yaml(tmp_path / "nope.yaml")


def test_unknown_bundled_name(toy):
    with pytest.raises(ConfigError, match="did you mean 'default'"):
        Pipeline.load("defualt")


def test_aligner_needing_landmarks_after_a_box_only_detector_fails_at_load(toy):
    text = TOY_YAML.replace("test.center", "test.boxonly").replace("test.resize", "test.needs5")
    with pytest.raises(ConfigError, match="needs landmarks in scheme 'dlib5'.*gives no landmarks"):
        Pipeline.from_yaml(text)
    # the same aligner after a detector that gives dlib5 landmarks is fine
    Pipeline.from_yaml(TOY_YAML.replace("test.resize", "test.needs5"))


def test_chip_size_must_fit_the_embedder(toy):
    with pytest.raises(ConfigError, match="expects 32x32 chips.*set `size: 32`"):
        Pipeline.from_yaml(TOY_YAML.replace("size: 32", "size: 48"))


def test_uninstalled_plugin_component_gets_a_hint(toy):
    with pytest.raises(ConfigError, match="is it installed"):
        Pipeline.from_yaml(TOY_YAML.replace("test.meancolour", "someplugin.model"))


def _two_blob_image():
    image = np.zeros((100, 200, 3), np.uint8)
    image[:, :100] = (200, 10, 10)
    image[:, 100:] = (10, 10, 200)
    return image


def test_compare_and_embed_through_the_pipeline(toy):
    pipeline = Pipeline.from_yaml(TOY_YAML)
    red = np.full((64, 64, 3), (220, 20, 20), np.uint8)
    red2 = red.copy()
    red2[0, 0] = 0  # outside the box: no effect
    blue = np.full((64, 64, 3), (20, 20, 220), np.uint8)
    same = pipeline.compare(red, red2)
    diff = pipeline.compare(red, blue)
    assert same.same and same.score == pytest.approx(0.0, abs=1e-6)
    assert not diff.same and diff.score > 0.5
    assert same.percentage > 90 > diff.percentage
    batch = pipeline.embed([red, blue, red2])
    assert len(batch) == 3 and batch[0].vector.shape == (12,)
    assert '"verdict": "same person"' in same.to_json()
    assert "same person" in str(same) and "<table>" in same._repr_html_()


def test_bad_images_are_skipped_and_listed(toy, tmp_path):
    pipeline = Pipeline.from_yaml(TOY_YAML)
    bad = tmp_path / "bad.jpg"
    bad.write_text("not an image")
    good = np.full((64, 64, 3), 100, np.uint8)
    batch = pipeline.embed([good, str(bad), good], on_error="skip")
    assert len(batch) == 2
    assert batch.failures and batch.failures[0][0] == str(bad)


def test_multi_face_policies(toy):
    from .fakes import CenterBoxDetector

    pipeline = Pipeline.from_yaml(TOY_YAML)
    faces = CenterBoxDetector(fraction=0.6).detect(np.zeros((64, 64, 3), np.uint8))
    small = faces[0].__class__((1, 1, 10, 10), 1.0, None, "x")
    assert pipeline.select(faces + [small], (64, 64, 3))[0] is faces[0]
    for policy, check in [("all", lambda r: len(r) == 2), ("central", lambda r: r[0] is faces[0])]:
        p = Pipeline.from_yaml(TOY_YAML + f"multi_face: {policy}\n")
        assert check(p.select(faces + [small], (64, 64, 3)))
    strict = Pipeline.from_yaml(TOY_YAML + "multi_face: error\n")
    with pytest.raises(MultipleFacesError):
        strict.select(faces + [small], (64, 64, 3))
    with pytest.raises(NoFaceError):
        strict.select([], (64, 64, 3))


def test_threshold_override(toy):
    pipeline = Pipeline.from_yaml(TOY_YAML + "scoring: {threshold: 0.9}\n")
    assert pipeline.threshold == 0.9


def test_load_returns_a_pipeline_it_is_given(toy) -> None:  # type: ignore[no-untyped-def]
    """Functions that take "a pipeline name, path or Pipeline" call Pipeline.load on it."""
    built = Pipeline.from_yaml(TOY_YAML)
    assert Pipeline.load(built) is built

"""Population audits, the East Asian profile, and the look-alike actors (real photos, real models).

The session embeds the 389 photos of eastasian-lfw once (through the profile's fitting
script, into a temporary cache) and the two actors' 22 crops; everything else reuses
those descriptors. The actors' crops are test data only: nothing is fitted on them.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("facekit_dlib")
pytest.importorskip("facekit_torch")

from facekit import Pipeline  # noqa: E402
from facekit.builtin.adapted import AdaptedEmbedder, fit_nap, remove_directions  # noqa: E402
from facekit.scoring.calibration import Calibration  # noqa: E402
from facekit.errors import ConfigError  # noqa: E402
from facekit.studies.audit import audit_embeddings  # noqa: E402
from facekit.studies.lookalikes import compare_groups  # noqa: E402
from facekit.studies.populations import IdentitySet, _triangle_pair, identity_pairs, load_populations  # noqa: E402
from facekit.testing import EmbedderContract  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
SHIPPED = REPO_ROOT / "src" / "facekit" / "data" / "calibration-eastasian.json"
ACTORS = "similarity_of_two_persons"


def _fit_script():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("fit_eastasian_profile", REPO_ROOT / "scripts" / "fit_eastasian_profile.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules[spec.name] = module  # type: ignore[union-attr]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


@pytest.fixture(scope="module", autouse=True)
def all_plugins():  # type: ignore[no-untyped-def]
    from facekit.plugins import reset_plugin_manager

    reset_plugin_manager()  # a fresh registry with every installed plugin, whatever ran before
    yield
    reset_plugin_manager()


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("embeddings")


@pytest.fixture(scope="module")
def refit(faces_dir: Path, cache: Path):  # type: ignore[no-untyped-def]
    """The profile as the fitting script makes it, on this session's descriptors."""
    return _fit_script().fit(faces_dir, cache)


@pytest.fixture(scope="module")
def eastasian() -> Pipeline:
    return Pipeline.load("eastasian")


@pytest.fixture(scope="module")
def default() -> Pipeline:
    return Pipeline.load("default")


def _actor_vectors(pipeline: Pipeline, faces_dir: Path, cache: Path) -> tuple[np.ndarray, np.ndarray]:
    out = []
    for person in ("eguchi_yosuke", "matsumura_hokuto"):
        photos = sorted(str(p) for p in (faces_dir / ACTORS / person).glob("*.png"))
        batch = pipeline.embed(photos, cache=cache)
        assert not batch.failures and len(batch) == len(photos)
        out.append(np.stack([e.vector for e in batch]))
    return out[0], out[1]


@pytest.fixture(scope="module")
def actors_eastasian(eastasian: Pipeline, faces_dir: Path, cache: Path):  # type: ignore[no-untyped-def]
    a, b = _actor_vectors(eastasian, faces_dir, cache)
    return compare_groups(a, b, eastasian.embedder.metric, eastasian.threshold, names=("Eguchi", "Matsumura"),
                          profile=eastasian.calibration.name)


@pytest.fixture(scope="module")
def actors_default(default: Pipeline, faces_dir: Path, cache: Path):  # type: ignore[no-untyped-def]
    a, b = _actor_vectors(default, faces_dir, cache)
    return compare_groups(a, b, default.embedder.metric, default.threshold, names=("Eguchi", "Matsumura"))


# --------------------------------------------------------------------------- the shipped profile
def test_shipped_profile_is_what_the_script_fits(refit) -> None:  # type: ignore[no-untyped-def]
    calibration, cv, photos, failures = refit
    shipped = Calibration.load(SHIPPED)
    assert shipped.name == "eastasian" and shipped.metric == "euclidean"
    assert len(photos) == 389 and len(photos.people) == 47 and not failures
    assert abs(shipped.threshold - calibration.threshold) < 1e-4
    np.testing.assert_allclose(np.abs(shipped.extra["backend"]["directions"]),
                               np.abs(calibration.extra["backend"]["directions"]), atol=1e-4)
    assert shipped.extra["cross_validation"] == json.loads(json.dumps(cv.to_dict()))
    assert shipped.model == "dlib_face_recognition_resnet_model_v1+flip+nap1:eastasian"
    assert shipped.prior_same == 0.5


def test_profile_cross_validated_over_identities(refit) -> None:  # type: ignore[no-untyped-def]
    """On East Asian people it was not fitted on: FMR <= 1 % at FNMR <= 10 % (5 x 5-fold CV)."""
    _, cv, _, _ = refit
    assert cv.repeats == 5 and cv.folds == 5
    assert cv.impostor_pairs > 50_000 and cv.genuine_pairs > 10_000
    assert cv.fmr <= 0.010, cv.to_dict()
    assert cv.fnmr <= 0.10, cv.to_dict()


def test_generic_threshold_fails_east_asian_people(refit, cache: Path) -> None:  # type: ignore[no-untyped-def]
    """The measurement the profile answers: dlib's 0.6 on the same descriptors."""
    _, _, photos, _ = refit
    from facekit.studies.evaluation import embed_images

    vectors, _, _ = embed_images(_fit_script().input_pipeline(), photos.images, cache=cache)
    x = np.stack([vectors[p][0] for p in photos.images])
    result = audit_embeddings(x, photos.identities, "euclidean", 0.6, name="east-asian")
    assert 0.35 < result.fmr < 0.55  # the issue's 44 %
    assert result.threshold_at_target is not None and result.threshold_at_target < 0.5
    assert result.fnmr_at_target > result.fnmr


# --------------------------------------------------------------------------- the actors
def test_generic_pipeline_calls_the_actors_one_person(actors_default) -> None:  # type: ignore[no-untyped-def]
    assert actors_default.cross_same >= 100  # of 120: the problem the issue reports
    assert min(actors_default.own_same_rates) == 1.0


def test_profile_keeps_most_of_each_actors_own_pairs_same(actors_eastasian) -> None:  # type: ignore[no-untyped-def]
    eguchi, matsumura = actors_eastasian.own_same_rates
    assert eguchi >= 0.85 and matsumura >= 0.90, actors_eastasian.summary()  # measured 87 % and 97 %


@pytest.mark.xfail(strict=True, reason=(
    "the issue's target of 90 % for each actor's own pairs is missed by two pairs for Eguchi (39 of 45 = 87 %): "
    "his own pairs spread from 0.40 to 0.45, across the profile's threshold 0.424 and over the cross pairs. "
    "The profile fitted before the whole-image fallback was dropped (issue 8) reached 91 % by one pair"))
def test_issue_target_each_actors_own_pairs_ninety_percent(actors_eastasian) -> None:  # type: ignore[no-untyped-def]
    eguchi, matsumura = actors_eastasian.own_same_rates
    assert eguchi >= 0.90 and matsumura >= 0.90, actors_eastasian.summary()


def test_profile_separates_the_actors_far_better_than_generic(actors_eastasian, actors_default) -> None:  # type: ignore[no-untyped-def]
    assert actors_eastasian.cross_same <= 12, actors_eastasian.summary()  # 9 of 120 when measured; generic: 113
    assert actors_eastasian.cross_same * 8 < actors_default.cross_same


@pytest.mark.xfail(strict=True, reason=(
    "the issue's target of at most 2 of 120 cross pairs is not met: the actors' 9 closest cross pairs sit at "
    "0.405-0.422, just under the East Asian threshold 0.424, among each actor's own pairs: even a threshold chosen on the actors "
    "themselves leaves 9 cross pairs 'same' while keeping 90 % of each actor's own pairs, and no back-end fitted on "
    "eastasian-lfw alone reached both targets"))
def test_issue_target_at_most_two_actor_cross_pairs(actors_eastasian) -> None:  # type: ignore[no-untyped-def]
    assert actors_eastasian.cross_same <= 2


def test_person_level_every_photo_is_closest_to_its_own_actor(actors_eastasian, actors_default) -> None:  # type: ignore[no-untyped-def]
    for result in (actors_eastasian, actors_default):
        assert result.closer_to_own == (10, 12)


def test_comparisons_name_the_profile(eastasian: Pipeline, faces_dir: Path) -> None:
    a = faces_dir / ACTORS / "eguchi_yosuke" / "eguchi_image827.png_0_align_resize.png"
    b = faces_dir / ACTORS / "matsumura_hokuto" / "hokuto_image937.png_0_align_resize.png"
    comparison = eastasian.compare(a, b)
    assert comparison.profile == "eastasian" and comparison.pipeline == "eastasian"
    assert comparison.threshold == pytest.approx(Calibration.load(SHIPPED).threshold)
    assert comparison.model.endswith("+flip+nap1:eastasian")
    assert "eastasian" in str(comparison) and comparison.to_dict()["profile"] == "eastasian"
    assert 0.0 < comparison.probability < 1.0


def test_default_pipeline_is_untouched_by_the_profile(default: Pipeline) -> None:
    """Generic accuracy cannot drop when the profile is not selected: nothing of it is in use."""
    assert default.embedder.name == "dlib.resnet_onnx"
    assert default.threshold == 0.6
    assert default.calibration.name == "lfw-dev"
    assert "eastasian" not in default.to_yaml()


# --------------------------------------------------------------------------- the adapted embedder
@pytest.fixture(scope="module")
def adapted() -> AdaptedEmbedder:
    return AdaptedEmbedder(embedder="torch.dlib_resnet", profile="eastasian")


class TestAdaptedEmbedderContract(EmbedderContract):
    @pytest.fixture
    def component(self, adapted: AdaptedEmbedder) -> AdaptedEmbedder:
        return adapted


def test_flip_averages_the_mirror_image(eastasian: Pipeline, faces_dir: Path) -> None:
    chip = eastasian.align(faces_dir / ACTORS / "eguchi_yosuke" / "eguchi_image838.png_0_align_resize.png")[0].chip
    plain = AdaptedEmbedder(embedder="torch.dlib_resnet", flip=False)
    flipped = AdaptedEmbedder(embedder="torch.dlib_resnet", flip=True)
    flipped.inner = plain.inner  # one network in memory is enough
    inner = plain.inner.embed(np.stack([chip, chip[:, ::-1]]))
    np.testing.assert_allclose(plain.embed(chip[None])[0], inner[0], atol=1e-6)
    np.testing.assert_allclose(flipped.embed(chip[None])[0], inner.mean(axis=0), atol=1e-5)
    assert plain.model_name == "dlib_face_recognition_resnet_model_v1"
    assert flipped.model_name == "dlib_face_recognition_resnet_model_v1+flip"


def test_backend_removes_its_direction(eastasian: Pipeline) -> None:
    backend = eastasian.embedder.backend
    rng = np.random.default_rng(1)
    x = rng.normal(size=(5, 128))
    projected = backend.apply(x)
    np.testing.assert_allclose(projected @ backend.directions.T, 0, atol=1e-5)
    np.testing.assert_allclose(remove_directions(projected, backend.directions), projected, atol=1e-5)


def test_fit_nap_finds_the_within_person_direction() -> None:
    rng = np.random.default_rng(0)
    people = np.repeat(np.arange(20), 6)
    centres = rng.normal(size=(20, 8))
    nuisance = np.eye(8)[3]
    x = centres[people] + 0.05 * rng.normal(size=(120, 8)) + rng.normal(size=(120, 1)) * nuisance
    direction = fit_nap(x, people, 1)
    assert abs(abs(direction[0] @ nuisance) - 1.0) < 0.01


def test_adapted_embedder_errors_say_where_and_what(eastasian: Pipeline) -> None:
    with pytest.raises(ConfigError, match=r"embedder\.params\.embedder\.name: unknown embedder 'torch.dlib_resnett'"):
        AdaptedEmbedder(embedder="torch.dlib_resnett")
    with pytest.raises(ConfigError, match="was fitted on descriptors of .*\\+flip"):
        AdaptedEmbedder(embedder="torch.dlib_resnet", flip=False, profile="eastasian")
    with pytest.raises(ConfigError, match="no `backend` section"):
        AdaptedEmbedder(embedder="torch.dlib_resnet", profile="lfw-dev")
    with pytest.raises(ConfigError, match="cannot wrap itself"):
        AdaptedEmbedder(embedder="adapted")


# --------------------------------------------------------------------------- the audit
def test_audit_command_on_named_folders_and_a_manifest(faces_dir: Path, tmp_path: Path, cache: Path) -> None:
    from click.testing import CliRunner

    from facekit.cli import main

    people = ["Ai_Sugiyama", "Hitomi_Soga", "Yao_Ming", "Zhang_Ziyi"]
    manifest = tmp_path / "populations.yaml"
    manifest.write_text(f"root: {faces_dir}\npopulations:\n  four-east-asian:\n"
                        f"    folders: [eastasian-lfw]\n    identities: {json.dumps(people)}\n")
    out = tmp_path / "audit"
    result = CliRunner().invoke(main, ["audit", str(manifest), f"examples={faces_dir / 'deepface_dataset'}",
                                       "-o", str(out), "--cache", str(cache), "--no-progress"])
    # deepface_dataset is not in identity folders: a clear error, exit code 2
    assert result.exit_code == 2 and "one sub-folder per person" in result.output
    result = CliRunner().invoke(main, ["audit", str(manifest), "-o", str(out), "--cache", str(cache), "--no-progress"])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "audit.json").read_text())
    (row,) = report["populations"]
    assert row["population"] == "four-east-asian" and row["identities"] == 4 and row["images"] == 22
    assert row["same_person_pairs"] == 10 + 10 + 28 + 6 and row["different_person_pairs"] == 231 - 54
    assert row["false_matches"] == round(row["fmr"] * row["different_person_pairs"])
    assert "| four-east-asian | 4 | 22 |" in (out / "audit.md").read_text()
    import cv2

    png = cv2.imread(str(out / "audit.png"))
    assert png is not None and png.shape[0] > 400 and png.shape[1] > 800


def test_audit_numbers_match_a_brute_force_count() -> None:
    rng = np.random.default_rng(3)
    people = np.repeat([f"p{k}" for k in range(12)], 4)
    x = rng.normal(size=(12, 16))[np.arange(48) // 4] + 0.4 * rng.normal(size=(48, 16))
    result = audit_embeddings(x, people, "euclidean", 2.0, name="synthetic", target_fmr=0.05)
    d = np.linalg.norm(x[:, None] - x[None], axis=2)
    i, j = np.triu_indices(48, 1)
    same = people[i] == people[j]
    assert result.false_matches == int((d[i, j][~same] < 2.0).sum())
    assert result.false_non_matches == int((d[i, j][same] >= 2.0).sum())
    own = result.threshold_at_target
    assert (d[i, j][~same] <= own).mean() <= 0.05 + 1e-9


def test_identity_table_splits_into_populations(faces_dir: Path) -> None:
    table = faces_dir / "eastasian-lfw" / "identities.tsv"
    populations = {p.name: p for p in load_populations(table, column="country_or_heritage")}
    assert {"JP", "KR", "CN", "TW", "HK", "KP"} <= set(populations)
    assert len(populations["JP"].people) == 11 and len(populations["KR"].people) == 9
    assert sum(len(p) for p in populations.values()) == 389
    with pytest.raises(ConfigError, match="no column 'population'.*country_or_heritage"):
        load_populations(table)


def test_manifest_errors_are_clear(tmp_path: Path) -> None:
    bad = tmp_path / "m.yaml"
    bad.write_text("populations: {}\n")
    with pytest.raises(ConfigError, match="needs a `populations:` mapping"):
        load_populations(bad)
    bad.write_text("populations: {a: [x]}\nroots: .\n")
    with pytest.raises(ConfigError, match="unknown key.*roots"):
        load_populations(bad)
    bad.write_text("populations: {a: [missing]}\n")
    with pytest.raises(ConfigError, match="population folder not found"):
        load_populations(bad)


def test_pair_sampling_is_exact_and_deterministic() -> None:
    n = 9
    k = np.arange(n * (n - 1) // 2)
    i, j = _triangle_pair(k, n)
    ii, jj = np.triu_indices(n, 1)
    assert (i == ii).all() and (j == jj).all()
    labels = [f"p{q % 7}" for q in range(60)]
    a = identity_pairs(labels, max_impostor_pairs=500, seed=4)
    b = identity_pairs(labels, max_impostor_pairs=500, seed=4)
    assert all((x == y).all() for x, y in zip(a[:3], b[:3])) and a[3]
    i, j, same, _ = a
    codes = np.array(labels)
    assert (i < j).all() and (same == (codes[i] == codes[j])).all()
    assert (~same).sum() == 500 and len(set(zip(i[~same], j[~same]))) == 500
    assert same.sum() == sum(c * (c - 1) // 2 for c in np.unique(codes, return_counts=True)[1])


def test_identity_set_only_keeps_named_people(faces_dir: Path) -> None:
    photos = IdentitySet.from_folder(faces_dir / "eastasian-lfw", only=["Yao_Ming"])
    assert photos.people == ["Yao_Ming"] and len(photos) == 8
    with pytest.raises(ConfigError, match="no photo folder for identities Nobody"):
        IdentitySet.from_folder(faces_dir / "eastasian-lfw", only=["Nobody"])

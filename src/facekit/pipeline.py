"""Pipelines: detector -> aligner -> embedder, plus optional explainer and aggregator.

Build one from YAML (:meth:`Pipeline.from_yaml`), from a bundled name
(:meth:`Pipeline.load`) or from a dict, then ``detect``, ``align``, ``embed``,
``compare``, ``explain`` and ``aggregate``. Inputs are anything
:func:`facekit.image.load_image` accepts; :class:`~facekit.types.AlignedFace` and
:class:`~facekit.types.Embedding` are accepted too, and skip the stages already done.

A pipeline may be shared between threads: each component is used under its own lock.

Why one file over 500 lines: :class:`Pipeline` is the one class callers use, and its
methods share the stages, their locks and the worker pool. The parts that stand on their
own live elsewhere: validation in :mod:`facekit.config`, the worker pool in
:mod:`facekit.engine`, scores in :mod:`facekit.scoring`.
"""

from __future__ import annotations

import functools
import json
import os
import threading
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional, Sequence, Union

import numpy as np
from pydantic import ValidationError

from facekit.cache import EmbeddingCache
from facekit.components import (
    Aggregator,
    Aligner,
    Component,
    Detector,
    Embedder,
    Explainer,
)
from facekit.config import (
    STAGE_KINDS,
    YAML_SUFFIXES,
    PipelineConfig,
    check_expanded_size,
    config_error,
    dump_yaml,
    load_yaml_text,
    problem_lines,
    stage_problems,
    validate_model,
)
from facekit.engine import (
    Engine,
    ProcessPoolEngine,
    SequentialEngine,
    resolve_workers,
    wants_pool,
)
from facekit.errors import ConfigError, DependencyError, MultipleFacesError, NoFaceError
from facekit.image import ImageSource, describe_source, load_image
from facekit.io import names_a_file
from facekit.plugins import (
    OPTIONAL_BUNDLED_COMPONENTS,
    Registry,
    get_plugin_manager,
    get_registry,
    install_hint,
    unknown_name_message,
)
from facekit.scoring import similarity
from facekit.scoring.calibration import Calibration, load_calibration
from facekit.scoring.metric import metric_named
from facekit.types import (
    AggregateResult,
    AlignedFace,
    Comparison,
    Embedding,
    Explanation,
    Face,
)

#: the bundled pipeline used when none is named
DEFAULT_PIPELINE = "default"

Input = Union[ImageSource, AlignedFace, Embedding]


class EmbedBatch(list):
    """A list of :class:`Embedding` plus ``failures``: (source, message) for inputs that were skipped."""

    def __init__(self, items: Iterable[Embedding] = (), failures: Optional[list[tuple[str, str]]] = None) -> None:
        super().__init__(items)
        self.failures: list[tuple[str, str]] = failures or []


class Pipeline:
    """A validated, ready-to-run chain of components."""

    def __init__(self, config: PipelineConfig, registry: Optional[Registry] = None, where: str = "") -> None:
        self.config = config
        self.where = where
        registry = registry or get_registry()
        self.components: dict[str, Component] = {}
        stages = config.stages()
        #: optional stages whose bundled plugin is not installed -> what to install (said when used)
        self._unavailable: dict[str, str] = {}
        for field_name, stage in stages.items():
            kind = STAGE_KINDS[field_name]
            plugin = OPTIONAL_BUNDLED_COMPONENTS.get((kind, stage.name))
            if plugin is not None and stage.name not in registry.components[kind]:
                self._unavailable[field_name] = (
                    f"{_at(where)}{field_name}: {stage.name!r} comes with facekit's {plugin!r} plugin, which is "
                    f"not installed; install it with {install_hint(plugin)}, or name another {kind} "
                    f"(`facekit list {kind}`)"
                )
        stages = {k: v for k, v in stages.items() if k not in self._unavailable}
        problems = stage_problems({k: v.model_dump() for k, v in stages.items()}, registry)
        if problems:
            raise config_error(problems, where)
        for field_name, stage in stages.items():
            cls = registry.get(STAGE_KINDS[field_name], stage.name)
            self.components[field_name] = cls(cls.Params.model_validate(stage.params))
        self._locks = {name: threading.RLock() for name in self.components}
        self._engine_lock = threading.RLock()  # the worker pool, started on demand (engine_for)
        self._calibration: Optional[Calibration] = None
        self._calibration_loaded = False
        self._check_fit()

    # ----------------------------------------------------------------- building
    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "") -> "Pipeline":
        check_expanded_size(data, where)
        try:
            config = PipelineConfig.model_validate(data)
        except ValidationError as exc:
            # report the stages' own problems (names, params) with the structure's, all at once
            problems = problem_lines(exc, (), PipelineConfig) + stage_problems(data, get_registry())
            raise config_error(problems, where) from None
        return cls(config, where=where)

    @classmethod
    def from_yaml(cls, source: Union[str, os.PathLike]) -> "Pipeline":
        """Build from a YAML file path or YAML text."""
        data, where = load_yaml_text(source if not isinstance(source, os.PathLike) else Path(source))
        return cls.from_dict(data, where=where)

    @classmethod
    def load(cls, name_or_path: Union[str, os.PathLike, "Pipeline", None] = None) -> "Pipeline":
        """A bundled pipeline by name (``"default"``), a YAML file, or YAML text; a
        :class:`Pipeline` is returned as it is, so functions can take either."""
        if isinstance(name_or_path, Pipeline):
            return name_or_path
        if name_or_path is None:
            name_or_path = DEFAULT_PIPELINE
        text = str(name_or_path)
        registry = get_registry()
        if text in registry.pipelines:
            data, _ = load_yaml_text(registry.pipelines[text][0])
            return cls.from_dict(data, where=f"bundled pipeline {text!r}")
        if "\n" in text or (":" in text and not Path(text).exists()):
            return cls.from_yaml(text)
        path = Path(text)
        if path.is_file():
            return cls.from_yaml(path)
        if names_a_file(text, YAML_SUFFIXES):
            raise ConfigError(
                f"pipeline file not found: {path.resolve()}"
                f"; pass a YAML file or a bundled pipeline name ({', '.join(sorted(registry.pipelines))})"
            )
        raise ConfigError(
            unknown_name_message("pipeline", text, sorted(registry.pipelines), registry.failures)
            + " (A pipeline is a bundled name or the path of a YAML file; no file of that name exists.)"
        )

    def to_dict(self) -> dict[str, Any]:
        return self.config.model_dump(mode="json", exclude_defaults=False)

    def to_yaml(self) -> str:
        return dump_yaml(self.to_dict())

    #: the settings that decide a pipeline's embeddings (not its scoring, explainer or aggregator)
    EMBEDDING_FIELDS = ("detector", "fallback_detector", "aligner", "embedder", "multi_face", "max_pixels")

    def embedding_description(self) -> str:
        """The part of this pipeline's description that decides its embeddings, as canonical JSON.

        Cache keys and calibration files use it, so a new calibration or explainer does not
        make cached embeddings or a fitted calibration look stale.
        """
        config = self.to_dict()
        return json.dumps({k: config.get(k) for k in self.EMBEDDING_FIELDS}, sort_keys=True)

    def _check_fit(self) -> None:
        """Stages must fit together; say so now rather than on the first image."""
        aligner: Aligner = self.aligner
        for field_name in ("detector", "fallback_detector"):
            detector = self.components.get(field_name)
            if detector is None or not aligner.accepts_landmarks:
                continue
            scheme = detector.landmark_scheme()  # type: ignore[attr-defined]
            if scheme not in aligner.accepts_landmarks:
                gives = f"landmarks in scheme {scheme!r}" if scheme else "no landmarks"
                raise ConfigError(
                    f"{_at(self.where)}aligner: {aligner.name!r} needs landmarks in scheme "
                    f"{' or '.join(map(repr, aligner.accepts_landmarks))}, but the {field_name} "
                    f"{detector.name!r} gives {gives}; use an aligner that finds its own landmarks "
                    "or a detector that provides them"
                )
        embedder = self.embedder
        if embedder.input_size and aligner.chip_size != embedder.input_size:
            raise ConfigError(
                f"{_at(self.where)}aligner.params.size: the embedder {embedder.name!r} expects "
                f"{embedder.input_size}x{embedder.input_size} chips but the aligner {aligner.name!r} makes "
                f"{aligner.chip_size}x{aligner.chip_size}; set `size: {embedder.input_size}`"
            )
        explainer = self.components.get("explainer")
        if isinstance(explainer, Explainer) and explainer.needs_torch and not embedder.gives_gradients():
            raise ConfigError(
                f"{_at(self.where)}explainer: {explainer.name!r} needs a PyTorch embedder, and "
                f"{embedder.name!r} is not one; use a model-agnostic explainer such as 'occlusion'"
            )
        aggregator = self.components.get("aggregator")
        if isinstance(aggregator, Aggregator) and aggregator.needs_landmarks and not aligner.provides_chip_landmarks:
            raise ConfigError(
                f"{_at(self.where)}aggregator: {aggregator.name!r} needs landmarks on the chips and the "
                f"aligner {aligner.name!r} does not provide them"
            )

    # ------------------------------------------------------------------ parts
    @property
    def name(self) -> str:
        return self.config.name

    @property
    def detector(self) -> Detector:
        return self.components["detector"]  # type: ignore[return-value]

    @property
    def aligner(self) -> Aligner:
        return self.components["aligner"]  # type: ignore[return-value]

    @property
    def embedder(self) -> Embedder:
        return self.components["embedder"]  # type: ignore[return-value]

    @property
    def threshold(self) -> float:
        override = self.config.scoring.threshold
        if override is not None:
            return float(override)
        calibration = self.calibration
        if calibration is not None and getattr(calibration, "threshold", None) is not None:
            return float(calibration.threshold)
        return self.embedder.threshold

    @property
    def calibration(self) -> Optional[Calibration]:
        """The pipeline's score calibration, or None (loaded on first use)."""
        if not self._calibration_loaded:
            name = self.config.scoring.calibration
            if name:
                self._calibration = load_calibration(name, metric=self.embedder.metric,
                                                     model=self.embedder.model_name)
            self._calibration_loaded = True
        return self._calibration

    def warm_up(self) -> "Pipeline":
        """Load every component's weights now."""
        for component in self.components.values():
            component.warm_up()
        return self

    def engine_for(self, images: int, workers: Optional[int] = None) -> "Engine":
        """The engine that reads, detects and aligns ``images`` images (see :mod:`facekit.engine`).

        ``workers`` (default: the pipeline's setting) 1 runs them here, one after another;
        N runs them in a pool of N processes, kept for later calls until :meth:`close`;
        0 means one process per CPU core when there are enough images to repay starting them.
        """
        setting = self.config.workers if workers is None else workers
        count = resolve_workers(setting)
        with self._engine_lock:
            pool = self.__dict__.get("_pool")
            running = pool is not None and pool.workers == count and setting != 1 and images >= 2
            if not running and not wants_pool(setting, images):  # a running pool serves any later call
                return SequentialEngine(self)
            if pool is None or pool.workers != count:
                if setting == 0 and not self._rebuildable_in_workers():
                    return SequentialEngine(self)  # automatic: never a pool that would fail to build the pipeline
                self.close()
                pool = self.__dict__["_pool"] = ProcessPoolEngine(self, count)
            return pool

    def rebuild_recipe(self) -> "functools.partial[Pipeline]":
        """A picklable call that builds this pipeline again in another process (no models
        loaded, ``workers: 1``: no pool in a pool). The process-pool engine's workers use it."""
        return functools.partial(Pipeline.from_dict, {**self.to_dict(), "workers": 1}, where=self.where)

    def _rebuildable_in_workers(self) -> bool:
        """Whether worker processes, which load plugins from entry points only, can build this pipeline."""
        manager = get_plugin_manager()
        for field_name, kind in STAGE_KINDS.items():
            stage = getattr(self.config, field_name, None)
            name = getattr(stage, "name", None)
            if name is None:
                continue
            try:
                plugin = manager.registry.components[kind][name].plugin
            except KeyError:
                continue  # an optional stage whose plugin is missing: the workers never build it
            if not manager.is_installed(plugin):
                return False
        return True

    def close(self) -> None:
        """Stop the pipeline's worker processes, if any (they are started again when needed)."""
        with self._engine_lock:
            pool = self.__dict__.pop("_pool", None)
        if pool is not None:
            pool.close()

    def __enter__(self) -> "Pipeline":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _use(self, stage: str) -> Any:
        lock = self._locks.get(stage)
        return lock if lock is not None else nullcontext()

    def __repr__(self) -> str:
        stages = ", ".join(f"{k}={v.name}" for k, v in self.components.items())
        return f"Pipeline({self.name!r}: {stages})"

    # ------------------------------------------------------------------ stages
    def read(self, source: ImageSource) -> np.ndarray:
        return load_image(source, max_pixels=self.config.max_pixels)

    def detect(self, image: ImageSource) -> list[Face]:
        """Every face the detector finds (falling back to ``fallback_detector`` if none)."""
        return self._detect_pixels(self.read(image))

    def _detect_pixels(self, pixels: np.ndarray) -> list[Face]:
        with self._use("detector"):
            faces = self.detector.detect(pixels)
        if not faces and "fallback_detector" in self.components:
            with self._use("fallback_detector"):
                faces = self.components["fallback_detector"].detect(pixels)  # type: ignore[attr-defined]
        return sorted(faces, key=lambda f: -f.area)

    def select(self, faces: Sequence[Face], image_shape: tuple[int, ...], where: str = "") -> list[Face]:
        """Apply the pipeline's multi-face policy."""
        if not faces:
            fallback = self.components.get("fallback_detector")
            hint = "" if isinstance(fallback, Detector) and not fallback.finds_faces else (
                " (if your photos are already tight face crops, add `fallback_detector: whole_image` to the "
                "pipeline; facekit never does that by default, as it would score photos without a face)"
            )
            raise NoFaceError(f"{where or 'image'}: no face found by {self._detector_names()}{hint}")
        policy = self.config.multi_face
        if policy == "all":
            return list(faces)
        if policy == "error" and len(faces) > 1:
            raise MultipleFacesError(
                f"{where or 'image'}: {len(faces)} faces found and the pipeline's multi_face policy is 'error'; "
                "crop the photo or choose largest/central/all"
            )
        if policy == "central":
            cy, cx = image_shape[0] / 2, image_shape[1] / 2
            return [min(faces, key=lambda f: (f.center[0] - cx) ** 2 + (f.center[1] - cy) ** 2)]
        return [max(faces, key=lambda f: f.area)]

    def _detector_names(self) -> str:
        names = [self.detector.name]
        if "fallback_detector" in self.components:
            names.append(self.components["fallback_detector"].name)
        return " or ".join(repr(n) for n in names)

    def align(self, image: ImageSource) -> list[AlignedFace]:
        """Aligned chips of the faces the policy selects."""
        if isinstance(image, AlignedFace):
            return [image]
        where = describe_source(image)
        pixels = self.read(image)
        detected = self._detect_pixels(pixels)
        chosen = self.select(detected, pixels.shape, where)
        with self._use("aligner"):
            aligned = self.aligner.align_many(pixels, chosen)
        source = where if isinstance(image, (str, os.PathLike)) else None
        # which detected face each chip is (0 = the largest), so results can say which face was used
        indices = [next(i for i, d in enumerate(detected) if d is f) for f in chosen]
        return [_with_source(a, source, index, len(detected)) for a, index in zip(aligned, indices)]

    def embed_chips(self, faces: Sequence[AlignedFace]) -> list[Embedding]:
        """Embed chips already aligned, in batches."""
        out: list[Embedding] = []
        size = self.config.batch_size
        for start in range(0, len(faces), size):
            batch = faces[start : start + size]
            chips = np.stack([f.chip for f in batch])
            with self._use("embedder"):
                vectors = np.asarray(self.embedder.embed(chips), dtype=np.float32)
            out.extend(
                Embedding(v, self.embedder.model_name, self.embedder.metric, source=f.source, face=f)
                for v, f in zip(vectors, batch)
            )
        return out

    def embed(
        self,
        images: Union[Input, Sequence[Input]],
        *,
        on_error: str = "raise",
        progress: Optional[bool] = None,
        cache: Optional[Union[str, os.PathLike, "EmbeddingCache"]] = None,
        workers: Optional[int] = None,
    ) -> EmbedBatch:
        """Embed many images, batched. One :class:`Embedding` per selected face.

        ``on_error="skip"`` keeps going past bad images and lists them in
        ``result.failures``; ``"raise"`` stops at the first one. ``cache`` (a directory)
        keeps each file's result on disk, so an interrupted run resumes where it stopped.
        Embeddings read from the cache carry no chip (``embedding.face`` is None).
        ``workers`` overrides the pipeline's ``workers`` setting (see :mod:`facekit.engine`):
        images are read, detected and aligned in that many processes, and embedded here.
        """
        if cache is not None and not isinstance(cache, EmbeddingCache):
            cache = EmbeddingCache(cache, self.embedding_description())
        if on_error not in ("raise", "skip"):
            raise ValueError("on_error must be 'raise' or 'skip'")
        items = [images] if _is_single(images) else list(images)  # type: ignore[arg-type]
        result = EmbedBatch()
        pending: list[AlignedFace] = []
        pending_keys: list[tuple[Optional[str], int]] = []  # cache key and face count per pending image

        def flush() -> None:
            embedded = self.embed_chips(pending)
            start = 0
            for key, count in pending_keys:
                if key is not None:
                    cache.put(key, np.stack([e.vector for e in embedded[start : start + count]]))  # type: ignore[union-attr]
                start += count
            result.extend(embedded)
            pending.clear()
            pending_keys.clear()

        # cache look-ups first, so the engine gets only the images still to compute
        keys: list[Optional[str]] = []
        found: list[Any] = []
        for item in items:
            key = cache.key_for(item) if cache is not None and isinstance(item, (str, os.PathLike)) else None
            keys.append(key)
            found.append(None if isinstance(item, Embedding) or key is None else cache.get(key))  # type: ignore[union-attr]
        to_compute = [item for item, cached in zip(items, found) if cached is None and not isinstance(item, Embedding)]
        computed = self.engine_for(len(to_compute), workers).map_faces(to_compute)
        for item, key, cached in zip(_progress(items, progress, "embedding", self.name), keys, found):
            if isinstance(item, Embedding):
                flush()
                result.append(item)
                continue
            if cached is not None:
                flush()  # keep results in input order
                if isinstance(cached, str):
                    if on_error == "raise":
                        raise NoFaceError(cached)
                    result.failures.append((describe_source(item), cached))
                else:
                    result.extend(
                        Embedding(v, self.embedder.model_name, self.embedder.metric, source=describe_source(item))
                        for v in cached
                    )
                continue
            _, faces, error = next(computed)
            if error is not None:
                if key is not None and isinstance(error, (NoFaceError, MultipleFacesError)):
                    cache.put_failure(key, str(error))  # type: ignore[union-attr]
                if on_error == "raise":
                    raise error
                result.failures.append((describe_source(item), str(error)))
                continue
            pending.extend(faces)
            pending_keys.append((key, len(faces)))
            if len(pending) >= self.config.batch_size:
                flush()
        flush()
        return result

    def embed_one(self, image: Input) -> Embedding:
        """The embedding of the one face the policy selects in ``image``."""
        if isinstance(image, Embedding):
            return image
        return self.embed_chips(self.align(image)[:1])[0]

    # ----------------------------------------------------------------- answers
    def compare(self, a: Input, b: Input) -> Comparison:
        """Are the faces in ``a`` and ``b`` the same person?

        With the ``all`` multi-face policy, every face of ``a`` is compared with every face
        of ``b`` and the most similar pair is reported.
        """
        emb_a = self._embeddings_of(a)
        emb_b = self._embeddings_of(b)
        metric = metric_named(self.embedder.metric)
        pairs = [(ea, eb) for ea in emb_a for eb in emb_b]
        for ea, eb in pairs:
            self._check_compatible(ea, eb)
        values = metric.pairwise(np.stack([ea.vector for ea, _ in pairs]), np.stack([eb.vector for _, eb in pairs]))
        best_index = metric.best(values)
        best = (float(values[best_index]), *pairs[best_index])
        return self.comparison_from_score(best[0], faces=(best[1].face, best[2].face))

    def comparison_from_score(self, value: float, faces: tuple[Any, Any] = (None, None)) -> Comparison:
        """Wrap a raw score into a :class:`Comparison` with this pipeline's threshold and calibration."""
        metric = self.embedder.metric
        threshold = self.threshold
        probability = impostor = None
        profile = None
        calibration = self.calibration
        if calibration is not None:
            probability = calibration.probability(value)
            impostor = calibration.impostor_percentile(value)
            profile = calibration.name
        return Comparison(
            score=float(value),
            metric=metric,
            threshold=threshold,
            same=metric_named(metric).is_same(value, threshold),
            percentage=similarity.percentage(value, metric, threshold),
            model=self.embedder.model_name,
            probability=probability,
            impostor_percentile=impostor,
            profile=profile,
            pipeline=self.name,
            faces=faces,
            multi_face=self.config.multi_face,
        )

    def _embeddings_of(self, item: Input) -> list[Embedding]:
        if isinstance(item, Embedding):
            return [item]
        return self.embed_chips(self.align(item))

    def _check_compatible(self, a: Embedding, b: Embedding) -> None:
        for emb in (a, b):
            if emb.model != self.embedder.model_name or emb.vector.shape != a.vector.shape:
                raise ConfigError(
                    f"cannot compare an embedding from model {emb.model!r} ({emb.vector.shape[0]}-D) with "
                    f"pipeline {self.name!r}, whose model is {self.embedder.model_name!r}"
                )

    def explain(self, a: Input, b: Input, explainer: Optional[str] = None, **params: Any) -> Explanation:
        """Compare ``a`` and ``b`` and say which pixels of each drive the result.

        Uses the pipeline's ``explainer`` stage, or the registered explainer named here.
        """
        component = self._optional_stage("explainer", explainer, params)
        face_a = self.align(a)[0]
        face_b = self.align(b)[0]
        comparison = self.compare(face_a, face_b)
        with self._use("embedder"):
            heatmaps = component.explain(self.embedder, face_a, face_b)  # type: ignore[attr-defined]
        return Explanation(comparison=comparison, heatmaps=heatmaps, explainer=component.name)

    def aggregate(
        self,
        images: Sequence[Input],
        aggregator: Optional[str] = None,
        *,
        min_faces: int = 1,
        progress: Optional[bool] = None,
        workers: Optional[int] = None,
        **params: Any,
    ) -> AggregateResult:
        """Combine the faces of many images (mean face, template embedding...).

        Images with no usable face are skipped and listed in ``result.skipped``; fewer
        than ``min_faces`` usable faces is an error. ``workers``: as in :meth:`embed`.
        """
        component: Aggregator = self._optional_stage("aggregator", aggregator, params)  # type: ignore[assignment]
        faces: list[AlignedFace] = []
        skipped: list[tuple[str, str]] = []
        items = list(images)
        results = self.engine_for(len(items), workers).map_faces(items)
        for item in _progress(items, progress, "aligning", self.name):
            _, found, error = next(results)
            if error is not None:
                skipped.append((describe_source(item), str(error)))
            else:
                faces.extend(found[:1] if self.config.multi_face != "all" else found)
        if len(faces) < min_faces:
            raise NoFaceError(
                f"only {len(faces)} usable face(s) among {len(images)} image(s); at least {min_faces} needed"
                + (f" (skipped: {'; '.join(f'{s}: {r}' for s, r in skipped[:5])})" if skipped else "")
            )
        embeddings = self.embed_chips(faces) if component.consumes == "embeddings" else []
        result = component.aggregate(faces, embeddings)
        if skipped:
            result = AggregateResult(
                method=result.method,
                count=result.count,
                image=result.image,
                embedding=result.embedding,
                skipped=tuple(result.skipped) + tuple(skipped),
            )
        return result

    def _optional_stage(self, field_name: str, name: Optional[str], params: dict[str, Any]) -> Component:
        unavailable = self._unavailable.get(field_name)
        if unavailable is not None and name in (None, self.config.stages()[field_name].name):
            raise DependencyError(unavailable)
        if name is None and not params and field_name in self.components:
            return self.components[field_name]
        registry = get_registry()
        if name is None:
            if field_name not in self.components:
                raise ConfigError(
                    f"pipeline {self.name!r} has no {field_name} stage; add one to the YAML or pass "
                    f"{field_name}=NAME (choices: {', '.join(registry.names(field_name))})"
                )
            name = self.components[field_name].name
        stage = self.config.stages().get(field_name)
        if stage is not None and stage.name == name:
            # the same component as the YAML's: its YAML params stay unless overridden here
            params = {**stage.params, **params}
        cls = registry.get(field_name, name)
        component = cls(validate_model(cls.Params, params, prefix=(field_name, "params")))
        if field_name == "aggregator" and getattr(component, "needs_landmarks", False) and not self.aligner.provides_chip_landmarks:
            raise ConfigError(f"aggregator {name!r} needs chip landmarks; aligner {self.aligner.name!r} gives none")
        if field_name == "explainer" and getattr(component, "needs_torch", False) and not self.embedder.gives_gradients():
            raise ConfigError(f"explainer {name!r} needs a PyTorch embedder; {self.embedder.name!r} is not one")
        return component


def _at(where: str) -> str:
    return f"{where}: " if where else ""


def _is_single(images: Any) -> bool:
    return isinstance(images, (str, os.PathLike, bytes, bytearray, memoryview, np.ndarray, AlignedFace, Embedding)) or (
        hasattr(images, "mode") and hasattr(images, "size")  # a PIL image
    )


def _with_source(face: AlignedFace, source: Optional[str], face_index: int, faces_found: int) -> AlignedFace:
    from dataclasses import replace

    return replace(face, source=source if source is not None else face.source, face_index=face_index,
                   faces_found=faces_found)


def _progress(items: Sequence[Any], progress: Optional[bool], what: str, name: str) -> Iterator[Any]:
    """Iterate with a tqdm bar when asked (or, by default, for long interactive runs)."""
    import sys

    show = progress if progress is not None else (len(items) > 20 and sys.stderr.isatty())
    if not show:
        yield from items
        return
    from tqdm.auto import tqdm

    yield from tqdm(items, desc=f"{what} ({name})", unit="img", dynamic_ncols=True)

"""Pipeline descriptions: YAML in, validated models out.

A pipeline names one registered component per stage, with parameters::

    name: my-pipeline
    detector: {name: dlib.hog, params: {upsample: 1}}
    aligner: dlib.chip5            # shorthand: a name alone
    embedder: {name: torch.dlib_resnet}
    multi_face: largest

Everything is checked before any weights load: the structure (unknown keys are
errors), each component's name (with a did-you-mean) and its parameters (against the
component's own pydantic model). Every error names its path in the YAML.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Optional, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from facekit.components import STAGE_KINDS
from facekit.errors import ConfigError
from facekit.plugins import unknown_name_message

MultiFacePolicy = Literal["largest", "central", "all", "error"]


class StageConfig(BaseModel):
    """One stage: a registered component name and its parameters."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="registered component name of the stage's kind (see `facekit list KIND`)")
    params: dict[str, Any] = Field(default_factory=dict, description="the component's parameters")

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        return {"name": value} if isinstance(value, str) else value


class ScoringConfig(BaseModel):
    """How raw scores are turned into decisions and calibrated numbers."""

    model_config = ConfigDict(extra="forbid")

    threshold: Optional[float] = Field(None, description="override the embedder's decision threshold")
    calibration: Optional[str] = Field(
        None, description="name of a registered calibration (profile), or a path to a calibration JSON file"
    )


class PipelineConfig(BaseModel):
    """A whole pipeline, as written in YAML."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field("custom", description="a short name shown in results")
    description: str = Field("", description="what this pipeline is for")
    detector: StageConfig = Field(description="finds faces")
    fallback_detector: Optional[StageConfig] = Field(
        None, description="tried when the detector finds no face, before giving up"
    )
    aligner: StageConfig = Field(description="cuts normalised chips")
    embedder: StageConfig = Field(description="turns chips into descriptors")
    explainer: Optional[StageConfig] = Field(None, description="explains a comparison (optional)")
    aggregator: Optional[StageConfig] = Field(None, description="combines many faces (optional)")
    multi_face: MultiFacePolicy = Field(
        "largest", description="which faces of an image to use: largest, central (nearest the centre), all, or error"
    )
    batch_size: int = Field(32, ge=1, le=4096, description="chips per embedder call")
    workers: int = Field(
        0, ge=0, le=256,
        description="processes that read, detect and align images for embed/evaluate/audit/average: "
        "0 = one per CPU core (for 48 images or more), 1 = all in the calling process",
    )
    max_pixels: int = Field(
        50_000_000, ge=1, description="refuse images with more pixels than this (decompression bombs)"
    )
    scoring: ScoringConfig = Field(default_factory=ScoringConfig, description="decision threshold and calibration")

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        return value

    def stages(self) -> dict[str, StageConfig]:
        """The stages present, by field name."""
        out = {}
        for field_name in ("detector", "fallback_detector", "aligner", "embedder", "explainer", "aggregator"):
            stage = getattr(self, field_name)
            if stage is not None:
                out[field_name] = stage
        return out


def format_location(loc: tuple[Any, ...]) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        else:
            parts.append(("." if parts else "") + str(item))
    return "".join(parts) or "(top level)"


def validation_message(error: ValidationError, prefix: tuple[Any, ...] = (), where: str = "",
                       model: Optional[type[BaseModel]] = None) -> str:
    """One readable message for every problem pydantic found."""
    return problems_message(problem_lines(error, prefix, model), where)


def problems_message(problems: list[str], where: str = "") -> str:
    """The one format of every pipeline problem: a head line, then one ``path: problem`` line each."""
    head = f"invalid pipeline{f' in {where}' if where else ''}"
    count = f" ({len(problems)} problems)" if len(problems) > 1 else ""
    return head + count + ":\n  " + "\n  ".join(problems)


def config_error(problems: list[str], where: str = "") -> ConfigError:
    """A :class:`ConfigError` listing every problem; ``.problems`` holds them one by one."""
    error = ConfigError(problems_message(problems, where))
    error.problems = list(problems)  # type: ignore[attr-defined]
    return error


def problem_lines(error: ValidationError, prefix: tuple[Any, ...] = (),
                  model: Optional[type[BaseModel]] = None) -> list[str]:
    """Each problem pydantic found as ``path: what is wrong`` (with a did-you-mean and the choices)."""
    import difflib
    import re

    model = model or getattr(error, "_facekit_model", None)
    lines = []
    for err in error.errors():
        loc = tuple(x for x in err["loc"] if x not in ("function-before", "function-after"))
        path = format_location(prefix + loc)
        value = err.get("input")
        if err["type"] == "extra_forbidden":
            lines.append(f"{path}: unknown key{_did_you_mean_key(model, loc)}")
            continue
        if err["type"] == "literal_error":
            choices = re.findall(r"'([^']*)'", str(err.get("ctx", {}).get("expected", "")))
            close = difflib.get_close_matches(str(value), choices, n=1, cutoff=0.5)
            hint = f"; did you mean {close[0]!r}?" if close else "."
            lines.append(f"{path}: {value!r} is not a choice{hint} Choices: {', '.join(choices)}.")
            continue
        shown = f" (got {value!r})" if value is not None and not isinstance(value, dict) else ""
        lines.append(f"{path}: {err['msg']}{shown}")
    return lines


def stage_problems(data: Any, registry: Any) -> list[str]:
    """Unknown component names and bad parameters in every stage of a (raw) pipeline description.

    Stages whose shape is wrong are left to the structure check; this one reads what it can,
    so that a YAML with several mistakes gets them all in one message.
    """
    problems: list[str] = []
    if not isinstance(data, dict):
        return problems
    for field_name, kind in STAGE_KINDS.items():
        raw = data.get(field_name)
        if isinstance(raw, str):
            name, params = raw, {}
        elif isinstance(raw, dict) and isinstance(raw.get("name"), str):
            name, params = raw["name"], raw.get("params") or {}
        else:
            continue
        if name not in registry.components[kind]:
            failures = registry.failures
            problems.append(f"{field_name}.name: " + unknown_name_message(kind, name, registry.names(kind), failures))
            continue
        params_model = registry.get(kind, name).Params
        try:
            params_model.model_validate(params)
        except ValidationError as exc:
            problems.extend(problem_lines(exc, (field_name, "params"), params_model))
    return problems


def _did_you_mean_key(model: Optional[type[BaseModel]], loc: tuple[Any, ...]) -> str:
    import difflib

    if model is None or not loc:
        return ""
    fields = _fields_at(model, loc[:-1])
    if not fields:
        return ""
    close = difflib.get_close_matches(str(loc[-1]), fields, n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"{hint} Allowed: {', '.join(fields)}."


def _fields_at(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    current: Any = model
    for part in loc:
        field_info = getattr(current, "model_fields", {}).get(part)
        if field_info is None:
            return []
        annotation = field_info.annotation
        args = getattr(annotation, "__args__", ())
        candidates = [a for a in (annotation, *args) if isinstance(a, type) and issubclass(a, BaseModel)]
        if not candidates:
            return []
        current = candidates[0]
    return list(getattr(current, "model_fields", {}))


def validate_model(model: type[BaseModel], data: Any, prefix: tuple[Any, ...] = (), where: str = "") -> Any:
    """``model.model_validate(data)``, with errors turned into one :class:`ConfigError`."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise config_error(problem_lines(exc, prefix, model), where) from None


#: a pipeline description is a few dozen values; YAML aliases can make a few lines expand
#: to billions ("billion laughs"), which validation and error messages would walk
MAX_CONFIG_VALUES = 10_000


def check_expanded_size(data: Any, where: str) -> None:
    """Refuse descriptions that expand (through YAML aliases) to more than MAX_CONFIG_VALUES values,
    or that contain themselves. Linear in the distinct objects: shared ones are counted once
    and multiplied, never walked again."""
    sizes: dict[int, int] = {}
    open_ids: set[int] = set()

    def size(value: Any) -> int:
        if not isinstance(value, (dict, list, tuple)):
            return 1
        key = id(value)
        if key in sizes:
            return sizes[key]
        if key in open_ids:
            raise ConfigError(f"invalid pipeline{f' in {where}' if where else ''}: a YAML alias refers to itself")
        open_ids.add(key)
        items = [*value.keys(), *value.values()] if isinstance(value, dict) else value
        total = 1
        for item in items:
            total += size(item)
            if total > MAX_CONFIG_VALUES:
                break
        open_ids.discard(key)
        sizes[key] = total
        return total

    try:
        total = size(data)
    except RecursionError:
        raise ConfigError(f"invalid pipeline{f' in {where}' if where else ''}: nested too deeply") from None
    if total > MAX_CONFIG_VALUES:
        raise ConfigError(
            f"invalid pipeline{f' in {where}' if where else ''}: it expands to more than {MAX_CONFIG_VALUES:,} "
            "values (YAML aliases used as a 'billion laughs' bomb?); write the values out"
        )


#: what a pipeline file's name ends with
YAML_SUFFIXES = (".yaml", ".yml")


def load_yaml_text(source: Union[str, Path]) -> tuple[Any, str]:
    """Parse YAML from a path or from text, safely. Returns (data, where)."""
    where = "<text>"
    text: str
    if isinstance(source, Path) or (isinstance(source, str) and "\n" not in source and source.lower().endswith(YAML_SUFFIXES)):
        path = Path(source)
        if not path.is_file():
            raise ConfigError(f"pipeline file not found: {path}")
        where = str(path)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read pipeline file {path}: {exc}") from None
    else:
        text = str(source)
    try:
        data = yaml.safe_load(text)
    except RecursionError:
        raise ConfigError(f"invalid YAML in {where}: nested too deeply to parse") from None
    except yaml.YAMLError as exc:
        raise ConfigError(yaml_error_message(exc, text, where)) from None
    if not isinstance(data, dict):
        raise ConfigError(f"invalid pipeline in {where}: expected a mapping of stages, got {type(data).__name__}")
    return data, where


def yaml_error_message(exc: Exception, text: str, where: str) -> str:
    """A YAML syntax error with its line and column, and the offending line marked."""
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    context = getattr(exc, "context", None)
    detail = f"{context}, {problem}" if context else str(problem)
    if "could not determine a constructor" in str(exc) or "!!python" in str(exc):
        detail = f"tags that construct Python objects are not allowed ({detail})"
    if mark is None:
        return f"invalid YAML in {where}: {detail}"
    lines = text.splitlines()
    shown = ""
    if 0 <= mark.line < len(lines):
        number = f"{mark.line + 1} | "
        shown = f"\n  {number}{lines[mark.line]}\n  {' ' * (len(number) - 2)}| {' ' * mark.column}^"
    return f"invalid YAML in {where}, line {mark.line + 1}, column {mark.column + 1}: {detail}{shown}"


def dump_yaml(data: dict[str, Any]) -> str:
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=False)

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

from facekit.errors import ConfigError

MultiFacePolicy = Literal["largest", "central", "all", "error"]


class StageConfig(BaseModel):
    """One stage: a registered component name and its parameters."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="registered component name, e.g. `dlib.hog` (see `facekit list KIND`)")
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


STAGE_KINDS = {
    "detector": "detector",
    "fallback_detector": "detector",
    "aligner": "aligner",
    "embedder": "embedder",
    "explainer": "explainer",
    "aggregator": "aggregator",
}


def format_location(loc: tuple[Any, ...]) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        else:
            parts.append(("." if parts else "") + str(item))
    return "".join(parts) or "(top level)"


def validation_message(error: ValidationError, prefix: tuple[Any, ...] = (), where: str = "") -> str:
    """One readable message for every problem pydantic found."""
    lines = []
    for err in error.errors():
        loc = tuple(x for x in err["loc"] if x not in ("function-before", "function-after"))
        path = format_location(prefix + loc)
        problem = err["msg"]
        if err["type"] == "extra_forbidden":
            problem = "unknown key"
            lines.append(f"{path}: {problem}{_did_you_mean_key(error, err, loc)}")
            continue
        value = err.get("input")
        shown = f" (got {value!r})" if value is not None and not isinstance(value, dict) else ""
        lines.append(f"{path}: {problem}{shown}")
    head = f"invalid pipeline{f' in {where}' if where else ''}"
    return head + ":\n  " + "\n  ".join(lines)


def _did_you_mean_key(error: ValidationError, err: dict[str, Any], loc: tuple[Any, ...]) -> str:
    import difflib

    model = getattr(error, "_facekit_model", None)
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
        exc._facekit_model = model  # type: ignore[attr-defined]
        raise ConfigError(validation_message(exc, prefix, where)) from None


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


def load_yaml_text(source: Union[str, Path]) -> tuple[Any, str]:
    """Parse YAML from a path or from text, safely. Returns (data, where)."""
    where = "<text>"
    text: str
    if isinstance(source, Path) or (isinstance(source, str) and "\n" not in source and source.endswith((".yaml", ".yml"))):
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
        detail = str(exc).replace("\n", " ")
        if "could not determine a constructor" in detail or "!!python" in detail:
            detail = f"tags that construct Python objects are not allowed ({detail})"
        raise ConfigError(f"invalid YAML in {where}: {detail}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"invalid pipeline in {where}: expected a mapping of stages, got {type(data).__name__}")
    return data, where


def dump_yaml(data: dict[str, Any]) -> str:
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=False)

"""Plugin loading and the registry of components, engines, pipelines and calibrations.

Built-in plugins and third-party ones (entry-point group ``facekit``) go through the
same hooks. ``FACEKIT_LOAD_PLUGINS`` (comma-separated names, possibly empty) limits
which entry-point plugins load; ``FACEKIT_STRICT_PLUGINS=1`` makes a plugin that fails
to import an error instead of a warning.
"""

from __future__ import annotations

import difflib
import importlib
import os
import threading
import warnings
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, Callable, Iterable, Optional

import pluggy

from facekit import hookspecs
from facekit.components import BASES, KINDS, STAGE_KINDS, Component
from facekit.engine import Engine
from facekit.errors import ConfigError, PluginError

ENTRY_POINT_GROUP = "facekit"
#: modules inside facekit that register built-in components, through the same hooks
DEFAULT_PLUGINS = ("facekit.builtin",)

_KIND_HOOKS = {kind: "register_indexes" if kind == "index" else f"register_{kind}s" for kind in KINDS}


@dataclass(frozen=True)
class Registration:
    kind: str
    name: str
    cls: type
    plugin: str


@dataclass(frozen=True)
class PluginFailure:
    """A plugin that could not be imported or could not register its components."""

    name: str
    distribution: Optional[str]
    error: str
    hint: str


@dataclass
class PluginInfo:
    name: str
    version: Optional[str]
    distribution: Optional[str]
    components: list[Registration] = field(default_factory=list)
    engines: list[str] = field(default_factory=list)
    pipelines: list[str] = field(default_factory=list)


class Registry:
    """Every registered component, engine, bundled pipeline and calibration, and who registered it."""

    def __init__(self) -> None:
        self.components: dict[str, dict[str, Registration]] = {kind: {} for kind in KINDS}
        self.engines: dict[str, Registration] = {}  # kind "engine"; LOCAL_ENGINE is not among them
        self.pipelines: dict[str, tuple[str, str]] = {}  # name -> (yaml text, plugin)
        self.calibrations: dict[str, tuple[str, str]] = {}  # name -> (json path, plugin)
        self.plugins: dict[str, PluginInfo] = {}
        self.failures: list[PluginFailure] = []

    def add_component(self, kind: str, cls: type, plugin: str) -> None:
        base = BASES[kind]
        if not (isinstance(cls, type) and issubclass(cls, base)):
            raise PluginError(f"plugin {plugin!r} registered {cls!r} as a {kind}, but it is not a {base.__name__} subclass")
        name = getattr(cls, "name", "")
        if not name:
            raise PluginError(f"plugin {plugin!r} registered {cls.__name__} without a `name`")
        taken = self.components[kind].get(name)
        if taken is not None:
            raise PluginError(
                f"plugin {plugin!r} registered the {kind} {name!r}, but plugin {taken.plugin!r} "
                f"already registered that name ({taken.cls.__module__}.{taken.cls.__qualname__}); "
                "rename one of them or uninstall one plugin"
            )
        reg = Registration(kind, name, cls, plugin)
        self.components[kind][name] = reg
        self.plugins[plugin].components.append(reg)

    def add_engine(self, cls: type, plugin: str) -> None:
        if not (isinstance(cls, type) and issubclass(cls, Engine)):
            raise PluginError(f"plugin {plugin!r} registered {cls!r} as an engine, but it is not a "
                              "facekit.engine.Engine subclass")
        name = getattr(cls, "name", "")
        if not name:
            raise PluginError(f"plugin {plugin!r} registered the engine {cls.__name__} without a `name`")
        if name == LOCAL_ENGINE:
            raise PluginError(
                f"plugin {plugin!r} registered the engine {name!r} ({cls.__module__}.{cls.__qualname__}), but "
                f"{LOCAL_ENGINE!r} is facekit's name for this machine's engines (chosen by `workers`); rename it"
            )
        taken = self.engines.get(name)
        if taken is not None:
            raise PluginError(
                f"plugin {plugin!r} registered the engine {name!r}, but plugin {taken.plugin!r} "
                f"already registered that name ({taken.cls.__module__}.{taken.cls.__qualname__}); "
                "rename one of them or uninstall one plugin"
            )
        self.engines[name] = Registration("engine", name, cls, plugin)
        self.plugins[plugin].engines.append(name)

    def add_pipeline(self, name: str, yaml_text: str, plugin: str) -> None:
        if name in self.pipelines:
            raise PluginError(
                f"plugin {plugin!r} registered the pipeline {name!r}, already registered by {self.pipelines[name][1]!r}"
            )
        self.pipelines[name] = (yaml_text, plugin)
        self.plugins[plugin].pipelines.append(name)

    def add_calibration(self, name: str, path: str, plugin: str) -> None:
        if name in self.calibrations:
            raise PluginError(
                f"plugin {plugin!r} registered the calibration {name!r}, already registered by {self.calibrations[name][1]!r}"
            )
        self.calibrations[name] = (str(path), plugin)

    def names(self, kind: str) -> list[str]:
        return sorted(self.components[kind])

    def engine_names(self) -> list[str]:
        """``local`` first, then the engines plugins registered."""
        return [LOCAL_ENGINE, *sorted(self.engines)]

    def get_engine(self, name: str) -> Optional[type]:
        """The engine class registered under ``name``; None for ``local`` (the pipeline's own
        engines, as its ``workers`` setting picks them); a :class:`ConfigError` with the
        choices, and for an engine of facekit's own plugins how to install it, if unknown."""
        if name == LOCAL_ENGINE:
            return None
        registration = self.engines.get(name)
        if registration is not None:
            return registration.cls
        plugin = BUNDLED_ENGINES.get(name)
        broken = [f for f in self.failures if plugin is not None and f.name == plugin]
        choices = ", ".join(self.engine_names())
        if plugin is not None and not broken:
            raise ConfigError(
                f"unknown engine {name!r}: no installed plugin registers it - the {name!r} engine comes from "
                f"the facekit-{plugin} plugin. Install it with {install_hint(plugin)}. "
                f"`facekit plugins` lists what is loaded. Choices: {choices}."
            )
        message = unknown_name_message("engine", name, self.engine_names())
        for failure in broken:
            message += f" Plugin {failure.name!r} failed to load ({failure.error}); {failure.hint}."
        raise ConfigError(message)

    def missing_for_pipeline(self, name: str) -> list[str]:
        """The components a bundled pipeline names that no loaded plugin registers (empty: it loads)."""
        import yaml

        try:
            data = yaml.safe_load(self.pipelines[name][0])
        except yaml.YAMLError:
            return []  # a broken bundled pipeline is reported when it is loaded
        missing = []
        for field_name, kind in STAGE_KINDS.items():
            stage = data.get(field_name) if isinstance(data, dict) else None
            component = stage.get("name") if isinstance(stage, dict) else stage
            if isinstance(component, str) and component not in self.components[kind]:
                if (kind, component) not in OPTIONAL_BUNDLED_COMPONENTS:
                    missing.append(component)
        return missing

    def get(self, kind: str, name: str) -> type[Component]:
        """The class registered under ``name``; a :class:`ConfigError` with choices if unknown."""
        if kind not in self.components:
            raise ConfigError(f"unknown component kind {kind!r}; choose one of {', '.join(KINDS)}")
        try:
            return self.components[kind][name].cls
        except KeyError:
            raise ConfigError(unknown_name_message(kind, name, self.names(kind), self.failures)) from None


#: components of optional stages that facekit's own plugins provide, by (kind, name) -> plugin.
#: A bundled pipeline may name one whose plugin is not installed: it still compares and
#: embeds, and says what to install when the stage is used (the default pipeline's
#: explainer is Grad-CAM, from facekit-torch; compare and embed need no torch).
OPTIONAL_BUNDLED_COMPONENTS = {("explainer", "gradcam"): "torch"}

#: facekit's own plugins: they live in its repository, not on a package index
BUNDLED_PLUGIN_FOLDERS = {
    "dlib": "plugins/facekit-dlib",
    "torch": "plugins/facekit-torch",
    "mediapipe": "plugins/facekit-mediapipe",
    "ray": "plugins/facekit-ray",
}

#: the engine name for this machine: the pipeline's own engines (one process, or a pool of
#: worker processes, as its ``workers`` setting decides). No plugin may register it.
LOCAL_ENGINE = "local"
#: engines of facekit's own plugins, by name -> plugin, so a missing one says what to install
BUNDLED_ENGINES = {"ray": "ray"}


def install_hint(namespace: str) -> str:
    """How to install the plugin ``facekit-NAMESPACE`` (the one whose components are named ``namespace.*``)."""
    folder = BUNDLED_PLUGIN_FOLDERS.get(namespace)
    if folder is not None:
        return (f"`pip install -e {folder}` from the root of a facekit checkout "
                "(facekit's own plugins are in its repository, not on PyPI)")
    return f"`pip install facekit-{namespace}`, if such a plugin is published"


def unknown_name_message(kind: str, name: str, choices: list[str], failures: Iterable[PluginFailure] = ()) -> str:
    text = str(name)
    msg = f"unknown {kind} {text!r}"
    namespace = text.split(".")[0] if "." in text else None
    known_namespaces = {c.split(".")[0] for c in choices if "." in c}
    broken = [f for f in failures if namespace is not None and namespace in f.name]
    if namespace is not None and namespace not in known_namespaces and not broken:
        # nothing registered under that prefix: the plugin is missing, a near name would mislead
        return (
            f"{msg}: no installed plugin registers {kind}s named '{namespace}.*' - is it installed? "
            f"Install it with {install_hint(namespace)}. "
            "`facekit plugins` lists what is loaded. "
            f"Choices: {', '.join(choices) if choices else '(none registered)'}."
        )
    close = difflib.get_close_matches(text, choices, n=1, cutoff=0.6)
    if close:
        msg += f"; did you mean {close[0]!r}?"
    msg += f" Choices: {', '.join(choices) if choices else '(none registered)'}."
    for failure in broken:
        msg += f" Plugin {failure.name!r} failed to load ({failure.error}); {failure.hint}."
    return msg


def _hint_for(error: BaseException, distribution: Optional[str]) -> str:
    bundled = (distribution or "").removeprefix("facekit-")
    if isinstance(error, ImportError) and getattr(error, "name", None):
        if bundled in BUNDLED_PLUGIN_FOLDERS:
            return f"install the missing module {error.name!r} by reinstalling the plugin: {install_hint(bundled)}"
        return f"install the missing module {error.name!r} (e.g. `pip install {distribution or error.name}` with its dependencies)"
    return f"reinstall it (`pip install --force-reinstall {distribution}`)" if distribution else "check the plugin's code"


def _wanted_plugins() -> Optional[set[str]]:
    raw = os.environ.get("FACEKIT_LOAD_PLUGINS")
    if raw is None:
        return None
    return {part.strip() for part in raw.split(",") if part.strip()}


def _strict() -> bool:
    return os.environ.get("FACEKIT_STRICT_PLUGINS", "").lower() in {"1", "true", "yes"}


class PluginManager:
    """A pluggy manager plus the registry built from its hooks."""

    def __init__(self, load_entrypoints: bool = True, strict: Optional[bool] = None) -> None:
        self.pm = pluggy.PluginManager("facekit")
        self.pm.add_hookspecs(hookspecs)
        self.strict = _strict() if strict is None else strict
        self.failures: list[PluginFailure] = []
        self._meta: dict[str, tuple[Optional[str], Optional[str]]] = {}  # plugin -> (version, dist)
        for module_name in DEFAULT_PLUGINS:
            module = importlib.import_module(module_name)
            self.pm.register(module, name=module_name)
            self._meta[module_name] = (_facekit_version(), "facekit")
        if load_entrypoints:
            self._load_entrypoints()
        self._registry: Optional[Registry] = None
        self._lock = threading.RLock()

    def _load_entrypoints(self) -> None:
        wanted = _wanted_plugins()
        for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
            if wanted is not None and ep.name not in wanted:
                continue
            dist = ep.dist.name if ep.dist is not None else None
            version = ep.dist.version if ep.dist is not None else None
            if self.pm.get_plugin(ep.name) is not None:
                continue
            try:
                plugin = ep.load()
            except Exception as exc:  # a broken plugin must not take the others down
                self._fail(ep.name, dist, exc)
                continue
            self.pm.register(plugin, name=ep.name)
            self._meta[ep.name] = (version, dist)

    def _fail(self, name: str, dist: Optional[str], exc: BaseException) -> None:
        failure = PluginFailure(name, dist, f"{type(exc).__name__}: {exc}", _hint_for(exc, dist))
        if self.strict:
            raise PluginError(f"plugin {name!r} failed to load: {failure.error}; {failure.hint}") from exc
        self.failures.append(failure)
        warnings.warn(f"facekit plugin {name!r} failed to load ({failure.error}); {failure.hint}", stacklevel=3)

    def is_installed(self, plugin_name: str) -> bool:
        """Whether ``plugin_name`` is built in or came from an entry point, as opposed to a
        plugin registered in this process only, which a worker process would not see."""
        return self._meta.get(plugin_name, (None, None))[1] is not None

    def register(self, plugin: Any, name: Optional[str] = None) -> str:
        """Register a plugin object or module; returns its name."""
        with self._lock:
            plugin_name = self.pm.register(plugin, name=name)
            if plugin_name is None:
                raise PluginError(f"plugin {name or plugin!r} is already registered")
            self._meta.setdefault(plugin_name, (None, None))
            self._registry = None
            return plugin_name

    def unregister(self, name: str) -> None:
        with self._lock:
            self.pm.unregister(name=name)
            self._meta.pop(name, None)
            self._registry = None

    @property
    def registry(self) -> Registry:
        with self._lock:
            if self._registry is None:
                self._registry = self._build_registry()
            return self._registry

    def _build_registry(self) -> Registry:
        registry = Registry()
        registry.failures = list(self.failures)
        for plugin_name, (version, dist) in self._meta.items():
            registry.plugins[plugin_name] = PluginInfo(plugin_name, version, dist)
        hooks: list[tuple[str, Callable[[str], Callable[..., None]]]] = [
            (hook, (lambda kind: lambda plugin: lambda cls: registry.add_component(kind, cls, plugin))(kind))
            for kind, hook in _KIND_HOOKS.items()
        ]
        hooks.append(("register_engines", lambda plugin: lambda cls: registry.add_engine(cls, plugin)))
        hooks.append(
            ("register_pipelines", lambda plugin: lambda name, text: registry.add_pipeline(name, text, plugin))
        )
        hooks.append(
            ("register_calibrations", lambda plugin: lambda name, path: registry.add_calibration(name, path, plugin))
        )
        for hook_name, make_register in hooks:
            # Call each implementation on its own so we know which plugin registered what.
            for impl in getattr(self.pm.hook, hook_name).get_hookimpls():
                try:
                    impl.function(register=make_register(impl.plugin_name))
                except PluginError:
                    raise
                except Exception as exc:
                    failure = PluginFailure(impl.plugin_name, self._meta.get(impl.plugin_name, (None, None))[1],
                                            f"{type(exc).__name__}: {exc}", "check the plugin's code")
                    if self.strict:
                        raise PluginError(f"plugin {impl.plugin_name!r} failed in {hook_name}: {failure.error}") from exc
                    registry.failures.append(failure)
        return registry


def _facekit_version() -> Optional[str]:
    try:
        return metadata.version("facekit")
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a source tree
        return None


_manager: Optional[PluginManager] = None
_manager_lock = threading.Lock()


def get_plugin_manager() -> PluginManager:
    """The process-wide plugin manager, created (and entry points loaded) on first use."""
    global _manager
    with _manager_lock:
        if _manager is None:
            _manager = PluginManager()
        return _manager


def reset_plugin_manager() -> None:
    """Forget the plugin manager so the next use loads plugins again (tests, env changes)."""
    global _manager
    with _manager_lock:
        _manager = None


def get_registry() -> Registry:
    return get_plugin_manager().registry


def get_component_class(kind: str, name: str) -> type[Component]:
    return get_registry().get(kind, name)


def list_components(kind: str) -> list[str]:
    if kind not in KINDS:
        raise ConfigError(f"unknown component kind {kind!r}; choose one of {', '.join(KINDS)}")
    return get_registry().names(kind)

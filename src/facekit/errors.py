"""The exceptions facekit raises.

Every error facekit raises on purpose is a :class:`FacekitError`, so callers can
catch one type. Messages say what was wrong, where, and what to do about it.
"""

from __future__ import annotations


class FacekitError(Exception):
    """Base class of every facekit error."""

    #: exit status the CLI uses for this kind of error
    exit_code = 1


class ConfigError(FacekitError, ValueError):
    """A pipeline description (YAML or dict) is invalid."""

    exit_code = 2


class PluginError(FacekitError):
    """A plugin could not be loaded, or registered something twice."""

    exit_code = 2


class ImageError(FacekitError, ValueError):
    """An image could not be read or decoded."""

    exit_code = 3


class ModelFileError(FacekitError):
    """A model file is missing, corrupt or of the wrong shape."""

    exit_code = 4


class NoFaceError(FacekitError):
    """No face was found in an image."""

    exit_code = 5


class MultipleFacesError(FacekitError):
    """Several faces were found where the pipeline's policy asks for exactly one."""

    exit_code = 5


class EvaluationError(FacekitError, ValueError):
    """Labelled pairs or scores are not enough to measure something (e.g. a fold with one class)."""

    exit_code = 5


class DependencyError(FacekitError, ImportError):
    """A component needs a package that is not installed (or is the wrong version)."""

    exit_code = 2

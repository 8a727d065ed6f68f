"""Loading torch and choosing a device: one place for the plugin's components and training.

``import_torch(who)`` gives the ``torch`` module or a :class:`~facekit.errors.DependencyError`
that names the install command; ``choose_device(setting, who)`` turns a ``device`` setting
(``auto``, ``cpu`` or ``cuda``) into a ``torch.device``. ``who`` names the component or
command in the messages. Importing this module does not import torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from facekit.errors import ConfigError, DependencyError

if TYPE_CHECKING:  # pragma: no cover
    import torch

DEVICES = ("auto", "cpu", "cuda")


def import_torch(who: str = "the facekit-torch components") -> Any:
    """The ``torch`` module, or a :class:`DependencyError` saying how to install it."""
    try:
        import torch
    except ImportError as exc:
        raise DependencyError(
            f"{who} needs PyTorch, which could not be imported ({exc}); "
            "install it with `pip install torch` (see pytorch.org for CUDA builds)"
        ) from exc
    return torch


def choose_device(setting: str, who: str) -> "torch.device":
    """``auto``: CUDA if torch sees a CUDA device, else the CPU; ``cpu``; ``cuda`` (or a ConfigError if there is none)."""
    if setting not in DEVICES:
        raise ConfigError(f"{who}: unknown device {setting!r}; choose one of {', '.join(DEVICES)}")
    torch = import_torch(who)
    if setting == "cpu":
        return torch.device("cpu")
    if torch.cuda.is_available():
        return torch.device("cuda")
    if setting == "cuda":
        raise ConfigError(
            f"{who}: device 'cuda' was asked for, but torch {torch.__version__} sees no CUDA device; "
            "use `device: auto` or `device: cpu`, or install a CUDA build of torch (see pytorch.org)"
        )
    return torch.device("cpu")

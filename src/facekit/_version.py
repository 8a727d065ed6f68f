"""The version of facekit (one place: the package, its calibration files and reports read it here)."""

__version__ = "0.1.0"

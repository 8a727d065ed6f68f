"""Sphinx configuration for facekit's documentation.

Build: ``sphinx-build -W --keep-going -b html docs docs/_build/html``. The YAML and CLI
references are generated at build time from the code (``docs/_ext/facekit_docgen.py``),
from whatever plugins are installed: build in the environment of
``requirements-test.txt`` to document every bundled plugin.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(DOCS / "_ext"))
os.environ.setdefault("MPLBACKEND", "Agg")

project = "facekit"
author = "the facekit developers"
copyright = "2026, the facekit developers"
release = "0.1.0"

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
    "facekit_docgen",
]
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"show-inheritance": True}
nitpicky = False
html_theme = "furo"
html_title = "facekit"
html_static_path = ["_static"]
html_css_files = ["wrap.css"]  # long console commands wrap (see _static/wrap.css)
exclude_patterns = ["_build", "_ext"]

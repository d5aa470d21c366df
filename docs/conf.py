"""Sphinx configuration for posemum-aug (built with ``-W``: warnings are errors)."""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import posemum_aug  # noqa: E402

project = "posemum-aug"
author = "posemum-aug developers"
copyright = "2026, posemum-aug developers"
release = posemum_aug.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.doctest",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "figures",
    "public_api",
]

html_theme = "furo"
html_title = f"posemum-aug {release}"
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "show-inheritance": True}
napoleon_google_docstring = True
napoleon_numpy_docstring = False
nitpicky = False
exclude_patterns = ["_build"]
doctest_global_setup = "import torch\nfrom posemum_aug import *"

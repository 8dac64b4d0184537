"""Sphinx configuration of zoo's documentation site.

Build it with ``make docs`` (output in ``docs/_build/html``). The notebooks (``docs/notebooks``
is a link to the repository's ``notebooks/``) are rendered by myst-nb from their committed
outputs and never executed here: the test suite executes them (tests/test_notebooks.py). The
build treats every warning as an error in the tests (tests/test_docs.py), so a broken
cross-reference or docstring fails it.
"""

from __future__ import annotations

import sys
from datetime import date
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "_ext"))
sys.path.insert(0, str(HERE.parent))  # the zoo being documented, not an installed copy

import zoo  # noqa: E402

project = "zoo"
author = "the zoo developers"
copyright = f"{date.today().year}, {author}"
release = version = zoo.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.intersphinx",
    "sphinx.ext.mathjax",
    "numpydoc",
    "myst_nb",
    "zoo_docs",
    "sphinx-mathjax-offline",  # MathJax served from the site itself: it reads offline
]

source_suffix = {".rst": "restructuredtext", ".md": "myst-nb", ".ipynb": "myst-nb"}
exclude_patterns = ["_build", "_generated/README*", "**.ipynb_checkpoints", "notebooks/README*"]
root_doc = "index"

# Notebooks: rendered from their committed outputs, never executed by the build.
nb_execution_mode = "off"
nb_merge_streams = True
myst_enable_extensions = ["colon_fence", "dollarmath"]
myst_heading_anchors = 3

# API reference: numpydoc reads the docstrings; autosummary writes one page per object.
autosummary_generate = True
autodoc_default_options = {"members": True, "undoc-members": False, "show-inheritance": False}
autodoc_typehints = "none"  # numpydoc's Parameters sections say the types
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_validation_checks: set[str] = set()

# No network at build time: intersphinx has no inventories to fetch; links stay plain text.
intersphinx_mapping: dict[str, tuple[str, None]] = {}

html_theme = "furo"
html_title = f"zoo {release}"
html_static_path = ["_static"]
html_css_files = ["zoo.css"]
html_theme_options = {"sidebar_hide_name": False, "navigation_with_keys": True}
html_last_updated_fmt = "%Y-%m-%d"


"""Sphinx configuration for sklearn_relu (builds offline with ``sphinx-build -W``)."""

import os
import sys
from pathlib import Path

import sklearn_relu

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS.parent))

project = "sklearn_relu"
author = "sklearn_relu developers"
copyright = "2026, sklearn_relu developers"
version = release = sklearn_relu.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
]

# Cross-links to scikit-learn, NumPy and joblib need their inventories from the
# network; off by default so that the build passes offline with -W.
if os.environ.get("SKLEARN_RELU_INTERSPHINX") == "1":
    extensions.append("sphinx.ext.intersphinx")
    intersphinx_mapping = {
        "python": ("https://docs.python.org/3", None),
        "numpy": ("https://numpy.org/doc/stable", None),
        "sklearn": ("https://scikit-learn.org/stable", None),
        "joblib": ("https://joblib.readthedocs.io/en/stable", None),
    }

autosummary_generate = True
autodoc_default_options = {}
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False

exclude_patterns = ["_build", "auto_examples/*.ipynb", "auto_examples/*.py",
                    "auto_examples/*.zip", "auto_examples/*.json",
                    "auto_examples/*.md5", "auto_examples/*.codeobj.json"]
templates_path = ["_templates"]

html_theme = "pydata_sphinx_theme"
html_title = "sklearn_relu"
html_theme_options = {"navigation_with_keys": False, "show_toc_level": 2}

sphinx_gallery_conf = {
    "examples_dirs": "../examples",
    "gallery_dirs": "auto_examples",
    # Only the light plot_* examples run at build time; the paper reproductions
    # (reproduce_*.py) are shown with the figures their last run saved in
    # docs/figures/, and demo.py as code.
    "filename_pattern": r"/plot_",
    # _tracing.py is the reproductions' shared helper, not an example.
    "ignore_pattern": r"__init__\.py|_tracing\.py",
    "download_all_examples": False,
    "remove_config_comments": True,
    "plot_gallery": "True",
    "image_scrapers": ("matplotlib",),
    "matplotlib_animations": False,
    "reset_modules": ("matplotlib",),
    # "Examples using X" under each API page.
    "backreferences_dir": "generated/backreferences",
    "doc_module": ("sklearn_relu",),
}

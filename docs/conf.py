"""Sphinx configuration for radiofm (sphinx-astropy, offline by default)."""

import os
from importlib.metadata import version as installed_version

from sphinx_astropy.conf.v2 import *  # noqa: F403

project = "radiofm"
author = "The radiofm developers"
copyright = "2026, The radiofm developers"
release = installed_version("radiofm")
version = ".".join(release.split(".")[:2])

extensions += ["sphinx_automodapi.smart_resolver"]  # noqa: F405

# The build machines have no internet: cross-links to other projects' docs are off unless
# RADIOFM_DOCS_ONLINE is set, so that ``sphinx-build -W`` holds offline.
if not os.environ.get("RADIOFM_DOCS_ONLINE"):
    intersphinx_mapping = {}
    nitpicky = False
# Inheritance diagrams need graphviz's ``dot``, which these machines lack.
automodapi_inheritance_diagram = False
automodsumm_inherited_members = False
numpydoc_show_class_members = False

html_theme_options = {"github_url": "https://github.com/radiofm/radiofm"}
html_title = f"radiofm {release}"
exclude_patterns = ["_build"]

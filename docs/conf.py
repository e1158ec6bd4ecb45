"""Sphinx configuration for radiofm (sphinx-astropy, offline by default)."""

import os
from importlib.metadata import version as installed_version

from sphinx_astropy.conf.v2 import *  # noqa: F403

# The API pages of radiofm.train and radiofm.export import torch, timm and onnx. Where they
# are not installed (a docs environment without the 6 GB train extra), Sphinx's mock modules
# stand in for them, so the pages still build from the docstrings.
TRAIN_MODULES = ["torch", "torchvision", "timm", "onnx", "onnxscript"]
autodoc_mock_imports = []
for _name in TRAIN_MODULES:
    try:
        __import__(_name)
    except ImportError:
        autodoc_mock_imports.append(_name)
if autodoc_mock_imports:
    # automodapi imports the modules itself: import them once with the mocks in place. The
    # mocks leave sys.modules again on exit, as scipy takes any module named torch for torch.
    from sphinx.ext.autodoc.mock import mock

    with mock(autodoc_mock_imports):
        import radiofm.export
        import radiofm.train  # noqa: F401

project = "radiofm"
author = "The radiofm developers"
copyright = "2026, The radiofm developers"
release = installed_version("radiofm")
version = ".".join(release.split(".")[:2])

# sphinx-astropy already loads smart_resolver and matplotlib's plot directive (the figures
# of tutorial.rst and survey.rst, made when the docs are built)
extensions += ["sphinxarg.ext"]  # noqa: F405  # the CLI reference, from radiofm.cli.build_parser
plot_include_source = True
plot_html_show_source_link = False
plot_html_show_formats = False
plot_formats = [("png", 100)]

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

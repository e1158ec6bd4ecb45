"""Shared pytest configuration: the astropy test header and the real-data fixture."""

import os
from pathlib import Path

import pytest

from radiofm._optional_deps import HAS_ONNX, HAS_TIMM, HAS_TORCH

try:
    from pytest_astropy_header.display import PYTEST_HEADER_MODULES, TESTED_VERSIONS
except ImportError:  # pytest-astropy-header is optional for running the tests
    PYTEST_HEADER_MODULES, TESTED_VERSIONS = {}, {}


# Without the train extra, radiofm.train and radiofm.export (and their tests and doctests)
# cannot even be imported: the base install (tox env py311-test-base) skips them whole.
collect_ignore = [] if HAS_TORCH and HAS_TIMM and HAS_ONNX else ["train", "export"]


def pytest_configure(config):
    """Show the versions that matter for radiofm in the pytest header."""
    config.option.astropy_header = True
    PYTEST_HEADER_MODULES.clear()
    for name in ("numpy", "astropy", "photutils", "regions", "onnxruntime", "scikit-learn",
                 "matplotlib", "torch", "timm", "bdsf"):
        PYTEST_HEADER_MODULES[name] = name.replace("-", "_").replace("scikit_learn", "sklearn")
    from radiofm import __version__

    TESTED_VERSIONS["radiofm"] = __version__


def shared_data_root():
    """Where the real data lives: $RADIOFM_DATA, else ../shared/data from the working dir."""
    return Path(os.environ.get("RADIOFM_DATA", Path("..") / "shared" / "data")).resolve()


@pytest.fixture(scope="session")
def tiny_model():
    """Path of the tiny ONNX model committed as a fixture (no torch needed); tests that
    change it work on a copy."""
    from radiofm.tests.model_helpers import TINY_MODEL

    return TINY_MODEL


@pytest.fixture(scope="session")
def repo_root(request):
    """The repository clone (pytest's rootdir), for tests of its configs/ and scripts/; skips
    when the tests run from an installed package without a clone beside them."""
    root = Path(request.config.rootpath)
    if not ((root / "configs").is_dir() and (root / "scripts").is_dir()):
        pytest.skip(f"no repository clone at {root} (configs/ and scripts/); run the tests "
                    "with --rootdir at a clone, as tox does")
    return root


@pytest.fixture(scope="session")
def repo_script(repo_root):
    """``repo_script(name)``: the clone's ``scripts/<name>.py`` as a module (scripts are not
    part of the package)."""
    import importlib.util

    def load(name):
        spec = importlib.util.spec_from_file_location(name, repo_root / "scripts" / f"{name}.py")
        script = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(script)
        return script

    return load


@pytest.fixture(scope="session")
def shared_data():
    """Path of the read-only real data folder; skips the test when it is absent."""
    root = shared_data_root()
    if not root.is_dir():
        pytest.skip(
            f"real data folder {root} is absent; set RADIOFM_DATA to the shared/data folder "
            "to run this test"
        )
    return root

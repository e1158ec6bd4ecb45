import pytest

from radiofm.tests.model_helpers import export_tiny_model


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    """Path of a tiny model exported once per session (needs the train extra)."""
    pytest.importorskip("torch")
    pytest.importorskip("timm")
    path = tmp_path_factory.mktemp("models") / "tiny.onnx"
    export_tiny_model(path)
    return path

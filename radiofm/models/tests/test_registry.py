"""The model registry: names, the default model, and the sha256 refusal."""

import hashlib
import shutil

import pytest

from radiofm.inference import load_model
from radiofm.models import (
    ModelRegistry,
    _registry,
    file_sha256,
    resolve_model,
)


def test_a_registry_without_a_default_says_so(tmp_path):
    empty = ModelRegistry(tmp_path)
    assert empty.names() == []
    with pytest.raises(ValueError, match="no default model is bundled"):
        resolve_model("default", registry=empty)


def test_registered_model_resolves_and_loads(tiny_model, tmp_path):
    shutil.copy(tiny_model, tmp_path / "tiny.onnx")
    registry = ModelRegistry(tmp_path)
    registry.add("tiny-v1", tmp_path / "tiny.onnx", description="a test model", default=True)
    reread = ModelRegistry(tmp_path)
    assert reread.names() == ["tiny-v1"]
    assert reread.entry("default")["name"] == "tiny-v1"
    path, name = resolve_model("tiny-v1", registry=reread)
    assert path == tmp_path / "tiny.onnx" and name == "tiny-v1"
    model = load_model("default", registry=reread, threads=1)
    assert model.name == "tiny-v1"
    assert model.sha256 == hashlib.sha256((tmp_path / "tiny.onnx").read_bytes()).hexdigest()


def test_bundled_default_resolves_once_shipped(tiny_model, tmp_path, monkeypatch):
    shutil.copy(tiny_model, tmp_path / "shipped.onnx")
    ModelRegistry(tmp_path).add("shipped", tmp_path / "shipped.onnx", default=True)
    monkeypatch.setattr(_registry, "DATA_DIR", tmp_path)
    assert load_model("default", threads=1).name == "shipped"


def test_a_file_that_fails_its_sha256_is_refused(tiny_model, tmp_path):
    shutil.copy(tiny_model, tmp_path / "tiny.onnx")
    registry = ModelRegistry(tmp_path)
    registry.add("tiny", tmp_path / "tiny.onnx")
    with open(tmp_path / "tiny.onnx", "ab") as stream:  # a changed file, same name
        stream.write(b"\0")
    with pytest.raises(ValueError, match="sha256.*Refusing to load it"):
        load_model("tiny", registry=registry, threads=1)
    (tmp_path / "tiny.onnx").unlink()
    with pytest.raises(FileNotFoundError, match="is missing"):
        load_model("tiny", registry=registry)


def test_unknown_names_and_paths(tiny_model, tmp_path):
    registry = ModelRegistry(tmp_path)
    with pytest.raises(ValueError, match="no model named 'nope'.*registered: none"):
        resolve_model("nope", registry=registry)
    with pytest.raises(FileNotFoundError, match="no such model file"):
        resolve_model(tmp_path / "absent.onnx")
    with pytest.raises(ValueError, match="reserved"):
        registry.add("default", tiny_model)
    with pytest.raises(ValueError, match="not inside the registry folder"):
        registry.add("outside", tiny_model)
    path, name = resolve_model(str(tiny_model))
    assert path == tiny_model and name == "tiny"


def test_file_sha256_matches_hashlib(tmp_path):
    path = tmp_path / "bytes.bin"
    path.write_bytes(b"radiofm" * 1000)
    assert file_sha256(path) == hashlib.sha256(b"radiofm" * 1000).hexdigest()
    path.write_bytes(b"changed")  # the cache notices a changed file
    assert file_sha256(path) == hashlib.sha256(b"changed").hexdigest()


def test_a_registration_keeps_those_made_since_the_registry_was_read(tiny_model, tmp_path):
    """Two registry objects of one folder (two processes): the later add keeps the earlier."""
    shutil.copy(tiny_model, tmp_path / "first.onnx")
    shutil.copy(tiny_model, tmp_path / "second.onnx")
    stale = ModelRegistry(tmp_path)  # read before "first" was registered
    ModelRegistry(tmp_path).add("first", tmp_path / "first.onnx", default=True)
    stale.add("second", tmp_path / "second.onnx")
    reread = ModelRegistry(tmp_path)
    assert reread.names() == stale.names() == ["first", "second"]
    assert reread.entry("default")["name"] == "first"
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        ".registry.lock", "first.onnx", "registry.json", "second.onnx"]


_REGISTERING_PROCESS = """
import pathlib, sys, time
from radiofm.models import ModelRegistry
folder, worker = pathlib.Path(sys.argv[1]), sys.argv[2]
while not (folder / "go").exists():
    time.sleep(0.01)
for k in range(5):
    ModelRegistry(folder).add(f"{worker}-{k}", folder / "tiny.onnx")
"""


def test_registrations_from_several_processes_at_once_are_all_kept(tiny_model, tmp_path):
    import subprocess
    import sys

    shutil.copy(tiny_model, tmp_path / "tiny.onnx")
    workers = [subprocess.Popen([sys.executable, "-c", _REGISTERING_PROCESS, str(tmp_path),
                                 f"w{n}"]) for n in range(4)]
    (tmp_path / "go").touch()
    assert [worker.wait(timeout=120) for worker in workers] == [0] * 4
    assert ModelRegistry(tmp_path).names() == sorted(f"w{n}-{k}" for n in range(4)
                                                     for k in range(5))

"""The bad-input suite, models: damaged, tampered or inconsistent ONNX files are refused at
load with one line; the hash a model records is the hash of the bytes that run."""

import hashlib
import logging
import os
import shutil

import numpy as np
import pytest

from radiofm.inference import load_model
from radiofm.inference._session import clear_cache
from radiofm.models import ModelMetadataError, ModelRegistry, graph_sha256

onnx = pytest.importorskip("onnx")


def _copy(tiny_model, tmp_path, name="model.onnx"):
    target = tmp_path / name
    shutil.copyfile(tiny_model, target)
    return target


def _flip_weight(tiny_model, tmp_path):
    """One flipped bit inside the largest weight tensor (the protobuf stays readable)."""
    path = _copy(tiny_model, tmp_path)
    raw = bytearray(path.read_bytes())
    tensor = max(onnx.load(path).graph.initializer, key=lambda t: len(t.raw_data))
    start = bytes(raw).find(tensor.raw_data[:256])
    assert start > 0
    raw[start + 100] ^= 0x01
    path.write_bytes(bytes(raw))
    return path


def _with_metadata(tiny_model, tmp_path, **changes):
    path = _copy(tiny_model, tmp_path)
    proto = onnx.load(path)
    props = {p.key: p.value for p in proto.metadata_props}
    for key, value in changes.items():
        if value is None:
            props.pop(key, None)
        else:
            props[key] = value
    del proto.metadata_props[:]
    onnx.helper.set_model_props(proto, props)
    onnx.save(proto, path)
    return path


def _truncated(tiny_model, tmp_path):
    path = _copy(tiny_model, tmp_path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return path


def _text(tiny_model, tmp_path):
    path = tmp_path / "model.onnx"
    path.write_text("not a model\n")
    return path


MODEL_CASES = {
    "weight-bit-flip": (_flip_weight, ValueError,
                        "its weights have sha256 .* but its metadata records"),
    "truncated": (_truncated, ValueError, "not a model onnxruntime can load"),
    "text-file": (_text, ValueError, "not a model onnxruntime can load"),
    "missing": (lambda m, t: t / "absent.onnx", FileNotFoundError, "no such model file"),
    "embedding-dim-contradicts-graph": (
        lambda m, t: _with_metadata(m, t, embedding_dim="95"), ModelMetadataError,
        "metadata and graph disagree: embedding axis 1 is 96 in the graph but 95"),
    "class-names-contradict-graph": (
        lambda m, t: _with_metadata(m, t, class_names='["FRI", "FRII", "compact"]'),
        ModelMetadataError, "morph_logits axis 1 is 4 in the graph but 3"),
    "input-pixels-contradict-graph": (
        lambda m, t: _with_metadata(m, t, input_pixels="64"), ModelMetadataError,
        "tiles axis 2 is 32 in the graph but 64"),
    "metadata-key-missing": (lambda m, t: _with_metadata(m, t, arch=None),
                             ModelMetadataError, r"lacks radiofm metadata \['arch'\]"),
    "weights-hash-tampered": (lambda m, t: _with_metadata(m, t, weights_sha256="0" * 64),
                              ValueError, "but its metadata records 0000"),
    "unknown-name": (lambda m, t: "no-such-model", ValueError, "no model named 'no-such-model'"),
}


@pytest.mark.parametrize("name", sorted(MODEL_CASES))
def test_model_case(name, tiny_model, tmp_path):
    build, expected, fragment = MODEL_CASES[name]
    model = build(tiny_model, tmp_path)
    with pytest.raises(expected, match=fragment) as error:
        load_model(model, threads=1)
    assert "\n" not in str(error.value)


def test_good_model_records_the_hash_of_its_bytes(tiny_model):
    model = load_model(tiny_model, threads=1)
    content = tiny_model.read_bytes()
    assert model.sha256 == hashlib.sha256(content).hexdigest()
    assert model.metadata["weights_sha256"] == graph_sha256(content)


def test_model_without_weights_hash_loads_with_a_warning(tiny_model, tmp_path, caplog):
    path = _with_metadata(tiny_model, tmp_path, weights_sha256=None)
    with caplog.at_level(logging.WARNING, logger="radiofm"):
        model = load_model(path, threads=1)
    assert "carries no weights_sha256" in caplog.text
    tiles = np.zeros((2, 1, 32, 32), np.float32)
    reference = load_model(tiny_model, threads=1).run(tiles)["embedding"]
    np.testing.assert_array_equal(model.run(tiles)["embedding"], reference)


def test_wrong_tile_shape_is_refused(tiny_model):
    with pytest.raises(ValueError, match=r"takes tiles shaped \(B, 1, 32, 32\)"):
        load_model(tiny_model, threads=1).run(np.zeros((2, 1, 16, 16), np.float32))


def test_registered_model_changed_in_place_is_refused(tiny_model, tmp_path):
    """Same size, same modification time: the change is still caught (no hash cache)."""
    folder = tmp_path / "registry"
    folder.mkdir()
    path = _copy(tiny_model, folder, "tiny.onnx")
    registry = ModelRegistry(folder)
    registry.add("tiny", path, default=True)
    first = load_model("tiny", threads=1, registry=registry)
    stat = path.stat()
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    path.write_bytes(bytes(raw))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    with pytest.raises(ValueError, match="but the registry expects"):
        registry.path("tiny")
    clear_cache()  # a new session object hashes the file again
    with pytest.raises(ValueError, match="but the registry expects"):
        load_model("tiny", threads=1, registry=registry)
    assert first.sha256 == registry.entry("tiny")["sha256"]

"""Export to ONNX: graph, heads, metadata, parity check, quantisation and checkpoints."""

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("timm")
onnx = pytest.importorskip("onnx")

import onnxruntime as ort  # noqa: E402

from radiofm.export import (  # noqa: E402
    ExportGraph,
    TorchEmbedder,
    _export,
    checkpoint_embedder,
    export_checkpoint,
    export_model,
    load_checkpoint,
    model_spec,
    parity_tiles,
)
from radiofm.inference import load_model  # noqa: E402
from radiofm.tests.model_helpers import (  # noqa: E402
    CLASSES,
    INPUT_SIZE,
    TINY_CHANNELS,
    export_tiny_model,
    random_tiles,
    tiny_backbone,
    tiny_heads,
    tiny_spec,
)
from radiofm.train import TrainConfig, save_checkpoint  # noqa: E402


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    path = tmp_path_factory.mktemp("export") / "tiny.onnx"
    backbone, heads, report = export_tiny_model(path, quantize=True)
    return path, backbone, heads, report


def test_graph_has_a_dynamic_batch_and_passes_the_checker(exported):
    path, *_ = exported
    proto = onnx.load(path)
    onnx.checker.check_model(proto, full_check=True)
    (tiles,) = proto.graph.input
    dims = tiles.type.tensor_type.shape.dim
    assert tiles.name == "tiles" and dims[0].dim_param and not dims[0].dim_value
    assert [d.dim_value for d in dims[1:]] == [1, INPUT_SIZE, INPUT_SIZE]
    assert [o.name for o in proto.graph.output] == ["embedding", "n_compact", "morph_logits"]


def test_outputs_match_torch_and_the_heads_for_any_batch(exported):
    path, backbone, heads, _ = exported
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for count in (1, 5):
        tiles = random_tiles(count, seed=count)
        embedding, n_compact, logits = session.run(None, {"tiles": tiles})
        assert embedding.shape == (count, 96) and n_compact.shape == (count,)
        assert logits.shape == (count, len(CLASSES))
        with torch.no_grad():
            reference = backbone(torch.from_numpy(tiles)).numpy()
        np.testing.assert_allclose(embedding, reference, atol=1e-5)
        e = embedding.astype(np.float64)
        np.testing.assert_allclose(n_compact, e @ heads["count"]["coef"] + 2.0, atol=1e-4)
        expected = e @ heads["morphology"]["coef"].T + heads["morphology"]["intercept"]
        np.testing.assert_allclose(logits, expected, atol=1e-4)


def test_metadata_carries_what_inference_needs(exported):
    path, _, _, report = exported
    model = load_model(path, threads=1)
    meta = model.metadata
    assert meta["name"] == "tiny" and meta["arch"] == "test_resnet"
    assert meta["input_pixels"] == INPUT_SIZE and meta["embedding_dim"] == 96
    assert meta["tile_arcsec"] == 35.2 and meta["stamp_arcsec"] == 44.0
    assert meta["metadata_version"] == 2 and model.spec == tiny_spec()
    assert meta["normalization"]["method"] == "percentile"
    assert meta["normalization"]["lower"] == 2.0 and meta["normalization"]["upper"] == 98.0
    assert meta["pixel_scale_range_arcsec"] == pytest.approx([0.55, 2.2])
    assert meta["class_names"] == CLASSES
    assert meta["train_config"] == {"model": {"arch": "test_resnet"}}
    assert meta["quantization"] == "none"
    assert meta["parity_max_abs_diff"] == max(report["parity_max_abs_diff"].values()) < 1e-4


def test_int8_outputs_do_not_depend_on_the_batch(exported):
    # dynamic int8 scales activations over the whole input: run alone, a tile must give
    # what it gives among brighter neighbours
    model = load_model(exported[0].with_name("tiny-int8.onnx"), threads=1)
    tiles = random_tiles(6)
    tiles[1:] *= 20.0
    together = model.run(tiles)
    alone = model.run(tiles[:1])
    for key in together:
        np.testing.assert_array_equal(together[key][:1], alone[key])


def test_int8_model_is_written_with_its_differences(exported):
    path, _, _, report = exported
    quantized = load_model(report["quantized_path"], threads=1)
    assert report["quantized_path"] == path.with_name("tiny-int8.onnx")
    assert quantized.metadata["quantization"] == "int8-dynamic"
    diffs = quantized.metadata["quantized_max_abs_diff"]
    assert set(diffs) == {"embedding", "n_compact", "morph_logits", "morph_class_agreement"}
    assert 0 <= diffs["morph_class_agreement"] <= 1
    assert quantized.run(random_tiles(3))["embedding"].shape == (3, 96)


def test_a_failed_parity_check_writes_nothing(tmp_path, monkeypatch):
    real = _export._session_outputs

    def drifting(model_bytes, tiles, batch_size=32):
        outputs = real(model_bytes, tiles, batch_size)
        outputs["morph_logits"] = outputs["morph_logits"] + 0.01
        return outputs

    monkeypatch.setattr(_export, "_session_outputs", drifting)
    with pytest.raises(ValueError, match="parity check failed.*morph_logits.*nothing written"):
        export_tiny_model(tmp_path / "bad.onnx")
    assert not (tmp_path / "bad.onnx").exists()


def test_bad_heads_and_options_are_refused(tmp_path, exported):
    backbone = tiny_backbone()
    heads = tiny_heads(96)
    options = dict(name="x", arch="test_resnet", spec=tiny_spec(), tiles=random_tiles())
    wrong_dim = tiny_heads(95)
    with pytest.raises(ValueError, match=r"count coef is \(95,\), expected \(96,\)"):
        export_model(backbone, wrong_dim, tmp_path / "a.onnx", **options)
    twins = tiny_heads(96, classes=["FRI", "FRI", "b", "c"])
    with pytest.raises(ValueError, match="distinct class names"):
        export_model(backbone, twins, tmp_path / "a.onnx", **options)
    del heads["count"]["tile_arcsec"]
    with pytest.raises(ValueError, match="heads lack 'tile_arcsec'"):
        export_model(backbone, heads, tmp_path / "a.onnx", **options)
    with pytest.raises(ValueError, match="heads do not match the model spec: count head tiles"):
        export_model(backbone, tiny_heads(96), tmp_path / "a.onnx",
                     **{**options, "spec": tiny_spec(tile_arcsec=70.4)})
    with pytest.raises(ValueError, match="parity tiles must be"):
        export_model(backbone, tiny_heads(96), tmp_path / "a.onnx",
                     **{**options, "tiles": random_tiles()[:, :, :16, :16]})
    with pytest.raises(FileExistsError, match="pass overwrite=True"):
        export_model(backbone, tiny_heads(96), exported[0], **options)


def test_parity_tiles_from_a_simulated_sky_without_data(tmp_path):
    spec = tiny_spec(input_pixels=16, normalization="snr")
    tiles, source = parity_tiles(spec, root=tmp_path, count=10)
    assert tiles.shape == (10, 1, 16, 16) and tiles.dtype == np.float32
    assert "simulated" in source and np.isfinite(tiles).all() and tiles.std() > 0


def test_parity_tiles_from_first_fields(shared_data):
    spec = tiny_spec(tile_arcsec=115.2, pixel_scale_range_arcsec=(0.9, 3.6))
    tiles, source = parity_tiles(spec, root=shared_data, count=40)
    assert tiles.shape == (40, 1, 32, 32) and "FIRST" in source
    assert 0 <= tiles.min() and tiles.max() <= 1


def write_run(folder, backbone, *, finished=True):
    """A training run folder as radiofm.train leaves it (teacher_backbone.pt or checkpoint.pt)."""
    config = TrainConfig().to_dict()
    config["model"].update(arch="test_resnet", patch_size=8,
                           timm_options={"channels": list(TINY_CHANNELS)})
    config["data"].update(tile_size=48, normalization="snr")
    config["crops"].update(global_size=INPUT_SIZE, local_size=16)
    folder.mkdir()
    data = json.dumps({"simulated": {"tiles": 12, "share": 1.0}})
    if finished:
        save_checkpoint({"model": {"arch": "test_resnet", "patch_size": 8,
                                   "timm_options": {"channels": list(TINY_CHANNELS)},
                                   "num_features": 96},
                         "state_dict": backbone.state_dict(), "config": config,
                         "radiofm_version": "0.1", "data": data}, folder / "teacher_backbone.pt")
    else:
        teacher = {f"backbone.{k}": v for k, v in backbone.state_dict().items()}
        teacher["head.last_layer.weight"] = torch.zeros(3)
        save_checkpoint({"teacher": teacher, "config": config, "step": 5, "data": data},
                        folder / "checkpoint.pt")
    return folder


@pytest.mark.parametrize("finished", [True, False])
def test_export_checkpoint_writes_the_teacher_with_its_spec(tmp_path, finished):
    backbone = tiny_backbone(seed=3)
    run = write_run(tmp_path / "run-a", backbone, finished=finished)
    embedder = checkpoint_embedder(run)
    stamps = random_tiles(4)[:, 0]
    with torch.no_grad():
        expected = backbone(torch.from_numpy(stamps[:, None])).numpy()
    np.testing.assert_allclose(embedder.embed(stamps), expected, atol=1e-6)
    assert isinstance(embedder, TorchEmbedder) and embedder.input_size == INPUT_SIZE
    assert embedder.normalization.method == "snr"
    heads = tiny_heads(96)
    heads["count"]["pixel_scales_arcsec"] = [1.1]
    from radiofm.tests.model_helpers import numpy_heads

    report = export_checkpoint(run, heads=heads, numpy_heads=numpy_heads(96), root=tmp_path,
                               tolerance=1e-4)
    assert report["path"] == run / "run-a.onnx"
    model = load_model(report["path"], threads=1)
    meta = model.metadata
    assert model.spec == model_spec(meta["train_config"], heads)
    assert model.spec.normalization.method == "snr" and model.spec.normalization.softening == 1
    assert meta["train_config"]["data"]["tile_size"] == 48
    assert meta["data_summary"]["simulated"]["tiles"] == 12
    assert "simulated" in report["parity_source"]
    # the numpy heads inference applies are in the metadata
    assert model.heads is not None and model.outputs == ("embedding",)
    assert meta["heads"]["counts"]["kind"] == "poisson-glm"


def test_load_checkpoint_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "absent.pt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="neither teacher_backbone.pt nor"):
        load_checkpoint(tmp_path / "empty")
    torch.save({"weights": 1}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a radiofm checkpoint"):
        load_checkpoint(tmp_path / "other.pt")


def test_export_graph_applies_heads_like_numpy():
    backbone = tiny_backbone()
    heads = _export._check_heads(tiny_heads(96), 96)
    graph = ExportGraph(backbone, heads).eval()
    with torch.no_grad():
        embedding, count, logits = graph(torch.from_numpy(random_tiles(2)))
    e = embedding.double().numpy()
    np.testing.assert_allclose(count.numpy(), e @ heads["count"]["coef"] + 2.0, atol=1e-5)
    assert logits.shape == (2, 4)


def test_default_pixel_scales_follow_the_images_the_heads_were_fitted_on():
    heads = tiny_heads(96)
    heads["count"]["pixel_scales_arcsec"] = [1.1, 1.8]  # as fit_heads: simulated and FIRST
    config = {"crops": {"global_size": INPUT_SIZE}, "data": {"normalization": "percentile"}}
    spec = model_spec(config, heads)
    assert spec.pixel_scale_range_arcsec == pytest.approx((0.55, 3.6))
    del heads["count"]["pixel_scales_arcsec"]
    with pytest.raises(ValueError, match="pass pixel_scale_range_arcsec"):
        model_spec(config, heads)
    assert model_spec(config, heads, pixel_scale_range_arcsec=(1, 2)).input_pixels == INPUT_SIZE


def test_half_weight_model_is_half_the_size_and_close_to_float32(tmp_path):
    path = tmp_path / "tiny.onnx"
    _, _, report = export_tiny_model(path, half_weights=True)
    assert report["half_path"] == tmp_path / "tiny-fp16.onnx"
    assert report["half_path"].stat().st_size < 0.6 * path.stat().st_size
    halved = onnx.load(report["half_path"])
    kinds = {i.name: i.data_type for i in halved.graph.initializer}
    big = [i for i in halved.graph.initializer if np.prod(i.dims) >= _export.HALF_MIN_VALUES]
    assert big and {i.data_type for i in big} == {onnx.TensorProto.FLOAT16}
    # the heads stay float32: their folded weights can be large
    assert kinds["morphology.weight"] == kinds["count.weight"] == onnx.TensorProto.FLOAT
    full, half = load_model(path, threads=1), load_model(report["half_path"], threads=1)
    assert half.metadata["quantization"] == "fp16-weights"
    diffs = half.metadata["quantized_max_abs_diff"]
    assert diffs["morph_class_agreement"] == 1.0
    tiles = random_tiles(5, seed=3)
    a, b = full.run(tiles), half.run(tiles)
    np.testing.assert_allclose(b["embedding"], a["embedding"], atol=5e-3, rtol=5e-3)
    assert not np.array_equal(b["embedding"], a["embedding"])  # the weights really changed
    # float16 storage keeps the graph float32: a tile gives the same outputs in any batch
    np.testing.assert_allclose(half.run(tiles[:1])["embedding"], b["embedding"][:1], atol=1e-6)


def test_half_weights_keep_large_values_and_small_tensors_as_float32():
    from onnx import helper, numpy_helper

    shape = (64, 64)  # HALF_MIN_VALUES values
    big = numpy_helper.from_array(np.full(shape, 1e6, np.float32), "big")
    small = numpy_helper.from_array(np.full(shape, 0.5, np.float32), "small")
    few = numpy_helper.from_array(np.full((1, 64), 0.1, np.float32), "few")
    add = helper.make_node("Add", ["big", "small"], ["sum"])
    node = helper.make_node("Add", ["sum", "few"], ["out"])
    graph = helper.make_graph([add, node], "g", [], [helper.make_tensor_value_info(
        "out", onnx.TensorProto.FLOAT, shape)], initializer=[big, small, few])
    halved = _export._halve_weights(helper.make_model(graph))
    kinds = {i.name: i.data_type for i in halved.graph.initializer}
    assert kinds == {"big": onnx.TensorProto.FLOAT, "small__fp16": onnx.TensorProto.FLOAT16,
                     "few": onnx.TensorProto.FLOAT}
    onnx.checker.check_model(halved, full_check=True)
    session = ort.InferenceSession(halved.SerializeToString(), providers=["CPUExecutionProvider"])
    expected = np.float32(1e6) + np.float32(0.5) + np.float32(0.1)
    np.testing.assert_array_equal(session.run(None, {})[0], np.full(shape, expected))


def test_views_must_be_one_or_eight(tmp_path):
    with pytest.raises(ValueError, match="views must be one of"):
        export_tiny_model(tmp_path / "m.onnx", spec=tiny_spec(views=4))
    assert not (tmp_path / "m.onnx").exists()


def _stage_means(backbone, tiles, layers):
    """The spatial mean of each named layer's output, concatenated (forward hooks)."""
    maps = {}
    hooks = [getattr(backbone, name).register_forward_hook(
        lambda module, args, out, name=name: maps.__setitem__(name, out)) for name in layers]
    with torch.no_grad():
        backbone(torch.from_numpy(tiles))
    for hook in hooks:
        hook.remove()
    return np.concatenate([maps[name].mean((2, 3)).numpy() for name in layers], axis=1)


def test_export_reads_the_embedding_out_at_the_stages_asked_for(tmp_path):
    from radiofm.evaluate import load_embedder, random_twin
    from radiofm.tests.model_helpers import numpy_heads

    backbone = tiny_backbone(seed=3)
    run = write_run(tmp_path / "run-s", backbone)
    tiles = random_tiles(4)
    expected = _stage_means(backbone, tiles, ["layer2", "layer3", "layer4"])
    dim = sum(backbone.feature_info[stage]["num_chs"] for stage in (2, 3, 4))
    assert expected.shape == (4, dim) and dim > 96
    embedder = checkpoint_embedder(run, feature_stages=[2, 3, 4])
    np.testing.assert_allclose(embedder.embed(tiles[:, 0]), expected, atol=1e-5)
    def heads_for(size):
        heads = tiny_heads(size)
        heads["count"]["pixel_scales_arcsec"] = [1.1]
        return {"heads": heads, "numpy_heads": numpy_heads(size), "root": tmp_path}

    report = export_checkpoint(run, feature_stages=[2, 3, 4], **heads_for(dim))
    model = load_model(report["path"], threads=1)
    assert model.metadata["feature_stages"] == [2, 3, 4]
    assert model.metadata["embedding_dim"] == dim
    np.testing.assert_allclose(model.run(tiles)["embedding"], expected, atol=1e-4)
    # the random-init twin of the exported model is read out at the same stages
    twin = random_twin(load_embedder(report["path"]))
    assert twin.embed(tiles[:, 0]).shape == (4, dim)
    assert twin.architecture["feature_stages"] == [2, 3, 4]
    # a model exported without stages records none, and its twin pools the last stage only
    plain = export_checkpoint(run, tmp_path / "plain.onnx", **heads_for(96))
    assert load_model(plain["path"], threads=1).metadata.get("feature_stages") is None
    assert random_twin(load_embedder(plain["path"])).embed(tiles[:, 0]).shape == (4, 96)


def test_feature_stages_must_name_stages_the_backbone_has(tmp_path):
    from radiofm.train import StagePooled

    backbone = tiny_backbone()
    for stages in ([], [2, 2], [5], [-1]):
        with pytest.raises(ValueError, match=r"distinct indices in 0\.\.4 \(act1, layer1"):
            StagePooled(backbone, stages)
    with pytest.raises(ValueError, match="gives no intermediate features"):
        StagePooled(torch.nn.Linear(3, 3), [1])
    run = write_run(tmp_path / "run-bad", backbone)
    with pytest.raises(ValueError, match="distinct indices"):
        export_checkpoint(run, heads=tiny_heads(96), root=tmp_path, feature_stages=[7],
                          pixel_scale_range_arcsec=(1, 2))
    assert not list(run.glob("*.onnx"))

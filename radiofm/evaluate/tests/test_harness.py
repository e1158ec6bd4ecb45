"""The harness end to end on small subsets of the real data, embedders, and the CLI."""

import json

import numpy as np
import pytest

from radiofm.evaluate import TASKS, evaluate, fit_heads, format_report, load_embedder
from radiofm.evaluate._embedders import normalization_of

torch = pytest.importorskip("torch")
pytest.importorskip("timm")


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    """Source catalogues of the quick runs stay out of the user's cache."""
    monkeypatch.setenv("RADIOFM_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


def test_embedder_specs(tmp_path):
    random = load_embedder("random:resnet18", input_size=32)
    features = random.embed(np.zeros((3, 32, 32), np.float32))
    assert features.shape == (3, 512) and random.architecture["arch"] == "resnet18"
    again = load_embedder("random:resnet18", input_size=32)
    stamps = np.random.default_rng(0).random((2, 32, 32)).astype(np.float32)
    np.testing.assert_array_equal(random.embed(stamps), again.embed(stamps))  # seeded
    assert load_embedder("pixels").embed(stamps).shape == (2, 32 * 32)
    with pytest.raises(FileNotFoundError, match="give random:ARCH, pixels, a training run"):
        load_embedder(tmp_path / "nothing.pt")
    with pytest.raises(FileNotFoundError, match="no such ONNX model"):
        load_embedder(tmp_path / "nothing.onnx")


def test_checkpoint_embedder_reads_the_run_config(tmp_path):
    from radiofm.train import TrainConfig, create_backbone

    config = TrainConfig.from_dict({"model": {"arch": "resnet18"},
                                    "crops": {"global_size": 48}}).to_dict()
    config["data"]["normalization"] = "snr"
    backbone = create_backbone("resnet18")
    torch.save({"model": {"arch": "resnet18", "patch_size": 8, "timm_options": {},
                          "num_features": 512},
                "state_dict": backbone.state_dict(), "config": config},
               tmp_path / "teacher_backbone.pt")
    embedder = load_embedder(tmp_path)
    assert embedder.input_size == 48
    assert normalization_of(embedder) == "snr"  # the run config's stretch
    assert normalization_of(load_embedder("pixels")) == "percentile"  # unknown: the default
    stamps = np.random.default_rng(1).random((2, 48, 48)).astype(np.float32)
    with torch.no_grad():
        expected = backbone.eval()(torch.from_numpy(stamps[:, None])).numpy()
    np.testing.assert_allclose(embedder.embed(stamps), expected, rtol=1e-4, atol=1e-5)


def test_evaluate_every_task_on_small_subsets(shared_data, tmp_path):
    report = evaluate("random:resnet18", root=shared_data, output=tmp_path, limit=12,
                      finder="photutils", baselines=("pixels", "supervised"))
    assert set(report["task"]) == set(TASKS)
    assert set(report["features"]) == {"model", "pixels", "supervised"}
    assert set(report["dataset"]) == {"FIRST tiles", "simulated tiles", "MBFRConfident",
                                      "RadioGalaxyDataset", "MGCLS", "FIRST fields"}
    error = report[(report["task"] == "frii") & (report["metric"] == "error")]
    assert ((error["value"] >= 0) & (error["value"] <= 1)).all()
    assert (error["low"] <= error["value"]).all() and (error["value"] <= error["high"]).all()
    for name in ("report.ecsv", "report.json", "report.txt", "counts_first.png",
                 "counts_simulated.png", "frii.png", "morphology.png", "similarity.png",
                 "anomaly.png", "redshift.png"):
        assert (tmp_path / name).stat().st_size > 0
    saved = json.loads((tmp_path / "report.json").read_text())
    assert len(saved["results"]) == len(report) and saved["meta"]["MODEL"] == "random:resnet18"
    text = format_report(report)
    assert "precision@5" in text and "model = random:resnet18" in text


def test_random_baseline_matches_a_checkpoint_architecture(shared_data, tmp_path):
    from radiofm.train import TrainConfig, create_backbone

    config = TrainConfig.from_dict({"model": {"arch": "resnet18"},
                                    "crops": {"global_size": 32}}).to_dict()
    torch.save({"model": {"arch": "resnet18", "patch_size": 8, "timm_options": {},
                          "num_features": 512},
                "state_dict": create_backbone("resnet18").state_dict(), "config": config},
               tmp_path / "teacher_backbone.pt")
    report = evaluate(tmp_path, root=shared_data, tasks=["similarity"], limit=10,
                      baselines=("random",))
    names = dict(zip(report["features"], report["name"], strict=True))
    assert names == {"model": f"{tmp_path.name}/teacher_backbone.pt",
                     "random": "random:resnet18"}


def test_fit_heads_folds_the_probes(shared_data):
    heads = fit_heads(load_embedder("random:resnet18", input_size=32), shared_data, limit=12,
                      finder="photutils")
    count, morph = heads["count"], heads["morphology"]
    assert count["coef"].shape == (512,) and np.isfinite(count["intercept"])
    assert morph["coef"].shape == (4, 512) and morph["intercept"].shape == (4,)
    assert morph["classes"] == ["FRI", "FRII", "Compact", "Bent"]
    assert count["tile_arcsec"] == pytest.approx(270.0)
    assert 0.0 <= morph["accuracy_test"] <= 1.0


def test_cli_evaluate(shared_data, tmp_path, capsys):
    from radiofm.cli import main

    out = tmp_path / "report"
    assert main(["evaluate", "--model", "pixels", "-o", str(out), "--tasks", "frii,similarity",
                 "--baselines", "none", "--limit", "10", "--data", str(shared_data)]) == 0
    printed = capsys.readouterr().out
    assert "MBFRConfident" in printed and "pixels32" in printed
    assert (out / "report.ecsv").is_file()


def test_onnx_embedder_and_its_random_twin(tmp_path):
    pytest.importorskip("onnx")
    from radiofm.evaluate import random_twin
    from radiofm.inference import load_model
    from radiofm.tests.model_helpers import INPUT_SIZE, export_tiny_model, random_tiles

    path = tmp_path / "tiny.onnx"
    export_tiny_model(path)
    embedder = load_embedder(path)
    assert embedder.input_size == INPUT_SIZE and normalization_of(embedder).method == "percentile"
    stamps = random_tiles(5)[:, 0]
    expected = load_model(path, threads=1).run(stamps)["embedding"]
    np.testing.assert_allclose(embedder.embed(stamps), expected, rtol=1e-6)
    twin = random_twin(embedder)
    assert twin.name == "random:test_resnet" and twin.input_size == INPUT_SIZE
    assert twin.embed(stamps).shape == expected.shape


def test_eight_view_onnx_graph_matches_the_view_averaged_embedder(tmp_path):
    pytest.importorskip("onnx")
    from radiofm.evaluate import ViewAveraged
    from radiofm.evaluate._embedders import with_views
    from radiofm.export import TorchEmbedder
    from radiofm.tests.model_helpers import INPUT_SIZE, export_tiny_model, random_tiles, tiny_spec

    path = tmp_path / "tiny8.onnx"
    backbone, _, _ = export_tiny_model(path, spec=tiny_spec(views=8))
    onnx_embedder = load_embedder(path)
    assert onnx_embedder.views == 8
    torch_embedder = ViewAveraged(TorchEmbedder(
        backbone, input_size=INPUT_SIZE, normalization="percentile", name="tiny",
        arch="test_resnet"))
    stamps = random_tiles(4, seed=5)[:, 0]
    graph = onnx_embedder.embed(stamps)
    np.testing.assert_allclose(graph, torch_embedder.embed(stamps), atol=1e-5)
    # orientation-invariant: a turned or mirrored stamp gives the same embedding
    for turned in (np.rot90(stamps, 1, axes=(1, 2)), stamps[:, ::-1]):
        np.testing.assert_allclose(onnx_embedder.embed(np.ascontiguousarray(turned)), graph,
                                   atol=1e-5)
    assert not np.allclose(TorchEmbedder(
        backbone, input_size=INPUT_SIZE, normalization="percentile", name="tiny",
        arch="test_resnet").embed(stamps), graph, atol=1e-3)
    assert with_views(onnx_embedder, 8) is onnx_embedder  # the graph averages already
    with pytest.raises(ValueError, match="averages over 8 views in its graph"):
        with_views(onnx_embedder, 1)
    with pytest.raises(ValueError, match="already averages"):
        ViewAveraged(onnx_embedder)
    with pytest.raises(ValueError, match="views must be one of"):
        with_views(load_embedder("pixels"), 4)


def test_evaluate_with_views_averages_every_feature_set(shared_data, tmp_path):
    report = evaluate("random:resnet18", root=shared_data, tasks=["similarity"], limit=10,
                      baselines=("pixels",), views=8)
    assert report.meta["VIEWS"] == 8
    plain = evaluate("random:resnet18", root=shared_data, tasks=["similarity"], limit=10,
                     baselines=("pixels",))
    assert plain.meta["VIEWS"] == 1
    assert set(report["features"]) == {"model", "pixels"}
    assert not np.allclose(report["value"], plain["value"])

"""The harness end to end on small subsets of the real data, embedders, and the CLI."""

import json

import numpy as np
import pytest

from radiofm.evaluate import TASKS, evaluate, fit_heads, format_report, load_embedder
from radiofm.evaluate._embedders import normalization_of
from radiofm.tiling import NormalizationSpec

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
    config["data"]["normalization"] = {"method": "snr", "softening": 3.0}
    backbone = create_backbone("resnet18")
    torch.save({"model": {"arch": "resnet18", "patch_size": 8, "timm_options": {},
                          "num_features": 512},
                "state_dict": backbone.state_dict(), "config": config},
               tmp_path / "teacher_backbone.pt")
    embedder = load_embedder(tmp_path)
    assert embedder.input_size == 48
    # the run config's stretch with all its options, not just its method name
    assert normalization_of(embedder) == NormalizationSpec("snr", softening=3.0)
    assert normalization_of(load_embedder("pixels")) == NormalizationSpec("percentile")
    stamps = np.random.default_rng(1).random((2, 48, 48)).astype(np.float32)
    with torch.no_grad():
        expected = backbone.eval()(torch.from_numpy(stamps[:, None])).numpy()
    np.testing.assert_allclose(embedder.embed(stamps), expected, rtol=1e-4, atol=1e-5)


def test_evaluate_every_task_on_small_subsets(shared_data, tmp_path):
    report = evaluate("random:resnet18", root=shared_data, output=tmp_path, limit=12,
                      finder="photutils", baselines=("pixels", "supervised"))
    assert set(report["task"]) == set(TASKS)
    assert set(report["features"]) == {"model", "pixels", "supervised"}
    assert set(report["dataset"]) >= {"FIRST tiles", "FIRST tiles (S_Code S)",
                                      "simulated tiles", "MBFRConfident", "RadioGalaxyDataset",
                                      "MGCLS", "FIRST fields", "MiraBest -> RGD"}
    error = report[(report["task"] == "frii") & (report["metric"] == "error")]
    assert ((error["value"] >= 0) & (error["value"] <= 1)).all()
    assert (error["low"] <= error["value"]).all() and (error["value"] <= error["high"]).all()
    for name in ("report.ecsv", "report.json", "report.txt", "counts_first.png",
                 "counts_simulated.png", "frii.png", "crosssample.png", "morphology.png",
                 "similarity.png", "anomaly.png", "redshift.png"):
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
    single = with_views(onnx_embedder, 1)  # one view of the graph's 8, for the cost study
    assert single.views == 1 and single.name.endswith("(1 view)")
    with pytest.raises(ValueError, match="already averages"):
        ViewAveraged(onnx_embedder)
    with pytest.raises(ValueError, match="views must be one of"):
        with_views(load_embedder("pixels"), 4)


def test_eight_view_graph_gives_one_two_and_eight_views_from_one_run(shared_data, tmp_path):
    """The embedding-cost study: an 8-view graph read at 1, 2 and 8 views."""
    pytest.importorskip("onnx")
    from radiofm.evaluate import EVALUATION_VIEWS, with_views
    from radiofm.models import dihedral_views
    from radiofm.tests.model_helpers import export_tiny_model, random_tiles, tiny_spec

    path = tmp_path / "tiny8.onnx"
    export_tiny_model(path, spec=tiny_spec(views=8))
    embedder = load_embedder(path)
    stamps = random_tiles(3, seed=2)[:, 0]
    per_view = embedder.per_view(stamps)
    assert per_view.shape[0] == 8
    np.testing.assert_allclose(per_view.mean(0), embedder.embed(stamps), atol=1e-5)
    turned = np.ascontiguousarray(dihedral_views(stamps)[5])
    np.testing.assert_allclose(embedder.per_view(turned)[0], per_view[5], atol=1e-5)
    for count in (1, 2):
        np.testing.assert_allclose(with_views(embedder, count).embed(stamps),
                                   per_view[list(EVALUATION_VIEWS[count])].mean(0), atol=1e-6)
    report = evaluate(path, root=shared_data, tasks=["similarity"], limit=10, baselines=(),
                      views=[1, 2, 8])
    assert report.meta["VIEWS"] == 8
    assert set(report["features"]) == {"model", "model_1view", "model_2view"}
    values = {role: report[(report["features"] == role)
                           & (report["metric"] == "precision@1")]["value"][0]
              for role in ("model", "model_1view")}
    assert np.isfinite(list(values.values())).all()


def test_evaluate_feeds_the_model_its_own_stretch_options(shared_data):
    """A model exported with other percentiles is evaluated with them, not the defaults."""
    from radiofm.evaluate import load_task_data, normalised_stamps
    from radiofm.tiling import fit_normalization

    class Recorder:
        name, input_size, pca = "recorder", 24, None
        normalization = {"method": "percentile", "lower": 20.0, "upper": 99.5}

        def __init__(self):
            self.seen = []

        def embed(self, stamps):
            self.seen.append(np.array(stamps))
            return stamps.reshape(len(stamps), -1)[:, :8]

    recorder = Recorder()
    report = evaluate(recorder, root=shared_data, tasks=["similarity"], limit=6, baselines=())
    assert json.loads(report.meta["NORM"]) == NormalizationSpec.from_value(
        Recorder.normalization).to_dict()
    raw = load_task_data("frii", root=shared_data, limit=6).stamps
    expected = normalised_stamps(raw, [fit_normalization(image, "percentile", lower=20.0,
                                                         upper=99.5) for image in raw], 24)
    np.testing.assert_allclose(recorder.seen[0], expected, atol=1e-6)
    defaults = normalised_stamps(raw, [fit_normalization(image) for image in raw], 24)
    assert not np.allclose(recorder.seen[0], defaults, atol=1e-3)


def test_new_tasks_with_classical_baselines_on_small_subsets(shared_data, tmp_path):
    """Cross-sample FRI/FRII and counts beside the island counter and shape measurements."""
    report = evaluate("pixels", root=shared_data, tasks=["crosssample", "counts"], limit=30,
                      finder="photutils", baselines=("classical",), output=tmp_path)
    rows = {(r["task"], r["dataset"], r["features"], r["metric"]): r for r in report}
    for direction in ("MiraBest -> RGD", "RGD -> MiraBest train+test"):
        for role in ("model", "shapes"):
            error = rows[("crosssample", direction, role, "error")]
            assert 0 <= error["low"] <= error["value"] <= error["high"] <= 1
            assert error["n_train"] > 0 and error["n_test"] > 0
    assert not any(key[2] == "islands" for key in rows if key[0] == "crosssample")
    assert not any(key[2] == "shapes" for key in rows if key[0] == "counts")
    for dataset in ("FIRST tiles", "FIRST tiles (S_Code S)", "simulated tiles",
                    "FIRST tiles, 3 x 3 windows", "simulated tiles, 3 x 3 windows"):
        r2 = rows[("counts", dataset, "islands", "r2")]
        assert r2["low"] <= r2["value"] <= r2["high"]
    # windowed counts are scored on the same test tiles as whole-tile counts
    for tiles in ("FIRST tiles", "simulated tiles"):
        windowed = rows[("counts", f"{tiles}, 3 x 3 windows", "model", "r2")]
        whole = rows[("counts", tiles, "model", "r2")]
        assert windowed["n_test"] == whole["n_test"]
        assert windowed["n_train"] == 9 * whole["n_train"]
    # the island counter beats raw pixels at counting simulated compact sources
    assert rows[("counts", "simulated tiles", "islands", "r2")]["value"] > max(
        0.3, rows[("counts", "simulated tiles", "model", "r2")]["value"])
    assert (tmp_path / "crosssample.png").stat().st_size > 0
    assert "island counter" in format_report(report)


def test_cross_sample_data_guards_both_ways(shared_data):
    from radiofm.datasets import (
        evaluation_positions,
        exclude_near,
        load_mirabest,
        radiogalaxy_positions,
    )
    from radiofm.evaluate import cross_sample_data

    data = cross_sample_data(shared_data)
    mirabest = data.extra["sample"] == "MiraBest"
    assert set(data.extra["sample"]) == {"MiraBest", "RGD"} and set(data.target) == {0, 1}
    assert data.stamps.shape[1:] == (150, 150)
    sky = load_mirabest(shared_data, view="confident").table["sky_center"]
    train = data.split[mirabest] == "train"
    assert exclude_near(sky[train], evaluation_positions(shared_data)).all()
    rgd_train = radiogalaxy_positions(shared_data, splits=("train",), classes=("FRI", "FRII"))
    assert len(rgd_train) == 1219
    reverse = data.extra["reverse_test"][mirabest]
    assert exclude_near(sky[reverse], rgd_train).all()
    assert 0 < reverse.sum() < (data.split[mirabest] == "test").sum()  # the guard bites
    assert (data.extra["reverse_any"] >= data.extra["reverse_test"]).all()
    assert not (data.split[~mirabest] == "valid").any()


def test_evaluate_with_views_averages_every_feature_set(shared_data, tmp_path):
    report = evaluate("random:resnet18", root=shared_data, tasks=["similarity"], limit=10,
                      baselines=("pixels",), views=8)
    assert report.meta["VIEWS"] == 8
    plain = evaluate("random:resnet18", root=shared_data, tasks=["similarity"], limit=10,
                     baselines=("pixels",))
    assert plain.meta["VIEWS"] == 1
    assert set(report["features"]) == {"model", "pixels"}
    assert not np.allclose(report["value"], plain["value"])


def test_quick_morphology_run_keeps_every_class(shared_data):
    """--limit takes items per split and class, so a tiny run still has all four classes."""
    report = evaluate("pixels", root=shared_data, tasks=["morphology"], limit=8,
                      baselines=("classical",))
    accuracy = report[report["metric"] == "accuracy"]
    assert set(accuracy["features"]) == {"model", "shapes"}
    assert (accuracy["n_train"] == 32).all() and (accuracy["n_test"] == 32).all()
    assert set(accuracy["dataset"]) == {"RadioGalaxyDataset"}  # the whole 540" images


def test_the_morphology_task_can_read_the_stamps_a_model_frames(shared_data, monkeypatch):
    """stamp_arcsec cuts RadioGalaxyDataset's images as a head fitted on that angle frames
    its sources; every feature set reads the cut stamps."""
    from radiofm.evaluate import _harness

    seen = []
    classify = _harness.classification_task
    monkeypatch.setattr(_harness, "classification_task", lambda task, data, *args, **kw: (
        seen.append(data.stamps.shape[1:]) or classify(task, data, *args, **kw)))
    report = evaluate("pixels", root=shared_data, tasks=["morphology"], limit=8,
                      baselines=("classical",), stamp_arcsec=270)
    assert seen == [(150, 150)]
    assert set(report["dataset"]) == {"RadioGalaxyDataset, central 270 arcsec"}
    # the command line passes --stamp-arcsec on
    import radiofm.evaluate
    from radiofm.cli import main

    asked = []
    monkeypatch.setattr(radiofm.evaluate, "evaluate",
                        lambda model, **options: asked.append(options) or report)
    monkeypatch.setattr(radiofm.evaluate, "format_report", lambda report: "")
    for extra in (["--stamp-arcsec", "270"], []):
        assert main(["evaluate", "pixels", "--tasks", "morphology", *extra]) == 0
    assert [options["stamp_arcsec"] for options in asked] == [270.0, None]


def test_framed_items_are_the_central_pixels_with_their_whole_stamps_stretch():
    from radiofm.evaluate import TaskData

    stamps = np.arange(2 * 6 * 6, dtype=np.float32).reshape(2, 6, 6)
    stretches = [NormalizationSpec.from_value("percentile").fit(stamp) for stamp in stamps]
    data = TaskData("toy", stamps, stretches, np.array([0, 1]), np.array(["train", "test"]),
                    ("a", "b"), {"stamps_key": "toy", "tile": np.array([0, 1])})
    framed = data.framed(2)
    np.testing.assert_array_equal(framed.stamps, stamps[:, 2:4, 2:4])
    assert framed.normalizations is data.normalizations  # fitted on the whole stamps
    assert framed.key != data.key  # cached inputs are not shared with the whole stamps
    np.testing.assert_array_equal(framed.extra["tile"], [0, 1])
    for side in (1, 7):
        with pytest.raises(ValueError, match=f"cannot cut {side} x {side} pixels"):
            data.framed(side)

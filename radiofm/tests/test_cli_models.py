"""radiofm export and radiofm annotate."""

import json
import logging

import numpy as np
import pytest
from astropy.table import QTable
from regions import Regions

from radiofm._optional_deps import HAS_PYARROW
from radiofm.cli import main
from radiofm.simulate import make_radio_sky
from radiofm.tests.model_helpers import CLASSES, TINY_CHANNELS, tiny_backbone, tiny_heads


@pytest.fixture(scope="module")
def field(tmp_path_factory):
    folder = tmp_path_factory.mktemp("field")
    hdu, truth = make_radio_sky((256, 256), seed=5)
    hdu.writeto(folder / "field.fits")
    truth[:30].write(folder / "truth.ecsv")
    return folder / "field.fits", folder / "truth.ecsv"


def test_annotate_with_a_catalogue_writes_every_output(tiny_model, field, tmp_path):
    image, catalog = field
    out = tmp_path / "out"
    assert main(["annotate", str(image), "--catalog", str(catalog), "--model", str(tiny_model),
                 "-o", str(out), "--format", "fits", "--threads", "1"]) == 0
    names = sorted(p.name for p in out.iterdir())
    # the survey index needs pyarrow (the survey extra); without it annotate says so and
    # writes the rest
    assert names == [".radiofm-done", "field.reg", "field_quicklook.png", "field_sources.fits",
                     "field_tiles.fits", *(["index"] if HAS_PYARROW else [])]
    sources = QTable.read(out / "field_sources.fits")
    assert len(sources) == 30 and set(sources["morph_class"]) <= {*CLASSES, "Compact",
                                                                  "uncertain"}
    assert sources["morph_prob"].shape == (30, 4) and sources.meta["MODEL"] == "tiny"
    tiles = QTable.read(out / "field_tiles.fits")
    assert tiles["embedding"].shape == (64, 96) and "n_compact_pred" in tiles.colnames
    for table in (sources, tiles):  # every written column is described, numbers have units
        for name in table.colnames:
            assert table[name].info.description, name
    assert tiles["x_min"].unit == "pix" and sources["stamp_size"].unit == "arcsec"
    regions = Regions.read(out / "field.reg")
    assert len(regions) == 30
    assert {r.meta["text"] for r in regions} == set(sources["morph_class"])
    assert (out / "field_quicklook.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("format", ["ecsv", "votable", "parquet"])
def test_annotate_finds_sources_without_a_catalogue(tiny_model, field, tmp_path, format):
    image, _ = field
    from radiofm.inference import ModelMismatchWarning
    from radiofm.tiling import read_table

    if format == "parquet":
        pytest.importorskip("pyarrow")
    with pytest.warns(ModelMismatchWarning, match="not calibrated for this size"):
        assert main(["annotate", str(image), "--model", str(tiny_model), "-o", str(tmp_path),
                     "--tile-size", "64px", "--format", format, "--threads", "1",
                     "--finder", "photutils", "--no-index"]) == 0
    suffix = {"ecsv": ".ecsv", "votable": ".vot", "parquet": ".parquet"}[format]
    tiles = read_table(tmp_path / f"field_tiles{suffix}")
    assert len(tiles) == 16 and tiles["embedding"].shape == (16, 96)
    assert tiles.meta["MODEL"] == "tiny" and "sky_center" in tiles.colnames
    sources = read_table(tmp_path / f"field_sources{suffix}")
    assert len(sources) > 5 and "Compact" in set(sources["morph_class"])
    assert len(Regions.read(tmp_path / "field.reg")) == len(sources)


def test_annotate_tiles_only(tiny_model, field, tmp_path):
    image, _ = field
    assert main(["annotate", str(image), "--model", str(tiny_model), "-o", str(tmp_path),
                 "--finder", "none", "--threads", "1", "--no-index"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == [
        "field.reg", "field_quicklook.png", "field_tiles.ecsv"]
    assert len(Regions.read(tmp_path / "field.reg")) == 64  # the tile footprints


def test_annotate_example_finds_and_classifies_its_sources(tiny_model, tmp_path):
    out = tmp_path / "example"
    assert main(["annotate", "--example", "--model", str(tiny_model), "-o", str(out),
                 "--threads", "1", "--finder", "photutils", "--no-index"]) == 0
    names = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))
    assert names == ["example_sky.fits", "example_sky.reg", "example_sky_quicklook.png",
                     "example_sky_sources.ecsv", "example_sky_tiles.ecsv",
                     "example_truth.ecsv"]
    truth = QTable.read(out / "example_truth.ecsv")
    sources = QTable.read(out / "example_sky_sources.ecsv")
    assert 0 < len(sources) <= len(truth)
    assert set(sources["morph_class"]) <= {*CLASSES, "Compact", "uncertain"}
    # most found sources are point sources, compact by measurement (the others are pieces
    # of the 8 extended sources and of the artefacts around the bright ones)
    assert (sources["morph_flag"] == "compact_by_measurement").mean() > 0.8
    assert sources.meta["IMAGE"] == "example_sky.fits"
    # the tiny model's 35.2" tiles are 32 pixels of the example's 1.1"
    tiles = QTable.read(out / "example_sky_tiles.ecsv")
    assert len(tiles) == (2048 // 32) ** 2
    # the measured count beside the prediction: found sources compact by measurement at
    # S/N >= 5, about as many as the true compact sources above 5 sigma (the truth's peak)
    assert tiles["n_compact"].info.description.startswith("measured")
    true = ((truth["morph_class"] == "compact")
            & (truth["peak"].value >= 5 * truth.meta["SIMNOISE"])).sum()
    assert 0.8 * true <= tiles["n_compact"].value.sum() <= 1.05 * true


def test_annotate_errors(tiny_model, field, tmp_path, caplog):
    image, _ = field
    with caplog.at_level(logging.ERROR, logger="radiofm"):
        assert main(["annotate", str(image), "--model", "no-such-model",
                     "-o", str(tmp_path)]) == 2
        assert "no model named 'no-such-model'" in caplog.text
        assert main(["annotate", str(image), "--catalog", str(tmp_path / "absent.ecsv"),
                     "--model", str(tiny_model), "-o", str(tmp_path)]) == 2
        assert "no such catalogue file" in caplog.text
        (tmp_path / "field_tiles.ecsv").write_text("")
        assert main(["annotate", str(image), "--model", str(tiny_model),
                     "-o", str(tmp_path)]) == 2
        assert "pass --overwrite" in caplog.text


def test_export_a_run_with_fit_heads_monkeypatched(tmp_path, monkeypatch):
    torch = pytest.importorskip("torch")
    pytest.importorskip("timm")
    from radiofm.train import TrainConfig

    backbone = tiny_backbone()
    config = TrainConfig().to_dict()
    config["model"].update(arch="test_resnet", timm_options={"channels": list(TINY_CHANNELS)})
    config["crops"].update(global_size=32, local_size=16)
    config["data"].update(tile_size=32)
    run = tmp_path / "run-b"
    run.mkdir()
    torch.save({"model": {"arch": "test_resnet", "patch_size": 8,
                          "timm_options": {"channels": list(TINY_CHANNELS)}},
                "state_dict": backbone.state_dict(), "config": config,
                "radiofm_version": "0.1", "data": json.dumps({})}, run / "teacher_backbone.pt")
    import radiofm.evaluate
    from radiofm.tests.model_helpers import numpy_heads

    fits = []

    def fake_fit(embedder, root, *, finder, graph_heads, cache):
        fits.append((finder, cache))
        return numpy_heads(96), tiny_heads(96)

    monkeypatch.setattr(radiofm.evaluate, "fit_output_heads", fake_fit)
    assert main(["export", str(run), "-o", str(tmp_path), "--name", "model", "--finder",
                 "photutils", "--data", str(tmp_path), "--pixel-scale-range", "1", "2",
                 "--quantize", "--cache", str(tmp_path / "cache")]) == 0
    assert fits == [("photutils", str(tmp_path / "cache"))]
    out = tmp_path / "model.onnx"
    from radiofm.inference import load_model

    model = load_model(out, threads=1)
    assert model.metadata["name"] == "model"
    assert model.metadata["pixel_scale_range_arcsec"] == [1.0, 2.0]
    assert (tmp_path / "model-int8.onnx").is_file()
    assert main(["export", str(run), "-o", str(tmp_path), "--name", "model"]) == 2  # exists
    np.testing.assert_equal(model.run(np.zeros((1, 1, 32, 32), np.float32))["embedding"].shape,
                            (1, 96))
    # --feature-stages: the heads are fitted on, and the graph gives, the same readout
    dim = sum(backbone.feature_info[stage]["num_chs"] for stage in (3, 4))
    fitted_dims = []

    def fake_staged_fit(embedder, root, *, finder, graph_heads, cache):
        fitted_dims.append(embedder.embed(np.zeros((1, 32, 32), np.float32)).shape[1])
        return numpy_heads(dim), tiny_heads(dim)

    monkeypatch.setattr(radiofm.evaluate, "fit_output_heads", fake_staged_fit)
    assert main(["export", str(run), "-o", str(tmp_path), "--name", "staged", "--data",
                 str(tmp_path), "--pixel-scale-range", "1", "2", "--feature-stages", "3",
                 "4"]) == 0
    staged = load_model(tmp_path / "staged.onnx", threads=1)
    assert fitted_dims == [dim] and staged.metadata["feature_stages"] == [3, 4]
    assert staged.run(np.zeros((1, 1, 32, 32), np.float32))["embedding"].shape == (1, dim)


def test_fit_heads_writes_a_copy_with_numpy_heads(tiny_model, tmp_path, monkeypatch, caplog):
    pytest.importorskip("onnx")
    import radiofm.evaluate._fit_heads as fitting
    from radiofm.inference import load_model
    from radiofm.tests.model_helpers import numpy_heads

    seen = {}

    def fake_fit(model, **options):
        seen.update(options, model=model)
        return numpy_heads(96)

    monkeypatch.setattr(fitting, "fit_output_heads", fake_fit)
    out = tmp_path / "headed.onnx"
    assert main(["fit-heads", str(tiny_model), "-o", str(tmp_path), "--name", "headed",
                 "--limit", "5", "--finder", "photutils"]) == 0
    assert seen["limit"] == 5 and seen["finder"] == "photutils"
    assert load_model(out, threads=1).heads.classes == CLASSES
    with caplog.at_level(logging.ERROR, logger="radiofm"):
        assert main(["fit-heads", str(tiny_model), "-o", str(tmp_path), "--name", "headed"]) == 2
    assert "pass overwrite=True" in caplog.text

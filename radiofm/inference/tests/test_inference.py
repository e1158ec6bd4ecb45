"""Inference with exported models: tables, checks against the model, sessions, no torch."""

import os
import subprocess
import sys
import textwrap

import astropy.units as u
import numpy as np
import pytest
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.table import QTable, Table

from radiofm.inference import (
    ModelMismatchWarning,
    classify_morphology,
    count_sources,
    embed_image,
    embed_sources,
    load_model,
    read_stamps,
)
from radiofm.simulate import make_radio_sky
from radiofm.tests.helpers import sky_header
from radiofm.tests.model_helpers import CLASSES, INPUT_SIZE
from radiofm.tiling import tile_image


@pytest.fixture(scope="module")
def sky():
    """A simulated 1.1 arcsec/px field (the tiny model's pixel scale) and its truth."""
    return make_radio_sky((256, 320), seed=4)


def test_embed_image_returns_the_tile_table_with_embeddings(tiny_model, sky):
    hdu, _ = sky
    model = load_model(tiny_model, threads=1)
    table = embed_image(hdu, tiny_model, batch_size=7, threads=1, progress=False)
    assert isinstance(table, QTable)
    assert len(table) == 8 * 10  # 32-pixel tiles (35.2 arcsec of 1.1 arcsec pixels)
    assert table["embedding"].shape == (80, 96) and table["embedding"].dtype == np.float32
    assert table.meta["MODEL"] == "tiny" and table.meta["MODELSHA"] == model.sha256
    assert table.meta["TILESIZE"] == 32 and table.meta["NORMMETH"] == "percentile"
    # the same as running the model by hand on each tile
    tiles = tile_image(hdu, 32)
    stretch = model.spec.fit_stretch(tiles.image)
    for tile_id in (0, 45, 79):
        rows, cols = tiles.tile_slices(tile_id)
        pixels = tiles.image.read_region(rows, cols)[None]
        expected = model.run(model.spec.prepare(pixels, stretch))
        np.testing.assert_allclose(table["embedding"][tile_id], expected["embedding"][0],
                                   rtol=1e-5, atol=1e-6)


def test_other_tile_sizes_are_resampled(tiny_model, sky):
    hdu, _ = sky
    table = embed_image(hdu, tiny_model, tile_size=64, overlap=16, threads=1, progress=False)
    assert table.meta["TILESIZE"] == 64 and table["embedding"].shape[1] == 96
    with pytest.warns(ModelMismatchWarning, match="not calibrated for this size"):
        count_sources(hdu, tiny_model, tile_size=64, threads=1, progress=False)


def test_count_sources_adds_predictions(tiny_model, sky):
    hdu, _ = sky
    table = count_sources(hdu, tiny_model, threads=1, progress=False)
    assert "n_compact_pred" in table.colnames and "embedding" not in table.colnames
    both = count_sources(tile_image(hdu, 32), tiny_model, threads=1, progress=False,
                         embedding=True)
    np.testing.assert_allclose(both["n_compact_pred"], table["n_compact_pred"], rtol=1e-6)
    embedded = embed_image(hdu, tiny_model, threads=1, progress=False)
    np.testing.assert_allclose(both["embedding"], embedded["embedding"], rtol=1e-6)


def test_tables_round_trip_through_fits_and_ecsv(tiny_model, sky, tmp_path):
    hdu, truth = sky
    table = count_sources(hdu, tiny_model, threads=1, progress=False, embedding=True)
    catalog = classify_morphology(truth[:20], hdu, tiny_model, threads=1, progress=False)
    for name, original in (("tiles", table), ("sources", catalog)):
        for suffix in (".fits", ".ecsv"):
            path = tmp_path / f"{name}{suffix}"
            original.write(path)
            back = QTable.read(path)
            assert back.meta["MODELSHA"] == original.meta["MODELSHA"]
    back = QTable.read(tmp_path / "tiles.fits")
    np.testing.assert_array_equal(back["embedding"], table["embedding"])
    back = QTable.read(tmp_path / "sources.ecsv")
    assert list(back["morph_class"]) == list(catalog["morph_class"])


def test_classify_morphology_adds_classes_and_probabilities(tiny_model, sky, caplog):
    hdu, truth = sky
    positions = truth["sky_center"][:10]
    catalog = Table({"ra": positions.ra.deg, "dec": positions.dec.deg})
    far = SkyCoord(10 * u.deg, 10 * u.deg)  # off the image
    catalog.add_row([far.ra.deg, far.dec.deg])
    result = classify_morphology(catalog, hdu, tiny_model, threads=1, progress=False)
    assert type(result) is Table and "morph_class" not in catalog.colnames
    assert result["morph_prob"].shape == (11, len(CLASSES))
    np.testing.assert_allclose(result["morph_prob"][:10].sum(axis=1), 1, rtol=1e-5)
    # no shape or peak in the catalogue: every source is judged on its stamp
    assert set(result["morph_flag"][:10]) <= {"classified", "low_confidence"}
    assert set(result["morph_class"][:10]) <= {*CLASSES, "uncertain"}
    assert result["morph_class"][10] == "" and np.isnan(result["morph_prob"][10]).all()
    assert result["morph_flag"][10] == "off_image"
    assert "1 of 11 sources lie off the image" in caplog.text
    assert result.meta["CLASSES"] == ",".join(CLASSES)
    # 44 arcsec stamps for a 5.4 arcsec beam: 61 arcsec for the sky's 7.5 arcsec beam
    np.testing.assert_allclose(result["stamp_size"][:10], 56 * 1.1)
    best = np.argmax(result["morph_prob"][:10], axis=1)
    sure = np.asarray(result["morph_flag"][:10] == "classified")
    assert list(result["morph_class"][:10][sure]) == [CLASSES[k] for k in best[sure]]


def test_embed_sources_match_stamps_run_by_hand(tiny_model, sky):
    hdu, truth = sky
    model = load_model(tiny_model, threads=1)
    result = embed_sources(truth[:6], hdu, tiny_model, threads=1, progress=False)
    assert result["embedding"].shape == (6, 96)
    image_stretch = model.spec.fit_stretch(hdu)
    from radiofm.image import read_image

    image = read_image(hdu)
    x, y = image.wcs.world_to_pixel(truth["sky_center"][:6])
    stamps = read_stamps(image, x, y, 40)
    expected = model.run(model.spec.prepare(stamps, image_stretch))["embedding"]
    np.testing.assert_allclose(result["embedding"], expected, rtol=1e-5, atol=1e-6)


def test_read_stamps_pads_beyond_the_edges():
    data = np.arange(100.0).reshape(10, 10)
    image = tile_image((data, sky_header(10, 10)), 5).image
    stamps = read_stamps(image, [4.5, 0.0], [4.5, 9.0], 4)
    np.testing.assert_array_equal(stamps[0], data[3:7, 3:7])
    # centred within half a pixel: columns -1..2 and rows 8..11 of the image
    assert np.isnan(stamps[1][:, 0]).all() and np.isnan(stamps[1][2:]).all()
    np.testing.assert_array_equal(stamps[1][:2, 1:], data[8:10, 0:3])


def test_images_that_do_not_fit_the_model(tiny_model):
    rng = np.random.default_rng(0)
    data = rng.normal(0, 1, (200, 200)).astype(np.float32)
    coarse = fits.PrimaryHDU(data, sky_header(200, 200, cdelt_arcsec=3.0))  # range 0.55-2.2
    with pytest.warns(ModelMismatchWarning, match="outside the 0.55-2.2 arcsec"):
        embed_image(coarse, tiny_model, threads=1, progress=False)
    far = fits.PrimaryHDU(data, sky_header(200, 200, cdelt_arcsec=0.1))
    with pytest.raises(ValueError, match="far outside the 0.55-2.2 arcsec"):
        embed_image(far, tiny_model, threads=1, progress=False)


def test_sessions_are_cached_per_file_and_threads(tiny_model, tmp_path):
    assert load_model(tiny_model, threads=1) is load_model(tiny_model, threads=1)
    assert load_model(tiny_model, threads=2) is not load_model(tiny_model, threads=1)
    model = load_model(tiny_model, threads=1)
    assert load_model(model) is model
    with pytest.raises(ValueError, match="takes tiles shaped"):
        model.run(np.zeros((2, 1, 8, 8), np.float32))
    empty = model.run(np.zeros((0, 1, INPUT_SIZE, INPUT_SIZE), np.float32))
    assert empty["morph_logits"].shape == (0, 4)
    with pytest.raises(ValueError, match="threads must be at least 1"):
        load_model(tiny_model, threads=0)
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    with pytest.raises(ValueError, match="not a model onnxruntime can load"):
        load_model(tmp_path / "junk.onnx")


def test_a_model_without_radiofm_metadata_is_refused(tiny_model, tmp_path):
    onnx = pytest.importorskip("onnx")
    proto = onnx.load(tiny_model)
    del proto.metadata_props[:]
    onnx.save(proto, tmp_path / "bare.onnx")
    with pytest.raises(ValueError, match="lacks radiofm metadata"):
        load_model(tmp_path / "bare.onnx")


def test_inference_runs_with_torch_unimportable(tiny_model, sky, tmp_path):
    hdu, truth = sky
    hdu.writeto(tmp_path / "sky.fits")
    truth[:5].write(tmp_path / "truth.ecsv")
    script = textwrap.dedent(f"""
        import sys

        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("torch", "timm", "torchvision"):
                    raise ImportError(f"{{name}} is blocked in this test")

        sys.meta_path.insert(0, Block())
        from radiofm.cli import main
        from radiofm.inference import classify_morphology, count_sources, embed_image

        table = embed_image({str(tmp_path / "sky.fits")!r}, {str(tiny_model)!r}, threads=1)
        assert table["embedding"].shape == (80, 96)
        assert main(["annotate", {str(tmp_path / "sky.fits")!r}, "--model",
                     {str(tiny_model)!r}, "--catalog", {str(tmp_path / "truth.ecsv")!r},
                     "-o", {str(tmp_path / "out.fits")!r}, "--threads", "1"]) == 0
        assert not [m for m in sys.modules if m.split(".")[0] in ("torch", "timm")]
        print("ok")
    """)
    env = {**os.environ, "MPLBACKEND": "agg"}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("ok")
    assert (tmp_path / "out.fits").is_file() and (tmp_path / "out_tiles.fits").is_file()


def test_pipeline_functions_are_importable_from_the_package():
    import radiofm
    from radiofm import classify_morphology, embed_image
    from radiofm.inference import _annotate

    assert embed_image is _annotate.embed_image
    assert classify_morphology is _annotate.classify_morphology
    assert {"embed_image", "count_sources", "embed_sources"} <= set(radiofm.__all__)
    with pytest.raises(AttributeError, match="no attribute 'embed_images'"):
        radiofm.embed_images  # noqa: B018

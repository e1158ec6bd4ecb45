"""The radiofm command line."""

import logging

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import QTable
from regions import Regions

from radiofm.cli import main
from radiofm.tests.helpers import sky_header, write_image
from radiofm.tiling import read_table


def test_tile_example_writes_every_output(tmp_path):
    assert main(["tile", "--example", "-o", str(tmp_path)]) == 0
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["example_sky.fits", "example_sky_quicklook.png", "example_sky_tiles.ecsv",
                     "example_sky_tiles.reg", "example_truth.ecsv"]
    tiles = QTable.read(tmp_path / "example_sky_tiles.ecsv")
    assert len(tiles) == 64  # 2048 px / 256 px = 8 tiles per side
    assert tiles.meta["TILESIZE"] == 256
    assert len(Regions.read(tmp_path / "example_sky_tiles.reg")) == 64
    assert (tmp_path / "example_sky_quicklook.png").read_bytes()[:4] == b"\x89PNG"
    truth = QTable.read(tmp_path / "example_truth.ecsv")
    assert {"compact", "FRI", "FRII", "bent"} >= set(truth["morph_class"])


def test_tile_a_file_with_angle_tiles_and_fits_output(tmp_path):
    header = sky_header(200, 150, cube=[("FREQ", 3, 1.4e9, 1e7)])
    path = write_image(tmp_path / "cube.fits", header)
    out = tmp_path / "out"
    assert main(["tile", str(path), "--plane", "1", "--tile-size", "1.1 arcmin",
                 "--overlap", "10", "--format", "fits", "-o", str(out)]) == 0
    tiles = QTable.read(out / "cube_tiles.fits")
    assert tiles.meta["TILESIZE"] == 60 and tiles.meta["OVERLAP"] == 10
    assert (np.asarray(tiles["x_max"]) <= 200).all()


def test_errors_are_reported_without_a_traceback(tmp_path, caplog):
    header = sky_header(200, 150, cube=[("FREQ", 3, 1.4e9, 1e7)])
    path = write_image(tmp_path / "cube.fits", header)
    with caplog.at_level(logging.ERROR, logger="radiofm"):
        assert main(["tile", str(path), "-o", str(tmp_path)]) == 2
    assert "choose one with plane=0" in caplog.text
    assert main(["tile", str(tmp_path / "absent.fits"), "-o", str(tmp_path)]) == 2
    assert "no such image file" in caplog.text


def test_outputs_are_not_overwritten_unless_asked(tmp_path, caplog):
    path = write_image(tmp_path / "image.fits", sky_header(300, 300))
    assert main(["tile", str(path), "-o", str(tmp_path)]) == 0
    before = (tmp_path / "image_tiles.ecsv").read_bytes()
    with caplog.at_level(logging.ERROR, logger="radiofm"):
        assert main(["tile", str(path), "--tile-size", "100", "-o", str(tmp_path)]) == 2
    assert "pass --overwrite" in caplog.text
    assert (tmp_path / "image_tiles.ecsv").read_bytes() == before
    assert main(["tile", str(path), "--tile-size", "100", "-o", str(tmp_path),
                 "--overwrite"]) == 0
    assert len(QTable.read(tmp_path / "image_tiles.ecsv")) == 9


def test_bad_tile_size_is_an_argument_error(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["tile", "--example", "--tile-size", "3 Jy", "-o", str(tmp_path)])
    assert "is not an angle" in capsys.readouterr().err


def test_unitless_tile_size_making_too_many_tiles_is_refused_before_tiling(tmp_path, caplog):
    path = write_image(tmp_path / "image.fits", sky_header(300, 300))
    with caplog.at_level(logging.ERROR, logger="radiofm"):
        assert main(["tile", str(path), "--tile-size", "2", "-o", str(tmp_path)]) == 2
    assert "22500 tiles" in caplog.text and "'2px'" in caplog.text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["image.fits"]
    assert main(["tile", str(path), "--tile-size", "150px", "--format", "votable",
                 "-o", str(tmp_path)]) == 0
    assert len(read_table(tmp_path / "image_tiles.vot")) == 4


def test_help_has_the_main_job_first_and_no_rest_markup(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    assert "``" not in text and "radiofm annotate --example -o radiofm-example" in text
    assert text.index("annotate") < text.index("tile ")
    for command in ("simulate", "annotate", "similar", "outliers", "index"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        assert "``" not in capsys.readouterr().out


def test_simulate_command(tmp_path):
    out = tmp_path / "field.fits"
    assert main(["simulate", "-o", str(tmp_path), "--name", "field", "--size", "256",
                 "--seed", "3"]) == 0
    with fits.open(out) as hdul:
        assert hdul[0].data.shape == (1, 1, 256, 256)
        assert hdul[0].header["SIMSEED"] == 3
    assert len(QTable.read(tmp_path / "field_truth.ecsv")) > 0


def test_label_with_a_catalogue_and_with_a_finder(tmp_path):
    from radiofm.simulate import make_radio_sky

    hdu, truth = make_radio_sky((512, 512), seed=8)
    image = tmp_path / "field.fits"
    hdu.writeto(image)
    truth.write(tmp_path / "truth.ecsv")
    out = tmp_path / "catalogue"
    assert main(["label", str(image), "--catalog", str(tmp_path / "truth.ecsv"),
                 "--tile-size", "128", "--coco", "-o", str(out)]) == 0
    tiles = QTable.read(out / "field_tiles.ecsv")
    assert tiles["n_compact"].sum() == (truth["s_code"] == "S").sum()
    assert {p.name for p in out.iterdir()} == {
        "field_tiles.ecsv", "field_tiles.reg", "field_quicklook.png", "field_sources.ecsv",
        "field_coco.json"}
    found = tmp_path / "found"
    assert main(["label", str(image), "--finder", "photutils", "--select", "S,C",
                 "--tile-size", "256", "-o", str(found)]) == 0
    tiles = QTable.read(found / "field_tiles.ecsv")
    sources = QTable.read(found / "field_sources.ecsv")
    assert tiles["n_compact"].sum() == np.isin(sources["s_code"], ["S", "C"]).sum() > 0

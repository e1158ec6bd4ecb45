"""write_table, table_format and the tile-size parser."""

import astropy.units as u
import numpy as np
import pytest
from astropy.coordinates import SkyCoord
from astropy.table import QTable, Table

from radiofm.image import parse_hdu, read_image
from radiofm.tests.helpers import sky_header, write_image
from radiofm.tiling import (
    UnitlessPixels,
    check_tile_count,
    count_tiles,
    parse_size,
    read_table,
    table_format,
    tile_image,
    write_table,
)


@pytest.fixture(scope="module")
def table():
    table = QTable()
    table["tile_id"] = np.arange(3)
    table["sky_center"] = SkyCoord([10, 11, 12] * u.deg, [-30, -31, -32] * u.deg)
    table["embedding"] = np.arange(12, dtype=np.float32).reshape(3, 4)
    table.meta["MODEL"] = "tiny"
    return table


@pytest.mark.parametrize("name", ["t.fits", "t.ecsv", "t.vot", "t.parquet"])
def test_write_table_round_trips(table, tmp_path, name):
    if name.endswith(".parquet"):
        pytest.importorskip("pyarrow")
    path = tmp_path / name
    write_table(table, path)
    back = read_table(path)
    np.testing.assert_array_equal(back["embedding"], table["embedding"])
    assert back["sky_center"].separation(table["sky_center"]).max() < 1e-6 * u.arcsec
    assert back.meta["MODEL"] == "tiny"
    assert back.colnames == table.colnames
    assert [p.name for p in tmp_path.iterdir()] == [name]  # no temporary left behind


def test_write_table_refuses_and_leaves_nothing_half_written(table, tmp_path):
    path = tmp_path / "t.ecsv"
    write_table(table, path)
    with pytest.raises(FileExistsError, match="overwrite"):
        write_table(table, path)
    with pytest.raises(ValueError, match="cannot tell the table format"):
        write_table(table, tmp_path / "t.txt")
    bad = Table({"a": [object()]})
    with pytest.raises(Exception):  # noqa: B017 -- whatever astropy raises
        write_table(bad, path, overwrite=True)
    assert QTable.read(path)["tile_id"].tolist() == [0, 1, 2]  # the old table is intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.ecsv"]


def test_table_format():
    assert table_format("a.FITS.gz") == "fits" and table_format("a.xml") == "votable"


def test_parse_size_and_parse_hdu():
    assert parse_size("256px") == 256 and not isinstance(parse_size("256 px"), UnitlessPixels)
    assert isinstance(parse_size("64"), UnitlessPixels)
    assert parse_size("5 arcmin") == 5 * u.arcmin
    with pytest.raises(ValueError, match="not an angle"):
        parse_size("3 Jy")
    with pytest.raises(ValueError, match="neither pixels"):
        parse_size("big")
    assert parse_hdu("2") == 2 and parse_hdu("SCI") == "SCI"


def test_unitless_sizes_making_too_many_tiles_are_refused(tmp_path):
    image = read_image(write_image(tmp_path / "i.fits", sky_header(300, 300)))
    with image:
        assert count_tiles(image.shape, 100) == 9 == len(tile_image(image, 100))
        assert count_tiles(image.shape, 64, 16) == len(tile_image(image, 64, overlap=16))
        check_tile_count(image, UnitlessPixels(100))
        check_tile_count(image, 2)  # typed with px: the user meant it
        with pytest.raises(ValueError, match="write '2px' if you mean pixels"):
            check_tile_count(image, UnitlessPixels(2))


def test_progress_goes_to_the_log_when_not_on_a_terminal(tmp_path, caplog):
    import logging

    image = read_image(write_image(tmp_path / "i.fits", sky_header(300, 300)))
    with image, caplog.at_level(logging.INFO, logger="radiofm"):
        tiles = tile_image(image, 30)
        assert sum(1 for _ in tiles.batches(5, threads=1, progress=True)) == 20
        assert "20/20 batches (100 %)" in caplog.text
        assert caplog.text.count("batches (") == 10
        caplog.clear()
        assert sum(1 for _ in tiles.batches(5, threads=1, progress=False)) == 20
        assert "batches" not in caplog.text

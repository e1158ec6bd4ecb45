"""The tile grid, its table, WCS, footprints and batches."""

import astropy.units as u
import numpy as np
import pytest
from astropy.coordinates import SkyCoord
from astropy.nddata import Cutout2D
from astropy.table import QTable
from astropy.wcs import WCS
from regions import Regions

from radiofm.image import read_image
from radiofm.tests.helpers import noise_image, sky_header, write_image
from radiofm.tiling import Normalization, fit_normalization, tile_image


@pytest.fixture
def header():
    return sky_header(500, 300, crval=(150.0, -30.0))


@pytest.fixture
def image(header):
    return read_image((noise_image(header), header))


def test_grid_without_overlap_shifts_the_last_tiles_to_the_edge(image):
    tiles = tile_image(image, 128)
    table = tiles.table
    assert isinstance(table, QTable)
    assert table.colnames == ["tile_id", "x_min", "y_min", "x_max", "y_max", "x_center",
                              "y_center", "sky_center", "valid_fraction"]
    assert sorted(set(table["x_min"])) == [0, 128, 256, 372]
    assert sorted(set(table["y_min"])) == [0, 128, 172]
    assert len(tiles) == 12
    assert list(table["tile_id"]) == list(range(12))
    assert (table["x_max"] - table["x_min"] == 128).all()
    assert table["x_max"].max() == 500 and table["y_max"].max() == 300
    assert (table["valid_fraction"] == 1).all()


def test_drop_edge_and_overlap(image):
    assert len(tile_image(image, 128, edge="drop")) == 3 * 2
    tiles = tile_image(image, 128, overlap=64, edge="drop")
    assert sorted(set(tiles.table["x_min"])) == [0, 64, 128, 192, 256, 320]
    assert sorted(set(tiles.table["y_min"])) == [0, 64, 128]
    assert tiles.overlap == 64


def test_tile_size_as_angle(image):
    tiles = tile_image(image, 2.2 * u.arcmin, overlap=11 * u.arcsec)
    assert tiles.tile_size == 120
    assert tiles.overlap == 10
    assert tiles.tile_angle.to_value(u.arcmin) == pytest.approx(2.2)


def test_sky_centres_follow_the_wcs(image):
    tiles = tile_image(image, 100)
    centre = tiles.table["sky_center"]
    assert isinstance(centre, SkyCoord)
    expected = image.wcs.pixel_to_world(tiles.table["x_center"], tiles.table["y_center"])
    assert centre.separation(expected).max().arcsec < 1e-9
    first = tiles.table[0]
    assert (first["x_center"], first["y_center"]) == (49.5, 49.5)


def test_valid_fraction_and_min_valid(header):
    data = noise_image(header)
    data[:, :64] = np.nan  # a blank strip, as at the edge of a primary-beam-cut image
    image = read_image((data, header))
    tiles = tile_image(image, 128, min_valid=0.0)
    first = tiles.table[tiles.table["x_min"] == 0]
    assert np.allclose(first["valid_fraction"], 0.5)
    kept = tile_image(image, 128, min_valid=1.0)
    assert (kept.table["x_min"] >= 64).all()
    assert len(kept) == len(tiles) - 3
    with pytest.raises(ValueError, match="no 128-pixel tile has at least 100% finite"):
        data[:, :] = np.nan
        data[0, 0] = 1.0
        tile_image(read_image((data, header)), 128)


def test_tile_wcs_matches_cutout2d(image):
    tiles = tile_image(image, 128)
    rows, cols = tiles.tile_slices(5)
    cutout = Cutout2D(image.data, ((cols.start + cols.stop - 1) / 2,
                                   (rows.start + rows.stop - 1) / 2), 128, wcs=image.wcs)
    tile_wcs = tiles.tile_wcs(5)
    assert isinstance(tile_wcs, WCS)
    np.testing.assert_allclose(tile_wcs.wcs.crpix, cutout.wcs.wcs.crpix)
    np.testing.assert_array_equal(tiles.read_tile(5), cutout.data)
    assert tile_wcs.pixel_to_world(0, 0).separation(
        image.wcs.pixel_to_world(cols.start, rows.start)).arcsec < 1e-9


def test_batches_cover_every_tile_once_and_match_read_tile(image):
    tiles = tile_image(image, 100, overlap=20)
    stretch = tiles.fit_normalization("percentile")
    seen = []
    for ids, batch in tiles.batches(7, normalization=stretch):
        assert batch.dtype == np.float32
        assert batch.shape == (len(ids), 1, 100, 100)
        assert 0.0 <= batch.min() and batch.max() <= 1.0
        for tile_id, pixels in zip(ids, batch, strict=True):
            np.testing.assert_array_equal(pixels[0], tiles.read_tile(tile_id, stretch))
        seen.extend(ids)
    assert sorted(seen) == list(range(len(tiles)))


def test_batches_of_windows_cut_each_tile_into_its_cells(image):
    """``windows`` streams each tile's windows, in split_windows order, at the size asked."""
    from radiofm.tiling import prepare_tiles, split_windows, window_bounds

    tiles = tile_image(image, 100)
    stretch = tiles.fit_normalization("snr")
    ids, batch = next(tiles.batches(4, normalization=stretch, size=16, windows=3))
    assert batch.shape == (len(ids) * 9, 1, 16, 16)
    row = tiles.table[ids[1]]
    raw = np.asarray(image.data[row["y_min"]:row["y_max"], row["x_min"]:row["x_max"]],
                     np.float32)[None]
    expected = prepare_tiles(split_windows(raw, 3), stretch, 16)
    np.testing.assert_allclose(batch[9:18, 0], expected, rtol=1e-6)
    edges, starts, side = window_bounds(100, 3)
    assert edges.tolist() == [0, 33, 67, 100] and side == 34
    assert (starts <= edges[:-1]).all() and (starts + side >= edges[1:]).all()
    with pytest.raises(ValueError, match="windows must be a positive integer"):
        next(tiles.batches(4, windows=0))
    with pytest.raises(ValueError, match="under 2 px"):
        split_windows(np.zeros((1, 5, 5)), 6)


def test_batches_use_the_parent_image_stretch(header):
    data = noise_image(header)
    data[10:20, 10:20] = 1.0  # one bright source in the first tile only
    tiles = tile_image(read_image((data, header)), 100)
    stretch = fit_normalization(data)
    _, batch = next(tiles.batches(64))
    # every tile uses the same parent-image parameters, not its own percentiles
    np.testing.assert_array_equal(batch[1, 0], stretch(data[0:100, 100:200]))
    assert batch[0, 0].max() == 1.0


def test_bad_grid_parameters(image):
    with pytest.raises(ValueError, match=r"500x300 pixels, smaller than one 512-pixel tile; "
                                         r"use tile_size <= 300"):
        tile_image(image, 512)
    with pytest.raises(ValueError, match="overlap must be smaller than the tile size"):
        tile_image(image, 64, overlap=64)
    with pytest.raises(u.UnitsError, match="tile_size must be pixels or an angle"):
        tile_image(image, 3 * u.Jy)
    with pytest.raises(TypeError, match="tile_size must be an int"):
        tile_image(image, 64.5)
    with pytest.raises(ValueError, match="tile_size must be positive"):
        tile_image(image, 0)
    with pytest.raises(ValueError, match="edge must be one of"):
        tile_image(image, 64, edge="pad")
    with pytest.raises(ValueError, match="min_valid is a fraction"):
        tile_image(image, 64, min_valid=50)
    tiles = tile_image(image, 64)
    with pytest.raises(IndexError, match="tile_id 99 out of range"):
        tiles.read_tile(99)
    with pytest.raises(ValueError, match="batch_size must be at least 1"):
        next(tiles.batches(0))


def test_footprints_write_ds9_and_crtf(tmp_path, image):
    tiles = tile_image(image, 128)
    sky = tiles.footprints()
    assert len(sky) == len(tiles)
    assert sky[3].meta["text"] == "3"
    corners = sky[0].vertices
    assert corners.separation(image.wcs.pixel_to_world(-0.5, -0.5)).arcsec.min() < 1e-6
    for fmt in ("ds9", "crtf"):
        path = tmp_path / f"tiles.{fmt}"
        tiles.write_footprints(path, format=fmt)
        back = Regions.read(path, format=fmt)
        assert len(back) == len(tiles)
    pixel = tiles.footprints(sky=False)
    assert pixel[0].width == 128
    assert pixel[0].contains(tiles.footprints(sky=False)[0].center)


@pytest.mark.parametrize("fmt", ["ecsv", "fits"])
def test_table_round_trips(tmp_path, image, fmt):
    tiles = tile_image(image, 128)
    path = tmp_path / f"tiles.{fmt}"
    tiles.table.write(path)
    back = QTable.read(path)
    for name in ("tile_id", "x_min", "y_min", "x_max", "y_max", "valid_fraction"):
        np.testing.assert_array_equal(back[name], tiles.table[name])
    assert back["sky_center"].separation(tiles.table["sky_center"]).max().arcsec < 1e-6
    for key in ("TILESIZE", "OVERLAP", "RFM_VER", "PIXSCALE", "IMAGE"):
        assert back.meta[key] == tiles.table.meta[key]


def test_tiles_stream_from_disk(tmp_path, header):
    data = noise_image(header)
    path = write_image(tmp_path / "image.fits", header, data)
    with read_image(path) as image:
        tiles = tile_image(image, 128, overlap=16)
        in_memory = tile_image(read_image((data, header)), 128, overlap=16)
        stretch = Normalization("snr", offset=0.0, scale=1e-4)
        for (ids, batch), (ids2, batch2) in zip(tiles.batches(5, normalization=stretch),
                                                in_memory.batches(5, normalization=stretch),
                                                strict=True):
            np.testing.assert_array_equal(ids, ids2)
            np.testing.assert_array_equal(batch, batch2)

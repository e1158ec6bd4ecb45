"""Counting catalogue sources per tile, cross-matching and COCO export."""

import json

import astropy.units as u
import numpy as np
import pytest
from astropy.coordinates import SkyCoord
from astropy.table import QTable, Table

from radiofm.catalogs import count_in_tiles, match_catalog, tile_membership, tiles_to_coco
from radiofm.image import read_image
from radiofm.simulate import make_radio_sky
from radiofm.sources import read_catalog
from radiofm.tiling import tile_image


@pytest.fixture(scope="module")
def field():
    hdu, truth = make_radio_sky((700, 600), min_flux=2e-5, extended_density=200.0, seed=21)
    return read_image(hdu), truth


def _brute_force(truth, tiles, mask):
    x, y = np.asarray(truth["x_center"]), np.asarray(truth["y_center"])
    return np.array([
        np.sum(mask & (x >= row["x_min"] - 0.5) & (x < row["x_max"] - 0.5)
               & (y >= row["y_min"] - 0.5) & (y < row["y_max"] - 0.5))
        for row in tiles.table
    ])


@pytest.mark.parametrize(("size", "overlap", "edge"), [(100, 0, "shift"), (128, 48, "shift"),
                                                       (150, 0, "drop"), (64, 63, "drop")])
def test_counts_match_a_brute_force_count(field, size, overlap, edge):
    image, truth = field
    tiles = tile_image(image, size, overlap=overlap, edge=edge)
    counted = count_in_tiles(truth, tiles)
    compact = np.asarray(truth["s_code"]) == "S"
    np.testing.assert_array_equal(counted["n_compact"], _brute_force(truth, tiles, compact))
    assert "n_compact" not in tiles.table.colnames  # the tile set is left as it was
    assert counted.meta["COUNTCOL"] == "n_compact"


@pytest.mark.parametrize(("size", "windows"), [(100, 3), (150, 2), (245, 3)])
def test_window_counts_partition_each_tile(field, size, windows):
    """Each window's count is a brute-force count in its cell, and a tile's cells add up to
    the tile's count: no source is lost between windows or counted twice."""
    from radiofm.tiling import window_bounds

    image, truth = field
    if size > min(image.shape):
        pytest.skip("the field is smaller than this tile")
    tiles = tile_image(image, size)
    counted = count_in_tiles(truth, tiles, select="all", windows=windows)
    per_window = np.asarray(counted["n_compact"])
    assert per_window.shape == (len(tiles), windows * windows)
    np.testing.assert_array_equal(per_window.sum(axis=1),
                                  count_in_tiles(truth, tiles, select="all")["n_compact"])
    edges, _, _ = window_bounds(size, windows)
    x, y = np.asarray(truth["x_center"]), np.asarray(truth["y_center"])
    for k, row in enumerate(tiles.table[:3]):
        for cell in range(windows * windows):
            y0, x0 = row["y_min"] + edges[cell // windows], row["x_min"] + edges[cell % windows]
            y1 = row["y_min"] + edges[cell // windows + 1]
            x1 = row["x_min"] + edges[cell % windows + 1]
            inside = ((x >= x0 - 0.5) & (x < x1 - 0.5) & (y >= y0 - 0.5) & (y < y1 - 0.5))
            assert per_window[k, cell] == inside.sum()


def test_dropped_tiles_and_sources_off_the_image(field):
    image, truth = field
    data = image.data.copy()
    data[:, :150] = np.nan
    tiles = tile_image((data, image.wcs), 100, min_valid=1.0)
    assert tiles.table["x_min"].min() >= 150
    outside = SkyCoord([10.0, 150.0], [10.0, -31.0], unit="deg")  # far away
    catalog = QTable({"sky_center": SkyCoord([truth["sky_center"], outside]),
                      "s_code": list(truth["s_code"]) + ["S", "S"]})
    counted = count_in_tiles(catalog, tiles, select="all")
    everything = np.ones(len(truth), dtype=bool)
    np.testing.assert_array_equal(counted["n_compact"], _brute_force(truth, tiles, everything))


def test_selections(field):
    image, truth = field
    tiles = tile_image(image, 200)
    codes = np.asarray(truth["s_code"])
    everything = count_in_tiles(truth, tiles, select=None)["n_compact"]
    np.testing.assert_array_equal(everything,
                                  _brute_force(truth, tiles, np.ones(len(truth), dtype=bool)))
    np.testing.assert_array_equal(count_in_tiles(truth, tiles, select="all")["n_compact"],
                                  everything)
    extended = count_in_tiles(truth, tiles, select=("M",), column="n_extended")["n_extended"]
    np.testing.assert_array_equal(extended, _brute_force(truth, tiles, codes == "M"))
    bright = truth["flux"].value > 1e-3
    np.testing.assert_array_equal(count_in_tiles(truth, tiles, select=bright)["n_compact"],
                                  _brute_force(truth, tiles, bright))
    by_function = count_in_tiles(truth, tiles, select=lambda t: t["flux"].value > 1e-3)
    np.testing.assert_array_equal(by_function["n_compact"], _brute_force(truth, tiles, bright))
    with pytest.raises(TypeError, match="select must be"):
        count_in_tiles(truth, tiles, select=3)
    with pytest.raises(ValueError, match="mask of shape"):
        count_in_tiles(truth, tiles, select=bright[:5])


def test_galactic_and_empty_catalogues_count_the_same(field):
    image, truth = field
    tiles = tile_image(image, 100)
    galactic = QTable({"sky_center": truth["sky_center"].galactic, "s_code": truth["s_code"]})
    np.testing.assert_array_equal(count_in_tiles(galactic, tiles)["n_compact"],
                                  count_in_tiles(truth, tiles)["n_compact"])
    empty = read_catalog(Table({"RA": np.zeros(0), "DEC": np.zeros(0)}))
    assert (count_in_tiles(empty, tiles)["n_compact"] == 0).all()
    with pytest.raises(ValueError, match="no sky position columns"):
        count_in_tiles(Table({"flux": [1.0]}), tiles)


def test_membership_pairs_cover_overlaps(field):
    image, truth = field
    tiles = tile_image(image, 100, overlap=50)
    tile_index, source_index, x, y = tile_membership(truth["sky_center"], tiles)
    np.testing.assert_allclose(x, truth["x_center"], atol=1e-6)
    in_four = np.bincount(source_index, minlength=len(truth))
    interior = (x > 60) & (x < 540) & (y > 60) & (y < 640)
    assert (in_four[interior] >= 1).all() and in_four.max() == 4


def test_match_catalog_nearest_and_one_to_one():
    target = QTable({"sky_center": SkyCoord([10.0, 10.0005, 20.0], [0.0, 0.0, 0.0], unit="deg"),
                     "flux": [1.0, 2.0, 3.0] * u.Jy})
    reference = Table({"RA": [10.0001, 30.0], "DEC": [0.0, 0.0], "morph_class": ["FRII", "FRI"],
                       "flux": [5.0, 6.0]})
    matched = match_catalog(target, reference, max_separation=5 * u.arcsec)
    assert list(matched["ref_index"]) == [0, 0, -1]
    assert matched["separation"][0].to_value(u.arcsec) == pytest.approx(0.36, abs=0.01)
    assert np.isnan(matched["separation"][2])
    assert matched["morph_class"][0] == "FRII" and matched["morph_class"].mask[2]
    assert "ref_flux" in matched.colnames and "RA" not in matched.colnames
    assert matched["flux"][0] == 1.0 * u.Jy  # the target's own column is kept
    single = match_catalog(target, reference, max_separation=5 * u.arcsec, one_to_one=True)
    assert list(single["ref_index"]) == [0, -1, -1]  # the closer row keeps the reference
    only = match_catalog(target, reference, columns=["morph_class"])
    assert "ref_flux" not in only.colnames


def test_match_reference_onto_tiles(field):
    image, truth = field
    tiles = tile_image(image, 100)
    extended = truth[truth["s_code"] == "M"]
    labelled = match_catalog(tiles.table, extended, max_separation=tiles.tile_angle / 2,
                             columns=["morph_class"])
    has = labelled["ref_index"] >= 0
    assert has.any()
    centres = labelled["sky_center"][has]
    nearest = extended["sky_center"][labelled["ref_index"][has]]
    assert (centres.separation(nearest) <= tiles.tile_angle / 2).all()


def test_coco_boxes(tmp_path, field):
    image, truth = field
    tiles = tile_image(image, 128)
    path = tmp_path / "tiles.json"
    coco = tiles_to_coco(tiles, truth, category="morph_class", path=path)
    assert json.loads(path.read_text()) == coco
    assert len(coco["images"]) == len(tiles)
    per_tile = np.bincount([a["image_id"] for a in coco["annotations"]], minlength=len(tiles))
    np.testing.assert_array_equal(per_tile, count_in_tiles(truth, tiles, select="all")
                                  ["n_compact"])
    names = {c["id"]: c["name"] for c in coco["categories"]}
    assert set(names.values()) == set(truth["morph_class"])
    for annotation in coco["annotations"]:
        left, bottom, width, height = annotation["bbox"]
        assert 0 <= left and 0 <= bottom and left + width <= 128 + 1e-6
        assert bottom + height <= 128 + 1e-6 and width > 0 and height > 0
    with pytest.raises(ValueError, match="no 'label' column"):
        tiles_to_coco(tiles, truth, category="label")


def test_weights_must_give_one_number_per_source():
    hdu, truth = make_radio_sky((256, 256), seed=4)
    with pytest.raises(ValueError, match="one number per catalogue row"):
        count_in_tiles(truth, tile_image(hdu, 128), weights=[1.0, 2.0])

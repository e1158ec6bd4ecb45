"""Quick-look figures."""

import numpy as np
import pytest
from astropy.visualization.wcsaxes import WCSAxes

from radiofm.image import read_image
from radiofm.tests.helpers import noise_image, sky_header
from radiofm.tiling import tile_image
from radiofm.visualization import plot_tiles


def _rectangles(axes):
    """The tile outlines, as (x_left, x_right) in data coordinates, from the grid (the
    patch collection drawn in the neutral grid colour)."""
    from matplotlib.colors import to_hex

    from radiofm.visualization._quicklook import GRID_COLOR

    grids = [c for c in axes.collections if len(c.get_edgecolor())
             and to_hex(c.get_edgecolor()[0]) == GRID_COLOR and not c.get_hatch()]
    assert len(grids) == 1
    return [(p.vertices[:, 0].min(), p.vertices[:, 0].max()) for p in grids[0].get_paths()]


@pytest.fixture
def tiles():
    header = sky_header(600, 400)
    return tile_image(read_image((noise_image(header), header)), 100)


def test_png_with_tile_outlines_and_labels(tmp_path, tiles):
    path = tmp_path / "quicklook.png"
    figure = plot_tiles(tiles, path)
    assert path.read_bytes()[:4] == b"\x89PNG"
    axes = figure.axes[0]
    assert isinstance(axes, WCSAxes)
    assert len(_rectangles(axes)) == len(tiles) == 24
    assert sorted(int(t.get_text()) for t in axes.texts) == list(range(24))


def test_large_images_are_decimated_and_columns_labelled(tiles):
    tiles.table["n_compact"] = np.arange(len(tiles)) * 0.5
    figure = plot_tiles(tiles, column="n_compact", max_pixels=150)
    axes = figure.axes[0]
    assert axes.images[0].get_array().shape == (100, 150)  # step 4 on a 600x400 image
    assert "11.5" in [t.get_text() for t in axes.texts]
    # tile outlines stay on the tiles: the last one ends at the decimated image edge
    last = max(_rectangles(axes))
    assert last[1] == pytest.approx((600 - 0.5) / 4)


def test_many_tiles_are_drawn_without_labels(tiles):
    figure = plot_tiles(tiles, label_limit=10)
    assert not figure.axes[0].texts


def _catalog(count, seed=0):
    import astropy.units as u
    from astropy.coordinates import SkyCoord
    from astropy.table import QTable

    rng = np.random.default_rng(seed)
    header = sky_header(600, 400)
    from astropy.wcs import WCS

    wcs = WCS(header)
    positions = wcs.pixel_to_world(rng.uniform(0, 599, count), rng.uniform(0, 399, count))
    classes = np.where(rng.random(count) < 0.95, "Compact",
                       rng.choice(["FRI", "FRII", "Bent", "uncertain"], count))
    table = QTable({"sky_center": SkyCoord(positions), "morph_class": classes,
                    "major": rng.uniform(8, 30, count) * u.arcsec,
                    "minor": rng.uniform(7.5, 8, count) * u.arcsec,
                    "pa": rng.uniform(0, 180, count) * u.deg})
    table.meta["CLASSES"] = "FRI,FRII,Compact,Bent"
    return table


def test_regions_are_ellipses_of_the_measured_shape():
    """Every region used to be a 135 arcsec circle (a quarter of the stamp)."""
    import astropy.units as u
    from regions import EllipseSkyRegion

    from radiofm.visualization import source_regions

    catalog = _catalog(20)
    catalog["major"][3] = np.nan  # no measured shape: a circle of half the beam
    regions = source_regions(catalog, beam=7.5 * u.arcsec)
    assert len(regions) == 20
    for k, region in enumerate(regions):
        if k == 3:
            assert region.radius.to_value(u.arcsec) == pytest.approx(3.75)
            continue
        assert isinstance(region, EllipseSkyRegion)
        assert region.width.to_value(u.arcsec) == pytest.approx(catalog["major"][k].value)
        assert region.height.to_value(u.arcsec) == pytest.approx(
            max(7.5, catalog["minor"][k].value))
        assert region.angle.to_value(u.deg) == pytest.approx(catalog["pa"][k].value + 90)
        assert region.width.to_value(u.arcsec) < 135 / 4


def test_quick_look_stays_readable_with_ten_thousand_sources(tiles, tmp_path):
    from matplotlib.colors import to_hex

    from radiofm.visualization import class_colors
    from radiofm.visualization._quicklook import GRID_COLOR

    catalog = _catalog(10_000)
    tiles.table["n_compact_pred"] = np.ma.masked_array(np.arange(24.0), mask=np.arange(24) == 5)
    tiles.image.source = "/a/long/path/to/field.fits"
    figure = plot_tiles(tiles, tmp_path / "q.png", column="n_compact_pred", sources=catalog)
    axes = figure.axes[0]
    assert axes.get_title() == "field.fits: 24 tiles of 100 px"
    legend = [t.get_text() for t in axes.get_legend().get_texts()]
    counts = {name: int((catalog["morph_class"] == name).sum()) for name in
              ("FRI", "FRII", "Compact", "Bent", "uncertain")}
    assert legend == [f"{name}: {counts[name]}" for name in counts]
    assert GRID_COLOR not in class_colors(["FRI", "FRII", "Compact", "Bent"]).values()
    compact = next(c for c in axes.collections if c.get_label().startswith("Compact"))
    assert compact.get_sizes().max() <= 4 and compact.get_alpha() < 0.5
    edge = {to_hex(c.get_edgecolor()[0]) for c in axes.collections if c.get_hatch()}
    assert edge == {GRID_COLOR}  # the masked (out-of-distribution) tile is hatched

"""Quick-look figures."""

import numpy as np
import pytest
from astropy.visualization.wcsaxes import WCSAxes

from radiofm.image import read_image
from radiofm.tests.helpers import noise_image, sky_header
from radiofm.tiling import tile_image
from radiofm.visualization import plot_tiles


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
    assert len(axes.patches) == len(tiles) == 24
    assert sorted(int(t.get_text()) for t in axes.texts) == list(range(24))


def test_large_images_are_decimated_and_columns_labelled(tiles):
    tiles.table["n_compact"] = np.arange(len(tiles)) * 0.5
    figure = plot_tiles(tiles, column="n_compact", max_pixels=150)
    axes = figure.axes[0]
    assert axes.images[0].get_array().shape == (100, 150)  # step 4 on a 600x400 image
    assert "11.5" in [t.get_text() for t in axes.texts]
    # tile outlines stay on the tiles: the last one ends at the decimated image edge
    last = max(axes.patches, key=lambda p: p.get_x())
    assert last.get_x() + last.get_width() == pytest.approx((600 - 0.5) / 4)


def test_many_tiles_are_drawn_without_labels(tiles):
    figure = plot_tiles(tiles, label_limit=10)
    assert not figure.axes[0].texts

"""Every real VLA FIRST field in the shared data opens and tiles."""

import csv

import astropy.units as u
import numpy as np
import pytest
from astropy.coordinates import SkyCoord

from radiofm.image import read_image
from radiofm.tiling import tile_image

FIRST_BEAM = 5.4 * u.arcsec


@pytest.fixture(scope="module")
def first_fields(shared_data):
    folder = shared_data / "first_fields"
    if not folder.is_dir():
        pytest.skip(f"{folder} is absent")
    with open(folder / "manifest.csv", newline="") as stream:
        manifest = {row["file"]: row for row in csv.DictReader(stream)}
    return folder, manifest


def test_every_first_field_opens_and_tiles(first_fields):
    folder, manifest = first_fields
    paths = sorted(folder.glob("*.fits.fz"))
    assert len(paths) == len(manifest) == 1260
    blank, tiled = [], 0
    for path in paths:
        try:
            image = read_image(path, beam=FIRST_BEAM)
        except ValueError as error:
            assert "no finite pixel" in str(error)
            blank.append(path.name)
            continue
        with image:
            assert image.shape == (300, 300)
            assert image.pixel_scale.to_value(u.arcsec) == pytest.approx(1.8)
            row = manifest[path.name]
            source = SkyCoord(float(row["ra_deg"]), float(row["dec_deg"]), unit="deg")
            x, y = image.wcs.world_to_pixel(source)
            assert 0 <= x < 300 and 0 <= y < 300, "the MiraBest source lies inside its cutout"
            tiles = tile_image(image, 128, min_valid=0.5)
            assert 1 <= len(tiles) <= 9
            ids, batch = next(tiles.batches(16))
            assert batch.shape == (len(ids), 1, 128, 128)
            assert np.isfinite(batch).all()
            tiled += 1
    # One SkyView cutout (200_033.655+000.710) is entirely blank: it must fail clearly.
    assert blank == ["200_033.655+000.710_0.2900_0030.76.fits.fz"]
    assert tiled == 1259


def test_first_header_is_read_as_skyview_wrote_it(first_fields):
    folder, _ = first_fields
    with read_image(folder / "100_010.451-009.284_0.0529_0080.60.fits.fz") as image:
        assert image.unit == u.Jy / u.beam
        assert image.beam is None  # FIRST cutouts carry no beam keywords
        assert image.frequency is None
        assert image.wcs.wcs.ctype[0] == "RA---TAN"
        assert image.header["SURVEY"] == "FIRST"
        values = image.data
        assert 1e-5 < np.nanstd(values) < 1e-1  # Jy/beam

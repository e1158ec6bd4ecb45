"""Position angles are east of north on the sky, whatever the pixel grid's orientation."""

import numpy as np
import pytest
from astropy.io import fits

from radiofm.sources import find_sources, position_angles
from radiofm.tests.helpers import sky_header

TRUE_PA = 30.0  # degrees east of north


def _field(size=96):
    """North up, east left; one elongated source at PA 30 deg plus faint noise."""
    header = sky_header(size, size, projection="TAN")
    header["BMAJ"] = header["BMIN"] = 3 * 1.1 / 3600
    header["BPA"] = 0.0
    y, x = np.mgrid[:size, :size] - size / 2
    theta = np.deg2rad(TRUE_PA)
    # east is -x and north +y: the major axis points along (-sin PA, cos PA)
    along = -x * np.sin(theta) + y * np.cos(theta)
    across = x * np.cos(theta) + y * np.sin(theta)
    data = np.exp(-0.5 * ((along / 8.0) ** 2 + (across / 2.5) ** 2))
    data = data + np.random.default_rng(1).normal(0, 1e-3, data.shape)
    return data.astype(np.float32), header


def _transposed(data, header):
    """The same sky with the pixel axes swapped (RA along NAXIS2)."""
    swapped = header.copy()
    for key in ("NAXIS", "CTYPE", "CRVAL", "CRPIX", "CDELT", "CUNIT"):
        swapped[f"{key}1"], swapped[f"{key}2"] = header[f"{key}2"], header[f"{key}1"]
    return np.ascontiguousarray(data.T), swapped


def _rotated(data, header):
    """The same sky on a grid turned by 90 degrees (a CD matrix with off-diagonal terms)."""
    turned = header.copy()
    for key in ("CDELT1", "CDELT2"):
        del turned[key]
    scale = header["CDELT2"]
    # np.rot90 maps new pixel (i, j) to old (j, n - 1 - i) in (x, y) order
    turned["CD1_1"], turned["CD1_2"] = 0.0, -scale
    turned["CD2_1"], turned["CD2_2"] = -scale, 0.0
    turned["CRPIX1"], turned["CRPIX2"] = header["NAXIS2"] + 1 - header["CRPIX2"], header["CRPIX1"]
    return np.ascontiguousarray(np.rot90(data, k=1)), turned


def _brightest_pa(data, header):
    catalog = find_sources((data, header), "photutils")
    return float(catalog["pa"][np.argmax(catalog["flux"])].value)


@pytest.mark.parametrize("transform", [None, _transposed, _rotated],
                         ids=["north-up", "transposed", "rotated-cd"])
def test_pa_is_east_of_north_on_any_grid(transform):
    data, header = _field()
    if transform is not None:
        data, header = transform(data, header)
    if transform is _rotated:  # the rotated grid shows the same sky at the same place
        from astropy.wcs import WCS

        first, turned = WCS(_field()[1]), WCS(header)
        n = data.shape[0]
        assert first.pixel_to_world(10, 20).separation(
            turned.pixel_to_world(n - 1 - 20, 10)).arcsec < 1e-6
    pa = _brightest_pa(data, header)
    assert abs((pa - TRUE_PA + 90) % 180 - 90) < 3


def test_position_angles_east_right_image():
    header = sky_header(32, 32)
    header["CDELT1"] = abs(header["CDELT1"])  # east to the right
    wcs = fits.Header(header)
    from astropy.wcs import WCS

    # an axis along +x points east on this grid: PA 90; along +y: north, PA 0
    pa = position_angles(WCS(wcs), [16, 16], [16, 16], [0.0, 90.0])
    assert ((pa - [90.0, 0.0] + 90) % 180 - 90 == pytest.approx([0, 0], abs=1e-3))
    assert ((0 <= pa) & (pa < 180)).all()

"""Bad input gets an error that names the problem and the fix."""

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS

from radiofm.image import read_image
from radiofm.tests.helpers import noise_image, sky_header, write_image


def test_no_celestial_wcs():
    with pytest.raises(ValueError, match="no celestial WCS; pass wcs="):
        read_image((np.ones((10, 10)), fits.Header()))
    linear = WCS(naxis=2)
    linear.wcs.ctype = ["X", "Y"]
    with pytest.raises(ValueError, match="no celestial WCS"):
        read_image(np.ones((10, 10)), wcs=linear)
    with pytest.raises(ValueError, match="no celestial WCS"):
        read_image(np.ones((10, 10)))


def test_one_d_data():
    header = sky_header(10, 10)
    with pytest.raises(ValueError, match="1-D .*needs a 2-D image"):
        read_image((np.ones(10), header))


def test_three_d_cube_without_plane(tmp_path):
    header = sky_header(10, 10, cube=[("FREQ", 3, 1.4e9, 1e6)])
    path = write_image(tmp_path / "cube.fits", header)
    with pytest.raises(ValueError, match=r"more than one plane .* FREQ \(3\); choose one with "
                                         "plane=0"):
        read_image(path)


def test_all_nan_image(tmp_path):
    header = sky_header(300, 300)
    data = np.full((300, 300), np.nan, dtype=np.float32)
    path = write_image(tmp_path / "blank.fits", header, data)
    with pytest.raises(ValueError, match="no finite pixel"):
        read_image(path)
    with pytest.raises(ValueError, match="no finite pixel"):
        read_image((data, header))


def test_table_hdu(tmp_path):
    table = fits.BinTableHDU(Table({"ra": [1.0, 2.0]}))
    with pytest.raises(TypeError, match="a table, not an image"):
        read_image(table)
    path = tmp_path / "table.fits"
    fits.HDUList([fits.PrimaryHDU(), table]).writeto(path)
    with pytest.raises(ValueError, match="has no HDU with image data"):
        read_image(path)
    with pytest.raises(TypeError, match="HDU 1 .* is a BinTableHDU, a table, not an image"):
        read_image(path, hdu=1)
    with pytest.raises(ValueError, match="has no HDU 5"):
        read_image(path, hdu=5)


def test_truncated_file(tmp_path):
    path = write_image(tmp_path / "image.fits", sky_header(200, 200))
    path.write_bytes(path.read_bytes()[: 2880 + 40000])
    with pytest.raises(ValueError, match="truncated.*copy or download it again"):
        read_image(path)


def test_not_a_fits_file(tmp_path):
    path = tmp_path / "notes.fits"
    path.write_text("these are my observing notes\n")
    with pytest.raises(ValueError, match="is not a FITS file"):
        read_image(path)
    empty = tmp_path / "empty.fits"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match="is not a FITS file"):
        read_image(empty)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such image file"):
        read_image(tmp_path / "absent.fits")


def test_unsupported_types():
    with pytest.raises(TypeError, match="cannot read a list as an image; expected a path"):
        read_image([1, 2, 3])
    with pytest.raises(TypeError, match="wcs must be an astropy WCS or a FITS Header"):
        read_image(np.ones((4, 4)), wcs="RA---SIN")
    with pytest.raises(TypeError, match="plane must be an int or a dict"):
        header = sky_header(10, 10)
        read_image((noise_image(header), header), plane="first")


def test_bad_input_does_not_touch_the_file(tmp_path):
    header = sky_header(10, 10, cube=[("FREQ", 3, 1.4e9, 1e6)])
    path = write_image(tmp_path / "cube.fits", header)
    before = path.read_bytes()
    with pytest.raises(ValueError):
        read_image(path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cube.fits"]

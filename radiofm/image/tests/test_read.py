"""Every input type reaches the same RadioImage."""

import gzip
import mmap

import astropy.units as u
import numpy as np
import pytest
from astropy.io import fits
from astropy.nddata import CCDData, NDData
from astropy.wcs import WCS

from radiofm.image import RadioImage, read_image
from radiofm.tests.helpers import noise_image, sky_header, write_image


@pytest.fixture
def header():
    return sky_header(64, 48)


@pytest.fixture
def data(header):
    return noise_image(header)


def _check(image, data):
    assert isinstance(image, RadioImage)
    assert image.shape == data.shape
    assert image.wcs.naxis == 2
    assert image.wcs.array_shape == data.shape
    assert image.unit == u.Jy / u.beam or image.unit == u.dimensionless_unscaled
    np.testing.assert_array_equal(image.read_region(slice(None), slice(None)), data)
    np.testing.assert_array_equal(image.read_region(slice(5, 9), slice(10, 30)), data[5:9, 10:30])
    sky = image.wcs.pixel_to_world(31.5, 23.5)
    assert sky.ra.deg == pytest.approx(150.0)
    assert sky.dec.deg == pytest.approx(-30.0)


def test_path_plain_fits_is_streamed_not_loaded(tmp_path, header, data):
    path = write_image(tmp_path / "plain.fits", header, data)
    with read_image(path) as image:
        _check(image, data)
        base = image.data
        while isinstance(base, np.ndarray | memoryview):
            base = base.obj if isinstance(base, memoryview) else base.base
        assert isinstance(base, mmap.mmap), "uncompressed files are memory-mapped, not loaded"
        assert image.unit == u.Jy / u.beam
        assert image.source == str(path)
        assert image.pixel_scale.to_value(u.arcsec) == pytest.approx(1.1)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int16, np.int32, np.uint8])
def test_path_every_bitpix(tmp_path, header, dtype):
    data = (np.arange(48 * 64).reshape(48, 64) % 200).astype(dtype)
    path = write_image(tmp_path / "bitpix.fits", header, data)
    with read_image(path) as image:
        np.testing.assert_array_equal(image.read_region(slice(None), slice(None)), data)
        np.testing.assert_array_equal(image.read_region(slice(1, 40, 3), slice(None, None, 5)),
                                      data[1:40:3, ::5])


def test_path_tile_compressed(tmp_path, header, data):
    path = tmp_path / "image.fits.fz"
    fits.HDUList([fits.PrimaryHDU(), fits.CompImageHDU(data, header=header,
                                                       quantize_level=0,
                                                       compression_type="GZIP_1")]).writeto(path)
    with read_image(path) as image:
        _check(image, data)


def test_path_gzipped(tmp_path, header, data):
    plain = write_image(tmp_path / "image.fits", header, data)
    zipped = tmp_path / "image.fits.gz"
    zipped.write_bytes(gzip.compress(plain.read_bytes()))
    with read_image(zipped) as image:
        _check(image, data)


def test_hdulist_and_hdus(tmp_path, header, data):
    hdul = fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(data, header=header)])
    _check(read_image(hdul), data)
    _check(read_image(hdul[1]), data)
    _check(read_image(fits.PrimaryHDU(data, header=header)), data)
    path = tmp_path / "two.fits"
    hdul.writeto(path)
    with fits.open(path) as opened:
        _check(read_image(opened, hdu=1), data)
        _check(read_image(opened[1]), data)
    comp = tmp_path / "comp.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.CompImageHDU(data, header=header,
                                                       quantize_level=0,
                                                       compression_type="GZIP_1")]).writeto(comp)
    with fits.open(comp) as opened:
        _check(read_image(opened[1]), data)


def test_nddata_and_ccddata_with_mask(header, data):
    wcs = WCS(header)
    _check(read_image(NDData(data, wcs=wcs, unit="Jy/beam")), data)
    mask = np.zeros(data.shape, dtype=bool)
    mask[3, 4] = True
    image = read_image(CCDData(data, wcs=wcs, unit="Jy/beam", mask=mask))
    assert image.unit == u.Jy / u.beam
    block = image.read_region(slice(None), slice(None))
    assert np.isnan(block[3, 4])
    assert np.isfinite(np.delete(block.ravel(), 3 * 64 + 4)).all()


def test_array_pairs_and_wcs_keyword(header, data):
    wcs = WCS(header)
    _check(read_image((data, wcs)), data)
    _check(read_image((data, header)), data)
    _check(read_image(data, wcs=wcs), data)


def test_radio_image_passes_through_and_overrides(header, data):
    image = read_image((data, header))
    assert read_image(image) is image
    other = read_image(image, beam=(6 * u.arcsec, 5 * u.arcsec, 30 * u.deg),
                       frequency=1.4 * u.GHz, unit="mJy/beam")
    assert other.beam.major == 6 * u.arcsec
    assert other.beam.pa == 30 * u.deg
    assert other.frequency == 1.4e9 * u.Hz
    assert other.unit == u.mJy / u.beam
    assert image.beam is None


def test_repr_mentions_the_essentials(header, data):
    image = read_image((data, header), beam=7.5 * u.arcsec, frequency=1.28 * u.GHz)
    text = repr(image)
    assert "64x48 px" in text
    assert "7.50x7.50 arcsec" in text
    assert "1280.0 MHz" in text

"""Headers as CASA, WSClean, AIPS, SkyView and the MeerKAT pipelines write them."""

import logging

import astropy.units as u
import numpy as np
import pytest
from astropy.io import fits

from radiofm.image import Beam, read_image
from radiofm.tests.helpers import noise_image, sky_header, write_image, write_raw

CASA_AXES = [("FREQ", 1, 1.284e9, 8.56e8), ("STOKES", 1, 1.0, 1.0)]


def test_casa_4d_degenerate_axes_are_dropped(tmp_path):
    header = sky_header(40, 30, cube=CASA_AXES)
    data = noise_image(header)
    assert data.shape == (1, 1, 30, 40)
    with read_image(write_image(tmp_path / "casa.fits", header, data)) as image:
        assert image.shape == (30, 40)
        assert image.plane == (0, 0)
        np.testing.assert_array_equal(image.read_region(slice(None), slice(None)), data[0, 0])
        assert image.frequency.to_value(u.GHz) == pytest.approx(1.284)


def test_mgcls_five_plane_cube_needs_a_plane(tmp_path):
    # MGCLS enhanced products: 5 planes on the FREQ axis (brightness, spectral index, ...).
    header = sky_header(40, 30, cube=[("FREQ", 5, 1.28e9, 1e8), ("STOKES", 1, 1, 1)])
    data = noise_image(header)
    path = write_image(tmp_path / "mgcls.fits", header, data)
    with pytest.raises(ValueError, match=r"more than one plane on axes FREQ \(5\).*plane=0"):
        read_image(path)
    with read_image(path, plane=2) as image:
        np.testing.assert_array_equal(image.read_region(slice(None), slice(None)), data[0, 2])
        assert image.frequency.to_value(u.GHz) == pytest.approx(1.48)
    with read_image(path, plane={"freq": 4, "STOKES": 0}) as image:
        np.testing.assert_array_equal(image.read_region(slice(None), slice(None)), data[0, 4])
    with pytest.raises(ValueError, match="out of range for axis FREQ of length 5"):
        read_image(path, plane=5)
    with pytest.raises(ValueError, match=r"match no axis"):
        read_image(path, plane={"VELO": 0})


def test_two_long_axes_need_a_dict(tmp_path):
    header = sky_header(20, 20, cube=[("FREQ", 3, 1.28e9, 1e8), ("STOKES", 2, 1, 1)])
    path = write_image(tmp_path / "iquv.fits", header)
    with pytest.raises(ValueError, match="ambiguous"):
        read_image(path, plane=1)
    with pytest.raises(ValueError, match=r"also choose an index for axes \['STOKES'\]"):
        read_image(path, plane={"FREQ": 1})
    data = noise_image(header)
    with read_image((data, header), plane={"FREQ": 2, "STOKES": 1}) as image:
        np.testing.assert_array_equal(image.data, data[1, 2])


@pytest.mark.parametrize("projection", ["SIN", "TAN", "NCP", "ARC"])
def test_projections_place_the_reference_pixel(projection):
    header = sky_header(50, 50, projection=projection, crval=(200.0, 45.0))
    image = read_image((noise_image(header), header))
    centre = image.wcs.pixel_to_world(24.5, 24.5)
    assert centre.ra.deg == pytest.approx(200.0)
    assert centre.dec.deg == pytest.approx(45.0)
    offset = image.wcs.pixel_to_world(24.5, 34.5)
    assert offset.separation(centre).arcsec == pytest.approx(11.0, rel=1e-3)


def test_ncp_is_rewritten_as_sin_with_pv_terms():
    header = sky_header(50, 50, projection="NCP", crval=(200.0, 45.0))
    image = read_image((noise_image(header), header))
    assert image.wcs.wcs.ctype[1] == "DEC--SIN"
    pv = dict(((i, m), v) for i, m, v in image.wcs.wcs.get_pv())
    assert pv[(2, 2)] == pytest.approx(1 / np.tan(np.radians(45.0)))


def test_beam_keywords(caplog):
    header = sky_header(20, 20)
    header["BMAJ"] = 7.5 / 3600
    header["BMIN"] = 6.0 / 3600
    header["BPA"] = 35.0
    image = read_image((noise_image(header), header))
    assert image.beam.major.to_value(u.arcsec) == pytest.approx(7.5)
    assert image.beam.minor.to_value(u.arcsec) == pytest.approx(6.0)
    assert image.beam.pa.to_value(u.deg) == pytest.approx(35.0)


def test_bmaj_without_bpa_or_bmin(caplog):
    header = sky_header(20, 20)
    header["BMAJ"] = 5.4 / 3600
    with caplog.at_level(logging.INFO, logger="radiofm"):
        image = read_image((noise_image(header), header))
    assert image.beam == Beam(5.4 / 3600 * u.deg, 5.4 / 3600 * u.deg, 0 * u.deg)
    assert "no BPA" in caplog.text
    assert "no BMIN" in caplog.text


def test_aips_beam_in_history():
    header = sky_header(20, 20)
    header.add_history("AIPS   CLEAN BMAJ=  2.0000E-03 BMIN=  1.5000E-03 BPA=  10.00")
    header.add_history("AIPS   IMNAME='3C123' IMCLASS='ICL001'")
    header.add_history("AIPS   CLEAN BMAJ=  1.5000E-03 BMIN=  1.2500E-03 BPA= -45.00")
    image = read_image((noise_image(header), header))
    assert image.beam.major.to_value(u.deg) == pytest.approx(1.5e-3)
    assert image.beam.minor.to_value(u.deg) == pytest.approx(1.25e-3)
    assert image.beam.pa.to_value(u.deg) == pytest.approx(-45.0)


def test_no_beam_anywhere_is_none_and_can_be_given():
    header = sky_header(20, 20)
    assert read_image((noise_image(header), header)).beam is None
    image = read_image((noise_image(header), header), beam=5.4 * u.arcsec)
    assert image.beam.major == image.beam.minor == 5.4 * u.arcsec


def test_bad_beam_values_are_reported():
    header = sky_header(20, 20)
    header["BMAJ"] = 0.0
    with pytest.raises(ValueError, match="non-positive or non-finite"):
        read_image((noise_image(header), header))
    with pytest.raises(u.UnitsError, match="beam major must be an angle"):
        read_image((noise_image(header), sky_header(20, 20)), beam=(5 * u.Jy, 5 * u.arcsec))
    with pytest.raises(TypeError, match="beam must be an angle"):
        read_image((noise_image(header), sky_header(20, 20)), beam="5 arcsec")


def test_nan_blanking_and_integer_blank(tmp_path):
    header = sky_header(20, 10)
    data = np.arange(200, dtype=np.int16).reshape(10, 20)
    data[2, 3] = -32768
    header["BLANK"] = -32768
    header["BSCALE"] = 0.5
    header["BZERO"] = 10.0
    path = write_raw(tmp_path / "scaled.fits", header, data)
    expected = data.astype(np.float32) * 0.5 + 10.0
    expected[2, 3] = np.nan
    with read_image(path) as image:
        np.testing.assert_array_equal(image.read_region(slice(None), slice(None)), expected)
        np.testing.assert_array_equal(image.data, expected)
    with fits.open(path) as opened:  # the same through astropy's section reader
        np.testing.assert_array_equal(read_image(opened[0]).data, expected)


def test_float_nans_stay_nan(tmp_path):
    header = sky_header(20, 10)
    data = noise_image(header)
    data[:, :5] = np.nan
    with read_image(write_image(tmp_path / "nan.fits", header, data)) as image:
        np.testing.assert_array_equal(np.isnan(image.read_region(slice(None), slice(None))),
                                      np.isnan(data))


@pytest.mark.parametrize(
    ("keyword", "value"), [("RESTFRQ", 1.4e9), ("RESTFREQ", 1.4e9), ("FREQ", 1.4e9)]
)
def test_frequency_keywords(keyword, value):
    header = sky_header(20, 20)
    header[keyword] = value
    image = read_image((noise_image(header), header))
    assert image.frequency.to_value(u.Hz) == pytest.approx(value)


def test_frequency_axis_wins_over_keywords_and_argument_wins_over_all():
    header = sky_header(20, 20, cube=CASA_AXES)
    header["RESTFRQ"] = 1.0e9
    image = read_image((noise_image(header), header))
    assert image.frequency.to_value(u.GHz) == pytest.approx(1.284)
    image = read_image((noise_image(header), header), frequency=1.4 * u.GHz)
    assert image.frequency.to_value(u.GHz) == pytest.approx(1.4)


def test_two_d_data_with_four_d_header_keywords():
    # CASA exports sometimes keep CTYPE3/CTYPE4 on a 2-D image.
    header = sky_header(20, 20, cube=CASA_AXES)
    header["NAXIS"] = 2
    del header["NAXIS3"], header["NAXIS4"]
    data = noise_image(header)
    image = read_image((data, header))
    assert image.shape == (20, 20)
    assert image.frequency.to_value(u.GHz) == pytest.approx(1.284)


@pytest.mark.parametrize(
    ("bunit", "unit"),
    [("JY/BEAM", u.Jy / u.beam), ("Jy/beam", u.Jy / u.beam), ("mJy/beam", u.mJy / u.beam),
     ("K", u.K), ("", u.dimensionless_unscaled)],
)
def test_bunit_spellings(bunit, unit):
    header = sky_header(20, 20)
    header["BUNIT"] = bunit
    assert read_image((noise_image(header), header)).unit == unit


def test_tabs_in_comment_cards_are_cleaned(tmp_path):
    # The original FIRST SkyView headers have TABs in COMMENT cards: astropy reads them
    # but refuses to verify or write them.
    header = sky_header(20, 20)
    header.add_comment("Frequency:XX1.4 GHz Continuum")
    header.add_history("Resolution:XX5 arcsec")
    path = write_image(tmp_path / "tabs.fits", header)
    path.write_bytes(
        path.read_bytes().replace(b"Frequency:XX", b"Frequency:\t\t")
        .replace(b"Resolution:XX", b"Resolution:\t\t")
    )
    with read_image(path) as image:
        assert "Frequency:  1.4 GHz Continuum" in list(image.header["COMMENT"])
        assert "Resolution:  5 arcsec" in list(image.header["HISTORY"])
        fits.PrimaryHDU(image.data, header=image.header).writeto(tmp_path / "out.fits")

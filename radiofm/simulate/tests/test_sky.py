"""The simulated MeerKAT-like sky: header, noise, counts, fluxes and truth."""

import astropy.units as u
import numpy as np
import pytest

from radiofm.image import read_image
from radiofm.simulate import make_radio_sky
from radiofm.simulate._sky import COUNT_SLOPE, DENSITY_ABOVE_1MJY


def test_header_is_meerkat_like_and_readable():
    hdu, truth = make_radio_sky((256, 320), seed=1)
    header = hdu.header
    assert hdu.data.shape == (1, 1, 256, 320)
    assert hdu.data.dtype == np.float32
    assert [header[f"CTYPE{i}"] for i in range(1, 5)] == ["RA---SIN", "DEC--SIN", "FREQ",
                                                          "STOKES"]
    image = read_image(hdu)
    assert image.pixel_scale.to_value(u.arcsec) == pytest.approx(1.1)
    assert image.beam.major.to_value(u.arcsec) == pytest.approx(7.5)
    assert image.frequency.to_value(u.GHz) == pytest.approx(1.28)
    assert image.unit == u.Jy / u.beam
    assert set(truth.colnames) >= {"source_id", "sky_center", "x_center", "y_center", "flux",
                                   "apparent_flux", "peak", "major", "minor", "pa", "las",
                                   "morph_class", "s_code"}
    sky = image.wcs.pixel_to_world(truth["x_center"], truth["y_center"])
    assert sky.separation(truth["sky_center"]).max().arcsec < 1e-6


def test_seeded_and_configurable():
    a, _ = make_radio_sky((128, 128), seed=5)
    b, _ = make_radio_sky((128, 128), seed=5)
    c, _ = make_radio_sky((128, 128), seed=6)
    np.testing.assert_array_equal(a.data, b.data)
    assert not np.array_equal(a.data, c.data)
    hdu, _ = make_radio_sky((64, 64), pixel_scale=2 * u.arcsec, beam=12 * u.arcsec,
                            frequency=3 * u.GHz)
    image = read_image(hdu)
    assert image.pixel_scale.to_value(u.arcsec) == pytest.approx(2.0)
    assert image.beam.major.to_value(u.arcsec) == pytest.approx(12.0)
    assert image.frequency.to_value(u.GHz) == pytest.approx(3.0)


def test_noise_rms_and_beam_correlation():
    hdu, truth = make_radio_sky((512, 512), noise=1e-5, min_flux=10.0, max_flux=20.0,
                                extended_density=0.0, seed=2)
    noise = hdu.data[0, 0].astype(np.float64)
    assert len(truth) == 0
    assert noise.std() == pytest.approx(1e-5, rel=1e-3)
    # Autocorrelation is the beam: 0.5 at a lag of half the FWHM (7.5 / 1.1 / 2 px).
    lag = 3
    expected = 0.5 ** ((lag / (7.5 / 1.1 / 2)) ** 2)
    corr = np.mean(noise[:, lag:] * noise[:, :-lag]) / noise.var()
    assert corr == pytest.approx(expected, abs=0.05)


def test_compact_counts_follow_the_power_law():
    shape = (2048, 2048)
    area = (2048 * 1.1 / 3600) ** 2
    _, truth = make_radio_sky(shape, min_flux=1e-5, extended_density=0.0, seed=3)
    flux_14 = truth["flux"].to_value(u.Jy) / (1.28 / 1.4) ** -0.7
    expected = DENSITY_ABOVE_1MJY * area * ((1e-5 / 1e-3) ** (1 - COUNT_SLOPE) - 1e-3)
    assert len(truth) == pytest.approx(expected, rel=5 / np.sqrt(expected))
    ratio = np.mean(flux_14 > 1e-4)
    assert ratio == pytest.approx(10 ** (1 - COUNT_SLOPE), rel=0.1)
    assert set(truth["s_code"]) == {"S"}


def test_bright_compact_source_peak_and_flux():
    hdu, truth = make_radio_sky((1024, 1024), min_flux=2e-3, extended_density=0.0, seed=4,
                                noise=1e-7)
    image = hdu.data[0, 0]
    checked = 0
    for row in truth:
        x, y = int(round(row["x_center"])), int(round(row["y_center"]))
        if 10 < x < 1014 and 10 < y < 1014:
            stamp = image[y - 15 : y + 16, x - 15 : x + 16]
            assert stamp.max() == pytest.approx(row["peak"].value, rel=0.02)
            beam_area_px = np.pi / (4 * np.log(2)) * (7.5 / 1.1) ** 2
            assert stamp.sum() / beam_area_px == pytest.approx(row["flux"].value, rel=0.02)
            checked += 1
    assert checked >= 3


def test_extended_sources_conserve_flux():
    hdu, truth = make_radio_sky((1024, 1024), min_flux=50.0, max_flux=60.0,
                                extended_density=400.0, noise=1e-7, seed=7)
    assert set(truth["morph_class"]) == {"FRI", "FRII", "bent"}
    assert set(truth["s_code"]) == {"M"}
    beam_area_px = np.pi / (4 * np.log(2)) * (7.5 / 1.1) ** 2
    total = hdu.data[0, 0].sum() / beam_area_px
    inside = truth["flux"].to_value(u.Jy).sum()
    assert total == pytest.approx(inside, rel=0.1)


def test_primary_beam_attenuates_away_from_centre():
    _, truth = make_radio_sky((4096, 4096), min_flux=1e-3, primary_beam=True, seed=8,
                              extended_density=0.0)
    gain = (truth["apparent_flux"] / truth["flux"]).value
    r = np.hypot(truth["x_center"] - 2048, truth["y_center"] - 2048) * 1.1 / 60  # arcmin
    assert gain.max() <= 1.0
    np.testing.assert_allclose(gain, 0.5 ** ((r / (68.0 / 2)) ** 2), rtol=1e-6)  # FWHM 68'


def test_artefacts_only_around_bright_sources():
    clean, truth = make_radio_sky((512, 512), seed=9, noise=1e-6)
    dirty, _ = make_radio_sky((512, 512), seed=9, noise=1e-6, artefacts=True,
                              artefact_flux=float(truth["flux"].max().value) / 2)
    difference = dirty.data - clean.data
    assert np.abs(difference).max() > 0
    bright = truth[truth["flux"] == truth["flux"].max()][0]
    y, x = int(bright["y_center"]), int(bright["x_center"])
    far = np.ones(difference.shape[2:], dtype=bool)
    far[max(y - 210, 0) : y + 211, max(x - 210, 0) : x + 211] = False
    assert np.abs(difference[0, 0][far]).max() == 0


def test_bad_parameters():
    with pytest.raises(ValueError, match="at least 8x8"):
        make_radio_sky((4, 100))
    with pytest.raises(ValueError, match="noise must be a positive"):
        make_radio_sky((64, 64), noise=0)

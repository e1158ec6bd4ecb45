"""The shared normalisation."""

import numpy as np
import pytest

from radiofm.tests.helpers import noise_image, sky_header, write_image
from radiofm.tiling import Normalization, NormalizationSpec, fit_normalization, normalize


def test_percentile_stretch_is_the_2_98_clip():
    values = np.arange(1000, dtype=np.float32)
    stretch = fit_normalization(values.reshape(10, 100))
    assert stretch.method == "percentile"
    assert stretch.offset == pytest.approx(np.percentile(values, 2))
    assert stretch.offset + stretch.scale == pytest.approx(np.percentile(values, 98))
    out = stretch(values)
    assert out.dtype == np.float32
    assert out.min() == 0.0 and out.max() == 1.0
    assert np.sum(out == 0.0) == 20 and np.sum(out == 1.0) == 20


def test_snr_stretch_is_arcsinh_of_signal_to_noise():
    rng = np.random.default_rng(1)
    noise = rng.normal(5e-6, 2e-5, (512, 512))
    noise[100:110, 100:110] += 1e-2  # a bright source must not bias the noise
    stretch = fit_normalization(noise, "snr")
    assert stretch.offset == pytest.approx(5e-6, abs=2e-7)
    assert stretch.scale == pytest.approx(2e-5, rel=0.02)
    snr = np.array([0.0, 1.0, 100.0])
    np.testing.assert_allclose(stretch(stretch.offset + snr * stretch.scale), np.arcsinh(snr),
                               rtol=1e-5, atol=1e-6)
    soft = fit_normalization(noise, "snr", softening=3.0)
    assert soft.scale == pytest.approx(3 * stretch.scale)


@pytest.mark.parametrize("method", ["percentile", "snr"])
def test_nan_becomes_zero_and_input_is_untouched(method):
    stretch = Normalization(method, offset=1.0, scale=2.0)
    values = np.array([np.nan, 1.0, 3.0, -np.inf, np.inf], dtype=np.float32)
    before = values.copy()
    out = normalize(values, stretch)
    assert out[0] == 0.0 and out[1] == 0.0
    np.testing.assert_array_equal(values, before)
    in_place = normalize(values, stretch, out=values)
    assert in_place is values
    np.testing.assert_array_equal(values, out)


def test_large_images_are_sampled_on_whole_rows(tmp_path):
    header = sky_header(400, 300)
    data = noise_image(header)
    path = write_image(tmp_path / "image.fits", header, data)
    full = fit_normalization(path)
    sampled = fit_normalization(path, max_pixels=40_000)  # 100 of the 300 rows
    assert sampled.offset == pytest.approx(full.offset, rel=0.05)
    assert sampled.scale == pytest.approx(full.scale, rel=0.05)


def test_to_dict_is_json_ready():
    stretch = Normalization("snr", offset=np.float32(0.5), scale=np.float64(2.0))
    assert stretch.to_dict() == {"method": "snr", "offset": 0.5, "scale": 2.0}
    assert Normalization(**stretch.to_dict()) == stretch


def test_bad_parameters():
    with pytest.raises(ValueError, match="unknown normalisation method 'zscale'"):
        fit_normalization(np.ones((4, 4)), "zscale")
    with pytest.raises(ValueError, match="need 0 <= lower < upper <= 100"):
        fit_normalization(np.ones((4, 4)), lower=98, upper=2)
    with pytest.raises(ValueError, match="softening must be positive"):
        fit_normalization(np.ones((4, 4)), "snr", softening=0)
    with pytest.raises(ValueError, match="constant over its fitted pixels"):
        fit_normalization(np.ones((4, 4)))
    with pytest.raises(ValueError, match="no finite pixel"):
        fit_normalization(np.full((4, 4), np.nan))
    with pytest.raises(ValueError, match="positive scale"):
        Normalization("percentile", offset=0.0, scale=0.0)


def test_percentile_on_a_zero_background_stretches_to_the_peak():
    # MiraBest-like display cutout: 99 % of the pixels are 0, a source peaks at 200.
    cutout = np.zeros((100, 100), dtype=np.uint8)
    cutout[48:52, 48:52] = 200
    cutout[50, 50] = 250
    stretch = fit_normalization(cutout)
    assert (stretch.offset, stretch.scale) == (0.0, 250.0)
    assert stretch(cutout).max() == 1.0


def test_resample_tiles():
    from radiofm.tiling import resample_tiles

    tiles = np.random.default_rng(1).random((3, 150, 150))
    out = resample_tiles(tiles, 64)
    assert out.shape == (3, 64, 64) and out.dtype == np.float32
    np.testing.assert_allclose(out.mean(axis=(1, 2)), tiles.mean(axis=(1, 2)), atol=0.01)
    blocks = resample_tiles(tiles[:, :120, :120], 40)  # integer factor: block means
    np.testing.assert_allclose(blocks[0, 0, 0], tiles[0, :3, :3].mean(), rtol=1e-6)
    assert resample_tiles(tiles[0], 150).shape == (150, 150)
    with pytest.raises(ValueError, match="square tiles"):
        resample_tiles(np.zeros((2, 10, 12)), 4)
    with pytest.raises(ValueError, match="positive integer"):
        resample_tiles(tiles, 0)


def test_normalization_spec_forms_and_refusals():
    spec = NormalizationSpec.from_value({"method": "snr", "softening": 3.0})
    assert NormalizationSpec.from_value(spec.to_dict()) == spec
    assert NormalizationSpec.from_value("percentile") == NormalizationSpec("percentile")
    with pytest.raises(ValueError, match="unknown normalisation options"):
        NormalizationSpec.from_value({"method": "snr", "sofening": 3.0})
    with pytest.raises(ValueError, match="method name"):
        NormalizationSpec.from_value(3)
    with pytest.raises(ValueError, match="lower < upper"):
        NormalizationSpec("percentile", lower=50, upper=10)


def test_spec_options_reach_the_fit():
    # a spec fitted with softening 4 has 4x the scale: options are not dropped anywhere
    noise = np.random.default_rng(1).normal(0.0, 1.0, (128, 128))
    one = NormalizationSpec("snr").fit(noise)
    four = NormalizationSpec("snr", softening=4.0).fit(noise)
    assert four.scale == pytest.approx(4 * one.scale)
    assert fit_normalization(noise, NormalizationSpec("snr", softening=4.0)) == four


def _field_with_sources(seed=3, sigma=1.5e-4, shape=(300, 300)):
    """Gaussian noise with a 5-sigma and a 200-sigma point source (beam sigma 1.3 px)."""
    rng = np.random.default_rng(seed)
    field = rng.normal(0.0, sigma, shape)
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    for (y, x), snr in (((80, 90), 5.0), ((200, 210), 200.0)):
        field += snr * sigma * np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / (2 * 1.3**2))
    return field.astype(np.float32)


def test_clipped_copy_stretches_like_the_raw_field_above_the_clip():
    spec = NormalizationSpec("snr")
    raw = _field_with_sources()
    raw_fit = spec.fit(raw)
    noise = raw_fit.scale
    clipped = np.where(raw >= 3 * noise, raw, 0.0).astype(np.float32)
    assert spec.is_clipped(clipped) and not spec.is_clipped(raw)
    clip_fit = spec.fit(clipped)
    assert clip_fit.offset == 0.0
    assert clip_fit.scale == pytest.approx(noise, rel=0.05)
    above = clipped > 0
    np.testing.assert_allclose(clip_fit(clipped)[above], raw_fit(raw)[above], atol=0.06)
    # the 5-sigma peak maps to arcsinh(5) in both
    assert clip_fit(clipped)[80, 90] == pytest.approx(raw_fit(raw)[80, 90], abs=0.06)


def test_clipped_uint8_stamp_recovers_the_noise_from_the_clip_level():
    """MiraBest's recipe: flux * gain, floored at 3 sigma, truncated to uint8."""
    raw = _field_with_sources()
    sigma = 1.5e-4
    gain = 255 / raw.max()
    stamp = np.where(raw >= 3 * sigma, np.floor(raw * gain), 0).astype(np.uint8)
    fit = NormalizationSpec("snr").fit(stamp)
    assert fit.scale == pytest.approx(sigma * gain, rel=0.15)
    peak = NormalizationSpec("snr").fit(raw)(raw)[200, 210]
    assert fit(stamp)[200, 210] == pytest.approx(peak, abs=0.15)


def test_clip_fallback_uses_a_given_noise_and_a_clip_floor():
    stamp = np.zeros((50, 50), dtype=np.float32)
    stamp[10, 10], stamp[20, 20] = 7.0, 1.0
    given = NormalizationSpec("snr", noise=2.0).fit(stamp)
    assert (given.offset, given.scale) == (0.0, 2.0)
    at_clip = NormalizationSpec("snr", noise=2.0, floor="clip").fit(stamp)
    assert at_clip.offset == -6.0
    with pytest.raises(ValueError, match="give the data set's noise"):
        NormalizationSpec("snr", floor="clip")
    with pytest.raises(ValueError, match="no signal"):
        NormalizationSpec("snr").fit(np.zeros((8, 8)))
    # turning the fallback off refuses the stamp, as before
    with pytest.raises(ValueError, match="constant"):
        NormalizationSpec("snr", floor_fraction=0.9999).fit(stamp)


@pytest.mark.parametrize("bad", [{"clip_sigma": 0}, {"floor_fraction": -0.1},
                                 {"floor_fraction": 1.0}, {"noise": -1.0}, {"floor": "one"}])
def test_clip_options_are_validated(bad):
    with pytest.raises(ValueError):
        NormalizationSpec.from_value({"method": "snr", **bad})


def test_new_options_leave_unclipped_fits_unchanged():
    field = _field_with_sources()
    from astropy.stats import sigma_clipped_stats
    offset, _, noise = sigma_clipped_stats(field, sigma=3.0, maxiters=5, stdfunc="mad_std")
    fit = NormalizationSpec("snr").fit(field)
    assert (fit.offset, fit.scale) == (pytest.approx(offset), pytest.approx(noise))
    spec = NormalizationSpec.from_value({"method": "snr", "noise": 4.0, "clip_sigma": 5.0})
    assert NormalizationSpec.from_value(spec.to_dict()) == spec
    assert spec.fit(field) == fit  # noise= only serves clipped stamps


def test_linear_stops_before_the_arcsinh():
    stretch = Normalization("snr", offset=1.0, scale=2.0)
    values = np.array([1.0, 5.0, np.nan], dtype=np.float32)
    np.testing.assert_allclose(normalize(values, stretch, linear=True), [0.0, 2.0, 0.0])


def test_half_the_pixels_on_the_floor_keeps_the_old_fit():
    """Exactly half on one value: the old fit worked (MAD > 0), so the fallback stays off."""
    values = np.concatenate([np.zeros(500), np.random.default_rng(2).normal(5.0, 1.0, 500)])
    spec = NormalizationSpec("snr")
    assert not spec.is_clipped(values)
    assert spec.is_clipped(values[:-1])  # one more than half on the floor


def _field_with_halo(seed=4, sigma=1e-4, shape=(512, 512), halo_snr=5.0):
    """Gaussian noise with a diffuse Gaussian halo (FWHM 160 px, peak ``halo_snr`` sigma)."""
    field = np.random.default_rng(seed).normal(0.0, sigma, shape)
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    halo = np.exp(-((yy - 200) ** 2 + (xx - 260) ** 2) / (2 * (160 / 2.355) ** 2))
    return (field + halo_snr * sigma * halo).astype(np.float32), field.astype(np.float32)


def test_boxes_keep_diffuse_emission_out_of_the_background_and_noise():
    with_halo, noise_only = _field_with_halo()
    whole, boxes = NormalizationSpec("snr"), NormalizationSpec("snr", box_pixels=64)
    truth = boxes.fit(noise_only)
    # on uniform noise the two measurements agree
    assert truth.scale == pytest.approx(whole.fit(noise_only).scale, rel=0.01)
    assert truth.offset == pytest.approx(0.0, abs=0.02e-4)
    # the halo's faint wings lift the whole-image background and noise; the boxes' medians
    # stay with the noise (sigma 1e-4)
    lifted, kept = whole.fit(with_halo), boxes.fit(with_halo)
    assert lifted.offset > 0.3e-4 and lifted.scale > 1.15 * truth.scale
    assert abs(kept.offset) < 0.1e-4 and kept.scale < 1.02 * truth.scale


def test_boxes_skip_blank_and_constant_blocks_and_sample_large_images(tmp_path):
    _, noise_only = _field_with_halo()
    blanked = noise_only.copy()
    blanked[:, :128] = np.nan  # a mosaic's blank edge
    blanked[:128, 128:] = 0.0  # and a block set to zero
    spec = NormalizationSpec("snr", box_pixels=64)
    expected = spec.fit(noise_only[128:, 128:])
    fit = spec.fit(blanked)
    assert fit.offset == pytest.approx(expected.offset)
    assert fit.scale == pytest.approx(expected.scale)
    # a file is read as strips of box rows, evenly spaced when it holds more than max_pixels
    header = sky_header(400, 300)
    path = write_image(tmp_path / "image.fits", header, noise_image(header))
    full = NormalizationSpec("snr", box_pixels=50).fit(path)
    sampled = NormalizationSpec("snr", box_pixels=50, max_pixels=60_000).fit(path)
    assert full.scale == pytest.approx(1e-4, rel=0.02)
    assert sampled.scale == pytest.approx(full.scale, rel=0.03)
    # an image smaller than half a box is measured whole
    small = noise_only[:20, :20]
    assert NormalizationSpec("snr", box_pixels=64).fit(small) == NormalizationSpec(
        "snr").fit(small)


def test_boxes_leave_clipped_stamps_and_old_specs_alone():
    field = _field_with_sources()
    clipped = np.where(field >= 3 * 1.5e-4, field, 0.0).astype(np.float32)
    assert (NormalizationSpec("snr", box_pixels=64).fit(clipped)
            == NormalizationSpec("snr").fit(clipped))
    stored = NormalizationSpec("snr").to_dict()
    assert stored["box_pixels"] is None
    del stored["box_pixels"]  # metadata written before the option: whole-image measurement
    assert NormalizationSpec.from_value(stored) == NormalizationSpec("snr")
    spec = NormalizationSpec("snr", box_pixels=128)
    assert NormalizationSpec.from_value(spec.to_dict()) == spec
    for bad in (4, 64.0, "64", True):
        with pytest.raises(ValueError, match="box_pixels must be an integer >= 8"):
            NormalizationSpec("snr", box_pixels=bad)

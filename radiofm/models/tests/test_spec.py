"""ModelSpec: the one place that derives geometry, stretch and model inputs."""

import astropy.units as u
import numpy as np
import pytest

from radiofm.image import read_image
from radiofm.models import ModelMismatchWarning, ModelSpec
from radiofm.tests.helpers import sky_header
from radiofm.tiling import (
    Normalization,
    NormalizationSpec,
    normalize,
    prepare_tiles,
    resample_tiles,
    tile_image,
)


def spec(**changes):
    values = dict(input_pixels=20, tile_arcsec=72.0, stamp_arcsec=36.0,
                  pixel_scale_range_arcsec=(1.0, 4.0), beam_range_arcsec=(3.0, 10.0),
                  normalization={"method": "snr", "softening": 2.0}, class_names=("FRI", "FRII"))
    values.update(changes)
    return ModelSpec(**values)


def image(pixel_arcsec=1.8, shape=(100, 130), beam=None):
    data = np.random.default_rng(2).normal(0, 1, shape).astype(np.float32)
    return read_image((data, sky_header(shape[1], shape[0], cdelt_arcsec=pixel_arcsec)),
                      beam=beam)


def test_geometry_is_the_angle_in_the_image_pixels():
    field = image(pixel_arcsec=1.8)
    assert spec().tile_pixels(field) == 40 and spec().stamp_pixels(field) == 20
    assert spec().tile_pixels(image(pixel_arcsec=3.6)) == 20
    assert field.angle_to_pixels(1 * u.arcmin) == 33
    with pytest.raises(u.UnitsError):
        field.angle_to_pixels(3 * u.m)


def test_metadata_round_trip_and_refusals():
    original = spec(views=8)
    assert ModelSpec.from_metadata(original.to_metadata()) == original
    assert original.normalization == NormalizationSpec("snr", softening=2.0)
    with pytest.raises(ValueError, match="views must be one of"):
        spec(views=3)
    with pytest.raises(ValueError, match="low <= high"):
        spec(pixel_scale_range_arcsec=(4.0, 1.0))
    with pytest.raises(ValueError, match="tile_arcsec must be a positive angle"):
        spec(tile_arcsec=-1.0)
    with pytest.raises(ValueError, match="distinct"):
        spec(class_names=("a", "a"))


def test_prepare_resamples_then_stretches():
    rng = np.random.default_rng(1)
    raw = rng.normal(0, 1, (3, 12, 12)).astype(np.float32)
    raw[0, :2, :2] = np.nan
    stretch = Normalization("snr", offset=0.1, scale=0.5)
    out = spec(input_pixels=6).prepare(raw, stretch)
    expected = normalize(resample_tiles(raw, 6), stretch)
    assert out.shape == (3, 1, 6, 6) and out.dtype == np.float32
    np.testing.assert_array_equal(out[:, 0], expected)
    assert out[0, 0, 0, 0] == 0.0  # blank pixels become 0
    assert spec(input_pixels=6).prepare(raw[:0], stretch).shape == (0, 1, 6, 6)
    with pytest.raises(ValueError, match=r"\(N, H, H\)"):
        prepare_tiles(raw[0], stretch, 6)


def test_fit_stretch_uses_every_option():
    field = image()
    assert spec().fit_stretch(field).scale == pytest.approx(
        2 * spec(normalization="snr").fit_stretch(field).scale)


def test_stream_tiles_gives_every_tile_once_as_prepare_would():
    field = image()
    tiles = tile_image(field, 40)
    stretch = Normalization("percentile", offset=-1.0, scale=2.0)
    seen = {}
    for ids, inputs in spec().stream_tiles(tiles, stretch, batch_size=5, threads=2):
        assert inputs.shape == (len(ids), 1, 20, 20)
        for tile_id, tile in zip(ids, inputs, strict=True):
            seen[int(tile_id)] = tile[0]
    assert sorted(seen) == list(range(len(tiles)))
    data = field.data
    for tile_id, tile in seen.items():
        rows, cols = tiles.tile_slices(tile_id)
        np.testing.assert_array_equal(tile, spec().prepare(data[None, rows, cols], stretch)[0, 0])
    with pytest.raises(ValueError, match="batch_size"):
        next(spec().stream_tiles(tiles, stretch, batch_size=0))


def test_check_image_warns_outside_and_refuses_far_outside():
    spec().check_image(image(pixel_arcsec=1.8))  # inside: silent
    with pytest.warns(ModelMismatchWarning, match="outside the 1-4 arcsec"):
        spec().check_image(image(pixel_arcsec=6.0), model="m")
    with pytest.raises(ValueError, match="far outside"):
        spec().check_image(image(pixel_arcsec=20.0))
    with pytest.warns(ModelMismatchWarning, match="arcsec beam"):
        spec().check_image(image(beam=20 * u.arcsec))

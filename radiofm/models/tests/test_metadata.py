"""Model metadata: serialisation, version checks, and the shared preprocessing."""

import numpy as np
import pytest

from radiofm.models import (
    NORMALIZATION_VERSION,
    ModelMetadataError,
    dihedral_views,
    model_inputs,
    parse_metadata,
    serialize_metadata,
    tile_inputs,
)
from radiofm.tests.helpers import sky_header
from radiofm.tiling import Normalization, normalize, resample_tiles, tile_image


def metadata(**changes):
    values = {
        "name": "m", "arch": "resnet18", "input_size": 64, "embedding_dim": 512,
        "tile_pixels": 64, "tile_arcsec": 115.2, "stamp_arcsec": 270.0,
        "normalization": {"method": "percentile", "lower": 2.0, "upper": 98.0},
        "normalization_version": NORMALIZATION_VERSION,
        "pixel_scale_range_arcsec": [0.9, 3.6], "beam_range_arcsec": None,
        "class_names": ["FRI", "FRII"], "train_config": {"optim": {"epochs": 1}},
        "data_summary": {"first": {"tiles": 10}}, "parity_max_abs_diff": 1e-7,
        "parity_tolerance": 1e-4, "quantization": "none",
    }
    values.update(changes)
    return values


def test_metadata_round_trips_through_strings():
    props = serialize_metadata(metadata())
    assert all(isinstance(v, str) for v in props.values())
    parsed = parse_metadata(props)
    assert parsed["input_size"] == 64 and parsed["tile_arcsec"] == 115.2
    assert parsed["class_names"] == ["FRI", "FRII"]
    assert parsed["train_config"] == {"optim": {"epochs": 1}}
    assert parsed["beam_range_arcsec"] is None
    assert parsed["metadata_version"] == 1 and parsed["radiofm_version"]


def test_missing_or_bad_metadata_is_refused():
    props = serialize_metadata(metadata())
    del props["class_names"]
    with pytest.raises(ModelMetadataError, match=r"lacks radiofm metadata \['class_names'\]"):
        parse_metadata(props)
    with pytest.raises(ModelMetadataError, match="not a valid int"):
        parse_metadata({**serialize_metadata(metadata()), "input_size": "big"})
    with pytest.raises(ModelMetadataError, match="distinct"):
        serialize_metadata(metadata(class_names=["a", "a"]))
    with pytest.raises(ModelMetadataError, match="low <= high"):
        serialize_metadata(metadata(pixel_scale_range_arcsec=[2.0, 1.0]))
    with pytest.raises(ModelMetadataError, match="unknown model metadata keys"):
        serialize_metadata(metadata(colour="blue"))
    with pytest.raises(ModelMetadataError, match="views must be one of"):
        serialize_metadata(metadata(views=3))
    assert "views" not in parse_metadata(serialize_metadata(metadata()))  # old models: 1 view


def test_dihedral_views_are_the_eight_orientations():
    stamp = np.arange(9.0).reshape(3, 3)  # no symmetry: all 8 views differ
    views = dihedral_views(stamp[None])
    assert len(views) == 8 and all(v.shape == (1, 3, 3) for v in views)
    assert len({v.tobytes() for v in (np.ascontiguousarray(v) for v in views)}) == 8
    np.testing.assert_array_equal(views[1][0], np.rot90(stamp))
    np.testing.assert_array_equal(views[4][0], stamp[:, ::-1])
    # the set of views of a turned stamp is the same set
    turned = {np.ascontiguousarray(v).tobytes() for v in dihedral_views(np.rot90(stamp)[None])}
    assert turned == {np.ascontiguousarray(v).tobytes() for v in views}
    with pytest.raises(ValueError, match="square"):
        dihedral_views(np.zeros((2, 3, 4)))


def test_other_preprocessing_versions_are_refused():
    props = serialize_metadata(metadata(normalization_version=NORMALIZATION_VERSION + 1))
    with pytest.raises(ModelMetadataError, match="normalisation\\) version"):
        parse_metadata(props)
    assert parse_metadata(props, check_versions=False)["normalization_version"] == 2
    props = serialize_metadata(metadata(metadata_version=99))
    with pytest.raises(ModelMetadataError, match="metadata version 99"):
        parse_metadata(props)


def test_model_inputs_resample_then_normalise():
    rng = np.random.default_rng(1)
    raw = rng.normal(0, 1, (3, 12, 12)).astype(np.float32)
    raw[0, :2, :2] = np.nan
    stretch = Normalization("snr", offset=0.1, scale=0.5)
    out = model_inputs(raw, stretch, 6)
    expected = normalize(resample_tiles(raw, 6), stretch)
    assert out.shape == (3, 1, 6, 6) and out.dtype == np.float32
    np.testing.assert_array_equal(out[:, 0], expected)
    assert out[0, 0, 0, 0] == 0.0  # blank pixels become 0
    assert model_inputs(raw[:0], stretch, 6).shape == (0, 1, 6, 6)
    with pytest.raises(ValueError, match=r"\(N, H, H\)"):
        model_inputs(raw[0], stretch, 6)


def test_tile_inputs_stream_every_tile_once():
    rng = np.random.default_rng(2)
    data = rng.normal(0, 1, (100, 130)).astype(np.float32)
    tiles = tile_image((data, sky_header(130, 100)), 40)
    stretch = Normalization("percentile", offset=-1.0, scale=2.0)
    seen = {}
    for ids, inputs in tile_inputs(tiles, stretch, 20, batch_size=5, threads=2):
        assert inputs.shape == (len(ids), 1, 20, 20)
        for tile_id, tile in zip(ids, inputs, strict=True):
            seen[int(tile_id)] = tile[0]
    assert sorted(seen) == list(range(len(tiles)))
    for tile_id, tile in seen.items():
        rows, cols = tiles.tile_slices(tile_id)
        np.testing.assert_array_equal(tile, model_inputs(data[None, rows, cols], stretch, 20)[0, 0])
    with pytest.raises(ValueError, match="batch_size"):
        next(tile_inputs(tiles, stretch, 20, batch_size=0))

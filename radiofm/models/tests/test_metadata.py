"""Model metadata: serialisation, version checks, the upgrade of version-1 files."""

import numpy as np
import pytest

from radiofm.models import (
    METADATA_VERSION,
    NORMALIZATION_VERSION,
    ModelMetadataError,
    ModelSpec,
    dihedral_views,
    parse_metadata,
    serialize_metadata,
)
from radiofm.tiling import NormalizationSpec


def metadata(**changes):
    values = {
        "name": "m", "arch": "resnet18", "input_pixels": 64, "embedding_dim": 512,
        "tile_arcsec": 115.2, "stamp_arcsec": 270.0,
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
    assert parsed["input_pixels"] == 64 and parsed["tile_arcsec"] == 115.2
    assert parsed["class_names"] == ["FRI", "FRII"]
    assert parsed["train_config"] == {"optim": {"epochs": 1}}
    assert parsed["beam_range_arcsec"] is None
    assert parsed["metadata_version"] == METADATA_VERSION == 2 and parsed["radiofm_version"]
    spec = parsed["spec"]
    assert isinstance(spec, ModelSpec) and spec.input_pixels == 64 and spec.views == 1
    # the stretch is kept with all its options, not just its method
    assert spec.normalization == NormalizationSpec("percentile")


def test_version_1_metadata_is_read_and_upgraded():
    """Models written before ModelSpec (input_size, tile_pixels) keep loading."""
    v2 = serialize_metadata(metadata(normalization={"method": "snr", "softening": 2.0}))
    v1 = {("input_size" if k == "input_pixels" else k): v for k, v in v2.items()}
    v1.update(metadata_version="1", tile_pixels="150")
    parsed = parse_metadata(v1)
    assert parsed["input_pixels"] == 64 and "tile_pixels" not in parsed
    assert parsed["metadata_version"] == 1
    assert parsed["spec"].normalization == NormalizationSpec("snr", softening=2.0)


def test_spec_problems_in_metadata_are_model_metadata_errors():
    with pytest.raises(ModelMetadataError, match="input_pixels must be an integer >= 2"):
        serialize_metadata(metadata(input_pixels=1))
    with pytest.raises(ModelMetadataError, match="unknown normalisation options"):
        serialize_metadata(metadata(normalization={"method": "snr", "gamma": 2}))


def test_missing_or_bad_metadata_is_refused():
    props = serialize_metadata(metadata())
    del props["class_names"]
    with pytest.raises(ModelMetadataError, match=r"lacks radiofm metadata \['class_names'\]"):
        parse_metadata(props)
    with pytest.raises(ModelMetadataError, match="not a valid int"):
        parse_metadata({**serialize_metadata(metadata()), "input_pixels": "big"})
    with pytest.raises(ModelMetadataError, match="distinct"):
        serialize_metadata(metadata(class_names=["a", "a"]))
    with pytest.raises(ModelMetadataError, match="low <= high"):
        serialize_metadata(metadata(pixel_scale_range_arcsec=[2.0, 1.0]))
    with pytest.raises(ModelMetadataError, match="unknown model metadata keys"):
        serialize_metadata(metadata(colour="blue"))
    with pytest.raises(ModelMetadataError, match="views must be one of"):
        serialize_metadata(metadata(views=3))
    assert parse_metadata(serialize_metadata(metadata()))["spec"].views == 1  # old models


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
    assert (parse_metadata(props, check_versions=False)["normalization_version"]
            == NORMALIZATION_VERSION + 1)
    props = serialize_metadata(metadata(metadata_version=99))
    with pytest.raises(ModelMetadataError, match="metadata version 99"):
        parse_metadata(props)

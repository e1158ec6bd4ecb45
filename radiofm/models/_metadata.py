"""The metadata an exported model carries, and the preprocessing it describes.

An ONNX file written by `radiofm.export` holds, in its ``metadata_props``, everything
inference needs to feed it the pixels it was trained on and to refuse images it does not
fit. Values are strings; structured ones are JSON. `parse_metadata` turns them back into
Python values and checks that this radiofm can honour them.
"""

import json

import numpy as np

from .. import __version__

__all__ = [
    "METADATA_VERSION", "NORMALIZATION_VERSION", "VIEW_COUNTS", "ModelMetadataError",
    "parse_metadata", "serialize_metadata",
]

#: Version of the metadata layout below; bump when a key changes meaning.
METADATA_VERSION = 1
#: Version of the pixel preprocessing (`radiofm.tiling.resample_tiles`, then ``normalize``
#: with parameters from ``fit_normalization`` on the parent image; see
#: `radiofm.models.model_inputs`). Bump it whenever any of them changes the pixels a model
#: sees; models exported under another version are refused.
NORMALIZATION_VERSION = 1
#: Views a model's embedding may average over: the tile itself, or its 8 rotations by
#: multiples of 90 degrees and their mirror images (`dihedral_views`). Old models lack the
#: ``views`` key and count as 1.
VIEW_COUNTS = (1, 8)

# key -> (kind, required); "json" values are JSON strings.
_SCHEMA = {
    "metadata_version": ("int", True),
    "radiofm_version": ("str", True),
    "name": ("str", True),
    "arch": ("str", True),
    "patch_size": ("json", False),
    "timm_options": ("json", False),
    "input_size": ("int", True),
    "embedding_dim": ("int", True),
    "tile_pixels": ("int", True),
    "tile_arcsec": ("float", True),
    "stamp_arcsec": ("float", True),
    "normalization": ("json", True),
    "normalization_version": ("int", True),
    "pixel_scale_range_arcsec": ("json", True),
    "beam_range_arcsec": ("json", True),
    "class_names": ("json", True),
    "train_config": ("json", True),
    "data_summary": ("json", True),
    "parity_max_abs_diff": ("float", True),
    "parity_tolerance": ("float", True),
    "quantization": ("str", True),
    "quantized_max_abs_diff": ("json", False),
    "views": ("int", False),
    "created": ("str", False),
    "weights_sha256": ("str", False),
}


class ModelMetadataError(ValueError):
    """An ONNX file lacks radiofm's metadata or carries metadata this radiofm cannot honour."""


def serialize_metadata(metadata):
    """Metadata values as the strings ONNX ``metadata_props`` holds.

    Parameters
    ----------
    metadata : dict
        Keys of the schema (see `parse_metadata`) with Python values; a missing
        ``metadata_version`` and ``radiofm_version`` are filled in.

    Returns
    -------
    props : dict of str
    """
    metadata = {"metadata_version": METADATA_VERSION, "radiofm_version": __version__,
                **metadata}
    unknown = set(metadata) - set(_SCHEMA)
    if unknown:
        raise ModelMetadataError(f"unknown model metadata keys {sorted(unknown)}")
    props = {}
    for key, value in metadata.items():
        kind, _ = _SCHEMA[key]
        props[key] = json.dumps(value, sort_keys=True) if kind == "json" else str(value)
    _check(parse_metadata(props, check_versions=False))
    return props


def parse_metadata(props, *, source="model", check_versions=True):
    """Parse and check the metadata of an exported model.

    Parameters
    ----------
    props : mapping of str to str
        ONNX ``metadata_props`` (e.g. onnxruntime's ``custom_metadata_map``).
    source : str
        How to name the model in error messages.
    check_versions : bool
        Refuse models whose metadata layout or preprocessing version differs from this
        radiofm's.

    Returns
    -------
    metadata : dict
        Python values: ints, floats, strings, lists and dicts.

    Raises
    ------
    ModelMetadataError
        A key is missing or unreadable, or a version does not match.
    """
    missing = [key for key, (_, required) in _SCHEMA.items() if required and key not in props]
    if missing:
        raise ModelMetadataError(
            f"{source} lacks radiofm metadata {missing}; export models with "
            "`radiofm export` (radiofm.export.export_model)"
        )
    parsed = {}
    for key, value in props.items():
        kind = _SCHEMA.get(key, ("str", False))[0]
        try:
            parsed[key] = (json.loads(value) if kind == "json" else
                           int(value) if kind == "int" else
                           float(value) if kind == "float" else value)
        except ValueError as error:
            raise ModelMetadataError(f"{source}: metadata {key}={value!r} is not a valid "
                                     f"{kind}") from error
    if check_versions:
        if parsed["metadata_version"] != METADATA_VERSION:
            raise ModelMetadataError(
                f"{source} has metadata version {parsed['metadata_version']}, radiofm "
                f"{__version__} reads version {METADATA_VERSION}; use the radiofm version that "
                f"exported it ({parsed['radiofm_version']}) or export the model again"
            )
        if parsed["normalization_version"] != NORMALIZATION_VERSION:
            raise ModelMetadataError(
                f"{source} was trained with preprocessing (normalisation) version "
                f"{parsed['normalization_version']}, but radiofm {__version__} implements "
                f"version {NORMALIZATION_VERSION}: its pixels would not match the training "
                f"ones. Use radiofm {parsed['radiofm_version']} or export the model again"
            )
    _check(parsed, source)
    return parsed


def _check(parsed, source="model"):
    def fail(message):
        raise ModelMetadataError(f"{source}: {message}")

    for key in ("input_size", "embedding_dim", "tile_pixels"):
        if parsed[key] < 1:
            fail(f"{key} must be positive, got {parsed[key]}")
    for key in ("tile_arcsec", "stamp_arcsec"):
        if not (np.isfinite(parsed[key]) and parsed[key] > 0):
            fail(f"{key} must be a positive angle in arcsec, got {parsed[key]}")
    norm = parsed["normalization"]
    if not isinstance(norm, dict) or "method" not in norm:
        fail(f"normalization must be a dict with a 'method', got {norm!r}")
    for key in ("pixel_scale_range_arcsec", "beam_range_arcsec"):
        value = parsed[key]
        if value is None and key == "beam_range_arcsec":
            continue
        if not (isinstance(value, list) and len(value) == 2 and 0 < value[0] <= value[1]):
            fail(f"{key} must be [low, high] with 0 < low <= high, got {value!r}")
    if parsed.get("views", 1) not in VIEW_COUNTS:
        fail(f"views must be one of {VIEW_COUNTS}, got {parsed['views']!r}")
    names = parsed["class_names"]
    if not (isinstance(names, list) and names and len(set(names)) == len(names)
            and all(isinstance(n, str) and n for n in names)):
        fail(f"class_names must be a list of distinct non-empty strings, got {names!r}")

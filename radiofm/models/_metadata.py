"""The metadata an exported model carries, and the preprocessing it describes.

An ONNX file written by `radiofm.export` holds, in its ``metadata_props``, everything
inference needs to feed it the pixels it was trained on and to refuse images it does not
fit. Values are strings; structured ones are JSON. `parse_metadata` turns them back into
Python values and checks that this radiofm can honour them; the model contract among them
(input, tiles, stamps, stretch, views, outputs) is read as a `radiofm.models.ModelSpec`.

Version 2 names each key for what it is: ``input_pixels`` is the network's input side and
the stretch is stored with all its options. Version-1 files (``input_size``, an ambiguous
``tile_pixels``, the stretch's method with some options) are read and upgraded.
"""

import json

from .._provenance import radiofm_version
from ._spec import ModelSpec

__all__ = [
    "METADATA_VERSION", "NORMALIZATION_VERSION", "READABLE_METADATA_VERSIONS",
    "ModelMetadataError", "parse_metadata", "serialize_metadata",
]

#: Version of the metadata layout below; bump when a key changes meaning.
METADATA_VERSION = 2
#: Layouts this radiofm reads (older ones are upgraded on reading).
READABLE_METADATA_VERSIONS = (1, 2)
#: Version of the pixel preprocessing (`radiofm.tiling.resample_tiles`, then ``normalize``
#: with parameters from ``NormalizationSpec.fit`` on the parent image; see
#: `radiofm.models.ModelSpec.prepare`). Bump it whenever any of them changes the pixels a
#: model sees; models exported under another version are refused.
NORMALIZATION_VERSION = 1

# key -> (kind, required); "json" values are JSON strings.
_SCHEMA = {
    "metadata_version": ("int", True),
    "radiofm_version": ("str", True),
    "name": ("str", True),
    "arch": ("str", True),
    "patch_size": ("json", False),
    "timm_options": ("json", False),
    "feature_stages": ("json", False),
    "input_pixels": ("int", True),
    "embedding_dim": ("int", True),
    "tile_arcsec": ("float", True),
    "stamp_arcsec": ("float", True),
    "normalization": ("json", True),
    "normalization_version": ("int", True),
    "pixel_scale_range_arcsec": ("json", True),
    "beam_range_arcsec": ("json", True),
    "class_names": ("json", True),
    "outputs": ("json", False),
    "train_config": ("json", True),
    "data_summary": ("json", True),
    "parity_max_abs_diff": ("float", True),
    "parity_tolerance": ("float", True),
    "quantization": ("str", True),
    "quantized_max_abs_diff": ("json", False),
    "views": ("int", False),
    "created": ("str", False),
    "weights_sha256": ("str", False),
    # numpy heads (counts, morphology, OOD reference): radiofm.models._heads, own version
    "heads": ("json", False),
}
#: Version-1 keys renamed in version 2 (``tile_pixels`` meant the training cut in configs but
#: the input side in metadata; version 2 drops it: the cut lives in ``train_config``).
_RENAMED_V1 = {"input_size": "input_pixels"}
_DROPPED_V1 = ("tile_pixels",)


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
    metadata = {"metadata_version": METADATA_VERSION, "radiofm_version": radiofm_version(),
                **metadata}
    unknown = set(metadata) - set(_SCHEMA)
    if unknown:
        raise ModelMetadataError(f"unknown model metadata keys {sorted(unknown)}")
    props = {}
    for key, value in metadata.items():
        kind, _ = _SCHEMA[key]
        props[key] = json.dumps(value, sort_keys=True) if kind == "json" else str(value)
    parse_metadata(props, check_versions=False)
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
        Python values: ints, floats, strings, lists and dicts, in the version-2 layout
        (version-1 keys upgraded), with ``spec``, the model's `ModelSpec`.

    Raises
    ------
    ModelMetadataError
        A key is missing or unreadable, or a version does not match.
    """
    props = dict(props)
    if props.get("metadata_version") == "1":
        props = _upgrade_v1(props)
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
    version = radiofm_version()
    if check_versions:
        if parsed["metadata_version"] not in READABLE_METADATA_VERSIONS:
            raise ModelMetadataError(
                f"{source} has metadata version {parsed['metadata_version']}, radiofm "
                f"{version} reads versions {READABLE_METADATA_VERSIONS}; use the radiofm "
                f"version that exported it ({parsed['radiofm_version']}) or export it again"
            )
        if parsed["normalization_version"] != NORMALIZATION_VERSION:
            raise ModelMetadataError(
                f"{source} was trained with preprocessing (normalisation) version "
                f"{parsed['normalization_version']}, but radiofm {version} implements "
                f"version {NORMALIZATION_VERSION}: its pixels would not match the training "
                f"ones. Use radiofm {parsed['radiofm_version']} or export the model again"
            )
    if parsed["embedding_dim"] < 1:
        raise ModelMetadataError(f"{source}: embedding_dim must be positive, got "
                                 f"{parsed['embedding_dim']}")
    try:
        parsed["spec"] = ModelSpec.from_metadata(parsed)
    except (TypeError, ValueError) as error:
        raise ModelMetadataError(f"{source}: {error}") from None
    if "heads" in parsed:  # numpy heads: their own layout and version (radiofm.models._heads)
        from ._heads import parse_heads

        parse_heads(parsed["heads"], embedding_dim=parsed["embedding_dim"],
                    class_names=parsed["class_names"], source=source)
    return parsed


def _upgrade_v1(props):
    """Version-1 metadata strings in the version-2 layout (same meaning, new names)."""
    upgraded = {_RENAMED_V1.get(key, key): value for key, value in props.items()
                if key not in _DROPPED_V1}
    upgraded["metadata_version"] = "1"  # provenance: the layout the file was written in
    return upgraded

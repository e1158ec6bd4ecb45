"""Bundled models, the metadata every exported model carries, and its preprocessing.

`resolve_model` turns ``"default"``, a registered name or a path into an ONNX file, checking
a registered file against its sha256. `parse_metadata` reads the preprocessing, scale ranges,
class names and provenance `radiofm.export` writes into each model. `model_inputs` and
`tile_inputs` prepare pixels the way every model was trained and evaluated: resampled to
the input size with `radiofm.tiling.resample_tiles`, then normalised with the parent
image's fit (`normalization_for`). Nothing here imports torch.
"""

from ._metadata import (
    METADATA_VERSION,
    NORMALIZATION_VERSION,
    VIEW_COUNTS,
    ModelMetadataError,
    parse_metadata,
    serialize_metadata,
)
from ._preprocess import dihedral_views, model_inputs, normalization_for, tile_inputs
from ._registry import (
    DEFAULT_MODEL,
    ModelRegistry,
    bundled_registry,
    check_sha256,
    file_sha256,
    graph_sha256,
    locate_model,
    resolve_model,
)

__all__ = [
    "DEFAULT_MODEL", "METADATA_VERSION", "NORMALIZATION_VERSION", "VIEW_COUNTS",
    "ModelMetadataError", "ModelRegistry", "bundled_registry", "check_sha256", "dihedral_views",
    "file_sha256", "graph_sha256", "locate_model", "model_inputs", "normalization_for",
    "parse_metadata", "resolve_model", "serialize_metadata", "tile_inputs",
]

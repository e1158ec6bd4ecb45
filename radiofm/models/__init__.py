"""The model contract, the metadata every exported model carries, and the bundled models.

`ModelSpec` is the one owner of what a model expects and returns: its input size, tile and
stamp angles, pixel-scale and beam ranges, the stretch with all its options, views, output
and class names. It derives tile and stamp sides for an image, fits the stretch, prepares
inputs and streams tiles; training configs, export, inference, evaluation and the CLI all
read or write it. `parse_metadata` reads an exported model's metadata (the spec among it).
`resolve_model` turns ``"default"``, a registered name or a path into an ONNX file, checking
a registered file against its sha256. Nothing here imports torch.
"""

from ._heads import (
    CROWDING_TOLERANCE,
    FIELD_PEAKS_TOLERANCE,
    HEADS_VERSION,
    PEAK_FEATURES,
    POOLED_COUNT_HEAD,
    CatalogueCount,
    Heads,
    OodReference,
    PoissonGlm,
    input_noise,
    parse_heads,
    peak_features,
    serialize_heads,
)
from ._metadata import (
    METADATA_VERSION,
    NORMALIZATION_VERSION,
    READABLE_METADATA_VERSIONS,
    ModelMetadataError,
    parse_metadata,
    serialize_metadata,
)
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
from ._spec import (
    OUTPUTS,
    REFUSE_FACTOR,
    VIEW_COUNTS,
    ModelMismatchWarning,
    ModelSpec,
    dihedral_views,
)

__all__ = [
    "CROWDING_TOLERANCE", "DEFAULT_MODEL", "FIELD_PEAKS_TOLERANCE", "HEADS_VERSION",
    "METADATA_VERSION",
    "NORMALIZATION_VERSION", "OUTPUTS",
    "PEAK_FEATURES", "POOLED_COUNT_HEAD", "READABLE_METADATA_VERSIONS", "REFUSE_FACTOR",
    "VIEW_COUNTS", "CatalogueCount", "Heads", "ModelMetadataError", "ModelMismatchWarning",
    "ModelRegistry", "ModelSpec", "OodReference", "PoissonGlm", "bundled_registry",
    "check_sha256",
    "dihedral_views", "file_sha256", "graph_sha256", "input_noise", "locate_model",
    "parse_heads", "parse_metadata", "peak_features", "resolve_model", "serialize_heads",
    "serialize_metadata",
]

"""Inference with exported models: onnxruntime only, no torch.

`embed_image` embeds every tile of an image, `count_sources` predicts compact-source counts
per tile, `classify_morphology` classifies catalogue sources from stamps around them and
`embed_sources` embeds those stamps. Each takes anything `radiofm.image.read_image`
accepts (and astropy Tables) and returns an astropy Table with new columns and the model's
name and sha256 in its ``meta``. `load_model` gives the cached onnxruntime session behind
them.
"""

from ._annotate import (
    ModelMismatchWarning,
    add_catalogue_counts,
    add_count_columns,
    catalogue_crowding,
    check_image,
    classify_morphology,
    compact_by_measurement,
    count_sources,
    embed_image,
    embed_sources,
    measured_snr,
    read_stamps,
    shares_island,
)
from ._columns import COLUMN_DESCRIPTIONS, describe_columns, image_noise
from ._session import OnnxModel, clear_cache, load_model

__all__ = [
    "COLUMN_DESCRIPTIONS", "ModelMismatchWarning", "OnnxModel", "add_catalogue_counts",
    "add_count_columns", "catalogue_crowding", "check_image", "classify_morphology", "clear_cache",
    "compact_by_measurement", "count_sources", "describe_columns", "embed_image",
    "embed_sources", "image_noise", "load_model", "measured_snr", "read_stamps",
    "shares_island",
]

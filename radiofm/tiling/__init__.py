"""Tiling: a grid of square tiles over a radio image, and the shared normalisation.

`tile_image` lays a grid over any image `radiofm.image.read_image` accepts and returns a
`TileSet`: a QTable of tiles with pixel bounds and sky centres, per-tile WCS, DS9/CRTF
footprints, and normalised float32 batches streamed with bounded memory. `normalize` with
parameters from `fit_normalization` is the one intensity stretch used by training and
inference alike, and `resample_tiles` brings tiles and stamps to a model's input size.
"""

from ._normalize import METHODS, Normalization, NormalizationSpec, fit_normalization, normalize
from ._resample import prepare_tiles, resample_tiles
from ._tileset import TileSet, prefetch_batches, tile_image

__all__ = [
    "METHODS", "Normalization", "NormalizationSpec", "TileSet", "fit_normalization", "normalize",
    "prefetch_batches", "prepare_tiles", "resample_tiles", "tile_image",
]

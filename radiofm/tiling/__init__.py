"""Tiling: a grid of square tiles over a radio image, and the shared normalisation.

`tile_image` lays a grid over any image `radiofm.image.read_image` accepts and returns a
`TileSet`: a QTable of tiles with pixel bounds and sky centres, per-tile WCS, DS9/CRTF
footprints, and normalised float32 batches streamed with bounded memory. `normalize` with
parameters from `fit_normalization` is the one intensity stretch used by training and
inference alike, and `resample_tiles` brings tiles and stamps to a model's input size
(`split_windows` first cuts them into the windows a windowed count head reads).
`write_table` writes (and `read_table` reads) tile tables and catalogues as FITS, ECSV,
VOTable or Parquet, atomically;
`parse_size` reads sizes typed as ``"256px"`` or ``"5 arcmin"``.
"""

from ._normalize import METHODS, Normalization, NormalizationSpec, fit_normalization, normalize
from ._resample import prepare_tiles, resample_tiles, split_windows, window_bounds
from ._sizes import (
    MAX_UNITLESS_TILES,
    UnitlessPixels,
    check_tile_count,
    count_tiles,
    parse_size,
)
from ._table_io import TABLE_FORMATS, read_table, table_format, write_table
from ._tileset import TileSet, prefetch_batches, tile_image

__all__ = [
    "MAX_UNITLESS_TILES", "METHODS", "Normalization", "NormalizationSpec", "TABLE_FORMATS",
    "TileSet", "UnitlessPixels", "check_tile_count", "count_tiles", "fit_normalization",
    "normalize", "parse_size", "prefetch_batches", "prepare_tiles", "read_table",
    "resample_tiles", "split_windows", "table_format", "tile_image", "window_bounds",
    "write_table",
]

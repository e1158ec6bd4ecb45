"""Catalogues onto tiles: per-tile counts, positional cross-matches and COCO boxes.

`count_in_tiles` adds a count column (by default compact sources, S_Code 'S', as the source
work labelled its crops) to a tile table; `match_catalog` attaches the nearest labelled
reference source to each source or tile; `tiles_to_coco` writes detection boxes.
"""

from ._crossmatch import count_in_tiles, match_catalog, tile_membership, tiles_to_coco

__all__ = ["count_in_tiles", "match_catalog", "tile_membership", "tiles_to_coco"]

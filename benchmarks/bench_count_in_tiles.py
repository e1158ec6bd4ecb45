"""Counting 10^6 catalogue rows into 10^4 tiles: radiofm vs a SkyCoord-per-tile loop.

The image is a 25600 x 25600 MeerKAT-like WCS (100 x 100 tiles of 256 px; its pixels are a
broadcast constant, so nothing large is allocated). The catalogue holds 10^6 random
positions, half of them compact ('S').

- ``radiofm``: `radiofm.catalogs.count_in_tiles` (one vectorised world-to-pixel transform,
  then sorted-grid lookups).
- ``loop``: for each tile, the compact sources' SkyCoord through the tile's WCS
  (``tile_wcs(i).world_to_pixel``) and a pixel-bounds test, the straightforward way. It is
  timed on ``--loop-tiles`` tiles and extrapolated to all of them; its counts on those tiles
  are checked against radiofm's. (astropy's ``WCS.footprint_contains`` takes pixel edges at
  0 and N rather than -0.5 and N - 0.5, so it disagrees by half a pixel at tile edges.)

Usage::

    python benchmarks/bench_count_in_tiles.py [--rows 1000000] [--grid 100] [--loop-tiles 20]
"""

import argparse
import time

import numpy as np
from astropy.table import QTable
from astropy.wcs import WCS

from radiofm.catalogs import count_in_tiles
from radiofm.tiling import tile_image

TILE = 256


def _count_in_one_tile(tile_wcs, coords):
    x, y = tile_wcs.world_to_pixel(coords)
    return int(np.sum((x >= -0.5) & (x < TILE - 0.5) & (y >= -0.5) & (y < TILE - 0.5)))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--grid", type=int, default=100, help="tiles per side")
    parser.add_argument("--loop-tiles", type=int, default=20)
    args = parser.parse_args()

    size = args.grid * TILE
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---SIN", "DEC--SIN"]
    wcs.wcs.crval = [150.0, -30.0]
    wcs.wcs.crpix = [size / 2 + 0.5, size / 2 + 0.5]
    wcs.wcs.cdelt = [-1.1 / 3600, 1.1 / 3600]
    pixels = np.broadcast_to(np.float32(0.0), (size, size))
    start = time.perf_counter()
    tiles = tile_image((pixels, wcs), TILE)
    grid_seconds = time.perf_counter() - start

    rng = np.random.default_rng(0)
    x = rng.uniform(-0.5, size - 0.5, args.rows)
    y = rng.uniform(-0.5, size - 0.5, args.rows)
    catalog = QTable({"sky_center": wcs.pixel_to_world(x, y),
                      "s_code": np.where(rng.random(args.rows) < 0.5, "S", "M")})

    start = time.perf_counter()
    counted = count_in_tiles(catalog, tiles)
    radiofm_seconds = time.perf_counter() - start

    compact = catalog["sky_center"][catalog["s_code"] == "S"]
    sample = rng.choice(len(tiles), size=args.loop_tiles, replace=False)
    start = time.perf_counter()
    loop_counts = [_count_in_one_tile(tiles.tile_wcs(int(i)), compact) for i in sample]
    loop_seconds = (time.perf_counter() - start) / args.loop_tiles * len(tiles)
    agree = np.array_equal(loop_counts, np.asarray(counted["n_compact"])[sample])

    print(f"{args.rows} catalogue rows ({len(compact)} compact) into {len(tiles)} tiles of "
          f"{TILE} px on a {size}x{size} image (grid built in {grid_seconds:.1f} s)")
    print(f"{'method':<40}{'seconds':>12}")
    print(f"{'radiofm count_in_tiles':<40}{radiofm_seconds:>12.3f}")
    print(f"{'SkyCoord-per-tile loop (extrapolated)':<40}{loop_seconds:>12.1f}"
          f"   from {args.loop_tiles} tiles")
    print(f"speed-up: {loop_seconds / radiofm_seconds:.0f}x; counts agree on the sampled "
          f"tiles: {agree}; total counted {int(counted['n_compact'].sum())} "
          f"(expected {len(compact)})")


if __name__ == "__main__":
    main()

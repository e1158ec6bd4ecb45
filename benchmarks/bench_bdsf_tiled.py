"""pyBDSF on a simulated 4096 x 4096 field: the whole image vs tile by tile.

Simulates the field (seeded) and writes it with its truth, then runs
``find_sources(method="bdsf")`` on the whole image and with ``tile_size=`` in separate
processes, each reporting its wall time and peak resident memory. Prints the source counts,
how many sources of each run the other finds within 2 arcsec, and both runs' completeness
against the truth for compact sources above S/N 10.

Usage::

    python benchmarks/bench_bdsf_tiled.py [--size 4096] [--tile 1024] [--workdir DIR]
"""

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import astropy.units as u
import numpy as np
from astropy.table import QTable

NOISE = 4e-6


def run(image, catalog, tile):
    from radiofm.sources import find_sources

    start = time.perf_counter()
    found = find_sources(image, "bdsf", tile_size=tile or None)
    seconds = time.perf_counter() - start
    found.write(catalog, overwrite=True)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": seconds, "peak_rss_mb": peak, "sources": len(found)}))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--tile", type=int, default=1024)
    parser.add_argument("--workdir", default=tempfile.gettempdir())
    parser.add_argument("--run", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run:
        run(args.run[0], args.run[1], int(args.run[2]))
        return

    from radiofm.simulate import make_radio_sky

    folder = Path(args.workdir)
    image = folder / f"radiofm_bdsf_bench_{args.size}.fits"
    truth_path = folder / f"radiofm_bdsf_bench_{args.size}_truth.ecsv"
    hdu, truth = make_radio_sky((args.size, args.size), noise=NOISE, seed=42)
    hdu.writeto(image, overwrite=True)
    truth.write(truth_path, overwrite=True)
    print(f"simulated {args.size}x{args.size} field: {len(truth)} sources, noise {NOISE} Jy/beam")
    results, catalogs = {}, {}
    for label, tile in (("whole image", 0), (f"tiles of {args.tile} px", args.tile)):
        catalog = folder / f"radiofm_bdsf_bench_{tile}.ecsv"
        command = [sys.executable, __file__, "--run", str(image), str(catalog), str(tile)]
        done = subprocess.run(command, check=True, capture_output=True, text=True)
        results[label] = json.loads(done.stdout.strip().splitlines()[-1])
        catalogs[label] = QTable.read(catalog)
    bright = truth[(truth["s_code"] == "S") & (truth["peak"].to_value(u.Jy / u.beam)
                                                 > 10 * NOISE)]
    print(f"{'run':<22}{'seconds':>9}{'peak RSS MB':>13}{'sources':>9}"
          f"{'found by other':>16}{'completeness S/N>10':>21}")
    labels = list(results)
    for label, other in zip(labels, labels[::-1], strict=True):
        mine, theirs = catalogs[label], catalogs[other]
        _, separation, _ = mine["sky_center"].match_to_catalog_sky(theirs["sky_center"])
        agree = np.mean(separation < 2 * u.arcsec)
        _, to_truth, _ = bright["sky_center"].match_to_catalog_sky(mine["sky_center"])
        complete = np.mean(to_truth < 3 * u.arcsec)
        r = results[label]
        print(f"{label:<22}{r['seconds']:>9.1f}{r['peak_rss_mb']:>13.0f}{r['sources']:>9}"
              f"{agree:>16.1%}{complete:>21.1%}")


if __name__ == "__main__":
    main()

"""Tiling throughput and memory on a large on-disk image, beside a plain numpy copy.

Writes a 16k x 16k float32 FITS image (1 GiB, big-endian as FITS stores it) in row strips,
reads it once to warm the page cache, then runs each phase in a fresh subprocess so every
phase reports its own peak resident memory:

- ``numpy strip copy``: the memory-mapped data copied strip by strip into one reused native
  float32 buffer with ``np.copyto`` (the byte swap radiofm must also do, nothing else; the
  fastest copy numpy offers);
- ``numpy .copy()``: ``data.copy()`` of the memory-mapped array, the plain numpy copy of the
  same bytes (it allocates its destination, as a consumer of batches does);
- ``radiofm grid``: ``tile_image`` (reads the image once for each tile's valid fraction);
- ``radiofm batches``: iterating ``TileSet.batches`` with the percentile and the snr
  normalisation (read, convert, normalise every pixel).

Usage::

    python benchmarks/bench_tiling.py [--size 16384] [--tile 256] [--batch 64] [--workdir DIR]
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

STRIP = 256


def write_image(path, size):
    """Noise with a blank (NaN) corner, written strip by strip (bounded memory)."""
    from astropy.io import fits

    from radiofm.tests.helpers import sky_header

    header = sky_header(size, size)
    header.insert("NAXIS", ("SIMPLE", True), after=False)
    header.insert("NAXIS", ("BITPIX", -32), after=False)
    stream = fits.StreamingHDU(path, header)
    rng = np.random.default_rng(0)
    for y0 in range(0, size, STRIP):
        strip = rng.normal(0.0, 1e-5, (min(STRIP, size - y0), size)).astype(np.float32)
        if y0 < size // 8:
            strip[:, : size // 8] = np.nan
        stream.write(strip)
    stream.close()


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def phase_copy(path, plain):
    from radiofm.image import read_image

    with read_image(path) as image:
        mapped = image.data  # memory-mapped, big-endian
        ny, nx = mapped.shape
        start_rss = peak_rss_mb()
        start = time.perf_counter()
        if plain:
            copy = mapped.copy()
            checksum = float(copy[0, -1])
        else:
            buffer = np.empty((STRIP, nx), dtype=np.float32)
            for y0 in range(0, ny, STRIP):
                rows = min(STRIP, ny - y0)
                np.copyto(buffer[:rows], mapped[y0 : y0 + rows])
            checksum = float(buffer[0, -1])
        seconds = time.perf_counter() - start
    return {"seconds": seconds, "bytes": ny * nx * 4, "start_rss_mb": start_rss,
            "checksum": checksum}


def phase_tiles(path, tile, batch, method, threads):
    from radiofm.image import read_image
    from radiofm.tiling import tile_image

    with read_image(path) as image:
        start_rss = peak_rss_mb()
        start = time.perf_counter()
        tiles = tile_image(image, tile, min_valid=0.5)
        grid_seconds = time.perf_counter() - start
        stretch = tiles.fit_normalization(method)
        start = time.perf_counter()
        checksum, n_tiles = 0.0, 0
        for ids, pixels in tiles.batches(batch, normalization=stretch, threads=threads):
            checksum += float(pixels[:, 0, 0, 0].sum())
            n_tiles += len(ids)
        batch_seconds = time.perf_counter() - start
    return {
        "grid_seconds": grid_seconds, "seconds": batch_seconds, "tiles": n_tiles,
        "bytes": n_tiles * tile * tile * 4, "start_rss_mb": start_rss,
        "checksum": checksum,
    }


def run_phase(args, phase, threads=1):
    command = [sys.executable, __file__, "--phase", phase, "--image", str(args.image),
               "--tile", str(args.tile), "--batch", str(args.batch), "--threads", str(threads)]
    result = subprocess.run(command, check=True, capture_output=True, text=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=16384)
    parser.add_argument("--tile", type=int, default=256)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--workdir", default=tempfile.gettempdir())
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)),
                        help="threads for radiofm batches (default: all CPUs); 1 is also run")
    parser.add_argument("--phase", help=argparse.SUPPRESS)
    parser.add_argument("--image", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.phase:
        if args.phase in ("strips", "plain"):
            result = phase_copy(args.image, plain=args.phase == "plain")
        else:
            result = phase_tiles(args.image, args.tile, args.batch, args.phase, args.threads)
        result["peak_rss_mb"] = peak_rss_mb()
        print(json.dumps(result))
        return

    args.image = Path(args.workdir) / f"radiofm_bench_{args.size}.fits"
    if not args.image.exists() or args.image.stat().st_size < 4 * args.size**2:
        print(f"writing {args.image} ({4 * args.size**2 / 2**30:.2f} GiB) ...", flush=True)
        write_image(args.image, args.size)
    with open(args.image, "rb") as stream:  # warm the page cache: every phase reads from RAM
        while stream.read(64 * 2**20):
            pass
    batch_mb = args.batch * args.tile**2 * 4 / 2**20
    print(f"image {args.size}x{args.size} float32 on disk, tiles {args.tile} px, batch "
          f"{args.batch} ({batch_mb:.0f} MB), {os.cpu_count()} CPUs, page cache warm")
    print(f"{'phase':<28}{'seconds':>9}{'GB/s':>8}{'peak RSS MB':>13}{'RSS growth MB':>15}")
    results = {}
    phases = [("strips", 1, "numpy strip copy"), ("plain", 1, "numpy .copy()")]
    for method in ("percentile", "snr"):
        phases += [(method, n, f"radiofm {method} {n} thr") for n in sorted({1, args.threads})]
    for phase, threads, label in phases:
        r = run_phase(args, phase, threads)
        results[phase, threads] = r
        rate = r["bytes"] / r["seconds"] / 1e9
        growth = r["peak_rss_mb"] - r["start_rss_mb"]
        print(f"{label:<28}{r['seconds']:>9.2f}{rate:>8.2f}{r['peak_rss_mb']:>13.0f}"
              f"{growth:>15.0f}")
        if "grid_seconds" in r:
            grid_rate = 4 * args.size**2 / r["grid_seconds"] / 1e9
            print(f"{'  (tile_image grid pass)':<28}{r['grid_seconds']:>9.2f}{grid_rate:>8.2f}")
    strip_rate = results["strips", 1]["bytes"] / results["strips", 1]["seconds"]
    plain_rate = results["plain", 1]["bytes"] / results["plain", 1]["seconds"]
    for (phase, threads), r in results.items():
        if phase in ("strips", "plain"):
            continue
        rate = r["bytes"] / r["seconds"]
        print(f"radiofm {phase} batches, {threads} thread(s): {rate / plain_rate:.0%} of numpy "
              f".copy(), {rate / strip_rate:.0%} of the numpy strip copy (goal >= 50 %)")


if __name__ == "__main__":
    main()

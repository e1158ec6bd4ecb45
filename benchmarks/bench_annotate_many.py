"""Bulk annotation on Dask: `radiofm.survey.annotate_many` with 1 and 2 local workers.

1. ``N`` simulated ``SIZE x SIZE`` fields (`radiofm.simulate.make_radio_sky`, seeds 0..N-1)
   annotated with the bundled default model by a LocalCluster of 1, then 2, single-thread
   worker processes (fresh output folders): wall time, speed-up, peak RSS of each worker
   (``ru_maxrss`` read on the workers at the end).
2. One ``BIG x BIG`` field (assembled band by band from simulated ``4096``-row bands into a
   FITS file on disk, never whole in memory) split into row blocks of ``--block-tiles``
   tiles over 2 workers: wall time, tiles/s and peak RSS per worker.

The figures depend on the load of the machine: run it alone, e.g. ``nice -n 10``.

Usage::

    python benchmarks/bench_annotate_many.py [--images 16] [--size 2048] [--big 16384]
        [--block-tiles 512] [--workers 1,2] [--finder photutils] [--workdir DIR]
"""

import argparse
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
from astropy.io import fits


def _peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def simulate_fields(folder, count, size):
    from radiofm.simulate import make_radio_sky

    paths = []
    for seed in range(count):
        path = folder / f"field{seed:02d}.fits"
        if not path.exists():
            hdu, _ = make_radio_sky((size, size), seed=seed)
            hdu.writeto(path)
        paths.append(path)
    return paths


def simulate_big(folder, size, band=4096):
    """A size x size field written band by band (each band its own simulated sky)."""
    from radiofm.simulate import make_radio_sky

    path = folder / f"big{size}.fits"
    if path.exists():
        return path
    hdu, _ = make_radio_sky((band, size), seed=100)
    header = hdu.header.copy()
    header["NAXIS2"] = size
    header["CRPIX2"] = size / 2 + 0.5
    shape = hdu.data.shape[:-2]
    header.tofile(path)
    with open(path, "ab") as stream:
        for k in range(size // band):
            if k:
                hdu, _ = make_radio_sky((band, size), seed=100 + k)
            stream.write(np.asarray(hdu.data, ">f4").reshape(*shape, band, size).tobytes())
        stream.write(b"\0" * (-stream.tell() % 2880))
    with fits.open(path) as check:
        assert check[0].data.shape[-2:] == (size, size)
    return path


def run(images, out, workers, block_tiles, finder):
    from distributed import Client, LocalCluster

    from radiofm.survey import annotate_many

    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                      dashboard_address=":0") as cluster, Client(cluster) as client:
        client.run(lambda: None)  # workers up before the clock starts
        start = time.perf_counter()
        manifest = annotate_many(images, out, client=client, block_tiles=block_tiles,
                                 finder=finder, progress=False, overwrite=True, resume=False)
        seconds = time.perf_counter() - start
        rss = client.run(_peak_rss_mb)
    assert manifest.meta["N_FAILED"] == 0, manifest
    return seconds, int(manifest["n_tiles"].sum()), sorted(rss.values())


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--big", type=int, default=16384, help="0 skips the big image")
    parser.add_argument("--block-tiles", type=int, default=512)
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--finder", default="photutils",
                        choices=["auto", "bdsf", "photutils", "none"],
                        help="source finder of each image (default photutils, as the base "
                        "install; auto takes pyBDSF where installed)")
    parser.add_argument("--workdir", help="keeps the simulated images between runs")
    args = parser.parse_args()
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="radiofm-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    images = simulate_fields(workdir, args.images, args.size)
    print(f"simulated {len(images)} fields of {args.size}^2 in {time.perf_counter() - start:.0f} s")
    walls = {}
    for workers in [int(w) for w in args.workers.split(",")]:
        seconds, tiles, rss = run(images, workdir / f"out{workers}", workers, args.block_tiles,
                                  args.finder)
        walls[workers] = seconds
        print(f"{args.images} x {args.size}^2, {workers} worker(s): {seconds:.1f} s wall, "
              f"{tiles} tiles, {tiles / seconds:.1f} tiles/s, peak RSS per worker "
              f"{', '.join(f'{r:.0f}' for r in rss)} MB")
    if 1 in walls and 2 in walls:
        print(f"speed-up 2 workers over 1: {walls[1] / walls[2]:.2f}x (target >= 1.7x)")
    if args.big:
        start = time.perf_counter()
        big = simulate_big(workdir, args.big)
        print(f"assembled a {args.big}^2 field ({big.stat().st_size / 2**30:.1f} GiB) in "
              f"{time.perf_counter() - start:.0f} s")
        seconds, tiles, rss = run([big], workdir / "outbig", 2, args.block_tiles, args.finder)
        print(f"1 x {args.big}^2 over 2 workers in blocks of {args.block_tiles} tiles: "
              f"{seconds:.1f} s wall, {tiles} tiles, {tiles / seconds:.1f} tiles/s, peak RSS "
              f"per worker {', '.join(f'{r:.0f}' for r in rss)} MB")


if __name__ == "__main__":
    main()

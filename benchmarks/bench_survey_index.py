"""The survey index at scale: build, read, similarity query and outlier ranking.

Random unit embeddings of the bundled model's dimension (the numbers are about speed and
memory, not quality) in parts of ``--part`` tiles (one part per image, as `annotate_many`
writes them) for each size in ``--sizes``: time to write every part (`add_to_index`), to
read the index (`read_index`), to fit the neighbour search, the median latency of
`similar` (k=10) over 20 queries, and the outlier ranking (`outliers`, k=10; only up to
``--max-outliers`` entries: it is all-pairs). Peak RSS of this process after each size.

Usage::

    python benchmarks/bench_survey_index.py [--sizes 100000,1000000] [--part 1000]
        [--max-outliers 100000] [--workdir DIR]
"""

import argparse
import resource
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from astropy.coordinates import SkyCoord
from astropy.table import QTable


def part_table(rng, start, count, dim):
    table = QTable()
    table["tile_id"] = np.arange(count)
    table["sky_center"] = SkyCoord(rng.uniform(0, 360, count), rng.uniform(-90, 30, count),
                                   unit="deg")
    for name in ("x_min", "y_min", "x_max", "y_max"):
        table[name] = np.zeros(count, np.int64)
    table["n_compact_pred"] = rng.uniform(0, 10, count).astype(np.float32)
    table["embedding"] = rng.normal(size=(count, dim)).astype(np.float32)
    table.meta.update(IMAGE=f"image{start:08d}.fits", MODEL="bench", MODELSHA="0" * 64)
    return table


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--part", type=int, default=1000)
    parser.add_argument("--max-outliers", type=int, default=100_000)
    parser.add_argument("--workdir")
    args = parser.parse_args()
    from radiofm.inference import load_model
    from radiofm.survey import add_to_index, outliers, read_index, similar

    dim = int(load_model(threads=1).metadata["embedding_dim"])
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="radiofm-index-"))
    rng = np.random.default_rng(0)
    for size in [int(s) for s in args.sizes.split(",")]:
        folder = workdir / f"index{size}"
        shutil.rmtree(folder, ignore_errors=True)
        start = time.perf_counter()
        for first in range(0, size, args.part):
            add_to_index(folder, part_table(rng, first, min(args.part, size - first), dim))
        build = time.perf_counter() - start
        disk = sum(p.stat().st_size for p in folder.iterdir()) / 2**20
        start = time.perf_counter()
        index = read_index(folder)
        read = time.perf_counter() - start
        start = time.perf_counter()
        index.neighbors()
        fit = time.perf_counter() - start
        latencies = []
        for row in rng.integers(0, size, 20):
            begun = time.perf_counter()
            similar(index, int(row), k=10)
            latencies.append(time.perf_counter() - begun)
        line = (f"{size} entries x {dim}: build {build:.1f} s ({size // args.part} parts, "
                f"{disk:.0f} MiB on disk), read {read:.1f} s, fit {fit:.2f} s, similar k=10 "
                f"median {1e3 * np.median(latencies):.0f} ms")
        if size <= args.max_outliers:
            start = time.perf_counter()
            outliers(index, 16, k=10)
            line += f", outliers {time.perf_counter() - start:.1f} s"
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        print(f"{line}; peak RSS {rss:.2f} GiB")
        del index
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()

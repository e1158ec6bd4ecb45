"""Streaming tiles from disk keeps memory flat in the image size."""

import json
import subprocess
import sys

import numpy as np
from astropy.io import fits

from radiofm.tests.helpers import sky_header

SCRIPT = """
import json, resource, sys
from radiofm.tiling import tile_image
from radiofm.image import read_image
image = read_image(sys.argv[1])
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
tiles = tile_image(image, 256)
n = sum(len(ids) for ids, _ in tiles.batches(16, threads=1))
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"tiles": n, "growth_mb": (after - before) / 1024}))
"""


def test_peak_memory_does_not_grow_with_the_image(tmp_path):
    size = 8192  # 256 MB of float32 on disk
    header = sky_header(size, size)
    header.insert("NAXIS", ("SIMPLE", True), after=False)
    header.insert("NAXIS", ("BITPIX", -32), after=False)
    path = tmp_path / "large.fits"
    stream = fits.StreamingHDU(path, header)
    strip = np.random.default_rng(0).normal(0, 1e-5, (512, size)).astype(np.float32)
    for _ in range(size // 512):
        stream.write(strip)
    stream.close()
    result = subprocess.run([sys.executable, "-c", SCRIPT, str(path)], check=True,
                            capture_output=True, text=True)
    measured = json.loads(result.stdout)
    assert measured["tiles"] == (size // 256) ** 2
    # one band is 8 MB and one batch 4 MB; loading the image would add 256 MB
    assert measured["growth_mb"] < 64

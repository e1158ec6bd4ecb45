"""Tile counts of ``radiofm annotate`` on simulated skies of several depths, model beside model.

README's example sky and every simulated sky the count heads were first fitted on share one
noise level (4 uJy/beam); a deeper MeerKAT field holds more sources above 5 sigma per tile
(MIGHTEE reaches 1.3-2.7 uJy/beam). This script simulates example-like skies (2048 px,
calibration artefacts) at each ``--noise`` level, with seeds from 9000 (no fit or
evaluation uses them; ``--first-seed`` moves them, so a ship rule can be judged on skies no
earlier look saw), runs ``radiofm annotate IMAGE --finder photutils`` on each with each
``--model`` (``--finder none``: the count head alone, as `radiofm.inference.count_sources`
counts), and compares ``n_compact_pred`` per tile with the true compact sources whose
peak reaches 5 sigma (`radiofm.simulate.count_true_compact`): on the unmasked tiles R^2,
MAE, the mean error (bias), and the share whose truth lies within one
``n_compact_pred_err``; the share of tiles masked out of distribution; and the catalogue's
crowding where the count head reads it (``meta["CROWDING"]``, sources per beam). Every model runs
on the same skies in the same run.

Usage::

    python benchmarks/bench_count_depths.py --model NEW.onnx --model default
        [--noise 1.5e-6 2e-6 4e-6 8e-6] [--seeds 2] [--first-seed 9000] [--size 2048]
        [--finder {photutils,bdsf,none}] [--output DIR]
"""

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from astropy.table import QTable, Table


def _figures(tiles_file, image_file, truth):
    """Per-tile figures of one annotate run against the sky's truth."""
    from radiofm.image import read_image
    from radiofm.simulate import count_true_compact
    from radiofm.tiling import tile_image

    table = QTable.read(tiles_file)
    image = read_image(image_file)
    tiles = tile_image(image, int(table.meta["TILESIZE"]))
    true = np.asarray(count_true_compact(truth, tiles)["n_compact"], float)
    image.close()
    predicted, errors = (np.ma.filled(np.ma.asarray(Table(table)[name], float), np.nan)
                         for name in ("n_compact_pred", "n_compact_pred_err"))
    masked = np.asarray(table["ood_flag"]) | ~np.isfinite(predicted)
    t, p, e = true[~masked], predicted[~masked], errors[~masked]
    r2 = 1 - np.sum((t - p) ** 2) / np.sum((t - t.mean()) ** 2)
    return {"true": t.mean(), "r2": r2, "mae": np.abs(p - t).mean(), "bias": (p - t).mean(),
            "within": (np.abs(p - t) <= e).mean(), "masked": masked.mean(),
            "combined": table.meta.get("COUNTCAT", "-"),
            "crowding": float(table.meta.get("CROWDING", np.nan))}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", required=True,
                        help="an exported model, or 'default' (repeat to compare)")
    parser.add_argument("--noise", type=float, nargs="+", default=[1.5e-6, 2e-6, 4e-6, 8e-6],
                        help="noise levels (Jy/beam)")
    parser.add_argument("--seeds", type=int, default=2, help="skies per noise level")
    parser.add_argument("--first-seed", type=int, default=9000,
                        help="seed of each level's first sky (9000 and up: no fit uses them)")
    parser.add_argument("--size", type=int, default=2048, help="sky side (pixels)")
    parser.add_argument("--finder", choices=["photutils", "bdsf", "none"], default="photutils",
                        help="annotate's finder; none: the count head alone")
    parser.add_argument("--output", default=tempfile.mkdtemp(prefix="radiofm-depths-"))
    args = parser.parse_args()

    from radiofm.simulate import make_radio_sky

    output = Path(args.output)
    rows = []
    for noise in args.noise:
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            sky = output / f"noise{noise:g}-seed{seed}"
            sky.mkdir(parents=True, exist_ok=True)
            hdu, truth = make_radio_sky((args.size, args.size), seed=seed, noise=noise,
                                        artefacts=True)
            hdu.writeto(sky / "sky.fits", overwrite=True)
            for k, model in enumerate(args.model):
                folder = sky / f"model{k}"
                command = [sys.executable, "-m", "radiofm", "annotate", str(sky / "sky.fits"),
                           "--finder", args.finder, "--model", model, "-o", str(folder),
                           "--overwrite"]
                subprocess.run(command, check=True, capture_output=True,
                               env={**os.environ, "MPLBACKEND": "agg"})
                figures = _figures(folder / "sky_tiles.ecsv", sky / "sky.fits", truth)
                rows.append({"noise": noise, "seed": seed, "model": model, **figures})
                print(f"noise {noise * 1e6:4.1f} uJy/beam  seed {seed}  {model}: true "
                      f"{figures['true']:5.1f} per tile, R^2 {figures['r2']:6.3f}, MAE "
                      f"{figures['mae']:5.2f}, bias {figures['bias']:+6.2f}, within 1 error "
                      f"{figures['within']:.2f}, masked {figures['masked']:.2f} "
                      f"(catalogue: {figures['combined']}, crowding {figures['crowding']:.3g} "
                      "sources per beam)", flush=True)
    table = Table(rows)
    print("\nmean over seeds (unmasked tiles; R^2 target 0.8 on README's example):")
    for noise in args.noise:
        for model in args.model:
            part = table[(table["noise"] == noise) & (table["model"] == model)]
            print(f"  noise {noise * 1e6:4.1f} uJy/beam  {model}: true "
                  f"{np.mean(part['true']):5.1f}, R^2 {np.mean(part['r2']):6.3f}, MAE "
                  f"{np.mean(part['mae']):5.2f}, bias {np.mean(part['bias']):+6.2f}, within 1 "
                  f"error {np.mean(part['within']):.2f}, masked {np.mean(part['masked']):.2f}")
    table.write(output / "count_depths.ecsv", overwrite=True)
    print(f"table: {output / 'count_depths.ecsv'}")


if __name__ == "__main__":
    main()

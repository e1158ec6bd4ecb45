"""Choose how many windows per tile side a model's count head reads, on validation skies.

A count head on one pooled embedding of a 270 arcsec tile sees its sources at 4 arcsec per
input pixel (64 px). Counts are additive, so the head can instead read each of the tile's
k x k windows (`radiofm.tiling.split_windows`) at the same input size, predict each
window's count and sum them. This script compares k on simulated skies only, none of them
a test sky: the head is fitted on the training skies `radiofm.evaluate.fit_output_heads`
uses (seeds 1000-1003 clean, 2000-2005 with artefacts) plus ``--extra`` skies from seed
3000 (odd ones with artefacts), and scored per tile on ``--valid`` further skies after
them. Test skies (1004-1005, 2006-2008) and README's example sky (2026) are not read.
``--twin`` scores the model's random-init twin (same architecture, input, stretch and
views; `radiofm.evaluate.random_twin`, needs torch) the same way.

Usage::

    python scripts/count_windows.py [MODEL.onnx] [--windows 1 2 3] [--extra 20] [--valid 10]
        [--twin]

About 20 minutes on 2 CPU cores for the default model and the defaults (the Poisson fits
take most of it).
"""

import argparse
import itertools
import logging

import numpy as np
from sklearn.metrics import r2_score

from radiofm.evaluate import load_embedder, random_twin, with_views
from radiofm.evaluate._embedders import normalization_of
from radiofm.evaluate._fit_heads import _poisson
from radiofm.evaluate._stamps import _simulated_count_tiles

EXTRA_SEED = 3000


def sky_windows(embedder, stretch, seed, artefacts, windows):
    """Window embeddings, window counts and tile index of one simulated 2048 px sky."""
    data = _simulated_count_tiles(stretch, 1, 2048, first_seed=seed, artefacts=artefacts,
                                  windows=windows)
    embedding = np.asarray(embedder.embed(data.prepared(embedder.input_size)), np.float64)
    return embedding, data.target, data.extra["tile"]


def stacked(skies):
    """The windows of several skies (`sky_windows`), each sky's tiles numbered after the
    previous sky's."""
    x, y, tile = zip(*skies, strict=True)
    offsets = np.cumsum([0] + [own.max() + 1 for own in tile[:-1]])
    return (np.concatenate(x), np.concatenate(y),
            np.concatenate([own + offset for own, offset in zip(tile, offsets, strict=True)]))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model", nargs="?",
                        default="radiofm/models/data/radiofm-resnet18-dino-v2.onnx")
    parser.add_argument("--windows", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--extra", type=int, default=20, help="extra training skies")
    parser.add_argument("--valid", type=int, default=10, help="validation skies")
    parser.add_argument("--twin", action="store_true", help="also the random-init twin")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    model = load_embedder(args.model)
    stretch = normalization_of(model)  # the twin reads the model's stretch
    embedders = {"model": model}
    if args.twin:
        embedders["random twin"] = with_views(random_twin(model), getattr(model, "views", 1))
    train = ([(seed, False) for seed in range(1000, 1004)]
             + [(seed, True) for seed in range(2000, 2006)]
             + [(EXTRA_SEED + k, bool(k % 2)) for k in range(args.extra)])
    valid = [(EXTRA_SEED + k, bool(k % 2)) for k in range(args.extra, args.extra + args.valid)]
    print(f"{args.model}: {len(train)} training skies, {len(valid)} validation skies")
    for (role, embedder), windows in itertools.product(embedders.items(), args.windows):
        parts = [sky_windows(embedder, stretch, seed, artefacts, windows)
                 for seed, artefacts in train]
        head = _poisson(*stacked(parts))
        predicted, truth = [], []
        for seed, artefacts in valid:
            x, y, tile = sky_windows(embedder, stretch, seed, artefacts, windows)
            rate = np.exp(np.minimum(((x - head["mean"]) / head["scale"]) @ head["coef"]
                                     + head["intercept"], head["max_log_rate"]))
            predicted.append(np.bincount(tile, rate))
            truth.append(np.bincount(tile, y))
        predicted, truth = np.concatenate(predicted), np.concatenate(truth)
        print(f"{role}, {windows} x {windows} windows: alpha {head['alpha']:g}, validation R^2 per "
              f"270 arcsec tile {r2_score(truth, predicted):.3f}, MAE "
              f"{np.abs(predicted - truth).mean():.2f} ({len(truth)} tiles)", flush=True)


if __name__ == "__main__":
    main()

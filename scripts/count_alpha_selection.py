"""How the FIRST count GLM's penalty is chosen, against what FIRST's validation tiles prefer.

`radiofm.evaluate._fit_heads._poisson` picks a Poisson GLM's penalty from `POISSON_ALPHAS`
by the per-tile deviance on a fifth of its training *tiles* held out whole; until December
2026 it held out a random fifth of the *windows* and scored them one by one. The heads'
regime check (`_beam_regimes`) judges each GLM per tile (the sum of its 3 x 3 windows) on
a fifth of the training tiles held out. v6's FIRST regime GLM on the embedding alone
reached R^2 -0.19 on those tiles (v2's 0.14) while the pooled GLM reached 0.34: a sign the
penalty chosen per window was too small for FIRST. This script measures that on the
held-out validation tiles only (fold 0 of `_tile_folds`, as `_beam_regimes` holds out;
FIRST's test split is never read): for each model, each feature set (embedding alone; with
the windows' 5-sigma peaks) and each penalty, the per-tile deviance and R^2 of a FIRST GLM
fitted on the other training tiles, and the penalty each selector picks:

- ``windows``: `_poisson` with each window its own tile (the old selection);
- ``tiles``: `_poisson` as the heads use it (a fifth of the fit tiles, scored per tile).

Usage::

    python scripts/count_alpha_selection.py MODEL [MODEL ...] --finder photutils \\
        --cache DIR [--limit N]

MODEL is an exported ``.onnx`` file, a registered name or a training checkpoint (read with
8 views, as ``radiofm export --views 8`` reads it). The embeddings are cached in DIR under
the keys ``radiofm fit-heads --cache`` and ``radiofm export --cache`` use, so a model's
heads fit and this study share them.
"""

import argparse
from pathlib import Path

import numpy as np


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="+",
                        help=".onnx files, registered names or training checkpoints")
    parser.add_argument("--views", type=int, default=8, choices=[1, 8],
                        help="views a checkpoint's embedding averages over, as exported "
                        "(default 8; an exported model keeps its own)")
    parser.add_argument("--finder", default="photutils", choices=["photutils", "bdsf"])
    parser.add_argument("--cache", help="embedding cache folder (shared with fit-heads)")
    parser.add_argument("--limit", type=int, help="at most this many FIRST fields per split")
    parser.add_argument("--data", help="data root (default: $RADIOFM_DATA)")
    args = parser.parse_args(argv)

    from radiofm.evaluate import load_embedder, load_task_data, with_views
    from radiofm.evaluate._embedders import normalization_of
    from radiofm.evaluate._fit_heads import (
        POISSON_ALPHAS,
        _embed,
        _held_out_tiles,
        _poisson,
        _poisson_at,
        _tile_scores,
    )
    from radiofm.models import peak_features, resolve_model
    from radiofm.simulate import COUNT_SNR

    for model in args.models:
        path = Path(model) if Path(model).exists() else resolve_model(model)[0]
        embedder = with_views(load_embedder(str(path)), args.views)
        stretch = normalization_of(embedder)
        data = load_task_data("counts_first", root=args.data, finder=args.finder,
                              limit=args.limit, normalization=stretch, count_windows=3)
        # the tag fit_output_heads gives these windows, so the caches are shared
        x, _ = _embed(embedder, data, args.cache, f"counts_first_{args.finder}_{args.limit}_w3")
        feature_sets = [("embedding", x)]
        if stretch.method == "snr":  # the windows' 5-sigma peaks, as the regime GLMs read them
            level = float(np.arcsinh(COUNT_SNR / stretch.softening))
            peaks = peak_features(data.prepared(embedder.input_size), level)
            feature_sets.append(("embedding + peaks", np.concatenate([x, peaks], axis=1)))
        y, tile = data.target, data.extra["tile"]
        train = data.split == "train"
        source = np.full(len(y), "counts_first")
        held = train & np.isin(tile, _held_out_tiles(tile, train, source, seed=2))
        fit = train & ~held
        print(f"\n{embedder.name}: {len(np.unique(tile[fit]))} fit tiles, "
              f"{len(np.unique(tile[held]))} validation tiles (FIRST test split unread)")
        for label, features in feature_sets:
            print(f"  {label}: validation tiles per penalty")
            print(f"  {'alpha':>8} {'deviance':>9} {'R^2':>7}")
            for alpha in POISSON_ALPHAS:
                deviance, r2 = _tile_scores(_poisson_at(features[fit], y[fit], alpha),
                                           features[held], y[held], tile[held])
                print(f"  {alpha:>8g} {deviance:>9.4f} {r2:>7.3f}")
            by_windows = _poisson(features[fit], y[fit], np.arange(fit.sum()))["alpha"]
            by_tiles = _poisson(features[fit], y[fit], tile[fit])["alpha"]
            print(f"  chosen: by windows {by_windows:g}, by tiles {by_tiles:g}")


if __name__ == "__main__":
    main()

"""Fitting the count GLM: scikit-learn's Newton-Cholesky solver against L-BFGS, side by side.

`radiofm.evaluate._fit_heads._poisson` chooses the penalty of a Poisson GLM (log link) from
`POISSON_ALPHAS` by the deviance on a held-out fifth of its training tiles, then refits on
all of them. This script runs that whole search once with each solver on the same rows:
the 3 x 3 windows of 270" tiles from simulated MeerKAT-like fields (seeds from 1000, the
count heads' own training skies; README's example is never among them), embedded by a
model, with each window's 5-sigma peak features beside the embedding as the heads' regime
GLMs read them. It prints each solver's wall time, the penalty it chose, and the Poisson
deviance and R^2 per tile on the fields' test split.

Usage::

    python benchmarks/bench_count_head_fit.py [--model NAME_OR_PATH] [--fields 6] [--size 1024]
"""

import argparse
import time
import warnings

import numpy as np


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default", help="registry name or .onnx file")
    parser.add_argument("--fields", type=int, default=6, help="simulated fields (2/3 train)")
    parser.add_argument("--size", type=int, default=1024, help="side of each field in pixels")
    args = parser.parse_args()

    from sklearn.metrics import mean_poisson_deviance, r2_score

    from radiofm.evaluate import load_embedder
    from radiofm.evaluate._embedders import normalization_of
    from radiofm.evaluate._fit_heads import _poisson, _poisson_rate
    from radiofm.evaluate._stamps import _simulated_count_tiles
    from radiofm.models import peak_features, resolve_model
    from radiofm.simulate import COUNT_SNR

    embedder = load_embedder(str(resolve_model(args.model)[0]))
    stretch = normalization_of(embedder)
    start = time.perf_counter()
    data = _simulated_count_tiles(stretch, args.fields, args.size, windows=3)
    stamps = data.prepared(embedder.input_size)
    x = embedder.embed(stamps)
    if stretch.method == "snr":
        level = float(np.arcsinh(COUNT_SNR / stretch.softening))
        x = np.concatenate([x, peak_features(stamps, level)], axis=1)
    train = data.split == "train"
    print(f"{embedder.name}: {train.sum()} training and {(~train).sum()} test windows, "
          f"{x.shape[1]} features (prepared in {time.perf_counter() - start:.0f} s)")

    _, tile = np.unique(data.extra["tile"][~train], return_inverse=True)
    truth = np.bincount(tile, data.target[~train])
    print(f"{'solver':<16} {'fit (s)':>8} {'alpha':>8} {'test deviance':>14} {'test R^2':>9}")
    for solver in ("newton-cholesky", "lbfgs"):
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # L-BFGS may stop at max_iter
            glm = _poisson(x[train], data.target[train], data.extra["tile"][train],
                           solver=solver)
        seconds = time.perf_counter() - start
        predicted = np.maximum(np.bincount(tile, _poisson_rate(glm, x[~train])), 1e-9)
        print(f"{solver:<16} {seconds:8.1f} {glm['alpha']:8.0e} "
              f"{mean_poisson_deviance(truth, predicted):14.4f} "
              f"{r2_score(truth, predicted):9.3f}")


if __name__ == "__main__":
    main()

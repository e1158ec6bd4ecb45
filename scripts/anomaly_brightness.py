"""Does a model's MGCLS anomaly ranking follow brightness? (issue 12, anomaly task)

Embeds the MGCLS cutouts as the evaluation harness reads them (on the S/N scale,
`radiofm.datasets.mgcls_flux`), scores each by its mean distance to its 10 nearest
neighbours (the harness's kNN anomaly score), and prints:

- the Spearman correlation of that score with the cutouts' log peak flux;
- the ROC AUC of the score, and of the log peak flux itself, for the authors' scores >= 4;
- both again after regressing log peak flux out of every embedding dimension (linearly);
- with ``--peak-snr``, the kNN and isolation-forest AUC when every cutout is given that
  same peak S/N (its brightness left out of the input).

Usage::

    python scripts/anomaly_brightness.py MODEL.onnx [--cache DIR] [--peak-snr 90 1000]

Needs the real data (``$RADIOFM_DATA``).
"""

import argparse

import numpy as np
from scipy.stats import spearmanr
from sklearn.metrics import roc_auc_score

from radiofm.datasets import MGCLS_NOISE, load_mgcls, mgcls_flux, mgcls_normalization
from radiofm.evaluate import load_embedder
from radiofm.evaluate._embedders import normalization_of
from radiofm.evaluate._fit_heads import _embed
from radiofm.evaluate._stamps import TaskData, _own_normalizations, load_task_data
from radiofm.evaluate._tasks import anomaly_scores


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="an exported .onnx model")
    parser.add_argument("--cache", help="folder to cache the MGCLS embeddings in")
    parser.add_argument("--peak-snr", type=float, nargs="*", default=[],
                        help="also read every cutout with this one peak S/N")
    args = parser.parse_args()
    cutouts = load_mgcls()
    table = cutouts.table
    log_peak = np.log10(table["peak_flux"].value)
    scores = np.asarray(table["author_score"])
    scored = scores >= 0
    interesting = scores[scored] >= 4
    embedder = load_embedder(args.model)
    data = load_task_data("anomaly", normalization=normalization_of(embedder))
    embedding, _ = _embed(embedder, data, args.cache, "anomaly")
    print(f"log peak flux alone: AUC {roc_auc_score(interesting, log_peak[scored]):.3f}")
    design = np.column_stack([log_peak, np.ones_like(log_peak)])
    residual = embedding - design @ np.linalg.lstsq(design, embedding, rcond=None)[0]
    for name, x in (("embedding", embedding), ("embedding less log peak flux", residual)):
        knn = anomaly_scores(x, "knn")
        print(f"{name}: Spearman with log peak flux {spearmanr(knn, log_peak).correlation:.3f}, "
              f"AUC {roc_auc_score(interesting, knn[scored]):.3f}")
    spec = mgcls_normalization(normalization_of(embedder))
    for snr in args.peak_snr:
        images = mgcls_flux(cutouts.images, np.full(len(cutouts), snr * MGCLS_NOISE))
        same_peak = TaskData("MGCLS", images, _own_normalizations(images, spec), scores,
                             np.full(len(cutouts), "all"))
        x, _ = _embed(embedder, same_peak, args.cache, f"anomaly_peak{snr:g}")
        aucs = {method: roc_auc_score(interesting, anomaly_scores(x, method)[scored])
                for method in ("knn", "iforest")}
        print(f"every peak at S/N {snr:g}: AUC kNN {aucs['knn']:.3f}, isolation forest "
              f"{aucs['iforest']:.3f}")


if __name__ == "__main__":
    main()

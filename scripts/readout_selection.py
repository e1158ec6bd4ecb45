"""Choose the stages a trained backbone is read out at, on training data only.

A run's teacher and its random-init twin embed every stamp of the selection data once,
read out at all four ResNet stages (`radiofm.train.StagePooled`, 8 views); each candidate
readout is then a subset of those features, scored without touching a test split:

- MBFRConfident TRAIN, 5-fold cross-validated logistic error (C by an inner 3-fold search);
- RadioGalaxyDataset 4-class, 5-fold cross-validated accuracy on its train split;
- 5-fold ridge R^2 of the simulated and FIRST compact counts on their train splits.

RadioGalaxyDataset's literature valid split is an evaluation split (the data README), so no
figure reads it; the selection of ``configs/study-results/readout_selection.csv`` was made
before that rule was applied and also scored it (its ``rgd4_valid_accuracy`` and
``mb_to_rgd_valid_error`` columns).

Usage (about 25 minutes on 2 cores)::

    python scripts/readout_selection.py /work/runs/v2-long-64 --out /work/exp/readout

writes ``readout_selection.csv`` (one row per backbone and readout) and prints it.
"""

import argparse
from pathlib import Path

import numpy as np

#: Candidate readouts: ResNet stages (1-4 = layer1-layer4), and whether to add the
#: spatial max of the last stage to its mean.
READOUTS = {"layer4": ((4,), False), "layer3+4": ((3, 4), False),
            "layer2+3+4": ((2, 3, 4), False), "layer4 mean+max": ((4,), True),
            "layer1-4": ((1, 2, 3, 4), False)}
SELECTION_TASKS = ("frii", "morphology", "counts_simulated", "counts_first")


def stage_features(backbone, stamps):
    """(N, C) 8-view features at all four stages, and each stage's column range."""
    import torch

    from radiofm.evaluate import ViewAveraged
    from radiofm.export import TorchEmbedder
    from radiofm.train import StagePooled

    readout = StagePooled(backbone, (1, 2, 3, 4))
    embedder = ViewAveraged(TorchEmbedder(readout, input_size=stamps.shape[-1],
                                          normalization="snr", name="selection", arch="resnet"))
    with torch.no_grad():
        features = embedder.embed(stamps).astype(np.float64)
    widths = [backbone.feature_info[stage]["num_chs"] for stage in readout.stages]
    edges = np.concatenate([[0], np.cumsum(widths)])
    return features, {stage: slice(edges[k], edges[k + 1])
                      for k, stage in enumerate(readout.stages)}


def readout_columns(features, ranges, stages, with_max, max_features):
    """The columns of one readout: the chosen stages' means, and the last stage's max."""
    parts = [features[:, ranges[stage]] for stage in stages]
    if with_max:
        parts.append(max_features)
    return np.hstack(parts)


def last_stage_max(backbone, stamps):
    """(N, C4) 8-view spatial max of the last stage (timm's own max pooling, on a copy)."""
    import copy

    import torch

    from radiofm.evaluate import ViewAveraged
    from radiofm.export import TorchEmbedder

    max_pooled = copy.deepcopy(backbone)
    max_pooled.reset_classifier(0, "max")
    embedder = ViewAveraged(TorchEmbedder(max_pooled, input_size=stamps.shape[-1],
                                          normalization="snr", name="max", arch="resnet"))
    with torch.no_grad():
        return embedder.embed(stamps).astype(np.float64)


def logistic_probe():
    """Standardised logistic regression, C by an inner 3-fold search."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from radiofm.evaluate._tasks import C_GRID

    return GridSearchCV(make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000)),
                        {"logisticregression__C": C_GRID[::2]}, cv=3)


def stamp_figures(features, data, folds):
    """MBFR TRAIN cross-validated error and RadioGalaxyDataset 4-class TRAIN
    cross-validated accuracy (``folds``)."""
    from sklearn.model_selection import cross_val_predict

    def cross_validated_accuracy(task):
        train = data[task].split == "train"
        predicted = cross_val_predict(logistic_probe(), features[task][train],
                                      data[task].target[train], cv=folds)
        return float(np.mean(predicted == data[task].target[train]))

    return {"mbfr_cv_error": 1 - cross_validated_accuracy("frii"),
            "rgd4_train_cv_accuracy": cross_validated_accuracy("morphology")}


def selection_figures(features, data):
    """The four selection figures of one readout (dict of task name -> features)."""
    from sklearn.linear_model import RidgeCV
    from sklearn.metrics import r2_score
    from sklearn.model_selection import KFold, StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    figures = stamp_figures(features, data, StratifiedKFold(5, shuffle=True, random_state=0))
    folds = KFold(5, shuffle=True, random_state=0)
    for task in ("counts_simulated", "counts_first"):
        counts = data[task]
        train = counts.split == "train"
        ridge = make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-2, 4, 13)))
        predicted = cross_val_predict(ridge, features[task][train], counts.target[train],
                                      cv=folds)
        figures[f"{task}_cv_r2"] = float(r2_score(counts.target[train], predicted))
    return figures


def write_selection(rows, path):
    """Write selection rows (dicts) as a CSV table at ``path`` and print them."""
    from astropy.table import Table

    path.parent.mkdir(parents=True, exist_ok=True)
    table = Table(rows=rows)
    table.write(path, overwrite=True)
    table.pprint_all()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", help="training run folder or checkpoint (a ResNet)")
    parser.add_argument("--out", required=True, help="folder for readout_selection.csv")
    parser.add_argument("--finder", default="photutils", help="FIRST count-label finder")
    args = parser.parse_args(argv)

    from radiofm.evaluate._embedders import normalization_of
    from radiofm.evaluate._stamps import load_task_data
    from radiofm.export import checkpoint_embedder
    from radiofm.train import create_backbone

    model = checkpoint_embedder(args.run)
    normalization = normalization_of(model)
    data = {task: load_task_data(task, normalization=normalization, finder=args.finder)
            for task in SELECTION_TASKS}
    backbones = {"dino": model.backbone,
                 "random twin": create_backbone(model.architecture["arch"], seed=0).eval()}
    rows = []
    for role, backbone in backbones.items():
        stages, maxima = {}, {}
        for task, task_data in data.items():
            stamps = task_data.prepared(model.input_size)
            stages[task] = stage_features(backbone, stamps)
            maxima[task] = last_stage_max(backbone, stamps)
        for name, (chosen, with_max) in READOUTS.items():
            features = {task: readout_columns(*stages[task], chosen, with_max, maxima[task])
                        for task in data}
            rows.append({"backbone": role, "readout": name,
                         "features": features["frii"].shape[1],
                         **selection_figures(features, data)})
            print(rows[-1], flush=True)
    write_selection(rows, Path(args.out) / "readout_selection.csv")


if __name__ == "__main__":
    main()

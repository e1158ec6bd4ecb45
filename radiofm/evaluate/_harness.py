"""`evaluate`: every task for a model and its baselines, into one report; `fit_heads`."""

import json
import logging
import time
from pathlib import Path

import astropy.units as u
import numpy as np
from astropy.table import QTable

from .._atomic import atomic_path
from .._provenance import provenance_meta
from ..datasets import FIRST_PIXEL
from ._classical import IslandCounter, ShapeMeasurer
from ._embedders import EVALUATION_VIEWS, load_embedder, normalization_of, random_twin, with_views
from ._fit_heads import COUNT_WINDOWS
from ._stamps import load_task_data
from ._tasks import (
    Features,
    anomaly_task,
    classification_task,
    counts_task,
    cross_sample_task,
    redshift_task,
    similarity_task,
)

__all__ = ["TASKS", "evaluate", "fit_heads", "format_report"]

log = logging.getLogger("radiofm")

TASKS = ("counts", "frii", "crosssample", "morphology", "similarity", "anomaly", "redshift")
BASELINES = ("pixels", "random", "classical", "supervised")
SCALE_FLOOR = 0.05  # of the median feature scale, for the heads an exported model carries


def _baseline_embedders(model, spec, baselines, seed):
    embedders = {"model": model}
    if "pixels" in baselines:
        embedders["pixels"] = load_embedder("pixels")
    if "random" in baselines and not str(spec).startswith("random:"):
        try:
            twin = random_twin(model, seed=seed)
        except ImportError:
            twin = None
            log.warning("no random-backbone baseline: torch and timm are not installed")
        if twin is not None:
            embedders["random"] = twin
    if "classical" in baselines:
        embedders["islands"] = IslandCounter()
        embedders["shapes"] = ShapeMeasurer()
    return embedders


def _view_counts(embedder, views):
    """(main view count, other view counts) of an evaluation."""
    own = getattr(embedder, "views", 1)
    if views is None:
        return own, ()
    counts = [int(v) for v in np.atleast_1d(views)]
    unknown = [v for v in counts if v not in EVALUATION_VIEWS]
    if unknown or not counts:
        raise ValueError(f"views must be among {tuple(EVALUATION_VIEWS)}, got {views!r}")
    main = own if own in counts else max(counts)
    return main, tuple(v for v in dict.fromkeys(counts) if v != main)


def evaluate(model, *, root=None, output=None, tasks=TASKS, baselines=BASELINES, limit=None,
             finder="auto", seed=0, views=None, reference=None, count_windows=COUNT_WINDOWS,
             stamp_arcsec=None):
    """Run the downstream tasks on a model's frozen embeddings, beside the baselines.

    Parameters
    ----------
    model : str, path-like or embedder
        What `load_embedder` accepts (``"random:resnet18"``, a run folder or checkpoint,
        an ``.onnx`` file) or an embedder object.
    root : str or path-like, optional
        The data root (`radiofm.datasets.data_root`).
    output : str or path-like, optional
        Folder for ``report.ecsv``, ``report.json``, ``report.txt`` and one PNG per task.
    tasks : sequence of str
        Any of ``"counts"``, ``"frii"``, ``"crosssample"``, ``"morphology"``,
        ``"similarity"``, ``"anomaly"``, ``"redshift"``.
    baselines : sequence of str
        ``"pixels"`` (resized pixels + PCA), ``"random"`` (the model's architecture,
        randomly initialised), ``"classical"`` (non-learned: the island counter for counts,
        shape measurements for the FRI/FRII and morphology tasks), ``"supervised"`` (a
        small CNN trained on each classification task's train split; needs torch).
    limit : int, optional
        At most this many items per split of each data set, for quick runs.
    finder : {"auto", "bdsf", "photutils"}
        Source finder for the FIRST compact counts (cached).
    count_windows : int
        The counts task also fits each feature set on the ``count_windows`` x
        ``count_windows`` windows of the FIRST and simulated tiles (each window's own count) and
        scores it per tile, on the sum of its windows, as a windowed count head
        (`fit_output_heads`) counts; 1 leaves these rows out.
    stamp_arcsec : float, optional
        The ``morphology`` task reads RadioGalaxyDataset's images cut to their central
        ``stamp_arcsec`` (data set ``"RadioGalaxyDataset, central ... arcsec"``), as a model
        whose morphology head was fitted so frames its sources (its ``stamp_arcsec``;
        `fit_output_heads`). Default: the whole 540 arcsec images, as published.
    seed : int
        Seed of the random baseline and the supervised CNN.
    views : None, int or sequence of int
        View counts among 1, 2 and 8 (`EVALUATION_VIEWS`). One count: every learned feature
        set (model and baselines) is averaged over that many rotations and reflections of
        each stamp (`ViewAveraged`). Several counts (the embedding-cost study): the
        baselines and the ``model`` rows use the model's own count (else the largest), and
        the model is reported again at each other count (rows ``model_1view``, ...); an
        exported 8-view model gives them all from one run of its graph. Default: what the
        model does (an exported model records it), else 1. The supervised CNN is trained
        as it is.
    reference : str, path-like or embedder, optional
        Another model trained with the same stretch (e.g. the current default, when
        deciding whether to replace it), evaluated in the same run as feature set
        ``reference``, with the model's margins over it on the same test items
        (``model-reference``, paired intervals).

    Returns
    -------
    report : `~astropy.table.QTable`
        One row per task, data set, feature set, probe and metric (``value`` with a 95 %
        interval in ``low``/``high`` where one is computed); with the random baseline, rows
        of feature set ``model-random`` give the model's margin over its random twin on the
        same test items (error or regression metric, model minus twin, paired bootstrap
        interval), and with a ``reference``, rows ``model-reference`` the same against it.
        Run details in ``meta``.

    Raises
    ------
    ValueError
        Unknown tasks or baselines, or a reference trained with another stretch.
    """
    unknown = set(tasks) - set(TASKS)
    if unknown:
        raise ValueError(f"unknown tasks {sorted(unknown)}; choose from {TASKS}")
    unknown = set(baselines) - set(BASELINES)
    if unknown:
        raise ValueError(f"unknown baselines {sorted(unknown)}; choose from {BASELINES}")
    began = time.perf_counter()
    embedder = model if hasattr(model, "embed") else load_embedder(model, seed=seed)
    views, other_views = _view_counts(embedder, views)
    members = _baseline_embedders(embedder, model, baselines, seed)
    if reference is not None:
        other = reference if hasattr(reference, "embed") else load_embedder(reference,
                                                                             seed=seed)
        theirs, ours = normalization_of(other), normalization_of(embedder)
        if theirs != ours:
            raise ValueError(
                f"the reference {other.name} was trained with another stretch "
                f"({theirs.to_dict()}) than {embedder.name} ({ours.to_dict()}); the harness "
                "shows every feature set the model's, so evaluate the reference on its own")
        members["reference"] = other
    features = {role: member if hasattr(member, "measure") else with_views(member, views)
                for role, member in members.items()}
    for count in other_views:  # the embedding-cost study: the model at other view counts
        features[f"model_{count}view"] = with_views(embedder, count)
    if other_views and getattr(embedder, "views", 1) != 1:
        features["model"] = with_views(embedder, views) if views != embedder.views else \
            embedder.with_views(views)  # every view count from one run of the graph
    features = Features(features)
    supervised = None
    if "supervised" in baselines:
        try:
            from ..train import train_small_cnn

            def supervised(x, y, n_classes):
                return train_small_cnn(x, y, n_classes, seed=seed)
        except ImportError:
            log.warning("no supervised baseline: torch is not installed")
    names = {role: features.name(role) for role in features.roles}
    names["supervised"] = "supervised CNN"
    rows, plots = [], {}
    # every feature set sees the stretch the model was trained with, with all its options
    options = {"root": root, "limit": limit, "normalization": normalization_of(embedder)}
    for task in tasks:
        started = time.perf_counter()
        if task == "counts":
            for which in ("counts_first", "counts_simulated"):
                data = load_task_data(which, finder=finder, **options)
                found, plots[which] = counts_task(data, features)
                rows += found
                if which == "counts_first":  # the older, weaker label: S_Code 'S' only
                    found, _ = counts_task(data.relabel("FIRST tiles (S_Code S)",
                                                        data.extra["n_single"]), features)
                    rows += found
            for which in ("counts_first", "counts_simulated") if count_windows > 1 else ():
                data = load_task_data(which, finder=finder, count_windows=count_windows,
                                      **options)
                found, plots[f"{which}_windows"] = counts_task(data, features)
                rows += found
        elif task == "crosssample":
            found, plots[task] = cross_sample_task(load_task_data("crosssample", **options),
                                                   features)
            rows += found
        elif task == "frii":
            data = load_task_data("frii", **options)
            found, plots[task] = classification_task("frii", data, features,
                                                     supervised=supervised)
            rows += found
        elif task == "morphology":
            data = load_task_data("morphology", stamp_arcsec=stamp_arcsec, **options)
            found, plots[task] = classification_task("morphology", data, features, knn=False,
                                                     supervised=supervised)
            rows += found
        elif task == "similarity":
            found, plots[task] = similarity_task(load_task_data("frii", **options), features)
            rows += found
        elif task == "anomaly":
            found, plots[task] = anomaly_task(load_task_data("anomaly", **options), features)
            rows += found
        else:
            found, plots[task] = redshift_task(load_task_data("redshift", **options), features)
            rows += found
        log.info("task %s done in %.0f s", task, time.perf_counter() - started)
    report = QTable(rows=rows, names=list(rows[0])) if rows else QTable()
    report.meta.update(provenance_meta(MODEL=names["model"], LIMIT=-1 if limit is None else limit,
                                       NORM=json.dumps(options["normalization"].to_dict(),
                                                       sort_keys=True),
                                       FINDER=finder, VIEWS=views,
                                       SECONDS=round(time.perf_counter() - began, 1)))
    if output is not None:
        _write(report, plots, names, Path(output))
    return report


def format_report(report):
    """The report as a readable text table: one line per task, data set, probe and metric,
    one column per feature set."""
    keys, table = [], {}
    for row in report:
        key = (row["task"], row["dataset"], row["probe"], row["metric"])
        if key not in table:
            keys.append(key)
            table[key] = {}
        value = f"{row['value']:.3f}"
        if np.isfinite(row["low"]):
            value += f" [{row['low']:.3f}, {row['high']:.3f}]"
        table[key][row["features"]] = value
    roles = list(dict.fromkeys(report["features"]))
    header = ["task", "dataset", "probe", "metric", *roles]
    lines = [list(key) + [table[key].get(role, "") for role in roles] for key in keys]
    widths = [max(len(str(x)) for x in column) for column in zip(header, *lines, strict=True)]
    text = [" | ".join(str(x).ljust(w) for x, w in zip(line, widths, strict=True))
            for line in [header, ["-" * w for w in widths], *lines]]
    names = dict(zip(report["features"], report["name"], strict=True))
    legend = ", ".join(f"{role} = {names[role]}" for role in roles)
    return "\n".join(text + ["", f"features: {legend}"])


def _write(report, plots, names, output):
    from ._figures import task_figure

    with atomic_path(output / "report.ecsv", overwrite=True) as partial:
        report.write(partial)
    records = [{name: (row[name].item() if hasattr(row[name], "item") else row[name])
                for name in report.colnames} for row in report]
    with atomic_path(output / "report.json", overwrite=True) as partial, \
            open(partial, "w") as stream:
        json.dump({"meta": dict(report.meta), "results": records}, stream, indent=1)
    with atomic_path(output / "report.txt", overwrite=True) as partial:
        partial.write_text(format_report(report) + "\n")
    for key, plot in plots.items():
        task = "counts" if key.startswith("counts") else key
        task = "frii" if task == "crosssample" else task
        with atomic_path(output / f"{key}.png", overwrite=True) as partial:
            task_figure(task, plot, names, partial)
    log.info("evaluation report in %s", output)


def fit_heads(embedder, root=None, *, limit=None, finder="auto"):
    """Fit the count and morphology heads of an exported model on frozen embeddings.

    The count head is a ridge regression on FIRST and simulated training tiles; the
    morphology head a logistic regression on the RadioGalaxyDataset train split (C chosen by
    5-fold cross-validation on train). Both act on the raw embedding: the standardisation is
    folded into the weights, with every feature scale at least 5 % of the median one so that
    no weight explodes.

    Parameters
    ----------
    embedder : str, path-like or embedder
        As for `evaluate`.
    root : str or path-like, optional
        The data root.
    limit : int, optional
        At most this many items per split, for quick runs.
    finder : {"auto", "bdsf", "photutils"}
        Source finder for the FIRST counts.

    Returns
    -------
    heads : dict
        ``{"count": {"coef", "intercept", "tile_arcsec", "pixel_scales_arcsec", "r2_test"},
        "morphology": {"coef", "intercept", "classes", "stamp_arcsec", "accuracy_test"}}``;
        ``pixel_scales_arcsec`` are the native pixel scales of the count tiles (FIRST and
        simulated MeerKAT-like).
    """
    from sklearn.linear_model import LogisticRegression, RidgeCV
    from sklearn.metrics import r2_score
    from sklearn.model_selection import GridSearchCV

    from ._stamps import FIRST_TILE, SIMULATED_PIXEL
    from ._tasks import ALPHAS, C_GRID

    embedder = embedder if hasattr(embedder, "embed") else load_embedder(embedder)
    size = embedder.input_size

    def embed(data):
        return np.asarray(embedder.embed(data.prepared(size)), dtype=np.float64)

    stretch = normalization_of(embedder)
    parts = [load_task_data(which, root=root, limit=limit, finder=finder, normalization=stretch)
             for which in ("counts_first", "counts_simulated")]
    x = np.concatenate([embed(data) for data in parts])
    y = np.concatenate([data.target for data in parts])
    split = np.concatenate([data.split for data in parts])
    scaler = _bounded_scaler(x[split == "train"])
    ridge = RidgeCV(alphas=ALPHAS).fit(scaler.transform(x[split == "train"]), y[split == "train"])
    count = _fold(scaler, ridge.coef_[None], np.atleast_1d(ridge.intercept_))
    r2 = r2_score(y[split == "test"], ridge.predict(scaler.transform(x[split == "test"])))

    data = load_task_data("morphology", root=root, limit=limit, normalization=stretch)
    x = embed(data)
    train, test = data.split == "train", data.split == "test"
    scaler = _bounded_scaler(x[train])
    x = scaler.transform(x)
    folds = int(min(5, np.bincount(data.target[train]).min()))
    logistic = GridSearchCV(LogisticRegression(max_iter=3000), {"C": C_GRID}, cv=folds).fit(
        x[train], data.target[train]).best_estimator_
    morph = _fold(scaler, logistic.coef_, logistic.intercept_)
    if morph[0].shape[0] == 1:  # two classes: sklearn keeps one row of weights
        morph = (np.concatenate([-morph[0], morph[0]]) / 2, np.array([-1, 1]) * morph[1] / 2)
    return {
        "count": {"coef": count[0][0].astype(np.float32), "intercept": float(count[1][0]),
                  "tile_arcsec": float(FIRST_TILE * FIRST_PIXEL.to_value(u.arcsec)),
                  "r2_test": float(r2),
                  "pixel_scales_arcsec": [FIRST_PIXEL.to_value(u.arcsec),
                                          SIMULATED_PIXEL.to_value(u.arcsec)]},
        "morphology": {"coef": morph[0].astype(np.float32),
                       "intercept": morph[1].astype(np.float32),
                       "classes": list(data.class_names),
                       "stamp_arcsec": float(300 * FIRST_PIXEL.to_value(u.arcsec)),
                       "accuracy_test": float(logistic.score(x[test], data.target[test]))},
    }


def _bounded_scaler(x):
    """Standardisation whose scales are at least `SCALE_FLOOR` times their median.

    Features that hardly vary would otherwise get huge weights once the scaler is folded
    into a head, and float32 rounding in the exported graph would swing the outputs.
    """
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(x)
    scaler.scale_ = np.maximum(scaler.scale_, SCALE_FLOOR * np.median(scaler.scale_))
    return scaler


def _fold(scaler, coef, intercept):
    """Weights of a linear model on standardised inputs, re-expressed on raw inputs."""
    weights = coef / scaler.scale_
    return weights, intercept - weights @ scaler.mean_

"""The six downstream tasks: scikit-learn probes on frozen features, fitted on train splits.

Each task takes a `~radiofm.evaluate.TaskData` and a `Features` store, and returns result
rows (one per feature set, probe and metric) and the arrays its figure needs.
"""

import logging

import numpy as np
from sklearn.decomposition import PCA
from sklearn.ensemble import IsolationForest
from sklearn.linear_model import LogisticRegression, RidgeCV
from sklearn.metrics import (
    confusion_matrix,
    f1_score,
    roc_auc_score,
)
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.neighbors import KNeighborsClassifier, NearestNeighbors
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

__all__ = ["Features", "anomaly_task", "classification_task", "counts_task",
           "cross_sample_task", "redshift_task", "similarity_task"]

log = logging.getLogger("radiofm")

ALPHAS = np.logspace(-2, 5, 15)
C_GRID = np.logspace(-3, 2, 11)
BOOTSTRAP = 1000
# Report rows of the model's margin over another feature set on the same test items:
# feature set name -> (the other role, what it is called in the report)
MARGINS = {"model-random": ("random", "its random twin"),
           "model-reference": ("reference", "the reference model")}


class Features:
    """Frozen features of every data set for each embedder, computed once.

    Parameters
    ----------
    embedders : dict
        Role (``"model"``, ``"random"``, ``"pixels"``) -> embedder (see `load_embedder`).
    """

    def __init__(self, embedders):
        self.embedders = dict(embedders)
        self._cache = {}

    @property
    def roles(self):
        return list(self.embedders)

    def roles_for(self, task):
        """The roles that take part in a task (classical baselines suit only some)."""
        return [role for role in self.embedders
                if getattr(self.embedders[role], "applies", lambda task: True)(task)]

    def name(self, role):
        return self.embedders[role].name

    def get(self, role, data):
        """(N, D) features of a `TaskData` for one role.

        Learned embedders see the prepared stamps at their input size; classical ones
        (with a ``measure`` method) measure the raw stamps of the `TaskData`.
        """
        key = (role, data.key)
        if key not in self._cache:
            embedder = self.embedders[role]
            if hasattr(embedder, "measure"):
                found = embedder.measure(data)
            else:
                found = embedder.embed(data.prepared(embedder.input_size))
            self._cache[key] = np.asarray(found, dtype=np.float32)
        return self._cache[key]

    def scaler(self, role, n_fit):
        """Standardisation, plus PCA for embedders that ask for it (raw pixels), for a
        probe fitted on ``n_fit`` items."""
        components = getattr(self.embedders[role], "pca", None)
        steps = [StandardScaler()]
        if components:
            steps.append(PCA(min(components, n_fit - 1), random_state=0))
        return steps


def _row(task, data, features, role, probe, metric, value, low=np.nan, high=np.nan, **counts):
    if role in MARGINS:
        name = f"the model minus {MARGINS[role][1]}, paired over the test items"
    else:
        name = features.name(role) if role in features.embedders else "supervised CNN"
    return {"task": task, "dataset": data.name, "features": role, "name": name,
            "probe": probe, "metric": metric, "value": float(value), "low": float(low),
            "high": float(high), "n_train": counts.get("n_train", 0),
            "n_test": counts.get("n_test", 0)}


def _bootstrap(statistic, *columns, seed=0):
    """95 % interval of ``statistic(*columns)`` over bootstrap resamples of the test items.

    Every column is resampled with the same draws, so a statistic of two feature sets'
    results on the same items (their difference) is paired: what the items have in common
    cancels. Resamples where the statistic is undefined (NaN) are left out.
    """
    columns = [np.asarray(column) for column in columns]
    n = len(columns[0])
    draws = np.random.default_rng(seed).integers(0, n, size=(BOOTSTRAP, n))
    values = np.array([statistic(*(column[draw] for column in columns)) for draw in draws])
    values = values[np.isfinite(values)]
    return np.percentile(values, [2.5, 97.5]) if len(values) else (np.nan, np.nan)


def _error(correct):
    return 1.0 - correct.mean()


def _r2(true, predicted):
    spread = true.var()
    return 1.0 - ((true - predicted) ** 2).mean() / spread if spread > 0 else np.nan


def _mae(true, predicted):
    return np.abs(true - predicted).mean()


def _mse(true, predicted):
    return ((true - predicted) ** 2).mean()


_STATISTICS = {"r2": _r2, "mae": _mae, "mse": _mse}


def _bootstrap_error(correct, seed=0):
    """95 % interval of the error rate over bootstrap resamples of the test set."""
    return _bootstrap(_error, correct, seed=seed)


def _bootstrap_metric(metric, true, predicted, seed=0):
    """95 % interval of a regression metric (``"mse"``, ``"mae"``, ``"r2"``) over bootstrap
    resamples of the test set."""
    return _bootstrap(_STATISTICS[metric], np.asarray(true, float),
                      np.asarray(predicted, float), seed=seed)


def _margin_rows(task, data, features, probe, metric, statistic, results, **sizes):
    """The model's margins (`MARGINS`): ``statistic`` of the model's results minus another
    feature set's on the same test items, with a paired bootstrap interval, for each other
    feature set in ``results`` (role -> tuple of columns: ``correct``, or ``true,
    predicted``)."""
    def margin(*columns):
        half = len(columns) // 2
        return statistic(*columns[:half]) - statistic(*columns[half:])

    rows = []
    for role, (other, _) in MARGINS.items():
        if "model" in results and other in results:
            paired = (*results["model"], *results[other])
            low, high = _bootstrap(margin, *paired)
            rows.append(_row(task, data, features, role, probe, metric, margin(*paired), low,
                             high, **sizes))
    return rows


def _regression_task(task, data, features, metrics, *, per_tile=False):
    """Ridge regression (alpha by cross-validation) on train, ``metrics`` (names in
    ``_STATISTICS``) on test, with 95 % bootstrap intervals over the test items; with
    ``per_tile`` the items are windows of tiles (``data.extra["tile"]``), and the test
    figures are per tile, on the sums of each tile's window predictions."""
    train, test = data.split == "train", data.split == "test"
    rows, plot = [], {}
    if per_tile:
        _, tile_of = np.unique(data.extra["tile"][test], return_inverse=True)

        def total(values):
            return np.bincount(tile_of, values)
    else:
        def total(values):
            return values
    true = total(data.target[test])
    sizes = {"n_train": int(train.sum()), "n_test": len(true)}
    for role in features.roles_for(task):
        x = features.get(role, data)
        probe = make_pipeline(*features.scaler(role, train.sum()), RidgeCV(alphas=ALPHAS))
        predicted = total(probe.fit(x[train], data.target[train]).predict(x[test]))
        for name in metrics:
            low, high = _bootstrap_metric(name, true, predicted)
            rows.append(_row(task, data, features, role, "ridge", name,
                             _STATISTICS[name](true, predicted), low, high, **sizes))
        plot[role] = (true, predicted)
    for name in metrics:
        rows += _margin_rows(task, data, features, "ridge", name, _STATISTICS[name], plot,
                             **sizes)
    return rows, plot


def _folds(n):
    """Cross-validation folds of the probes' choices: stratified, shuffled with a fixed seed
    (the data sets list their items in class order or by source)."""
    return StratifiedKFold(n, shuffle=True, random_state=0)


def _logistic_probe(features, role, fitted, folds):
    """Logistic regression on standardised features, C by cross-validation on train, every
    class weighted equally: the evaluation splits hold their classes in (near) equal
    numbers, while the training splits do not (RadioGalaxyDataset train is 47 % FRII)."""
    return GridSearchCV(
        make_pipeline(*features.scaler(role, fitted),
                      LogisticRegression(class_weight="balanced", max_iter=3000)),
        {"logisticregression__C": C_GRID}, cv=_folds(folds))


def counts_task(data, features):
    """Compact-source counts per tile: ridge regression; MSE and R^2 on the test tiles.

    Data of tile windows (``load_task_data(..., count_windows=k)``) are fitted on each
    window's count and scored per tile, on the sum of its windows' predictions.
    """
    return _regression_task("counts", data, features, ("mse", "r2"), per_tile=data.windowed)


def redshift_task(data, features):
    """Redshift of FIRST sources: ridge regression; MAE and R^2 on the test fields."""
    return _regression_task("redshift", data, features,
                            ("mae", "r2"))


def classification_task(task, data, features, *, knn=True, supervised=None):
    """Classification probes: logistic regression (C by cross-validation on train) and kNN;
    test error with a bootstrap interval, accuracy, macro F1 and the confusion matrix.

    Parameters
    ----------
    task : str
        Task name in the report (``"frii"``, ``"morphology"``).
    data : `TaskData`
        Stamps, class indices and splits.
    features : `Features`
        The feature sets to compare.
    knn : bool
        Also fit a kNN probe (k by cross-validation).
    supervised : callable, optional
        ``supervised(train_x, train_y, n_classes)`` -> ``predict(stamps)`` (probabilities),
        the supervised baseline trained on the same split; it sees stamps of the model's
        size.
    """
    train, test = data.split == "train", data.split == "test"
    y = data.target
    n_classes = len(data.class_names)
    rows, plot = [], {"class_names": data.class_names, "confusion": {}, "map": {}}
    sizes = {"n_train": int(train.sum()), "n_test": int(test.sum())}
    folds = int(min(5, np.bincount(y[train]).min()))
    if folds < 2:
        raise ValueError(f"{data.name}: every class needs at least 2 training items")
    outcomes = {}

    def report(role, probe_name, predicted):
        correct = predicted == y[test]
        outcomes[(role, probe_name)] = correct
        low, high = _bootstrap_error(correct)
        rows.append(_row(task, data, features, role, probe_name, "error", 1 - correct.mean(),
                         low, high, **sizes))
        rows.append(_row(task, data, features, role, probe_name, "accuracy", correct.mean(),
                         1 - high, 1 - low, **sizes))
        rows.append(_row(task, data, features, role, probe_name, "macro_f1",
                         f1_score(y[test], predicted, average="macro"), **sizes))
        plot["confusion"][(role, probe_name)] = confusion_matrix(y[test], predicted,
                                                                 labels=range(n_classes))

    fitted = train.sum() * (folds - 1) // folds  # items each cross-validation fit sees
    for role in features.roles_for(task):
        x = features.get(role, data)
        probe = _logistic_probe(features, role, fitted, folds).fit(x[train], y[train])
        report(role, "logistic", probe.predict(x[test]))
        if knn:
            search = GridSearchCV(
                make_pipeline(*features.scaler(role, fitted), KNeighborsClassifier()),
                {"kneighborsclassifier__n_neighbors": [k for k in (1, 3, 5, 10, 20)
                                                       if k < fitted]}, cv=_folds(folds))
            report(role, "knn", search.fit(x[train], y[train]).predict(x[test]))
        projected = make_pipeline(StandardScaler(), PCA(2, random_state=0)).fit_transform(x)
        plot["map"][role] = (projected[test], y[test])
    if supervised is not None:
        size = features.embedders["model"].input_size
        stamps = data.prepared(size)
        predict = supervised(stamps[train], y[train], n_classes)
        report("supervised", "cnn", predict(stamps[test]).argmax(1))
    for probe_name in ("logistic", "knn"):
        results = {role: (correct,) for (role, probe), correct in outcomes.items()
                   if probe == probe_name}
        rows += _margin_rows(task, data, features, probe_name, "error", _error, results,
                             **sizes)
    return rows, plot


def similarity_task(data, features, ks=(1, 5, 10)):
    """Similarity search: for each test query, the share of its k nearest training images
    (cosine on standardised features) that have the query's class."""
    train, test = data.split == "train", data.split == "test"
    ks = tuple(k for k in ks if k <= train.sum())
    rows, plot = [], {}
    for role in features.roles_for("similarity"):
        x = features.get(role, data)
        scaler = make_pipeline(*features.scaler(role, train.sum())).fit(x[train])
        gallery, queries = scaler.transform(x[train]), scaler.transform(x[test])
        search = NearestNeighbors(n_neighbors=max(ks), metric="cosine").fit(gallery)
        _, neighbours = search.kneighbors(queries)
        same = data.target[train][neighbours] == data.target[test][:, None]
        plot[role] = [same[:, :k].mean() for k in ks]
        for k, precision in zip(ks, plot[role], strict=True):
            rows.append(_row("similarity", data, features, role, "cosine", f"precision@{k}",
                             precision, n_train=int(train.sum()), n_test=int(test.sum())))
    plot["ks"] = ks
    return rows, plot


def anomaly_scores(x, method="knn", k=10):
    """Embedding-space anomaly score: mean Euclidean distance to the k nearest other items
    (``"knn"``) or the isolation-forest score (``"iforest"``); larger is more unusual."""
    if method == "knn":
        search = NearestNeighbors(n_neighbors=k + 1).fit(x)
        distance, _ = search.kneighbors(x)
        return distance[:, 1:].mean(axis=1)
    if method == "iforest":
        return -IsolationForest(n_estimators=300, random_state=0).fit(x).score_samples(x)
    raise ValueError(f"unknown anomaly method {method!r}; use 'knn' or 'iforest'")


def anomaly_task(data, features, threshold=4):
    """Rank MGCLS cutouts by anomaly score; compare with the authors' 1-5 scores.

    Reports, among the author-scored cutouts: the ROC AUC of the anomaly score for
    "score >= threshold", the share of those in the top N of the ranking (N = their number),
    and their median percentile among all cutouts (100 = most anomalous).
    """
    scored = data.target >= 0
    interesting = data.target[scored] >= threshold
    rows, plot = [], {"author": data.target[scored]}
    for role in features.roles_for("anomaly"):
        x = features.get(role, data)
        x = make_pipeline(*features.scaler(role, len(x))).fit_transform(x)
        for method in ("knn", "iforest"):
            score = anomaly_scores(x, method)
            percentile = 100.0 * np.argsort(np.argsort(score)) / max(1, len(score) - 1)
            among = score[scored]
            top = np.argsort(-among)[:interesting.sum()]
            sizes = {"n_test": int(scored.sum())}
            rows.append(_row("anomaly", data, features, role, method, f"auc_score>={threshold}",
                             roc_auc_score(interesting, among), **sizes))
            rows.append(_row("anomaly", data, features, role, method,
                             f"top{interesting.sum()}_precision", interesting[top].mean(), **sizes))
            rows.append(_row("anomaly", data, features, role, method, "median_percentile",
                             np.median(percentile[scored][interesting]), **sizes))
            plot[(role, method)] = percentile[scored]
    return rows, plot


#: (report name, training sample, test sample, extra mask of test items or None)
CROSS_DIRECTIONS = (
    ("MiraBest -> RGD", "MiraBest", "RGD", None),
    ("RGD -> MiraBest", "RGD", "MiraBest", "reverse_test"),
    ("RGD -> MiraBest train+test", "RGD", "MiraBest", "reverse_any"),
)


def cross_sample_task(data, features):
    """FRI/FRII across samples: a probe fitted on one sample's train split, tested on the
    other's test split, both ways (`~radiofm.evaluate.cross_sample_data`), and the reverse
    probe once more on every MiraBest source clear of RadioGalaxyDataset's training ones.

    The logistic probe's C is chosen by 5-fold cross-validation on the training sample
    only; nothing of the test sample is seen before the test. Reports test error (95 %
    bootstrap interval), accuracy, macro F1 and ROC AUC per direction.
    """
    sample, y = data.extra["sample"], data.target
    rows, plot = [], {"class_names": data.class_names, "confusion": {}, "map": {}}
    outcomes, sizes_of = {}, {}
    for role in features.roles_for("crosssample"):
        x = features.get(role, data)
        for label, source, target, clear in CROSS_DIRECTIONS:
            train = (sample == source) & (data.split == "train")
            if clear is None:
                test = (sample == target) & (data.split == "test")
            else:  # MiraBest sources clear of RGD's training sources
                test = (sample == target) & data.extra[clear]
            folds = int(min(5, np.bincount(y[train], minlength=2).min()))
            if folds < 2:
                raise ValueError(f"cross-sample {label}: every class needs at least 2 "
                                 f"training items ({train.sum()} in all); raise the limit")
            if not test.any():
                log.warning("cross-sample %s: no test item left (raise the limit)", label)
                continue
            fitted = train.sum() * (folds - 1) // folds
            probe = _logistic_probe(features, role, fitted, folds).fit(x[train], y[train])
            predicted = probe.predict(x[test])
            correct = predicted == y[test]
            outcomes[(role, label)] = correct
            low, high = _bootstrap_error(correct)
            sizes = sizes_of[label] = {"n_train": int(train.sum()), "n_test": int(test.sum())}
            shown = _Shown(label)
            rows.append(_row("crosssample", shown, features, role, "logistic", "error",
                             1 - correct.mean(), low, high, **sizes))
            rows.append(_row("crosssample", shown, features, role, "logistic", "accuracy",
                             correct.mean(), 1 - high, 1 - low, **sizes))
            rows.append(_row("crosssample", shown, features, role, "logistic", "macro_f1",
                             f1_score(y[test], predicted, average="macro"), **sizes))
            if len(np.unique(y[test])) == 2:
                rows.append(_row("crosssample", shown, features, role, "logistic", "roc_auc",
                                 roc_auc_score(y[test], probe.predict_proba(x[test])[:, 1]),
                                 **sizes))
            plot["confusion"][(role, label)] = confusion_matrix(y[test], predicted,
                                                                labels=range(2))
        every = (data.split == "train") | (data.split == "test")
        projected = make_pipeline(StandardScaler(), PCA(2, random_state=0)).fit_transform(
            x[every])
        plot["map"][role] = (projected, (sample[every] == "RGD").astype(int))
    plot["map_classes"] = ("MiraBest", "RGD")
    for label in sizes_of:
        results = {role: (correct,) for (role, shown), correct in outcomes.items()
                   if shown == label}
        rows += _margin_rows("crosssample", _Shown(label), features, "logistic", "error",
                             _error, results, **sizes_of[label])
    return rows, plot


class _Shown:
    """A data set name for report rows."""

    def __init__(self, name):
        self.name = name

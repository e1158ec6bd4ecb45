"""One figure per task: predicted vs true values, confusion matrices, embedding maps."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

__all__ = ["task_figure"]


def _panels(count, size=3.2):
    figure, axes = plt.subplots(1, count, figsize=(size * count, size), squeeze=False)
    return figure, axes[0]


def _scatter(plot, names, label):
    roles = [role for role in plot if role in names]
    figure, axes = _panels(len(roles))
    for axis, role in zip(axes, roles, strict=True):
        true, predicted = plot[role]
        axis.scatter(true, predicted, s=6, alpha=0.5)
        low, high = float(np.min(true)), float(np.max(true))
        axis.plot([low, high], [low, high], color="k", lw=0.8)
        axis.set(title=names[role], xlabel=f"true {label}", ylabel=f"predicted {label}")
    return figure


def _classification(plot, names):
    confusion = plot["confusion"]
    classes = plot["class_names"]
    figure, axes = _panels(len(confusion) + 1)
    for axis, ((role, probe), matrix) in zip(axes, confusion.items(), strict=False):
        axis.imshow(matrix, cmap="Blues")
        for (i, j), value in np.ndenumerate(matrix):
            axis.text(j, i, str(value), ha="center", va="center", fontsize=7)
        axis.set_xticks(range(len(classes)), classes, rotation=45, fontsize=7)
        axis.set_yticks(range(len(classes)), classes, fontsize=7)
        axis.set(title=f"{names.get(role, role)} {probe}", xlabel="predicted", ylabel="true")
    role = next(iter(plot["map"]))
    projected, labels = plot["map"][role]
    axis = axes[-1]
    for k, name in enumerate(plot.get("map_classes", classes)):
        chosen = labels == k
        axis.scatter(projected[chosen, 0], projected[chosen, 1], s=6, label=name)
    axis.legend(fontsize=7)
    axis.set(title=f"{names[role]}\nPCA of test embeddings", xlabel="PC 1", ylabel="PC 2")
    return figure


def _similarity(plot, names):
    figure, axes = _panels(1, size=4)
    for role in names:
        if role in plot:
            axes[0].plot(plot["ks"], plot[role], marker="o", label=names[role])
    axes[0].set(xlabel="k", ylabel="precision@k (same class)", title="MiraBest test queries")
    axes[0].legend(fontsize=7)
    return figure


def _anomaly(plot, names):
    keys = [key for key in plot if isinstance(key, tuple) and key[1] == "knn"]
    figure, axes = _panels(len(keys))
    author = plot["author"]
    levels = np.unique(author)
    for axis, key in zip(axes, keys, strict=True):
        axis.boxplot([plot[key][author == level] for level in levels])
        axis.set_xticks(range(1, len(levels) + 1), [str(level) for level in levels])
        axis.set(title=f"{names[key[0]]} kNN", xlabel="author score",
                 ylabel="anomaly percentile")
    return figure


def task_figure(task, plot, names, path):
    """Draw one task's figure and save it as PNG.

    Parameters
    ----------
    task : str
        ``"counts"``, ``"redshift"``, ``"frii"``, ``"morphology"``, ``"similarity"`` or
        ``"anomaly"``.
    plot : dict
        The arrays the task returned.
    names : dict
        Role -> feature name for the titles.
    path : path-like
        PNG to write.
    """
    if task in ("counts", "redshift"):
        figure = _scatter(plot, names, "count" if task == "counts" else "z")
    elif task in ("frii", "morphology"):
        figure = _classification(plot, names)
    elif task == "similarity":
        figure = _similarity(plot, names)
    else:
        figure = _anomaly(plot, names)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)

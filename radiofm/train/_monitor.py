"""A cheap frozen-feature monitor run inside training.

Every few steps the teacher backbone embeds a fixed, cached set of inputs and two probes score
the embedding, so every run's log shows whether it learns beyond its step-0 value (the random
network):

``mb_logistic_acc``, ``mb_knn_acc``
    FRI/FRII accuracy of a logistic and a kNN probe on MBFRConfident TRAIN stamps: a fixed
    carve of the train batches fits, another scores (`monitor_carve`; the test batch is never
    read, and the ``"mirabest"`` training source leaves both carves out).
``sim_count_r2``
    R^2 of a ridge from the embedding to the number of simulated compact sources whose peak
    reaches 5 sigma in 270-arcsec tiles (two thirds of the fields fit, the rest score).

Inputs go through the run's own normalisation (fitted on each stamp or field, then resampled
to the model's input size as inference does). These are monitor figures for choosing a recipe,
not the evaluation harness's figures.
"""

import logging
import time

import astropy.units as u
import numpy as np
import torch

__all__ = ["MONITOR_COLUMNS", "FeatureMonitor", "monitor_carve"]

log = logging.getLogger("radiofm")

#: Columns the monitor adds to the training log.
MONITOR_COLUMNS = ("mb_logistic_acc", "mb_knn_acc", "sim_count_r2", "monitor_seconds")

_CARVE_SEED = 20261129
_SIM_PIXEL = 1.1 * u.arcsec
_TILE_ARCSEC = 270.0


def monitor_carve(table, n_fit, n_valid):
    """Rows of the MBFRConfident TRAIN stamps the monitor fits on and scores on.

    Parameters
    ----------
    table : `~astropy.table.Table`
        `~radiofm.datasets.load_mirabest` table (any view) with ``split`` and ``filename``.
    n_fit, n_valid : int
        Stamps in each carve (fewer when the train split is smaller).

    Returns
    -------
    fit, valid : `~numpy.ndarray`
        Row indices into ``table``: FRI/FRII (confident) TRAIN rows only, chosen by a fixed
        permutation of their file names, so every view and every run carves the same stamps.
    """
    names = np.asarray(table["filename"]).astype(str)
    code = np.array([str(c) for c in table["code"]])
    confident = np.isin(code, ["100", "102", "104", "200", "201"])
    train = np.flatnonzero((np.asarray(table["split"]) == "train") & confident)
    order = train[np.argsort(names[train])]
    order = order[np.random.default_rng(_CARVE_SEED).permutation(len(order))]
    return np.sort(order[n_valid:n_valid + n_fit]), np.sort(order[:n_valid])


class FeatureMonitor:
    """Cached monitor inputs and the probes that score a backbone on them.

    Parameters
    ----------
    config : `~radiofm.train.TrainConfig`
        Uses ``monitor``, ``crops.global_size`` (the input size), ``data.normalization``
        and ``data.root``.
    mirabest : bool
        Load the MiraBest stamps (False, or no data root: only the simulated counts).
    """

    def __init__(self, config, *, mirabest=True):
        self.config = config.monitor
        self.size = config.crops.global_size
        spec = config.data.spec
        self.inputs = {}
        self.mirabest = None
        if mirabest:
            self.mirabest = self._mirabest_inputs(config, spec)
        self.counts = self._count_inputs(spec)

    def _prepare(self, stamps, stretch):
        from ..tiling import prepare_tiles

        return np.stack([prepare_tiles(stamp[None], fitted, self.size)[0]
                         for stamp, fitted in zip(stamps, stretch, strict=True)])

    def _mirabest_inputs(self, config, spec):
        from ..datasets import load_mirabest

        try:
            data = load_mirabest(config.data.root or None, view="confident")
        except FileNotFoundError as error:
            log.info("monitor: no MiraBest (%s); counts only", error)
            return None
        fit, valid = monitor_carve(data.table, self.config.mirabest_fit,
                                   self.config.mirabest_valid)
        chosen = np.concatenate([fit, valid])
        stamps = data.images[chosen]
        stretch = [spec.fit(stamp) for stamp in stamps]
        return {"x": self._prepare(stamps, stretch), "y": data.labels[chosen],
                "fit": np.arange(len(fit)), "valid": np.arange(len(fit), len(chosen))}

    def _count_inputs(self, spec):
        from ..simulate import count_true_compact, make_radio_sky
        from ..tiling import tile_image

        stamps, stretch, counts, fields = [], [], [], []
        for seed in range(self.config.count_fields):
            hdu, truth = make_radio_sky((1024, 1024), seed=5000 + seed, pixel_scale=_SIM_PIXEL)
            tiles = tile_image(hdu, _TILE_ARCSEC * u.arcsec)
            counted = count_true_compact(truth, tiles)
            image = np.asarray(hdu.data[0, 0], dtype=np.float32)
            fitted = spec.fit(image)
            for tile in counted:
                stamps.append(image[tile["y_min"]:tile["y_max"], tile["x_min"]:tile["x_max"]])
                counts.append(float(tile["n_compact"]))
                stretch.append(fitted)
                fields.append(seed)
        side = min(s.shape[0] for s in stamps), min(s.shape[1] for s in stamps)
        stamps = np.stack([s[:side[0], :side[1]] for s in stamps])
        fields = np.asarray(fields)
        n_fit = max(1, round(self.config.count_fields * 2 / 3))
        return {"x": self._prepare(stamps, stretch), "y": np.asarray(counts),
                "fit": np.flatnonzero(fields < n_fit), "valid": np.flatnonzero(fields >= n_fit)}

    @torch.no_grad()
    def embed(self, backbone, x, device, batch=128):
        """Embeddings (N, D) float64 of prepared inputs ``x`` (N, S, S)."""
        was_training = backbone.training
        backbone.eval()
        parts = []
        for start in range(0, len(x), batch):
            block = torch.from_numpy(x[start:start + batch, None]).to(device)
            parts.append(backbone(block).float().cpu().numpy())
        backbone.train(was_training)
        return np.concatenate(parts).astype(np.float64)

    def __call__(self, backbone, device):
        """Monitor figures of ``backbone``: a dict keyed by `MONITOR_COLUMNS`."""
        from sklearn.linear_model import LogisticRegression, RidgeCV
        from sklearn.neighbors import KNeighborsClassifier
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import Normalizer, StandardScaler

        began = time.perf_counter()
        row = dict.fromkeys(MONITOR_COLUMNS, "")
        if self.mirabest is not None:
            m = self.mirabest
            features = self.embed(backbone, m["x"], device)
            fit, valid = m["fit"], m["valid"]
            logistic = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000))
            logistic.fit(features[fit], m["y"][fit])
            knn = make_pipeline(Normalizer(), KNeighborsClassifier(self.config.k))
            knn.fit(features[fit], m["y"][fit])
            row["mb_logistic_acc"] = round(float(logistic.score(features[valid],
                                                                m["y"][valid])), 4)
            row["mb_knn_acc"] = round(float(knn.score(features[valid], m["y"][valid])), 4)
        c = self.counts
        features = self.embed(backbone, c["x"], device)
        ridge = make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-1, 4, 11)))
        ridge.fit(features[c["fit"]], c["y"][c["fit"]])
        row["sim_count_r2"] = round(float(ridge.score(features[c["valid"]],
                                                      c["y"][c["valid"]])), 4)
        row["monitor_seconds"] = round(time.perf_counter() - began, 2)
        return row

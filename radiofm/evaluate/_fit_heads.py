"""`fit_output_heads`: the numpy heads of `radiofm.models.Heads`, fitted on frozen embeddings.

Torch-free: the embeddings come from any embedder (an exported ONNX model through
onnxruntime, or a torch backbone during export) and the heads are fitted with
scikit-learn. Fit on train splits, choose and calibrate on items held out of train,
report on test.
"""

import hashlib
import logging
import zlib
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from .._atomic import atomic_path
from .._optional_deps import HAS_BDSF
from .._provenance import radiofm_version
from ..datasets import FIRST_PIXEL
from ..models import (
    PEAK_FEATURES,
    CatalogueCount,
    PoissonGlm,
    input_noise,
    peak_features,
    serialize_heads,
)
from ..simulate import COUNT_SNR
from ._embedders import load_embedder, normalization_of
from ._stamps import SIMULATED_TILE_ARCSEC, load_task_data

__all__ = ["ARTEFACT_FIELDS", "COUNT_REGIMES", "COUNT_WINDOWS", "DEPTH_FIELDS",
           "MORPHOLOGY_STAMP_ARCSEC", "SIMULATED_FIELDS", "expected_calibration_error",
           "fit_output_heads", "write_heads"]

log = logging.getLogger("radiofm")

#: PCA components of the out-of-distribution references.
OOD_COMPONENTS = 32
#: Share of held-out in-distribution items an OOD threshold keeps (the rest are flagged).
OOD_QUANTILE = 0.99
#: Poisson GLM penalties tried (chosen by deviance on a held-out fifth of the tiles).
POISSON_ALPHAS = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0, 3.0, 10.0)
#: scikit-learn solver of the count GLMs (`_poisson`).
POISSON_SOLVER = "newton-cholesky"
#: Training beams (FWHM, arcsec): FIRST 5.4, MeerKAT MGCLS and the simulated sky 7.5.
TRAINING_BEAMS_ARCSEC = (5.4, 7.5)
#: Accepted beams and input noise levels reach this factor beyond the training ones.
RANGE_FACTOR = 1.5
SCALE_FLOOR = 0.05  # of the median feature scale, as the harness's folded heads
#: Simulated skies with calibration artefacts added to the count tiles (2/3 train).
ARTEFACT_FIELDS = 9
#: Simulated skies without artefacts in the count tiles (2/3 train; the harness's 6).
SIMULATED_FIELDS = 6
#: Simulated skies with artefacts, each at a noise level of its own (so a different number
#: of sources above 5 sigma per tile; `radiofm.evaluate._stamps.DEPTH_NOISE`), in the count
#: tiles (2/3 train). They train the catalogue combinations' crowding correction alone; the
#: default model's 12 raised its count R^2 at 1.5 uJy/beam from -0.60 to 0.66 and left the
#: 4 uJy/beam skies as they were (docs/model_card.rst). Without them a model's combinations
#: have no correction and flag deep fields' catalogues as too crowded.
DEPTH_FIELDS = 12
#: Windows per tile side the count head reads: 3 x 3 of 90 arcsec, chosen on validation
#: skies only by the procedure of ``scripts/count_windows.py`` (per-tile R^2 0.51 whole,
#: 0.64 at 2 x 2, 0.68 at 3 x 3, default model v2; docs/model_card.rst).
COUNT_WINDOWS = 3
#: Count regimes: (name, the count data sets it is fitted on, training beam FWHM in arcsec,
#: what it was fitted on). Each is kept only where it beats the GLM fitted on every tile on
#: validation tiles (`fit_output_heads`).
COUNT_REGIMES = (
    ("FIRST", ("counts_first",), TRAINING_BEAMS_ARCSEC[0],
     f"FIRST 1.4 GHz tiles (beam {TRAINING_BEAMS_ARCSEC[0]:g} arcsec)"),
    ("MeerKAT-sim",
     ("counts_simulated", "counts_simulated_artefacts", "counts_simulated_depths"),
     TRAINING_BEAMS_ARCSEC[1],
     f"simulated MeerKAT-like tiles, with and without calibration artefacts, at several "
     f"depths (beam {TRAINING_BEAMS_ARCSEC[1]:g} arcsec)"),
)
#: Regime name -> the count data sets it is fitted on and counts (from `COUNT_REGIMES`).
_REGIME_SETS = {name: sets for name, sets, _, _ in COUNT_REGIMES}
#: The count data sets of simulated skies, whose labels are the truth: a regime fitted on
#: them alone gets a catalogue combination (`_add_catalogue_counts`).
SIMULATED_COUNT_SETS = ("counts_simulated", "counts_simulated_artefacts",
                        "counts_simulated_depths")
#: Measured peak S/N at which a count head's catalogue probabilities are read
#: (`_catalogue_count`; interpolated between, held beyond): fine where they climb from 0
#: to 1, around the label's 5 sigma.
CATALOGUE_SNR_KNOTS = np.r_[np.arange(3.0, 10.0, 0.05), np.arange(10.0, 20.0, 0.5), 20.0,
                            30.0, 50.0, 100.0]
#: A catalogue combination reads the crowding (`_catalogue_count`) only where the fields it
#: was fitted on span at least this factor in crowding: over fields of one depth the term
#: is all but a copy of the summed probabilities, and its weight would be set by chance,
#: then multiplied by a deep field's crowding.
CROWDING_SPAN = 2.0
#: A catalogue combination fits compact sources that share their island with a resolved one
#: a curve of their own (`_catalogue_count`) only with at least this many among its
#: training sources; with fewer, they take the other sources' curve.
SHARED_MIN_SOURCES = 50
#: The count data set of skies at noise levels of their own (``depth_fields``): they train
#: the catalogue combinations' crowding correction alone (`_catalogue_count`), so every
#: other head is fitted as without them.
DEPTH_SET = "counts_simulated_depths"
#: A regime is kept when its validation deviance is this share below the pooled GLM's (a
#: regime no better than the pooled GLM would only add noise).
REGIME_MARGIN = 0.01
#: A regime's head counts images whose beam lies within this factor of its training beam;
#: images of other beams are counted by the head fitted on every training tile.
REGIME_BEAM_FACTOR = 1.15
#: Side (arcsec) of the morphology head's stamps: the central part of RadioGalaxyDataset's
#: 540 arcsec images. At a 64 pixel input, 270 arcsec is the 4.2 arcsec per pixel the
#: default model was pre-trained at (FIRST tiles and MiraBest stamps of 270 arcsec); chosen
#: by 5-fold cross-validated 4-class accuracy on RadioGalaxyDataset train (v2: 0.728 at
#: 540, 0.730 at 405, 0.758 at 270; configs/study-results/README.md).
MORPHOLOGY_STAMP_ARCSEC = 270.0
#: Share of each class's RadioGalaxyDataset training stamps kept out of the morphology fit
#: to choose C, fit the temperature and set the stamps' OOD threshold on (the literature
#: valid split is an evaluation split, used by no fit or choice: `load_task_data`).
CHOICE_SHARE = 0.2


def expected_calibration_error(probabilities, labels, bins=15):
    """Expected calibration error of the top-class probability.

    With an integer ``bins`` the confidences are binned in equal widths over [0, 1] (the
    usual estimator, Guo et al. 2017). On a few hundred items it is biased upwards: a
    perfectly calibrated head scores about 0.08 on 200 stamps with 15 bins. ``"sweep"``
    is the equal-mass estimator of Roelofs et al. (2022), the least biased of those they
    compare: the items are sorted by confidence and cut into the largest number of
    equal-count bins whose accuracies still rise monotonically with confidence.

    Parameters
    ----------
    probabilities : array-like
        (N, K) class probabilities.
    labels : array-like
        (N,) true class indices.
    bins : int or "sweep"
        Equal-width confidence bins over [0, 1], or the monotonic equal-mass sweep.

    Returns
    -------
    ece : float
        Sum over bins of (share of items) x abs(accuracy - mean confidence).

    Raises
    ------
    ValueError
        ``bins`` is neither a positive integer nor ``"sweep"``.

    Examples
    --------
    >>> import numpy as np
    >>> from radiofm.evaluate import expected_calibration_error
    >>> expected_calibration_error(np.array([[0.9, 0.1], [0.9, 0.1]]), np.array([0, 1]))
    0.4
    >>> probabilities = np.array([[0.6, 0.4]] * 5 + [[0.9, 0.1]] * 5)
    >>> expected_calibration_error(probabilities, np.array([0, 0, 0, 1, 1] + [0] * 5), "sweep")
    0.05
    """
    probabilities = np.asarray(probabilities, dtype=np.float64)
    labels = np.asarray(labels)
    confidence = probabilities.max(axis=1)
    correct = (probabilities.argmax(axis=1) == labels).astype(np.float64)
    if isinstance(bins, str) and bins == "sweep":
        groups = _monotonic_equal_mass_bins(confidence, correct)
    elif isinstance(bins, (int, np.integer)) and not isinstance(bins, bool) and bins > 0:
        edges = np.linspace(0.0, 1.0, bins + 1)
        which = np.clip(np.digitize(confidence, edges[1:-1]), 0, bins - 1)
        groups = [np.flatnonzero(which == b) for b in range(bins)]
    else:
        raise ValueError(f"bins must be a positive integer or 'sweep', not {bins!r}")
    ece = sum(len(group) / len(labels) * abs(correct[group].mean() - confidence[group].mean())
              for group in groups if len(group))
    return round(float(ece), 12)


def _monotonic_equal_mass_bins(confidence, correct):
    """Index groups of the most equal-count confidence bins (in order) whose accuracies do
    not fall as confidence rises (Roelofs et al. 2022's sweep)."""
    order = np.argsort(confidence, kind="stable")
    best = [order]
    for count in range(2, len(order) + 1):
        groups = np.array_split(order, count)
        if np.any(np.diff([correct[group].mean() for group in groups]) < 0):
            break
        best = groups
    return best


def _embedder_key(embedder):
    """Cache key of an embedder's embeddings: an exported model's graph identity (its name,
    export time and weight storage, which new heads leave alone), else its name, sha256,
    weights' sha256 and architecture (a checkpoint's backbone, whose file a resumed run
    rewrites, and the stages it is read out at)."""
    metadata = getattr(getattr(embedder, "model", None), "metadata", None) or {}
    if metadata:
        identity = [metadata.get(key) for key in ("name", "created", "quantization", "arch")]
    else:
        identity = [embedder.name, getattr(embedder, "sha256", None),
                    getattr(embedder, "weights_sha256", None),
                    getattr(embedder, "architecture", None)]
    text = f"{identity}|{embedder.input_size}|{getattr(embedder, 'views', 1)}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _embed(embedder, data, cache, tag):
    """Embeddings and input noise of a task's items, cached as .npz when ``cache`` is set
    (keyed by the embedder and a digest of the prepared inputs, so a changed stretch or data
    set is embedded again)."""
    prepared = data.prepared(embedder.input_size)
    inputs = hashlib.sha256(np.ascontiguousarray(prepared).tobytes()).hexdigest()[:12]
    path = (None if cache is None
            else Path(cache) / f"{_embedder_key(embedder)}_{tag}_{inputs}.npz")
    if path is not None and path.is_file():
        saved = np.load(path)
        if len(saved["embedding"]) == len(data):
            log.info("embeddings of %s from %s", tag, path)
            return saved["embedding"].astype(np.float64), saved["noise"]
    log.info("embedding %d %s items", len(data), tag)
    embedding = np.asarray(embedder.embed(prepared), dtype=np.float64)
    noise = input_noise(prepared)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, embedding=embedding.astype(np.float32), noise=noise)
    return embedding, noise


def _scaler(x):
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale = np.maximum(scale, SCALE_FLOOR * np.median(scale[scale > 0]) if (scale > 0).any()
                       else 1.0)
    return mean, scale


def _reference(x_train, x_heldout, n_components, quantile):
    """PCA OOD reference of training embeddings, threshold at a quantile of held-out scores."""
    from ..models import OodReference

    mean, scale = _scaler(x_train)
    z = (x_train - mean) / scale
    k = int(min(n_components, len(z) - 1, z.shape[1]))
    _, singular, vt = np.linalg.svd(z - z.mean(axis=0), full_matrices=False)
    components = vt[:k]
    variances = np.maximum(singular[:k] ** 2 / max(1, len(z) - 1), 1e-12)
    projected = z @ components.T
    residual = np.maximum((z * z).sum(1) - (projected * projected).sum(1), 0.0)
    reference = {"mean": mean, "scale": scale, "components": components,
                 "variances": variances,
                 "residual_variance": float(max(residual.mean(), 1e-12)), "threshold": 1.0}
    scorer = OodReference(reference, z.shape[1], "reference")
    held = scorer.score(x_heldout)
    reference["threshold"] = float(np.quantile(held, quantile))
    reference["quantile"] = quantile
    reference["train_items"] = len(x_train)
    reference["heldout_items"] = len(x_heldout)
    return reference


def _poisson(x_train, y_train, tile, seed=0, solver=POISSON_SOLVER):
    """Poisson GLM (log link) on standardised features; alpha by held-out tiles' deviance.

    A fifth of the tiles (all their windows) is held out, a GLM is fitted on the rest at
    each of `POISSON_ALPHAS`, and the penalty whose per-tile counts (the sum over each
    tile's windows, what the heads report) have the lowest Poisson deviance on the
    held-out tiles is refitted on every tile. Whole tiles are held out because the windows
    of one tile share its field, noise and extended emission: held out one by one, a
    window's neighbours in training tell the GLM about it, and the search picks too weak a
    penalty (on FIRST, the default model's embedding GLM took 0.001, validation-tile R^2
    0.145, where the penalty chosen on whole tiles, 0.01, gives 0.280;
    ``configs/study-results/count-alpha-selection.txt``). With one window per tile,
    ``tile = np.arange(len(y_train))``, this is a search over held-out items.

    Newton steps with a Cholesky solve (``solver``) reach the optimum in a handful of
    iterations on these few hundred features, where L-BFGS took hundreds at the small
    penalties: on the default model's windows of six simulated fields the whole search
    takes 2 s against 110 s, for the same penalty and deviance
    (`benchmarks/bench_count_head_fit.py`).

    Parameters
    ----------
    x_train, y_train : `~numpy.ndarray`
        Each window's features and count.
    tile : `~numpy.ndarray`
        Each window's tile (any labels; windows of one tile are held out together).
    seed : int
        Seed of the held-out tiles' draw.
    solver : str
        scikit-learn's `~sklearn.linear_model.PoissonRegressor` solver.

    Returns
    -------
    dict
        The GLM in the heads' layout (`_poisson_at`).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(300, 2))
    >>> y = rng.poisson(np.exp(0.5 + 0.8 * x[:, 0]))
    >>> glm = _poisson(x, y, tile=np.repeat(np.arange(100), 3))
    >>> glm["alpha"] in POISSON_ALPHAS and bool(glm["coef"][0] > 0.5)
    True
    """
    tiles = np.unique(tile)
    if len(tiles) < 2:
        raise ValueError(f"the count GLM's penalty is chosen on held-out tiles; it has "
                         f"{len(tiles)} tile(s) to fit on, at least 2 are needed")
    held_tiles = np.random.default_rng(seed).permutation(tiles)[:max(1, len(tiles) // 5)]
    held = np.isin(tile, held_tiles)
    best = None
    for alpha in POISSON_ALPHAS:
        glm = _poisson_at(x_train[~held], y_train[~held], alpha, solver=solver)
        deviance, _ = _tile_scores(glm, x_train[held], y_train[held], tile[held])
        if best is None or deviance < best[0]:
            best = (deviance, alpha)
    return _poisson_at(x_train, y_train, best[1], solver=solver)


def _tile_scores(glm, x, y, tile):
    """Per-tile Poisson deviance and R^2 of a count GLM on windows ``x`` with counts ``y``
    (each tile's count is the sum over its windows, as the heads report it)."""
    from sklearn.metrics import mean_poisson_deviance, r2_score

    _, cell = np.unique(tile, return_inverse=True)
    truth = np.bincount(cell, y)
    predicted = np.maximum(np.bincount(cell, _poisson_rate(glm, x)), 1e-9)
    return float(mean_poisson_deviance(truth, predicted)), float(r2_score(truth, predicted))


def _poisson_at(x_train, y_train, alpha, solver=POISSON_SOLVER):
    """The count GLM of `_poisson` at a given penalty (no search), in the heads' layout."""
    from sklearn.linear_model import PoissonRegressor

    mean, scale = _scaler(x_train)
    model = PoissonRegressor(alpha=alpha, solver=solver, max_iter=3000)
    model.fit((x_train - mean) / scale, y_train)
    return {"mean": mean, "scale": scale, "coef": model.coef_,
            "intercept": float(model.intercept_), "alpha": alpha,
            "max_log_rate": float(np.log(3.0 * max(1.0, y_train.max())))}


def _beam_regimes(x, y, train, source, tile, peaks=None, peak_level=None, seed=2):
    """The count GLMs of `COUNT_REGIMES` that count their own beam's tiles better than the
    GLM fitted on every tile does, judged on validation tiles, and each GLM's dispersion.

    A fifth of each data set's training tiles (all their windows; `_held_out_tiles`) is
    held out; the pooled GLM and each regime's GLM are fitted on the rest, and a regime is
    kept when its per-tile Poisson deviance on its held-out tiles is lower than the pooled
    GLM's by `REGIME_MARGIN`. A kept regime is then fitted on all its training tiles. With
    ``peaks`` (the windows' `radiofm.models.peak_features` at ``peak_level``) a regime's GLM
    reads them beside the embedding where that lowers the per-tile deviance and raises the
    per-tile R^2 on its held-out tiles (both: on FIRST a few windows of extended emission
    hold many peaks, and a GLM that reads them lowered the deviance while it overcounted
    those tiles). The pooled GLM reads the embedding alone: it counts images of any beam,
    real fields full of extended emission among them. The same held-out tiles give each
    GLM's dispersion (`_dispersion`). The pooled GLM counts images of a beam it has
    no regime for, so its dispersion is the largest it shows on any regime's held-out
    tiles or on all of them together: one mixed over beams would be set by the beam with
    the most sources, and too small for the others (on the default model's tiles, 0.45
    mixed against 0.76 on FIRST's tiles alone).

    Returns
    -------
    regimes : list of dict
        Heads layout of each kept regime, with its ``dispersion`` (and ``peak_level`` where
        it reads the peaks).
    validation : dict
        Regime name -> held-out per-tile deviance, R^2 and dispersion of its GLM (on the
        embedding alone, and with the peaks), of the pooled one, whether it reads the
        peaks and whether it was kept.
    pooled_dispersion : float or None
        The pooled GLM's dispersion (None when no tile is held out).
    """
    from sklearn.metrics import mean_poisson_deviance, r2_score

    held = train & np.isin(tile, _held_out_tiles(tile, train, source, seed))
    fit = train & ~held
    pooled = _poisson(x[fit], y[fit], tile[fit])
    _, cell = np.unique(tile[held], return_inverse=True)
    pooled_dispersion = _dispersion(np.bincount(cell, y[held]),
                                    np.bincount(cell, _poisson_rate(pooled, x[held])))

    def features(rows, reads_peaks):
        return np.concatenate([x[rows], peaks[rows]], axis=1) if reads_peaks else x[rows]

    regimes, validation = [], {}
    for name, members, beam, fitted_on in COUNT_REGIMES:
        rows = np.isin(source, members)
        if not (rows & fit).any() or not (rows & held).any():
            continue
        check = rows & held
        _, cell = np.unique(tile[check], return_inverse=True)
        truth = np.bincount(cell, y[check])
        candidates = [("regime", False), ("pooled", False)] + (
            [("regime_peaks", True)] if peaks is not None else [])
        scores, tile_predictions = {}, {}
        for head, reads_peaks in candidates:
            glm = (pooled if head == "pooled"
                   else _poisson(features(rows & fit, reads_peaks), y[rows & fit],
                                 tile[rows & fit]))
            predicted = np.maximum(np.bincount(cell, _poisson_rate(
                glm, features(check, reads_peaks))), 1e-9)
            tile_predictions[head] = predicted
            scores[f"{head}_deviance"] = float(mean_poisson_deviance(truth, predicted))
            scores[f"{head}_r2"] = float(r2_score(truth, predicted))
            scores[f"{head}_dispersion"] = _dispersion(truth, predicted)
        reads_peaks = peaks is not None and (
            scores["regime_peaks_deviance"] < scores["regime_deviance"]
            and scores["regime_peaks_r2"] > scores["regime_r2"])
        chosen = "regime_peaks" if reads_peaks else "regime"
        scores["reads_peaks"] = reads_peaks
        scores["kept"] = (scores[f"{chosen}_deviance"]
                          < (1 - REGIME_MARGIN) * scores["pooled_deviance"])
        scores["tiles"] = int(truth.size)
        validation[name] = scores
        log.info("count regime %s on %d validation tiles: %s", name, truth.size, scores)
        if scores["kept"]:
            regimes.append({"name": name, "description": fitted_on + (
                                ", reading each window's 5-sigma peaks beside its embedding"
                                if reads_peaks else ""),
                            "beam_range_arcsec": [beam / REGIME_BEAM_FACTOR,
                                                  beam * REGIME_BEAM_FACTOR],
                            **_poisson(features(rows & train, reads_peaks),
                                       y[rows & train], tile[rows & train]),
                            "dispersion": scores[f"{chosen}_dispersion"],
                            **({"peak_level": peak_level} if reads_peaks else {})})
    if pooled_dispersion is not None:
        pooled_dispersion = max([pooled_dispersion] + [scores["pooled_dispersion"]
                                                       for scores in validation.values()])
    return regimes, validation, pooled_dispersion


def _tile_folds(tile, train, source, seed, folds=5):
    """Each training tile's fold, drawn per data set by a generator of the seed and the
    set's name: adding or dropping a data set leaves every other set's folds as they were.

    Fold 0 is the first fifth of each set's tiles in the generator's order (the regimes'
    validation tiles, `_held_out_tiles`); the rest are split evenly over the other folds.

    Returns
    -------
    tiles : `~numpy.ndarray`
        The training tiles, set by set.
    fold : `~numpy.ndarray`
        Each one's fold, ``0`` to ``folds - 1``.

    Examples
    --------
    >>> tile = np.arange(12)
    >>> tiles, fold = _tile_folds(tile, np.ones(12, bool), np.array(["a"] * 12), seed=2)
    >>> np.bincount(fold).tolist()
    [2, 3, 3, 2, 2]
    """
    tiles, fold = [], []
    for name in np.unique(source):
        own = np.unique(tile[train & (source == name)])
        order = np.random.default_rng([seed, zlib.crc32(str(name).encode())]).permutation(own)
        first = len(own) // 5
        tiles.append(order)
        rest = np.array_split(order[first:], folds - 1)
        fold.append(np.concatenate([np.zeros(first, int)] + [
            np.full(len(part), k + 1, int) for k, part in enumerate(rest)]))
    if not tiles:
        return np.array([], int), np.array([], int)
    return np.concatenate(tiles), np.concatenate(fold)


def _held_out_tiles(tile, train, source, seed):
    """A fifth of each data set's training tiles: fold 0 of `_tile_folds`."""
    tiles, fold = _tile_folds(tile, train, source, seed)
    return tiles[fold == 0]


def _out_of_fold_counts(regime, x, y, train, source, tile, peaks=None, seed=2):
    """A regime's counts of each of its training tiles from its GLM fitted without them.

    The regime's training tiles are split into the folds of `_tile_folds` (fold 0: its
    validation tiles); the GLM, reading what the regime's reads (the embedding, and the
    peaks where it has a ``peak_level``), is fitted on the other folds with its own penalty
    search (`_poisson`) and counts the tiles of each fold in turn. A catalogue combination
    is fitted on these counts (`_catalogue_count`): on every training tile, where one fold
    alone let the held-out tiles' draw set its coefficients.

    Returns
    -------
    tiles, truth, predicted, fold : `~numpy.ndarray`
        The regime's training tiles, their true counts (summed over their items), the
        out-of-fold counts and each tile's fold (with fewer than two folds, too few tiles to
        hold any out, every count is 0 and `_catalogue_count` fits nothing).
    """
    rows = train & np.isin(source, _REGIME_SETS[regime["name"]])
    tiles, fold = _tile_folds(tile, rows, source, seed)
    order = np.argsort(tiles)
    tiles, fold = tiles[order], fold[order]
    cell = np.searchsorted(tiles, tile[rows])
    truth = np.bincount(cell, y[rows], minlength=len(tiles))
    predicted = np.zeros(len(tiles))
    reads = {"peak_level": regime["peak_level"]} if "peak_level" in regime else {}
    features = (np.concatenate([x, peaks], axis=1) if reads else x)
    for k in np.unique(fold) if len(np.unique(fold)) > 1 else []:
        check = rows & np.isin(tile, tiles[fold == k])
        glm = {**_poisson(features[rows & ~check], y[rows & ~check], tile[rows & ~check]),
               **reads}
        predicted += np.bincount(np.searchsorted(tiles, tile[check]),
                                 _regime_rate(glm, x, peaks, check), minlength=len(tiles))
    return tiles, truth, predicted, fold


def _field_peaks(peaks, tile, field, rows):
    """The [low, high] range over fields of each field's median peaks per tile.

    Parameters
    ----------
    peaks : `~numpy.ndarray`
        Each item's peaks (a window's or a tile's; `radiofm.models.peak_features`).
    tile, field : `~numpy.ndarray`
        Each item's tile and field.
    rows : `~numpy.ndarray` of bool
        The items of the fields to measure (every tile of a field chosen counts).

    Examples
    --------
    >>> tile = np.repeat(np.arange(6), 2)           # two windows per tile
    >>> field = np.repeat([0, 0, 0, 1, 1, 1], 2)    # three tiles per field
    >>> peaks = np.array([1, 2, 3, 3, 9, 9, 10, 10, 12, 12, 30, 0.0])
    >>> _field_peaks(peaks, tile, field, np.ones(12, bool))  # tiles 3, 6, 18 and 20, 24, 30
    [6.0, 24.0]
    """
    tiles, cell = np.unique(tile[rows], return_inverse=True)
    tile_peaks = np.bincount(cell, peaks[rows])
    tile_field = np.zeros(len(tiles), int)
    tile_field[cell] = field[rows]
    medians = [float(np.median(tile_peaks[tile_field == f])) for f in np.unique(tile_field)]
    return [min(medians), max(medians)]


def _dispersion(truth, predicted):
    """Quasi-Poisson dispersion of tile counts: the summed squared differences of truth and
    prediction over the summed predictions (1 for counts that scatter as Poisson draws of
    the prediction; the ratio of sums, which a tile with a near-zero prediction cannot
    dominate), floored at 1e-6; None without tiles to measure it on.

    >>> round(_dispersion(np.array([0.0, 4.0]), np.array([2.0, 2.0])), 3)
    2.0
    >>> _dispersion(np.array([]), np.array([])) is None
    True
    """
    truth, predicted = np.asarray(truth, float), np.asarray(predicted, float)
    if not len(truth) or not predicted.sum() > 0:
        return None
    return float(max(np.sum((truth - predicted) ** 2) / predicted.sum(), 1e-6))


def _catalogue_count(sources, folds, finder, deep=None):
    """A count GLM's `radiofm.models.CatalogueCount`, fitted out of fold on its training
    tiles and, for its crowding correction, on the depth skies' tiles.

    The probability that a source compact by measurement is counted, against its measured
    peak S/N, is an isotonic (non-decreasing) fit on the sources of the training tiles, read
    at fixed S/N knots; with ``shared`` sources (compact, sharing their island with a
    resolved source; at least `SHARED_MIN_SOURCES`), they get an isotonic fit of their own
    and the others one without them. The combination ``a + b x`` the GLM's count
    ``+ c x`` the summed probabilities is a non-negative least-squares fit on every training
    tile, each read out of fold: the GLM's count from its fit without the tile's fold
    (`_out_of_fold_counts`), the probabilities from the isotonic fit without it. (One
    held-out fifth alone let its draw set the three coefficients: another draw moved
    ``a`` from 0.93 to 0.60.)

    With ``deep`` (the depth skies' training tiles, which the GLM never saw), a crowding
    correction ``d x`` the summed probabilities ``x`` (the field's crowding ``-`` the median
    crowding of the training tiles' fields; `radiofm.inference.catalogue_crowding`) is
    fitted on them by least squares with ``a``, ``b`` and ``c`` held, ``d`` within
    ``[0, c / median]`` so that no field's weight falls below 0. The shared sources' summed
    probabilities get a slope ``s`` of their own, fitted with ``d`` (within the same
    bounds): the deeper and more crowded the field, the more often such a piece is a compact
    source blended with its neighbour (on the simulated skies, counted 0.25-0.4 of the time
    at 6-7 uJy/beam and 0.6-0.8 below 2.5 uJy/beam, at S/N >= 7), so one weight for every
    depth would bias the others. The correction vanishes at
    the training fields' crowding, so fields as crowded as those the combination was fitted
    on are counted as without depth skies: a joint fit traded their accuracy for the deep
    fields' (docs/model_card.rst). It is stored as the fourth coefficient, ``c`` becoming
    ``c - d x median``, the shared sources' weight as ``shared_coef`` ``[c - s x median,
    s]``, and left out where the fields span less than `CROWDING_SPAN` in crowding (the
    shared sources' weight is then ``[c, 0]``). ``crowding_range`` records the crowding of
    every field the sources came from: inference flags a catalogue beyond it.

    Parameters
    ----------
    sources : dict of `~numpy.ndarray`
        ``tile``, ``snr``, ``compact``, ``counted``, ``crowding`` and, optionally,
        ``shared`` of the regime's training fields
        (`radiofm.evaluate._stamps._simulated_catalogues`, tiles numbered as the count
        items are).
    folds : tuple
        The training tiles, their true counts, the GLM's out-of-fold counts for them and
        their folds (`_out_of_fold_counts`).
    finder : str
        The finder that made the catalogues.
    deep : tuple, optional
        The depth skies' training tiles, their true counts and the GLM's counts for them.

    Returns
    -------
    catalogue : dict or None
        The heads layout of `radiofm.models.CatalogueCount`, with ``validation``: the
        training tiles' out-of-fold R^2 of the GLM alone and of the combination (in-sample
        for the three coefficients), and with ``deep`` the depth tiles' R^2 without and with
        the correction (in-sample for ``d``); None without compact sources, or with fewer
        than three tiles or two folds.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> tile = np.repeat(np.arange(10), 20)
    >>> sources = {"tile": tile, "snr": rng.uniform(3.0, 12.0, 200),
    ...            "compact": np.ones(200, bool), "crowding": np.full(200, 0.01)}
    >>> sources["counted"] = sources["snr"] >= 5.0
    >>> truth = np.bincount(tile[sources["counted"]], minlength=10).astype(float)
    >>> folds = (np.arange(10), truth, truth, np.arange(10) % 5)
    >>> mix = _catalogue_count(sources, folds, "photutils")
    >>> len(mix["coef"]), mix["crowding_range"]
    (3, [0.01, 0.01])
    """
    from scipy.optimize import lsq_linear, nnls
    from sklearn.isotonic import IsotonicRegression
    from sklearn.metrics import r2_score

    tiles, truth, predicted, fold = folds
    deep_tiles = np.array([], int) if deep is None else deep[0]
    fitted_on = sources["compact"] & ~np.isin(sources["tile"], deep_tiles)
    if not fitted_on.any() or len(tiles) < 3 or len(np.unique(fold)) < 2:
        return None

    shared = sources.get("shared", np.zeros(len(sources["tile"]), bool)) & sources["compact"]
    split = min(np.count_nonzero(fitted_on & shared),
                np.count_nonzero(fitted_on & ~shared)) >= SHARED_MIN_SOURCES

    def counted_probability(rows):  # at the knots, fitted on the sources ``rows`` selects
        isotonic = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(
            sources["snr"][rows], sources["counted"][rows].astype(float))
        return np.clip(isotonic.predict(CATALOGUE_SNR_KNOTS), 0.0, 1.0)

    def curves(rows):  # (other compact sources', shared ones') probabilities at the knots
        if not split:
            return (counted_probability(rows),) * 2
        return (counted_probability(rows & ~shared if (rows & ~shared).any()
                                    else fitted_on & ~shared),
                counted_probability(rows & shared if (rows & shared).any()
                                    else fitted_on & shared))

    def per_tile(chosen, probabilities):  # summed probabilities (others', pieces'), crowding
        rows = sources["compact"] & np.isin(sources["tile"], chosen)
        where = np.searchsorted(chosen, sources["tile"][rows])
        pieces = shared[rows] & split
        weight = np.where(pieces, np.interp(sources["snr"][rows], CATALOGUE_SNR_KNOTS,
                                            probabilities[1]),
                          np.interp(sources["snr"][rows], CATALOGUE_SNR_KNOTS,
                                    probabilities[0]))
        summed = np.stack([np.bincount(where, weight * ~pieces, minlength=len(chosen)),
                           np.bincount(where, weight * pieces, minlength=len(chosen))])
        crowding = np.zeros(len(chosen))  # 0 where a tile holds no source (summed is 0)
        crowding[where] = sources["crowding"][rows]
        return summed, crowding

    probability = curves(fitted_on)
    order = np.argsort(tiles)
    tiles, truth, predicted, fold = tiles[order], truth[order], predicted[order], fold[order]
    summed, crowding = np.zeros((2, len(tiles))), np.zeros(len(tiles))
    for k in np.unique(fold):
        inside = fold == k
        others = fitted_on & ~np.isin(sources["tile"], tiles[inside])
        summed[:, inside], crowding[inside] = per_tile(
            tiles[inside], curves(others) if others.any() else probability)
    design = np.column_stack([np.ones(len(tiles)), predicted, summed.sum(axis=0)])
    coef = nnls(design, truth)[0]
    combined = design @ coef
    # the weights of the others' and the pieces' summed probabilities: intercept + slope x
    # the field's crowding, one and the same at the training fields' crowding
    intercepts, slopes = np.full(2, coef[2]), np.zeros(2)
    validation = {"tiles": int(len(tiles)), "glm_r2": float(r2_score(truth, predicted)),
                  "combined_r2": float(r2_score(truth, combined))}
    fields = sources["crowding"][sources["compact"]]
    if deep is not None and fields.max() >= CROWDING_SPAN * fields.min():
        deep_summed, deep_crowding = per_tile(deep_tiles, probability)
        base = coef[0] + coef[1] * deep[2] + coef[2] * deep_summed.sum(axis=0)
        reference = float(np.median(crowding[crowding > 0]))
        terms = (deep_crowding - reference) * deep_summed[:1 + split]
        slopes[:1 + split] = lsq_linear(terms.T, deep[1] - base,
                                        bounds=(0.0, max(coef[2], 1e-12) / reference)).x
        intercepts = np.maximum(coef[2] - slopes * reference, 0.0)  # >= 0 despite rounding
        coef = np.r_[coef[:2], intercepts[0], slopes[0]]
        validation.update(deep_tiles=int(len(deep_tiles)),
                          deep_r2_uncorrected=float(r2_score(deep[1], base)),
                          deep_r2=float(r2_score(deep[1], base + slopes[:1 + split] @ terms)),
                          crowding_reference=reference)
    mix = {"finder": finder, "snr": CATALOGUE_SNR_KNOTS, "probability": probability[0],
           "coef": coef, "crowding_range": [float(fields.min()), float(fields.max())],
           "dispersion": _dispersion(truth, combined) or 1.0, "validation": validation}
    if split:
        mix["shared_probability"] = probability[1]
        mix["shared_coef"] = [float(intercepts[1]), float(slopes[1])]
    return mix


def _catalogue_regimes(regimes):
    """The kept regimes fitted on simulated skies alone: the ones that learn to combine
    with catalogues."""
    return [regime for regime in regimes
            if set(_REGIME_SETS[regime["name"]]) <= set(SIMULATED_COUNT_SETS)]


def _add_catalogue_counts(regimes, validation, out_of_fold, catalogue_sources,
                          train_tiles, deep_predictions=None):
    """Give each kept regime fitted on simulated skies alone ``catalogues``, one per
    finder of ``catalogue_sources`` (finder -> data set -> sources; `_catalogue_count`, on
    the training skies' sources and the regime's ``out_of_fold`` counts, with its
    ``deep_predictions`` entry: its depth skies' training tiles, their true counts and its
    counts for them), recording their out-of-fold figures in ``validation``. FIRST's label
    is itself a finder's count, with no truth to weigh a catalogue against: its regime gets
    none."""
    for regime in _catalogue_regimes(regimes):
        name = regime["name"]
        for finder, found in catalogue_sources.items():
            sets = [s for s in _REGIME_SETS[name] if s in found]
            sources = {key: np.concatenate([found[s][key] for s in sets])
                       for key in ("tile", "snr", "compact", "shared", "counted",
                                   "crowding")}
            keep = np.isin(sources["tile"], train_tiles)
            mix = _catalogue_count({key: value[keep] for key, value in sources.items()},
                                   out_of_fold[name], finder,
                                   (deep_predictions or {}).get(name))
            if mix is None:
                continue
            figures = mix.pop("validation")
            validation[name].setdefault("catalogues", {})[finder] = figures
            regime.setdefault("catalogues", []).append(mix)
            log.info("count regime %s combined with %s catalogues: %s", name, finder,
                     figures)


def _catalogue_test_figures(regimes, catalogue_sources, tile, source, split, target, rate):
    """Finder -> data set -> `_count_figures` of each simulated data set's test tiles
    counted as inference counts them with that finder's catalogue
    (`radiofm.models.CatalogueCount`), by the regime that counts it."""
    figures = {}
    for regime in regimes:
        for part in regime.get("catalogues", []):
            mix = CatalogueCount(part, "catalogues")
            figures[mix.finder] = _catalogue_set_figures(
                mix, _REGIME_SETS[regime["name"]], catalogue_sources[mix.finder], tile, source,
                split, target, rate)
    return figures


def _catalogue_set_figures(mix, sets, catalogue_sources, tile, source, split, target,
                           rate):
    """Data set -> `_count_figures` of its test tiles counted with ``mix``."""
    figures = {}
    for name in sets:
        rows = (source == name) & (split == "test")
        if name not in catalogue_sources or not rows.any():
            continue
        tiles, cell = np.unique(tile[rows], return_inverse=True)
        found = catalogue_sources[name]
        inside = np.isin(found["tile"], tiles)
        where = np.searchsorted(tiles, found["tile"][inside])
        shared = found["shared"][inside] & mix.reads_islands
        probability = mix.source_probabilities(found["snr"][inside], found["compact"][inside],
                                               shared)
        summed = [np.bincount(where, probability * part, minlength=len(tiles))
                  for part in (~shared, shared)]
        crowding = np.zeros(len(tiles))  # each tile's field's (0 where it has no source)
        crowding[where] = found["crowding"][inside]
        counts, errors = mix.combine(np.bincount(cell, rate[rows]), summed[0], crowding,
                                     summed[1] if mix.reads_islands else None)
        figures[name] = _count_figures(counts, np.bincount(cell, target[rows]), errors)
    return figures


def _poisson_rate(glm, x):
    """A fitted Poisson GLM's expected count of each row of ``x`` (the embedding, then the
    peak features where the GLM has a ``peak_level``), as `Heads` applies it."""
    dim = x.shape[1] - (len(PEAK_FEATURES) if "peak_level" in glm else 0)
    return PoissonGlm(glm, dim, "fitted GLM").predict(x).astype(np.float64)


def _regime_rate(regime, x, peaks, rows):
    """A regime's expected count of each item ``rows`` selects, from its embedding (``x``)
    and, where the regime's GLM has a ``peak_level``, its peak features (``peaks``)."""
    return _poisson_rate(regime, x[rows] if "peak_level" not in regime
                         else np.concatenate([x[rows], peaks[rows]], axis=1))


def _count_figures(predicted, truth, error):
    """MAE and R^2 of tile counts; with finite ``error`` (the uncertainty
    `radiofm.models.Heads.count_errors` gives) the share of tiles whose truth lies within one
    error of the prediction (about 0.68 for a calibrated error on counts large enough to be
    near normal; a step function of the prediction for counts near 1) and the summed squared
    differences over the summed squared errors (about 1 when calibrated, at any count)."""
    from sklearn.metrics import r2_score

    if len(truth) < 2:
        return {}
    figures = {"mae": float(np.abs(predicted - truth).mean()),
               "r2": float(r2_score(truth, predicted))}
    if np.isfinite(error).all() and np.sum(error**2) > 0:
        figures["within_1_error"] = float(np.mean(np.abs(truth - predicted) <= error))
        figures["variance_ratio"] = float(np.sum((truth - predicted) ** 2) / np.sum(error**2))
    return figures


def _test_tile_figures(tile, source, split, target, rate, dispersion):
    """`_count_figures` of each data set's test tiles, from per-item (window) values.

    Parameters
    ----------
    tile : ndarray of int
        The tile each item belongs to (0 to the number of tiles - 1).
    source, split : ndarray of str
        Each item's data set and split (the same for every item of a tile).
    target, rate : ndarray
        Each item's true and predicted count; a tile's are their sums.
    dispersion : ndarray
        Dispersion of the head that counts each item; a tile's error is
        sqrt(dispersion x its predicted count), as `radiofm.models.Heads.count_errors`.

    Returns
    -------
    dict
        Data set name -> figures of its test tiles.

    Examples
    --------
    >>> tile = np.array([0, 0, 1, 1, 2, 2])
    >>> figures = _test_tile_figures(tile, np.array(["a"] * 6), np.array(["test"] * 6),
    ...                              np.array([1., 1., 2., 2., 0., 1.]),
    ...                              np.array([1., 1., 2., 1., 1., 1.]), np.full(6, 0.5))
    >>> round(figures["a"]["mae"], 3), figures["a"]["within_1_error"]
    (0.667, 1.0)
    """
    first_item = np.unique(tile, return_index=True)[1]
    truth, predicted = np.bincount(tile, target), np.bincount(tile, rate)
    error = np.sqrt(dispersion[first_item] * predicted)
    test, tile_source = split[first_item] == "test", source[first_item]
    return {name: _count_figures(predicted[chosen], truth[chosen], error[chosen])
            for name in np.unique(source) for chosen in [test & (tile_source == name)]}


def _equal_prior_weights(labels):
    """Item weights that give every class the same total weight (mean weight 1)."""
    classes, index, counts = np.unique(labels, return_inverse=True, return_counts=True)
    return len(labels) / (len(classes) * counts[index])


def _weighted_nll(logits, labels, weights):
    """Weighted mean negative log-likelihood of ``labels`` under softmax(``logits``)."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return float(np.average(-log_p[np.arange(len(labels)), labels], weights=weights))


def _temperature(logits, labels, weights):
    """The temperature minimising the weighted negative log-likelihood of ``labels``."""
    from scipy.optimize import minimize_scalar

    result = minimize_scalar(lambda log_t: _weighted_nll(logits / np.exp(log_t), labels,
                                                         weights),
                             bounds=(-3, 3), method="bounded")
    return float(np.exp(result.x))


def _calibrated_logistic(x_train, y_train, x_choice, y_choice):
    """Logistic regression and temperature with the smallest held-out log-loss, for equal
    priors (``x_choice``, ``y_choice``: items kept out of the fit to choose on).

    The probabilities are for equal class priors: the regression weighs every class
    equally (``class_weight="balanced"``), and the temperature and the choice of C weigh
    the held-out items so (`_equal_prior_weights`). A head that learnt its training set's
    class mix would carry it into every survey (RadioGalaxyDataset's train split is 47 %
    FRII; its evaluation splits hold 50 sources of each class). C is chosen for calibrated
    probabilities (held-out negative log-likelihood after the temperature), not for
    accuracy: the most accurate C on RadioGalaxyDataset overfits, and its probabilities
    stay over- or under-confident whatever one temperature does.
    """
    from sklearn.linear_model import LogisticRegression

    from ._tasks import C_GRID

    weights = _equal_prior_weights(y_choice)
    best = None
    for c in C_GRID:
        model = LogisticRegression(C=c, class_weight="balanced", max_iter=3000)
        model.fit(x_train, y_train)
        logits = model.decision_function(x_choice)
        if logits.ndim == 1:
            logits = np.stack([-logits, logits], axis=1) / 2
        labels = np.searchsorted(model.classes_, y_choice)
        temperature = _temperature(logits, labels, weights)
        loss = _weighted_nll(logits / temperature, labels, weights)
        if best is None or loss < best[0]:
            best = (loss, model, temperature)
    return best[1], best[2]


def _stratified_carve(labels, candidates, share, seed=0):
    """``share`` of the ``candidates`` of each class (rounded; at least one, never all), as a
    mask.

    Raises
    ------
    ValueError
        A class has fewer than 2 candidates, so carving would leave it none to fit on.
    """
    carve = np.zeros(len(labels), bool)
    rng = np.random.default_rng(seed)
    for label in np.unique(labels[candidates]):
        members = np.flatnonzero(candidates & (labels == label))
        if len(members) < 2:
            raise ValueError(f"class {label} has {len(members)} training stamp(s); at least 2 "
                             "are needed to keep some out for choosing on (raise limit)")
        kept = min(len(members) - 1, max(1, round(share * len(members))))
        carve[rng.permutation(members)[:kept]] = True
    return carve


def fit_output_heads(embedder, root=None, *, limit=None, first_limit=None, finder="auto",
                     cache=None, n_components=OOD_COMPONENTS, ood_quantile=OOD_QUANTILE,
                     graph_heads=False, artefact_fields=ARTEFACT_FIELDS,
                     simulated_fields=SIMULATED_FIELDS, depth_fields=DEPTH_FIELDS,
                     count_windows=COUNT_WINDOWS,
                     count_peaks=True, stamp_arcsec=MORPHOLOGY_STAMP_ARCSEC,
                     catalogue_finders=None):
    """Fit the count, morphology and out-of-distribution heads of a model.

    - counts: a Poisson GLM (log link, so never negative) on standardised embeddings of
      270 arcsec tiles: FIRST tiles (components a finder finds with peak >= 5 sigma and a
      major axis of at most 2 beams) and simulated MeerKAT-like tiles, with and without
      calibration artefacts (true compact sources with peak >= 5 sigma), training splits
      only; the penalty is chosen on a fifth of the training tiles held out whole
      (`_poisson`). With ``count_windows`` the head reads each tile's windows
      (`radiofm.tiling.split_windows`), fitted on the windows' own counts, and a tile's
      count is their sum. Beside this head, fitted on
      every tile, a GLM per beam regime (`COUNT_REGIMES`: FIRST's tiles, the simulated
      MeerKAT-like ones) counts images of that beam (`radiofm.models.Heads.count_regime`),
      where it counts a held-out fifth of its training tiles better than the pooled GLM
      (per-tile Poisson deviance 1 % lower; ``regime_validation``). Each GLM carries a
      ``dispersion`` (`radiofm.models.Heads.count_errors`), measured on the same held-out
      fifth with the GLM fitted on the rest; the test figures are those of the head each
      data set is counted by (with ``within_1_error`` and ``variance_ratio``, how well the
      uncertainty covers the test tiles), and ``figures_pooled`` those of the pooled head.
      On the S/N stretch each GLM also records the range over its training fields of each
      field's median 5-sigma peaks per tile (``field_peaks``, `_field_peaks`): inference
      flags an image beyond it, deeper or shallower than any field the GLM was fitted on.
      A regime fitted on simulated skies alone also learns how its counts combine with a
      catalogue of the image made by each of ``catalogue_finders``
      (`radiofm.models.CatalogueCount`, `_catalogue_count`: each finder is run on every
      simulated sky; the probabilities and the combination on the training skies, out of
      fold), which ``radiofm annotate`` applies when it finds the sources
      itself with one of them; ``figures_catalogue`` holds the test tiles' figures counted
      that way, per finder;
    - morphology: multinomial logistic regression on RadioGalaxyDataset train (each
      image's central ``stamp_arcsec``, which becomes the model's stamp angle), less a
      stratified fifth of it (`CHOICE_SHARE`) on which the temperature is fitted and C
      chosen for the smallest log-loss (calibration before accuracy), every class weighted
      equally (probabilities for equal class priors); the literature valid split is an
      evaluation split and is not used; accuracy and ECE on test (15
      equal-width bins, and the sweep estimator, ``ece_test_sweep``:
      `expected_calibration_error`);
    - OOD references: PCA of the training tiles' (and training stamps') standardised
      embeddings, the thresholds at the ``ood_quantile`` of held-out in-distribution
      scores (a fifth of the training tiles kept out of the reference; the stamps carved
      off for choosing); the range of the training inputs' noise and the training beams,
      widened by `RANGE_FACTOR`.

    Parameters
    ----------
    embedder : str, path-like or embedder
        What `radiofm.evaluate.load_embedder` accepts (an exported ``.onnx`` model) or an
        embedder object (e.g. `radiofm.export.TorchEmbedder`).
    root : str or path-like, optional
        The data root.
    limit : int, optional
        At most this many items per split of each data set, for quick runs.
    first_limit : int, optional
        At most this many FIRST fields per split for the count tiles (default ``limit``).
    finder : {"auto", "bdsf", "photutils"}
        Source finder of the FIRST compact counts (catalogues are cached).
    cache : str or path-like, optional
        Folder where embeddings (per embedder and data set) and the simulated skies'
        catalogues (per finder and sky) are cached.
    n_components : int
        PCA components of the OOD references.
    ood_quantile : float
        Share of held-out in-distribution items under the OOD thresholds.
    artefact_fields : int
        Simulated skies with calibration artefacts (seeds from 2000) added to the count
        tiles, two thirds of them for training.
    simulated_fields : int
        Simulated skies without artefacts (seeds from 1000), two thirds for training.
    depth_fields : int
        Simulated skies with artefacts at noise levels of their own, log-uniform in
        `radiofm.evaluate._stamps.DEPTH_NOISE` (seeds from 3000), two thirds for training:
        the other skies are all at the simulator's 4 uJy/beam, where the finder merges fewer
        close sources than in deeper fields, which hold more sources above 5 sigma. They
        train the catalogue combinations' crowding correction alone (`_catalogue_count`);
        every other head is fitted as without them.
    count_windows : int
        Windows per tile side the count head reads (1: the whole tile). Its test figures
        are per tile (the sum over each tile's windows).
    count_peaks : bool
        For a model on the S/N stretch, each regime's count GLM may also read each window's
        peaks and islands at or above 5 sigma (`radiofm.models.peak_features`, its
        ``peak_level``), where they help on its held-out tiles (`_beam_regimes`); other
        stretches give the pixels no S/N meaning, and their count GLMs read the embedding
        alone.
    stamp_arcsec : float
        Side of the morphology stamps, cut from the centre of RadioGalaxyDataset's 540
        arcsec images (rounded to its 1.8 arcsec pixels); inference frames sources by it
        (`radiofm.models.ModelSpec`'s ``stamp_arcsec``).
    catalogue_finders : sequence of str, optional
        Finders (`radiofm.sources.find_sources` methods) whose catalogues the simulated
        regime's counts learn to combine with; default photutils, and pyBDSF where it is
        installed (the finders ``radiofm annotate --finder auto`` picks from).
    graph_heads : bool
        Also return linear heads on the raw embedding for `radiofm.export`'s graph outputs
        (``n_compact``: ridge regression; ``morph_logits``: the calibrated logistic head
        folded), fitted on the same embeddings, for radiofm versions that read no numpy
        heads.

    Returns
    -------
    heads : dict
        JSON-ready heads in the layout of `radiofm.models.Heads` (checked by
        `radiofm.models.serialize_heads`), with test figures under ``figures``.
    graph : dict
        Only with ``graph_heads``: linear heads in the layout of `radiofm.evaluate.fit_heads`.
    """
    embedder = embedder if hasattr(embedder, "embed") else load_embedder(embedder)
    stretch = normalization_of(embedder)
    from ._stamps import _simulated_catalogues, _simulated_count_tiles

    morphology = load_task_data("morphology", root=root, limit=limit,  # framed before the
                                normalization=stretch, stamp_arcsec=stamp_arcsec)  # count fits

    # on the S/N stretch a window's 5-sigma peaks: read by the count GLMs where they help
    # (count_peaks), and measured for each GLM's range of fields (`_field_peaks`)
    level = (float(np.arcsinh(COUNT_SNR / stretch.softening)) if stretch.method == "snr"
             else None)
    peak_level = level if count_peaks else None

    size = 1024 if limit is not None else 2048
    simulated_skies = {  # (fields, size, first_seed, artefacts, depths) of count_data's skies
        "counts_simulated": (3 if limit is not None else simulated_fields, size, 1000, False,
                             False),
        "counts_simulated_artefacts": (artefact_fields, size, 2000, True, False),
        "counts_simulated_depths": (depth_fields, size, 3000, True, True)}

    def count_data(windows, peak_level=None):
        parts = {
            "counts_first": load_task_data("counts_first", root=root, finder=finder,
                                           limit=limit if first_limit is None else first_limit,
                                           normalization=stretch, count_windows=windows),
            "counts_simulated": load_task_data("counts_simulated", root=root, limit=limit,
                                               normalization=stretch, count_windows=windows,
                                               simulated_fields=simulated_fields),
        }
        tag = {"counts_first": f"counts_first_{finder}_{first_limit or limit}",
               "counts_simulated": f"counts_simulated_{simulated_fields}_{limit}"}
        for name, short in (("counts_simulated_artefacts", "artefacts"),
                            ("counts_simulated_depths", "depths")):
            fields, _, first_seed, artefacts, depths = simulated_skies[name]
            if fields:  # skies with calibration artefacts, as README's example has
                parts[name] = _simulated_count_tiles(
                    stretch, fields, size, first_seed=first_seed, artefacts=artefacts,
                    depths=depths, windows=windows)
                tag[name] = f"counts_{short}_{fields}_{limit}"
        embedded = {name: _embed(embedder, data, cache, f"{tag[name]}_w{windows}")
                    for name, data in parts.items()}
        x = np.concatenate([embedded[name][0] for name in parts])
        peaks = None if peak_level is None else np.concatenate([
            peak_features(data.prepared(embedder.input_size), peak_level)
            for data in parts.values()])
        noise = np.concatenate([embedded[name][1] for name in parts])
        y = np.concatenate([data.target for data in parts.values()])
        split = np.concatenate([data.split for data in parts.values()])
        source = np.concatenate([[name] * len(data) for name, data in parts.items()])
        tile, offset, offsets = [], 0, {}  # which tile of all parts each item belongs to
        field, field_offset = [], 0  # and which field
        for name, data in parts.items():
            tile.append(data.extra["tile"] + offset)
            offsets[name] = offset
            offset += int(data.extra["tile"].max()) + 1
            field.append(data.extra["field"] + field_offset)
            field_offset += int(data.extra["field"].max()) + 1
        return (parts, x, peaks, noise, y, split, source, np.concatenate(tile), offsets,
                np.concatenate(field))

    # tiles: the OOD reference, the noise range and the graph heads; windows: the count head
    whole_tiles = count_data(1)
    parts, x, _, noise, y, split, source, _, _, _ = whole_tiles
    train = (split == "train") & (source != DEPTH_SET)  # the depth skies train one term
    _, xc, peaks_c, _, yc, split_c, source_c, tile_c, offsets_c, field_c = (
        whole_tiles if count_windows == 1 and level is None
        else count_data(count_windows, level))
    train_c = split_c == "train"
    glm_train = train_c & (source_c != DEPTH_SET)
    counts = _poisson(xc[glm_train], yc[glm_train], tile_c[glm_train])
    regimes, validation, pooled_glm_dispersion = _beam_regimes(
        xc, yc, glm_train, source_c, tile_c, peaks=peaks_c if peak_level is not None else None,
        peak_level=peak_level)
    if level is not None:  # each GLM's training fields' median 5-sigma peaks per tile
        for glm, sets in [(counts, None)] + [(regime, _REGIME_SETS[regime["name"]])
                                             for regime in regimes]:
            rows = glm_train if sets is None else glm_train & np.isin(source_c, sets)
            glm["field_peaks"] = {"level": level,
                                  "range": _field_peaks(peaks_c[:, 0], tile_c, field_c, rows)}
    out_of_fold = {regime["name"]: _out_of_fold_counts(regime, xc, yc, glm_train, source_c,
                                                       tile_c, peaks_c)
                   for regime in _catalogue_regimes(regimes)}
    deep_predictions = {}  # regime -> its depth skies' training tiles, truths and counts
    rows = train_c & (source_c == DEPTH_SET)
    for regime in _catalogue_regimes(regimes):
        if rows.any() and DEPTH_SET in _REGIME_SETS[regime["name"]]:
            tiles, cell = np.unique(tile_c[rows], return_inverse=True)
            deep_predictions[regime["name"]] = (
                tiles, np.bincount(cell, yc[rows]),
                np.bincount(cell, _regime_rate(regime, xc, peaks_c, rows)))
    if catalogue_finders is None:
        catalogue_finders = ("photutils", "bdsf") if HAS_BDSF else ("photutils",)
    if not _catalogue_regimes(regimes):
        catalogue_finders = ()  # no regime would combine with them: find nothing
    catalogue_sources = {  # what each finder finds in the simulated skies, tiles numbered
        catalogue_finder: {  # as the count items are
            name: _simulated_catalogues(fields, size, first_seed=first_seed,
                                        artefacts=artefacts, depths=depths,
                                        finder=catalogue_finder, cache=cache)
            for name, (fields, size, first_seed, artefacts, depths) in simulated_skies.items()
            if name in offsets_c}
        for catalogue_finder in catalogue_finders}
    for found in catalogue_sources.values():
        for name, sources in found.items():
            sources["tile"] = sources["tile"] + offsets_c[name]
    _add_catalogue_counts(regimes, validation, out_of_fold, catalogue_sources,
                          np.unique(tile_c[train_c]), deep_predictions)
    if pooled_glm_dispersion is not None:  # else no tile was held out, nor has any regime
        counts["dispersion"] = pooled_glm_dispersion
    # each data set is counted by its beam's regime head where one is kept, as at inference
    rate = _poisson_rate(counts, xc)
    pooled_rate = rate.copy()
    dispersion = np.full(len(xc), counts.get("dispersion", np.nan))  # of each item's head
    pooled_dispersion = dispersion.copy()
    for regime in regimes:
        rows = np.isin(source_c, _REGIME_SETS[regime["name"]])
        rate[rows] = _regime_rate(regime, xc, peaks_c, rows)
        dispersion[rows] = regime["dispersion"]
    count_figures = _test_tile_figures(tile_c, source_c, split_c, yc, rate, dispersion)
    catalogue_figures = _catalogue_test_figures(regimes, catalogue_sources, tile_c, source_c,
                                                split_c, yc, rate)
    pooled_figures = _test_tile_figures(tile_c, source_c, split_c, yc, pooled_rate,
                                        pooled_dispersion)
    log.info("count heads (Poisson GLM, %d x %d windows): test %s per beam regime, %s "
             "pooled (alpha %g)", count_windows, count_windows, count_figures,
             pooled_figures, counts["alpha"])
    counts.update(regimes=regimes, regime_validation=validation,
                  figures_pooled=pooled_figures, figures_catalogue=catalogue_figures)
    counts.update(
        kind="poisson-glm", tile_arcsec=SIMULATED_TILE_ARCSEC, snr=COUNT_SNR,
        windows=int(count_windows),
        description=(
            f"expected number of compact components (fitted major axis at most 2 beams, any "
            f"S_Code) with peak >= {COUNT_SNR:g} sigma in the tile, for tiles of "
            f"{SIMULATED_TILE_ARCSEC:g} arcsec (Poisson GLM on the embedding"
            + (f" of each of its {count_windows} x {count_windows} windows, summed"
               if count_windows > 1 else "") + "; masked where ood_flag)"),
        figures=count_figures)

    # the reference is fitted on four fifths of the training tiles, its threshold chosen on
    # the other fifth: in-distribution tiles it has not seen (test tiles stay for reports)
    rows = np.flatnonzero(train)
    held = np.zeros(len(x), bool)
    held[np.random.default_rng(1).permutation(rows)[: len(rows) // 5]] = True
    tiles = _reference(x[train & ~held], x[held], n_components, ood_quantile)
    low, high = np.quantile(noise[train], [0.005, 0.995])

    xm, _ = _embed(embedder, morphology, cache, f"morphology_{limit}")
    labels = np.asarray(morphology.target)
    m_choice = _stratified_carve(labels, morphology.split == "train", CHOICE_SHARE)
    m_train, m_test = (morphology.split == "train") & ~m_choice, morphology.split == "test"
    mean, scale = _scaler(xm[m_train])
    zm = (xm - mean) / scale
    logistic, temperature = _calibrated_logistic(zm[m_train], labels[m_train], zm[m_choice],
                                                 labels[m_choice])
    coef, intercept = logistic.coef_, logistic.intercept_
    if coef.shape[0] == 1:  # two classes: sklearn keeps one row of weights
        coef, intercept = np.concatenate([-coef, coef]) / 2, np.array([-1, 1]) * intercept / 2
    logits = zm @ coef.T + intercept

    def softmax(values):
        shifted = np.exp(values - values.max(axis=1, keepdims=True))
        return shifted / shifted.sum(axis=1, keepdims=True)

    morph_figures = {
        "accuracy_test": float((logits[m_test].argmax(1) == labels[m_test]).mean()),
        "ece_test_uncalibrated": expected_calibration_error(softmax(logits[m_test]),
                                                            labels[m_test]),
        "ece_test": expected_calibration_error(softmax(logits[m_test] / temperature),
                                               labels[m_test]),
        "ece_test_sweep": expected_calibration_error(softmax(logits[m_test] / temperature),
                                                     labels[m_test], "sweep"),
    }
    log.info("morphology head: temperature %.3g, test %s", temperature, morph_figures)
    stamps = _reference(xm[m_train], xm[m_choice], n_components, ood_quantile)
    heads = {
        "embedding_dim": int(x.shape[1]),
        "counts": counts,
        "morphology": {"kind": "multinomial-logistic", "mean": mean, "scale": scale,
                       "coef": coef, "intercept": intercept, "temperature": temperature,
                       "C": float(logistic.C), "classes": list(morphology.class_names),
                       "stamp_arcsec": round(morphology.stamps.shape[1]
                                             * FIRST_PIXEL.to_value("arcsec"), 6),
                       "figures": morph_figures},
        "ood": {"tiles": tiles, "stamps": stamps,
                "noise_range": [float(low / RANGE_FACTOR), float(high * RANGE_FACTOR)],
                "beam_range_arcsec": [TRAINING_BEAMS_ARCSEC[0] / RANGE_FACTOR,
                                      TRAINING_BEAMS_ARCSEC[1] * RANGE_FACTOR]},
        "fitted": {"radiofm_version": radiofm_version(), "embedder": str(embedder.name),
                   "date": datetime.now(UTC).isoformat(timespec="seconds"),
                   "items": {**{name: len(d) for name, d in parts.items()},
                             "morphology_train": int(m_train.sum()),
                             "morphology_choice": int(m_choice.sum()),
                             "morphology_test": int(m_test.sum())},
                   "finder": finder, "limit": limit, "first_limit": first_limit},
    }
    import json

    heads = json.loads(serialize_heads(heads))
    if not graph_heads:
        return heads
    return heads, _linear_heads(x[train], y[train], coef / temperature,
                                intercept / temperature, mean, scale, heads)


def _linear_heads(x_train, y_train, coef, intercept, mean, scale, heads):
    """Heads on the raw embedding for an exported graph (see `fit_output_heads`)."""
    from sklearn.linear_model import RidgeCV

    from ._harness import _bounded_scaler, _fold
    from ._stamps import SIMULATED_PIXEL
    from ._tasks import ALPHAS

    scaler = _bounded_scaler(x_train)
    ridge = RidgeCV(alphas=ALPHAS).fit(scaler.transform(x_train), y_train)
    count_coef, count_intercept = _fold(scaler, ridge.coef_[None],
                                        np.atleast_1d(ridge.intercept_))
    weights = coef / scale
    morph = heads["morphology"]
    return {
        "count": {"coef": count_coef[0].astype(np.float32),
                  "intercept": float(count_intercept[0]),
                  "tile_arcsec": heads["counts"]["tile_arcsec"],
                  "pixel_scales_arcsec": [FIRST_PIXEL.to_value("arcsec"),
                                          SIMULATED_PIXEL.to_value("arcsec")]},
        "morphology": {"coef": weights.astype(np.float32),
                       "intercept": (intercept - weights @ mean).astype(np.float32),
                       "classes": morph["classes"], "stamp_arcsec": morph["stamp_arcsec"]},
    }


def write_heads(model, output, *, heads=None, box_pixels=None, overwrite=False, **options):
    """Write a copy of an exported model with new numpy heads in its ``heads`` metadata.

    The graph is copied unchanged; only the metadata is rewritten (``heads``, and
    ``class_names`` and ``stamp_arcsec`` to match the morphology head; with ``box_pixels``,
    the ``normalization`` too). The graph's own ``morph_logits`` output, for radiofm
    versions that read no numpy heads, keeps the stamps it was exported with. Needs the
    ``onnx`` package (in the ``train`` extra).

    Parameters
    ----------
    model : str or path-like
        A registered model name or an ``.onnx`` file written by `radiofm.export`.
    output : str or path-like
        The ``.onnx`` file to write.
    heads : dict, optional
        Heads in the layout of `radiofm.models.Heads`; default: `fit_output_heads` on the
        model's own embeddings (computed with onnxruntime).
    box_pixels : int, optional
        The copy measures its S/N stretch's background and noise in boxes of this many
        pixels (`radiofm.tiling.NormalizationSpec`'s ``box_pixels``), and its heads are
        fitted on inputs stretched that way. The stretch itself (arcsinh of S/N, its
        softening, the clipped-stamp fallback) stays the one the backbone was trained with.
    overwrite : bool
        Replace an existing ``output``.
    **options
        Keyword arguments of `fit_output_heads` (``root``, ``finder``, ``limit``,
        ``first_limit``, ``cache``).

    Returns
    -------
    figures : dict
        The heads' test figures (counts per data set, morphology accuracy and ECE).

    Raises
    ------
    ImportError
        The ``onnx`` package is missing.
    FileExistsError
        ``output`` exists and ``overwrite`` is False.
    ValueError
        ``box_pixels`` for a model whose stretch is not "snr", or is not a valid box size.
    """
    import json

    from ..models import resolve_model

    try:
        import onnx
    except ImportError as error:
        raise ImportError(f"writing heads into an ONNX file needs the onnx package ({error}), "
                          "which the train extra installs: pip install -c constraints.txt "
                          "'radiofm[train]'") from error
    source, _ = resolve_model(model)
    output = Path(output)
    if output.exists() and not overwrite:
        raise FileExistsError(f"would overwrite {output}; pass overwrite=True (--overwrite)")
    if output.resolve() == Path(source).resolve():
        raise ValueError(f"write the new model to another file than {source}")
    proto = onnx.load(str(source))
    props = {prop.key: prop.value for prop in proto.metadata_props}
    output.parent.mkdir(parents=True, exist_ok=True)
    if box_pixels is not None:
        props["normalization"] = _boxed_stretch(props["normalization"], box_pixels)
        if heads is None:  # fitted through the copy's stretch: stage it first
            staged = output.with_suffix(".staged.onnx")
            _save_with_metadata(proto, props, staged)
            try:
                heads = fit_output_heads(str(staged), **options)
            finally:
                staged.unlink(missing_ok=True)
    if heads is None:
        heads = fit_output_heads(str(source), **options)
    text = serialize_heads(heads)
    heads = json.loads(text)
    props["heads"] = text
    props["class_names"] = json.dumps(heads["morphology"]["classes"], sort_keys=True)
    if "stamp_arcsec" in heads["morphology"]:  # heads that name their stamps
        props["stamp_arcsec"] = repr(float(heads["morphology"]["stamp_arcsec"]))
    _save_with_metadata(proto, props, output)
    return {"counts": heads["counts"].get("figures"),
            "morphology": heads["morphology"].get("figures"),
            "ood_thresholds": {name: heads["ood"][name]["threshold"]
                               for name in ("tiles", "stamps") if name in heads["ood"]}}


def _boxed_stretch(stored, box_pixels):
    """A model's stored ``normalization`` (JSON) measured in boxes of ``box_pixels``."""
    import json
    from dataclasses import replace

    from ..tiling import NormalizationSpec

    stretch = NormalizationSpec.from_value(json.loads(stored))
    if stretch.method != "snr":
        raise ValueError(f"box_pixels measures the background and noise of the 'snr' stretch; "
                         f"this model uses {stretch.method!r}")
    return json.dumps(replace(stretch, box_pixels=box_pixels).to_dict(), sort_keys=True)


def _save_with_metadata(proto, props, path):
    """Write the graph ``proto`` with metadata ``props`` (checked first) to ``path``, whole
    or not at all."""
    import onnx

    from ..models import parse_metadata

    parse_metadata(props, source=str(path))
    del proto.metadata_props[:]
    onnx.helper.set_model_props(proto, props)
    with atomic_path(path, overwrite=True) as partial:
        onnx.save_model(proto, str(partial))

"""Evaluation inputs: normalised stamps and labels for every task, cut the way inference
cuts them (`radiofm.tiling.prepare_tiles` with the per-parent-image normalisation)."""

import hashlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import astropy.units as u
import numpy as np

from .._atomic import atomic_path
from ..catalogs import count_in_tiles
from ..datasets import (
    FIRST_BEAM,
    FIRST_PIXEL,
    GUARD_RADIUS,
    cache_dir,
    evaluation_positions,
    exclude_near,
    load_first_fields,
    load_mgcls,
    load_mirabest,
    load_radio_galaxy_dataset,
    mgcls_flux,
    mgcls_normalization,
    radio_galaxy_flux,
    radio_galaxy_normalization,
    radiogalaxy_positions,
)
from ..tiling import NormalizationSpec, prepare_tiles, split_windows, tile_image

__all__ = ["TaskData", "cross_sample_data", "fit_stretch", "load_task_data", "normalised_stamps"]

log = logging.getLogger("radiofm")

FIRST_TILE = 150  # pixels of 1.8": 270 arcsec, the MiraBest stamp size
SIMULATED_PIXEL = 1.1 * u.arcsec  # make_radio_sky's default pixel
SIMULATED_TILE_ARCSEC = FIRST_TILE * 1.8
FIRST_SNR = 5.0  # a FIRST compact component counts when its peak reaches 5 sigma
COMPACT_BEAMS = 2.0  # ... and its fitted major axis is at most 2 beams
#: Noise range (Jy/beam) of the count heads' depth skies (`_simulated_sky` with ``depths``):
#: log-uniform around the simulator's 4 uJy/beam, from MIGHTEE's depth (1.3-2.7 uJy/beam,
#: DR1, Hale et al., arXiv:2411.04958) to short MeerKAT tracks.
DEPTH_NOISE = (1.5e-6, 12e-6)
CHUNK = 100  # FIRST fields per cache update
# versions of each finder's cached catalogues (FIRST fields' rows: position, S_Code, peak in
# Jy/beam, major in arcsec; simulated skies' whole catalogues); photutils v3: background and
# rms measured in two passes, leaving out the first pass's islands; bdsf v4: pyBDSF's rms
# measured in boxes of ten beams; bdsf v5: the image handed to pyBDSF in double precision
CACHE_VERSIONS = {"photutils": "v3", "bdsf": "v5"}


@dataclass
class TaskData:
    """Raw stamps and labels of one evaluation data set, split for probes.

    Attributes
    ----------
    name : str
    stamps : `~numpy.ndarray`
        (N, H, W) pixels of each item, before resampling (float32; NaN = blank).
    normalizations : list
        One fitted `~radiofm.tiling.Normalization` per item (fitted on its parent image).
    target : `~numpy.ndarray`
        Class index, count or redshift per item.
    split : `~numpy.ndarray` of str
        ``"train"``, ``"test"``, ``"excluded"`` (used by no probe: training items near an
        evaluation source, RadioGalaxyDataset's literature valid split), or ``"all"`` for
        unsupervised tasks.
    class_names : tuple of str
    extra : dict
        Per-item arrays a task needs besides the target (e.g. anomaly scores).
    """

    name: str
    stamps: np.ndarray
    normalizations: list
    target: np.ndarray
    split: np.ndarray
    class_names: tuple = ()
    extra: dict = field(default_factory=dict)
    _cache: dict = field(default_factory=dict, repr=False)

    def __len__(self):
        return len(self.stamps)

    @property
    def key(self):
        """What feature caches know these stamps by (shared by relabelled copies)."""
        return self.extra.get("stamps_key", self.name)

    @property
    def windowed(self):
        """Whether the items are windows of tiles (several share an ``extra["tile"]``)."""
        tile = self.extra.get("tile")
        return tile is not None and len(np.unique(tile)) < len(self)

    def relabel(self, name, target):
        """The same stamps (and cached inputs) under another name and target."""
        return TaskData(name, self.stamps, self.normalizations, np.asarray(target), self.split,
                        self.class_names, {**self.extra, "stamps_key": self.key}, self._cache)

    def framed(self, side, name=None):
        """The items cut to their central ``side`` x ``side`` pixels, each keeping the
        normalisation fitted on its whole stamp (a tighter frame of the same sources), named
        ``name`` (default: this name and the side).

        Raises
        ------
        ValueError
            ``side`` is below 2 or larger than the stamps.

        Examples
        --------
        >>> import numpy as np
        >>> data = TaskData("toy", np.zeros((3, 300, 300), np.float32), [None] * 3,
        ...                 np.arange(3), np.array(["train"] * 3))
        >>> data.framed(150).stamps.shape
        (3, 150, 150)
        """
        return TaskData(name or f"{self.name}, central {side} pixels",
                        central_pixels(self.stamps, side),
                        self.normalizations, self.target, self.split, self.class_names,
                        {key: value for key, value in self.extra.items() if key != "stamps_key"})

    def prepared(self, size):
        """(N, size, size) float32 stamps, resampled then normalised (cached per size)."""
        if size not in self._cache:
            self._cache[size] = normalised_stamps(self.stamps, self.normalizations, size)
        return self._cache[size]


def central_pixels(stamps, side):
    """The central ``side`` x ``side`` pixels of each of (N, H, W) stamps.

    Raises
    ------
    ValueError
        ``side`` is below 2 or larger than the stamps.
    """
    height, width = stamps.shape[1:]
    if not 2 <= side <= min(height, width):
        raise ValueError(f"cannot cut {side} x {side} pixels from stamps of {height} x {width}")
    top, left = (height - side) // 2, (width - side) // 2
    return stamps[:, top:top + side, left:left + side]


def normalised_stamps(stamps, normalizations, size):
    """Resample stamps to ``size`` and apply each one's normalisation.

    Parameters
    ----------
    stamps : `~numpy.ndarray`
        (N, H, W) pixels.
    normalizations : sequence of `~radiofm.tiling.Normalization` or None
        One per stamp; None gives an all-zero stamp (an image with no contrast).
    size : int
        Output side in pixels.
    """
    out = np.zeros((len(stamps), size, size), np.float32)
    for k, stretch in enumerate(normalizations):
        if stretch is not None:
            out[k] = prepare_tiles(stamps[k : k + 1], stretch, size)[0]
    return out


def fit_stretch(image, normalization):
    """A model's stretch fitted on one parent image: the one place the harness fits it.

    Parameters
    ----------
    image : `~numpy.ndarray`
        The parent image's pixels.
    normalization : `~radiofm.tiling.NormalizationSpec`, str or dict
        The stretch with all its options (a method name takes the default options).
    """
    return NormalizationSpec.from_value(normalization).fit(image)


def _own_normalizations(images, normalization):
    """A normalisation fitted on each image itself (None for an image with no contrast)."""
    out = []
    for image in images:
        try:
            out.append(fit_stretch(image, normalization))
        except ValueError:
            out.append(None)
    return out


def _guarded_train(split, positions, guard):
    """Training items within 1 arcmin of an evaluation source move to split "excluded"."""
    split = np.array(split, dtype=object)
    train = split == "train"
    near = ~exclude_near(positions[train], guard, GUARD_RADIUS)
    split[np.flatnonzero(train)[near]] = "excluded"
    return split.astype(str)


def _without_evaluation_valid(split):
    """RadioGalaxyDataset's literature valid split moves to split "excluded".

    The data README makes it an evaluation split: no probe is fitted on it and no
    hyper-parameter is chosen on it. Whatever needs held-out items to choose on carves them
    from train (`radiofm.evaluate.fit_output_heads`), or cross-validates on train.
    """
    split = np.asarray(split).astype(str)
    return np.where(split == "valid", "excluded", split)


def load_task_data(task, root=None, *, limit=None, normalization="percentile", finder="auto",
                   simulated_fields=6, simulated_size=2048, count_windows=1,
                   stamp_arcsec=None):
    """The data of one evaluation task.

    Parameters
    ----------
    task : {"counts_first", "counts_simulated", "frii", "morphology", "crosssample", \
"anomaly", "redshift"}
        Which data: FIRST tiles with compact counts, simulated MeerKAT-like tiles with true
        counts, MBFRConfident, RadioGalaxyDataset, MBFRConfident with the FRI and FRII
        sources of RadioGalaxyDataset (`cross_sample_data`), MGCLS cutouts, FIRST field
        stamps with redshifts.
    root : str or path-like, optional
        The data root (`radiofm.datasets.data_root`).
    limit : int, optional
        At most this many items per split (evenly spaced; per split and class for
        RadioGalaxyDataset, whose file is sorted by class), for quick runs (simulated
        counts then use three fields of at most 1024 pixels).
    normalization : `~radiofm.tiling.NormalizationSpec`, str or dict
        The stretch with all its options, fitted per parent image.
    finder : {"auto", "bdsf", "photutils"}
        Source finder for the FIRST counts (catalogues are cached in
        `radiofm.datasets.cache_dir`).
    simulated_fields, simulated_size : int
        Simulated fields (two thirds train, the rest test) and their side in pixels.
    count_windows : int
        For the count tasks: cut each tile into ``count_windows`` x ``count_windows``
        windows (`radiofm.tiling.split_windows`), one item each with its own count;
        ``extra["tile"]`` says which tile (of this data set) a window belongs to.
    stamp_arcsec : float, optional
        For ``"morphology"``: cut RadioGalaxyDataset's 540 arcsec images to their central
        ``stamp_arcsec`` (in whole pixels of 1.8 arcsec; `TaskData.framed`), as a model
        whose morphology head was fitted so frames its sources (its ``stamp_arcsec``).

    Returns
    -------
    data : `TaskData`

    Raises
    ------
    ValueError
        ``stamp_arcsec`` is larger than RadioGalaxyDataset's images.
    """
    if task == "frii":
        data = load_mirabest(root, view="confident").head(limit)
        guard = evaluation_positions(root)
        split = _guarded_train(data.table["split"], data.table["sky_center"], guard)
        images = data.images.astype(np.float32)
        return TaskData("MBFRConfident", images, _own_normalizations(images, normalization),
                        data.labels, split, data.class_names)
    if task == "crosssample":
        return cross_sample_data(root, limit=limit, normalization=normalization)
    if task == "morphology":
        data = load_radio_galaxy_dataset(root).head(limit, by="label")
        images = radio_galaxy_flux(data.images)
        data = TaskData("RadioGalaxyDataset", images,
                        _own_normalizations(images, radio_galaxy_normalization(normalization)),
                        data.labels, _without_evaluation_valid(data.table["split"]),
                        data.class_names)
        if stamp_arcsec is None:
            return data
        side = int(round(stamp_arcsec / FIRST_PIXEL.to_value(u.arcsec)))
        angle = side * FIRST_PIXEL.to_value(u.arcsec)
        return data.framed(side, name=f"RadioGalaxyDataset, central {angle:g} arcsec")
    if task == "anomaly":
        data = load_mgcls(root)
        if limit is not None:  # keep every author-scored cutout, thin the others
            scored = np.asarray(data.table["author_score"]) >= 0
            others = np.flatnonzero(~scored)
            data = data.subset(np.sort(np.concatenate(
                [np.flatnonzero(scored)[:limit], others[:: max(1, len(others) // limit)]])))
        images = mgcls_flux(data.images, data.table["peak_flux"])
        return TaskData("MGCLS", images,
                        _own_normalizations(images, mgcls_normalization(normalization)),
                        np.asarray(data.table["author_score"]),
                        np.full(len(data), "all"),
                        extra={"protege_rank": np.asarray(data.table["protege_rank"])})
    if task == "redshift":
        data = load_first_fields(root, limit=limit)
        half = FIRST_TILE // 2
        stamps = data.images[:, 150 - half:150 + half, 150 - half:150 + half]
        stretches = _own_normalizations(data.images, normalization)
        return TaskData("FIRST fields", stamps, stretches,
                        np.asarray(data.table["redshift"], dtype=float),
                        np.asarray(data.table["split"]).astype(str))
    if task == "counts_first":
        return _first_count_tiles(root, limit, normalization, finder, count_windows)
    if task == "counts_simulated":
        if limit is not None:  # quick runs: three small fields
            simulated_fields, simulated_size = 3, min(simulated_size, 1024)
        return _simulated_count_tiles(normalization, simulated_fields, simulated_size,
                                      windows=count_windows)
    raise ValueError(f"unknown evaluation task data {task!r}")


def _first_count_tiles(root, limit, normalization, finder, windows=1):
    """2 x 2 tiles of 150 px per FIRST field, with the compact components a finder counts in
    each: the target counts components of any S_Code whose peak reaches 5 times the field's
    robust noise and whose fitted major axis is at most 2 beams; ``extra["n_single"]`` is
    the older label, sources with S_Code 'S' only (each per window with ``windows``)."""
    from ..image import read_image

    fields = load_first_fields(root, limit=limit)
    catalogues = first_field_catalogues(fields, finder)
    stamps, stretches, counts, compact5, splits, field = [], [], [], [], [], []
    for k, (image, wcs, row) in enumerate(zip(fields.images, fields.wcs, fields.table,
                                              strict=True)):
        tiles = tile_image(read_image(image, wcs=wcs), FIRST_TILE, min_valid=0.5)
        catalogue = catalogues[row["file"]]
        counted = count_in_tiles(catalogue, tiles, windows=windows)
        stretch = fit_stretch(image, normalization)
        strong = first_count_label(catalogue, image)
        strong_counts = count_in_tiles(catalogue, tiles, select=strong, windows=windows)
        for tile, n_strong in zip(counted, strong_counts["n_compact"], strict=True):
            stamps.append(image[tile["y_min"]:tile["y_max"], tile["x_min"]:tile["x_max"]])
            counts.append(tile["n_compact"])
            compact5.append(n_strong)
            stretches.append(stretch)
            splits.append(row["split"])
            field.append(k)
    return _count_data("FIRST tiles", stamps, stretches, compact5, splits, windows, field,
                       n_single=counts)


def _count_data(name, stamps, stretches, counts, splits, windows, field, **extra):
    """TaskData of count tiles, or of their windows (one item each) with ``windows`` > 1;
    ``extra["tile"]`` is each item's tile, ``extra["field"]`` the field (image) of each
    tile, as numbered in ``field``."""
    cells = windows * windows
    if windows > 1:  # another data set: feature caches know data sets by name
        name = f"{name}, {windows} x {windows} windows"
    extra = {key: np.asarray(value, float).reshape(-1) for key, value in extra.items()}
    extra["tile"] = np.repeat(np.arange(len(splits)), cells)
    extra["field"] = np.repeat(np.asarray(field, int), cells)
    return TaskData(name, split_windows(np.stack(stamps), windows),
                    [stretch for stretch in stretches for _ in range(cells)],
                    np.asarray(counts, float).reshape(-1),
                    np.repeat(np.asarray(splits).astype(str), cells), extra=extra)


def first_count_label(catalogue, image):
    """Which components of a FIRST field's catalogue its count label counts.

    The label of the FIRST count tiles, the one the count heads learn: components of any
    S_Code whose peak reaches `FIRST_SNR` times the field's robust noise and whose fitted
    major axis is at most `COMPACT_BEAMS` FIRST beams.

    Parameters
    ----------
    catalogue : `~astropy.table.Table`
        The field's catalogue (``peak`` in the image's units, ``major`` in arcsec), from
        `first_field_catalogues`.
    image : `~numpy.ndarray`
        The field's pixels (its noise is measured on them).

    Returns
    -------
    counted : `~numpy.ndarray`
        (N components,) bool.

    Examples
    --------
    >>> from astropy.table import Table
    >>> rng = np.random.default_rng(0)
    >>> field = rng.normal(0.0, 1e-4, (300, 300))  # noise 0.1 mJy/beam
    >>> catalogue = Table({"peak": [1e-3, 1e-3, 2e-4], "major": [6.0, 30.0, 6.0]})
    >>> first_count_label(catalogue, field).tolist()  # bright and compact only
    [True, False, False]
    """
    _, noise = _robust_noise(image)
    return (np.asarray(catalogue["peak"], float) >= FIRST_SNR * noise) & (
        np.asarray(catalogue["major"], float) <= COMPACT_BEAMS * FIRST_BEAM.to_value(u.arcsec))


def _robust_noise(image):
    """(background, noise) of an image: sigma-clipped median and MAD standard deviation."""
    from astropy.stats import sigma_clipped_stats

    values = np.asarray(image, dtype=np.float32)
    median, _, noise = sigma_clipped_stats(values[np.isfinite(values)], sigma=3.0, maxiters=5,
                                           stdfunc="mad_std")
    return float(median), float(noise)


def first_field_catalogues(fields, finder="auto", processes=None):
    """Source catalogues of FIRST fields (beam 5.4", 1.4 GHz), cached per finder.

    Fields missing from the cache (``first_fields_<finder>_<version>.ecsv`` in
    `radiofm.datasets.cache_dir`) are searched in parallel processes, and the cache is
    saved after every chunk of fields, so an interrupted run keeps what it found.

    Parameters
    ----------
    fields : `~radiofm.datasets.ImageSet`
        From `radiofm.datasets.load_first_fields`.
    finder : {"auto", "bdsf", "photutils"}
        pyBDSF, photutils, or pyBDSF when it is installed.
    processes : int, optional
        Worker processes (default: the number of CPUs).

    Returns
    -------
    catalogues : dict
        File name -> catalogue (``sky_center``, ``s_code``).
    """
    from concurrent.futures import ProcessPoolExecutor

    from astropy.table import QTable, vstack

    from .._optional_deps import HAS_BDSF

    method = ("bdsf" if HAS_BDSF else "photutils") if finder == "auto" else finder
    path = cache_dir() / f"first_fields_{method}_{CACHE_VERSIONS[method]}.ecsv"
    cached = QTable.read(path) if path.is_file() else None
    done = set() if cached is None else set(np.asarray(cached["file"]))
    todo = [(image, wcs, row["file"]) for image, wcs, row
            in zip(fields.images, fields.wcs, fields.table, strict=True)
            if row["file"] not in done]
    if todo:
        log.info("finding sources in %d FIRST fields with %s", len(todo), method)
        with ProcessPoolExecutor(max_workers=processes or os.cpu_count()) as pool:
            for start in range(0, len(todo), CHUNK):
                chunk = todo[start:start + CHUNK]
                found = list(pool.map(_field_sources, *zip(*chunk, strict=True),
                                      [method] * len(chunk)))
                cached = vstack([t for t in (cached, *found) if t is not None])
                with atomic_path(path, overwrite=True) as partial:
                    cached.write(partial)
    out = {}
    for wcs, row in zip(fields.wcs, fields.table, strict=True):
        rows = cached[cached["file"] == row["file"]]
        rows = rows[np.isfinite(np.asarray(rows["x_center"], dtype=float))]
        out[row["file"]] = QTable({
            "sky_center": wcs.pixel_to_world(rows["x_center"], rows["y_center"]),
            "s_code": rows["s_code"], "peak": np.asarray(rows["peak"], float),
            "major": np.asarray(rows["major"], float)})
    return out


def _field_sources(image, wcs, name, method):
    """One FIRST field's sources as cache rows (one NaN row when it has none)."""
    from astropy.table import QTable

    from ..image import read_image
    from ..sources import find_sources

    radio = read_image(image, wcs=wcs, beam=FIRST_BEAM)
    catalogue = find_sources(radio, method, frequency=1.4 * u.GHz)
    if not len(catalogue):
        return QTable({"file": [name], "x_center": [np.nan], "y_center": [np.nan],
                       "s_code": ["none"], "peak": [np.nan], "major": [np.nan]})
    return QTable({"file": [name] * len(catalogue), "x_center": catalogue["x_center"],
                   "y_center": catalogue["y_center"], "s_code": catalogue["s_code"],
                   "peak": catalogue["peak"].to_value(u.Jy / u.beam),
                   "major": catalogue["major"].to_value(u.arcsec)})


def _simulated_sky(seed, size, *, artefacts=False, depths=False):
    """The simulated MeerKAT-like field of ``seed`` that the count sets cut: `make_radio_sky`
    at their pixel, at the simulator's noise or, with ``depths``, at a noise of its own drawn
    from the seed, log-uniform in `DEPTH_NOISE` (a deeper field holds more sources above 5
    sigma per tile)."""
    from ..simulate import make_radio_sky

    depth = {}
    if depths:
        low, high = np.log(DEPTH_NOISE)
        depth["noise"] = float(np.exp(np.random.default_rng([seed, 1]).uniform(low, high)))
    return make_radio_sky((size, size), seed=seed, pixel_scale=SIMULATED_PIXEL,
                          artefacts=artefacts, **depth)


def _simulated_count_tiles(normalization, fields, size, *, first_seed=1000, artefacts=False,
                           depths=False, windows=1):
    """Tiles of 270 arcsec (or their windows) from simulated MeerKAT-like fields
    (`_simulated_sky` of seeds from ``first_seed``, with calibration artefacts and noise
    levels of their own if asked), counting true compact sources whose peak reaches 5 sigma;
    the first two thirds of the fields train, the rest test. The seed of README's example
    sky is refused, so the example stays unseen."""
    from ..simulate import EXAMPLE_SEED, count_true_compact

    if first_seed <= EXAMPLE_SEED < first_seed + fields:
        raise ValueError(f"simulated fields with seeds {first_seed}-{first_seed + fields - 1} "
                         f"would include README's example sky (seed {EXAMPLE_SEED}), which "
                         "must stay out of every training set; use fewer fields")

    stamps, stretches, counts, splits, field = [], [], [], [], []
    n_train = max(1, round(fields * 2 / 3))
    for seed in range(fields):
        hdu, truth = _simulated_sky(first_seed + seed, size, artefacts=artefacts,
                                    depths=depths)
        tiles = tile_image(hdu, SIMULATED_TILE_ARCSEC * u.arcsec)
        counted = count_true_compact(truth, tiles, windows=windows)
        image = np.asarray(hdu.data[0, 0], dtype=np.float32)
        stretch = fit_stretch(image, normalization)
        for tile in counted:
            stamps.append(image[tile["y_min"]:tile["y_max"], tile["x_min"]:tile["x_max"]])
            counts.append(tile["n_compact"])
            stretches.append(stretch)
            splits.append("train" if seed < n_train else "test")
            field.append(seed)
    return _count_data("simulated tiles", stamps, stretches, counts, splits, windows, field)


def _found_sources(radio, pixels, finder, cache):
    """`radiofm.sources.find_sources` of a simulated field, cached in the folder ``cache``
    (None: not cached) under the finder, its `CACHE_VERSIONS` entry and the pixels' digest."""
    from astropy.table import QTable

    from ..sources import find_sources

    if cache is None:
        return find_sources(radio, finder)
    digest = hashlib.sha256(np.ascontiguousarray(pixels).tobytes()).hexdigest()[:16]
    path = Path(cache) / f"catalogue_{finder}_{CACHE_VERSIONS[finder]}_{digest}.ecsv"
    if path.is_file():
        log.info("%s catalogue of a simulated field from %s", finder, path)
        return QTable.read(path)
    catalog = find_sources(radio, finder)
    with atomic_path(path, overwrite=True) as partial:
        catalog.write(partial)
    return catalog


def _simulated_catalogues(fields, size, *, first_seed=1000, artefacts=False, depths=False,
                          finder="photutils", cache=None):
    """What a source finder finds in the fields of `_simulated_count_tiles` (the same seeds,
    size and tiles), and which of its sources the count label counts.

    Each field is simulated again, its sources found with ``finder``
    (`radiofm.sources.find_sources`; with ``cache``, a folder, the catalogue is kept there
    and read back on the next call, keyed by the finder's `CACHE_VERSIONS` entry and a
    digest of the field's pixels) and measured as `radiofm.inference.classify_morphology`
    measures them (peak S/N, compact by measurement); a found source is ``counted`` when
    the true source nearest to it, within one beam, is one the label counts (compact, peak
    >= 5 sigma).

    Returns
    -------
    sources : dict of `~numpy.ndarray`
        ``tile`` (the source's tile, numbered as `_simulated_count_tiles` numbers them over
        all the fields), ``snr``, ``compact``, ``shared`` (compact, sharing its island with
        a source that is not: `radiofm.inference.shares_island`), ``counted`` and
        ``crowding`` (its field's `radiofm.inference.catalogue_crowding`); sources in no
        tile are left out.
    """
    from ..catalogs import tile_membership
    from ..image import read_image
    from ..inference import catalogue_crowding, compact_by_measurement, measured_snr, shares_island
    from ..simulate import COUNT_SNR

    parts, first_tile = [], 0
    for seed in range(first_seed, first_seed + fields):
        hdu, truth = _simulated_sky(seed, size, artefacts=artefacts, depths=depths)
        radio = read_image(hdu)
        tiles = tile_image(hdu, SIMULATED_TILE_ARCSEC * u.arcsec)
        catalog = _found_sources(radio, hdu.data, finder, cache)
        beam = float(radio.beam[0].to_value(u.arcsec))
        snr, _, _ = measured_snr(catalog, radio)
        compact = compact_by_measurement(catalog, beam, snr)
        labelled = ((np.asarray(truth["s_code"]) == "S") & (
            truth["peak"].to_value(u.Jy / u.beam) >= COUNT_SNR * truth.meta["SIMNOISE"]))
        counted = np.zeros(len(catalog), bool)
        if len(catalog):
            nearest, separation, _ = catalog["sky_center"].match_to_catalog_sky(
                truth["sky_center"])
            counted = labelled[nearest] & (separation.to_value(u.arcsec) <= beam)
        tile, row, _, _ = tile_membership(catalog["sky_center"], tiles)
        crowding = catalogue_crowding(catalog, tiles, radio.beam, compact)
        parts.append({"tile": tile + first_tile, "snr": snr[row], "compact": compact[row],
                      "shared": shares_island(catalog, compact)[row],
                      "counted": counted[row], "crowding": np.full(len(row), crowding)})
        first_tile += len(tiles.table)
    return {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}


CROSS_STAMP = 150  # pixels of 1.8": 270 arcsec, MiraBest's stamp; RadioGalaxyDataset is cut


def cross_sample_stamps(images):
    """RadioGalaxyDataset images framed as MiraBest's stamps: the central 270" (150 pixels
    of 1.8"), in MiraBest's S/N form (`radiofm.datasets.radio_galaxy_flux`)."""
    return radio_galaxy_flux(central_pixels(images, CROSS_STAMP))


def cross_sample_data(root=None, *, limit=None, normalization="percentile"):
    """MBFRConfident and the FRI/FRII sources of RadioGalaxyDataset, for the cross-sample test.

    Both samples come from FIRST at 1.8" per pixel; RadioGalaxyDataset stamps (540") are cut
    to their central 150 pixels, MiraBest's 270". Each stamp is normalised on its own
    (RadioGalaxyDataset's put on MiraBest's S/N scale by `radiofm.datasets.radio_galaxy_flux`
    and `radiofm.datasets.radio_galaxy_normalization`).

    The samples overlap on the sky, so the leakage guard runs both ways (1 arcmin):

    - MiraBest training sources near any evaluation source (RadioGalaxyDataset valid and
      test included; `radiofm.datasets.evaluation_positions`) are ``"excluded"``, as in the
      ``frii`` task;
    - RadioGalaxyDataset images carry no position, so its training sources cannot be
      matched one by one: instead the MiraBest sources within 1 arcmin of any
      RadioGalaxyDataset FRI/FRII training source are left out of the reverse test.
      ``extra["reverse_test"]`` marks the MiraBest test sources clear of them (few: most
      MiraBest test sources are also in RadioGalaxyDataset's train split), and
      ``extra["reverse_any"]`` every clear MiraBest source, train split included (a larger
      test of the reverse probe, which never trains on MiraBest; a self-supervised backbone
      may have seen their unlabelled pixels).

    Parameters
    ----------
    root : str or path-like, optional
        The data root.
    limit : int, optional
        At most this many items per split of each sample.
    normalization : str or dict
        The model's stretch (see `load_task_data`).

    Returns
    -------
    data : `TaskData`
        ``extra["sample"]`` is ``"MiraBest"`` or ``"RGD"`` per item; classes FRI, FRII.
        RadioGalaxyDataset's valid split is not used.
    """
    mirabest = load_mirabest(root, view="confident").head(limit)
    split_mb = _guarded_train(mirabest.table["split"], mirabest.table["sky_center"],
                              evaluation_positions(root))
    rgd_train = radiogalaxy_positions(root, splits=("train",), classes=("FRI", "FRII"))
    clear = exclude_near(mirabest.table["sky_center"], rgd_train)
    galaxies = load_radio_galaxy_dataset(root)
    galaxies = galaxies.subset(np.isin(galaxies.labels, [0, 1])
                               & (np.asarray(galaxies.table["split"]) != "valid")).head(
                                   limit, by="label")
    stamps = np.concatenate([mirabest.images.astype(np.float32),
                             cross_sample_stamps(galaxies.images)])
    log.info("cross-sample: %d MiraBest train, %d MiraBest test (%d clear of RadioGalaxyDataset "
             "train), %d RadioGalaxyDataset FRI/FRII", (split_mb == "train").sum(),
             (split_mb == "test").sum(), (clear & (split_mb == "test")).sum(), len(galaxies))
    none = np.zeros(len(galaxies), bool)
    return TaskData(
        "MiraBest + RGD FRI/FRII", stamps,
        _own_normalizations(stamps[:len(mirabest)], normalization)
        + _own_normalizations(stamps[len(mirabest):], radio_galaxy_normalization(normalization)),
        np.concatenate([mirabest.labels, galaxies.labels]),
        np.concatenate([split_mb, np.asarray(galaxies.table["split"]).astype(str)]),
        ("FRI", "FRII"),
        extra={"sample": np.array(["MiraBest"] * len(mirabest) + ["RGD"] * len(galaxies)),
               "reverse_test": np.concatenate([clear & (split_mb == "test"), none]),
               "reverse_any": np.concatenate([clear, none])})

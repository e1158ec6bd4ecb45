"""Embeddings, compact-source counts and morphology classes for images and catalogues."""

import logging
import os
import warnings

import astropy.units as u
import numpy as np
from astropy.table import Table
from tqdm.auto import tqdm

from .._provenance import provenance_meta
from ..catalogs import count_in_tiles
from ..image import RadioImage, read_image
from ..models import DEFAULT_MODEL, ModelMismatchWarning, input_noise, peak_features
from ..sources import read_catalog, sky_positions
from ..tiling import TileSet, tile_image
from ._columns import describe_columns, image_noise
from ._session import load_model

__all__ = ["ModelMismatchWarning", "add_catalogue_counts", "add_count_columns",
           "catalogue_crowding", "check_image", "classify_morphology",
           "compact_by_measurement", "count_sources", "embed_image", "embed_sources",
           "measured_snr", "read_stamps", "shares_island", "stamp_inputs"]

log = logging.getLogger("radiofm")

#: count_sources warns when its tiles differ from the model's tile angle by more than this.
TILE_ANGLE_TOLERANCE = 0.1


def _open(image):
    """(RadioImage, opened_here) for anything read_image accepts."""
    if isinstance(image, RadioImage):
        return image, False
    return read_image(image), isinstance(image, str | os.PathLike)


def check_image(model, image):
    """Warn or refuse when an image does not fit a model's pixel scale and beam ranges.

    Parameters
    ----------
    model : `OnnxModel`
        A loaded model.
    image : `~radiofm.image.RadioImage`
        The image to run it on.

    Raises
    ------
    ValueError
        The pixel scale is more than `~radiofm.models.REFUSE_FACTOR` outside the model's
        range (see `radiofm.models.ModelSpec.check_image`).
    """
    model.spec.check_image(image, model=model.name)


def _model_meta(model, stretch):
    return provenance_meta(
        MODEL=model.name, MODELSHA=model.sha256,
        MODELVER=model.metadata["radiofm_version"], NORMMETH=stretch.method,
        NORMOFF=stretch.offset, NORMSCL=stretch.scale,
    )


def _tiles(image, model, tile_size, overlap, min_valid):
    """A TileSet over the image; by default tiles of the model's angular tile size."""
    if isinstance(image, TileSet):
        check_image(model, image.image)
        return image, False
    radio, opened = _open(image)
    try:
        check_image(model, radio)
        if tile_size is None:
            tile_size = model.spec.tile_pixels(radio)
        return tile_image(radio, tile_size, overlap=overlap, min_valid=min_valid), opened
    except BaseException:
        if opened:
            radio.close()
        raise


def _run_tiles(tiles, model, *, batch_size, progress, counts=False):
    """All model outputs for every tile (and its input noise), and the fitted normalisation.

    With ``counts`` and a count head that reads windows or its inputs' peaks, also
    ``window_counts``: the head's count per tile summed over the tile's windows, each run
    through the model (in batches of ``batch_size`` windows' worth of tiles, so memory stays
    bounded) and read with its input; and where the head has a range of training fields'
    peaks (`radiofm.models.Heads.count_field_peaks`), ``tile_peaks``: each tile's peaks at
    its level, summed over the windows the head reads.
    """
    stretch = model.spec.fit_stretch(tiles.image)
    n = len(tiles)
    dims = {"embedding": (n, model.metadata["embedding_dim"]), "n_compact": (n,),
            "morph_logits": (n, len(model.class_names))}
    outputs = {key: np.empty(dims[key], np.float32) for key in model.outputs}
    outputs["input_noise"] = np.empty(n, np.float32)
    heads = model.heads
    beam = _beam_arcsec(tiles.image.beam)
    field_peaks = None if heads is None or not counts else heads.count_field_peaks(beam)
    if field_peaks is not None:
        outputs["tile_peaks"] = np.empty(n, np.float32)
    whole = field_peaks is not None and heads.count_windows == 1  # peaks of whole tiles
    # Reader threads prepare the next batches while onnxruntime runs on the current one.
    for ids, inputs in model.spec.stream_tiles(tiles, stretch, batch_size=batch_size,
                                               progress=progress):
        result = model.run(inputs)
        for key in model.outputs:
            outputs[key][ids] = result[key]
        outputs["input_noise"][ids] = input_noise(inputs)
        if whole:
            outputs["tile_peaks"][ids] = peak_features(inputs, field_peaks[0])[:, 0]
    if counts and heads is not None and (heads.count_windows > 1 or heads.count_reads_peaks):
        cells = heads.count_windows ** 2
        outputs["window_counts"] = np.empty(n, np.float32)
        for ids, inputs in model.spec.stream_tiles(tiles, stretch,
                                                   batch_size=max(1, batch_size // cells),
                                                   windows=heads.count_windows,
                                                   progress=progress):
            embedding = model.run(inputs)["embedding"]
            outputs["window_counts"][ids] = heads.predict_tile_counts(embedding, beam,
                                                                      inputs)
            if field_peaks is not None and not whole:
                peaks = peak_features(inputs, field_peaks[0])[:, 0]
                outputs["tile_peaks"][ids] = peaks.reshape(-1, cells).sum(axis=1)
    return outputs, stretch


def _beam_arcsec(beam):
    """The beam major axis (FWHM) in arcsec, or None when the image has no beam."""
    return None if beam is None else float(beam[0].to_value(u.arcsec))


def _annotate_tiles(image, model, columns, *, tile_size, overlap, min_valid, batch_size,
                    threads, progress, counts=False):
    model = load_model(model, threads=threads)
    tiles, opened = _tiles(image, model, tile_size, overlap, min_valid)
    beam = tiles.image.beam
    try:
        outputs, stretch = _run_tiles(tiles, model, batch_size=batch_size, progress=progress,
                                      counts=counts)
    finally:
        if opened:
            tiles.image.close()
    table = tiles.table.copy()
    for column, key in columns.items():
        if key in outputs:
            table[column] = outputs[key]
    table.meta.update(_model_meta(model, stretch))
    outputs["beam"] = beam
    return table, tiles, model, outputs


def embed_image(image, model=DEFAULT_MODEL, *, tile_size=None, overlap=0, min_valid=1.0,
                batch_size=64, threads=None, progress=True):
    """Embed every tile of an image with an exported model.

    Tiles are read in row bands (memory stays bounded for any image size), resampled to the
    model's input size, normalised with the model's normalisation fitted once on the image
    (`radiofm.models.ModelSpec.stream_tiles`) and run through onnxruntime. torch is not needed.

    Parameters
    ----------
    image : anything `~radiofm.image.read_image` accepts, or a `~radiofm.tiling.TileSet`
        The image (a TileSet fixes the tiles).
    model : str, path-like or `OnnxModel`
        ``"default"``, a registered name, or an .onnx file from `radiofm.export`.
    tile_size : int or `~astropy.units.Quantity`, optional
        Tile side in pixels or as an angle; default: the model's tile angle
        (``spec.tile_arcsec``) in this image's pixels.
    overlap : int or `~astropy.units.Quantity`
        Overlap of neighbouring tiles.
    min_valid : float
        Keep tiles with at least this fraction of finite pixels.
    batch_size : int
        Tiles per model run.
    threads : int, optional
        onnxruntime threads (see `load_model`).
    progress : bool
        Show a progress bar (only on a terminal).

    Returns
    -------
    tiles : `~astropy.table.QTable`
        The tile table of `~radiofm.tiling.tile_image` with an ``embedding`` column
        (N x D float32); ``meta`` holds the model name (``MODEL``), its sha256
        (``MODELSHA``) and the fitted normalisation.

    Raises
    ------
    ValueError
        No default model yet, a registered file failing its sha256, or an image whose
        pixel scale is far outside the model's range.
    """
    table, _, _, _ = _annotate_tiles(image, model, {"embedding": "embedding"},
                                  tile_size=tile_size, overlap=overlap, min_valid=min_valid,
                                  batch_size=batch_size, threads=threads, progress=progress)
    return table


def count_sources(image_or_tiles, model=DEFAULT_MODEL, *, tile_size=None, overlap=0,
                  min_valid=1.0, batch_size=64, threads=None, progress=True, embedding=False):
    """Predict the number of compact sources in every tile of an image.

    Parameters
    ----------
    image_or_tiles : anything `~radiofm.image.read_image` accepts, or a `~radiofm.tiling.TileSet`
        The image (a TileSet fixes the tiles).
    model : str, path-like or `OnnxModel`
        As for `embed_image`.
    tile_size, overlap, min_valid, batch_size, threads, progress
        As for `embed_image`. The count head was fitted on tiles of the model's tile
        angle: other sizes give a `ModelMismatchWarning`.
    embedding : bool
        Also add the ``embedding`` column (from the same model run).

    Returns
    -------
    tiles : `~astropy.table.QTable`
        The tile table with ``n_compact_pred`` (float32, never negative: the model's
        Poisson count head, on the tile or, for a head that reads windows
        (`radiofm.models.Heads.count_windows`), summed over the tile's windows, each run
        through the model; the head fitted for the image's beam where the model has one,
        `radiofm.models.Heads.count_regime`, named in ``meta["COUNTHD"]``; its description
        says what is counted and by which head), masked where
        ``ood_flag``; ``n_compact_pred_err``, its one-sigma uncertainty
        (`radiofm.models.Heads.count_errors`; heads version 4 on, masked likewise);
        ``ood_score`` (distance to the training tiles), ``ood_flag`` (bool)
        and ``ood_reason`` (``embedding``, ``noise``, ``beam``, ``peaks``, and ``crowding``
        where `add_catalogue_counts` judges the catalogue, comma-separated): a tile is
        flagged when its embedding lies beyond the threshold chosen on held-out training
        tiles, when its input noise or the image's beam lies outside the training range,
        and every tile when the image's median peaks per tile (``meta["PEAKS"]``) lie
        outside the range of the fields the count head was fitted on
        (`radiofm.models.Heads.field_peaks_known`: a deeper field holds more sources
        above 5 sigma per tile, and the head, fitted at one depth, undercounts it).
        Models without numpy heads (`radiofm.models.Heads`; re-fit them with ``radiofm
        fit-heads``) give their graph's linear count clipped at 0, flagged where it was
        negative, and no ``ood_score``.
    """
    columns = {"embedding": "embedding"} if embedding else {}
    table, tiles, model, outputs = _annotate_tiles(
        image_or_tiles, model, columns, tile_size=tile_size, overlap=overlap,
        min_valid=min_valid, batch_size=batch_size, threads=threads, progress=progress,
        counts=True)
    angle = float(tiles.tile_angle.to_value(u.arcsec))
    expected = model.spec.tile_arcsec
    if abs(angle / expected - 1) > TILE_ANGLE_TOLERANCE:
        warnings.warn(
            f"tiles are {angle:.4g} arcsec but model {model.name!r} counts sources in "
            f"{expected:.4g} arcsec tiles; n_compact_pred is not calibrated for this size "
            "(leave tile_size=None)", ModelMismatchWarning, stacklevel=2,
        )
    add_count_columns(table, model, outputs)
    return table


def add_count_columns(table, model, outputs):
    """Add ``n_compact_pred`` (and its ``n_compact_pred_err`` where the count head has a
    dispersion), ``ood_score``, ``ood_flag`` and ``ood_reason`` to a tile table.

    Parameters
    ----------
    table : `~astropy.table.QTable`
        Tile table, changed in place.
    model : `OnnxModel`
        The model that gave the outputs (its heads are applied).
    outputs : dict
        ``embedding``, ``input_noise``, ``beam`` (the image's, or None), for a count head
        that reads windows or its inputs' peaks ``window_counts`` (its count per tile,
        summed over the windows), for one with a range of training fields' peaks
        ``tile_peaks`` (each tile's peaks at its level; the image is flagged when their
        median lies outside the range, ``ood_reason`` ``peaks``) and, for models without
        heads, the graph's ``n_compact``.
    """
    from astropy.table import MaskedColumn

    n = len(table)
    reasons = [[] for _ in range(n)]
    heads = model.heads
    errors = None
    if heads is not None:
        embedding = outputs["embedding"]
        beam = _beam_arcsec(outputs.get("beam"))
        counts = outputs.get("window_counts")
        if counts is None:  # the head reads the tiles' embeddings alone
            counts = heads.predict_tile_counts(embedding, beam)
        errors = heads.count_errors(counts, beam)
        score, far = heads.ood_scores(embedding, "tiles")
        regime, fitted_on = heads.count_regime(beam)
        description = f"{heads.count_description}; count head {regime!r}, fitted on {fitted_on}"
        table.meta["COUNTHD"] = regime
        for k in np.flatnonzero(far):
            reasons[k].append("embedding")
        noise = outputs["input_noise"]
        if heads.noise_range is not None:
            low, high = heads.noise_range
            for k in np.flatnonzero(~((noise >= low) & (noise <= high))):
                reasons[k].append("noise")
        if heads.beam_range_arcsec is not None and beam is not None:
            low, high = heads.beam_range_arcsec
            if not low <= beam <= high:
                log.warning("the image's %.3g arcsec beam lies outside the %.3g-%.3g arcsec "
                            "of model %r's training images: every tile is flagged", beam,
                            low, high, model.name)
                for reason in reasons:
                    reason.append("beam")
        tile_peaks = outputs.get("tile_peaks")
        if tile_peaks is not None and len(tile_peaks):
            table.meta["PEAKS"] = float(np.median(tile_peaks))
            if not heads.field_peaks_known(tile_peaks, beam):
                low, high = heads.count_field_peaks(beam)[1]
                log.warning("the image's tiles hold a median %.3g peaks above the count "
                            "head's level, outside the %.3g-%.3g of the fields model %r's "
                            "count head was fitted on (a deeper or shallower field): every "
                            "tile is flagged", table.meta["PEAKS"], low, high, model.name)
                for reason in reasons:
                    reason.append("peaks")
    else:
        raw = outputs["n_compact"]
        counts = np.maximum(raw, 0).astype(np.float32)
        score = np.full(n, np.nan, np.float32)
        description = ("compact-source count of the graph's linear head, clipped at 0 (this "
                       "model has no numpy heads: re-fit them with `radiofm fit-heads`)")
        for k in np.flatnonzero(~(raw >= 0)):
            reasons[k].append("negative")
        if (raw < 0).any():
            log.warning("model %r has no numpy heads: %d of %d linear counts were negative "
                        "and are flagged; re-fit its heads with `radiofm fit-heads`",
                        model.name, int((raw < 0).sum()), n)
    flag = np.array([bool(r) for r in reasons], dtype=bool)
    if flag.any():
        log.warning("%d of %d tiles are out of distribution for model %r: their "
                    "n_compact_pred is masked (ood_flag, ood_reason)", int(flag.sum()), n,
                    model.name)
    table["n_compact_pred"] = MaskedColumn(counts, mask=flag | ~np.isfinite(counts))
    if errors is not None:
        table["n_compact_pred_err"] = MaskedColumn(errors, mask=flag | ~np.isfinite(counts))
    table["ood_score"] = score
    table["ood_flag"] = flag
    table["ood_reason"] = np.array([",".join(r) for r in reasons] or np.zeros(0, str),
                                   dtype=str)
    table["input_noise"] = outputs["input_noise"]
    describe_columns(table, {"n_compact_pred": (u.ct, description)})


def catalogue_crowding(sources, tiles, beam, compact):
    """A catalogue's compact sources per beam solid angle over the finite pixels of its
    tiles.

    A source finder merges sources closer than about a beam, so the share of sources a
    catalogue misses grows with this number; a count head's `radiofm.models.CatalogueCount`
    reads it to make up for them. Only the sources compact by measurement count, those the
    combination counts: a calibration artefact's spurious detections, mostly not compact,
    would otherwise raise it (on simulated 4 uJy/beam skies, by up to 19 % over every
    detection against at most 4 % over the compact ones).

    Parameters
    ----------
    sources : `~astropy.table.Table`
        The image's catalogue.
    tiles : `~radiofm.tiling.TileSet`
        The image's tiles: sources outside them, and the tiles' non-finite pixels, are left
        out.
    beam : `~radiofm.image.Beam`
        The image's restoring beam (major and minor FWHM).
    compact : `~numpy.ndarray` of bool
        Which of its sources are compact by measurement (`compact_by_measurement`).

    Returns
    -------
    crowding : float
        Sources per beam solid angle, ``pi major minor / (4 ln 2)``.

    Examples
    --------
    >>> from radiofm.image import read_image
    >>> from radiofm.inference import catalogue_crowding
    >>> from radiofm.simulate import make_radio_sky
    >>> from radiofm.tiling import tile_image
    >>> hdu, truth = make_radio_sky((512, 512), seed=4)
    >>> image = read_image(hdu)
    >>> compact = truth["morph_class"] == "compact"
    >>> crowding = catalogue_crowding(truth, tile_image(image, 256), image.beam, compact)
    >>> bool(0 < crowding < 0.1)
    True
    """
    found = np.asarray(count_in_tiles(sources, tiles, select=np.asarray(compact, bool))[
        "n_compact"], float)
    tile_area = tiles.tile_angle.to_value(u.arcsec) ** 2
    beam_area = (np.pi / (4 * np.log(2)) * beam[0].to_value(u.arcsec)
                 * beam[1].to_value(u.arcsec))
    beams = np.asarray(tiles.table["valid_fraction"], float).sum() * tile_area / beam_area
    return float(found.sum() / beams)


def add_catalogue_counts(table, sources, tiles, model, finder, beam=None):
    """Combine ``n_compact_pred`` with the image's catalogue, where the count head can.

    A count head of heads version 6 may carry `radiofm.models.CatalogueCount` parts, each
    fitted for catalogues of one finder: each source compact by measurement then counts
    with the probability that it is a true source of peak >= 5 sigma at its measured S/N,
    and a tile's ``n_compact_pred`` (and ``n_compact_pred_err``) become the fitted
    combination of the head's count and those summed probabilities (never negative; masked
    where they were). A combination of heads version 8 also judges the catalogue's
    `catalogue_crowding`, recorded in ``meta["CROWDING"]``, and may read it: a catalogue
    more crowded, or less, than the fields it was fitted on
    (`radiofm.models.CatalogueCount.crowding_known`) flags every tile (``ood_reason``
    ``crowding``) and masks its count; its judgement replaces the count head's of the
    image's peaks per tile (``peaks``, `add_count_columns`), which says the same of the
    field but for the head alone. Otherwise the table is left as it is.

    Parameters
    ----------
    table : `~astropy.table.QTable`
        Tile table with the columns of `add_count_columns`, changed in place.
    sources : `~astropy.table.Table`
        The image's catalogue, classified by `classify_morphology` (``snr``,
        ``morph_flag``).
    tiles : `~radiofm.tiling.TileSet`
        The table's tiles.
    model : `OnnxModel`
        The model that counted the tiles.
    finder : str
        The `radiofm.sources.find_sources` method that made the catalogue (None for a
        catalogue of the user's own, whose completeness no head was fitted for).
    beam : tuple, optional
        The image's beam (`radiofm.image.RadioImage.beam`): picks the count regime, as for
        the counts.

    Returns
    -------
    combined : bool
        Whether ``n_compact_pred`` now reads the catalogue (``meta["COUNTCAT"]`` then
        names the finder).
    """
    from astropy.table import MaskedColumn

    heads = model.heads
    mixes = {} if heads is None else heads.count_catalogues(_beam_arcsec(beam))
    if not mixes or "n_compact_pred" not in table.colnames:
        return False
    if finder not in mixes:
        log.info("model %r combines its counts with catalogues of %s; this catalogue came "
                 "from %s, so n_compact_pred is the count head's alone", model.name,
                 " or ".join(sorted(mixes)), finder or "the user")
        return False
    mix = mixes[finder]
    compact = np.asarray(sources["morph_flag"]) == "compact_by_measurement"
    shared = shares_island(sources, compact) & mix.reads_islands
    probability = mix.source_probabilities(np.asarray(sources["snr"], float), compact, shared)
    summed = [np.asarray(count_in_tiles(sources, tiles, select="all",
                                        weights=probability * part)["n_compact"])
              for part in (~shared, shared)]
    predicted = table["n_compact_pred"]
    mask = np.ma.getmaskarray(predicted)
    judged = mix.crowding_range is not None  # always where the combination reads it
    crowding = catalogue_crowding(sources, tiles, beam, compact) if judged else 0.0
    counts, errors = mix.combine(np.ma.getdata(predicted), summed[0], crowding,
                                 summed[1] if mix.reads_islands else None)
    description = (f"{predicted.info.description}; combined with the {finder} catalogue: "
                   "each source compact by measurement weighted by the probability that a "
                   "source of its measured S/N has a true peak >= 5 sigma")
    if mix.reads_islands:
        description += (" (by a curve and a weight of their own, which grows with the "
                        "catalogue's crowding, for those that share their island with a "
                        "resolved source)")
    if mix.reads_crowding:
        description += (f", and by the sources a finder merges at the catalogue's "
                        f"{crowding:.3g} sources per beam")
    if judged:  # the crowding, judged here, replaces the head's judgement of the peaks
        reasons = [[r for r in str(reason).split(",") if r and r != "peaks"]
                   for reason in table["ood_reason"]]
        mask = (np.array([bool(r) for r in reasons], dtype=bool)
                | (mask & ~np.asarray(table["ood_flag"], bool)))
        table["ood_flag"] = np.array([bool(r) for r in reasons], dtype=bool)
        table["ood_reason"] = np.array([",".join(r) for r in reasons] or np.zeros(0, str),
                                       dtype=str)
        table.meta["CROWDING"] = crowding
        if not mix.crowding_known(crowding):
            low, high = mix.crowding_range
            log.warning("the %s catalogue holds %.3g sources per beam, outside the %.3g-%.3g "
                        "of the fields model %r's counts were fitted on: every tile is "
                        "flagged", finder, crowding, low, high, model.name)
            mask = np.ones(len(table), bool)
            table["ood_flag"] = mask
            table["ood_reason"] = [",".join(filter(None, (str(r), "crowding")))
                                   for r in table["ood_reason"]]
    table["n_compact_pred"] = MaskedColumn(counts, mask=mask | ~np.isfinite(counts))
    table["n_compact_pred_err"] = MaskedColumn(errors, mask=mask | ~np.isfinite(counts))
    table.meta["COUNTCAT"] = finder
    describe_columns(table, {"n_compact_pred": (u.ct, description)})
    return True


def _catalog_and_image(catalog, image):
    radio, opened = _open(image)
    if not isinstance(catalog, Table):
        catalog = read_catalog(catalog, image=radio)
    return catalog, radio, opened


def read_stamps(image, x, y, side):
    """Square stamps of ``side`` pixels centred on pixel positions, NaN beyond the edges.

    Parameters
    ----------
    image : `~radiofm.image.RadioImage`
        The image.
    x, y : array-like
        Zero-based pixel positions.
    side : int
        Stamp side in pixels.

    Returns
    -------
    stamps : `~numpy.ndarray`
        (N, side, side) float32.
    """
    ny, nx = image.shape
    stamps = np.full((len(x), side, side), np.nan, np.float32)
    x0 = np.floor(np.asarray(x) - (side - 1) / 2 + 0.5).astype(np.int64)
    y0 = np.floor(np.asarray(y) - (side - 1) / 2 + 0.5).astype(np.int64)
    for k, (left, bottom) in enumerate(zip(x0, y0, strict=True)):
        xa, xb = max(left, 0), min(left + side, nx)
        ya, yb = max(bottom, 0), min(bottom + side, ny)
        if xa < xb and ya < yb:
            stamps[k, ya - bottom : yb - bottom, xa - left : xb - left] = image.read_region(
                slice(ya, yb), slice(xa, xb))
    return stamps


def _run_stamps(catalog, image, model, *, batch_size, threads, progress):
    """Model outputs for a stamp around every source (NaN for sources off the image)."""
    model = load_model(model, threads=threads)
    catalog, radio, opened = _catalog_and_image(catalog, image)
    try:
        check_image(model, radio)
        stretch = model.spec.fit_stretch(radio)
        positions = sky_positions(catalog)
        x, y = radio.wcs.world_to_pixel(positions)
        x, y = np.atleast_1d(x), np.atleast_1d(y)
        ny, nx = radio.shape
        inside = (x > -0.5) & (x < nx - 0.5) & (y > -0.5) & (y < ny - 0.5)
        if (~inside).any():
            log.warning("%d of %d sources lie off the image: their outputs are NaN",
                        int((~inside).sum()), len(catalog))
        side = model.spec.stamp_pixels(radio)
        n = len(catalog)
        dims = {"embedding": (n, model.metadata["embedding_dim"]), "n_compact": (n,),
                "morph_logits": (n, len(model.class_names))}
        outputs = {key: np.full(dims[key], np.nan, np.float32) for key in model.outputs}
        rows = np.flatnonzero(inside)
        starts = range(0, len(rows), batch_size)
        for start in tqdm(starts, unit="batch", disable=None if progress else True):
            ids = rows[start : start + batch_size]
            stamps = read_stamps(radio, x[ids], y[ids], side)
            result = model.run(model.spec.prepare(stamps, stretch))
            for key, values in outputs.items():
                values[ids] = result[key]
    finally:
        if opened:
            radio.close()
    annotated = catalog.copy()
    replaced = [c for c in ("morph_class", "morph_prob", "embedding") if c in annotated.colnames]
    if replaced:
        log.warning("replacing the catalogue's existing columns %s", replaced)
    annotated.meta.update(_model_meta(model, stretch))
    annotated.meta["STAMPPIX"] = side
    return annotated, outputs, model


#: A source is compact by measurement when its catalogued major axis is at most this many
#: beams and its integrated over peak flux at most this ratio (both relaxed at low S/N by
#: `COMPACT_SNR_SLACK` / S/N, the scatter of fitted sizes of faint point sources).
COMPACT_SIZE = 1.5
COMPACT_FLUX_RATIO = 1.5
COMPACT_SNR_SLACK = 3.0
#: Resolved sources fainter than this peak S/N are too faint to judge ("uncertain").
MIN_SNR = 10.0
#: The morphology head's stamps (RadioGalaxyDataset's FIRST sources, 5.4" beam, framed to
#: the model's ``stamp_arcsec``) centre their source and mostly hold it within half their
#: side: a resolved source's stamp is at least the model's stamp angle scaled to the image's
#: beam, and at least this many times its extent.
FRAME_PER_EXTENT = 2.0
#: Sources whose stamp would exceed this many base stamps are too large to judge.
MAX_FRAME = 3.0
#: Calibrated probabilities below this make a classified source "uncertain".
MIN_CONFIDENCE = 0.5
FIRST_BEAM_ARCSEC = 5.4  # the beam of the training stamps
#: Stamp pixels below this S/N are set to 0, as the training stamps' background was.
STAMP_CLIP_SNR = 3.0
COMPACT = "Compact"
UNCERTAIN = "uncertain"


def _values(catalog, name, n, unit):
    """A catalogue column as floats in ``unit`` (NaN where absent or masked)."""
    if name not in catalog.colnames:
        return np.full(n, np.nan)
    column = catalog[name]
    if getattr(column, "unit", None) is not None:
        column = u.Quantity(column)
        try:
            column = column.to_value(unit)
        except u.UnitsError:
            column = column.value
    values = np.ma.filled(np.ma.asarray(column, dtype=float), np.nan)
    return np.asarray(values, dtype=float)


def _arcsec(catalog, name, n):
    return _values(catalog, name, n, u.arcsec)


def measured_snr(catalog, image):
    """The peak S/N of each catalogue source, as `classify_morphology` measures it.

    Parameters
    ----------
    catalog : `~astropy.table.Table`
        With ``peak`` and, where the finder measured it, ``local_rms``.
    image : `~radiofm.image.RadioImage`
        The catalogue's image.

    Returns
    -------
    snr : `~numpy.ndarray`
        (N,) peak over the source's ``local_rms`` where it is positive, else over the
        image's robust noise (`image_noise`); NaN without a peak.
    rms : `~numpy.ndarray`
        (N,) the noise each source was divided by, in the image's unit.
    image_rms : float
        The image's robust noise.
    """
    n = len(catalog)
    unit = image.unit if image.unit is not None else u.Jy / u.beam
    image_rms = image_noise(image)
    local_rms = _values(catalog, "local_rms", n, unit)
    rms = np.where(local_rms > 0, local_rms, image_rms)  # NaN > 0 is False
    return _values(catalog, "peak", n, unit) / rms, rms, image_rms


def shares_island(catalog, compact):
    """Which compact sources share their island with a source that is not compact.

    A finder cuts a resolved source's emission into several sources of one island
    (``island_id``); some of the pieces are as small as the beam and pass as compact by
    measurement. Such a piece is less often a compact source of its own than a compact
    source alone in its island (on simulated MeerKAT skies, 42-49 % against 86-87 % of
    them are true compact sources with peaks >= 5 sigma), and a count head's
    `radiofm.models.CatalogueCount` may weigh it by a curve of its own.

    Parameters
    ----------
    catalog : `~astropy.table.Table`
        The image's catalogue, with ``island_id`` (`radiofm.sources.find_sources`; without
        it every source is its own island).
    compact : `~numpy.ndarray` of bool
        Which of its sources are compact by measurement (`compact_by_measurement`).

    Returns
    -------
    shared : `~numpy.ndarray` of bool
        The compact sources whose island holds a source that is not compact.

    Examples
    --------
    >>> import numpy as np
    >>> from astropy.table import Table
    >>> from radiofm.inference import shares_island
    >>> catalog = Table({"island_id": [1, 1, 2, 3, 3]})
    >>> shares_island(catalog, np.array([True, False, True, True, True])).tolist()
    [True, False, False, False, False]
    """
    compact = np.asarray(compact, bool)
    if "island_id" not in catalog.colnames:
        return np.zeros(len(catalog), bool)
    island = np.asarray(catalog["island_id"])
    return compact & np.isin(island, island[~compact])


def compact_by_measurement(catalog, beam_arcsec, snr):
    """Which sources have a catalogued shape consistent with the beam.

    A source is compact when its major axis is at most `COMPACT_SIZE` beams and its
    integrated over peak flux at most `COMPACT_FLUX_RATIO` (each limit relaxed by
    `COMPACT_SNR_SLACK` / S/N for faint sources). Catalogued sizes may be convolved
    (pyBDSF ``Maj``, photutils) or intrinsic (a truth catalogue): both pass for point
    sources. Where a size is missing, an ``s_code`` of ``S`` with a flux ratio within the
    limit counts as compact.

    Parameters
    ----------
    catalog : `~astropy.table.Table`
        With ``major`` (angle), ``flux``, ``peak`` and ``s_code`` where known.
    beam_arcsec : float or None
        Restoring beam FWHM (major axis); None: sizes cannot be compared.
    snr : `~numpy.ndarray`
        Peak S/N of each source (NaN when unknown).

    Returns
    -------
    compact : `~numpy.ndarray` of bool
    """
    n = len(catalog)
    major = _arcsec(catalog, "major", n)
    ratio = (_values(catalog, "flux", n, u.Jy)
             / _values(catalog, "peak", n, u.Jy / u.beam))
    slack = np.where(np.isfinite(snr) & (snr > 0), COMPACT_SNR_SLACK / np.maximum(snr, 1e-9),
                     0.0)
    ratio_ok = ~(ratio > COMPACT_FLUX_RATIO + slack)  # NaN ratio: no evidence against
    if beam_arcsec is not None and np.isfinite(beam_arcsec):
        size_ok = major <= beam_arcsec * (COMPACT_SIZE + slack)
    else:
        size_ok = np.zeros(n, bool)
    codes = (np.asarray(catalog["s_code"], dtype=str) if "s_code" in catalog.colnames
             else np.full(n, ""))
    by_code = ~np.isfinite(major) & (codes == "S") & np.isfinite(ratio)
    return (size_ok | by_code) & ratio_ok


def stamp_inputs(stamps, metadata, *, floor=None):
    """Model inputs of source stamps, each normalised with its own fit.

    The morphology head was fitted on RadioGalaxyDataset stamps, each normalised with the
    model's stretch fitted on the stamp itself (`radiofm.evaluate.load_task_data`): a
    source stamp is prepared the same way (resampled to the input size, then normalised
    with the fit on its own raw pixels), not with the parent image's fit, which the count
    head's tiles use.

    Parameters
    ----------
    stamps : `~numpy.ndarray`
        (N, H, H) raw pixels (NaN beyond the image).
    metadata : dict
        Model metadata (its ``spec``, `radiofm.models.ModelSpec`).
    floor : float or `~numpy.ndarray`, optional
        Pixels below it (e.g. 3 x the rms; one value, or one per stamp) are set to 0 first,
        as the training stamps' background was (RadioGalaxyDataset and MiraBest clip FIRST
        below 3 sigma).

    Returns
    -------
    inputs : `~numpy.ndarray`
        (N, 1, S, S) float32; an all-blank or flat stamp gives zeros.
    """
    from ..tiling import normalize, resample_tiles

    spec = metadata["spec"]
    stamps = np.asarray(stamps, dtype=np.float32)
    if floor is not None:
        floor = np.broadcast_to(np.asarray(floor, dtype=float), len(stamps))[:, None, None]
        keep = (stamps >= floor) | ~np.isfinite(floor)
        stamps = np.where(keep, stamps, np.where(np.isnan(stamps), np.nan, 0.0))
        stamps = stamps.astype(np.float32)
    out = resample_tiles(stamps, spec.input_pixels)
    for k, raw in enumerate(stamps):
        try:
            own = spec.fit_stretch(raw)
        except ValueError:  # no finite pixel or no contrast
            out[k] = 0.0
            continue
        normalize(out[k], own, out=out[k])
    return out[:, None]


def _frame_sides(extent, base):
    """Stamp side (arcsec) per source: the base stamp, or wider for large sources, on a
    ladder of 2^(1/4) steps so that sources batch by side."""
    side = np.maximum(base, FRAME_PER_EXTENT * np.nan_to_num(extent, nan=0.0))
    steps = np.ceil(np.log2(side / base) * 4 - 1e-9) / 4
    return base * 2.0 ** steps


def classify_morphology(catalog, image, model=DEFAULT_MODEL, *, batch_size=64, threads=None,
                        progress=True):
    """Classify the morphology of every catalogue source, or say why it cannot be judged.

    - A source whose catalogued shape is consistent with the beam
      (`compact_by_measurement`) is ``Compact`` without running the model
      (``morph_flag = "compact_by_measurement"``).
    - A resolved source fainter than `MIN_SNR` (peak over the catalogue's ``local_rms``,
      or over the image's robust rms where it gives none) is
      ``uncertain`` (``faint``); one whose stamp would exceed `MAX_FRAME` base stamps is
      ``uncertain`` (``too_large``).
    - The others are classified on a stamp framed to the source: the model's stamp angle
      scaled to the image's beam (``stamp_arcsec``, the angle the morphology head was fitted
      on at FIRST's 5.4" beam: `radiofm.evaluate.MORPHOLOGY_STAMP_ARCSEC`), widened to
      `FRAME_PER_EXTENT` times the source's major axis for large sources. Stamps are
      resampled to the model's input size and normalised with the model's stretch fitted
      on each stamp, as the training stamps were (`stamp_inputs`). With numpy heads
      (`radiofm.models.Heads`) the probabilities are temperature-calibrated; a stamp
      unlike the training stamps is
      ``uncertain`` (``unlike_training``), a top probability under `MIN_CONFIDENCE` too
      (``low_confidence``).

    Parameters
    ----------
    catalog : `~astropy.table.Table` or path
        Sources with sky positions (a SkyCoord column such as ``sky_center``, or RA/DEC
        columns) and, where known, ``major``, ``flux``, ``peak`` and ``s_code``; a path is
        read with `~radiofm.sources.read_catalog`.
    image : anything `~radiofm.image.read_image` accepts
        The image the catalogue describes.
    model : str, path-like or `OnnxModel`
        As for `embed_image`.
    batch_size, threads, progress
        As for `embed_image`.

    Returns
    -------
    catalog : `~astropy.table.Table`
        A copy with ``morph_class`` (str: a class name, ``uncertain``, or empty for
        sources off the image), ``morph_prob`` (N x K float32, classes in
        ``meta["CLASSES"]``), ``morph_flag`` (why), ``morph_ood_score``, ``snr`` and
        ``stamp_size``; every column described (`describe_columns`).
    """
    model = load_model(model, threads=threads)
    catalog, radio, opened = _catalog_and_image(catalog, image)
    names = list(model.class_names)
    k = len(names)
    try:
        check_image(model, radio)
        stretch = model.spec.fit_stretch(radio)
        n = len(catalog)
        positions = sky_positions(catalog)
        x, y = radio.wcs.world_to_pixel(positions)
        x, y = np.atleast_1d(x).astype(float), np.atleast_1d(y).astype(float)
        ny, nx = radio.shape
        inside = (x > -0.5) & (x < nx - 0.5) & (y > -0.5) & (y < ny - 0.5)
        if (~inside).any():
            log.warning("%d of %d sources lie off the image: their morph_class is empty",
                        int((~inside).sum()), n)
        snr, rms, image_rms = measured_snr(catalog, radio)
        beam = None if radio.beam is None else float(radio.beam[0].to_value(u.arcsec))
        compact = compact_by_measurement(catalog, beam, snr) & inside
        pixel = float(radio.pixel_scale.to_value(u.arcsec))
        base = model.spec.stamp_arcsec * (1.0 if beam is None
                                                 else beam / FIRST_BEAM_ARCSEC)
        sides = _frame_sides(_arcsec(catalog, "major", n), base)
        classes = np.full(n, "", dtype=object)
        flags = np.full(n, "off_image", dtype=object)
        probabilities = np.full((n, k), np.nan, np.float32)
        ood = np.full(n, np.nan, np.float32)
        stamp_size = np.full(n, np.nan)
        classes[compact], flags[compact] = COMPACT, "compact_by_measurement"
        if COMPACT in names:
            probabilities[compact] = np.eye(k, dtype=np.float32)[names.index(COMPACT)]
        resolved = inside & ~compact
        faint = resolved & (snr < MIN_SNR)  # unknown S/N (no peak): judged on its stamp
        large = resolved & ~faint & (sides > MAX_FRAME * base * (1 + 1e-9))
        classes[faint | large] = UNCERTAIN
        flags[faint], flags[large] = "faint", "too_large"
        todo = np.flatnonzero(resolved & ~faint & ~large)
        for side in np.unique(sides[todo]):
            rows = todo[sides[todo] == side]
            side_px = max(2, radio.angle_to_pixels(side * u.arcsec))
            for start in tqdm(range(0, len(rows), batch_size), unit="batch",
                              disable=None if progress else True):
                ids = rows[start : start + batch_size]
                stamps = read_stamps(radio, x[ids], y[ids], side_px)
                result = model.run(stamp_inputs(stamps, model.metadata,
                                                floor=STAMP_CLIP_SNR * rms[ids]))
                stamp_size[ids] = side_px * pixel
                if model.heads is not None:
                    probabilities[ids] = model.heads.morphology_probabilities(
                        result["embedding"])
                    if model.heads.has_reference("stamps"):
                        ood[ids] = model.heads.ood_scores(result["embedding"], "stamps")[0]
                else:
                    logits = result["morph_logits"]
                    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
                    probabilities[ids] = shifted / shifted.sum(axis=1, keepdims=True)
        if len(todo):
            best = probabilities[todo].argmax(axis=1)
            confident = probabilities[todo].max(axis=1) >= MIN_CONFIDENCE
            unlike = np.zeros(len(todo), bool)
            if model.heads is not None and model.heads.has_reference("stamps"):
                unlike = ~(ood[todo] <= model.heads.threshold("stamps"))
            classes[todo] = np.where(unlike | ~confident, UNCERTAIN, np.array(names)[best])
            flags[todo] = np.where(unlike, "unlike_training",
                                   np.where(confident, "classified", "low_confidence"))
    finally:
        if opened:
            radio.close()
    annotated = catalog.copy()
    replaced = [c for c in ("morph_class", "morph_prob", "morph_flag")
                if c in annotated.colnames]
    if replaced:
        log.warning("replacing the catalogue's existing columns %s", replaced)
    annotated["snr"] = snr.astype(np.float32)
    annotated["morph_class"] = classes.astype(str)
    annotated["morph_prob"] = probabilities
    annotated["morph_flag"] = flags.astype(str)
    annotated["morph_ood_score"] = ood
    annotated["stamp_size"] = stamp_size * u.arcsec
    annotated.meta.update(_model_meta(model, stretch))
    annotated.meta["CLASSES"] = ",".join(names)
    annotated.meta["RMS"] = image_rms
    counts = {str(flag): int((flags == flag).sum()) for flag in np.unique(flags.astype(str))}
    log.info("morphology of %d sources: %s", n, counts)
    return describe_columns(annotated)


def embed_sources(catalog, image, model=DEFAULT_MODEL, *, batch_size=64, threads=None,
                  progress=True):
    """Embed a stamp around every catalogue source.

    Parameters
    ----------
    catalog : `~astropy.table.Table` or path
        As for `classify_morphology`.
    image : anything `~radiofm.image.read_image` accepts
        The image the catalogue describes.
    model : str, path-like or `OnnxModel`
        As for `embed_image`.
    batch_size, threads, progress
        As for `embed_image`.

    Returns
    -------
    catalog : `~astropy.table.Table`
        A copy with an ``embedding`` column (N x D float32; NaN for sources off the image).
    """
    annotated, outputs, _ = _run_stamps(catalog, image, model, batch_size=batch_size,
                                        threads=threads, progress=progress)
    annotated["embedding"] = outputs["embedding"]
    return annotated

"""Embeddings, compact-source counts and morphology classes for images and catalogues."""

import logging
import os
import warnings

import astropy.units as u
import numpy as np
from astropy.table import Table
from tqdm.auto import tqdm

from .._provenance import provenance_meta
from ..image import RadioImage, read_image
from ..models import DEFAULT_MODEL, ModelMismatchWarning
from ..sources import read_catalog
from ..sources._catalog import sky_positions
from ..tiling import TileSet, tile_image
from ._session import load_model

__all__ = ["ModelMismatchWarning", "check_image", "classify_morphology", "count_sources",
           "embed_image", "embed_sources", "read_stamps"]

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


def _run_tiles(tiles, model, *, batch_size, progress):
    """All model outputs for every tile, and the fitted normalisation."""
    stretch = model.spec.fit_stretch(tiles.image)
    n = len(tiles)
    outputs = {"embedding": np.empty((n, model.metadata["embedding_dim"]), np.float32),
               "n_compact": np.empty(n, np.float32),
               "morph_logits": np.empty((n, len(model.class_names)), np.float32)}
    # Reader threads prepare the next batches while onnxruntime runs on the current one.
    for ids, inputs in model.spec.stream_tiles(tiles, stretch, batch_size=batch_size,
                                               progress=progress):
        result = model.run(inputs)
        for key, values in outputs.items():
            values[ids] = result[key]
    return outputs, stretch


def _annotate_tiles(image, model, columns, *, tile_size, overlap, min_valid, batch_size,
                    threads, progress):
    model = load_model(model, threads=threads)
    tiles, opened = _tiles(image, model, tile_size, overlap, min_valid)
    try:
        outputs, stretch = _run_tiles(tiles, model, batch_size=batch_size, progress=progress)
    finally:
        if opened:
            tiles.image.close()
    table = tiles.table.copy()
    for column, key in columns.items():
        table[column] = outputs[key]
    table.meta.update(_model_meta(model, stretch))
    return table, tiles, model


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
    table, _, _ = _annotate_tiles(image, model, {"embedding": "embedding"},
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
        The tile table with ``n_compact_pred`` (float32; the linear head's prediction).
    """
    columns = {"n_compact_pred": "n_compact"}
    if embedding:
        columns["embedding"] = "embedding"
    table, tiles, model = _annotate_tiles(
        image_or_tiles, model, columns, tile_size=tile_size, overlap=overlap,
        min_valid=min_valid, batch_size=batch_size, threads=threads, progress=progress)
    angle = float(tiles.tile_angle.to_value(u.arcsec))
    expected = model.spec.tile_arcsec
    if abs(angle / expected - 1) > TILE_ANGLE_TOLERANCE:
        warnings.warn(
            f"tiles are {angle:.4g} arcsec but model {model.name!r} counts sources in "
            f"{expected:.4g} arcsec tiles; n_compact_pred is not calibrated for this size "
            "(leave tile_size=None)", ModelMismatchWarning, stacklevel=2,
        )
    return table


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
        outputs = {"embedding": np.full((n, model.metadata["embedding_dim"]), np.nan, np.float32),
                   "morph_logits": np.full((n, len(model.class_names)), np.nan, np.float32)}
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


def classify_morphology(catalog, image, model=DEFAULT_MODEL, *, batch_size=64, threads=None,
                        progress=True):
    """Classify the morphology of every catalogue source from a stamp around it.

    The stamp side is the model's ``stamp_arcsec`` in the image's pixels; stamps are
    resampled to the model's input size, then normalised with the model's normalisation
    fitted on the whole image (`radiofm.models.ModelSpec.prepare`).

    Parameters
    ----------
    catalog : `~astropy.table.Table` or path
        Sources with sky positions (a SkyCoord column such as ``sky_center``, or RA/DEC
        columns); a path is read with `~radiofm.sources.read_catalog`.
    image : anything `~radiofm.image.read_image` accepts
        The image the catalogue describes.
    model : str, path-like or `OnnxModel`
        As for `embed_image`.
    batch_size, threads, progress
        As for `embed_image`.

    Returns
    -------
    catalog : `~astropy.table.Table`
        A copy with ``morph_class`` (str; empty for sources off the image) and
        ``morph_prob`` (N x K float32 softmax probabilities, classes in
        ``meta["CLASSES"]``); ``meta`` names the model and its sha256.
    """
    annotated, outputs, model = _run_stamps(catalog, image, model, batch_size=batch_size,
                                            threads=threads, progress=progress)
    logits = outputs["morph_logits"]
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    probabilities = (shifted / shifted.sum(axis=1, keepdims=True)).astype(np.float32)
    names = np.array(model.class_names)
    known = np.isfinite(logits).all(axis=1)
    classes = np.where(known, names[np.where(known, np.nan_to_num(logits).argmax(axis=1), 0)],
                       "")
    annotated["morph_class"] = classes.astype(str)
    annotated["morph_prob"] = probabilities
    annotated.meta["CLASSES"] = ",".join(model.class_names)
    return annotated


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

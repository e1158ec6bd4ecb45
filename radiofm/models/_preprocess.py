"""The pixels a model sees: resampled to its input size, then normalised.

Export and inference prepare pixels with these functions; training (`radiofm.train`) and the
evaluation harness (`radiofm.evaluate`) follow the same order with the same two functions,
`radiofm.tiling.resample_tiles` then `radiofm.tiling.normalize` with the parent image's fit,
so a model sees the same kind of pixels everywhere.
"""

import os

import numpy as np

from ..tiling import fit_normalization, normalize, prefetch_batches, resample_tiles

__all__ = ["dihedral_views", "model_inputs", "normalization_for", "tile_inputs"]


def normalization_for(image, metadata):
    """A model's `~radiofm.tiling.Normalization`, fitted on one parent image.

    Parameters
    ----------
    image : anything `~radiofm.image.read_image` accepts
        The parent image (the whole field, not a tile).
    metadata : dict
        Model metadata with a ``normalization`` entry ``{"method": ..., fit options}``.

    Returns
    -------
    normalization : `~radiofm.tiling.Normalization`
    """
    options = dict(metadata["normalization"])
    return fit_normalization(image, options.pop("method"), **options)


def model_inputs(raw, stretch, input_size):
    """Model input from raw pixels: resample to the input size, then normalise.

    Parameters
    ----------
    raw : array-like
        (N, H, H) pixels in the image's unit; NaN marks blank pixels (0 after
        normalisation).
    stretch : `~radiofm.tiling.Normalization`
        Fitted on the parent image (`normalization_for`).
    input_size : int
        The model's input side S.

    Returns
    -------
    tiles : `~numpy.ndarray`
        (N, 1, S, S) float32.

    Examples
    --------
    >>> import numpy as np
    >>> from radiofm.models import model_inputs
    >>> from radiofm.tiling import Normalization
    >>> stretch = Normalization("percentile", offset=0.0, scale=8.0)
    >>> model_inputs(np.arange(16.0).reshape(1, 4, 4), stretch, 2)[0, 0]
    array([[0.3125, 0.5625],
           [1.    , 1.    ]], dtype=float32)
    """
    raw = np.asarray(raw)
    if raw.ndim != 3:
        raise ValueError(f"expected raw tiles shaped (N, H, H), got {raw.shape}")
    if len(raw) == 0:
        return np.zeros((0, 1, input_size, input_size), np.float32)
    out = resample_tiles(raw, input_size)
    normalize(out, stretch, out=out)
    return out[:, None]


def tile_inputs(tiles, stretch, input_size, *, batch_size=64, threads=None, progress=False):
    """Stream the tiles of a `~radiofm.tiling.TileSet` as model inputs, in batches.

    Tiles are read in row bands (only the bands a batch touches), so memory stays about
    ``threads`` x (one band + one batch) whatever the image size; a pool of threads prepares
    the next batches while the caller runs the model.

    Parameters
    ----------
    tiles : `~radiofm.tiling.TileSet`
        The tiles and their image.
    stretch : `~radiofm.tiling.Normalization`
        Fitted on the parent image.
    input_size : int
        The model's input side.
    batch_size : int
        Tiles per batch (the last may be smaller).
    threads : int, optional
        Batches prepared at once (default: 2, or 1 on a one-CPU machine).
    progress : bool
        Show a progress bar (only on a terminal).

    Yields
    ------
    tile_ids : `~numpy.ndarray`
        (B,) rows of ``tiles.table``.
    inputs : `~numpy.ndarray`
        (B, 1, S, S) float32.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    threads = min(2, len(os.sched_getaffinity(0))) if threads is None else int(threads)
    if threads < 1:
        raise ValueError(f"threads must be at least 1, got {threads}")
    table = tiles.table
    x_min, y_min = np.asarray(table["x_min"]), np.asarray(table["y_min"])
    size = tiles.tile_size

    def prepare(ids):
        raw = np.empty((len(ids), size, size), np.float32)
        slots = np.arange(len(ids))
        bands = y_min[ids]
        for y0 in np.unique(bands):
            with tiles.image.rows(y0, y0 + size) as band:
                for slot in slots[bands == y0]:
                    x0 = x_min[ids[slot]]
                    raw[slot] = band[:, x0 : x0 + size]
        return ids, model_inputs(raw, stretch, input_size)

    yield from prefetch_batches(table, batch_size, prepare, threads=threads, progress=progress)


def dihedral_views(stamps):
    """The 8 views of square stamps under rotations by 90 degrees and reflection.

    A radio source has no preferred orientation on the sky, so a model's embedding averaged
    over these views depends on the source, not on how it is turned (exported models with
    ``views=8`` do this inside their graph).

    Parameters
    ----------
    stamps : `~numpy.ndarray`
        (..., S, S).

    Returns
    -------
    views : list of `~numpy.ndarray`
        Rotations by 0, 90, 180 and 270 degrees, then the same mirrored left-right.
    """
    stamps = np.asarray(stamps)
    if stamps.ndim < 2 or stamps.shape[-1] != stamps.shape[-2]:
        raise ValueError(f"dihedral views need square stamps (..., S, S); got {stamps.shape}")
    turns = [np.rot90(stamps, k, axes=(-2, -1)) for k in range(4)]
    return turns + [turn[..., ::-1] for turn in turns]

"""Resampling of tiles and stamps to a model's input size, in numpy.

Training, evaluation and inference all bring pixels to the model's input size with
`resample_tiles`, and compose it with the stretch in one order with `prepare_tiles`, so a
model sees the same kind of pixels everywhere.
"""

import numpy as np
from skimage.transform import resize

from ._normalize import normalize

__all__ = ["prepare_tiles", "resample_tiles"]


def prepare_tiles(raw, stretch, size, *, linear=False):
    """Model input from raw pixels: resample to ``size``, then apply the fitted stretch.

    The one composition of resampling and normalisation: training, evaluation, export and
    inference all call it.

    Parameters
    ----------
    raw : array-like
        (N, H, H) pixels in the image's unit; NaN marks blank pixels (0 after the stretch).
    stretch : `~radiofm.tiling.Normalization`
        Fitted on the parent image.
    size : int
        The model's input side S.
    linear : bool
        Stop before the stretch's ``f`` (see `~radiofm.tiling.normalize`): training keeps
        "snr" tiles as S/N to re-clip and re-noise them before the arcsinh.

    Returns
    -------
    tiles : `~numpy.ndarray`
        (N, S, S) float32.

    Examples
    --------
    >>> import numpy as np
    >>> from radiofm.tiling import Normalization, prepare_tiles
    >>> stretch = Normalization("percentile", offset=0.0, scale=8.0)
    >>> prepare_tiles(np.arange(16.0).reshape(1, 4, 4), stretch, 2)[0]
    array([[0.3125, 0.5625],
           [1.    , 1.    ]], dtype=float32)
    """
    raw = np.asarray(raw)
    if raw.ndim != 3:
        raise ValueError(f"expected raw tiles shaped (N, H, H), got {raw.shape}")
    if len(raw) == 0:
        return np.zeros((0, size, size), np.float32)
    out = resample_tiles(raw, size)
    return normalize(out, stretch, out=out, linear=linear)


def resample_tiles(tiles, size):
    """Resample square tiles to ``size`` x ``size`` pixels, averaging over pixel areas.

    An integer shrink factor is an exact block mean (the "area" rule); other factors use
    bilinear interpolation after a Gaussian anti-aliasing filter when shrinking. Blank (NaN)
    pixels stay blank wherever they touch an output pixel.

    Parameters
    ----------
    tiles : array-like
        (N, H, W) or (H, W) pixels with H == W.
    size : int
        Output side in pixels.

    Returns
    -------
    resampled : `~numpy.ndarray`
        float32, (N, size, size) or (size, size).

    Examples
    --------
    >>> import numpy as np
    >>> from radiofm.tiling import resample_tiles
    >>> resample_tiles(np.arange(16.0).reshape(4, 4), 2)
    array([[ 2.5,  4.5],
           [10.5, 12.5]], dtype=float32)
    """
    tiles = np.asarray(tiles)
    single = tiles.ndim == 2
    if single:
        tiles = tiles[None]
    if tiles.ndim != 3 or tiles.shape[1] != tiles.shape[2]:
        raise ValueError(f"expected square tiles shaped (N, H, H) or (H, H), got {tiles.shape}")
    if int(size) != size or size < 1:
        raise ValueError(f"output size must be a positive integer, got {size}")
    size = int(size)
    side = tiles.shape[1]
    tiles = tiles.astype(np.float32, copy=False)
    if side == size:
        out = tiles.copy()
    elif side % size == 0:
        factor = side // size
        out = tiles.reshape(len(tiles), size, factor, size, factor).mean(axis=(2, 4))
    else:
        out = np.empty((len(tiles), size, size), dtype=np.float32)
        for k, tile in enumerate(tiles):
            out[k] = resize(tile, (size, size), order=1, mode="reflect",
                            anti_aliasing=size < side, preserve_range=True)
    out = out.astype(np.float32, copy=False)
    return out[0] if single else out

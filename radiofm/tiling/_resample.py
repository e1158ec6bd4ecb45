"""Resampling of tiles and stamps to a model's input size, in numpy.

Training, evaluation and inference all bring pixels to the model's input size with
`resample_tiles`, and compose it with the stretch in one order with `prepare_tiles`, so a
model sees the same kind of pixels everywhere.
"""

import numpy as np
from skimage.transform import resize

from ._normalize import normalize

__all__ = ["prepare_tiles", "resample_tiles", "split_windows", "window_bounds"]


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


def window_bounds(size, windows):
    """Where `split_windows` cuts a square stamp of side ``size`` into windows.

    The ``windows`` cells along each axis partition the stamp (``edges``: every pixel in
    exactly one cell, so per-window counts add up to the stamp's count); each window the
    model reads is ``side`` pixels from ``starts``, a cell widened to a common size by at
    most a pixel.

    Parameters
    ----------
    size : int
        The stamp's side in pixels.
    windows : int
        Windows per side (``windows`` x ``windows`` per stamp).

    Returns
    -------
    edges : `~numpy.ndarray`
        (windows + 1,) int cell boundaries, from 0 to ``size``.
    starts : `~numpy.ndarray`
        (windows,) int first pixel of each window.
    side : int
        ``ceil(size / windows)``.

    Raises
    ------
    ValueError
        ``windows`` is not a positive integer or the windows would be under 2 pixels.

    Examples
    --------
    >>> from radiofm.tiling import window_bounds
    >>> edges, starts, side = window_bounds(245, 3)
    >>> edges.tolist(), starts.tolist(), side
    ([0, 82, 163, 245], [0, 82, 163], 82)
    """
    if not (isinstance(windows, int | np.integer) and windows >= 1):
        raise ValueError(f"windows must be a positive integer, got {windows!r}")
    size = int(size)
    side = -(-size // int(windows))
    if side < 2 or size < windows:
        raise ValueError(f"{windows} x {windows} windows of a {size} px stamp would be under "
                         "2 px; use fewer windows or larger stamps")
    edges = np.round(np.linspace(0, size, int(windows) + 1)).astype(int)
    starts = np.minimum(edges[:-1], size - side)
    return edges, starts, side


def split_windows(stamps, windows):
    """Cut each square stamp into ``windows`` x ``windows`` windows, row by row.

    Counts are additive: a tile's count is the sum of its windows' counts, and a window
    shows its sources larger at the model's input size than the whole tile does. The
    windows cover the cells of `window_bounds`; a catalogue counted per window
    (`radiofm.catalogs.count_in_tiles` with ``windows``) counts in those cells.

    Parameters
    ----------
    stamps : array-like
        (N, H, H) pixels.
    windows : int
        Windows per side; 1 returns the stamps unchanged.

    Returns
    -------
    windows : `~numpy.ndarray`
        (N * windows**2, side, side): stamp 0's windows first, each stamp's in row-major
        order (y, then x).

    Examples
    --------
    >>> import numpy as np
    >>> from radiofm.tiling import split_windows
    >>> stamps = np.arange(2 * 6 * 6, dtype=float).reshape(2, 6, 6)
    >>> parts = split_windows(stamps, 3)
    >>> parts.shape, float(parts[1, 0, 0]), float(parts[3, 0, 0])  # stamp 0 at (0, 2), (2, 0)
    ((18, 2, 2), 2.0, 12.0)
    """
    stamps = np.asarray(stamps)
    if stamps.ndim != 3 or stamps.shape[1] != stamps.shape[2]:
        raise ValueError(f"windows are cut from square stamps (N, H, H); got {stamps.shape}")
    _, starts, side = window_bounds(stamps.shape[1], windows)
    if windows == 1:
        return stamps
    parts = [stamps[:, y0:y0 + side, x0:x0 + side] for y0 in starts for x0 in starts]
    return np.stack(parts, axis=1).reshape(len(stamps) * windows * windows, side, side)

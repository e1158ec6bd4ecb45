"""The true compact-source count of each tile of a simulated sky: the count label."""

import astropy.units as u
import numpy as np

from ..catalogs import count_in_tiles

__all__ = ["COUNT_SNR", "count_true_compact"]

#: A simulated compact source counts when its peak reaches this many times the noise.
COUNT_SNR = 5.0


def count_true_compact(truth, tiles, *, snr=COUNT_SNR, windows=1):
    """Count the true compact sources with peak S/N >= ``snr`` in every tile.

    The label that the evaluation's simulated count task, the training monitor and the
    count heads share.

    Parameters
    ----------
    truth : `~astropy.table.QTable`
        The truth catalogue of `make_radio_sky` (its ``meta["SIMNOISE"]`` is the noise).
    tiles : `~radiofm.tiling.TileSet`
        Tiles of the simulated image.
    snr : float
        Smallest peak over the noise counted.
    windows : int
        Count per window of each tile instead (see `radiofm.catalogs.count_in_tiles`).

    Returns
    -------
    table : `~astropy.table.QTable`
        A copy of ``tiles.table`` with ``n_compact`` (int; (N, windows**2) with
        ``windows``).

    Examples
    --------
    >>> from radiofm.simulate import count_true_compact, make_radio_sky
    >>> from radiofm.tiling import tile_image
    >>> hdu, truth = make_radio_sky((512, 512), seed=4)
    >>> counted = count_true_compact(truth, tile_image(hdu, 256))
    >>> int(counted["n_compact"].sum()) <= int((truth["s_code"] == "S").sum())
    True
    """
    noise = truth.meta["SIMNOISE"]
    bright = ((np.asarray(truth["s_code"]) == "S")
              & (truth["peak"].to_value(u.Jy / u.beam) >= snr * noise))
    return count_in_tiles(truth, tiles, select=bright, windows=windows)

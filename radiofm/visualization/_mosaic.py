"""A grid of cutouts: what a person looks at after a similarity search or outlier ranking."""

import numpy as np
from astropy.visualization import AsinhStretch, ImageNormalize, PercentileInterval
from matplotlib.figure import Figure

__all__ = ["plot_mosaic"]


def plot_mosaic(cutouts, path=None, *, titles=None, columns=None, suptitle=None):
    """Draw cutouts side by side, each with its own asinh stretch.

    Parameters
    ----------
    cutouts : sequence of 2-D arrays
        The pixels (e.g. from `radiofm.survey.read_cutouts`); NaN is drawn blank.
    path : str or path-like, optional
        Where to write the PNG.
    titles : sequence of str, optional
        One short title per cutout.
    columns : int, optional
        Cutouts per row (default: about the square root of their number).
    suptitle : str, optional
        Title of the whole figure.

    Returns
    -------
    figure : `~matplotlib.figure.Figure`

    Examples
    --------
    >>> import numpy as np
    >>> from radiofm.visualization import plot_mosaic
    >>> figure = plot_mosaic([np.random.default_rng(0).normal(size=(16, 16))] * 3)
    >>> len(figure.axes)
    3
    """
    if not len(cutouts):
        raise ValueError("no cutouts to draw")
    count = len(cutouts)
    columns = columns or int(np.ceil(np.sqrt(count)))
    rows = int(np.ceil(count / columns))
    figure = Figure(figsize=(2 * columns, 2.1 * rows + (0.3 if suptitle else 0)))
    for k, pixels in enumerate(cutouts):
        axes = figure.add_subplot(rows, columns, k + 1)
        pixels = np.asarray(pixels, dtype=np.float32)
        finite = pixels[np.isfinite(pixels)]
        norm = (ImageNormalize(finite, interval=PercentileInterval(99.5),
                               stretch=AsinhStretch(0.05)) if finite.size else None)
        axes.imshow(pixels, origin="lower", cmap="gray_r", norm=norm, interpolation="nearest")
        axes.set_xticks([])
        axes.set_yticks([])
        if titles is not None:
            axes.set_title(str(titles[k]), fontsize=7)
    if suptitle:
        figure.suptitle(suptitle, fontsize=9)
    figure.tight_layout()
    if path is not None:
        figure.savefig(path, dpi=100)
    return figure

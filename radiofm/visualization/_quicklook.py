"""Quick-look PNGs: the image on its sky axes with the tile grid on top."""

import numpy as np
from astropy.visualization import AsinhStretch, ImageNormalize, PercentileInterval
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

__all__ = ["plot_tiles"]


def plot_tiles(tiles, path=None, *, column=None, max_pixels=1024, label_limit=150):
    """Draw an image with its tiles on WCS axes.

    The image is decimated to at most ``max_pixels`` per side (whole rows are read, so a
    16k x 16k image costs a few hundred MB of reads, not memory).

    Parameters
    ----------
    tiles : `~radiofm.tiling.TileSet`
        The tiles and their image.
    path : str or path-like, optional
        Where to write the PNG.
    column : str, optional
        A numeric column of ``tiles.table`` written inside each tile (e.g. ``n_compact``);
        default: the ``tile_id``.
    max_pixels : int
        Largest side of the displayed image, in pixels.
    label_limit : int
        Tiles are labelled only when there are at most this many.

    Returns
    -------
    figure : `~matplotlib.figure.Figure`
    """
    image = tiles.image
    step = max(1, int(np.ceil(max(image.shape) / max_pixels)))
    pixels = image.read_region(slice(None, None, step), slice(None, None, step))
    figure = Figure(figsize=(8, 8 * pixels.shape[0] / pixels.shape[1] + 0.5))
    axes = figure.add_subplot(projection=image.wcs[::step, ::step])
    finite = pixels[np.isfinite(pixels)]
    norm = ImageNormalize(finite, interval=PercentileInterval(99.5), stretch=AsinhStretch(0.05))
    axes.imshow(pixels, origin="lower", cmap="gray_r", norm=norm, interpolation="nearest")
    label_column = "tile_id" if column is None else column
    show_labels = len(tiles) <= label_limit
    for row in tiles.table:
        # decimated pixel i is full-resolution pixel i * step
        corner = ((row["x_min"] - 0.5) / step, (row["y_min"] - 0.5) / step)
        side = tiles.tile_size / step
        axes.add_patch(Rectangle(corner, side, side, fill=False, edgecolor="tab:orange",
                                 linewidth=0.6, alpha=0.8))
        if show_labels:
            value = row[label_column]
            text = f"{value:.3g}" if isinstance(value, float | np.floating) else str(value)
            axes.text(corner[0] + side / 2, corner[1] + side / 2, text, color="tab:blue",
                      ha="center", va="center", fontsize=7)
    axes.set_xlabel("Right ascension")
    axes.set_ylabel("Declination")
    axes.set_title(f"{image.source}: {len(tiles)} tiles of {tiles.tile_size} px", fontsize=9)
    if path is not None:
        figure.savefig(path, dpi=100, bbox_inches="tight")
    return figure

"""Quick-look PNGs: the image on its sky axes with the tile grid on top."""

import astropy.units as u
import numpy as np
from astropy.visualization import AsinhStretch, ImageNormalize, PercentileInterval
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from regions import CircleSkyRegion, Regions

__all__ = ["class_colors", "plot_tiles", "source_regions"]


def class_colors(classes):
    """A fixed colour (a matplotlib/DS9 hex string) for each class name, in order.

    Parameters
    ----------
    classes : sequence of str
        Class names; the k-th gets the k-th colour of matplotlib's tab10.

    Returns
    -------
    colors : dict
        Class name -> ``"#rrggbb"``.
    """
    palette = colormaps["tab10"].colors
    return {name: "#{:02x}{:02x}{:02x}".format(*(int(255 * c) for c in palette[k % 10]))
            for k, name in enumerate(classes)}


def _classes(catalog, column):
    named = catalog.meta.get("CLASSES")
    present = [str(c) for c in np.unique(np.asarray(catalog[column], dtype=str)) if c]
    return named.split(",") if named else present


def source_regions(catalog, *, radius=10 * u.arcsec, column="morph_class"):
    """DS9-ready circles around catalogue sources, coloured and labelled by class.

    Parameters
    ----------
    catalog : `~astropy.table.Table`
        Sources with sky positions and a class column (e.g. from
        `radiofm.inference.classify_morphology`; its ``meta["CLASSES"]`` fixes the colours).
    radius : `~astropy.units.Quantity`
        Circle radius.
    column : str
        The class column; rows with an empty class are left out.

    Returns
    -------
    regions : `~regions.Regions`
    """
    from ..sources import sky_positions

    positions = sky_positions(catalog)
    labels = np.asarray(catalog[column], dtype=str)
    colors = class_colors(_classes(catalog, column))
    return Regions([
        CircleSkyRegion(positions[k], radius, meta={"text": label},
                        visual={"color": colors.get(label, "#ffffff")})
        for k, label in enumerate(labels) if label
    ])


def plot_tiles(tiles, path=None, *, column=None, max_pixels=1024, label_limit=150,
               sources=None, source_column="morph_class"):
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
    sources : `~astropy.table.Table`, optional
        Sources to mark, coloured by ``source_column`` (as in `source_regions`).
    source_column : str
        The class column of ``sources``.

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
    if sources is not None and len(sources):
        from ..sources import sky_positions

        x, y = image.wcs.world_to_pixel(sky_positions(sources))
        labels = np.asarray(sources[source_column], dtype=str)
        for label, color in class_colors(_classes(sources, source_column)).items():
            chosen = labels == label
            if chosen.any():
                axes.scatter(x[chosen] / step, y[chosen] / step, s=18, facecolors="none",
                             edgecolors=color, linewidths=0.9, label=f"{label} ({chosen.sum()})")
        axes.legend(loc="upper right", fontsize=7, framealpha=0.7)
        axes.set_xlim(-0.5, pixels.shape[1] - 0.5)
        axes.set_ylim(-0.5, pixels.shape[0] - 0.5)
    axes.set_xlabel("Right ascension")
    axes.set_ylabel("Declination")
    axes.set_title(f"{image.source}: {len(tiles)} tiles of {tiles.tile_size} px", fontsize=9)
    if path is not None:
        figure.savefig(path, dpi=100, bbox_inches="tight")
    return figure

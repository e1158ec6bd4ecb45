"""Quick-look PNGs: the image on its sky axes with the tile grid on top."""

import astropy.units as u
import numpy as np
from astropy.visualization import AsinhStretch, ImageNormalize, PercentileInterval
from matplotlib import colormaps
from matplotlib.collections import PatchCollection
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from regions import CircleSkyRegion, EllipseSkyRegion, Regions

from .._atomic import atomic_path

__all__ = ["class_colors", "plot_tiles", "source_regions"]

#: Colour of the tile grid: a neutral grey no class colour uses.
GRID_COLOR = "#9a9a9a"
#: Colour of sources that could not be judged.
UNCERTAIN_COLOR = "#ffffff"
#: Above this many tiles, counts are not written in the tiles (the overlay stays).
OVERLAY_LIMIT = 2500


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
    colors = {name: "#{:02x}{:02x}{:02x}".format(*(int(255 * c) for c in palette[k % 10]))
              for k, name in enumerate(classes)}
    if "uncertain" in colors:
        colors["uncertain"] = UNCERTAIN_COLOR
    return colors


def _classes(catalog, column):
    named = catalog.meta.get("CLASSES")
    present = [str(c) for c in np.unique(np.asarray(catalog[column], dtype=str)) if c]
    classes = named.split(",") if named else present
    return classes + [c for c in present if c not in classes]


def source_regions(catalog, *, radius=None, column="morph_class", beam=None):
    """DS9-ready ellipses of catalogue sources: their measured shape, coloured by class.

    Each source is drawn with its catalogued ``major``/``minor`` FWHM and ``pa``; a source
    without a measured shape gets a circle of ``radius`` (default: half the ``beam``, else
    5 arcsec).

    Parameters
    ----------
    catalog : `~astropy.table.Table`
        Sources with sky positions, ``major``, ``minor`` and ``pa`` where measured, and a
        class column (e.g. from `radiofm.inference.classify_morphology`; its
        ``meta["CLASSES"]`` fixes the colours).
    radius : `~astropy.units.Quantity`, optional
        Circle radius for sources without a measured shape.
    column : str
        The class column; rows with an empty class are left out.
    beam : `~astropy.units.Quantity`, optional
        The beam FWHM: no ellipse is drawn smaller than it (catalogues of intrinsic sizes).

    Returns
    -------
    regions : `~regions.Regions`
    """
    from ..sources import sky_positions

    positions = sky_positions(catalog)
    labels = np.asarray(catalog[column], dtype=str)
    colors = class_colors(_classes(catalog, column))
    n = len(catalog)
    floor = 0.0 if beam is None else float(u.Quantity(beam, u.arcsec).value)
    if radius is None:
        radius = (floor / 2 if floor else 5.0) * u.arcsec

    def angles(name):
        if name not in catalog.colnames:
            return np.full(n, np.nan)
        return np.asarray(u.Quantity(catalog[name], u.arcsec if name != "pa" else u.deg).value,
                          dtype=float)

    major, minor, pa = angles("major"), angles("minor"), angles("pa")
    regions = []
    for k, label in enumerate(labels):
        if not label:
            continue
        style = {"meta": {"text": label}, "visual": {"color": colors.get(label, "#ffffff")}}
        if np.isfinite(major[k]) and major[k] > 0:
            width = max(major[k], floor)
            height = max(minor[k] if np.isfinite(minor[k]) and minor[k] > 0 else major[k],
                         floor)
            # regions measures the angle from the x axis (east-left: PA + 90 deg)
            angle = (pa[k] if np.isfinite(pa[k]) else 0.0) + 90.0
            regions.append(EllipseSkyRegion(positions[k], width * u.arcsec, height * u.arcsec,
                                            angle * u.deg, **style))
        else:
            regions.append(CircleSkyRegion(positions[k], radius, **style))
    return Regions(regions)


def plot_tiles(tiles, path=None, *, column=None, max_pixels=1024, label_limit=150,
               sources=None, source_column="morph_class"):
    """Draw an image with its tiles (neutral grid) and sources on WCS axes.

    The image is decimated to at most ``max_pixels`` per side (whole rows are read, so a
    16k x 16k image costs a few hundred MB of reads, not memory).

    Parameters
    ----------
    tiles : `~radiofm.tiling.TileSet`
        The tiles and their image.
    path : str or path-like, optional
        Where to write the PNG.
    column : str, optional
        A numeric column of ``tiles.table`` (e.g. ``n_compact_pred``) shown as a colour
        overlay (masked values hatched) and, for few tiles without sources, written in
        each tile; default: the ``tile_id`` is written.
    max_pixels : int
        Largest side of the displayed image, in pixels.
    label_limit : int
        Tiles are labelled only when there are at most this many.
    sources : `~astropy.table.Table`, optional
        Sources to mark by class (``source_column``): compact sources as small faint dots,
        uncertain ones as grey squares, the others as coloured diamonds; the legend gives
        each class's count. Readable at 10^4 sources.
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
    side = tiles.tile_size / step
    corners = [((row["x_min"] - 0.5) / step, (row["y_min"] - 0.5) / step)
               for row in tiles.table]
    values = None
    if column is not None and column in tiles.table.colnames:
        values = np.ma.filled(np.ma.asarray(tiles.table[column], dtype=float), np.nan)
    if values is not None and np.isfinite(values).any():
        # counts as a translucent colour overlay; masked (out-of-distribution) tiles hatched
        finite_values = values[np.isfinite(values)]
        color_norm = ImageNormalize(vmin=0, vmax=max(1e-9, float(finite_values.max())))
        cells = PatchCollection([Rectangle(c, side, side) for c in corners], cmap="viridis",
                                norm=color_norm, alpha=0.35, linewidths=0)
        cells.set_array(np.ma.masked_invalid(values))
        axes.add_collection(cells)
        colorbar = figure.colorbar(cells, ax=axes, fraction=0.04, pad=0.02)
        colorbar.set_label(column, fontsize=8)
        masked = ~np.isfinite(values)
        if masked.any():
            axes.add_collection(PatchCollection(
                [Rectangle(c, side, side) for c, m in zip(corners, masked, strict=True) if m],
                facecolor="none", edgecolor=GRID_COLOR, hatch="///", linewidths=0))
    grid = len(tiles) <= OVERLAY_LIMIT or values is None
    if grid:
        axes.add_collection(PatchCollection([Rectangle(c, side, side) for c in corners],
                                            facecolor="none", edgecolor=GRID_COLOR,
                                            linewidths=0.5, alpha=0.8))
    show_labels = len(tiles) <= label_limit and (sources is None or not len(sources))
    if show_labels:
        labels = tiles.table["tile_id"] if values is None else values
        for corner, value in zip(corners, labels, strict=True):
            text = ("masked" if isinstance(value, float | np.floating) and not np.isfinite(value)
                    else f"{value:.3g}" if isinstance(value, float | np.floating) else str(value))
            axes.text(corner[0] + side / 2, corner[1] + side / 2, text, color="#303030",
                      ha="center", va="center", fontsize=7)
    if sources is not None and len(sources):
        from ..sources import sky_positions

        x, y = image.wcs.world_to_pixel(sky_positions(sources))
        labels = np.asarray(sources[source_column], dtype=str)
        many = len(sources) > 500
        for label, color in class_colors(_classes(sources, source_column)).items():
            chosen = labels == label
            if not chosen.any():
                continue
            if label == "Compact":  # the bulk of any field: small, faint dots underneath
                style = {"s": 2 if many else 6, "c": color, "alpha": 0.35 if many else 0.6,
                         "linewidths": 0, "marker": "o", "zorder": 2}
            elif label == "uncertain":
                style = {"s": 14, "facecolors": "none", "edgecolors": "#505050",
                         "linewidths": 0.6, "marker": "s", "zorder": 3}
            else:
                style = {"s": 36, "facecolors": "none", "edgecolors": color,
                         "linewidths": 1.2, "marker": "D", "zorder": 4}
            axes.scatter(x[chosen] / step, y[chosen] / step, label=f"{label}: {chosen.sum()}",
                         **style)
        legend = axes.legend(loc="upper right", fontsize=7, framealpha=0.8, markerscale=1.5,
                             title=f"{len(sources)} sources", title_fontsize=7)
        for handle in legend.legend_handles:
            handle.set_alpha(1.0)
    axes.set_xlim(-0.5, pixels.shape[1] - 0.5)
    axes.set_ylim(-0.5, pixels.shape[0] - 0.5)
    axes.set_xlabel("Right ascension")
    axes.set_ylabel("Declination")
    from pathlib import Path

    name = Path(str(image.source)).name
    axes.set_title(f"{name}: {len(tiles)} tiles of {tiles.tile_size} px", fontsize=9)
    if path is not None:
        with atomic_path(path, overwrite=True) as partial:
            figure.savefig(partial, dpi=100, bbox_inches="tight")
    return figure

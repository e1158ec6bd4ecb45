"""A grid of square tiles over a `~radiofm.image.RadioImage`, streamed in row bands."""

import logging
import os
from collections import deque
from concurrent.futures import ThreadPoolExecutor

import astropy.units as u
import numpy as np
from astropy.coordinates import SkyCoord
from astropy.table import QTable
from regions import PixCoord, PolygonSkyRegion, RectanglePixelRegion, Regions
from tqdm.auto import tqdm

from .._atomic import atomic_path
from .._provenance import provenance_meta
from ..image import read_image
from ._normalize import Normalization, NormalizationSpec, normalize
from ._resample import prepare_tiles, split_windows, window_bounds

__all__ = ["TileSet", "tile_image"]

log = logging.getLogger("radiofm")

EDGES = ("shift", "drop")


def tile_image(image, tile_size=256, *, overlap=0, min_valid=1.0, edge="shift"):
    """Cut an image into a grid of square tiles.

    Parameters
    ----------
    image : anything `~radiofm.image.read_image` accepts
        Call `~radiofm.image.read_image` first to choose an HDU, a plane or a beam.
    tile_size : int or `~astropy.units.Quantity`
        Tile side in pixels, or as an angle (converted with the image's pixel scale and
        rounded to whole pixels).
    overlap : int or `~astropy.units.Quantity`
        Pixels (or angle) shared by neighbouring tiles; must be smaller than a tile.
    min_valid : float
        Keep tiles whose fraction of finite (non-blank) pixels is at least this.
    edge : {"shift", "drop"}
        When the grid does not end on the image edge: ``"shift"`` adds a last row/column of
        tiles flush with the edge (so every pixel is covered), ``"drop"`` leaves the strip out.

    Returns
    -------
    tiles : `TileSet`
        ``tiles.table`` is a `~astropy.table.QTable` with one row per kept tile.

    Raises
    ------
    ValueError
        The image is smaller than one tile, the overlap is not smaller than a tile, or no
        tile has ``min_valid`` of its pixels finite.

    Examples
    --------
    >>> import numpy as np
    >>> from astropy.wcs import WCS
    >>> from radiofm.tiling import tile_image
    >>> wcs = WCS(naxis=2)
    >>> wcs.wcs.ctype = ["RA---SIN", "DEC--SIN"]
    >>> wcs.wcs.cdelt = [-1.1 / 3600, 1.1 / 3600]
    >>> tiles = tile_image((np.ones((300, 500)), wcs), tile_size=128)
    >>> len(tiles), tiles.table.colnames[:5]
    (12, ['tile_id', 'x_min', 'y_min', 'x_max', 'y_max'])
    """
    image = read_image(image)
    size = _to_pixels(tile_size, image, "tile_size")
    step = size - _to_pixels(overlap, image, "overlap", allow_zero=True)
    if step <= 0:
        raise ValueError(f"overlap must be smaller than the tile size ({size} px)")
    if edge not in EDGES:
        raise ValueError(f"edge must be one of {EDGES}, got {edge!r}")
    if not 0 <= min_valid <= 1:
        raise ValueError(f"min_valid is a fraction in [0, 1], got {min_valid}")
    ny, nx = image.shape
    if ny < size or nx < size:
        raise ValueError(
            f"image is {nx}x{ny} pixels, smaller than one {size}-pixel tile; "
            f"use tile_size <= {min(nx, ny)}"
        )
    x_starts = _grid_starts(nx, size, step, edge)
    y_starts = _grid_starts(ny, size, step, edge)
    valid = _valid_fractions(image, x_starts, y_starts, size)
    y_grid, x_grid = np.meshgrid(y_starts, x_starts, indexing="ij")
    keep = valid >= min_valid
    if not keep.any():
        raise ValueError(
            f"no {size}-pixel tile has at least {min_valid:.0%} finite pixels "
            f"(best: {valid.max():.0%}); lower min_valid or the tile size"
        )
    (log.debug if keep.all() else log.info)("%d of %d tiles kept (min_valid=%g)", keep.sum(),
                                            keep.size, min_valid)
    tiles = TileSet(
        image, x_grid[keep], y_grid[keep], valid[keep], size=size,
        overlap=size - step, min_valid=min_valid, edge=edge,
    )
    centers = tiles.table["sky_center"].spherical
    lost = ~(np.isfinite(centers.lon.deg) & np.isfinite(centers.lat.deg))
    if lost.any():
        raise ValueError(
            f"{int(lost.sum())} of {len(lost)} tiles have no finite sky position: the pixels "
            f"({image.pixel_scale.to(u.deg):.3g}) are too coarse for the image's projection, "
            "or its WCS maps them off the sky; check CDELT or CD in the header"
        )
    return tiles


def _to_pixels(value, image, name, allow_zero=False):
    if isinstance(value, u.Quantity):
        if not value.unit.is_equivalent(u.deg):
            raise u.UnitsError(f"{name} must be pixels or an angle, got unit {value.unit!r}")
        pixels = image.angle_to_pixels(value)
    elif isinstance(value, int | np.integer):
        pixels = int(value)
    else:
        raise TypeError(f"{name} must be an int (pixels) or an angle Quantity, got {value!r}")
    if pixels < 0 or (pixels == 0 and not allow_zero):
        raise ValueError(f"{name} must be {'non-negative' if allow_zero else 'positive'}, got "
                         f"{value}")
    return pixels


def _grid_starts(length, size, step, edge):
    starts = np.arange(0, length - size + 1, step)
    if edge == "shift" and starts[-1] + size < length:
        starts = np.append(starts, length - size)
    return starts


def _valid_fractions(image, x_starts, y_starts, size):
    """Fraction of finite pixels per tile, one row band read at a time."""
    valid = np.empty((len(y_starts), len(x_starts)))
    for row, y0 in enumerate(y_starts):
        with image.rows(y0, y0 + size) as band:
            per_column = np.isfinite(band).sum(axis=0)
        cumulative = np.concatenate([[0], np.cumsum(per_column)])
        valid[row] = (cumulative[x_starts + size] - cumulative[x_starts]) / size**2
    return valid


class TileSet:
    """Square tiles over one image: their table, WCS, footprints and pixels.

    Made by `tile_image`. Pixel coordinates are zero-based; ``x_max`` and ``y_max`` are
    exclusive, so tile ``i`` is ``data[y_min:y_max, x_min:x_max]``.

    Attributes
    ----------
    image : `~radiofm.image.RadioImage`
    table : `~astropy.table.QTable`
        Columns ``tile_id``, ``x_min``, ``y_min``, ``x_max``, ``y_max``, ``x_center``,
        ``y_center``, ``sky_center`` (`~astropy.coordinates.SkyCoord`) and
        ``valid_fraction``; ``meta`` records the image, grid parameters and radiofm version.
    tile_size, overlap : int
        In pixels.
    """

    def __init__(self, image, x_min, y_min, valid_fraction, *, size, overlap, min_valid, edge):
        self.image = image
        self.tile_size = size
        self.overlap = overlap
        x_min = np.asarray(x_min, dtype=np.int64)
        y_min = np.asarray(y_min, dtype=np.int64)
        x_center = x_min + (size - 1) / 2
        y_center = y_min + (size - 1) / 2
        table = QTable()
        table["tile_id"] = np.arange(len(x_min))
        table["x_min"] = x_min
        table["y_min"] = y_min
        table["x_max"] = x_min + size
        table["y_max"] = y_min + size
        table["x_center"] = x_center
        table["y_center"] = y_center
        table["sky_center"] = image.wcs.pixel_to_world(x_center, y_center)
        table["valid_fraction"] = np.asarray(valid_fraction, dtype=np.float32)
        table.meta.update(
            provenance_meta(
                IMAGE=str(image.source),
                IMAGE_NX=image.shape[1],
                IMAGE_NY=image.shape[0],
                PIXSCALE=round(float(image.pixel_scale.to_value(u.arcsec)), 6),
                TILESIZE=size,
                OVERLAP=overlap,
                MINVALID=float(min_valid),
                TILEEDGE=edge,
            )
        )
        self.table = table

    def __len__(self):
        return len(self.table)

    def __repr__(self):
        return (
            f"<TileSet {len(self)} tiles of {self.tile_size} px "
            f"({self.tile_angle:.3g}), overlap {self.overlap} px, over {self.image!r}>"
        )

    @property
    def tile_angle(self):
        """Tile side as an angle (arcsec)."""
        return self.tile_size * self.image.pixel_scale

    def _row(self, tile_id):
        if not 0 <= tile_id < len(self):
            raise IndexError(f"tile_id {tile_id} out of range (0..{len(self) - 1})")
        return self.table[tile_id]

    def tile_slices(self, tile_id):
        """``(rows, cols)`` slices of a tile in the image."""
        row = self._row(tile_id)
        return slice(row["y_min"], row["y_max"]), slice(row["x_min"], row["x_max"])

    def tile_wcs(self, tile_id):
        """WCS of one tile (as `~astropy.nddata.Cutout2D` would give: CRPIX shifted)."""
        return self.image.wcs[self.tile_slices(tile_id)]

    def read_tile(self, tile_id, normalization=None):
        """Pixels of one tile, raw or normalised.

        Parameters
        ----------
        tile_id : int
            Row of ``table``.
        normalization : `NormalizationSpec`, str, dict or `Normalization`, optional
            What to fit on the parent image, or fitted parameters.

        Returns
        -------
        pixels : `~numpy.ndarray`
            (tile_size, tile_size) float32.
        """
        pixels = self.image.read_region(*self.tile_slices(tile_id))
        if normalization is None:
            return pixels
        return normalize(pixels, self.fit_normalization(normalization), out=pixels)

    def fit_normalization(self, normalization="percentile"):
        """A `Normalization` fitted on the parent image (or ``normalization`` itself).

        Parameters
        ----------
        normalization : `NormalizationSpec`, str, dict or `Normalization`
            What to fit (any form `NormalizationSpec.from_value` takes), or parameters
            already fitted (returned as they are).
        """
        if isinstance(normalization, Normalization):
            return normalization
        return NormalizationSpec.from_value(normalization).fit(self.image)

    def batches(self, batch_size=64, *, normalization="percentile", size=None, windows=1,
                threads=None, progress=False):
        """Iterate over the tiles in normalised float32 batches for a model.

        Each batch reads only the row bands (``tile_size`` rows) its tiles lie in, so
        memory use is about ``threads`` x (one band + one batch) whatever the image size.
        Batches are filled by a pool of threads (numpy releases the GIL) and come out in
        order.

        Parameters
        ----------
        batch_size : int
            Tiles per batch (the last batch may be smaller).
        normalization : `NormalizationSpec`, str, dict or `Normalization`
            What to fit once on the parent image (as the source work did), or fitted
            parameters, e.g. those a model was trained with.
        size : int, optional
            Resample each tile to ``size`` x ``size`` before the stretch (`prepare_tiles`,
            as a model's input); default: the tiles' own size, no resampling.
        windows : int
            Cut each tile into ``windows`` x ``windows`` windows (`split_windows`) before
            resampling them to ``size`` (default: the window's own side).
        threads : int, optional
            Batches filled at once; default: the CPUs this process may use.
        progress : bool
            Show a progress bar (only on a terminal).

        Yields
        ------
        tile_ids : `~numpy.ndarray`
            (B,) int, rows of ``table``.
        pixels : `~numpy.ndarray`
            (B * windows**2, 1, S, S) float32, S = ``size`` or ``tile_size`` (the window
            side with ``windows``); tile ``tile_ids[i]``'s windows are rows
            ``i * windows**2`` to ``(i + 1) * windows**2 - 1``.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        threads = len(os.sched_getaffinity(0)) if threads is None else int(threads)
        if threads < 1:
            raise ValueError(f"threads must be at least 1, got {threads}")
        stretch = self.fit_normalization(normalization)
        x_min = np.asarray(self.table["x_min"])
        y_min = np.asarray(self.table["y_min"])

        _, _, side = window_bounds(self.tile_size, windows)

        def fill(ids):
            if windows == 1 and (size is None or size == self.tile_size):
                return ids, self._normalized_tiles(ids, x_min, y_min, stretch)
            raw = split_windows(self._raw_tiles(ids, x_min, y_min), windows)
            return ids, prepare_tiles(raw, stretch, size or side)[:, None]

        yield from prefetch_batches(self.table, batch_size, fill, threads=threads,
                                    progress=progress)

    def _band_views(self, ids, x_min, y_min):
        """``(slot, view)`` for the tiles ``ids``; tiles sharing a row band read it once.

        A view is valid only until the next one is asked for (its band is then released).
        """
        size = self.tile_size
        slots = np.arange(len(ids))
        bands = y_min[ids]
        for y0 in np.unique(bands):
            with self.image.rows(y0, y0 + size) as band:
                for slot in slots[bands == y0]:
                    x0 = x_min[ids[slot]]
                    yield slot, band[:, x0 : x0 + size]

    def _raw_tiles(self, ids, x_min, y_min):
        """(len(ids), size, size) raw pixels."""
        raw = np.empty((len(ids), self.tile_size, self.tile_size), np.float32)
        for slot, view in self._band_views(ids, x_min, y_min):
            raw[slot] = view
        return raw

    def _normalized_tiles(self, ids, x_min, y_min, stretch):
        """(len(ids), 1, size, size) normalised pixels.

        ``normalize`` reads each tile straight from the band (for uncompressed files, from
        the file's pages), casting as it goes, so each pixel is copied once.
        """
        size = self.tile_size
        pixels = np.empty((len(ids), 1, size, size), dtype=np.float32)
        for slot, view in self._band_views(ids, x_min, y_min):
            normalize(view, stretch, out=pixels[slot, 0])
        return pixels

    def footprints(self, *, sky=True):
        """Tile outlines as regions, labelled with their ``tile_id``.

        Parameters
        ----------
        sky : bool
            Sky polygons through the WCS (exact for any projection) if True, pixel
            rectangles otherwise.

        Returns
        -------
        regions : `~regions.Regions`
        """
        table = self.table
        if not sky:
            return Regions(
                [
                    RectanglePixelRegion(
                        PixCoord(row["x_center"], row["y_center"]),
                        width=self.tile_size, height=self.tile_size,
                        meta={"text": str(row["tile_id"])},
                    )
                    for row in table
                ]
            )
        x0 = np.asarray(table["x_min"]) - 0.5
        y0 = np.asarray(table["y_min"]) - 0.5
        x1, y1 = x0 + self.tile_size, y0 + self.tile_size
        corners = self.image.wcs.pixel_to_world(
            np.stack([x0, x1, x1, x0], axis=1), np.stack([y0, y0, y1, y1], axis=1)
        )
        return Regions(
            [
                PolygonSkyRegion(SkyCoord(corners[i]), meta={"text": str(tile_id)})
                for i, tile_id in enumerate(table["tile_id"])
            ]
        )

    def write_footprints(self, path, *, format="ds9", overwrite=False):
        """Write the sky footprints as a DS9 (``"ds9"``) or CASA (``"crtf"``) region file."""
        with atomic_path(path, overwrite=overwrite) as partial:
            self.footprints().write(partial, format=format)


class LoggedProgress:
    """A tqdm bar on a terminal; elsewhere (a pipeline's log) one log line every tenth.

    Parameters
    ----------
    total : int
        Steps expected.
    unit : str
        What a step is (``"batch"``, ``"image"``).
    progress : bool
        False shows nothing at all.
    """

    def __init__(self, total, unit, *, progress=True):
        self.bar = tqdm(total=total, unit=unit, disable=None if progress else True)
        self.log_lines = progress and self.bar.disable and total > 1
        self.total, self.unit, self.done = total, unit, 0
        self.every = max(1, -(-total // 10))

    def update(self, count=1):
        self.bar.update(count)
        self.done += count
        if self.log_lines and (self.done % self.every == 0 or self.done == self.total):
            plural = self.unit + ("es" if self.unit.endswith(("ch", "s")) else "s")
            log.info("%d/%d %s (%.0f %%)", self.done, self.total, plural,
                     100 * self.done / self.total)

    def close(self):
        self.bar.close()


def prefetch_batches(table, batch_size, prepare, *, threads, progress=False):
    """Run ``prepare(tile_ids)`` on row-ordered batches of tiles in a thread pool, yielding
    results in order while the next batches are prepared.

    Parameters
    ----------
    table : `~astropy.table.Table`
        Tile table with ``x_min`` and ``y_min``; batches follow image rows.
    batch_size : int
        Tiles per batch (the last may be smaller).
    prepare : callable
        Maps an index array of table rows to a batch result.
    threads : int
        Batches prepared at once.
    progress : bool
        Show a progress bar (only on a terminal).

    Yields
    ------
    result
        ``prepare(ids)`` for each batch, in row order.
    """
    order = np.lexsort((np.asarray(table["x_min"]), np.asarray(table["y_min"])))
    jobs = [order[start : start + batch_size] for start in range(0, len(order), batch_size)]
    bar = LoggedProgress(len(jobs), "batch", progress=progress)
    with ThreadPoolExecutor(max_workers=threads) as pool:
        pending = deque()
        try:
            for ids in jobs:
                pending.append(pool.submit(prepare, ids))
                if len(pending) > threads:
                    bar.update()
                    yield pending.popleft().result()
            while pending:
                bar.update()
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()
            bar.close()

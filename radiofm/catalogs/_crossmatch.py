"""Catalogues onto tiles and onto each other: counts, positional matches, COCO boxes."""

import json
import logging

import astropy.units as u
import numpy as np
from astropy.coordinates import SkyCoord, search_around_sky
from astropy.table import MaskedColumn, QTable, Table

from .._atomic import atomic_path
from ..sources import sky_positions
from ..tiling import window_bounds

__all__ = ["count_in_tiles", "match_catalog", "tiles_to_coco"]

log = logging.getLogger("radiofm")


def tile_membership(positions, tiles):
    """Which tiles contain which positions, vectorised over both.

    A position belongs to tile ``i`` when its pixel coordinates in the image lie inside the
    tile's pixels: ``x_min - 0.5 <= x < x_max - 0.5`` and likewise in y, i.e. inside the tile
    WCS footprint. Overlapping tiles share positions.

    Parameters
    ----------
    positions : `~astropy.coordinates.SkyCoord`
        Any frame; transformed to the image's.
    tiles : `~radiofm.tiling.TileSet`
        The tiles.

    Returns
    -------
    tile_index, position_index : `~numpy.ndarray`
        Matching pairs (rows of ``tiles.table`` and of ``positions``).
    x, y : `~numpy.ndarray`
        Pixel coordinates of every position in the image.
    """
    x, y = tiles.image.wcs.world_to_pixel(positions)
    x = np.atleast_1d(np.asarray(x, float))
    y = np.atleast_1d(np.asarray(y, float))
    size = tiles.tile_size
    x_min = np.asarray(tiles.table["x_min"])
    y_min = np.asarray(tiles.table["y_min"])
    x_starts, column_of = np.unique(x_min, return_inverse=True)
    y_starts, row_of = np.unique(y_min, return_inverse=True)
    tile_at = np.full((len(y_starts), len(x_starts)), -1)
    tile_at[row_of, column_of] = np.arange(len(x_min))
    finite = np.flatnonzero(np.isfinite(x) & np.isfinite(y))
    px, py = x[finite], y[finite]
    # tiles with start in (p - size + 0.5, p + 0.5] contain p
    lo_x = np.searchsorted(x_starts, px - size + 0.5, side="right")
    hi_x = np.searchsorted(x_starts, px + 0.5, side="right")
    lo_y = np.searchsorted(y_starts, py - size + 0.5, side="right")
    hi_y = np.searchsorted(y_starts, py + 0.5, side="right")
    tiles_found, positions_found = [], []
    for dx in range(int((hi_x - lo_x).max(initial=0))):
        for dy in range(int((hi_y - lo_y).max(initial=0))):
            ok = (lo_x + dx < hi_x) & (lo_y + dy < hi_y)
            tile = tile_at[lo_y[ok] + dy, lo_x[ok] + dx]
            kept = tile >= 0  # tiles dropped by min_valid are -1
            tiles_found.append(tile[kept])
            positions_found.append(finite[ok][kept])
    if not tiles_found:
        return np.empty(0, int), np.empty(0, int), x, y
    return np.concatenate(tiles_found), np.concatenate(positions_found), x, y


def _selection(catalog, select):
    """Boolean mask of the catalogue rows that ``select`` asks for."""
    n = len(catalog)
    if select is None or (isinstance(select, str) and select == "all"):
        return np.ones(n, dtype=bool)
    if isinstance(select, str) and select == "compact":
        select = ("S",)
    if callable(select):
        mask = np.asarray(select(catalog), dtype=bool)
    elif isinstance(select, np.ndarray) and select.dtype == bool:
        mask = select
    elif isinstance(select, tuple | list | set):
        if "s_code" not in catalog.colnames:
            raise ValueError("selecting by S_Code needs an s_code column; use read_catalog")
        mask = np.isin(np.asarray(catalog["s_code"], dtype=str), list(select))
    else:
        raise TypeError(
            "select must be 'compact', 'all' or None, a sequence of S_Code values, a boolean "
            f"mask or a function of the catalogue; got {select!r}"
        )
    if mask.shape != (n,):
        raise ValueError(f"select gave a mask of shape {mask.shape} for {n} catalogue rows")
    return mask


def count_in_tiles(catalog, tiles, *, select="compact", column="n_compact", windows=1,
                   weights=None):
    """Count catalogue sources per tile (or sum a weight of each).

    Parameters
    ----------
    catalog : `~astropy.table.Table`
        A standard catalogue (`~radiofm.sources.read_catalog`, `~radiofm.sources.find_sources`)
        or any table with sky positions.
    tiles : `~radiofm.tiling.TileSet`
        The tiles (their image's WCS places the sources).
    select : str, sequence, array or callable
        Which sources count: ``"compact"`` (S_Code 'S', as the source work counted compact
        sources), ``"all"`` or None, a sequence of S_Code values such as ``("S", "C")``, a
        boolean mask, or a function of the catalogue returning one.
    column : str
        Name of the new column.
    windows : int
        Count in each of the ``windows`` x ``windows`` cells of a tile that
        `radiofm.tiling.split_windows` cuts it into (`radiofm.tiling.window_bounds`; the
        cells partition the tile, so a tile's windows add up to its count).
    weights : array-like, optional
        One number per catalogue row: each selected source adds its weight instead of 1
        (for example the probability that it is a source of the kind counted).

    Returns
    -------
    table : `~astropy.table.QTable`
        A copy of ``tiles.table`` with ``column`` added (int; float with ``weights``): one
        count per tile, or with ``windows`` > 1 a (N, windows**2) count per window in
        `split_windows` order.

    Examples
    --------
    >>> from radiofm.catalogs import count_in_tiles
    >>> from radiofm.simulate import make_radio_sky
    >>> from radiofm.tiling import tile_image
    >>> hdu, truth = make_radio_sky((512, 512), seed=4)
    >>> tiles = tile_image(hdu, 256)
    >>> counted = count_in_tiles(truth, tiles, select=truth["flux"].value > 1e-4)
    >>> int(counted["n_compact"].sum()) == int((truth["flux"].value > 1e-4).sum())
    True
    >>> flux = truth["flux"].value  # summed per tile instead of counted
    >>> summed = count_in_tiles(truth, tiles, select="all", weights=flux)
    >>> bool(abs(summed["n_compact"].sum() - flux.sum()) < 1e-9 * flux.sum())
    True
    """
    positions = sky_positions(catalog, "catalog")
    mask = _selection(catalog, select)
    if weights is not None:
        weights = np.asarray(weights, dtype=np.float64)
        if weights.shape != (len(catalog),):
            raise ValueError(f"weights must give one number per catalogue row "
                             f"({len(catalog)}), got shape {weights.shape}")
    tile_index, position_index, x, y = tile_membership(positions[mask], tiles)
    table = tiles.table.copy()
    edges, _, _ = window_bounds(tiles.tile_size, windows)

    def cell_of(pixel, start):  # the window cell along one axis of each pair
        offset = pixel[position_index] + 0.5 - np.asarray(table[start])[tile_index]
        return np.clip(np.searchsorted(edges, offset, side="right") - 1, 0, windows - 1)

    cell = ((tile_index * windows + cell_of(y, "y_min")) * windows + cell_of(x, "x_min"))
    counts = np.bincount(cell, None if weights is None else weights[mask][position_index],
                         minlength=len(table) * windows * windows)
    table[column] = counts if windows == 1 else counts.reshape(len(table), windows * windows)
    table.meta["COUNTCOL"] = column
    return table


def match_catalog(target, reference, *, max_separation=5 * u.arcsec, one_to_one=False,
                  columns=None):
    """Attach the nearest reference source (and its labels) to each target row.

    Parameters
    ----------
    target : `~astropy.table.Table`
        A source catalogue or a tile table (anything with sky positions).
    reference : `~astropy.table.Table`
        A labelled catalogue (e.g. morphology classes), any frame.
    max_separation : `~astropy.units.Quantity`
        Largest separation of a match. For tiles, half the tile side labels each tile with
        the reference source nearest its centre.
    one_to_one : bool
        Each reference source matches at most one target row (closest pairs first).
    columns : sequence of str, optional
        Reference columns to copy (default: all but its positions). A name the target
        already has gets a ``ref_`` prefix.

    Returns
    -------
    table : `~astropy.table.QTable`
        A copy of ``target`` with ``ref_index`` (-1 where unmatched), ``separation``
        (arcsec, NaN where unmatched) and the reference columns (masked where unmatched).
    """
    target_sky = sky_positions(target, "target")
    reference_sky = sky_positions(reference, "reference")
    max_separation = u.Quantity(max_separation)
    ref_index = np.full(len(target), -1)
    separation = np.full(len(target), np.nan)
    if len(target) and len(reference):
        i_target, i_ref, sep, _ = search_around_sky(target_sky, reference_sky, max_separation)
        order = np.argsort(sep.to_value(u.arcsec), kind="stable")
        used_target = np.zeros(len(target), dtype=bool)
        used_ref = np.zeros(len(reference), dtype=bool)
        for k in order:  # closest pairs first
            t, r = i_target[k], i_ref[k]
            if used_target[t] or (one_to_one and used_ref[r]):
                continue
            used_target[t] = used_ref[r] = True
            ref_index[t] = r
            separation[t] = sep[k].to_value(u.arcsec)
    table = QTable(target, copy=True)
    table["ref_index"] = ref_index
    table["separation"] = separation * u.arcsec
    matched = ref_index >= 0
    skip = {name for name in reference.colnames if isinstance(reference[name], SkyCoord)}
    skip |= {name for name in reference.colnames
             if name.lower() in ("ra", "dec", "raj2000", "dej2000", "glon", "glat")}
    for name in columns or [n for n in reference.colnames if n not in skip]:
        source = reference[name]
        values = np.asarray(source)[np.where(matched, ref_index, 0)] if len(reference) else (
            np.zeros(len(target), dtype=np.asarray(source).dtype))
        out = name if name not in table.colnames else f"ref_{name}"
        column = MaskedColumn(values, mask=~matched, name=out)
        unit = getattr(source, "unit", None)
        table[out] = column if unit is None else u.Quantity(np.where(matched, values, np.nan),
                                                            unit)
    log.info("matched %d of %d rows within %s", matched.sum(), len(target), max_separation)
    return table


def tiles_to_coco(tiles, catalog, *, category="s_code", path=None):
    """Export the sources in each tile as COCO object-detection annotations.

    Each tile is a COCO image (``file_name`` ``tile_000012.png``, pixel bounds as extra
    keys); each source inside a tile an annotation whose box encloses the ellipse of twice
    its FWHM axes (at least the beam), clipped to the tile, in tile pixels.

    Parameters
    ----------
    tiles : `~radiofm.tiling.TileSet`
        The tiles.
    catalog : `~astropy.table.Table`
        Standard catalogue or any table with sky positions and ``category``.
    category : str
        Column naming each source's class (e.g. ``s_code`` or ``morph_class``).
    path : str or path-like, optional
        Write the JSON there too.

    Returns
    -------
    coco : dict
        ``images``, ``annotations`` and ``categories`` as COCO defines them.
    """
    if category not in catalog.colnames:
        raise ValueError(f"catalog has no {category!r} column for the COCO categories")
    positions = sky_positions(catalog, "catalog")
    tile_index, source_index, x, y = tile_membership(positions, tiles)
    names = sorted({str(v) for v in np.asarray(catalog[category])})
    category_id = {name: k + 1 for k, name in enumerate(names)}
    scale = tiles.image.pixel_scale.to_value(u.arcsec)
    beam = tiles.image.beam
    floor = beam.major.to_value(u.arcsec) if beam is not None else 3 * scale
    major = _size(catalog, "major", floor)
    minor = _size(catalog, "minor", floor)
    pa = np.radians(np.nan_to_num(_column(catalog, "pa", u.deg), nan=0.0))
    half_x = np.hypot(major * np.sin(pa), minor * np.cos(pa)) / scale
    half_y = np.hypot(major * np.cos(pa), minor * np.sin(pa)) / scale
    table = tiles.table
    size = tiles.tile_size
    images = [
        {"id": int(row["tile_id"]), "file_name": f"tile_{int(row['tile_id']):06d}.png",
         "width": size, "height": size, "x_min": int(row["x_min"]), "y_min": int(row["y_min"])}
        for row in table
    ]
    annotations = []
    for k, (t, s) in enumerate(zip(tile_index, source_index, strict=True)):
        x0 = x[s] - table["x_min"][t] + 0.5  # tile pixel edges start at 0
        y0 = y[s] - table["y_min"][t] + 0.5
        left, right = max(x0 - half_x[s], 0.0), min(x0 + half_x[s], size)
        bottom, top = max(y0 - half_y[s], 0.0), min(y0 + half_y[s], size)
        width, height = right - left, top - bottom
        annotations.append({
            "id": k + 1, "image_id": int(table["tile_id"][t]),
            "category_id": category_id[str(catalog[category][s])],
            "bbox": [round(float(left), 3), round(float(bottom), 3), round(float(width), 3),
                     round(float(height), 3)],
            "area": round(float(width * height), 3), "iscrowd": 0,
        })
    coco = {
        "info": {"description": f"radiofm tiles of {tiles.image.source}"},
        "images": images, "annotations": annotations,
        "categories": [{"id": i, "name": name} for name, i in category_id.items()],
    }
    if path is not None:
        with atomic_path(path, overwrite=True) as partial, open(partial, "w") as stream:
            json.dump(coco, stream, indent=1)
    return coco


def _column(catalog, name, unit):
    if name not in catalog.colnames:
        return np.full(len(catalog), np.nan)
    column = catalog[name]
    if isinstance(catalog, Table) and not isinstance(catalog, QTable):
        column = u.Quantity(column)
    return u.Quantity(column, unit).value


def _size(catalog, name, floor):
    values = _column(catalog, name, u.arcsec)
    return np.fmax(np.nan_to_num(values, nan=floor), floor)

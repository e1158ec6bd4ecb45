"""Similarity search and outlier ranking over a survey index."""

import numpy as np
from astropy.coordinates import SkyCoord

from ._index import SurveyIndex, read_index

__all__ = ["outliers", "read_cutouts", "similar", "write_matches"]


def _index(index):
    return index if isinstance(index, SurveyIndex) else read_index(index)


def _query_vector(index, to, model):
    """The unit query embedding and the index row it came from (or -1)."""
    if isinstance(to, int | np.integer):
        if not 0 <= to < len(index):
            raise IndexError(f"index entry {to} out of range (0..{len(index) - 1})")
        return index.unit_embeddings()[int(to)], int(to)
    if isinstance(to, SkyCoord):
        if not to.isscalar:
            raise ValueError("give one sky position")
        separation = to.separation(index.table["sky_center"])
        row = int(np.argmin(separation))
        return index.unit_embeddings()[row], row
    # an image cutout: embedded by the model, as one tile
    from ..image import read_image
    from ..inference import embed_image

    cutout = read_image(to)
    with cutout:
        table = embed_image(cutout, model, tile_size=min(cutout.shape), min_valid=0.0,
                            progress=False)
    if table.meta.get("MODELSHA") not in set(index.table["model_sha"]):
        raise ValueError(f"model {table.meta.get('MODEL')!r} is not the model of this index; "
                         "pass the model the index was built with (model=)")
    vector = np.asarray(table["embedding"], np.float64).mean(axis=0)
    return vector / (np.linalg.norm(vector) or 1), -1


def similar(index, to, k=8, *, model="default"):
    """The ``k`` tiles of an index most similar to a tile, a sky position or a cutout.

    Similarity is the cosine of embeddings (scikit-learn's exact nearest neighbours on unit
    vectors).

    Parameters
    ----------
    index : `SurveyIndex` or path
        The index (see `read_index`).
    to : int, `~astropy.coordinates.SkyCoord` or image
        An index entry (``index_id``), a sky position (the tile whose centre is nearest
        stands for it), or an image cutout (anything `~radiofm.image.read_image`
        accepts), embedded whole with ``model``.
    k : int
        How many to return; the query tile itself is left out.
    model : str, path-like or `~radiofm.inference.OnnxModel`
        For cutouts only: the model the index was built with.

    Returns
    -------
    matches : `~astropy.table.QTable`
        Rows of ``index.table``, most similar first, with ``distance`` (1 - cosine
        similarity).
    """
    index = _index(index)
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    vector, own = _query_vector(index, to, model)
    count = min(len(index), k + (own >= 0))
    distances, rows = index.neighbors().kneighbors(vector[None].astype(np.float32),
                                                   n_neighbors=count)
    distances, rows = distances[0], rows[0]
    keep = rows != own
    rows, distances = rows[keep][:k], distances[keep][:k]
    matches = index.table[rows]
    matches["distance"] = (distances**2 / 2).astype(np.float32)  # |a-b|^2 / 2 = 1 - cos
    return matches


def outliers(index, n=16, *, k=10):
    """The ``n`` most unusual tiles of an index: largest mean distance to their ``k``
    nearest neighbours (cosine of embeddings).

    Parameters
    ----------
    index : `SurveyIndex` or path
        The index.
    n : int
        How many to return.
    k : int
        Neighbours averaged over.

    Returns
    -------
    ranked : `~astropy.table.QTable`
        Rows of ``index.table``, most unusual first, with ``outlier_score``.
    """
    index = _index(index)
    if len(index) < 2:
        raise ValueError("an outlier ranking needs at least 2 tiles in the index")
    k = min(k, len(index) - 1)
    distances, _ = index.neighbors().kneighbors(n_neighbors=k)  # leaves each point out
    score = (distances**2 / 2).mean(axis=1)
    order = np.argsort(-score, kind="stable")[:n]
    ranked = index.table[order]
    ranked["outlier_score"] = score[order].astype(np.float32)
    return ranked


def read_cutouts(matches):
    """The pixels of index rows, read from their images (which must still be readable).

    Parameters
    ----------
    matches : `~astropy.table.Table`
        Rows of a `SurveyIndex` table (``image`` and pixel bounds).

    Returns
    -------
    cutouts : list of `~numpy.ndarray`
        One 2-D array per row.
    """
    from ..image import read_image

    cutouts, opened = [], {}
    try:
        for row in matches:
            image = row["image"]
            if image not in opened:
                opened[image] = read_image(image)
            cutouts.append(opened[image].read_region(
                slice(int(row["y_min"]), int(row["y_max"])),
                slice(int(row["x_min"]), int(row["x_max"]))))
    finally:
        for radio in opened.values():
            radio.close()
    return cutouts


def write_matches(matches, output_dir, name, *, format="ecsv", title=None, overwrite=False):
    """Write search results as a table and a PNG mosaic of their cutouts.

    Parameters
    ----------
    matches : `~astropy.table.QTable`
        From `similar` or `outliers`.
    output_dir : str or path-like
        Output folder.
    name : str
        File name stem: ``<name>.<ext>`` and ``<name>.png``.
    format : {"ecsv", "fits", "votable", "parquet"}
        Table format.
    title : str, optional
        Title of the mosaic.
    overwrite : bool
        Replace existing files.

    Returns
    -------
    paths : tuple of `~pathlib.Path`
        The table and the PNG.
    """
    from pathlib import Path

    from .._atomic import atomic_path, check_writable_folder
    from ..tiling import write_table
    from ..visualization import plot_mosaic
    from ._annotate import TABLE_EXTENSIONS

    folder = check_writable_folder(output_dir)
    table_path = folder / f"{name}{TABLE_EXTENSIONS[format]}"
    png_path = folder / f"{name}.png"
    existing = [str(p) for p in (table_path, png_path) if p.exists()]
    if existing and not overwrite:
        raise FileExistsError(f"would overwrite {', '.join(existing)}; pass --overwrite")
    score = "distance" if "distance" in matches.colnames else "outlier_score"
    titles = [f"{Path(r['image']).name.split('.fits')[0]} #{r['tile_id']}\n{r[score]:.3g}"
              for r in matches]
    cutouts = read_cutouts(matches)
    with atomic_path(png_path, overwrite=True) as partial:
        plot_mosaic(cutouts, partial, titles=titles, suptitle=title)
    write_table(matches, table_path, overwrite=True)
    return table_path, png_path

"""The survey index: every tile's position, image, tile ID and embedding, in Parquet parts.

An index is a folder of Parquet files, one per image (``<image stem>.parquet``), all with
the same columns. Adding an image writes one new part (atomically); nothing already there
is rewritten. `read_index` reads all parts into one `SurveyIndex`.
"""

from pathlib import Path

import numpy as np
from astropy.coordinates import SkyCoord
from astropy.table import QTable, Table

from .._atomic import atomic_path
from .._optional_deps import HAS_PYARROW, SURVEY_EXTRA_HINT

__all__ = ["SurveyIndex", "add_to_index", "check_index_support", "read_index"]

#: Columns of every index part besides ``embedding``.
COLUMNS = ("image", "tile_id", "ra", "dec", "x_min", "y_min", "x_max", "y_max",
           "n_compact_pred", "n_compact_pred_err", "model_sha")
#: Columns parts written by older radiofm versions may lack (read as NaN).
OPTIONAL_COLUMNS = ("n_compact_pred_err",)


def check_index_support():
    """Raise an ImportError saying what to install when pyarrow is missing."""
    if not HAS_PYARROW:
        raise ImportError(f"the survey index needs pyarrow: {SURVEY_EXTRA_HINT}")


def add_to_index(index, tiles, *, name=None, image=None, overwrite=True):
    """Add one image's tile table (with embeddings) to a survey index folder.

    Parameters
    ----------
    index : str or path-like
        The index folder (created if needed).
    tiles : `~astropy.table.Table` or path
        A tile table with ``embedding`` (from `~radiofm.inference.embed_image`,
        `annotate_image` or `annotate_many`), or its file.
    name : str, optional
        Part name (default: the stem of the image); adding a part of the same name again
        replaces it.
    image : str or path-like, optional
        The image file, as the index records it for reading cutouts (default:
        ``tiles.meta["IMAGE"]``, which radiofm writes as the file name only).
    overwrite : bool
        Replace a part of the same name.

    Returns
    -------
    path : `~pathlib.Path`
        The part written.
    """
    check_index_support()
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ._annotate import image_stem

    if not isinstance(tiles, Table):
        tiles = QTable.read(tiles)
    if "embedding" not in tiles.colnames:
        raise ValueError("the tile table has no embedding column; annotate it first "
                         "(radiofm.inference.embed_image or radiofm annotate)")
    image = str(image if image is not None else tiles.meta.get("IMAGE", name or "image"))
    name = name or image_stem(image)
    if "sky_center" in tiles.colnames:
        sky = tiles["sky_center"].icrs
        ra, dec = sky.ra.deg, sky.dec.deg
    else:
        ra, dec = np.asarray(tiles["sky_center_ra"]), np.asarray(tiles["sky_center_dec"])
    embedding = np.ascontiguousarray(tiles["embedding"], dtype=np.float32)
    n, dim = embedding.shape

    def masked_as_nan(name):  # a masked (out-of-distribution) count is no number
        if name not in tiles.colnames:
            return np.full(n, np.nan, np.float32)
        return np.ma.filled(np.ma.asarray(tiles[name], np.float32), np.nan)

    columns = {
        "image": pa.array([image] * n, pa.string()),
        "tile_id": pa.array(np.asarray(tiles["tile_id"], np.int64)),
        "ra": pa.array(np.asarray(ra, np.float64)), "dec": pa.array(np.asarray(dec, np.float64)),
        **{c: pa.array(np.asarray(tiles[c], np.int64)) for c in ("x_min", "y_min", "x_max",
                                                               "y_max")},
        "n_compact_pred": pa.array(masked_as_nan("n_compact_pred")),
        "n_compact_pred_err": pa.array(masked_as_nan("n_compact_pred_err")),
        "model_sha": pa.array([str(tiles.meta.get("MODELSHA", ""))] * n, pa.string()),
        "embedding": pa.FixedSizeListArray.from_arrays(pa.array(embedding.ravel()), dim),
    }
    table = pa.table(columns).replace_schema_metadata(
        {"model": str(tiles.meta.get("MODEL", "")), "image": image})
    path = Path(index) / f"{name}.parquet"
    with atomic_path(path, overwrite=overwrite) as temporary:
        pq.write_table(table, temporary)
    return path


class SurveyIndex:
    """Every tile of a survey index in memory: a table and an (N, D) embedding matrix.

    Made by `read_index`. ``table`` has one row per tile (``index_id`` is the row), with
    ``image``, ``tile_id``, ``sky_center`` (SkyCoord), the pixel bounds, ``n_compact_pred``
    and ``n_compact_pred_err`` (NaN where the tile table masked them: out-of-distribution
    tiles, or a model without count uncertainties) and ``model_sha``; ``embeddings`` is
    float32.
    """

    def __init__(self, table, embeddings, path=None):
        self.table = table
        self.embeddings = embeddings
        self.path = path
        self._neighbors = None
        self._unit = None

    def __len__(self):
        return len(self.table)

    def __repr__(self):
        images = len(set(self.table["image"])) if len(self) else 0
        return (f"<SurveyIndex {len(self)} tiles of {images} images, embedding "
                f"{self.embeddings.shape[1]}, from {self.path}>")

    def unit_embeddings(self):
        """Embeddings scaled to unit length (cosine distance is then Euclidean); computed
        once."""
        if self._unit is None:
            norms = np.linalg.norm(self.embeddings, axis=1, keepdims=True)
            self._unit = (self.embeddings / np.where(norms > 0, norms, 1)).astype(np.float32)
        return self._unit

    def neighbors(self):
        """The fitted `sklearn.neighbors.NearestNeighbors` over the unit embeddings."""
        if self._neighbors is None:
            from sklearn.neighbors import NearestNeighbors

            self._neighbors = NearestNeighbors(algorithm="brute").fit(self.unit_embeddings())
        return self._neighbors


def read_index(index):
    """Read a survey index folder (or one part file).

    Parameters
    ----------
    index : str or path-like
        The folder `add_to_index` and `annotate_many` write (``<output>/index``).

    Returns
    -------
    index : `SurveyIndex`

    Raises
    ------
    ValueError
        No parts, parts of different models or embedding sizes.
    """
    check_index_support()
    import pyarrow.parquet as pq

    folder = Path(index)
    parts = sorted(folder.glob("*.parquet")) if folder.is_dir() else [folder]
    if not parts or not parts[0].is_file():
        raise ValueError(f"{index} holds no index parts (*.parquet); build one with radiofm "
                         "annotate or radiofm index")
    tables = [pq.read_table(p) for p in parts]
    shas = {sha for t in tables for sha in t.column("model_sha").unique().to_pylist()}
    dims = {t.schema.field("embedding").type.list_size for t in tables}
    if len(shas) > 1 or len(dims) > 1:
        raise ValueError(f"{index} mixes embeddings of {len(shas)} models (sizes "
                         f"{sorted(dims)}); keep one index per model")
    dim = dims.pop()
    embeddings = np.concatenate([
        np.asarray(t.column("embedding").combine_chunks().flatten(), np.float32).reshape(-1, dim)
        for t in tables])
    table = QTable()

    def column(part, name):
        if name in OPTIONAL_COLUMNS and name not in part.column_names:
            return np.full(part.num_rows, np.nan, np.float32)
        return part.column(name).to_numpy(zero_copy_only=False)

    columns = {c: np.concatenate([column(t, c) for t in tables]) for c in COLUMNS}
    table["index_id"] = np.arange(len(embeddings))
    table["image"] = columns["image"].astype(str)
    table["tile_id"] = columns["tile_id"]
    table["sky_center"] = SkyCoord(columns["ra"], columns["dec"], unit="deg")
    for c in ("x_min", "y_min", "x_max", "y_max", "n_compact_pred", "n_compact_pred_err",
              "model_sha"):
        table[c] = columns[c]
    table["model_sha"] = table["model_sha"].astype(str)
    return SurveyIndex(table, embeddings, path=folder)

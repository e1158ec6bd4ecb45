"""Writing tile tables and catalogues: FITS, ECSV, VOTable or Parquet, atomically."""

import json
from pathlib import Path

import astropy.units as u
import numpy as np
from astropy.coordinates import SkyCoord
from astropy.table import QTable, Table

from .._atomic import atomic_path
from .._optional_deps import HAS_PYARROW, SURVEY_EXTRA_HINT

__all__ = ["TABLE_FORMATS", "read_table", "table_format", "write_table"]

#: Table file extensions and the astropy format each is written with.
TABLE_FORMATS = {
    ".fits": "fits", ".fit": "fits", ".fts": "fits", ".ecsv": "ascii.ecsv",
    ".vot": "votable", ".xml": "votable", ".votable": "votable", ".parquet": "parquet",
}


def table_format(path):
    """The astropy format of a table file, from its extension.

    Parameters
    ----------
    path : str or path-like
        A file name ending in one of `TABLE_FORMATS` (FITS may be gzipped: ``.fits.gz``).

    Returns
    -------
    format : str
        ``"fits"``, ``"ascii.ecsv"``, ``"votable"`` or ``"parquet"``.

    Raises
    ------
    ValueError
        The extension is none of `TABLE_FORMATS`.

    Examples
    --------
    >>> from radiofm.tiling import table_format
    >>> table_format("tiles.vot"), table_format("sources.fits.gz")
    ('votable', 'fits')
    """
    name = Path(path).name.lower()
    if name.endswith(".fits.gz"):
        return "fits"
    suffix = Path(name).suffix
    if suffix not in TABLE_FORMATS:
        raise ValueError(f"cannot tell the table format of {path}: give it one of the "
                         f"extensions {', '.join(TABLE_FORMATS)}")
    return TABLE_FORMATS[suffix]


def _flat_sky(table):
    """A plain Table with SkyCoord columns as ``<name>_ra`` / ``<name>_dec`` in degrees."""
    plain = Table(table, copy=False)
    for name in list(plain.colnames):
        if isinstance(table[name], SkyCoord):
            icrs = table[name].icrs
            index = plain.colnames.index(name)
            plain.remove_column(name)
            plain.add_column(icrs.dec.to(u.deg), name=f"{name}_dec", index=index)
            plain.add_column(icrs.ra.to(u.deg), name=f"{name}_ra", index=index)
    return plain


def _write_votable(table, path):
    from astropy.io.votable import from_table
    from astropy.io.votable.tree import Info

    plain = _flat_sky(table)
    plain.meta = {}
    votable = from_table(plain)
    for key, value in table.meta.items():
        votable.get_first_table().infos.append(Info(name=key, value=str(value)))
    votable.to_xml(str(path))


def _require_pyarrow():
    if not HAS_PYARROW:
        raise ImportError(f"Parquet tables need pyarrow: {SURVEY_EXTRA_HINT}")


def _write_parquet(table, path):
    """Columns as Arrow arrays (N x D columns as fixed-size lists), units and meta as JSON."""
    _require_pyarrow()
    import pyarrow as pa
    import pyarrow.parquet as pq

    plain = _flat_sky(table)
    arrays, units = {}, {}
    for name in plain.colnames:
        column = plain[name]
        if getattr(column, "unit", None) is not None:
            units[name] = column.unit.to_string()
        values = np.asarray(column)
        if values.ndim == 1:
            arrays[name] = pa.array(values.astype(str) if values.dtype.kind == "U" else values)
        elif values.ndim == 2:
            flat = pa.array(np.ascontiguousarray(values).ravel())
            arrays[name] = pa.FixedSizeListArray.from_arrays(flat, values.shape[1])
        else:
            raise ValueError(f"column {name!r} has {values.ndim} dimensions; Parquet tables "
                             "hold 1-D and 2-D columns")
    meta = {key: value if isinstance(value, int | float | bool) else str(value)
            for key, value in table.meta.items()}
    schema_meta = {"radiofm.meta": json.dumps(meta), "radiofm.units": json.dumps(units)}
    pq.write_table(pa.table(arrays).replace_schema_metadata(schema_meta), path)


def _read_parquet(path):
    _require_pyarrow()
    import pyarrow.parquet as pq

    arrow = pq.read_table(path)
    table = QTable()
    schema_meta = arrow.schema.metadata or {}
    units = json.loads(schema_meta.get(b"radiofm.units", b"{}"))
    for name in arrow.column_names:
        column = arrow.column(name).combine_chunks()
        kind = column.type
        if hasattr(kind, "list_size"):
            values = np.asarray(column.flatten()).reshape(len(column), kind.list_size)
        else:
            values = column.to_numpy(zero_copy_only=False)
            if values.dtype == object:
                values = values.astype(str)
        table[name] = values * u.Unit(units[name]) if name in units else values
    table.meta.update(json.loads(schema_meta.get(b"radiofm.meta", b"{}")))
    return table


def _restore_sky(table):
    """``<name>_ra`` / ``<name>_dec`` column pairs back into one SkyCoord column."""
    for name in list(table.colnames):
        if name.endswith("_ra") and f"{name[:-3]}_dec" in table.colnames:
            base, index = name[:-3], table.colnames.index(name)
            sky = SkyCoord(u.Quantity(table[name], u.deg), u.Quantity(table[f"{base}_dec"],
                                                                      u.deg))
            table.remove_columns([name, f"{base}_dec"])
            table.add_column(sky, name=base, index=index)
    return table


def read_table(path):
    """Read a table `write_table` wrote, in any of its formats, as a QTable.

    Sky columns written as ``<name>_ra`` / ``<name>_dec`` (VOTable, Parquet) come back as
    one `~astropy.coordinates.SkyCoord` column, and Parquet needs no pandas.

    Parameters
    ----------
    path : str or path-like
        A FITS, ECSV, VOTable or Parquet table.

    Returns
    -------
    table : `~astropy.table.QTable`
    """
    format = table_format(path)
    if format == "parquet":
        table = _read_parquet(path)
    elif format == "votable":
        from astropy.io.votable import parse_single_table

        votable = parse_single_table(str(path))
        table = QTable(votable.to_table())
        table.meta.update({info.name: info.value for info in votable.infos})
    else:
        return QTable.read(path, format=format)
    return _restore_sky(table)


def write_table(table, path, *, overwrite=False):
    """Write a table as FITS, ECSV, VOTable or Parquet, chosen by the file's extension.

    The table is written to a temporary file beside ``path`` and renamed over it only once
    complete, so an interrupted run never leaves a half-written table behind. FITS and ECSV
    keep every column (sky positions as `~astropy.coordinates.SkyCoord`); VOTable and
    Parquet store sky columns as ``<name>_ra`` and ``<name>_dec`` in degrees and ``meta``
    as text (VOTable INFO elements, Parquet file metadata).

    Parameters
    ----------
    table : `~astropy.table.Table` or `~astropy.table.QTable`
        The table, e.g. from `tile_image` or `radiofm.inference.embed_image`.
    path : str or path-like
        Output file; its extension picks the format (see `table_format`).
    overwrite : bool
        Replace an existing file.

    Raises
    ------
    FileExistsError
        ``path`` exists and ``overwrite`` is false.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from astropy.table import Table
    >>> from radiofm.tiling import read_table, write_table
    >>> path = Path(tempfile.mkdtemp()) / "example.vot"
    >>> write_table(Table({"a": [1, 2]}), path)
    >>> read_table(path)["a"].tolist()
    [1, 2]
    """
    path = Path(path)
    format = table_format(path)
    # the temporary name ends with the target's (astropy reads compression from it)
    with atomic_path(path, overwrite=overwrite) as temporary:
        if format == "votable":
            _write_votable(table, temporary)
        elif format == "parquet":
            _write_parquet(table, temporary)
        else:
            table.write(temporary, format=format)

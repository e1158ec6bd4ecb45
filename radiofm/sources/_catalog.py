"""One standard source catalogue, whatever made it: pyBDSF, photutils or a file."""

import logging
import os
import warnings
from pathlib import Path

import astropy.units as u
import numpy as np
from astropy.coordinates import Angle, SkyCoord
from astropy.table import QTable, Table

from .._provenance import provenance_meta
from ..image import InputWarning, read_image

__all__ = ["CATALOG_COLUMNS", "read_catalog", "sky_positions"]

log = logging.getLogger("radiofm")

CATALOG_COLUMNS = (
    "source_id", "island_id", "sky_center", "x_center", "y_center", "flux", "flux_err",
    "peak", "major", "minor", "pa", "s_code", "local_rms",
)

# Column names other catalogues use, compared case-insensitively.
_ALIASES = {
    "ra": ("ra", "raj2000", "_raj2000", "ra_j2000", "ra_deg", "ra_icrs", "alpha_j2000",
           "ra_cen", "ra_peak"),
    "dec": ("dec", "dej2000", "_dej2000", "decj2000", "dec_j2000", "dec_deg", "de_icrs",
            "delta_j2000", "dec_cen", "dec_peak"),
    "glon": ("glon", "gal_long", "l"),
    "glat": ("glat", "gal_lat", "b"),
    "flux": ("total_flux", "flux", "int_flux", "flux_int", "s_int", "sint", "fint",
             "total_flux_source", "segment_flux", "flux_density"),
    "flux_err": ("e_total_flux", "flux_err", "e_flux", "e_int_flux", "e_fint", "flux_int_err"),
    "peak": ("peak_flux", "peak", "fpeak", "s_peak", "peak_flux_density", "max_value"),
    "major": ("maj", "major", "major_axis", "bmaj", "deconv_maj"),
    "minor": ("min", "minor", "minor_axis", "bmin", "deconv_min"),
    "pa": ("pa", "position_angle", "bpa"),
    "s_code": ("s_code", "scode", "source_code"),
    "source_id": ("source_id", "gaus_id", "id", "source"),
    "island_id": ("isl_id", "island_id", "island"),
    "local_rms": ("local_rms", "isl_rms", "rms_local", "local_noise"),
}
_SKY_COLUMNS = ("sky_center", "sky_centroid", "skycoord", "coord")
# Units assumed for columns that carry none (pyBDSF ASCII output: degrees and Jy).
_BDSF_UNITS = {"flux": u.Jy, "flux_err": u.Jy, "peak": u.Jy / u.beam, "major": u.deg,
               "minor": u.deg, "pa": u.deg, "local_rms": u.Jy / u.beam}
_DEFAULT_UNITS = {"flux": u.Jy, "flux_err": u.Jy, "peak": u.Jy / u.beam, "major": u.arcsec,
                  "minor": u.arcsec, "pa": u.deg, "local_rms": u.Jy / u.beam}


def make_catalog(sky_center, *, flux, peak, major=None, minor=None, pa=None, s_code=None,
                 island_id=None, source_id=None, flux_err=None, local_rms=None, wcs=None,
                 meta=None):
    """Assemble the standard catalogue QTable (the one constructor every finder uses).

    Parameters
    ----------
    sky_center : `~astropy.coordinates.SkyCoord`
        Source positions; stored in ICRS.
    flux, peak, major, minor, pa, flux_err : `~astropy.units.Quantity`, optional
        Integrated flux (Jy), peak brightness (Jy/beam), FWHM axes (arcsec), position
        angle east of north (deg); missing ones are NaN.
    local_rms : `~astropy.units.Quantity`, optional
        The background rms where each source lies (Jy/beam; pyBDSF ``Isl_rms``): the noise
        its S/N is measured against where the noise varies across the image (a primary-beam
        corrected mosaic, the wings of a bright source). NaN when unknown.
    s_code : sequence of str, optional
        pyBDSF's code: 'S' single-Gaussian source alone in its island, 'C' single-Gaussian
        source sharing its island, 'M' multi-component source; '' when unknown.
    island_id, source_id : sequence of int, optional
        Default: each source its own island; ``0..N-1``.
    wcs : `~astropy.wcs.WCS`, optional
        Fills ``x_center``/``y_center`` (NaN without one).
    meta : dict, optional
        Extra FITS-safe provenance keys.

    Returns
    -------
    catalog : `~astropy.table.QTable`
        Columns `CATALOG_COLUMNS`.
    """
    n = len(sky_center)
    sky_center = sky_center.icrs if n else SkyCoord([], [], unit="deg", frame="icrs")

    def quantity(value, unit):
        if value is None:
            return np.full(n, np.nan) * unit
        return u.Quantity(value, unit, dtype=float)

    table = QTable()
    table["source_id"] = np.arange(n) if source_id is None else np.asarray(source_id, int)
    table["island_id"] = table["source_id"].copy() if island_id is None else np.asarray(
        island_id, int)
    table["sky_center"] = sky_center
    if wcs is not None and n:
        x, y = wcs.world_to_pixel(sky_center)
    else:
        x = y = np.full(n, np.nan)
    table["x_center"] = np.asarray(x, float)
    table["y_center"] = np.asarray(y, float)
    table["flux"] = quantity(flux, u.Jy)
    table["flux_err"] = quantity(flux_err, u.Jy)
    table["peak"] = quantity(peak, u.Jy / u.beam)
    table["major"] = quantity(major, u.arcsec)
    table["minor"] = quantity(minor, u.arcsec)
    table["pa"] = quantity(pa, u.deg)
    codes = [""] * n if s_code is None else [_decode(c) for c in s_code]
    table["s_code"] = np.array(codes, dtype="U1")
    table["local_rms"] = quantity(local_rms, u.Jy / u.beam)
    table.meta.update(provenance_meta(**(meta or {})))
    return table


def _decode(value):
    if isinstance(value, bytes | np.bytes_):
        value = value.decode("ascii", errors="replace")
    return str(value).strip()


def read_catalog(catalog, *, image=None, format=None):
    """Read a source catalogue into the standard radiofm QTable.

    Reads pyBDSF source (``.srl``) and Gaussian (``.gaul``) lists in FITS or ASCII, and any
    table astropy reads (FITS, VOTable, ECSV, CSV, ...) whose columns go by common names
    (RA/DEC, RAJ2000/DEJ2000, GLON/GLAT, Total_flux, Peak_flux, Fint, Maj, Min, PA,
    S_Code, or a SkyCoord column). Galactic positions are converted to ICRS. Columns
    without units are taken as degrees for positions, Jy and Jy/beam for fluxes and arcsec
    for sizes (degrees in pyBDSF's ASCII output, as pyBDSF writes them).

    Parameters
    ----------
    catalog : str, path-like or `~astropy.table.Table`
        The catalogue.
    image : anything `~radiofm.image.read_image` accepts, optional
        Fills ``x_center``/``y_center`` through its WCS.
    format : str, optional
        astropy format name, when the extension does not tell.

    Returns
    -------
    catalog : `~astropy.table.QTable`
        Columns `CATALOG_COLUMNS`; a catalogue with no rows gives an empty table, whatever
        its columns (pyBDSF writes a lone ``Blank`` column when it finds nothing).

    Raises
    ------
    ValueError
        No sky position columns, or a file that is no table.

    Examples
    --------
    >>> from astropy.table import Table
    >>> from radiofm.sources import read_catalog
    >>> raw = Table({"RAJ2000": [150.1, 150.2], "DEJ2000": [-30.0, -30.1],
    ...              "Total_flux": [1.2e-3, 4.5e-3], "S_Code": [b"S", b"M"]})
    >>> catalog = read_catalog(raw)
    >>> print(catalog["s_code"].tolist(), catalog["flux"].unit)
    ['S', 'M'] Jy
    """
    table, source, units = _load(catalog, format)
    if len(table) == 0:  # e.g. pyBDSF's empty list, a single 'Blank' column
        log.info("%s is empty", source)
        return make_catalog(SkyCoord([], [], unit="deg"), flux=[], peak=[],
                            meta={"FINDER": "file", "CATALOG": source})
    sky = sky_positions(table, source)
    lost = ~(np.isfinite(sky.spherical.lon.deg) & np.isfinite(sky.spherical.lat.deg))
    if lost.any():
        warnings.warn(f"{source}: {int(lost.sum())} of {len(sky)} rows have no sky position "
                      "(empty or masked cells); they are kept with NaN positions",
                      InputWarning, stacklevel=2)

    def find(key):
        return _find_column(table, key)

    def values(key):
        column = find(key)
        if column is None:
            return None
        unit = getattr(column, "unit", None) or units[key]
        return u.Quantity(_floats(column, source), unit)

    wcs = None
    if image is not None:
        wcs = read_image(image).wcs
    codes = find("s_code")
    islands = find("island_id")
    ids = find("source_id")
    catalog = make_catalog(
        sky,
        flux=values("flux"), flux_err=values("flux_err"), peak=values("peak"),
        major=values("major"), minor=values("minor"), pa=values("pa"),
        local_rms=values("local_rms"), s_code=None if codes is None else list(codes),
        island_id=None if islands is None else np.asarray(islands),
        source_id=None if ids is None or ids.dtype.kind not in "iu" else np.asarray(ids),
        wcs=wcs, meta={"FINDER": "file", "CATALOG": source},
    )
    log.info("read %d sources from %s", len(catalog), source)
    return catalog


def _load(catalog, format):
    """(table, description, units for unitless columns)."""
    if isinstance(catalog, Table):
        return catalog, "<Table>", _DEFAULT_UNITS
    if not isinstance(catalog, str | os.PathLike):
        raise TypeError(f"catalog must be a path or an astropy Table, got {type(catalog).__name__}")
    path = Path(catalog)
    if not path.is_file():
        raise FileNotFoundError(f"no such catalogue file: {path}")
    with open(path, "rb") as stream:
        head = stream.read(2048)
    if head.startswith(b"# Source list") or head.startswith(b"# Gaussian list") or (
        b"Generated by PyBDSF" in head
    ):
        return _read_bdsf_ascii(path), str(path), _BDSF_UNITS
    try:
        if format is None and path.suffix.lower() in (".csv", ".txt", ".dat", ".srl", ".gaul"):
            format = "ascii"
        return Table.read(path, format=format), str(path), _DEFAULT_UNITS
    except Exception as error:  # astropy raises many kinds for unreadable files
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise ValueError(f"cannot read {path} as a table: {first}") from error


def _read_bdsf_ascii(path):
    """pyBDSF's ASCII lists: comment lines, then '# name name ...', then rows."""
    lines = path.read_text().splitlines()
    names, first = None, None
    for index, line in enumerate(lines):
        if line.startswith("#") and len(line[1:].split()) > 3 and "Generated" not in line:
            names, first = line[1:].split(), index + 1
    if names is None:
        raise ValueError(f"{path} looks like a pyBDSF list but has no column-name line")
    rows = [line for line in lines[first:] if line.strip() and not line.startswith("#")]
    if not rows:
        return Table(names=names, dtype=[float] * len(names))
    return Table.read(rows, format="ascii.no_header", names=names)


def _find_column(table, key):
    """The column of ``table`` that goes by one of the names of ``key``, or None."""
    columns = {name.lower(): name for name in table.colnames}
    for alias in _ALIASES[key]:
        if alias in columns:
            return table[columns[alias]]
    return None


def sky_positions(table, source="catalog"):
    """Sky positions of a table's rows as one SkyCoord (galactic converted to ICRS).

    Parameters
    ----------
    table : `~astropy.table.Table`
        A SkyCoord column (``sky_center``, ``sky_centroid``, ...) or RA/DEC-like or
        GLON/GLAT-like columns.
    source : str
        How to name the table in an error message.

    Returns
    -------
    positions : `~astropy.coordinates.SkyCoord`
    """
    columns = {name.lower(): name for name in table.colnames}
    for name in _SKY_COLUMNS:
        if name in columns and isinstance(table[columns[name]], SkyCoord):
            return table[columns[name]]
    ra, dec = _find_column(table, "ra"), _find_column(table, "dec")
    if ra is not None and dec is not None:
        if len(ra) == 0:
            return SkyCoord([], [], unit="deg")
        lon = _angles(ra, u.hourangle, source)
        lat = _latitudes(dec, source)
        return SkyCoord(lon, lat, frame="icrs")
    glon, glat = _find_column(table, "glon"), _find_column(table, "glat")
    if glon is not None and glat is not None:
        log.info("%s has galactic positions: converted to ICRS", source)
        return SkyCoord(_angles(glon, u.deg, source), _latitudes(glat, source),
                        frame="galactic").icrs
    raise ValueError(
        f"{source} has no sky position columns (found {list(table.colnames)}); expected "
        "RA/DEC (or RAJ2000/DEJ2000, RA_deg/DEC_deg), GLON/GLAT, or a SkyCoord column "
        "named sky_center"
    )


def _texts(column):
    """A column's cells as stripped strings; masked cells are empty."""
    masked = np.ma.getmaskarray(column)
    return ["" if gone else _decode(value)
            for value, gone in zip(np.ma.getdata(column), masked, strict=True)]


def _floats(column, source):
    """A column as floats: masked and empty cells become NaN (never 0)."""
    name = getattr(column, "name", "?")
    data = np.ma.getdata(column)
    if data.dtype.kind in "USO":
        out = np.full(len(data), np.nan)
        for index, text in enumerate(_texts(column)):
            if text and text.lower() not in ("--", "nan", "null", "none"):
                try:
                    out[index] = float(text)
                except ValueError:
                    raise ValueError(f"{source}: column {name!r} row {index} holds {text!r}, "
                                     "not a number") from None
        return out
    try:
        out = np.array(data, dtype=float)
    except (TypeError, ValueError):
        raise ValueError(f"{source}: column {name!r} holds {data.dtype} values, not "
                         "numbers") from None
    out[np.ma.getmaskarray(column)] = np.nan
    return out


def _angles(column, sexagesimal_unit, source):
    """Angles in degrees from numbers or strings; missing cells are NaN.

    Plain numbers (also as strings, e.g. ``"257.11650"``) are in the column's unit, else
    degrees. Sexagesimal strings with letters (``12h34m56s``, ``-30d12m``) say their own unit;
    those with colons or spaces (``12:34:56``) are in ``sexagesimal_unit`` (hours for RA)
    unless the column's unit says otherwise.
    """
    unit = getattr(column, "unit", None)
    data = np.ma.getdata(column)
    if data.dtype.kind not in "USO":
        return u.Quantity(_floats(column, source), unit or u.deg).to(u.deg)
    out = np.full(len(data), np.nan)
    name = getattr(column, "name", "?")
    for index, text in enumerate(_texts(column)):
        if not text or text.lower() in ("--", "nan", "null", "none"):
            continue
        try:
            out[index] = u.Quantity(float(text), unit or u.deg).to_value(u.deg)
            continue
        except ValueError:
            pass
        try:
            if any(letter in text.lower() for letter in "hdms\u00b0'\""):
                angle = Angle(text)
            else:
                angle = Angle(text, unit=unit or sexagesimal_unit)
            out[index] = angle.to_value(u.deg)
        except (ValueError, u.UnitsError) as error:
            raise ValueError(f"{source}: column {name!r} row {index} holds {text!r}, which is "
                             f"not an angle ({error})") from None
    return out * u.deg


def _latitudes(column, source):
    """Latitudes in degrees (see `_angles`), refused outside [-90, 90]."""
    values = _angles(column, u.deg, source)
    bad = np.abs(values.to_value(u.deg)) > 90
    if bad.any():
        index = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{source}: column {getattr(column, 'name', '?')!r} has "
                         f"{int(bad.sum())} latitudes outside [-90, 90] deg (row {index}: "
                         f"{values[index]:.6g}); check its unit")
    return values

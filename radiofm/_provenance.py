"""Provenance written into the ``meta`` of every table radiofm returns.

Keys are upper case and at most 8 characters so that tables round-trip through FITS
headers as well as ECSV.
"""

from datetime import UTC, datetime


def provenance_meta(**items):
    """Return a meta dict with the radiofm version, the UTC date and ``items``.

    Parameters
    ----------
    **items
        Extra FITS-safe keys (upper case, at most 8 characters) and scalar values.
    """
    from . import __version__

    meta = {"RFM_VER": __version__, "DATE": datetime.now(UTC).isoformat(timespec="seconds")}
    for key, value in items.items():
        if len(key) > 8 or key != key.upper():
            raise ValueError(f"meta key {key!r} is not FITS-safe (upper case, <= 8 characters)")
        meta[key] = value
    return meta

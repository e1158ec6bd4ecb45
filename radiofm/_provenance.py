"""Provenance written into the ``meta`` of every table radiofm returns.

Keys are upper case and at most 8 characters so that tables round-trip through FITS
headers as well as ECSV.
"""

from datetime import UTC, datetime

__all__ = ["provenance_meta", "radiofm_version"]


def radiofm_version():
    """The installed radiofm version (``"0.0.0"`` in a source tree that was never installed).

    Lower layers ask here rather than importing ``radiofm.__version__`` from the package
    root, which would import the root from inside its own subpackages.
    """
    try:
        from ._version import version
    except ImportError:
        return "0.0.0"
    return version


def provenance_meta(**items):
    """Return a meta dict with the radiofm version, the UTC date and ``items``.

    Parameters
    ----------
    **items
        Extra FITS-safe keys (upper case, at most 8 characters) and scalar values.
    """
    meta = {"RFM_VER": radiofm_version(), "DATE": datetime.now(UTC).isoformat(timespec="seconds")}
    for key, value in items.items():
        if len(key) > 8 or key != key.upper():
            raise ValueError(f"meta key {key!r} is not FITS-safe (upper case, <= 8 characters)")
        meta[key] = value
    return meta

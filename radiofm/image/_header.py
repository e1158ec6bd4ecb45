"""Header quirks of real radio pipelines, handled once for every entry point.

Each function here reads one piece of metadata (beam, frequency, unit, WCS) from a FITS
header the way CASA, WSClean, AIPS, SkyView and the MeerKAT pipelines write it.
"""

import logging
import re
import string
import warnings
from typing import NamedTuple

import astropy.units as u
import numpy as np
from astropy.io import fits
from astropy.wcs import WCS, FITSFixedWarning

from ._warnings import InputWarning

__all__ = ["Beam"]

log = logging.getLogger("radiofm")

_PRINTABLE = set(string.printable) - set("\t\n\r\x0b\x0c")

# AIPS writes the restoring beam into HISTORY, e.g.
# "AIPS   CLEAN BMAJ=  1.5000E-03 BMIN=  1.2000E-03 BPA=  45.00"
_NUMBER = r"([-+]?(?:\d+\.?\d*|\.\d+)(?:[EeDd][-+]?\d+)?)"
_HISTORY_BEAM = re.compile(
    rf"BMAJ\s*=\s*{_NUMBER}\s+BMIN\s*=\s*{_NUMBER}\s+BPA\s*=\s*{_NUMBER}", re.IGNORECASE
)

# Case-insensitive spellings of brightness units that astropy's FITS parser refuses.
_RADIO_UNITS = {
    "jy/beam": u.Jy / u.beam,
    "jy/bm": u.Jy / u.beam,
    "jansky/beam": u.Jy / u.beam,
    "mjy/beam": u.mJy / u.beam,
    "ujy/beam": u.uJy / u.beam,
    "jy/pixel": u.Jy / u.pix,
    "jy": u.Jy,
    "k": u.K,
}


class Beam(NamedTuple):
    """A Gaussian restoring beam.

    Parameters
    ----------
    major, minor : `~astropy.units.Quantity`
        Full widths at half maximum of the major and minor axes (angles).
    pa : `~astropy.units.Quantity`
        Position angle of the major axis, east of north (angle).

    Examples
    --------
    >>> import astropy.units as u
    >>> from radiofm.image import Beam
    >>> beam = Beam(7.5 * u.arcsec, 7.5 * u.arcsec, 0 * u.deg)
    >>> beam.area.to(u.arcsec**2)  # doctest: +FLOAT_CMP
    <Quantity 63.73631449 arcsec2>
    """

    major: u.Quantity
    minor: u.Quantity
    pa: u.Quantity

    @property
    def area(self):
        """Solid angle of the Gaussian beam, pi / (4 ln 2) * major * minor."""
        return (np.pi / (4 * np.log(2)) * self.major * self.minor).to(u.sr)


_REPEATABLE = {"COMMENT", "HISTORY", "", "CONTINUE"}


def clean_header(header):
    """Return a copy of ``header`` with non-printable characters replaced by spaces and
    duplicate keywords resolved.

    SkyView and some AIPS headers carry TABs in COMMENT and HISTORY cards; astropy reads
    them but refuses to verify or write them. A keyword given more than once (other than
    COMMENT, HISTORY and blank cards) keeps its **last** value, the one wcslib uses, for every
    keyword alike (WCS, beam, frequency, unit), with an `~radiofm.image.InputWarning` that
    names it. Every other card is kept as it is.
    """
    dirty = {
        index for index, card in enumerate(header.cards)
        if isinstance(card.value, str) and not set(card.value) <= _PRINTABLE
    }
    last, repeated = {}, {}
    for index, card in enumerate(header.cards):
        if card.keyword not in _REPEATABLE:
            if card.keyword in last:
                repeated.setdefault(card.keyword, [header.cards[last[card.keyword]].value])
                repeated[card.keyword].append(card.value)
            last[card.keyword] = index
    if not dirty and not repeated:
        return header.copy()
    for keyword, values in repeated.items():
        warnings.warn(f"header keyword {keyword} appears {len(values)} times with values "
                      f"{values}; using the last one, {values[-1]!r}", InputWarning,
                      stacklevel=3)
    cleaned = fits.Header()
    for index, card in enumerate(header.cards):
        if card.keyword in repeated and index != last[card.keyword]:
            continue
        value = card.value
        if index in dirty:
            value = "".join(c if c in _PRINTABLE else " " for c in value)
        cleaned.append(fits.Card(card.keyword, value, card.comment), end=True)
    return cleaned


def wcs_from_header(header):
    """Build the full WCS of a header, logging (not raising) astropy's automatic fixes.

    astropy rewrites NCP as SIN with the matching PV terms, RADECSYS as RADESYS and
    DATE-OBS as MJD-OBS, each with a `~astropy.wcs.FITSFixedWarning`; those fixes are
    what radiofm wants, so they are logged at debug level.
    """
    for key in list(header.keys()):
        if key.startswith("CTYPE") and key[5:].isdigit():
            ctype = str(header[key]).upper()
            if ctype[:4].rstrip("-") in ("DEC", "GLAT", "ELAT", "SLAT", "HLAT"):
                value = header.get(f"CRVAL{key[5:]}", 0.0)
                if not (isinstance(value, int | float) and abs(value) <= 90):
                    raise ValueError(f"CRVAL{key[5:]} = {value!r} is not a latitude in [-90, 90]"
                                     f" deg ({key} = {ctype}); fix the header's reference "
                                     "position")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", FITSFixedWarning)
        try:
            wcs = WCS(header, fix=True)
        except (ValueError, MemoryError) as error:  # wcslib's errors span several lines
            lines = [line.strip() for line in str(error).splitlines() if line.strip()]
            detail = lines[1] if len(lines) > 1 and lines[0].startswith("ERROR") else (
                lines[0] if lines else type(error).__name__)
            raise ValueError(f"the header's WCS is invalid: {detail} (check CDELTi, the PC or "
                             "CD matrix, CRVALi and CTYPEi)") from None
    for warning in caught:
        if issubclass(warning.category, FITSFixedWarning):
            log.debug("WCS fix: %s", warning.message)
        else:
            warnings.warn_explicit(
                warning.message, warning.category, warning.filename, warning.lineno
            )
    return wcs


def beam_from_header(header):
    """Read the restoring beam from BMAJ/BMIN/BPA or, failing that, from AIPS HISTORY.

    BMIN missing means a circular beam; BPA missing means 0 deg (both are logged).

    Returns
    -------
    beam : `Beam` or None
        None when the header records no beam at all.
    """
    if "BMAJ" in header:
        major = float(header["BMAJ"])
        minor = float(header.get("BMIN", major))
        if "BMIN" not in header:
            log.info("header has BMAJ but no BMIN: assuming a circular beam")
        if "BPA" not in header:
            log.info("header has BMAJ but no BPA: assuming BPA = 0 deg")
        pa = float(header.get("BPA", 0.0))
        return _beam_in_degrees(major, minor, pa, "BMAJ/BMIN/BPA")
    history = header.get("HISTORY", [])
    for line in reversed(list(history)):
        match = _HISTORY_BEAM.search(str(line))
        if match:
            major, minor, pa = (float(v.upper().replace("D", "E")) for v in match.groups())
            log.info("beam read from an AIPS HISTORY card")
            return _beam_in_degrees(major, minor, pa, "HISTORY")
    return None


def _beam_in_degrees(major, minor, pa, where):
    if not (np.isfinite(major) and np.isfinite(minor) and major > 0 and minor > 0):
        raise ValueError(
            f"header beam ({where}) has non-positive or non-finite axes "
            f"BMAJ={major}, BMIN={minor}; pass beam=(bmaj, bmin, bpa) to override it"
        )
    return Beam(major * u.deg, minor * u.deg, pa * u.deg)


def beam_from_argument(beam):
    """Turn a user-supplied beam into a `Beam`.

    Accepts a `Beam`, an object with ``major``/``minor``/``pa`` attributes (radio_beam),
    a single angle (circular beam) or a tuple ``(major, minor[, pa])`` of angles.
    """
    if isinstance(beam, Beam):
        return beam
    if all(hasattr(beam, name) for name in ("major", "minor", "pa")):
        return Beam(u.Quantity(beam.major), u.Quantity(beam.minor), u.Quantity(beam.pa))
    if isinstance(beam, u.Quantity) and beam.isscalar:
        return _checked_beam(beam, beam, 0 * u.deg)
    if isinstance(beam, tuple | list) and len(beam) in (2, 3):
        pa = beam[2] if len(beam) == 3 else 0 * u.deg
        return _checked_beam(*(u.Quantity(v) for v in (beam[0], beam[1], pa)))
    raise TypeError(
        "beam must be an angle (circular), a tuple (bmaj, bmin[, bpa]) of angles, "
        f"or a Beam; got {type(beam).__name__}"
    )


def _checked_beam(major, minor, pa):
    for name, value in (("major", major), ("minor", minor), ("pa", pa)):
        if not value.unit.is_equivalent(u.deg):
            raise u.UnitsError(f"beam {name} must be an angle, got unit {value.unit!r}")
    return Beam(major.to(u.arcsec), minor.to(u.arcsec), pa.to(u.deg))


def unit_from_header(header):
    """Parse BUNIT, accepting the upper-case radio spellings such as 'JY/BEAM'."""
    bunit = str(header.get("BUNIT", "")).strip()
    if not bunit:
        return u.dimensionless_unscaled
    try:
        return u.Unit(bunit, format="fits")
    except ValueError:
        pass
    known = _RADIO_UNITS.get(bunit.lower().replace(" ", ""))
    if known is not None:
        return known
    log.warning("unrecognised BUNIT %r: keeping it as an unrecognised unit", bunit)
    return u.Unit(bunit, parse_strict="silent")


def frequency_from_header(header, wcs, plane_pixels):
    """The observing frequency of the chosen plane.

    Looks first at a FREQ spectral axis (world coordinate of the chosen plane), then at
    the FREQ, RESTFRQ and RESTFREQ keywords (CASA, WSClean and pyBDSF use different ones).

    Parameters
    ----------
    header : `~astropy.io.fits.Header`
        The image header.
    wcs : `~astropy.wcs.WCS`
        The full WCS of the header.
    plane_pixels : dict
        Zero-based FITS axis index -> pixel index of the chosen plane.

    Returns
    -------
    frequency : `~astropy.units.Quantity` or None
    """
    for axis, ctype in enumerate(wcs.wcs.ctype):
        if ctype.upper().startswith("FREQ"):
            pixel = np.zeros(wcs.naxis)
            for index, value in plane_pixels.items():
                pixel[index] = value
            world = wcs.wcs_pix2world(pixel[np.newaxis], 0)[0][axis]
            cunit = wcs.wcs.cunit[axis] or u.Hz
            return (world * u.Unit(cunit)).to(u.Hz)
    for keyword in ("FREQ", "RESTFRQ", "RESTFREQ"):
        value = header.get(keyword)
        if isinstance(value, int | float) and value > 0:
            return float(value) * u.Hz
    return None

"""`read_image`: the one input parser behind every radiofm entry point."""

import logging
import os
import warnings
from collections.abc import Mapping

import astropy.units as u
import numpy as np
from astropy.io import fits
from astropy.nddata import NDData
from astropy.utils.exceptions import AstropyUserWarning
from astropy.wcs import WCS

from ._header import (
    beam_from_argument,
    beam_from_header,
    clean_header,
    frequency_from_header,
    unit_from_header,
    wcs_from_header,
)
from ._pixels import ArrayPixels, FilePixels, SectionPixels
from ._radio_image import RadioImage

__all__ = ["read_image"]

log = logging.getLogger("radiofm")

_IMAGE_HDUS = (fits.PrimaryHDU, fits.ImageHDU, fits.CompImageHDU)
_TABLE_HDUS = (fits.BinTableHDU, fits.TableHDU)
_ACCEPTED = (
    "a path to a FITS file, an HDUList, a PrimaryHDU/ImageHDU/CompImageHDU, NDData or "
    "CCDData, an (array, WCS) or (array, Header) pair, an array with wcs=, or a RadioImage"
)
# Magic bytes of whole-file compression: astropy reads these, but not with pread.
_COMPRESSED_MAGIC = (b"\x1f\x8b", b"BZh", b"PK\x03\x04")


def read_image(image, *, wcs=None, hdu=None, plane=None, beam=None, frequency=None, unit=None):
    """Turn any supported image input into a `RadioImage`.

    Parameters
    ----------
    image : path, HDUList, HDU, NDData, tuple, array or `RadioImage`
        A path to a FITS file (plain, tile-compressed ``.fits.fz`` or gzipped), an
        `~astropy.io.fits.HDUList`, a `~astropy.io.fits.PrimaryHDU`,
        `~astropy.io.fits.ImageHDU` or `~astropy.io.fits.CompImageHDU`, an
        `~astropy.nddata.NDData` (or ``CCDData``), an ``(array, WCS)`` or
        ``(array, Header)`` pair, a bare array with ``wcs=``, or a `RadioImage`.
    wcs : `~astropy.wcs.WCS` or `~astropy.io.fits.Header`, optional
        WCS to use when the input carries none (or to replace it).
    hdu : int or str, optional
        Which HDU of a file or HDUList to read. Default: the first HDU with image data.
    plane : int or dict, optional
        Which plane of a cube to read. An int indexes the one non-celestial axis longer than
        1 (e.g. the FREQ axis of an MGCLS 5-plane cube); a dict maps axis types to indices,
        e.g. ``{"FREQ": 0, "STOKES": 0}``. Axes of length 1 (degenerate FREQ/STOKES axes of
        CASA and WSClean images) are dropped without asking.
    beam : angle, tuple or `Beam`, optional
        Restoring beam ``(bmaj, bmin[, bpa])``, overriding the header. FIRST images, for
        instance, record none; their beam is 5.4 arcsec.
    frequency : `~astropy.units.Quantity`, optional
        Observing frequency, overriding the header.
    unit : str or `~astropy.units.UnitBase`, optional
        Brightness unit, overriding BUNIT.

    Returns
    -------
    image : `RadioImage`
        Its pixels stay on disk until read: uncompressed files are read in blocks on
        demand, tile-compressed ones decompress only the tiles a block needs.

    Raises
    ------
    TypeError
        The input is of an unsupported type, or the chosen HDU is a table.
    ValueError
        The input has no celestial WCS, is not 2-D after plane selection, has no finite
        pixel, or the file is truncated or not FITS.

    Examples
    --------
    >>> import numpy as np
    >>> from astropy.wcs import WCS
    >>> from radiofm.image import read_image
    >>> wcs = WCS(naxis=2)
    >>> wcs.wcs.ctype = ["RA---SIN", "DEC--SIN"]
    >>> wcs.wcs.cdelt = [-1.1 / 3600, 1.1 / 3600]
    >>> image = read_image((np.zeros((64, 64)), wcs), beam=7.5 * u.arcsec)
    >>> image.shape
    (64, 64)
    >>> image.pixel_scale  # doctest: +FLOAT_CMP
    <Quantity 1.1 arcsec>
    """
    if isinstance(image, RadioImage):
        return _override(image, wcs=wcs, beam=beam, frequency=frequency, unit=unit)
    if isinstance(image, str | os.PathLike):
        parsed = _parse_path(image, hdu)
    elif isinstance(image, fits.HDUList):
        parsed = _parse_hdu(_choose_hdu(image, hdu, "HDUList"), source="<HDUList>")
    elif isinstance(image, _IMAGE_HDUS):
        parsed = _parse_hdu(image, source=f"<{type(image).__name__}>")
    elif isinstance(image, _TABLE_HDUS):
        raise TypeError(
            f"got a {type(image).__name__}, a table, not an image; pass an image HDU"
        )
    elif isinstance(image, NDData):
        parsed = _parse_nddata(image)
    elif isinstance(image, tuple) and len(image) == 2:
        parsed = _parse_array(image[0], image[1])
    elif isinstance(image, np.ndarray):
        parsed = _parse_array(image, None)
    else:
        raise TypeError(f"cannot read a {type(image).__name__} as an image; expected {_ACCEPTED}")

    header, make_pixels, array_shape, source = parsed
    if wcs is not None:
        header = _merge_wcs(header, wcs)
    full_wcs = wcs_from_header(header)
    plane_index, plane_pixels = _choose_plane(full_wcs, array_shape, plane)
    celestial = full_wcs.celestial
    _check_celestial(celestial, source)
    pixels = make_pixels(plane_index)
    celestial.array_shape = pixels.shape
    try:
        _check_not_blank(pixels)
    except ValueError:
        pixels.close()
        raise
    return RadioImage(
        pixels,
        celestial,
        beam=beam_from_argument(beam) if beam is not None else beam_from_header(header),
        frequency=(
            u.Quantity(frequency, u.Hz)
            if frequency is not None
            else frequency_from_header(header, full_wcs, plane_pixels)
        ),
        unit=u.Unit(unit) if unit is not None else unit_from_header(header),
        header=header,
        source=source,
        plane=tuple(i for i in plane_index if not isinstance(i, slice)),
    )


def _override(image, **overrides):
    """A RadioImage with some fields replaced (the pixels are shared)."""
    if all(value is None for value in overrides.values()):
        return image
    copy = RadioImage(
        image._pixels, image.wcs, beam=image.beam, frequency=image.frequency, unit=image.unit,
        header=image.header, source=image.source, plane=image.plane,
    )
    if overrides["wcs"] is not None:
        copy.wcs = _celestial_wcs(overrides["wcs"])
        copy.wcs.array_shape = image.shape
    if overrides["beam"] is not None:
        copy.beam = beam_from_argument(overrides["beam"])
    if overrides["frequency"] is not None:
        copy.frequency = u.Quantity(overrides["frequency"], u.Hz)
    if overrides["unit"] is not None:
        copy.unit = u.Unit(overrides["unit"])
    return copy


def _check_celestial(wcs, source):
    """Refuse a celestial WCS that cannot map pixels to the sky: a reference latitude beyond
    the poles, or a singular linear transformation (CDELT = 0, a singular PC or CD matrix)."""
    if not wcs.has_celestial:
        return
    lat = wcs.wcs.lat
    if lat >= 0 and not abs(float(wcs.wcs.crval[lat])) <= 90:
        raise ValueError(f"{source}: CRVAL{lat + 1} = {wcs.wcs.crval[lat]} is not a latitude in "
                         "[-90, 90] deg; fix the header's reference position")
    if wcs.wcs.has_cd():
        matrix = np.array(wcs.wcs.cd, dtype=float)
    else:
        matrix = np.array(wcs.wcs.get_pc(), dtype=float) * np.array(wcs.wcs.cdelt,
                                                                      dtype=float)[:, None]
    scale = np.abs(matrix).max() if matrix.size else 0.0
    if not (np.isfinite(matrix).all() and scale > 0
            and abs(np.linalg.det(matrix)) > 1e-12 * scale**2):
        raise ValueError(f"{source}: the WCS pixel-to-sky matrix is singular ({matrix.tolist()}"
                         "); CDELT must be non-zero and the PC or CD matrix invertible")


def _celestial_wcs(wcs):
    wcs = wcs_from_header(wcs) if isinstance(wcs, fits.Header) else wcs
    if not isinstance(wcs, WCS) or not wcs.has_celestial:
        raise ValueError(
            "wcs= has no celestial axes; give a WCS or header with CTYPE1/CTYPE2 such as "
            "RA---SIN/DEC--SIN"
        )
    return wcs.celestial


def _parse_path(path, hdu):
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no such image file: {path}")
    with open(path, "rb") as stream:
        magic = stream.read(6)
    whole_file_compressed = magic.startswith(_COMPRESSED_MAGIC)
    if not whole_file_compressed and not magic.startswith(b"SIMPLE"):
        raise ValueError(f"{path} is not a FITS file (it does not start with SIMPLE)")
    unpacked_size = None
    if magic.startswith((b"\x1f\x8b", b"BZh")):
        unpacked_size = _check_compressed(path, bz2=magic.startswith(b"BZh"))
    hdulist = _open_fits(path)
    try:
        index = _hdu_index(hdulist, hdu, path)
        chosen = hdulist[index]
        header = clean_header(chosen.header)
        shape = _array_shape(header)
        if unpacked_size is not None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", fits.verify.VerifyWarning)
                offset = hdulist.fileinfo(index)["datLoc"]
            _check_complete(path, offset, header, unpacked_size)
        if whole_file_compressed or isinstance(chosen, fits.CompImageHDU):

            def make_pixels(plane):
                return SectionPixels(chosen, plane, hdulist=hdulist)

        else:
            with warnings.catch_warnings():
                # fileinfo() re-verifies the raw header, which clean_header already mended.
                warnings.simplefilter("ignore", fits.verify.VerifyWarning)
                offset = hdulist.fileinfo(index)["datLoc"]
            _check_complete(path, offset, header)
            hdulist.close()

            def make_pixels(plane):
                if any(not isinstance(i, slice) for i in plane[-2:]):
                    raise ValueError(
                        f"{path}: the celestial axes must be the first two FITS axes "
                        "(NAXIS1, NAXIS2) to stream the file"
                    )
                return FilePixels(path, offset, header, plane)

    except Exception:
        hdulist.close()
        raise
    return header, make_pixels, shape, path


def _check_compressed(path, bz2=False):
    """Decompress a whole-file gzip or bzip2 FITS once, so that its CRC is checked (astropy
    reads sections and never reaches the end) and a truncated stream is refused."""
    import bz2 as bz2_module
    import gzip
    import zlib

    opener = bz2_module.open if bz2 else gzip.open
    try:
        with opener(path, "rb") as stream:
            head = stream.read(2880)
            size = len(head)
            while block := stream.read(1 << 22):
                size += len(block)
    except (EOFError, OSError, zlib.error) as error:
        raise ValueError(f"{path} is damaged: its {'bzip2' if bz2 else 'gzip'} stream fails "
                         f"its check ({error}); copy or download it again") from None
    if not head.startswith(b"SIMPLE"):
        raise ValueError(f"{path} is compressed but holds no FITS file (it does not start "
                         "with SIMPLE)")
    return size


def _open_fits(path):
    """Open a FITS file, turning astropy's warnings and errors into clear ones."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", AstropyUserWarning)
        try:
            hdulist = fits.open(path, memmap=False, lazy_load_hdus=False)
        except (OSError, ValueError, TypeError) as error:
            raise ValueError(f"cannot read {path} as FITS: {error}") from error
    for warning in caught:
        if "truncated" in str(warning.message):
            hdulist.close()
            raise ValueError(
                f"{path} is truncated ({warning.message}); copy or download it again"
            )
        log.debug("while opening %s: %s", path, warning.message)
    return hdulist


def _check_complete(path, offset, header, size=None):
    shape = _array_shape(header)
    needed = offset + abs(header["BITPIX"]) // 8 * int(np.prod(shape))
    size = os.path.getsize(path) if size is None else size
    if size < needed:
        raise ValueError(
            f"{path} is truncated: its image data needs {needed} bytes, the file has {size}; "
            "copy or download it again"
        )


def _array_shape(header):
    return tuple(int(header[f"NAXIS{i}"]) for i in range(int(header.get("NAXIS", 0)), 0, -1))


def _is_image(hdu):
    return isinstance(hdu, _IMAGE_HDUS) and hdu.header.get("NAXIS", 0) > 0


def _hdu_index(hdulist, hdu, where):
    if hdu is None:
        for index, candidate in enumerate(hdulist):
            if _is_image(candidate):
                return index
        raise ValueError(f"{where} has no HDU with image data")
    try:
        index = hdulist.index_of(hdu)
        if not 0 <= index < len(hdulist):
            raise IndexError(index)
    except (KeyError, IndexError) as error:
        raise ValueError(f"{where} has no HDU {hdu!r} (it has {len(hdulist)} HDUs)") from error
    chosen = hdulist[index]
    if isinstance(chosen, _TABLE_HDUS):
        raise TypeError(
            f"HDU {hdu!r} of {where} is a {type(chosen).__name__}, a table, not an image; "
            "choose an image HDU with hdu="
        )
    if not _is_image(chosen):
        raise ValueError(f"HDU {hdu!r} of {where} holds no image data")
    return index


def _choose_hdu(hdulist, hdu, where):
    return hdulist[_hdu_index(hdulist, hdu, where)]


def _parse_hdu(hdu, source):
    if not _is_image(hdu):
        raise ValueError(f"the {type(hdu).__name__} holds no image data")
    header = clean_header(hdu.header)
    # astropy has no public flag for "data already in memory"; its section reader needs a
    # file, so an HDU built from an array (or already read) is sliced in memory instead.
    if hdu._data_loaded:
        data = hdu.data

        def make_pixels(plane):
            return ArrayPixels(data[plane])

        return header, make_pixels, data.shape, source

    def make_pixels(plane):
        return SectionPixels(hdu, plane)

    return header, make_pixels, _array_shape(header), source


def _parse_nddata(nddata):
    header = nddata.meta if isinstance(nddata.meta, fits.Header) else fits.Header()
    header = clean_header(header)
    if nddata.wcs is not None:
        header = _merge_wcs(header, nddata.wcs)
    if nddata.unit is not None and "BUNIT" not in header:
        header["BUNIT"] = nddata.unit.to_string(format="fits")
    data = np.asanyarray(nddata.data)
    mask = None if nddata.mask is None else np.broadcast_to(nddata.mask, data.shape)

    def make_pixels(plane):
        return ArrayPixels(data[plane], None if mask is None else mask[plane])

    return header, make_pixels, data.shape, f"<{type(nddata).__name__}>"


def _parse_array(data, wcs_or_header):
    if not hasattr(data, "shape") or not hasattr(data, "__getitem__"):
        raise TypeError(f"the first item of the pair must be an array, got {type(data).__name__}")
    header = fits.Header()
    if wcs_or_header is not None:
        header = _merge_wcs(header, wcs_or_header)

    def make_pixels(plane):
        return ArrayPixels(data[plane])

    return header, make_pixels, tuple(data.shape), "<array>"


def _merge_wcs(header, wcs):
    """Header with its WCS keywords replaced by those of ``wcs`` (a WCS or a Header)."""
    if isinstance(wcs, fits.Header):
        merged = header.copy()
        merged.update(clean_header(wcs))
        return merged
    if not isinstance(wcs, WCS):
        raise TypeError(f"wcs must be an astropy WCS or a FITS Header, got {type(wcs).__name__}")
    merged = header.copy()
    for keyword in wcs_from_header(header).to_header(relax=True):
        merged.remove(keyword, ignore_missing=True, remove_all=True)
    merged.update(wcs.to_header(relax=True))
    return merged


def _choose_plane(wcs, shape, plane):
    """Pick the 2-D celestial plane out of an N-D array.

    Returns
    -------
    index : tuple
        Numpy index: ``slice(None)`` on the two celestial axes, an int elsewhere.
    pixels : dict
        Zero-based FITS axis -> pixel index chosen, for the spectral lookup.
    """
    ndim = len(shape)
    if ndim < 2:
        raise ValueError(f"image data is {ndim}-D (shape {shape}); radiofm needs a 2-D image")
    if not wcs.has_celestial:
        raise ValueError(
            "image has no celestial WCS; pass wcs= or a header with CTYPE1/CTYPE2 such as "
            "RA---SIN/DEC--SIN"
        )
    celestial_axes = {wcs.wcs.lng, wcs.wcs.lat}
    if max(celestial_axes) >= ndim:
        raise ValueError(
            f"the celestial WCS axes {sorted(a + 1 for a in celestial_axes)} do not exist in "
            f"the {ndim}-D data (shape {shape})"
        )
    other = [axis for axis in range(ndim) if axis not in celestial_axes]
    names = {axis: _axis_name(wcs, axis) for axis in other}
    lengths = {axis: shape[ndim - 1 - axis] for axis in other}
    chosen = _plane_indices(other, names, lengths, plane, shape)
    index = tuple(
        slice(None) if fits_axis in celestial_axes else chosen[fits_axis]
        for fits_axis in range(ndim - 1, -1, -1)
    )
    return index, chosen


def _axis_name(wcs, axis):
    if axis < wcs.naxis and wcs.wcs.ctype[axis]:
        return wcs.wcs.ctype[axis].split("-")[0].upper()
    return f"AXIS{axis + 1}"


def _plane_indices(other, names, lengths, plane, shape):
    planes = [axis for axis in other if lengths[axis] > 1]
    described = ", ".join(f"{names[a]} ({lengths[a]})" for a in planes)
    if plane is None:
        if planes:
            example = f"plane={{{names[planes[0]]!r}: 0}}" if len(planes) > 1 else "plane=0"
            raise ValueError(
                f"image data has shape {shape} with more than one plane on axes {described}; "
                f"choose one with {example}"
            )
        return dict.fromkeys(other, 0)
    if isinstance(plane, Mapping):
        wanted = {str(name).upper(): index for name, index in plane.items()}
        unknown = set(wanted) - set(names.values())
        if unknown:
            raise ValueError(
                f"plane names {sorted(unknown)} match no axis; the non-celestial axes are "
                f"{sorted(names.values())}"
            )
        missing = [names[a] for a in planes if names[a] not in wanted]
        if missing:
            raise ValueError(f"plane= must also choose an index for axes {missing}")
        chosen = {axis: int(wanted.get(names[axis], 0)) for axis in other}
    elif isinstance(plane, int | np.integer):
        if len(planes) > 1:
            raise ValueError(
                f"plane={plane} is ambiguous: several axes have more than one plane "
                f"({described}); pass a dict such as {{{names[planes[0]]!r}: {plane}}}"
            )
        chosen = dict.fromkeys(other, 0)
        target = planes[0] if planes else (other[0] if other else None)
        if target is None:
            if plane != 0:
                raise ValueError(f"plane={plane} given but the image is 2-D")
            return chosen
        chosen[target] = int(plane)
    else:
        raise TypeError(f"plane must be an int or a dict of axis name to index, got {plane!r}")
    for axis, index in chosen.items():
        if not 0 <= index < lengths[axis]:
            raise ValueError(
                f"plane index {index} is out of range for axis {names[axis]} "
                f"of length {lengths[axis]}"
            )
    return chosen


def _check_not_blank(pixels, band=256):
    """Raise if no pixel is finite; scans row bands from the centre out, stopping early."""
    ny = pixels.shape[0]
    starts = sorted(range(0, ny, band), key=lambda start: abs(start + band / 2 - ny / 2))
    for start in starts:
        if np.isfinite(pixels.read(slice(start, min(start + band, ny)), slice(None))).any():
            return
    raise ValueError("image has no finite pixel (it is all NaN or blank); nothing to tile")

"""The one internal form of an input image."""

import astropy.units as u
import numpy as np
from astropy.wcs.utils import proj_plane_pixel_scales

__all__ = ["RadioImage"]


class RadioImage:
    """A 2-D radio continuum image with its celestial WCS, beam and frequency.

    Build one with `read_image`, which accepts every input radiofm knows; the
    constructor is for code that already has each piece.

    Parameters
    ----------
    pixels : object
        A pixel reader (see ``radiofm.image._pixels``) with ``shape``, ``read(rows, cols)``,
        ``full()`` and ``close()``.
    wcs : `~astropy.wcs.WCS`
        The 2-D celestial WCS of the plane.
    beam : `~radiofm.image.Beam` or None
        Restoring beam.
    frequency : `~astropy.units.Quantity` or None
        Observing frequency of the plane.
    unit : `~astropy.units.UnitBase`
        Brightness unit.
    header : `~astropy.io.fits.Header` or None
        The original header, with non-printable characters cleaned.
    source : str
        Where the image came from (a path or a description), for provenance in tables.
    plane : tuple of int
        Indices chosen on the non-celestial axes, in numpy order (empty for 2-D data).
    """

    def __init__(
        self, pixels, wcs, *, beam=None, frequency=None, unit=u.dimensionless_unscaled,
        header=None, source="<array>", plane=(),
    ):
        self._pixels = pixels
        self.wcs = wcs
        self.beam = beam
        self.frequency = frequency
        self.unit = unit
        self.header = header
        self.source = source
        self.plane = plane

    @property
    def shape(self):
        """(ny, nx) of the plane."""
        return self._pixels.shape

    @property
    def data(self):
        """The 2-D plane as an array.

        Memory-mapped (nothing read yet) for uncompressed FITS files without scaling;
        decompressed or scaled in memory otherwise. Use `read_region` or
        `radiofm.tiling` to stream large images with bounded memory.
        """
        return self._pixels.full()

    @property
    def pixel_scale(self):
        """Angular size of a pixel (geometric mean of the two axes), in arcsec."""
        scales = proj_plane_pixel_scales(self.wcs) * u.Unit(self.wcs.wcs.cunit[0] or u.deg)
        return np.sqrt(scales[0] * scales[1]).to(u.arcsec)

    def angle_to_pixels(self, angle):
        """An angle on the sky as a whole number of this image's pixels.

        The one arcsec-to-pixel conversion of radiofm: tile sides, stamp sides and overlaps
        given as angles all go through it.

        Parameters
        ----------
        angle : `~astropy.units.Quantity`
            An angle (any angular unit).

        Returns
        -------
        pixels : int
            ``round(angle / pixel_scale)``; may be 0 for angles below half a pixel.

        Raises
        ------
        astropy.units.UnitsError
            ``angle`` is not an angle.

        Examples
        --------
        >>> import astropy.units as u
        >>> import numpy as np
        >>> from astropy.io import fits
        >>> from radiofm.image import read_image
        >>> header = fits.Header({"CTYPE1": "RA---SIN", "CTYPE2": "DEC--SIN",
        ...                       "CDELT1": -1.8 / 3600, "CDELT2": 1.8 / 3600})
        >>> read_image((np.zeros((4, 4)), header)).angle_to_pixels(270 * u.arcsec)
        150
        """
        if not (isinstance(angle, u.Quantity) and angle.unit.is_equivalent(u.deg)):
            raise u.UnitsError(f"expected an angle Quantity, got {angle!r}")
        return int(round(float((angle / self.pixel_scale).decompose())))

    def read_region(self, rows, cols):
        """Read a block of the plane as a new native float32 array.

        Parameters
        ----------
        rows, cols : slice
            Numpy-style slices (``y`` then ``x``); steps decimate.

        Returns
        -------
        block : `~numpy.ndarray`
            float32, BSCALE/BZERO applied, blanked pixels NaN.
        """
        return self._pixels.read(rows, cols)

    def rows(self, start, stop):
        """Whole rows ``start:stop`` for streaming, without a copy where possible.

        A context manager: the array it gives is valid inside the ``with`` block only (for
        uncompressed files it is a view of the file, big-endian as FITS stores it, whose
        pages are released on leaving the block). Values are as `read_region` gives them:
        scaled, blanks NaN; use numpy operations that produce new arrays from it.

        Examples
        --------
        >>> import numpy as np
        >>> from astropy.io import fits
        >>> from radiofm.image import read_image
        >>> header = fits.Header({"CTYPE1": "RA---SIN", "CTYPE2": "DEC--SIN"})
        >>> image = read_image((np.arange(12.0).reshape(3, 4), header))
        >>> with image.rows(1, 3) as rows:
        ...     print(rows.sum(axis=1))
        [22. 38.]
        """
        return self._pixels.rows(start, stop)

    def close(self):
        """Release the file behind the image (no-op for in-memory data)."""
        self._pixels.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def __repr__(self):
        ny, nx = self.shape
        if self.beam is None:
            beam = "none"
        else:
            major, minor = (axis.to_value(u.arcsec) for axis in self.beam[:2])
            beam = f"{major:.2f}x{minor:.2f} arcsec, {self.beam.pa.to_value(u.deg):.1f} deg"
        frequency = "unknown" if self.frequency is None else f"{self.frequency.to(u.MHz):.1f}"
        return (
            f"<RadioImage {nx}x{ny} px, {self.pixel_scale:.3g}/px, beam {beam}, "
            f"frequency {frequency}, unit {self.unit}, from {self.source}>"
        )

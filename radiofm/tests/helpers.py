"""Builders of FITS images with the headers real radio pipelines write, for tests."""

import numpy as np
from astropy.io import fits


def sky_header(nx=64, ny=48, *, projection="SIN", crval=(150.0, -30.0), cdelt_arcsec=1.1,
               cube=()):
    """A celestial header, optionally with extra axes.

    Parameters
    ----------
    nx, ny : int
        Image size in pixels.
    projection : str
        Three-letter projection code (SIN, TAN, NCP, ...).
    crval : tuple of float
        RA and Dec of the reference pixel (image centre), degrees.
    cdelt_arcsec : float
        Pixel size.
    cube : sequence of (ctype, length, crval, cdelt)
        Extra axes after RA/DEC, e.g. ``[("FREQ", 1, 1.28e9, 1e6), ("STOKES", 1, 1, 1)]``.
    """
    header = fits.Header()
    header["NAXIS"] = 2 + len(cube)
    header["NAXIS1"] = nx
    header["NAXIS2"] = ny
    for i, (_, length, _, _) in enumerate(cube, start=3):
        header[f"NAXIS{i}"] = length
    header["CTYPE1"] = f"RA---{projection}"
    header["CTYPE2"] = f"DEC--{projection}"
    header["CRVAL1"], header["CRVAL2"] = crval
    header["CRPIX1"] = nx / 2 + 0.5
    header["CRPIX2"] = ny / 2 + 0.5
    header["CDELT1"] = -cdelt_arcsec / 3600
    header["CDELT2"] = cdelt_arcsec / 3600
    header["CUNIT1"] = header["CUNIT2"] = "deg"
    for i, (ctype, _, crval_i, cdelt_i) in enumerate(cube, start=3):
        header[f"CTYPE{i}"] = ctype
        header[f"CRVAL{i}"] = crval_i
        header[f"CDELT{i}"] = cdelt_i
        header[f"CRPIX{i}"] = 1.0
        if ctype == "FREQ":
            header[f"CUNIT{i}"] = "Hz"
    header["RADESYS"] = "ICRS"
    header["BUNIT"] = "JY/BEAM"
    return header


def noise_image(header, seed=0, dtype=np.float32):
    """Gaussian noise with the array shape the header describes."""
    shape = tuple(header[f"NAXIS{i}"] for i in range(header["NAXIS"], 0, -1))
    rng = np.random.default_rng(seed)
    return rng.normal(0.0, 1e-4, shape).astype(dtype)


def write_image(path, header, data=None, **kwargs):
    """Write a primary HDU and return its path."""
    data = noise_image(header) if data is None else data
    fits.PrimaryHDU(data, header=header).writeto(path, **kwargs)
    return path


def write_raw(path, header, raw):
    """Write ``raw`` as the stored (unscaled) data of a primary HDU, byte for byte.

    astropy rescales or strips BSCALE/BZERO/BLANK when it writes; this keeps them as given.
    """
    header = header.copy()
    header.insert(0, ("SIMPLE", True))
    header.insert(1, ("BITPIX", {"i": 8, "u": 8, "f": -8}[raw.dtype.kind] * raw.dtype.itemsize))
    header["NAXIS"] = raw.ndim
    for i, length in enumerate(raw.shape[::-1], start=1):
        header[f"NAXIS{i}"] = length
    block = 2880
    data = raw.astype(raw.dtype.newbyteorder(">")).tobytes()
    with open(path, "wb") as stream:
        stream.write(header.tostring().encode("ascii"))
        stream.write(data + b"\0" * (-len(data) % block))
    return path

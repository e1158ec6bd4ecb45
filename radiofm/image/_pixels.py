"""Readers that hand out float32 blocks of one 2-D image plane, with bounded memory.

Three kinds of storage reach `radiofm.image.read_image`:

- an uncompressed FITS file on disk: `FilePixels` memory-maps the plane and hands the pages
  of each block back to the kernel once it is read, so streaming a 16k x 16k image keeps
  the process's resident memory at the size of one block (touched pages of a plain memory
  map would all count);
- a tile-compressed or gzipped file, or an HDU object: `SectionPixels` goes through
  astropy's ``section`` API, which decompresses only the tiles a block needs;
- an array in memory (or memory-mapped by the caller): `ArrayPixels` slices it.

Every reader's ``read`` returns native-endian float32 with BSCALE/BZERO applied and blanked
pixels (BLANK for integer data, masked pixels for NDData) set to NaN; its ``rows`` context
manager gives whole rows with the same values, without a copy where it can.
"""

import mmap
import os
import weakref
from contextlib import contextmanager

import numpy as np

_BITPIX_DTYPES = {8: ">u1", 16: ">i2", 32: ">i4", 64: ">i8", -32: ">f4", -64: ">f8"}


def _as_slice(index, length):
    start, stop, step = index.indices(length)
    return slice(start, stop, step)


class ArrayPixels:
    """Pixels of a 2-D array (ndarray, memmap or anything numpy can slice).

    Parameters
    ----------
    array : array-like
        The 2-D plane.
    mask : array-like of bool, optional
        True where a pixel is invalid; those pixels read as NaN.
    """

    def __init__(self, array, mask=None):
        self.array = array
        self.mask = None if mask is None else np.asarray(mask, dtype=bool)
        self.shape = tuple(array.shape)

    def read(self, rows, cols):
        """Return ``array[rows, cols]`` as a new native float32 array."""
        block = np.array(self.array[rows, cols], dtype=np.float32)
        if self.mask is not None:
            block[self.mask[rows, cols]] = np.nan
        return block

    @contextmanager
    def rows(self, start, stop):
        """Rows ``start:stop`` as float values (a view when nothing needs masking)."""
        if self.mask is None:
            yield self.array[start:stop]
        else:
            yield self.read(slice(start, stop), slice(None))

    def full(self):
        """The whole plane: the caller's array itself when nothing needs masking."""
        if self.mask is None:
            return self.array
        return self.read(slice(None), slice(None))

    def close(self):
        """Nothing to release for arrays."""


class SectionPixels:
    """Pixels read through an HDU's ``section`` (decompresses only the needed tiles).

    Planes of at most ``cache_bytes`` (as float32) are decompressed once, on the first
    read, and kept: astropy's per-tile overhead makes repeated small reads of a small
    compressed image cost more than the image itself.

    Parameters
    ----------
    hdu : `~astropy.io.fits.ImageHDU` or `~astropy.io.fits.CompImageHDU`
        An image HDU (a PrimaryHDU works too) backed by a file.
    plane : tuple
        Index of the 2-D plane in the HDU's array: integers for the non-celestial axes,
        ``slice(None)`` for the two celestial ones.
    hdulist : `~astropy.io.fits.HDUList`, optional
        An HDUList opened by radiofm, closed by `close`.
    cache_bytes : int
        Largest plane kept in memory after its first read.
    """

    def __init__(self, hdu, plane, hdulist=None, cache_bytes=64 * 2**20):
        self.hdu = hdu
        self.plane = plane
        self.shape = tuple(
            n for n, index in zip(_hdu_shape(hdu), plane, strict=True) if isinstance(index, slice)
        )
        self._finalizer = weakref.finalize(self, hdulist.close) if hdulist is not None else None
        self._cache_whole = 4 * int(np.prod(self.shape)) <= cache_bytes
        self._cached = None

    def _index(self, rows, cols):
        blocks = iter((rows, cols))
        return tuple(next(blocks) if isinstance(i, slice) else i for i in self.plane)

    def read(self, rows, cols):
        """Return the block ``[rows, cols]`` of the plane as native float32."""
        if self._cache_whole:
            if self._cached is None:
                whole = self.hdu.section[self._index(slice(None), slice(None))]
                self._cached = np.asarray(whole, dtype=np.float32)
            return self._cached[rows, cols].copy()
        block = self.hdu.section[self._index(rows, cols)]
        return np.asarray(block, dtype=np.float32)

    @contextmanager
    def rows(self, start, stop):
        """Rows ``start:stop`` as a float32 copy."""
        yield self.read(slice(start, stop), slice(None))

    def full(self):
        """The whole plane (decompressed and scaled in memory)."""
        return self.read(slice(None), slice(None))

    def close(self):
        """Drop the cached plane and close the HDUList radiofm opened, if any."""
        self._cached = None
        if self._finalizer is not None:
            self._finalizer()


def _hdu_shape(hdu):
    header = hdu.header
    return tuple(header[f"NAXIS{i}"] for i in range(header["NAXIS"], 0, -1))


class FilePixels:
    """Pixels of an uncompressed FITS image HDU, read straight from the file.

    The plane is memory-mapped, and the pages of every block are handed back to the kernel
    (``madvise(MADV_DONTNEED)``) as soon as the block is converted: they stay in the page
    cache but stop counting as this process's resident memory, which therefore stays at the
    size of the blocks asked for, whatever the size of the file.

    Parameters
    ----------
    path : str
        The FITS file.
    offset : int
        Byte offset of the HDU's data.
    header : `~astropy.io.fits.Header`
        The HDU header (BITPIX, NAXISn, BSCALE, BZERO, BLANK).
    plane : tuple
        As for `SectionPixels`. The two celestial axes must be the last two numpy axes.
    """

    def __init__(self, path, offset, header, plane):
        self.path = os.fspath(path)
        self.dtype = np.dtype(_BITPIX_DTYPES[header["BITPIX"]])
        self.full_shape = tuple(header[f"NAXIS{i}"] for i in range(header["NAXIS"], 0, -1))
        self.shape = self.full_shape[-2:]
        self.plane = plane
        leading = self.full_shape[:-2]
        plane_number = int(np.ravel_multi_index(plane[:-2], leading)) if leading else 0
        plane_bytes = self.shape[0] * self.shape[1] * self.dtype.itemsize
        start = offset + plane_number * plane_bytes
        aligned = start - start % mmap.ALLOCATIONGRANULARITY
        with open(self.path, "rb") as stream:
            self._map = mmap.mmap(stream.fileno(), start - aligned + plane_bytes,
                                  access=mmap.ACCESS_READ, offset=aligned)
        self._lead = start - aligned
        self._raw = np.frombuffer(self._map, dtype=self.dtype, count=plane_bytes //
                                  self.dtype.itemsize, offset=self._lead).reshape(self.shape)
        self.bscale = float(header.get("BSCALE", 1.0))
        self.bzero = float(header.get("BZERO", 0.0))
        self.blank = header.get("BLANK") if self.dtype.kind in "iu" else None

    @property
    def scaled(self):
        """True when the stored values need BSCALE/BZERO/BLANK applied."""
        return self.bscale != 1.0 or self.bzero != 0.0 or self.dtype.kind in "iu"

    def _release(self, start, stop):
        """Drop rows ``start:stop`` from this process's resident pages (not from the cache)."""
        row_bytes = self.shape[1] * self.dtype.itemsize
        first = self._lead + start * row_bytes
        first -= first % mmap.PAGESIZE
        last = self._lead + stop * row_bytes
        if last > first:
            self._map.madvise(mmap.MADV_DONTNEED, first, last - first)

    def _scale(self, raw):
        """float32 values of stored pixels: a casting copy, then BSCALE/BZERO/BLANK."""
        # A casting copy swaps bytes several times faster than ndarray.byteswap(inplace=True).
        block = raw.astype(np.float32)
        if self.scaled:
            block *= np.float32(self.bscale)
            block += np.float32(self.bzero)
            if self.blank is not None:
                block[raw == self.blank] = np.nan
        return block

    def read(self, rows, cols):
        """Return the block ``[rows, cols]`` of the plane as native float32."""
        rows = _as_slice(rows, self.shape[0])
        block = self._scale(self._raw[rows, cols])
        low, high = sorted((rows.start, rows.stop))
        self._release(low, high + 1)
        return block

    @contextmanager
    def rows(self, start, stop):
        """Rows ``start:stop`` as float values, valid inside the ``with`` block only.

        Unscaled data come as a view of the file's bytes (big-endian, no copy); scaled
        data as a float32 copy. The rows' pages are released on leaving the block.
        """
        try:
            yield self._scale(self._raw[start:stop]) if self.scaled else self._raw[start:stop]
        finally:
            self._release(start, stop)

    def full(self):
        """The whole plane: a read-only memory map when no scaling is needed."""
        if self.scaled:
            return self.read(slice(None), slice(None))
        return self._raw

    def close(self):
        """Drop this reader's map of the file (arrays from `full` keep theirs alive)."""
        self._raw = None

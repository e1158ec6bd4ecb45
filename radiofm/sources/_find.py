"""`find_sources`: pyBDSF or photutils, one catalogue either way."""

import contextlib
import gc
import io
import logging
import tempfile
import warnings
from pathlib import Path

import astropy.units as u
import numpy as np
from astropy.io import fits
from astropy.stats import SigmaClip
from astropy.table import vstack
from scipy import ndimage

from .._optional_deps import HAS_BDSF
from ..image import read_image
from ._catalog import make_catalog, read_catalog

__all__ = ["find_sources", "position_angles"]

log = logging.getLogger("radiofm")

# HAS_BDSF is found, not imported: importing pyBDSF takes most of a second, and
# radiofm.inference (which reads catalogues through this package) should not pay for it.

METHODS = ("auto", "bdsf", "photutils")
FWHM_TO_SIGMA = 1.0 / np.sqrt(8.0 * np.log(2.0))
_STRIP_ROWS = 1024


def find_sources(image, method="auto", *, beam=None, frequency=None, thresh_pix=5.0,
                 thresh_isl=3.0, tile_size=None, overlap=None, workdir=None, ncores=1,
                 box_size=None, bdsf_options=None):
    """Find the sources of a radio image and return the standard catalogue.

    Parameters
    ----------
    image : anything `~radiofm.image.read_image` accepts
        The image (call `~radiofm.image.read_image` first to choose an HDU or plane).
    method : {"auto", "bdsf", "photutils"}
        pyBDSF (Gaussian fitting; the ``bdsf`` extra) or photutils (segmentation with
        deblending); "auto" takes pyBDSF when it is installed.
    beam : angle or tuple, optional
        Restoring beam when the image records none (FIRST: 5.4 arcsec).
    frequency : `~astropy.units.Quantity`, optional
        Observing frequency when the image records none (pyBDSF needs one).
    thresh_pix : float
        A source's peak must reach this many times the local rms.
    thresh_isl : float
        Islands (connected emission) extend down to this many times the local rms.
    tile_size : int or `~astropy.units.Quantity`, optional
        Run the finder tile by tile (bounded memory on large images). Each tile keeps the
        sources whose centre lies in its core, the tile up to the middle of its overlaps
        with its neighbours, so a source is reported once.
    overlap : int or `~astropy.units.Quantity`, optional
        Overlap of those tiles; default an eighth of the tile, at least 10 beams, so that
        sources cut by one tile's edge lie whole in its neighbour.
    workdir : str or path-like, optional
        Folder for pyBDSF's input copy, log and catalogue, kept after the run. Default: a
        temporary folder, removed afterwards. Nothing is written beside the image or in the
        working directory.
    ncores : int
        Processes pyBDSF may fork.
    box_size : int, optional
        Background/rms box in pixels, for either finder. Default: ten beams, within 16-256
        pixels and the image size. pyBDSF gets it as ``rms_box`` (step a third of the box,
        ``rms_map=True``): left to itself, it sizes its box from the largest bright island,
        and on a field with one large source it then falls back to a single rms for the
        whole image, which the confusion of faint sources inflates (1.3 times the true
        noise on README's example field), so that it finds fewer sources and underrates
        each one's S/N.
    bdsf_options : dict, optional
        More keyword arguments for ``bdsf.process_image``; ``rms_box`` or ``rms_map`` here
        replace the box above.

    Returns
    -------
    catalog : `~astropy.table.QTable`
        The standard catalogue (`~radiofm.sources.CATALOG_COLUMNS`), with ``FINDER``,
        ``IMAGE``, ``THRESPIX`` and ``THRESISL`` in its meta.

    Raises
    ------
    ValueError
        No beam anywhere, no frequency for pyBDSF, or an unknown method.
    ImportError
        ``method="bdsf"`` without pyBDSF installed.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    image = read_image(image, beam=beam, frequency=frequency)
    if image.beam is None:
        raise ValueError(
            f"{image.source} records no restoring beam (BMAJ/BMIN/BPA or AIPS HISTORY); pass "
            "beam=, e.g. beam=5.4 * u.arcsec for FIRST"
        )
    if method == "auto":
        method = "bdsf" if HAS_BDSF else "photutils"
        log.info("finding sources with %s", method)
    meta = {"IMAGE": str(image.source), "THRESPIX": thresh_pix, "THRESISL": thresh_isl}

    def find(part, folder):
        box = _box_size(part, box_size)
        if method == "bdsf":
            options = bdsf_options or {}
            if not {"rms_box", "rms_map"} & set(options):
                options = {"rms_map": True, "rms_box": (box, max(1, box // 3)), **options}
            return _find_with_bdsf(part, thresh_pix, thresh_isl, folder, ncores, options)
        return _find_with_photutils(part, thresh_pix, thresh_isl, box)

    if tile_size is None:
        catalog = find(image, workdir)
    else:
        catalog = _find_tile_by_tile(image, find, tile_size, overlap, workdir)
        meta.update(TILESIZE=int(catalog.meta.pop("TILESIZE")),
                    OVERLAP=int(catalog.meta.pop("OVERLAP")))
    catalog.meta.update(meta, FINDER=method)
    log.info("%s found %d sources in %s", method, len(catalog), image.source)
    return catalog


def _find_tile_by_tile(image, find, tile_size, overlap, workdir):
    """Run ``find`` on each tile and keep each source in the one tile whose core holds it."""
    from ..tiling import tile_image

    if overlap is None:
        size = (image.angle_to_pixels(tile_size) if isinstance(tile_size, u.Quantity)
                else tile_size)
        beam_px = float(image.beam.major / image.pixel_scale)
        overlap = min(max(size // 8, int(np.ceil(10 * beam_px))), size - 1)
    tiles = tile_image(image, tile_size, overlap=overlap, min_valid=0.0)
    ny, nx = image.shape
    x_starts = np.unique(tiles.table["x_min"])
    y_starts = np.unique(tiles.table["y_min"])
    x_bounds = _core_bounds(x_starts, tiles.tile_size, nx)
    y_bounds = _core_bounds(y_starts, tiles.tile_size, ny)
    parts = []
    for row in tiles.table:
        if row["valid_fraction"] == 0:
            continue
        tile_id = int(row["tile_id"])
        rows, cols = tiles.tile_slices(tile_id)
        part = read_image((image.read_region(rows, cols), tiles.tile_wcs(tile_id)),
                          beam=image.beam, frequency=image.frequency, unit=image.unit)
        folder = None if workdir is None else Path(workdir) / f"tile_{tile_id:05d}"
        found = find(part, folder)
        x = np.asarray(found["x_center"]) + cols.start
        y = np.asarray(found["y_center"]) + rows.start
        ix = np.searchsorted(x_starts, row["x_min"])
        iy = np.searchsorted(y_starts, row["y_min"])
        keep = ((x >= x_bounds[ix]) & (x < x_bounds[ix + 1])
                & (y >= y_bounds[iy]) & (y < y_bounds[iy + 1]))
        found = found[keep]
        found["x_center"] = x[keep]
        found["y_center"] = y[keep]
        found["island_id"] = found["island_id"] + tile_id * 1_000_000
        parts.append(found)
        log.debug("tile %d: %d of %d sources in its core", tile_id, keep.sum(), len(keep))
    catalog = vstack(parts, metadata_conflicts="silent") if parts else make_catalog(
        image.wcs.pixel_to_world([], []), flux=[], peak=[])
    catalog["source_id"] = np.arange(len(catalog))
    _, catalog["island_id"] = np.unique(np.asarray(catalog["island_id"]), return_inverse=True)
    catalog.meta.update(TILESIZE=tiles.tile_size, OVERLAP=tiles.overlap)
    return catalog


def _core_bounds(starts, size, length):
    """Pixel edges of tile cores: the middle of each overlap, the image edges outside."""
    middles = (starts[1:] + starts[:-1] + size) / 2 - 0.5
    return np.concatenate([[-0.5], middles, [length - 0.5]])


def _find_with_bdsf(image, thresh_pix, thresh_isl, workdir, ncores, options):
    if not HAS_BDSF:
        raise ImportError("method='bdsf' needs pyBDSF: pip install 'radiofm[bdsf]'")
    if image.frequency is None:
        raise ValueError(
            f"{image.source} records no frequency (FREQ axis, FREQ/RESTFRQ/RESTFREQ); pyBDSF "
            "needs one: pass frequency=, e.g. frequency=1.4 * u.GHz for FIRST"
        )
    with contextlib.ExitStack() as stack:
        # pyBDSF sets numpy's error handling for the whole process, on import and while it
        # runs; errstate gives the caller's back on the way out
        stack.enter_context(np.errstate())
        import bdsf

        if workdir is None:
            folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="radiofm-bdsf-")))
        else:
            folder = Path(workdir)
            folder.mkdir(parents=True, exist_ok=True)
        plane = folder / "image.fits"
        _write_plane(image, plane)
        srl = folder / "image.srl.fits"
        beam = tuple(float(v.to_value(u.deg)) for v in image.beam)
        printed = io.StringIO()
        with warnings.catch_warnings(record=True) as caught, contextlib.redirect_stdout(printed):
            warnings.simplefilter("always")
            result = bdsf.process_image(
                str(plane), beam=beam, frequency=float(image.frequency.to_value(u.Hz)),
                thresh_pix=thresh_pix, thresh_isl=thresh_isl, ncores=ncores, quiet=True,
                outdir=str(folder), **options,
            )
            result.write_catalog(outfile=str(srl), format="fits", catalog_type="srl",
                                 clobber=True, force_output=True)
            del result  # pyBDSF holds the input file open until its image object goes
            gc.collect()
        for warning in caught:
            log.debug("pyBDSF: %s", warning.message)
        log.debug("pyBDSF printed: %s", printed.getvalue().strip())
        if not srl.exists():
            raise RuntimeError(f"pyBDSF wrote no catalogue; see its log in {folder}")
        catalog = read_catalog(srl)
    x, y = image.wcs.world_to_pixel(catalog["sky_center"]) if len(catalog) else ([], [])
    catalog["x_center"] = np.asarray(x, float)
    catalog["y_center"] = np.asarray(y, float)
    catalog.meta.pop("CATALOG", None)
    return catalog


def _write_plane(image, path):
    """Write the image's 2-D plane with the header pyBDSF wants, row strip by row strip.

    The plane is written in double precision: pyBDSF's clipped rms of a box takes the
    difference of two sums of squares in the image's own precision, and in single precision
    a box holding a bright extended source (1 Jy/beam over 4 uJy/beam of noise) cancels to
    nothing, and pyBDSF stops ("unphysical rms" or a division by zero).
    """
    ny, nx = image.shape
    header = fits.Header()
    header["SIMPLE"] = True
    header["BITPIX"] = -64
    header["NAXIS"] = 2
    header["NAXIS1"] = nx
    header["NAXIS2"] = ny
    header.update(image.wcs.to_header())
    header["BUNIT"] = "JY/BEAM"
    stream = fits.StreamingHDU(path, header)
    low, high = np.inf, -np.inf
    for start in range(0, ny, _STRIP_ROWS):
        strip = np.array(image.read_region(slice(start, min(start + _STRIP_ROWS, ny)),
                                           slice(None)), dtype=np.float64)
        finite = np.isfinite(strip)
        strip[~finite] = np.nan  # inf pixels are blanked, as every other radiofm path does
        if finite.any():
            low, high = min(low, float(strip[finite].min())), max(high, float(strip[finite].max()))
        stream.write(strip)
    stream.close()
    if low == high:
        raise _constant_image(image, low)


def _constant_image(image, value):
    return ValueError(f"{image.source} is constant (every finite pixel is {value:g}): there "
                      "is no noise to measure sources against; check the image")


def _box_size(image, box_size):
    """The background/rms box in pixels: ``box_size``, else ten beams within 16-256 pixels;
    at most the image's shorter side."""
    if box_size is None:
        beam_px = float(np.sqrt(image.beam.major * image.beam.minor) / image.pixel_scale)
        box_size = int(np.clip(10 * beam_px, 16, 256))
    return int(min(box_size, *image.shape))


def _find_with_photutils(image, thresh_pix, thresh_isl, box_size):
    from photutils.segmentation import SourceCatalog, deblend_sources

    data = image.read_region(slice(None), slice(None))
    blank = ~np.isfinite(data)
    if not blank.all() and np.nanmin(np.where(blank, np.nan, data)) == np.nanmax(
            np.where(blank, np.nan, data)):
        raise _constant_image(image, float(data[~blank][0]))
    beam_px = float(np.sqrt(image.beam.major * image.beam.minor) / image.pixel_scale)
    beam_area_px = np.pi / (4 * np.log(2)) * beam_px**2
    n_pixels = max(6, int(beam_area_px / 3))  # as pyBDSF's default minpix_isl
    signal, rms, islands = _background_and_islands(data, blank, box_size, thresh_isl, n_pixels)
    if islands is not None:
        # Second pass: the first pass's islands, grown by a beam, are left out of the
        # background and rms, so that the wings of bright sources do not inflate the rms
        # around them and hide the fainter sources there.
        emission = ndimage.binary_dilation(islands.data > 0, iterations=max(1, round(beam_px)))
        with contextlib.suppress(ValueError):  # every box mostly emission: keep pass one
            signal, rms, islands = _background_and_islands(
                data, blank, box_size, thresh_isl, n_pixels, emission=emission)
    if islands is None:
        return make_catalog(image.wcs.pixel_to_world([], []), flux=[], peak=[])
    snr = signal / rms
    deblended = deblend_sources(snr, islands, n_pixels, n_levels=32, contrast=0.001,
                                progress_bar=False)
    sources = SourceCatalog(signal, deblended, wcs=image.wcs)
    peak_y = np.asarray(sources.max_value_yindex, int)
    peak_x = np.asarray(sources.max_value_xindex, int)
    keep = snr[peak_y, peak_x] >= thresh_pix
    if not keep.any():
        return make_catalog(image.wcs.pixel_to_world([], []), flux=[], peak=[])
    sources = sources[np.flatnonzero(keep)]
    island_of = islands.data[peak_y[keep], peak_x[keep]]
    _, per_island = np.unique(island_of, return_counts=True)
    shared = per_island[np.searchsorted(np.unique(island_of), island_of)] > 1
    scale = image.pixel_scale.to_value(u.arcsec)
    major = np.asarray(sources.semimajor_axis.value) / FWHM_TO_SIGMA * scale
    minor = np.asarray(sources.semiminor_axis.value) / FWHM_TO_SIGMA * scale
    # pyBDSF-like codes: 'C' shares its island, 'S' is alone and no wider than 2 beams
    # (a single Gaussian would fit it), 'M' is alone but extended.
    compact = major <= 2 * image.beam.major.to_value(u.arcsec)
    codes = np.where(shared, "C", np.where(compact, "S", "M"))
    pa = position_angles(image.wcs, np.asarray(sources.x_centroid, float),
                         np.asarray(sources.y_centroid, float),
                         np.asarray(sources.orientation.to_value(u.deg)))
    return make_catalog(
        sources.sky_centroid,
        flux=np.asarray(sources.segment_flux) / beam_area_px,
        peak=np.asarray(sources.max_value),
        local_rms=rms[peak_y[keep], peak_x[keep]],
        major=major, minor=minor, pa=pa, s_code=codes, island_id=island_of,
        wcs=image.wcs,
    )


def _background_and_islands(data, blank, box_size, thresh_isl, n_pixels, emission=None):
    """Background-subtracted signal, its rms and the islands above ``thresh_isl`` sigma.

    The background is the sigma-clipped median and the rms the MAD standard deviation in
    boxes of ``box_size`` pixels, leaving out the ``emission`` pixels (boxes more than
    half emission are interpolated from their neighbours). ``islands`` is None on an
    empty sky.
    """
    from photutils.background import Background2D, MADStdBackgroundRMS, MedianBackground
    from photutils.segmentation import detect_sources
    from photutils.utils.exceptions import NoDetectionsWarning

    with warnings.catch_warnings():
        # photutils warns when boxes are partly blank; the coverage mask handles them
        warnings.simplefilter("ignore", category=UserWarning)
        background = Background2D(
            np.where(blank, 0.0, data), box_size, mask=emission, coverage_mask=blank,
            fill_value=0.0, exclude_percentile=50, sigma_clip=SigmaClip(sigma=3.0),
            bkg_estimator=MedianBackground(), bkg_rms_estimator=MADStdBackgroundRMS(),
        )
    signal = np.where(blank, 0.0, data - background.background)
    rms = np.where(background.background_rms > 0, background.background_rms, np.inf)
    with warnings.catch_warnings():
        # an empty sky is a valid answer: it gives an empty catalogue, not a warning
        warnings.simplefilter("ignore", NoDetectionsWarning)
        islands = detect_sources(signal / rms, thresh_isl, n_pixels, mask=blank)
    return signal, rms, islands


def position_angles(wcs, x, y, orientation_deg):
    """Position angles east of north of axes given by their angle in pixel coordinates.

    The axis through pixel (x, y) at ``orientation_deg`` counter-clockwise from +x is mapped
    through the WCS at that very position, so rotated CD matrices, east-right images and
    swapped axes all give the PA on the sky.

    Parameters
    ----------
    wcs : `~astropy.wcs.WCS`
        Celestial WCS.
    x, y, orientation_deg : array-like
        Pixel positions and axis angles.

    Returns
    -------
    pa : `~numpy.ndarray`
        Degrees in [0, 180).
    """
    x, y = np.asarray(x, float), np.asarray(y, float)
    theta = np.deg2rad(np.asarray(orientation_deg, float))
    step = 0.5  # pixels: short enough for the local linear map, long enough for float64
    start = wcs.pixel_to_world(x, y)
    end = wcs.pixel_to_world(x + step * np.cos(theta), y + step * np.sin(theta))
    return np.asarray(start.position_angle(end).to_value(u.deg)) % 180.0

"""A MeerKAT-like synthetic continuum sky with its truth catalogue.

The physics, kept deliberately simple and stated here so the numbers can be checked:

- **Compact sources.** Fluxes follow a power-law differential count
  ``dN/dS ∝ S^-1.9`` at 1.4 GHz, normalised to 90 sources per deg² above 1 mJy (the FIRST
  source density, Becker et al. 1995); the slope gives about 1300 deg⁻² above 50 µJy, close
  to deep VLA counts. Fluxes are scaled to the observing frequency with a spectral index of
  -0.7. Each source has an intrinsic Gaussian size (FWHM uniform in 0-2 arcsec), so the
  brightest ones are slightly resolved.
- **Extended sources.** FRI (edge-darkened twin jets from a bright core), FRII
  (edge-brightened lobes with hotspots, faint core) and bent tails (FRI jets swept back
  along a parabola), built from Gaussian components. Largest angular sizes are uniform in
  30-240 arcsec; total fluxes log-uniform in 1-300 mJy.
- **Beam.** Every component is convolved analytically with the Gaussian restoring beam
  (covariances add), and brightness is in Jy/beam: a component of flux ``S`` and convolved
  axes ``a, b`` peaks at ``S * (bmaj * bmin) / (a * b)``.
- **Noise.** White noise convolved with a Gaussian of the beam's sigma / sqrt(2), so its
  autocorrelation is the beam, rescaled to the requested rms.
- **Primary beam** (optional). A Gaussian attenuation of FWHM 68 arcmin at 1.28 GHz
  (MeerKAT L band, Mauch et al. 2020), scaling as 1/frequency, applied to the sky before the
  noise is added (the image is not primary-beam corrected).
- **Artefacts** (optional). Around each source brighter than ``artefact_flux``: six
  radial spokes and a ripple, decaying away from the source, at 0.3 % of its flux, as
  direction-dependent calibration errors leave.

The image carries a 4-D header (RA---SIN, DEC--SIN, FREQ, STOKES) as MeerKAT pipelines
write it.
"""

import astropy.units as u
import numpy as np
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.table import QTable
from astropy.wcs import WCS
from scipy.ndimage import gaussian_filter

from .._provenance import provenance_meta

__all__ = ["EXAMPLE_SEED", "EXAMPLE_SHAPE", "make_radio_sky"]

#: The sky of README's main job (``radiofm annotate --example``: with artefacts). Its seed
#: is held out of every simulated training set, so the example measures a sky no head saw.
EXAMPLE_SHAPE = (2048, 2048)
EXAMPLE_SEED = 2026

FWHM_TO_SIGMA = 1.0 / np.sqrt(8.0 * np.log(2.0))
MORPH_CLASSES = ("compact", "FRI", "FRII", "bent")
COUNT_SLOPE = 1.9
DENSITY_ABOVE_1MJY = 90.0  # per deg², 1.4 GHz
SPECTRAL_INDEX = -0.7
PRIMARY_BEAM_FWHM_AT_1280MHZ = 68.0 * u.arcmin


def make_radio_sky(
    shape=(4096, 4096), *, pixel_scale=1.1 * u.arcsec, beam=7.5 * u.arcsec,
    frequency=1.28 * u.GHz, noise=4e-6, center=None, min_flux=None, max_flux=1.0,
    extended_density=10.0, primary_beam=False, artefacts=False, artefact_flux=0.05,
    artefact_level=0.003, seed=0,
):
    """Simulate a MeerKAT-like continuum image and its truth catalogue.

    Parameters
    ----------
    shape : tuple of int
        (ny, nx) in pixels.
    pixel_scale : `~astropy.units.Quantity`
        Pixel size (MGCLS: 1.1 arcsec).
    beam : `~astropy.units.Quantity`
        FWHM of the circular restoring beam (MGCLS: 7.5 arcsec).
    frequency : `~astropy.units.Quantity`
        Observing frequency (MeerKAT L band: 1.28 GHz).
    noise : float
        rms of the image noise in Jy/beam.
    center : `~astropy.coordinates.SkyCoord`, optional
        Phase centre; default RA 150 deg, Dec -30 deg.
    min_flux, max_flux : float
        Flux range of compact sources at 1.4 GHz, in Jy (default minimum: ``noise``).
    extended_density : float
        FRI, FRII and bent sources per square degree (in equal shares).
    primary_beam : bool
        Attenuate the sky by MeerKAT's primary beam.
    artefacts : bool
        Add calibration-error spokes around bright sources.
    artefact_flux : float
        Flux (Jy) above which a source gets artefacts.
    artefact_level : float
        Peak of the artefact pattern as a fraction of the source's flux.
    seed : int
        Seed of the random generators (sources, artefacts and noise draw from independent
        streams); the same seed gives the same sky.

    Returns
    -------
    hdu : `~astropy.io.fits.PrimaryHDU`
        float32 data of shape (1, 1, ny, nx) in Jy/beam with a 4-D header.
    truth : `~astropy.table.QTable`
        One row per source: ``source_id``, ``sky_center``, ``x_center``, ``y_center``,
        ``flux`` (intrinsic, Jy at ``frequency``), ``apparent_flux`` (after the primary
        beam), ``peak`` (Jy/beam, before noise), ``major``/``minor`` (intrinsic FWHM),
        ``pa``, ``las`` (largest angular size), ``morph_class`` and ``s_code`` ('S' for
        compact sources, 'M' for extended ones, as pyBDSF would code them).

    Examples
    --------
    >>> from radiofm.simulate import make_radio_sky
    >>> hdu, truth = make_radio_sky((512, 512), seed=1)
    >>> hdu.data.shape, hdu.header["CTYPE3"], hdu.header["BUNIT"]
    ((1, 1, 512, 512), 'FREQ', 'JY/BEAM')
    >>> sorted(set(truth["morph_class"]))  # doctest: +SKIP
    ['FRI', 'compact']
    """
    ny, nx = (int(n) for n in shape)
    if ny < 8 or nx < 8:
        raise ValueError(f"shape must be at least 8x8 pixels, got {shape}")
    if noise <= 0:
        raise ValueError(f"noise must be a positive rms in Jy/beam, got {noise}")
    # Independent streams: switching artefacts on does not change the sources or the noise.
    rng, artefact_rng, noise_rng = (
        np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(3)
    )
    center = SkyCoord(150.0 * u.deg, -30.0 * u.deg) if center is None else center
    wcs = _sky_wcs(nx, ny, pixel_scale, center)
    pixel = pixel_scale.to_value(u.arcsec)
    beam_px = beam.to_value(u.arcsec) / pixel
    area_deg2 = nx * ny * (pixel / 3600.0) ** 2

    components, truth = [], []
    min_flux = noise if min_flux is None else min_flux
    _add_compact_sources(rng, components, truth, nx, ny, area_deg2, min_flux, max_flux, pixel,
                         frequency)
    n_extended = rng.poisson(extended_density * area_deg2)
    for _ in range(n_extended):
        _add_extended_source(rng, components, truth, nx, ny, pixel, frequency)

    sky = np.zeros((ny, nx), dtype=np.float32)
    attenuation = _primary_beam(nx, ny, pixel, frequency) if primary_beam else None
    for x, y, flux, major, minor, pa, _ in components:
        gain = 1.0 if attenuation is None else attenuation(x, y)
        _render_gaussian(sky, x, y, flux * gain, major, minor, pa, beam_px)
    if artefacts:
        for row in truth:
            if row["flux"] >= artefact_flux:
                gain = 1.0 if attenuation is None else attenuation(row["x"], row["y"])
                _render_artefact(sky, row["x"], row["y"], row["flux"] * gain * artefact_level,
                                 beam_px, artefact_rng)
    sky += _correlated_noise(noise_rng, (ny, nx), beam_px, noise)

    header = _header(wcs, beam, frequency, noise, seed)
    table = _truth_table(truth, components, wcs, attenuation, beam_px)
    table.meta.update(provenance_meta(SIMSEED=seed, SIMNOISE=noise))
    return fits.PrimaryHDU(sky[np.newaxis, np.newaxis], header=header), table


def _sky_wcs(nx, ny, pixel_scale, center):
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---SIN", "DEC--SIN"]
    wcs.wcs.crval = [center.icrs.ra.deg, center.icrs.dec.deg]
    wcs.wcs.crpix = [nx / 2 + 1, ny / 2 + 1]
    step = pixel_scale.to_value(u.deg)
    wcs.wcs.cdelt = [-step, step]
    wcs.wcs.cunit = ["deg", "deg"]
    wcs.wcs.radesys = "ICRS"
    return wcs


def _add_compact_sources(rng, components, truth, nx, ny, area_deg2, min_flux, max_flux, pixel,
                         frequency):
    """Power-law counts: N(>S) = 90 deg^-2 (S / 1 mJy)^(1 - slope), S at 1.4 GHz."""
    g = COUNT_SLOPE - 1.0
    expected = DENSITY_ABOVE_1MJY * area_deg2 * (
        (min_flux / 1e-3) ** -g - (max_flux / 1e-3) ** -g
    )
    n = rng.poisson(expected)
    u01 = rng.random(n)
    flux_14 = (min_flux**-g - u01 * (min_flux**-g - max_flux**-g)) ** (-1.0 / g)
    flux = flux_14 * (frequency.to_value(u.GHz) / 1.4) ** SPECTRAL_INDEX
    xs = rng.uniform(-0.5, nx - 0.5, n)
    ys = rng.uniform(-0.5, ny - 0.5, n)
    sizes = rng.uniform(0.0, 2.0, n) / pixel
    pas = rng.uniform(0.0, np.pi, n)
    for x, y, s, size, pa in zip(xs, ys, flux, sizes, pas, strict=True):
        source_id = len(truth)
        truth.append({"x": x, "y": y, "flux": s, "major": size, "minor": size / 2, "pa": pa,
                      "las": size, "morph_class": "compact"})
        components.append((x, y, s, size, size / 2, pa, source_id))


def _add_extended_source(rng, components, truth, nx, ny, pixel, frequency):
    morph = MORPH_CLASSES[1 + rng.integers(3)]
    las = rng.uniform(30.0, 240.0) / pixel
    flux = 10 ** rng.uniform(-3.0, np.log10(0.3))
    flux *= (frequency.to_value(u.GHz) / 1.4) ** SPECTRAL_INDEX
    margin = las / 2
    x0 = rng.uniform(margin, max(margin + 1, nx - margin))
    y0 = rng.uniform(margin, max(margin + 1, ny - margin))
    pa = rng.uniform(0.0, np.pi)
    source_id = len(truth)
    parts = _morphology_components(rng, morph, las, pa)
    weights = np.array([w for _, _, w, _, _ in parts])
    for (dx, dy, _, major, minor), share in zip(parts, weights / weights.sum(), strict=True):
        components.append((x0 + dx, y0 + dy, flux * share, major, minor, pa, source_id))
    truth.append({"x": x0, "y": y0, "flux": flux, "major": las, "minor": las / 4, "pa": pa,
                  "las": las, "morph_class": morph})


def _morphology_components(rng, morph, las, pa):
    """Gaussian components (dx, dy, weight, major_px, minor_px) of one extended source.

    Offsets are along the jet axis at position angle ``pa`` (east of north; +x is west).
    """
    axis = np.array([-np.sin(pa), np.cos(pa)])
    normal = np.array([np.cos(pa), np.sin(pa)])
    half = las / 2
    parts = []
    if morph == "FRII":
        parts.append((0.0, 0.0, 0.05, 0.0, 0.0))  # faint core
        for side in (-1, 1):
            lobe = side * axis * half * 0.7
            parts.append((*lobe, 0.45, half * 0.6, half * 0.3))
            hotspot = side * axis * half * 0.95
            parts.append((*hotspot, 0.25, 0.0, 0.0))
        return parts
    parts.append((0.0, 0.0, 0.3, 0.0, 0.0))  # bright core
    bend = rng.uniform(0.3, 0.8) * half if morph == "bent" else 0.0
    for side in (-1, 1):
        for t in np.linspace(0.1, 1.0, 8):
            along = side * t * half
            offset = along * axis + bend * t**2 * normal
            weight = (1.0 - 0.8 * t) / 8  # edge-darkened: jets fade outwards
            width = half * (0.05 + 0.15 * t)
            parts.append((*offset, weight, width, width * 0.6))
    return parts


def _render_gaussian(sky, x, y, flux, major, minor, pa, beam_px):
    """Add a Gaussian of total ``flux`` (Jy), intrinsic FWHM axes in pixels, beam-convolved."""
    sig_b = beam_px * FWHM_TO_SIGMA
    sa = np.hypot(major * FWHM_TO_SIGMA, sig_b)
    sb = np.hypot(minor * FWHM_TO_SIGMA, sig_b)
    peak = flux * sig_b**2 / (sa * sb)  # Jy/beam
    half = int(np.ceil(4 * sa))
    x0, x1 = max(int(x) - half, 0), min(int(x) + half + 1, sky.shape[1])
    y0, y1 = max(int(y) - half, 0), min(int(y) + half + 1, sky.shape[0])
    if x0 >= x1 or y0 >= y1:
        return
    dx = np.arange(x0, x1) - x
    dy = (np.arange(y0, y1) - y)[:, np.newaxis]
    # major axis along (-sin pa, cos pa)
    u_ = -dx * np.sin(pa) + dy * np.cos(pa)
    v_ = dx * np.cos(pa) + dy * np.sin(pa)
    sky[y0:y1, x0:x1] += (peak * np.exp(-0.5 * ((u_ / sa) ** 2 + (v_ / sb) ** 2))).astype(
        np.float32
    )


def _render_artefact(sky, x, y, amplitude, beam_px, rng):
    """Six radial spokes with a ripple, decaying over ~30 beams, peak ``amplitude``."""
    half = int(30 * beam_px)
    x0, x1 = max(int(x) - half, 0), min(int(x) + half + 1, sky.shape[1])
    y0, y1 = max(int(y) - half, 0), min(int(y) + half + 1, sky.shape[0])
    dx = np.arange(x0, x1) - x
    dy = (np.arange(y0, y1) - y)[:, np.newaxis]
    r = np.hypot(dx, dy)
    theta = np.arctan2(dy, dx) + rng.uniform(0, np.pi)
    spokes = np.cos(3 * theta) ** 8 * np.cos(2 * np.pi * r / (3 * beam_px))
    envelope = np.exp(-r / (10 * beam_px)) * (r > 2 * beam_px)
    sky[y0:y1, x0:x1] += (amplitude * spokes * envelope).astype(np.float32)


def _correlated_noise(rng, shape, beam_px, rms):
    white = rng.standard_normal(shape, dtype=np.float32)
    smooth = gaussian_filter(white, beam_px * FWHM_TO_SIGMA / np.sqrt(2.0), mode="wrap")
    smooth *= np.float32(rms / smooth.std())
    return smooth


def _primary_beam(nx, ny, pixel, frequency):
    fwhm_px = (
        PRIMARY_BEAM_FWHM_AT_1280MHZ.to_value(u.arcsec) / pixel
        * (1.28 / frequency.to_value(u.GHz))
    )
    sigma = fwhm_px * FWHM_TO_SIGMA
    cx, cy = nx / 2, ny / 2

    def attenuation(x, y):
        return float(np.exp(-0.5 * ((x - cx) ** 2 + (y - cy) ** 2) / sigma**2))

    return attenuation


def _header(wcs, beam, frequency, noise, seed):
    header = wcs.to_header()
    header["CTYPE3"], header["CRVAL3"], header["CDELT3"] = "FREQ", frequency.to_value(u.Hz), 8.56e8
    header["CRPIX3"], header["CUNIT3"] = 1.0, "Hz"
    header["CTYPE4"], header["CRVAL4"], header["CDELT4"], header["CRPIX4"] = "STOKES", 1.0, 1.0, 1.0
    header["BMAJ"] = header["BMIN"] = beam.to_value(u.deg)
    header["BPA"] = 0.0
    header["BUNIT"] = "JY/BEAM"
    header["TELESCOP"] = "MeerKAT"
    header["OBJECT"] = "radiofm simulated sky"
    header["RESTFRQ"] = frequency.to_value(u.Hz)
    header["SIMNOISE"] = (noise, "simulated noise rms, Jy/beam")
    header["SIMSEED"] = (seed, "radiofm.simulate seed")
    return header


def _truth_table(truth, components, wcs, attenuation, beam_px):
    x = np.array([row["x"] for row in truth])
    y = np.array([row["y"] for row in truth])
    flux = np.array([row["flux"] for row in truth])
    gain = np.ones_like(flux) if attenuation is None else np.array(
        [attenuation(a, b) for a, b in zip(x, y, strict=True)]
    )
    scale = wcs.proj_plane_pixel_scales()[0].to_value(u.arcsec)
    sig_b = beam_px * FWHM_TO_SIGMA
    peak = np.zeros_like(flux)
    for _, _, s, major, minor, _, source_id in components:
        sa = np.hypot(major * FWHM_TO_SIGMA, sig_b)
        sb = np.hypot(minor * FWHM_TO_SIGMA, sig_b)
        peak[source_id] = max(peak[source_id], s * sig_b**2 / (sa * sb) * gain[source_id])
    table = QTable()
    table["source_id"] = np.arange(len(truth))
    table["sky_center"] = wcs.pixel_to_world(x, y)
    table["x_center"] = x
    table["y_center"] = y
    table["flux"] = flux * u.Jy
    table["apparent_flux"] = flux * gain * u.Jy
    table["peak"] = peak * u.Jy / u.beam
    table["major"] = np.array([row["major"] for row in truth]) * scale * u.arcsec
    table["minor"] = np.array([row["minor"] for row in truth]) * scale * u.arcsec
    table["pa"] = np.degrees([row["pa"] for row in truth]) * u.deg
    table["las"] = np.array([row["las"] for row in truth]) * scale * u.arcsec
    table["morph_class"] = [row["morph_class"] for row in truth]
    table["s_code"] = ["S" if row["morph_class"] == "compact" else "M" for row in truth]
    return table

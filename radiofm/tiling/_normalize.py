"""The one intensity normalisation shared by training and inference.

Both methods are ``f((x - offset) / scale)`` with parameters fitted once per parent image:

``"percentile"``
    ``offset`` and ``offset + scale`` are the ``lower`` and ``upper`` percentiles of the
    image's finite pixels (2 and 98 by default, the stretch of the source work), and ``f``
    clips to [0, 1]. When both percentiles are equal (cutouts whose background was set to
    one value, such as MiraBest's), the maximum replaces the upper one.
``"snr"``
    ``offset`` is the robust background (sigma-clipped median) and ``scale`` the robust
    noise (sigma-clipped MAD standard deviation) times ``softening``; ``f`` is arcsinh, so
    the output is a compressed signal-to-noise ratio: linear near the noise, logarithmic
    for bright sources.

    *Boxes.* With ``box_pixels`` set, background and noise are measured in each box of
    ``box_pixels`` x ``box_pixels`` pixels (sigma-clipped, as above), and the image's are
    the medians over its boxes. Diffuse emission (a cluster's halo or relic, a Galactic
    cloud) that fills a minority of the boxes then leaves them alone, where in one estimate
    over all pixels its faint wings raise both: a halo of 4.6' FWHM on a 28' simulated
    MeerKAT field raised the whole-image background by 0.08 sigma and the noise by 4 %,
    which moves every tile's 5-sigma level; in boxes of 128 pixels by 0.02 sigma and
    0.6 % (``scripts/stretch_in_boxes.py diffuse``). On the field without the halo the two
    agree to 0.2 % in the noise. A median over few boxes scatters more: on 84 of FIRST's
    300-pixel fields (four boxes of 128) the noise in boxes was 0.95 to 1.18 times the
    whole field's (``scripts/stretch_in_boxes.py first``). Clipped stamps (next) are not
    measured in boxes.

    *Clipped stamps.* Many published stamps (MiraBest, RadioGalaxyDataset, display cutouts)
    had every pixel below ``clip_sigma`` times the noise set to one floor value, so no noise
    is left to measure. A stamp with more than ``floor_fraction`` of its finite pixels at its
    minimum is treated as clipped: ``offset`` is the floor (zero flux, as MiraBest's maker
    kept it: pixels are ``flux * gain``, floored at 3 sigma), and the noise is the given
    ``noise`` option, or else the clip level over ``clip_sigma``, the clip level being the
    smallest value above the floor (plus half a step for integer-valued stamps, which were
    truncated to integers). A 5-sigma source then maps to ``arcsinh(5 / softening)`` in a raw
    field, in its clipped copy and in a clipped uint8 stamp alike. With ``floor="clip"`` the
    floor is the clip level itself (stamps rescaled from the clip level up, as
    RadioGalaxyDataset's look): ``offset`` is the floor minus ``clip_sigma`` times the noise,
    which must then be given. The default ``floor_fraction`` of 0.5 changes no stamp that
    the method fitted before: with more than half the pixels on one value the noise estimate
    (a median absolute deviation) is 0 and the fit refused the stamp.

Blank (NaN) pixels become 0 in both methods.

A `NormalizationSpec` says how to normalise (the method and every fit option); its ``fit``
on a parent image gives the fitted `Normalization`. The spec is what training configs and
model metadata store (`NormalizationSpec.to_dict` / `NormalizationSpec.from_value`), so a
model is always fed with the options it was trained with, not just its method name.
"""

from dataclasses import asdict, dataclass, fields

import numpy as np
from astropy.stats import sigma_clipped_stats

from ..image import read_image

__all__ = ["FLOORS", "METHODS", "Normalization", "NormalizationSpec", "fit_normalization",
           "normalize"]

#: The normalisation methods (see the module documentation).
METHODS = ("percentile", "snr")

#: What the floor value of a clipped stamp is (see the module documentation).
FLOORS = ("zero", "clip")


@dataclass(frozen=True)
class NormalizationSpec:
    """How to normalise: the method and every option of its fit on a parent image.

    Parameters
    ----------
    method : {"percentile", "snr"}
        See the module documentation.
    lower, upper : float
        Percentiles of the "percentile" stretch.
    softening : float
        For "snr": the arcsinh turns from linear to logarithmic at ``softening`` times
        the noise.
    max_pixels : int
        Images larger than this are sampled on evenly spaced whole rows, so the fit reads
        about ``max_pixels`` pixels whatever the image size.
    clip_sigma : float
        For "snr" on clipped stamps: the level, in noise sigma, below which the stamp's
        maker set pixels to the floor (3 for MiraBest and RadioGalaxyDataset).
    floor_fraction : float
        For "snr": a stamp with more than this fraction of its finite pixels at its minimum
        value is a clipped stamp (in [0, 1); close to 1 turns the fallback off).
    noise : float or None
        For "snr" on clipped stamps: the noise sigma in the stamp's unit, when the data set
        says it; None estimates it from the clip level.
    floor : {"zero", "clip"}
        For "snr" on clipped stamps: whether the floor value is zero flux ("zero", MiraBest)
        or the clip level ("clip"; needs ``noise``).
    box_pixels : int or None
        For "snr": measure background and noise in boxes of this many pixels a side and take
        the medians over the boxes (see the module documentation); None measures them once
        over all the pixels. A box needs half its pixels finite and some contrast to count;
        an image without such a box is measured whole.

    Examples
    --------
    >>> import numpy as np
    >>> from radiofm.tiling import NormalizationSpec
    >>> spec = NormalizationSpec.from_value({"method": "snr", "softening": 2.0})
    >>> spec.to_dict()["softening"]
    2.0
    >>> noise = np.random.default_rng(0).normal(0.0, 1e-5, (256, 256))
    >>> round(spec.fit(noise).scale / 2e-5, 1)
    1.0
    """

    method: str
    lower: float = 2.0
    upper: float = 98.0
    softening: float = 1.0
    max_pixels: int = 4_000_000
    clip_sigma: float = 3.0
    floor_fraction: float = 0.5
    noise: float | None = None
    floor: str = "zero"
    box_pixels: int | None = None

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"unknown normalisation method {self.method!r}; use one of {METHODS}")
        if not 0 <= self.lower < self.upper <= 100:
            raise ValueError(f"need 0 <= lower < upper <= 100, got lower={self.lower}, "
                             f"upper={self.upper}")
        if not self.softening > 0:
            raise ValueError(f"softening must be positive, got {self.softening}")
        if not (isinstance(self.max_pixels, int | np.integer) and self.max_pixels >= 1):
            raise ValueError(f"max_pixels must be a positive integer, got {self.max_pixels!r}")
        if not self.clip_sigma > 0:
            raise ValueError(f"clip_sigma must be positive, got {self.clip_sigma}")
        if not 0 <= self.floor_fraction < 1:
            raise ValueError(f"floor_fraction must be in [0, 1), got {self.floor_fraction}")
        if self.noise is not None and not (np.isfinite(self.noise) and self.noise > 0):
            raise ValueError(f"noise must be a positive number or None, got {self.noise!r}")
        if self.floor not in FLOORS:
            raise ValueError(f"floor must be one of {FLOORS}, got {self.floor!r}")
        if self.box_pixels is not None and not (
                isinstance(self.box_pixels, int | np.integer) and self.box_pixels >= 8):
            raise ValueError(f"box_pixels must be an integer >= 8 or None, got "
                             f"{self.box_pixels!r}")
        if self.floor == "clip" and self.noise is None:
            raise ValueError("floor='clip' puts the clip level at the floor, which leaves no "
                             "noise to measure: give the data set's noise as noise=")

    @classmethod
    def from_value(cls, value):
        """A spec from its stored forms: a spec, a method name, or ``{"method": ..., options}``.

        Parameters
        ----------
        value : `NormalizationSpec`, str or dict
            A method name takes the default options.

        Returns
        -------
        spec : `NormalizationSpec`

        Raises
        ------
        ValueError
            An unknown method or option, or an option value the fit cannot use.
        """
        if isinstance(value, cls):
            return value
        if isinstance(value, str):
            return cls(value)
        if isinstance(value, dict) and "method" in value:
            known = {f.name for f in fields(cls)}
            unknown = set(value) - known
            if unknown:
                raise ValueError(f"unknown normalisation options {sorted(unknown)}; known: "
                                 f"{sorted(known)}")
            return cls(**value)
        raise ValueError(f"a normalisation is a method name {METHODS} or a dict with a "
                         f"'method' and its options; got {value!r}")

    def to_dict(self):
        """Every option, JSON-ready (for training configs and model metadata)."""
        return asdict(self)

    def fit(self, image):
        """Fit this normalisation on one parent image.

        Parameters
        ----------
        image : array or anything `~radiofm.image.read_image` accepts
            The parent image (or a bare 2-D array of pixels).

        Returns
        -------
        normalization : `Normalization`

        Raises
        ------
        ValueError
            The image has no finite pixel, or no contrast.
        """
        if not isinstance(image, np.ndarray):
            image = read_image(image)  # opened once for every read of the fit
        values = _sample_finite(image, self.max_pixels)
        if values.size == 0:
            raise ValueError("image has no finite pixel to fit a normalisation on")
        if self.method == "percentile":
            low, high = np.percentile(values, [self.lower, self.upper])
            if high <= low:  # mostly one background value (display cutouts): stretch to the peak
                high = values.max()
            scale = high - low
            offset = low
        else:
            offset, noise = self._background_noise(values, image)
            scale = self.softening * noise
        if not scale > 0:
            raise ValueError(
                f"image is constant over its fitted pixels (scale {scale}); a normalisation "
                "needs some contrast"
            )
        return Normalization(self.method, float(offset), float(scale))

    def is_clipped(self, values):
        """Whether finite pixel ``values`` are a clipped stamp (see ``floor_fraction``)."""
        values = np.asarray(values)
        return values.size > 0 and np.mean(values == values.min()) > self.floor_fraction

    def _background_noise(self, values, image):
        """(background, noise) of the "snr" method, in boxes where asked, with the
        clipped-stamp fallback."""
        if not self.is_clipped(values):
            if self.box_pixels is not None:
                boxes = _box_statistics(image, self.box_pixels, self.max_pixels)
                if boxes:
                    offset, noise = np.median(boxes, axis=0)
                    return offset, noise
            offset, _, noise = sigma_clipped_stats(values, sigma=3.0, maxiters=5,
                                                   stdfunc="mad_std")
            return offset, noise
        floor = float(values.min())
        noise = self.noise
        if noise is None:
            above = values[values > floor]
            if above.size == 0:
                raise ValueError("a stamp with every pixel at its floor has no signal and no "
                                 "noise to normalise by")
            level = float(above.min()) - floor
            if np.all(above == np.round(above)):  # truncated to integers: mid-step
                level += 0.5
            noise = level / self.clip_sigma
        offset = floor if self.floor == "zero" else floor - self.clip_sigma * noise
        return offset, noise


@dataclass(frozen=True)
class Normalization:
    """Fitted parameters of `normalize`: ``f((x - offset) / scale)``.

    Parameters
    ----------
    method : {"percentile", "snr"}
        Which ``f``: clip to [0, 1] or arcsinh.
    offset, scale : float
        Subtracted and divided out before ``f``. ``scale`` must be positive.

    Examples
    --------
    >>> import numpy as np
    >>> from radiofm.tiling import Normalization
    >>> stretch = Normalization("percentile", offset=0.0, scale=2.0)
    >>> stretch(np.array([-1.0, 1.0, 3.0, np.nan]))
    array([0. , 0.5, 1. , 0. ], dtype=float32)
    """

    method: str
    offset: float
    scale: float

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"unknown normalisation method {self.method!r}; use one of {METHODS}")
        if not (np.isfinite(self.scale) and self.scale > 0 and np.isfinite(self.offset)):
            raise ValueError(
                f"normalisation needs a finite offset and a positive scale, got "
                f"offset={self.offset}, scale={self.scale}"
            )

    def __call__(self, array, *, out=None):
        return normalize(array, self, out=out)

    def to_dict(self):
        """JSON-ready parameters, e.g. for model metadata."""
        return {key: (float(v) if key != "method" else v) for key, v in asdict(self).items()}


def normalize(array, normalization, *, out=None, linear=False):
    """Apply a fitted `Normalization` to an array of pixels.

    Parameters
    ----------
    array : array-like
        Pixel values in the image's unit; NaN marks blank pixels.
    normalization : `Normalization`
        Parameters from `fit_normalization` on the parent image.
    out : `~numpy.ndarray`, optional
        float32 array of the same shape to write into (may be ``array`` itself).
    linear : bool
        Stop before ``f``: return ``(x - offset) / scale`` (blank pixels 0). Training
        stores "snr" tiles so, to re-clip and re-noise them before the arcsinh.

    Returns
    -------
    normalized : `~numpy.ndarray`
        float32; in [0, 1] for "percentile", arcsinh(S/N / softening) for "snr"; blank
        pixels are 0.
    """
    # The first ufunc also casts (and byte-swaps) the input; every later pass is in place on a
    # block small enough to stay in cache when called per tile.
    out = np.subtract(array, np.float32(normalization.offset), out=out, dtype=np.float32)
    out *= np.float32(1.0 / normalization.scale)
    if linear:
        pass
    elif normalization.method == "percentile":
        np.clip(out, np.float32(0.0), np.float32(1.0), out=out)
    else:
        _arcsinh(out)
    # A sum is far cheaper than isnan over the block; it is NaN only when a NaN (or, for
    # "snr", both infinities) is present, and only then are blank pixels looked for.
    if np.isnan(out.sum(dtype=np.float32)):
        np.copyto(out, np.float32(0.0), where=np.isnan(out))
    return out


def _arcsinh(values):
    """In-place arcsinh as sign(x) * log(|x| + sqrt(x**2 + 1)).

    Twice as fast as `numpy.arcsinh` on float32 (log and sqrt are vectorised); agrees with
    it to float32 rounding (checked in the tests).
    """
    magnitude = np.abs(values)
    root = np.square(magnitude)
    root += np.float32(1.0)
    np.sqrt(root, out=root)
    root += magnitude
    np.log(root, out=root)
    np.copysign(root, values, out=values)
    return values


def fit_normalization(image, method="percentile", **options):
    """Fit a normalisation on one parent image (shorthand for `NormalizationSpec.fit`).

    Parameters
    ----------
    image : array or anything `~radiofm.image.read_image` accepts
        The parent image (or a bare 2-D array of pixels).
    method : {"percentile", "snr"} or `NormalizationSpec`
        The method (see the module documentation), or a whole spec.
    **options
        The other fields of `NormalizationSpec` (only with a method name).

    Returns
    -------
    normalization : `Normalization`

    Examples
    --------
    >>> import numpy as np
    >>> from radiofm.tiling import fit_normalization
    >>> rng = np.random.default_rng(0)
    >>> noise = rng.normal(0.0, 1e-5, (256, 256))
    >>> stretch = fit_normalization(noise, "snr")
    >>> round(stretch.scale / 1e-5, 1)
    1.0
    """
    if isinstance(method, NormalizationSpec):
        if options:
            raise TypeError("pass options inside the NormalizationSpec, not beside it")
        return method.fit(image)
    return NormalizationSpec(method, **options).fit(image)


def _box_statistics(image, box, max_pixels):
    """Sigma-clipped (median, MAD standard deviation) of each ``box`` x ``box`` block of the
    image (an array, or an image `read_image` opened) that has at least half its pixels
    finite and a positive noise, on the strips `_strip_starts` picks."""
    if isinstance(image, np.ndarray):
        array = np.asarray(image, dtype=np.float32).squeeze()
        if array.ndim != 2:
            raise ValueError(f"measuring in boxes needs a 2-D image, got shape {image.shape}")

        def strip(start):
            return array[start:start + box]
    else:
        array = None

        def strip(start):
            return image.read_region(slice(start, start + box), slice(None))
    ny, nx = image.shape if array is None else array.shape
    statistics = []
    for start in _strip_starts(ny, nx, box, max_pixels):
        rows = strip(start)
        for x0 in range(0, nx, box):
            block = rows[:, x0:x0 + box]
            finite = block[np.isfinite(block)]
            if finite.size >= box * box / 2:
                background, _, noise = sigma_clipped_stats(finite, sigma=3.0, maxiters=5,
                                                           stdfunc="mad_std")
                if noise > 0:
                    statistics.append((background, noise))
    return statistics


def _strip_starts(ny, nx, height, max_pixels):
    """First rows of the strips of ``height`` rows a fit reads: every strip, or evenly spaced
    strips holding about ``max_pixels`` pixels when the image holds more."""
    starts = np.arange(0, ny, height)
    if len(starts) * height * nx > max_pixels:
        keep = np.linspace(0, len(starts) - 1, max(1, max_pixels // (height * nx)))
        starts = starts[np.unique(keep.astype(int))]
    return starts


def _sample_finite(image, max_pixels):
    """Finite pixels of the image (an array, or an image `read_image` opened), or of evenly
    spaced rows of it when it is large."""
    if isinstance(image, np.ndarray):
        values = np.asarray(image, dtype=np.float32)
    else:
        ny, nx = image.shape
        if ny * nx <= max_pixels:
            values = image.read_region(slice(None), slice(None))
        else:
            values = np.concatenate([image.read_region(slice(row, row + 1), slice(None))
                                     for row in _strip_starts(ny, nx, 1, max_pixels)])
    values = values.ravel()
    return values[np.isfinite(values)]

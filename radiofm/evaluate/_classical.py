"""Classical, non-learned baselines: an island counter and shape measurements.

Both are "embedders" of the harness that measure the raw pixels of each item (at native
resolution, before any stretch), so that every learned feature set stands beside a figure
that needs no training data beyond its probe:

- `IslandCounter`: islands of connected pixels above 3 sigma that hold a peak of at least
  5 sigma, one feature per tile; the count probe (ridge on one feature) is then a
  2-parameter fit on the training tiles.
- `ShapeMeasurer`: moments, sizes at several levels, flux ratios, island counts and the
  Fanaroff-Riley ratio of each stamp; a logistic probe on them is the morphology baseline.
"""

import numpy as np
from scipy import ndimage

__all__ = ["IslandCounter", "ShapeMeasurer", "count_islands", "measure_shapes"]

ISLAND_SIGMA = 3.0
PEAK_SIGMA = 5.0
MIN_ISLAND_PIXELS = 3
_EIGHT = np.ones((3, 3), dtype=bool)  # 8-connected islands


def _background(stamp):
    """Robust (median, noise) of a stamp's finite pixels; noise 0 when most pixels share one
    value (a background clipped to zero)."""
    values = stamp[np.isfinite(stamp)]
    if values.size == 0:
        return 0.0, 0.0
    for _ in range(5):  # 3-sigma clipping on the MAD scale
        median = np.median(values)
        noise = 1.4826 * np.median(np.abs(values - median))
        if noise == 0:
            break
        kept = values[np.abs(values - median) < 3 * noise]
        if kept.size == values.size or kept.size < 10:
            break
        values = kept
    return float(median), float(noise)


def count_islands(stamps, *, island_sigma=ISLAND_SIGMA, peak_sigma=PEAK_SIGMA,
                  min_pixels=MIN_ISLAND_PIXELS):
    """Islands above ``island_sigma`` holding a peak of at least ``peak_sigma`` per stamp.

    The background and noise are the sigma-clipped median and MAD of each stamp.

    Parameters
    ----------
    stamps : `~numpy.ndarray`
        (N, H, W) raw pixels (any unit; NaN = blank).
    island_sigma, peak_sigma : float
        Island and peak thresholds in units of the noise.
    min_pixels : int
        Smaller islands are ignored.

    Returns
    -------
    counts : `~numpy.ndarray`
        (N,) float.

    Examples
    --------
    >>> import numpy as np
    >>> from radiofm.evaluate import count_islands
    >>> sky = np.random.default_rng(0).normal(0.0, 1.0, (1, 64, 64))
    >>> sky[0, 10:13, 10:13] += 20.0
    >>> sky[0, 40:43, 50:53] += 20.0
    >>> count_islands(sky).tolist()
    [2.0]
    """
    counts = np.zeros(len(stamps))
    for k, stamp in enumerate(np.asarray(stamps, dtype=np.float32)):
        median, noise = _background(stamp)
        if noise <= 0:
            continue
        snr = np.where(np.isfinite(stamp), (stamp - median) / noise, 0.0)
        labels, n = ndimage.label(snr > island_sigma, structure=_EIGHT)
        if n == 0:
            continue
        index = np.arange(1, n + 1)
        peaks = ndimage.maximum(snr, labels, index)
        sizes = ndimage.sum_labels(np.ones_like(snr), labels, index)
        counts[k] = np.count_nonzero((peaks >= peak_sigma) & (sizes >= min_pixels))
    return counts


SHAPE_FEATURES = (
    "n_islands", "n_islands_10pc", "log_area", "log_area_10pc", "log_area_30pc",
    "log_area_50pc", "major", "minor", "axis_ratio", "brightest_island_share",
    "second_island_ratio", "fr_ratio", "peak_offset", "extent", "concentration_5",
    "concentration_15", "log_total",
)


def _shape(stamp):
    median, noise = _background(stamp)
    stamp = np.where(np.isfinite(stamp), stamp - median, 0.0)
    peak = stamp.max()
    out = np.zeros(len(SHAPE_FEATURES))
    if not peak > 0:
        return out
    # zero-background stamps (MiraBest, RadioGalaxyDataset) keep every non-zero pixel
    mask = stamp > (ISLAND_SIGMA * noise if noise > 0 else 0.0)
    if not mask.any():
        mask = stamp >= peak
    values = np.where(mask, stamp / peak, 0.0)
    labels, n = ndimage.label(mask, structure=_EIGHT)
    fluxes = np.sort(ndimage.sum_labels(values, labels, np.arange(1, n + 1)))[::-1]
    _, n10 = ndimage.label(values > 0.1, structure=_EIGHT)
    total = values.sum()
    y, x = np.indices(values.shape)
    cy, cx = (values * y).sum() / total, (values * x).sum() / total
    dy, dx = y - cy, x - cx
    cov = np.array([[(values * dx * dx).sum(), (values * dx * dy).sum()],
                    [(values * dx * dy).sum(), (values * dy * dy).sum()]]) / total
    eigen, vectors = np.linalg.eigh(cov)
    major, minor = np.sqrt(np.maximum(eigen[::-1], 0.0))
    along = dx * vectors[0, 1] + dy * vectors[1, 1]  # position along the major axis
    radius = np.hypot(dx, dy)
    extent = (along[mask].max() - along[mask].min()) if mask.sum() > 1 else 0.0
    # Fanaroff-Riley ratio: separation of the brightest pixels either side of the centre
    # over the total extent (FRII, edge-brightened, near 1; FRI nearer 0)
    sides = [mask & (along < 0), mask & (along >= 0)]
    fr = 0.0
    if extent > 0 and all(side.any() for side in sides):
        brightest = [np.flatnonzero(side.ravel())[np.argmax(values.ravel()[side.ravel()])]
                     for side in sides]
        fr = abs(along.ravel()[brightest[1]] - along.ravel()[brightest[0]]) / extent
    py, px = np.unravel_index(np.argmax(values), values.shape)
    out[:] = [
        n, n10, np.log1p(mask.sum()), np.log1p((values > 0.1).sum()),
        np.log1p((values > 0.3).sum()), np.log1p((values > 0.5).sum()), major, minor,
        minor / major if major > 0 else 1.0, fluxes[0] / total if n else 1.0,
        fluxes[1] / fluxes[0] if n > 1 else 0.0, fr,
        np.hypot(py - cy, px - cx) / max(extent, 1.0), extent,
        values[radius <= 5].sum() / total, values[radius <= 15].sum() / total,
        np.log(total),
    ]
    return out


def measure_shapes(stamps):
    """Shape measurements of each stamp (`SHAPE_FEATURES`), on pixels over the background.

    Emission is every pixel above 3 sigma of the background, or every non-zero pixel of a
    stamp whose background was clipped to zero. Sizes are in pixels of the stamp, so
    compare stamps of one pixel scale.

    Parameters
    ----------
    stamps : `~numpy.ndarray`
        (N, H, W) raw pixels (NaN = blank).

    Returns
    -------
    features : `~numpy.ndarray`
        (N, len(SHAPE_FEATURES)) float32.

    Examples
    --------
    >>> import numpy as np
    >>> from radiofm.evaluate import measure_shapes
    >>> double = np.zeros((1, 32, 32))
    >>> double[0, 15:17, 4:6] = double[0, 15:17, 26:28] = 1.0
    >>> features = measure_shapes(double)
    >>> int(features[0, 0]), round(float(features[0, 11]), 2)  # two islands, FR ratio
    (2, 0.96)
    """
    return np.stack([_shape(stamp) for stamp in np.asarray(stamps, dtype=np.float64)]
                    ).astype(np.float32)


class _Classical:
    """A non-learned feature set: measures raw stamps, for the tasks it suits only."""

    pca = None
    input_size = None
    views = 1
    tasks = ()

    def applies(self, task):
        return task in self.tasks


class IslandCounter(_Classical):
    """Count baseline: islands above 3 sigma holding a 5-sigma peak (`count_islands`)."""

    name = "island counter"
    tasks = ("counts",)

    def measure(self, data):
        """(N, 1) island counts of a `TaskData`'s raw stamps."""
        return count_islands(data.stamps)[:, None]


class ShapeMeasurer(_Classical):
    """Morphology baseline: shape measurements of each raw stamp (`measure_shapes`)."""

    name = "shape measurements"
    tasks = ("frii", "morphology", "crosssample")

    def measure(self, data):
        """(N, D) shape measurements of a `TaskData`'s raw stamps."""
        return measure_shapes(data.stamps)

"""Descriptions and units of every column radiofm writes in tile and source tables."""

import astropy.units as u
import numpy as np

__all__ = ["COLUMN_DESCRIPTIONS", "describe_columns", "image_noise"]

DIMENSIONLESS = u.dimensionless_unscaled

#: name -> (unit or None for text/boolean/sky columns, description)
COLUMN_DESCRIPTIONS = {
    "tile_id": (DIMENSIONLESS, "tile number, row by row from the bottom-left corner"),
    "x_min": (u.pix, "first pixel column of the tile (zero-based)"),
    "y_min": (u.pix, "first pixel row of the tile (zero-based)"),
    "x_max": (u.pix, "pixel column just past the tile"),
    "y_max": (u.pix, "pixel row just past the tile"),
    "sky_center": (None, "sky position (ICRS) of the centre"),
    "valid_fraction": (DIMENSIONLESS, "share of the tile's pixels that are finite"),
    "embedding": (DIMENSIONLESS, "embedding of the model's backbone (see meta MODEL)"),
    "ood_score": (DIMENSIONLESS, "distance of the tile's embedding to the training tiles' "
                  "(root mean squared whitened PCA distance; about 1 for training tiles)"),
    "ood_flag": (None, "tile unlike the training tiles (embedding, noise level, beam, the "
                 "image's peaks per tile or the catalogue's crowding; see ood_reason): "
                 "n_compact_pred is masked"),
    "ood_reason": (None, "why the tile is flagged: embedding, noise, beam, peaks, crowding "
                   "(comma-separated; empty when in distribution)"),
    "input_noise": (DIMENSIONLESS, "robust noise (1.4826 MAD) of the normalised model input"),
    "n_compact": (u.ct, "compact sources of the catalogue in the tile"),
    "n_compact_pred": (u.ct, "compact-source count the model predicts for the tile (masked "
                       "where ood_flag)"),
    "n_compact_pred_err": (u.ct, "one-sigma scatter of the true count around "
                           "n_compact_pred: the square root of the count head's dispersion "
                           "(measured on held-out training tiles) times the prediction "
                           "(masked where ood_flag)"),
    "source_id": (DIMENSIONLESS, "source number in the catalogue"),
    "island_id": (DIMENSIONLESS, "island (connected emission) number"),
    "x_center": (u.pix, "pixel column of the source (zero-based)"),
    "y_center": (u.pix, "pixel row of the source (zero-based)"),
    "flux": (u.Jy, "integrated flux density"),
    "flux_err": (u.Jy, "error of the integrated flux density"),
    "peak": (u.Jy / u.beam, "peak surface brightness"),
    "major": (u.arcsec, "FWHM of the major axis as catalogued"),
    "minor": (u.arcsec, "FWHM of the minor axis as catalogued"),
    "pa": (u.deg, "position angle of the major axis, east of north"),
    "s_code": (None, "source code: S single Gaussian or isolated compact, M multiple, "
               "C shares its island"),
    "local_rms": (u.Jy / u.beam, "background rms where the source lies (the finder's "
                  "local noise; NaN when the catalogue gives none)"),
    "snr": (DIMENSIONLESS, "peak over local_rms, or over the image's robust rms where the "
            "catalogue gives no local rms"),
    "morph_class": (None, "morphology class; 'Compact' by measurement when the shape is "
                    "consistent with the beam, 'uncertain' when it cannot be judged (see "
                    "morph_flag), empty off the image"),
    "morph_prob": (DIMENSIONLESS, "calibrated class probabilities (classes in meta CLASSES); "
                   "one-hot for compact by measurement, NaN where no stamp was classified"),
    "morph_flag": (None, "how morph_class was decided: compact_by_measurement, classified, "
                   "faint, too_large, unlike_training, low_confidence, off_image"),
    "morph_ood_score": (DIMENSIONLESS, "distance of the source stamp's embedding to the "
                        "training stamps' (NaN where no stamp was run)"),
    "stamp_size": (u.arcsec, "side of the stamp the source was classified on (NaN where "
                   "none was cut)"),
}


def describe_columns(table, extra=None, *, units=False):
    """Give every column of a table a description and, with ``units``, numeric ones a unit.

    Parameters
    ----------
    table : `~astropy.table.Table`
        Changed in place. Columns already carrying a description keep it; a numeric
        column without a unit gets the listed one (dimensionless if unlisted).
    extra : dict, optional
        More ``name -> (unit, description)`` entries (e.g. ``n_compact_pred``, whose
        description the model's heads give).
    units : bool
        Also give numeric columns without a unit the listed one (dimensionless if
        unlisted). Do this on a plain `~astropy.table.Table` about to be written: in a
        QTable a unit turns a column into a Quantity (pixel indices then stop being
        integers).

    Returns
    -------
    table : `~astropy.table.Table`
        The same table.
    """
    known = {**COLUMN_DESCRIPTIONS, **(extra or {})}
    for name in table.colnames:
        column = table[name]
        unit, description = known.get(name, (DIMENSIONLESS, f"catalogue column {name}"))
        if not column.info.description or name in (extra or {}):
            column.info.description = description
        if not units:
            continue
        numeric = getattr(column, "dtype", np.dtype(object)).kind in "iuf"
        if numeric and not isinstance(column, u.Quantity) and getattr(column, "unit",
                                                                      None) is None:
            column.unit = unit if unit is not None else DIMENSIONLESS
    return table


def image_noise(image, *, max_pixels=4_000_000):
    """Robust rms of an image (sigma-clipped, from a decimated sample of rows).

    Parameters
    ----------
    image : `~radiofm.image.RadioImage`
        The image.
    max_pixels : int
        Pixels read at most.

    Returns
    -------
    rms : float
        In the image's unit (NaN for an image without finite pixels).
    """
    from astropy.stats import sigma_clipped_stats

    ny, nx = image.shape
    step = max(1, int(np.ceil(ny * nx / max_pixels)))
    sample = image.read_region(slice(None, None, step), slice(None))
    finite = sample[np.isfinite(sample)]
    if not finite.size:
        return float("nan")
    _, _, std = sigma_clipped_stats(finite, sigma=3.0, maxiters=10, stdfunc="mad_std")
    return float(std)

"""The S/N stretch measured over the whole image and in boxes, side by side.

`radiofm.inference.count_sources` fits the model's S/N stretch once per image: the
background and the noise that set every tile's 5-sigma level. Measured once over all the
pixels, the faint wings of a cluster halo lift both; measured in boxes
(`radiofm.tiling.NormalizationSpec`'s ``box_pixels``), the medians over the boxes leave the
emission out. Both comparisons count with the model's own heads, changing only the
measurement.

``diffuse``
    Adds a diffuse halo (Gaussian, ``--halo-fwhm`` pixels, peak 3 and 20 sigma) and a relic
    (a thin arc, peak 10 sigma) to a simulated MeerKAT field and counts the field with and
    without them. It prints, per case, the mean change of the counts on the tiles the
    emission does not reach and on those it does, how many tiles are masked as out of
    distribution, and how far the measured background and noise moved. About 1.5 minutes.
``first``
    Counts each FIRST field of one split both ways against the pyBDSF count of the heads'
    label (compact components with peak >= 5 sigma,
    ``radiofm.evaluate._stamps.first_count_label``) per 270" tile. A 300-pixel FIRST field
    holds four boxes of 128 pixels. It prints the spread of the noise ratio, R^2 and MAE of
    each measurement, and the tiles whose counts moved most. ``--fields`` is the loader's
    limit per split; about 2 minutes for 60 fields with cached pyBDSF catalogues.

Usage::

    python scripts/stretch_in_boxes.py diffuse [--model NAME_OR_FILE] [--box-pixels 128]
        [--seed 7]
    python scripts/stretch_in_boxes.py first [--model NAME_OR_FILE] [--split train]
        [--fields 60]

Times are on 2 CPU cores.
"""

import argparse
import dataclasses

import numpy as np
from astropy.io import fits

from radiofm.catalogs import count_in_tiles
from radiofm.datasets import load_first_fields
from radiofm.evaluate._stamps import FIRST_BEAM, first_count_label, first_field_catalogues
from radiofm.image import read_image
from radiofm.inference import count_sources, load_model
from radiofm.simulate import make_radio_sky
from radiofm.tiling import tile_image

SIZE = 1536


def measured_in(model, box_pixels):
    """The loaded ``model`` with its stretch's background and noise measured in boxes of
    ``box_pixels`` (None: once over the whole image). It changes the object itself, which
    `~radiofm.inference.load_model` may hand out again: set it before each use."""
    spec = model.metadata["spec"]
    stretch = dataclasses.replace(spec.normalization, box_pixels=box_pixels)
    model.spec = model.metadata["spec"] = dataclasses.replace(spec, normalization=stretch)
    return model


def diffuse_emission(halo_fwhm):
    """(name, peak S/N, unit-peak map) of each case."""
    y, x = np.mgrid[:SIZE, :SIZE]
    halo = np.exp(-((x - 700) ** 2 + (y - 800) ** 2) / (2 * (halo_fwhm / 2.355) ** 2))
    radius, angle = np.hypot(x - 400, y - 1400), np.arctan2(y - 1400, x - 400)
    relic = np.exp(-((radius - 700) ** 2) / (2 * 8**2)) * (np.abs(angle + 0.8) < 0.45)
    return [("halo, peak 3 sigma", 3.0, halo), ("halo, peak 20 sigma", 20.0, halo),
            ("relic, peak 10 sigma", 10.0, relic)]


def counts(hdu, model):
    """The tile table of a simulated field and its predicted counts (NaN where masked)."""
    table = count_sources(read_image(hdu), model, progress=False)
    return table, np.asarray(table["n_compact_pred"].filled(np.nan), float)


def diffuse(args):
    """The ``diffuse`` comparison (module documentation)."""
    hdu, _ = make_radio_sky((SIZE, SIZE), seed=args.seed)
    noise = float(hdu.header["SIMNOISE"])
    cases = diffuse_emission(args.halo_fwhm)
    for box_pixels in (None, args.box_pixels):
        model = measured_in(load_model(args.model), box_pixels)
        base_table, base = counts(hdu, model)
        base_stretch = model.spec.fit_stretch(read_image(hdu))
        how = "over the whole image" if box_pixels is None else f"in boxes of {box_pixels} px"
        print(f"{model.name}, stretch measured {how}: {np.nansum(base):.0f} "
              f"sources in {len(base)} tiles, {int(base_table['ood_flag'].sum())} masked; "
              f"noise {base_stretch.scale:.4g} Jy/beam (simulated: {noise:.4g})")
        for name, snr, shape in cases:
            data = (hdu.data + (snr * noise * shape).reshape(hdu.data.shape)).astype(np.float32)
            shifted = fits.PrimaryHDU(data, hdu.header)
            table, value = counts(shifted, model)
            stretch = model.spec.fit_stretch(read_image(shifted))
            reached = np.array([(shape[row["y_min"]:row["y_max"], row["x_min"]:row["x_max"]]
                                 > 0.01).any() for row in table])
            both = np.isfinite(value) & np.isfinite(base)
            far, near = both & ~reached, both & reached
            change = np.sum(value[far] - base[far]) / np.sum(base[far])
            print(f"  {name}: tiles it does not reach {np.mean(value[far] - base[far]):+.2f} "
                  f"per tile ({100 * change:+.1f} %); the {reached.sum()} it reaches "
                  f"{np.mean(value[near] - base[near]):+.2f}; masked "
                  f"{int(table['ood_flag'].sum())}; background "
                  f"{(stretch.offset - base_stretch.offset) / base_stretch.scale:+.3f} sigma, "
                  f"noise {100 * (stretch.scale / base_stretch.scale - 1):+.1f} %")


def first(args):
    """The ``first`` comparison (module documentation)."""
    fields = load_first_fields(limit=args.fields)
    fields = fields.subset(np.asarray(fields.table["split"]) == args.split)
    catalogues = first_field_catalogues(fields, "bdsf")
    measurements = (None, args.box_pixels)
    predicted = {box: [] for box in measurements}
    noise = {box: [] for box in measurements}
    labels, names = [], []
    for image, wcs, row in zip(fields.images, fields.wcs, fields.table, strict=True):
        radio = read_image(image, wcs=wcs, beam=FIRST_BEAM)
        for box in measurements:  # one model object: set its measurement before each use
            model = measured_in(load_model(args.model), box)
            noise[box].append(model.spec.fit_stretch(radio).scale)
            table = count_sources(radio, model, progress=False, min_valid=0.5)
            predicted[box].extend(np.ma.filled(np.ma.asarray(table["n_compact_pred"], float),
                                               np.nan))
        tiles = tile_image(radio, int(table.meta["TILESIZE"]), min_valid=0.5)
        catalogue = catalogues[row["file"]]
        counted = count_in_tiles(catalogue, tiles,
                                 select=first_count_label(catalogue, image))["n_compact"]
        labels.extend(counted)
        names.extend([row["file"]] * len(counted))
    truth = np.asarray(labels, float)
    ratio = np.array(noise[args.box_pixels]) / np.array(noise[None])
    print(f"{len(fields)} FIRST {args.split} fields, {len(truth)} tiles of 270 arcsec; noise "
          f"in boxes / over the field: median {np.median(ratio):.3f}, range {ratio.min():.3f}"
          f" to {ratio.max():.3f}; label mean {truth.mean():.2f}")
    for box in measurements:
        value = np.asarray(predicted[box])
        kept = np.isfinite(value)
        residual = truth[kept] - value[kept]
        r2 = 1 - np.sum(residual**2) / np.sum((truth[kept] - truth[kept].mean()) ** 2)
        how = "over the field" if box is None else f"in boxes of {box} px"
        print(f"  measured {how}: R^2 {r2:.3f}, MAE {np.abs(residual).mean():.3f}, mean "
              f"prediction {value[kept].mean():.2f} ({(~kept).sum()} masked)")
    whole, boxed = np.asarray(predicted[None]), np.asarray(predicted[args.box_pixels])
    for i in np.argsort(-np.nan_to_num(np.abs(boxed - whole)))[:5]:
        print(f"    {names[i]}: label {truth[i]:.0f}, over the field {whole[i]:.2f}, in boxes "
              f"{boxed[i]:.2f}")


def main():
    shared = argparse.ArgumentParser(add_help=False)
    shared.add_argument("--model", default="default", help="registered name or .onnx file")
    shared.add_argument("--box-pixels", type=int, default=128)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    cases = parser.add_subparsers(dest="case", required=True)
    simulated = cases.add_parser("diffuse", parents=[shared],
                                 help="a halo and a relic on a simulated field")
    simulated.add_argument("--seed", type=int, default=7, help="of the simulated field")
    simulated.add_argument("--halo-fwhm", type=float, default=250.0,
                           help="pixels (1.1\" each)")
    simulated.set_defaults(run=diffuse)
    real = cases.add_parser("first", parents=[shared], help="FIRST fields against pyBDSF")
    real.add_argument("--split", default="train", choices=["train", "test"])
    real.add_argument("--fields", type=int, default=60, help="loader limit per split")
    real.set_defaults(run=first)
    args = parser.parse_args()
    args.run(args)


if __name__ == "__main__":
    main()

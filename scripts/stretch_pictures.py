"""Pictures of one source through FIRST raw, FIRST clipped and simulated paths, old vs new stretch.

Issue 12, part 1. One MiraBest TRAIN source (never a test one) is shown four ways:

1. its FIRST field (raw Jy/beam, the stretch fitted on the whole 300 px field);
2. a copy of that field clipped at 3 sigma (pixels below set to 0), as stamp makers do;
3. its MiraBest stamp (the data set's own clipped, rescaled uint8 version);
4. the source's flux above 3 sigma laid into a simulated MeerKAT-like field at the same S/N.

Each row goes through the old stretch (2-98 % percentile) and the new one ("snr": arcsinh of
S/N, with the clipped-stamp fallback). The script prints, for every path and stretch, the
mean stretched value of the pixels at 4.5-5.5 sigma in the raw field: with the new stretch a
5-sigma pixel must read arcsinh(5) = 2.31 on every path.

Run::

    RADIOFM_DATA=/work/shared/data python scripts/stretch_pictures.py /work/runs/stretch_paths.png
"""

import argparse
import csv
import sys

import numpy as np
from astropy.coordinates import SkyCoord
from astropy.io import fits


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", help="PNG to write")
    parser.add_argument("--index", type=int, default=3,
                        help="which MiraBest TRAIN source (n-th confident train stamp)")
    args = parser.parse_args(argv)

    import matplotlib

    matplotlib.use("agg")
    import matplotlib.pyplot as plt

    from radiofm.datasets import data_root, load_mirabest
    from radiofm.simulate import make_radio_sky
    from radiofm.tiling import NormalizationSpec

    mirabest = load_mirabest(view="confident")
    train = np.flatnonzero(np.asarray(mirabest.table["split"]) == "train")
    row = int(train[args.index])
    folder = data_root() / "first_fields"
    with open(folder / "manifest.csv", newline="") as stream:
        manifest = list(csv.DictReader(stream))
    centres = SkyCoord([float(r["ra_deg"]) for r in manifest],
                       [float(r["dec_deg"]) for r in manifest], unit="deg")
    match, separation, _ = mirabest.table["sky_center"][row:row + 1].match_to_catalog_sky(centres)
    if separation[0].arcsec > 2:
        sys.exit("no FIRST field matches that MiraBest stamp")
    entry = manifest[int(match[0])]
    assert entry["mirabest_split"] == "train"
    field = np.squeeze(fits.getdata(folder / entry["file"], 1)).astype(np.float32)

    new, old = NormalizationSpec("snr"), NormalizationSpec("percentile")
    raw_fit = new.fit(field)
    sigma = raw_fit.scale
    clipped = np.where(field >= 3 * sigma, field, 0.0).astype(np.float32)
    stamp = mirabest.images[row]
    hdu, _ = make_radio_sky((300, 300), seed=11, extended_density=0.0, min_flux=1.0)
    sim_noise = hdu.header["SIMNOISE"]
    simulated = np.asarray(hdu.data[0, 0], np.float32) + clipped * np.float32(sim_noise / sigma)

    inner = (slice(75, 225), slice(75, 225))
    paths = [("FIRST raw", field, field[inner]), ("FIRST clipped 3 sigma", clipped,
                                                     clipped[inner]),
             ("MiraBest stamp (uint8)", stamp, stamp), ("simulated field", simulated,
                                                         simulated[inner])]
    snr = (field[inner] - raw_fit.offset) / sigma
    five = (snr > 4.5) & (snr < 5.5)
    figure, axes = plt.subplots(len(paths), 2, figsize=(6, 3 * len(paths)))
    print(f"MiraBest train source {mirabest.table['filename'][row]}; FIRST noise "
          f"{sigma:.3g} Jy/beam; {int(five.sum())} pixels at 4.5-5.5 sigma")
    print(f"{'path':26s} {'old 5-sigma':>12s} {'new 5-sigma':>12s} {'new peak':>9s}")
    for k, (name, parent, shown) in enumerate(paths):
        values = {}
        for j, (label, spec) in enumerate((("old: percentile 2-98", old),
                                           ("new: snr arcsinh", new))):
            stretched = spec.fit(parent)(shown)
            values[label] = stretched
            axes[k, j].imshow(stretched, origin="lower", cmap="inferno",
                              vmin=0, vmax=1 if spec is old else 6)
            axes[k, j].set_title(f"{name}\n{label}", fontsize=8)
            axes[k, j].set_axis_off()
        old_five = values["old: percentile 2-98"][five].mean()
        new_five = values["new: snr arcsinh"][five].mean()
        print(f"{name:26s} {old_five:12.3f} {new_five:12.3f} "
              f"{values['new: snr arcsinh'].max():9.2f}")
    print(f"arcsinh(5) = {np.arcsinh(5.0):.3f}")
    figure.tight_layout()
    figure.savefig(args.output, dpi=110)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()

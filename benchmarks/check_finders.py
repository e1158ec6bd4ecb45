"""pyBDSF vs photutils: agreement on real FIRST fields, completeness on simulated fields.

Part 1 runs both finders on VLA FIRST cutouts from ``$RADIOFM_DATA/first_fields`` (beam
5.4 arcsec, 1.4 GHz: the files carry neither) and reports, per field and overall, how many
sources each finds, the fraction of one's sources the other finds within half a beam, and
the compact (S_Code 'S') counts each gives, the label the source work used.

Part 2 simulates MeerKAT-like fields and reports each finder's completeness (truth compact
sources recovered within 3 arcsec) and reliability (detections with a truth source within
3 arcsec) at S/N >= 5, 10 and 20, the S/N being the true peak over the noise rms.

Usage::

    python benchmarks/check_finders.py [--fields 200] [--jobs 1] [--output first_check.ecsv]
"""

import argparse
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import astropy.units as u
import numpy as np
from astropy.table import QTable

FIRST_BEAM = 5.4 * u.arcsec
FIRST_FREQUENCY = 1.4 * u.GHz
MATCH = FIRST_BEAM / 2


def check_field(path):
    """Both finders on one FIRST field; None for a blank field."""
    from radiofm.image import read_image
    from radiofm.sources import find_sources

    try:
        image = read_image(path, beam=FIRST_BEAM, frequency=FIRST_FREQUENCY)
    except ValueError:
        return None
    with image:
        bdsf = find_sources(image, "bdsf")
        phot = find_sources(image, "photutils")
    row = {"file": Path(path).name, "n_bdsf": len(bdsf), "n_photutils": len(phot),
           "compact_bdsf": int(np.sum(bdsf["s_code"] == "S")),
           "compact_photutils": int(np.sum(phot["s_code"] == "S"))}
    row["bdsf_in_photutils"] = _found(bdsf, phot)
    row["photutils_in_bdsf"] = _found(phot, bdsf)
    return row


def _found(mine, theirs, radius=MATCH):
    if len(mine) == 0:
        return np.nan
    if len(theirs) == 0:
        return 0.0
    _, separation, _ = mine["sky_center"].match_to_catalog_sky(theirs["sky_center"])
    return float(np.mean(separation < radius))


def first_fields(folder, limit, jobs, output):
    paths = sorted(folder.glob("*.fits.fz"))
    if limit and limit < len(paths):
        rng = np.random.default_rng(0)
        paths = sorted(rng.choice(paths, size=limit, replace=False))
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        rows = [row for row in pool.map(check_field, paths, chunksize=4) if row is not None]
    table = QTable(rows=rows)
    if output:
        table.write(output, overwrite=True)
    n_b, n_p = table["n_bdsf"], table["n_photutils"]
    c_b, c_p = table["compact_bdsf"], table["compact_photutils"]
    print(f"FIRST fields checked: {len(table)} of {len(paths)} "
          f"(beam {FIRST_BEAM}, {FIRST_FREQUENCY}, match radius {MATCH})")
    print(f"  sources per field, median: pyBDSF {np.median(n_b):.0f}, photutils "
          f"{np.median(n_p):.0f}; total {n_b.sum()} vs {n_p.sum()}")
    print(f"  pyBDSF sources found by photutils: {np.nanmean(table['bdsf_in_photutils']):.1%} "
          f"(field mean); photutils sources found by pyBDSF: "
          f"{np.nanmean(table['photutils_in_bdsf']):.1%}")
    print(f"  compact (S) counts: equal in {np.mean(c_b == c_p):.1%} of fields, within 1 in "
          f"{np.mean(np.abs(c_b - c_p) <= 1):.1%}, mean |difference| "
          f"{np.mean(np.abs(c_b - c_p)):.2f}, correlation {np.corrcoef(c_b, c_p)[0, 1]:.3f}")


def simulated(seeds, size):
    from radiofm.simulate import make_radio_sky
    from radiofm.sources import find_sources

    noise = 4e-6
    thresholds = (5, 10, 20)
    found = {method: {t: [0, 0] for t in thresholds} for method in ("bdsf", "photutils")}
    reliable = {method: [0, 0] for method in found}
    for seed in seeds:
        hdu, truth = make_radio_sky((size, size), noise=noise, seed=seed)
        compact = truth[truth["s_code"] == "S"]
        snr = compact["peak"].to_value(u.Jy / u.beam) / noise
        for method in found:
            catalog = find_sources(hdu, method)
            _, separation, _ = compact["sky_center"].match_to_catalog_sky(catalog["sky_center"])
            for t in thresholds:
                chosen = snr >= t
                found[method][t][0] += int(np.sum(separation[chosen] < 3 * u.arcsec))
                found[method][t][1] += int(chosen.sum())
            _, back, _ = catalog["sky_center"].match_to_catalog_sky(truth["sky_center"])
            reliable[method][0] += int(np.sum(back < 3 * u.arcsec))
            reliable[method][1] += len(catalog)
    print(f"simulated {len(seeds)} field(s) of {size}x{size} px, noise {noise} Jy/beam, "
          "7.5 arcsec beam")
    print(f"  {'finder':<10}" + "".join(f"{f'complete S/N>={t}':>19}" for t in thresholds)
          + f"{'reliability':>13}")
    for method, by_threshold in found.items():
        cells = "".join(f"{k / n:>12.1%} ({n:>4})" for k, n in by_threshold.values())
        k, n = reliable[method]
        print(f"  {method:<10}{cells}{k / n:>13.1%}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=os.environ.get("RADIOFM_DATA", "../shared/data"))
    parser.add_argument("--fields", type=int, default=200,
                        help="FIRST fields to check, a seeded random sample (0: all)")
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--output", help="per-field ECSV table")
    parser.add_argument("--sim-size", type=int, default=2048)
    parser.add_argument("--sim-seeds", type=int, default=2)
    args = parser.parse_args()
    folder = Path(args.data) / "first_fields"
    if folder.is_dir():
        first_fields(folder, args.fields, args.jobs, args.output)
    else:
        print(f"{folder} is absent: FIRST part skipped (set --data or RADIOFM_DATA)")
    simulated(range(args.sim_seeds), args.sim_size)


if __name__ == "__main__":
    main()

"""Outputs a survey team can trust (issue 13): morphology, counts, calibration, OOD, time.

Measures, for a model (default: the bundled default):

1. README's main job, ``radiofm annotate --example -o DIR``, run as a
   subprocess: its wall time, then its outputs against the example's truth
   (``example_truth.ecsv``):

   - the share of true compact sources (found by the finder, matched within 1 beam)
     labelled ``Compact`` (target >= 95 %);
   - on true FRI/FRII/bent sources (the found source nearest their centre, within a
     quarter of their size): accuracy where not ``uncertain``, and the uncertain share;
   - per tile, n_compact_pred against the true compact sources with peak >= 5 sigma:
     MAE and R^2 on unmasked tiles (target R^2 >= 0.8; with its 95 % bootstrap interval
     over the tiles, which says how far one sky can tell), negative counts (must be 0),
     whether it was combined with the catalogue (``meta["COUNTCAT"]``; then the count
     head's own figures beside it, `radiofm.inference.count_sources` on the same tiles),
     the masked share, the share of unmasked tiles whose truth lies within one
     ``n_compact_pred_err`` of the prediction (about 0.68 for a calibrated uncertainty on
     counts this large) and the summed squared differences over the summed squared errors
     (about 1 when calibrated);
     the measured ``n_compact`` column beside it, and the R^2 of the
     best linear mix of the two fitted on the tiles' own truth (a ceiling for any head
     that combines them, not a result).

2. Calibration: expected calibration error of the morphology probabilities on the
   RadioGalaxyDataset test split (target <= 0.05), before and after the temperature, by
   two estimators (15 equal-width bins, and the less biased equal-mass sweep of Roelofs
   et al. 2022), each beside the ECE a perfectly calibrated head would show on that many
   stamps (its noise floor).

3. Real FIRST fields of the held-out (test) split: n_compact_pred per 270 arcsec tile
   (`radiofm.inference.count_sources`) against two pyBDSF counts: the label the count
   heads learn (components above 5 sigma and at most 2 beams long,
   `radiofm.evaluate._stamps.first_count_label`; the shipped heads learnt it as the
   photutils finder measures it, so the figures include the two finders' disagreement)
   and pyBDSF's isolated single sources (S_Code S, a narrower label the heads over-count);
   MAE, R^2 and the share of tiles flagged out of distribution; the error figures as in
   1 (with under one source per tile the share within one error is a step function of
   the prediction, not comparable with 0.68; the variance ratio is).

Usage::

    python benchmarks/bench_outputs.py [--model default] [--finder photutils]
        [--first-fields 25] [--cache DIR] [--skip-example] [--skip-first]

Needs the real data (``$RADIOFM_DATA``) for 2 and 3; pyBDSF for 3.
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import astropy.units as u
import numpy as np
from astropy.table import QTable, Table

TRUTH_CLASSES = {"FRI": "FRI", "FRII": "FRII", "bent": "Bent"}
SNR = 5.0


def _r2(truth, predicted):
    truth, predicted = np.asarray(truth, float), np.asarray(predicted, float)
    if len(truth) < 2 or np.var(truth) == 0:
        return float("nan")
    return float(1 - np.sum((truth - predicted) ** 2) / np.sum((truth - truth.mean()) ** 2))


def _r2_interval(truth, predicted, draws=2000, seed=0):
    """The 95 % bootstrap interval of `_r2` over the items (tiles drawn with replacement)."""
    truth, predicted = np.asarray(truth, float), np.asarray(predicted, float)
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(truth), (draws, len(truth)))
    values = [_r2(truth[pick], predicted[pick]) for pick in picks]
    return np.nanpercentile(values, [2.5, 97.5])


def _within(truth, predicted, errors):
    """The share of items whose truth lies within one error of the prediction, and the
    variance ratio, as the heads' fit scores its test tiles."""
    from radiofm.evaluate._fit_heads import _count_figures

    figures = _count_figures(np.asarray(predicted, float), np.asarray(truth, float),
                             np.asarray(errors, float))
    return (f"{figures['within_1_error']:.2f} of {len(truth)} (0.68 for a calibrated one-sigma "
            f"error on large counts); variance ratio {figures['variance_ratio']:.2f} (1 when "
            "calibrated)")


def example(model, finder, folder):
    """README's main job: wall time and its outputs against the truth."""
    folder = Path(folder)
    command = [sys.executable, "-m", "radiofm", "annotate", "--example", "-o", str(folder),
               "--model", model]
    if finder:
        command += ["--finder", finder]
    began = time.perf_counter()
    subprocess.run(command, check=True, env={**os.environ, "MPLBACKEND": "agg"})
    seconds = time.perf_counter() - began
    print(f"README main job ({' '.join(command[3:])}): {seconds:.1f} s wall "
          f"(load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs; target < 60 s)")

    from radiofm.catalogs import count_in_tiles
    from radiofm.image import read_image
    from radiofm.tiling import tile_image

    truth = QTable.read(folder / "example_truth.ecsv")
    sources = QTable.read(folder / "example_sky_sources.ecsv")
    tiles_table = QTable.read(folder / "example_sky_tiles.ecsv")
    image = read_image(folder / "example_sky.fits")
    beam = float(image.beam[0].to_value(u.arcsec))
    noise = float(truth.meta["SIMNOISE"])
    print(f"  {len(sources)} sources found, {len(truth)} true ones; morph_flag: "
          + ", ".join(f"{f} {n}" for f, n in zip(*np.unique(np.asarray(sources["morph_flag"]),
                                                            return_counts=True), strict=True)))

    true_class = np.asarray(truth["morph_class"])
    index, separation, _ = truth["sky_center"].match_to_catalog_sky(sources["sky_center"])
    compact = true_class == "compact"
    found = compact & (separation.to_value(u.arcsec) <= beam)
    labels = np.asarray(sources["morph_class"])[index]
    share = float((labels[found] == "Compact").mean()) if found.any() else float("nan")
    print(f"  true compact sources found: {found.sum()} of {compact.sum()}; labelled "
          f"Compact: {100 * share:.2f} % (target >= 95 %)")
    bright = found & (truth["peak"].to_value(u.Jy / u.beam) >= 10 * noise)
    print(f"    of those with peak >= 10 sigma ({bright.sum()}): "
          f"{100 * (labels[bright] == 'Compact').mean():.2f} %")

    extended = np.flatnonzero(np.isin(true_class, list(TRUTH_CLASSES)))
    near = separation.to_value(u.arcsec)[extended] <= np.maximum(
        beam, truth["las"].to_value(u.arcsec)[extended] / 4)
    judged = labels[extended][near]
    expected = np.array([TRUTH_CLASSES[c] for c in true_class[extended][near]])
    sure = judged != "uncertain"
    accuracy = float((judged[sure] == expected[sure]).mean()) if sure.any() else float("nan")
    print(f"  true FRI/FRII/bent sources: {len(extended)}, matched {near.sum()}; uncertain "
          f"{(~sure).sum()} ({100 * (~sure).mean() if near.any() else float('nan'):.0f} %); "
          f"accuracy on the others {accuracy:.3f} ({(judged[sure] == expected[sure]).sum()}"
          f" of {sure.sum()}); true -> labelled: "
          + ", ".join(f"{e} -> {j}" for e, j in zip(expected, judged, strict=True)))

    tiles = tile_image(image, int(tiles_table.meta["TILESIZE"]))
    bright_compact = (np.asarray(truth["s_code"]) == "S") & (
        truth["peak"].to_value(u.Jy / u.beam) >= SNR * noise)
    counted = count_in_tiles(truth, tiles, select=bright_compact)
    true_counts = np.asarray(counted["n_compact"], float)
    values = np.asarray(Table(tiles_table)["n_compact_pred"].filled(np.nan), float)
    mask = np.asarray(tiles_table["ood_flag"]) | ~np.isfinite(values)
    combined = tiles_table.meta.get("COUNTCAT")
    low, high = _r2_interval(true_counts[~mask], values[~mask])
    print(f"  counts per tile ({len(values)} tiles, {mask.sum()} masked = "
          f"{100 * mask.mean():.1f} %; n_compact_pred "
          + (f"combined with the {combined} catalogue" if combined else "the count head's alone")
          + f"): negative {int(np.sum(values < 0))}; on unmasked tiles "
          f"MAE {np.abs(values[~mask] - true_counts[~mask]).mean():.2f}, R^2 "
          f"{_r2(true_counts[~mask], values[~mask]):.4f} (target >= 0.8; 95 % bootstrap "
          f"interval over the tiles {low:.3f} to {high:.3f}); true mean "
          f"{true_counts.mean():.1f} per tile")
    if combined:  # side by side: the same model's head alone on the same tiles
        from radiofm.inference import count_sources

        alone = np.ma.filled(np.ma.asarray(count_sources(
            tiles, model, threads=1, progress=False)["n_compact_pred"], float), np.nan)
        print(f"    the count head alone (count_sources, no catalogue): MAE "
              f"{np.abs(alone[~mask] - true_counts[~mask]).mean():.2f}, R^2 "
              f"{_r2(true_counts[~mask], alone[~mask]):.3f}")
    if "n_compact_pred_err" in tiles_table.colnames:
        errors = np.asarray(Table(tiles_table)["n_compact_pred_err"].filled(np.nan), float)
        print(f"    truth within one n_compact_pred_err of the prediction: "
              f"{_within(true_counts[~mask], values[~mask], errors[~mask])}")
    measured = np.asarray(tiles_table["n_compact"], float)
    print(f"  measured counts per tile (n_compact: sources Compact by measurement, peak >= "
          f"{SNR:g} sigma, any model): MAE {np.abs(measured - true_counts).mean():.2f}, R^2 "
          f"{_r2(true_counts, measured):.3f}, correlation "
          f"{np.corrcoef(true_counts, measured)[0, 1]:.3f}; on the unmasked tiles R^2 "
          f"{_r2(true_counts[~mask], measured[~mask]):.3f}")
    # how far any head that combines the two counts linearly could get: the least-squares
    # mix fitted on these very tiles (a ceiling, not a result: it sees the truth it scores)
    design = np.column_stack([values[~mask], measured[~mask], np.ones((~mask).sum())])
    mix = design @ np.linalg.lstsq(design, true_counts[~mask], rcond=None)[0]
    print(f"  ceiling: the best linear mix of n_compact_pred and n_compact, fitted on the "
          f"unmasked tiles' own truth, R^2 {_r2(true_counts[~mask], mix):.3f}")
    image.close()


def calibration(model, cache):
    """ECE of the morphology probabilities on RadioGalaxyDataset test."""
    from radiofm.evaluate import expected_calibration_error, load_embedder
    from radiofm.evaluate._embedders import normalization_of
    from radiofm.evaluate._fit_heads import _embed
    from radiofm.evaluate._stamps import load_task_data
    from radiofm.models import resolve_model

    embedder = load_embedder(str(resolve_model(model)[0]))
    heads = embedder.model.heads
    if heads is None:
        print("calibration: the model has no numpy heads")
        return
    data = load_task_data("morphology", normalization=normalization_of(embedder),
                          stamp_arcsec=embedder.model.spec.stamp_arcsec)  # as the head's
    embedding, _ = _embed(embedder, data, cache, "morphology_None")
    test = data.split == "test"
    probabilities = heads.morphology_probabilities(embedding[test])
    logits = heads.morphology_logits(embedding[test]) * heads.temperature
    raw = np.exp(logits - logits.max(axis=1, keepdims=True))
    raw /= raw.sum(axis=1, keepdims=True)
    labels = np.asarray(data.target)[test]
    print(f"RadioGalaxyDataset test ({test.sum()} stamps): accuracy "
          f"{(probabilities.argmax(1) == labels).mean():.3f}; temperature "
          f"{heads.temperature:.3g}; target ECE <= 0.05")
    # what a perfectly calibrated head would score on this many stamps: labels drawn from
    # its own probabilities, scored by each estimator (its noise floor)
    rng = np.random.default_rng(0)
    drawn = [np.array([rng.choice(len(q), p=q / q.sum()) for q in probabilities])
             for _ in range(200)]
    for bins, name in ((15, "15 equal-width bins"), ("sweep", "equal-mass sweep")):
        draws = np.array([expected_calibration_error(probabilities, labels_drawn, bins)
                          for labels_drawn in drawn])
        print(f"  ECE, {name}: {expected_calibration_error(probabilities, labels, bins):.4f} "
              f"({expected_calibration_error(raw, labels, bins):.4f} without the "
              f"temperature); a perfectly calibrated head on these stamps (200 draws of "
              f"labels from its probabilities): mean {draws.mean():.4f}, 5th to 95th "
              f"percentile {np.percentile(draws, 5):.4f} to {np.percentile(draws, 95):.4f}, "
              f"at or below 0.05 in {np.mean(draws <= 0.05):.0%} of draws")


def first_fields(model, count):
    """FIRST test-split fields: predicted counts vs two pyBDSF counts per tile."""
    from radiofm.catalogs import count_in_tiles
    from radiofm.datasets import load_first_fields
    from radiofm.evaluate._stamps import FIRST_BEAM, first_count_label, first_field_catalogues
    from radiofm.image import read_image
    from radiofm.inference import count_sources

    fields = load_first_fields(limit=count)
    test = np.asarray(fields.table["split"]) == "test"
    fields = fields.subset(test)
    catalogues = first_field_catalogues(fields, "bdsf")
    labels, predicted, errors, flagged = {"S_Code S": [], "the heads' label": []}, [], [], []
    for image, wcs, row in zip(fields.images, fields.wcs, fields.table, strict=True):
        radio = read_image(image, wcs=wcs, beam=FIRST_BEAM)
        table = count_sources(radio, model, progress=False, min_valid=0.5)
        from radiofm.tiling import tile_image

        tiles = tile_image(radio, int(table.meta["TILESIZE"]), min_valid=0.5)
        catalogue = catalogues[row["file"]]
        labels["S_Code S"].extend(count_in_tiles(catalogue, tiles)["n_compact"])
        labels["the heads' label"].extend(count_in_tiles(
            catalogue, tiles, select=first_count_label(catalogue, image))["n_compact"])
        predicted.extend(np.ma.filled(np.ma.asarray(table["n_compact_pred"], float), np.nan))
        if "n_compact_pred_err" in table.colnames:
            errors.extend(np.ma.filled(np.ma.asarray(table["n_compact_pred_err"], float),
                                       np.nan))
        flagged.extend(np.asarray(table["ood_flag"]))
    predicted, flagged = np.array(predicted), np.array(flagged)
    kept = ~flagged & np.isfinite(predicted)
    print(f"FIRST held-out fields ({len(fields)} fields, {len(predicted)} tiles of 270 arcsec):"
          f" flagged {100 * flagged.mean():.1f} %; negative {int(np.sum(predicted < 0))}; mean "
          f"prediction {predicted[kept].mean():.2f} on the unflagged tiles, against pyBDSF:")
    for name, counts in labels.items():
        truth = np.asarray(counts, float)
        print(f"  {name}: MAE {np.abs(predicted[kept] - truth[kept]).mean():.2f}, R^2 "
              f"{_r2(truth[kept], predicted[kept]):.3f}, correlation "
              f"{np.corrcoef(truth[kept], predicted[kept])[0, 1]:.3f}; mean count "
              f"{truth.mean():.2f}"
              + (f"; within one n_compact_pred_err: "
                 f"{_within(truth[kept], predicted[kept], np.array(errors)[kept])}"
                 if errors else ""))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--finder", help="finder of the example run (default: annotate's)")
    parser.add_argument("--first-fields", type=int, default=25,
                        help="FIRST test-split fields (pyBDSF is run on them, cached)")
    parser.add_argument("--cache", help="folder to cache RadioGalaxyDataset embeddings in")
    parser.add_argument("--skip-example", action="store_true")
    parser.add_argument("--skip-calibration", action="store_true")
    parser.add_argument("--skip-first", action="store_true")
    args = parser.parse_args()
    if not args.skip_example:
        with tempfile.TemporaryDirectory() as folder:
            example(args.model, args.finder, folder)
    if not args.skip_calibration:
        calibration(args.model, args.cache)
    if not args.skip_first:
        first_fields(args.model, args.first_fields)


if __name__ == "__main__":
    main()

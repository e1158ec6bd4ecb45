"""Outputs a survey team can trust: numpy heads, compact by measurement, masked counts."""

import shutil

import astropy.units as u
import numpy as np
import pytest
from astropy.coordinates import SkyCoord
from astropy.table import QTable

from radiofm.inference import classify_morphology, count_sources, load_model
from radiofm.simulate import make_radio_sky
from radiofm.sources import find_sources
from radiofm.tests.model_helpers import CLASSES, numpy_heads


@pytest.fixture(scope="module")
def sky():
    return make_radio_sky((256, 320), seed=4)


def _with_heads(tiny_model, folder, name, **options):
    pytest.importorskip("onnx")
    from radiofm.evaluate import write_heads

    path = folder / f"{name}.onnx"
    heads = numpy_heads(96, **{k: v for k, v in options.items() if k != "change"})
    if "change" in options:
        options["change"](heads)
    write_heads(tiny_model, path, heads=heads)
    return path


@pytest.fixture(scope="module")
def headed(tiny_model, tmp_path_factory):
    """The tiny model with numpy heads that judge every tile in distribution."""
    return _with_heads(tiny_model, tmp_path_factory.mktemp("heads"), "headed", threshold=1e6)


def test_a_model_with_heads_reads_only_its_embedding(headed, tiny_model):
    model = load_model(headed, threads=1)
    assert model.heads is not None and model.outputs == ("embedding",)
    assert load_model(tiny_model, threads=1).heads is None


def test_counts_are_never_negative_and_say_what_they_count(headed, sky):
    hdu, _ = sky
    table = count_sources(hdu, headed, threads=1, progress=False)
    counts = table["n_compact_pred"]
    assert (counts >= 0).all() and not counts.mask.any()
    assert not table["ood_flag"].any() and (table["ood_reason"] == "").all()
    assert "5 sigma" in counts.info.description
    assert np.isfinite(table["ood_score"]).all() and (table["input_noise"] > 0).all()


def test_a_windowed_count_head_counts_each_tile_as_the_sum_of_its_windows(tiny_model, sky,
                                                                         tmp_path):
    """A windowed head reads each tile's 3 x 3 windows, each at the model's input size, and
    adds their counts: not the tile's own embedding."""
    from radiofm.image import read_image
    from radiofm.tiling import split_windows, tile_image

    hdu, _ = sky
    path = _with_heads(tiny_model, tmp_path, "windowed", threshold=1e6, count_windows=3)
    model = load_model(path, threads=1)
    image = read_image(hdu)
    tiles = tile_image(image, model.spec.tile_pixels(image))
    table = count_sources(tiles, model, threads=1, progress=False)
    stretch = model.spec.fit_stretch(tiles.image)
    raw = np.stack([tiles.image.data[t["y_min"]:t["y_max"], t["x_min"]:t["x_max"]]
                    for t in tiles.table])
    windows = model.spec.prepare(split_windows(raw, 3), stretch)
    expected = model.heads.predict_tile_counts(model.run(windows)["embedding"])
    np.testing.assert_allclose(table["n_compact_pred"], expected, rtol=1e-5)
    whole = model.heads.predict_counts(model.run(model.spec.prepare(raw, stretch))["embedding"])
    assert not np.allclose(table["n_compact_pred"], whole, rtol=0.05)


@pytest.mark.parametrize("count_windows", [1, 3])
def test_a_count_head_that_reads_peaks_gets_each_windows_input(tiny_model, sky, tmp_path,
                                                              count_windows):
    """A version 5 count GLM reads each window's input beside its embedding (its peaks
    above ``peak_level``): count_sources gives it the same windows it embeds, on whole
    tiles too, and the count differs from the embedding's alone."""
    from radiofm.image import read_image
    from radiofm.tiling import split_windows, tile_image

    hdu, _ = sky
    options = dict(threshold=1e6, count_windows=count_windows)
    model = load_model(_with_heads(tiny_model, tmp_path, f"peaks{count_windows}",
                                   count_peak_level=0.5, **options), threads=1)
    assert model.heads.count_reads_peaks
    image = read_image(hdu)
    tiles = tile_image(image, model.spec.tile_pixels(image))
    table = count_sources(tiles, model, threads=1, progress=False)
    stretch = model.spec.fit_stretch(tiles.image)
    raw = np.stack([tiles.image.data[t["y_min"]:t["y_max"], t["x_min"]:t["x_max"]]
                    for t in tiles.table])
    windows = model.spec.prepare(split_windows(raw, count_windows), stretch)
    expected = model.heads.predict_tile_counts(model.run(windows)["embedding"],
                                               inputs=windows)
    np.testing.assert_allclose(table["n_compact_pred"], expected, rtol=1e-5)
    plain = count_sources(hdu, _with_heads(tiny_model, tmp_path, f"plain{count_windows}",
                                           **options), threads=1, progress=False)
    assert (table["n_compact_pred"] > plain["n_compact_pred"]).any()


@pytest.mark.parametrize("count_windows", [1, 3])
def test_an_image_is_counted_by_the_count_head_of_its_beam(tiny_model, sky, tmp_path,
                                                           count_windows):
    """The simulated sky's 7.5 arcsec beam picks the regime fitted for it (here: twice the
    pooled head's rate), named in the table; without a regime for its beam, the pooled
    head counts."""
    hdu, _ = sky
    regimes = [("FIRST", [4.7, 6.2], 0.0), ("MeerKAT-sim", [6.5, 8.6], 1.0 + np.log(2.0))]
    pooled = count_sources(hdu, _with_heads(tiny_model, tmp_path, f"pooled{count_windows}",
                                            threshold=1e6, count_windows=count_windows),
                           threads=1, progress=False)
    table = count_sources(hdu, _with_heads(tiny_model, tmp_path, f"regimes{count_windows}",
                                           threshold=1e6, count_windows=count_windows,
                                           count_regimes=regimes),
                          threads=1, progress=False)
    np.testing.assert_allclose(table["n_compact_pred"], 2 * pooled["n_compact_pred"],
                               rtol=1e-5)
    assert table.meta["COUNTHD"] == "MeerKAT-sim" and pooled.meta["COUNTHD"] == "pooled"
    assert "count head 'MeerKAT-sim', fitted on MeerKAT-sim tiles" in (
        table["n_compact_pred"].info.description)


@pytest.mark.parametrize("count_windows", [1, 3])
def test_each_count_carries_the_uncertainty_of_its_head(tiny_model, sky, tmp_path,
                                                        count_windows):
    """Heads with a dispersion give n_compact_pred_err = sqrt(dispersion x count), the
    dispersion of the head that counted the image (here the MeerKAT-sim regime's), masked
    where the count is; version 3 heads (no dispersion) give no uncertainty at all."""
    hdu, _ = sky
    regimes = [("FIRST", [4.7, 6.2], 0.0, 9.0), ("MeerKAT-sim", [6.5, 8.6], 1.0, 0.5)]
    options = dict(threshold=1e6, count_windows=count_windows)
    table = count_sources(hdu, _with_heads(tiny_model, tmp_path, "dispersed",
                                           count_regimes=regimes, count_dispersion=4.0,
                                           **options),
                          threads=1, progress=False)
    counts, errors = table["n_compact_pred"], table["n_compact_pred_err"]
    np.testing.assert_allclose(errors, np.sqrt(0.5 * counts), rtol=1e-5)
    assert "dispersion" in errors.info.description
    from radiofm.inference._columns import describe_columns

    written = describe_columns(QTable(table).copy(), units=True)  # as annotate writes it
    assert written["n_compact_pred_err"].unit == u.ct
    flagged = count_sources(hdu, _with_heads(tiny_model, tmp_path, "dispersed_far",
                                             count_dispersion=4.0,
                                             **{**options, "threshold": 1e-6}),
                            threads=1, progress=False)
    assert flagged["n_compact_pred_err"].mask.all()
    old = count_sources(hdu, _with_heads(tiny_model, tmp_path, "version3",
                                         change=lambda h: h.update(heads_version=3),
                                         **options),
                        threads=1, progress=False)
    assert "n_compact_pred_err" not in old.colnames and "n_compact_pred" in old.colnames


def test_a_linear_head_without_numpy_heads_is_clipped_and_flagged(tiny_model, sky,
                                                                  tmp_path, caplog):
    """The old graph head printed negative counts on every real field, with no warning."""
    hdu, _ = sky
    model = load_model(tiny_model, threads=1)
    raw = count_sources(hdu, model, threads=1, progress=False)
    assert (raw["n_compact_pred"].filled(0) >= 0).all()
    negative = raw["ood_reason"] == "negative"
    assert (raw["n_compact_pred"].mask == negative).all()


def test_out_of_distribution_tiles_are_masked(tiny_model, sky, tmp_path):
    hdu, _ = sky
    far = _with_heads(tiny_model, tmp_path, "far", threshold=1e-3)
    table = count_sources(hdu, far, threads=1, progress=False)
    assert table["ood_flag"].all() and table["n_compact_pred"].mask.all()
    assert set(table["ood_reason"]) == {"embedding"}
    table.write(tmp_path / "tiles.ecsv")
    back = QTable.read(tmp_path / "tiles.ecsv")
    assert back["n_compact_pred"].mask.all()  # masked in the file, not a number


def test_a_beam_outside_the_training_range_flags_every_tile(tiny_model, sky, tmp_path):
    hdu, _ = sky

    def narrow(heads):
        heads["ood"]["beam_range_arcsec"] = [3.0, 6.0]  # the sky's beam is 7.5 arcsec

    path = _with_heads(tiny_model, tmp_path, "narrow", threshold=1e6, change=narrow)
    table = count_sources(hdu, path, threads=1, progress=False)
    assert (table["ood_reason"] == "beam").all() and table["n_compact_pred"].mask.all()


def test_point_sources_are_compact_not_bent(headed, sky):
    """README's example called 4263 of 5048 true point sources Bent and none Compact."""
    hdu, truth = sky
    compact = truth[truth["morph_class"] == "compact"]
    result = classify_morphology(compact, hdu, headed, threads=1, progress=False)
    assert (result["morph_class"] == "Compact").all()
    assert (result["morph_flag"] == "compact_by_measurement").all()
    assert np.isnan(result["stamp_size"]).all()  # no stamp cut for them
    # the same from a catalogue the image gives (photutils: convolved sizes)
    found = find_sources(hdu, "photutils")
    result = classify_morphology(found, hdu, headed, threads=1, progress=False)
    _, separation, _ = result["sky_center"].match_to_catalog_sky(compact["sky_center"])
    true_compact = separation < 3 * u.arcsec
    assert true_compact.sum() >= 10
    assert (result["morph_class"][true_compact] == "Compact").mean() >= 0.95


def test_resolved_sources_are_judged_or_uncertain(headed, sky):
    hdu, _ = sky
    center = SkyCoord(150 * u.deg, -30 * u.deg)
    catalog = QTable({
        "sky_center": SkyCoord([center] * 4),
        "flux": [0.1, 1e-4, 0.5, 0.01] * u.Jy,
        "peak": [0.02, 2e-5, 0.1, 0.01] * u.Jy / u.beam,
        "major": [40.0, 40.0, 600.0, 7.0] * u.arcsec,
        "minor": [10.0, 10.0, 100.0, 7.0] * u.arcsec,
        "pa": [0.0, 0.0, 0.0, 0.0] * u.deg,
        "s_code": ["M", "M", "M", "S"],
    })
    result = classify_morphology(catalog, hdu, headed, threads=1, progress=False)
    assert list(result["morph_flag"][1:]) == ["faint", "too_large", "compact_by_measurement"]
    assert list(result["morph_class"][1:3]) == ["uncertain", "uncertain"]
    assert result["morph_flag"][0] in ("classified", "low_confidence", "unlike_training")
    assert result["morph_class"][0] in {*CLASSES, "uncertain"}
    # a resolved source is framed to its extent: 2 x 40 arcsec, at least the base stamp
    assert result["stamp_size"][0] >= 80 * u.arcsec
    assert np.isfinite(result["morph_prob"][0]).all()
    for name in result.colnames:
        assert result[name].info.description, name


def test_a_source_is_measured_against_its_local_rms(headed, sky):
    """Near a bright source or at a mosaic's edge the noise is not the image's: a source
    the finder measured against a high local rms is faint there, not judged."""
    hdu, _ = sky
    center = SkyCoord(150 * u.deg, -30 * u.deg)
    catalog = QTable({
        "sky_center": SkyCoord([center] * 3),
        "flux": [1e-3] * 3 * u.Jy,
        "peak": [2e-4] * 3 * u.Jy / u.beam,
        "major": [40.0] * 3 * u.arcsec,
        "minor": [10.0] * 3 * u.arcsec,
        "s_code": ["M"] * 3,
        "local_rms": [1e-5, 1e-4, np.nan] * u.Jy / u.beam,
    })
    result = classify_morphology(catalog, hdu, headed, threads=1, progress=False)
    image_rms = result.meta["RMS"]
    assert image_rms == pytest.approx(4e-6, rel=0.2)  # the sky's noise
    np.testing.assert_allclose(result["snr"], [20.0, 2.0, 2e-4 / image_rms], rtol=1e-5)
    assert result["morph_flag"][1] == "faint" and result["morph_class"][1] == "uncertain"
    assert result["morph_flag"][0] != "faint" and result["morph_flag"][2] != "faint"
    assert "local_rms" in result["snr"].info.description


def test_stamps_are_clipped_at_their_own_floor(headed):
    from radiofm.inference._annotate import stamp_inputs

    metadata = load_model(headed, threads=1).metadata
    stamp = np.random.default_rng(0).normal(0.0, 1.0, (64, 64))
    stamp[28:36, 28:36] += 20.0
    stamps = np.stack([stamp] * 3)
    inputs = stamp_inputs(stamps, metadata, floor=np.array([3.0, 1e3, np.nan]))
    assert not np.allclose(inputs[0], inputs[1])  # each stamp clipped at its own floor
    np.testing.assert_array_equal(inputs[2], stamp_inputs(stamps[2:], metadata)[0])
    np.testing.assert_array_equal(inputs[0], stamp_inputs(stamps[:1], metadata, floor=3.0)[0])


def test_copies_keep_the_heads(headed, tmp_path):
    copy = tmp_path / "copy.onnx"
    shutil.copy(headed, copy)
    assert load_model(copy, threads=1).heads.classes == CLASSES


def _catalogued(tiny_model, folder, finder="photutils", coef=(0.5, 0.25, 1.0),
                crowding_range=None, shared=None):
    """The tiny model whose MeerKAT-sim regime combines its counts with ``finder``
    catalogues: 0.5 + 0.25 x the head's count + the summed probabilities (and, with a
    fourth ``coef``, that times the summed probabilities times the catalogue's crowding);
    with a ``crowding_range``, of the fields it was fitted on; with ``shared`` (a
    ``shared_probability`` and a ``shared_coef``), a curve and a weight of their own for the
    pieces of resolved sources."""
    def catalogue(heads):
        heads["counts"]["regimes"][0]["catalogues"] = [{
            "finder": finder, "snr": [5.0, 10.0], "probability": [0.2, 1.0],
            "coef": list(coef), "dispersion": 2.0,
            **({"crowding_range": list(crowding_range)} if crowding_range else {}),
            **({"shared_probability": list(shared[0]), "shared_coef": list(shared[1])}
               if shared else {})}]
    name = (f"catalogued_{finder}_{len(coef)}_{crowding_range and crowding_range[1]}_"
            f"{shared and shared[1][1]}")
    return _with_heads(tiny_model, folder, name, threshold=1e6,
                       count_dispersion=1.0, change=catalogue,
                       count_regimes=[("MeerKAT-sim", [6.5, 8.6], 1.0, 1.0)])


def test_counts_combine_with_the_catalogue_their_head_was_fitted_for(tiny_model, tmp_path):
    """Where the count head carries a catalogue (heads version 6), a tile's n_compact_pred
    combines the head's count with the summed probabilities of the tile's compact sources,
    but only for a catalogue of the finder it was fitted for: a user's own catalogue or
    another finder's leave the head's count alone."""
    from radiofm.catalogs import count_in_tiles
    from radiofm.image import read_image
    from radiofm.inference import add_catalogue_counts
    from radiofm.tiling import tile_image

    hdu, _ = make_radio_sky((512, 512), seed=4)
    model = load_model(_catalogued(tiny_model, tmp_path), threads=1)
    tiles = tile_image(hdu, model.spec.tile_arcsec * u.arcsec)
    table = count_sources(tiles, model, threads=1, progress=False)
    assert len(table) > 1
    head = np.asarray(table["n_compact_pred"]).copy()
    sources = classify_morphology(find_sources(hdu, "photutils"), hdu, model, threads=1,
                                  progress=False)
    beam = read_image(hdu).beam
    for finder in (None, "bdsf"):
        unchanged = table.copy()
        assert not add_catalogue_counts(unchanged, sources, tiles, model, finder, beam)
        np.testing.assert_array_equal(unchanged["n_compact_pred"], head)
    assert not add_catalogue_counts(table.copy(), sources, tiles, model, "photutils",
                                    (20 * u.arcsec, 20 * u.arcsec, 0 * u.deg))  # pooled head
    assert add_catalogue_counts(table, sources, tiles, model, "photutils", beam)
    compact = np.asarray(sources["morph_flag"]) == "compact_by_measurement"
    assert compact.sum() > 10
    weights = np.where(compact, np.interp(sources["snr"], [5.0, 10.0], [0.2, 1.0]), 0.0)
    summed = count_in_tiles(sources, tiles, select="all", weights=weights)["n_compact"]
    assert summed.sum() > 5
    np.testing.assert_allclose(table["n_compact_pred"], 0.5 + 0.25 * head + summed,
                               rtol=1e-5)
    np.testing.assert_allclose(table["n_compact_pred_err"],
                               np.sqrt(2.0 * table["n_compact_pred"]), rtol=1e-5)
    assert table.meta["COUNTCAT"] == "photutils"
    assert "combined with the photutils catalogue" in table["n_compact_pred"].info.description
    assert "CROWDING" not in table.meta  # a version 6 combination judges no crowding


def test_pieces_of_a_resolved_source_count_by_their_own_curve(tiny_model, tmp_path):
    """A combination with a shared-island curve (heads version 10) weighs the compact
    sources that share their island with a resolved source by that curve and by a weight
    that grows with the catalogue's crowding, every other compact source by the usual
    ones, and says so in the column description."""
    from radiofm.catalogs import count_in_tiles
    from radiofm.image import read_image
    from radiofm.inference import add_catalogue_counts, shares_island
    from radiofm.tiling import tile_image

    hdu, _ = make_radio_sky((512, 512), seed=4)
    model = load_model(_catalogued(tiny_model, tmp_path, crowding_range=[1e-4, 1.0],
                                   shared=([0.0, 0.1], [0.5, 20.0])), threads=1)
    tiles = tile_image(hdu, model.spec.tile_arcsec * u.arcsec)
    table = count_sources(tiles, model, threads=1, progress=False)
    head = np.asarray(table["n_compact_pred"]).copy()
    sources = classify_morphology(find_sources(hdu, "photutils"), hdu, model, threads=1,
                                  progress=False)
    compact = np.asarray(sources["morph_flag"]) == "compact_by_measurement"
    resolved = np.flatnonzero(~compact)
    assert len(resolved) and compact.sum() > 10
    pieces = np.flatnonzero(compact)[::3]  # a third of them join a resolved source's island
    sources["island_id"][pieces] = sources["island_id"][resolved[0]]
    shared = shares_island(sources, compact)
    assert set(np.flatnonzero(shared)) >= set(pieces)
    assert add_catalogue_counts(table, sources, tiles, model, "photutils",
                                read_image(hdu).beam)
    crowding = table.meta["CROWDING"]
    assert crowding > 0
    weights = np.where(shared, np.interp(sources["snr"], [5.0, 10.0], [0.0, 0.1])
                       * (0.5 + 20.0 * crowding),
                       np.interp(sources["snr"], [5.0, 10.0], [0.2, 1.0]))
    summed = count_in_tiles(sources, tiles, select="all",
                            weights=np.where(compact, weights, 0.0))["n_compact"]
    np.testing.assert_allclose(table["n_compact_pred"], 0.5 + 0.25 * head + summed,
                               rtol=1e-5)
    assert "a curve and a weight of their own" in table["n_compact_pred"].info.description


def test_a_crowded_catalogue_adds_the_sources_its_finder_merged(tiny_model, tmp_path):
    """A combination with a crowding term (heads version 8) adds, to each tile, its summed
    probabilities times the catalogue's compact sources per beam, and records the crowding:
    the same tile gains more in a catalogue twice as crowded."""
    from radiofm.catalogs import count_in_tiles
    from radiofm.image import read_image
    from radiofm.inference import add_catalogue_counts, catalogue_crowding
    from radiofm.tiling import tile_image

    hdu, _ = make_radio_sky((512, 512), seed=4)
    model = load_model(_catalogued(tiny_model, tmp_path, coef=(0.5, 0.25, 1.0, 30.0),
                                   crowding_range=(0.0, 1.0)), threads=1)
    tiles = tile_image(hdu, model.spec.tile_arcsec * u.arcsec)
    counted = count_sources(tiles, model, threads=1, progress=False)
    head = np.asarray(counted["n_compact_pred"]).copy()
    sources = classify_morphology(find_sources(hdu, "photutils"), hdu, model, threads=1,
                                  progress=False)
    beam = read_image(hdu).beam
    compact = np.asarray(sources["morph_flag"]) == "compact_by_measurement"
    weights = np.where(compact, np.interp(sources["snr"], [5.0, 10.0], [0.2, 1.0]), 0.0)
    summed = np.asarray(count_in_tiles(sources, tiles, select="all",
                                       weights=weights)["n_compact"])
    gains = []
    for catalogue in (sources, sources[np.repeat(np.arange(len(sources)), 2)]):
        table = counted.copy()
        assert add_catalogue_counts(table, catalogue, tiles, model, "photutils", beam)
        crowding = catalogue_crowding(catalogue, tiles, beam, np.asarray(
            catalogue["morph_flag"]) == "compact_by_measurement")
        assert table.meta["CROWDING"] == pytest.approx(crowding)
        assert "sources per beam" in table["n_compact_pred"].info.description
        base = 0.5 + 0.25 * head + (2 if len(catalogue) > len(sources) else 1) * summed
        gains.append(np.asarray(table["n_compact_pred"]) - base)
        np.testing.assert_allclose(gains[-1], 30.0 * crowding * (base - 0.5 - 0.25 * head),
                                   rtol=1e-4, atol=1e-5)
    assert (gains[1] >= gains[0]).all() and (gains[1] > gains[0]).any()
    assert not table["ood_flag"].any()


def test_a_catalogue_more_crowded_than_the_fit_masks_every_count(tiny_model, tmp_path):
    """A catalogue more crowded than every field the combination was fitted on (beyond
    CROWDING_TOLERANCE) flags each tile with the reason 'crowding' and masks its count,
    keeping the reasons the tile already had; a combination without the crowding term
    judges it all the same."""
    from radiofm.image import read_image
    from radiofm.inference import add_catalogue_counts, catalogue_crowding
    from radiofm.tiling import tile_image

    hdu, _ = make_radio_sky((512, 512), seed=4)
    beam = read_image(hdu).beam
    probe = load_model(_catalogued(tiny_model, tmp_path), threads=1)
    tiles = tile_image(hdu, probe.spec.tile_arcsec * u.arcsec)
    sources = classify_morphology(find_sources(hdu, "photutils"), hdu, probe, threads=1,
                                  progress=False)
    crowding = catalogue_crowding(sources, tiles, beam, np.asarray(
        sources["morph_flag"]) == "compact_by_measurement")
    for coef in ((0.5, 0.25, 1.0, 30.0), (0.5, 0.25, 1.0)):
        model = load_model(_catalogued(tiny_model, tmp_path, coef=coef,
                                       crowding_range=(crowding / 10, crowding / 2)),
                           threads=1)
        table = count_sources(tiles, model, threads=1, progress=False)
        table["ood_reason"] = ["noise"] + [""] * (len(table) - 1)
        assert add_catalogue_counts(table, sources, tiles, model, "photutils", beam)
        assert table["ood_flag"].all() and table["n_compact_pred"].mask.all()
        assert table["n_compact_pred_err"].mask.all()
        assert table["ood_reason"][0] == "noise,crowding"
        assert (table["ood_reason"][1:] == "crowding").all()
        assert "crowding" in table["ood_reason"].info.description
        assert table.meta["CROWDING"] == pytest.approx(crowding)


def test_catalogue_crowding_is_compact_sources_per_beam_over_finite_pixels():
    """Compact sources per beam solid angle (pi major minor / 4 ln 2) over the tiles'
    finite pixels: other detections (an artefact's) do not count, and blanking half the
    image halves the area, not the sources inside it."""
    from radiofm.image import read_image
    from radiofm.inference import catalogue_crowding
    from radiofm.tiling import tile_image

    hdu, truth = make_radio_sky((512, 512), seed=4)
    image = read_image(hdu)
    tiles = tile_image(image, 256)
    major, minor = (axis.to_value(u.arcsec) for axis in image.beam[:2])
    pixel = image.pixel_scale.to_value(u.arcsec)
    beams = 512 * 512 * pixel**2 / (np.pi * major * minor / (4 * np.log(2)))
    every = np.ones(len(truth), bool)
    assert catalogue_crowding(truth, tiles, image.beam, every) == pytest.approx(
        len(truth) / beams)
    compact = np.arange(len(truth)) % 3 > 0  # the rest, say, an artefact's detections
    assert catalogue_crowding(truth, tiles, image.beam, compact) == pytest.approx(
        compact.sum() / beams)
    hdu.data[..., 256:] = np.nan
    right = truth["x_center"] >= 256
    half = tile_image(read_image(hdu), 256, min_valid=0.0)
    assert catalogue_crowding(truth[~right], half, image.beam, every[~right]) == pytest.approx(
        (~right).sum() / (beams / 2))


def test_annotate_combines_counts_only_with_the_sources_it_finds(tiny_model, tmp_path):
    """``radiofm annotate`` combines the counts with the catalogue when it found the sources
    itself with the head's finder; with the user's catalogue it keeps the head's count."""
    from radiofm.survey import annotate_image

    hdu, truth = make_radio_sky((512, 512), seed=4)
    image = tmp_path / "sky.fits"
    hdu.writeto(image)
    model = _catalogued(tiny_model, tmp_path)
    annotate_image(image, tmp_path / "found", model=model, finder="photutils", threads=1,
                   progress=False)
    found = QTable.read(tmp_path / "found" / "sky_tiles.ecsv")
    assert found.meta["COUNTCAT"] == "photutils"
    catalogue = tmp_path / "own.ecsv"
    truth.write(catalogue)
    annotate_image(image, tmp_path / "own", model=model, catalog=catalogue, threads=1,
                   progress=False)
    own = QTable.read(tmp_path / "own" / "sky_tiles.ecsv")
    assert "COUNTCAT" not in own.meta
    assert not np.allclose(own["n_compact_pred"], found["n_compact_pred"])


def _peaks_judged(tiny_model, folder, low, high, coef=None, windows=1):
    """The tiny model whose MeerKAT-sim count head records training fields of ``low`` to
    ``high`` median peaks per tile above an input level of 0.5 (heads version 9); with
    ``coef``, also a photutils combination that judges the crowding of any catalogue."""
    def judge(heads):
        heads["counts"]["regimes"][0]["field_peaks"] = {"level": 0.5, "range": [low, high]}
        if coef is not None:
            heads["counts"]["regimes"][0]["catalogues"] = [{
                "finder": "photutils", "snr": [5.0, 10.0], "probability": [0.2, 1.0],
                "coef": list(coef), "dispersion": 2.0, "crowding_range": [0.0, 1.0]}]
    return _with_heads(tiny_model, folder,
                       f"peaks_{low:g}_{high:g}_{coef is not None}_{windows}",
                       threshold=1e6, count_dispersion=1.0, change=judge,
                       count_windows=windows,
                       count_regimes=[("MeerKAT-sim", [6.5, 8.6], 1.0, 1.0)])


@pytest.mark.parametrize("windows", [1, 2])
def test_an_image_unlike_the_count_heads_fields_in_peaks_masks_every_count(tiny_model,
                                                                          tmp_path, windows):
    """The count head alone, fitted on fields of one depth, undercounts a deeper one: an
    image whose median peaks per tile lie beyond its training fields' (heads version 9,
    FIELD_PEAKS_TOLERANCE) has every tile flagged 'peaks' and its count masked; within the
    range nothing is flagged, and the median is recorded either way. A head that reads
    windows sums each tile's windows' peaks."""
    from radiofm.models import FIELD_PEAKS_TOLERANCE, peak_features
    from radiofm.tiling import tile_image

    hdu, _ = make_radio_sky((512, 512), seed=4)
    known = load_model(_peaks_judged(tiny_model, tmp_path, 0.0, 1e6, windows=windows),
                       threads=1)
    assert known.heads.count_windows == windows
    table = count_sources(hdu, known, threads=1, progress=False)
    median = table.meta["PEAKS"]
    assert median > 2 and not table["ood_flag"].any()
    assert not table["n_compact_pred"].mask.any()
    tiles = tile_image(hdu, known.spec.tile_arcsec * u.arcsec)
    stretch = known.spec.fit_stretch(tiles.image)
    cells = known.heads.count_windows ** 2
    counted = []
    for _, inputs in known.spec.stream_tiles(tiles, stretch, windows=known.heads.count_windows,
                                             progress=False):
        counted.extend(peak_features(inputs, 0.5)[:, 0].reshape(-1, cells).sum(axis=1))
    assert median == pytest.approx(np.median(counted))
    edge = median / FIELD_PEAKS_TOLERANCE
    for low, high, flagged in ((edge * 1.01, edge * 1.01, False),  # within the tolerance
                               (median * 2, median * 3, True), (edge / 2, edge / 1.1, True)):
        model = load_model(_peaks_judged(tiny_model, tmp_path, low, high, windows=windows),
                           threads=1)
        table = count_sources(hdu, model, threads=1, progress=False)
        assert table.meta["PEAKS"] == pytest.approx(median)
        assert table["ood_flag"].all() == flagged and table["ood_flag"].any() == flagged
        assert table["n_compact_pred"].mask.all() == flagged
        assert all(("peaks" in reason) == flagged for reason in table["ood_reason"])


def test_a_catalogue_combination_that_judges_the_crowding_lifts_the_peaks_flag(tiny_model,
                                                                             tmp_path):
    """A combination that judges the catalogue's crowding counts deep fields (it reads the
    crowding): it replaces the head's 'peaks' flag, keeping every other reason."""
    from radiofm.image import read_image
    from radiofm.inference import add_catalogue_counts
    from radiofm.tiling import tile_image

    hdu, _ = make_radio_sky((512, 512), seed=4)
    model = load_model(_peaks_judged(tiny_model, tmp_path, 1e4, 1e5,
                                     coef=(0.5, 0.25, 1.0, 30.0)), threads=1)
    tiles = tile_image(hdu, model.spec.tile_arcsec * u.arcsec)
    table = count_sources(tiles, model, threads=1, progress=False)
    assert table["ood_flag"].all() and (table["ood_reason"] == "peaks").all()
    table["ood_reason"] = ["noise,peaks"] + list(table["ood_reason"][1:])
    sources = classify_morphology(find_sources(hdu, "photutils"), hdu, model, threads=1,
                                  progress=False)
    assert add_catalogue_counts(table, sources, tiles, model, "photutils",
                                read_image(hdu).beam)
    assert table["ood_reason"][0] == "noise" and table["ood_flag"][0]
    assert table["n_compact_pred"].mask[0]
    assert not table["ood_flag"][1:].any() and (table["ood_reason"][1:] == "").all()
    assert not table["n_compact_pred"].mask[1:].any()

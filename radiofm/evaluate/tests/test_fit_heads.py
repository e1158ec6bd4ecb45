"""fit_output_heads and write_heads: numpy heads fitted on an ONNX model's embeddings."""

import numpy as np
import pytest

from radiofm.evaluate import expected_calibration_error, fit_output_heads, write_heads
from radiofm.inference import load_model
from radiofm.models import PEAK_FEATURES, ModelMetadataError, parse_heads


def test_expected_calibration_error():
    confident = np.array([[0.9, 0.1]] * 10)
    assert expected_calibration_error(confident, np.zeros(10, int)) == pytest.approx(0.1)
    assert expected_calibration_error(confident, np.ones(10, int)) == pytest.approx(0.9)


def test_the_sweep_estimator_bins_by_count_while_accuracy_rises():
    # four stamps at 0.5 (three right), four at 0.9 (three right): two equal-count bins keep
    # accuracy level, three would make it fall, so the sweep stops at two
    probabilities = np.array([[0.5, 0.5]] * 4 + [[0.9, 0.1]] * 4)
    labels = np.array([1, 0, 0, 0, 0, 0, 0, 1])
    assert expected_calibration_error(probabilities, labels, "sweep") == pytest.approx(
        0.5 * 0.25 + 0.5 * 0.15)
    assert expected_calibration_error(probabilities, labels, 1) == pytest.approx(0.05)


def test_the_sweep_estimator_is_less_biased_on_a_few_hundred_calibrated_items():
    rng = np.random.default_rng(1)
    widths, sweeps = [], []
    for _ in range(40):
        confidence = rng.uniform(0.3, 0.95, 200)
        probabilities = np.stack([confidence, 1 - confidence], axis=1)
        labels = (rng.random(200) >= confidence).astype(int)  # right with its confidence
        widths.append(expected_calibration_error(probabilities, labels))
        sweeps.append(expected_calibration_error(probabilities, labels, "sweep"))
    assert np.mean(sweeps) < 0.85 * np.mean(widths)


@pytest.mark.parametrize("bins", [0, -3, 2.5, True, "mass"])
def test_bad_calibration_bins_are_refused(bins):
    with pytest.raises(ValueError, match="positive integer or 'sweep'"):
        expected_calibration_error(np.array([[0.9, 0.1]]), np.array([0]), bins)


def test_heads_fitted_on_an_onnx_model_are_written_into_a_copy(tiny_model, shared_data,
                                                                tmp_path, monkeypatch):
    pytest.importorskip("onnx")
    from radiofm.evaluate import MORPHOLOGY_STAMP_ARCSEC, _fit_heads

    embedded = {}  # the stamps each data set was embedded from

    def spy(embedder, data, cache, tag):
        embedded[tag] = data.stamps.shape
        return embed(embedder, data, cache, tag)

    embed = _fit_heads._embed
    monkeypatch.setattr(_fit_heads, "_embed", spy)
    heads = fit_output_heads(str(tiny_model), shared_data, limit=6, finder="photutils",
                             artefact_fields=2, depth_fields=0, cache=tmp_path / "cache",
                             catalogue_finders=("photutils",))
    # the morphology head reads RadioGalaxyDataset's 540" images cut to their central 270"
    assert MORPHOLOGY_STAMP_ARCSEC == heads["morphology"]["stamp_arcsec"] == 270.0
    assert embedded["morphology_6"][1:] == (150, 150)
    parsed = parse_heads(heads, embedding_dim=96)
    assert set(heads["counts"]["figures"]) == {"counts_first", "counts_simulated",
                                                "counts_simulated_artefacts"}
    assert "peak >= 5 sigma" in parsed.count_description
    assert not parsed.count_reads_peaks  # a percentile stretch has no S/N to peak at
    assert parsed.count_field_peaks(7.5) is None and parsed.count_field_peaks() is None
    # a count GLM per training beam is kept where it beats the pooled one on validation
    validation = heads["counts"]["regime_validation"]
    assert set(validation) == {"FIRST", "MeerKAT-sim"}
    for name, scores in validation.items():
        assert scores["kept"] == (scores["regime_deviance"] < 0.99 * scores["pooled_deviance"])
        assert (name in parsed.count_regimes) == scores["kept"]
    assert set(heads["counts"]["figures_pooled"]) == set(heads["counts"]["figures"])
    assert parsed.temperature > 0 and parsed.has_reference("stamps")
    # C and the temperature are chosen on a stratified fifth of train (one of each class's
    # 6 stamps), never on the literature valid split
    items = heads["fitted"]["items"]
    assert (items["morphology_train"], items["morphology_choice"]) == (20, 4)
    assert {"ece_test", "ece_test_sweep"} <= set(heads["morphology"]["figures"])
    assert sorted((tmp_path / "cache").iterdir())  # embeddings cached for the next fit
    out = tmp_path / "headed.onnx"
    figures = write_heads(tiny_model, out, heads=heads)
    assert figures["ood_thresholds"]["tiles"] == heads["ood"]["tiles"]["threshold"]
    model = load_model(out, threads=1)
    assert model.heads is not None and model.class_names == parsed.classes
    assert model.spec.stamp_arcsec == 270.0  # inference frames sources as the head was fitted
    with pytest.raises(FileExistsError, match="pass overwrite=True"):
        write_heads(tiny_model, out, heads=heads)
    heads["counts"]["coef"] = heads["counts"]["coef"][:3]
    with pytest.raises(ModelMetadataError, match="counts.coef has shape"):
        write_heads(tiny_model, tmp_path / "bad.onnx", heads=heads)
    assert not (tmp_path / "bad.onnx").exists()


def test_radiogalaxy_valid_split_is_used_by_no_probe(shared_data):
    """The data README makes RadioGalaxyDataset's literature valid split an evaluation split:
    it is neither fitted nor chosen on (the probes cross-validate on train, the heads carve
    their choice set from train)."""
    from radiofm.datasets import load_radio_galaxy_dataset
    from radiofm.evaluate import load_task_data

    data = load_task_data("morphology", shared_data, limit=5)
    literature = np.asarray(load_radio_galaxy_dataset(shared_data).head(5, by="label")
                            .table["split"])
    assert set(data.split) == {"train", "test", "excluded"}
    np.testing.assert_array_equal(data.split == "excluded", literature == "valid")
    np.testing.assert_array_equal(data.split == "train", literature == "train")


def test_morphology_stamps_larger_than_radiogalaxy_images_are_refused(tiny_model,
                                                                      shared_data):
    with pytest.raises(ValueError, match="cannot cut 333 x 333 pixels from stamps of 300 x"):
        fit_output_heads(str(tiny_model), shared_data, limit=2, finder="photutils",
                         artefact_fields=0, depth_fields=0, simulated_fields=1,
                         stamp_arcsec=600)


def test_the_choice_set_is_a_stratified_share_of_train():
    from radiofm.evaluate._fit_heads import _stratified_carve

    labels = np.repeat([0, 1, 2], [10, 20, 50])
    train = np.ones(80, bool)
    train[::8] = False
    carve = _stratified_carve(labels, train, 0.2)
    assert not (carve & ~train).any()
    assert [carve[labels == k].sum() for k in range(3)] == [2, 4, 9]
    np.testing.assert_array_equal(carve, _stratified_carve(labels, train, 0.2))  # seeded
    assert (~_stratified_carve(labels, train, 0.99) & train).sum() == 3  # one left per class
    with pytest.raises(ValueError, match="class 1 has 1 training stamp"):
        _stratified_carve(labels, train & ((labels != 1) | (np.arange(80) == 12)), 0.2)


def test_equal_prior_weights_give_every_class_the_same_total():
    from radiofm.evaluate._fit_heads import _equal_prior_weights, _weighted_nll

    labels = np.array([2, 0, 0, 0, 2, 0])
    weights = _equal_prior_weights(labels)
    assert weights.mean() == pytest.approx(1.0)
    assert weights[labels == 0].sum() == pytest.approx(weights[labels == 2].sum())
    # two items, probabilities 0.5 and 0.8 of their labels, weighted 1 and 3
    logits = np.log(np.array([[0.5, 0.5], [0.2, 0.8]]))
    assert _weighted_nll(logits, np.array([0, 1]), np.array([1.0, 3.0])) == pytest.approx(
        (-np.log(0.5) - 3 * np.log(0.8)) / 4)


def test_the_morphology_head_gives_probabilities_for_equal_class_priors():
    """Training data of 4 to 1 whose features tell the classes apart only a little: a head
    that learnt the training mix would call a feature-neutral source class 0 at about 0.8."""
    from radiofm.evaluate._fit_heads import _calibrated_logistic

    rng = np.random.default_rng(0)

    def sample(counts):
        labels = np.repeat([0, 1], counts)
        return rng.normal(0.3 * labels[:, None], 1.0, (len(labels), 3)), labels

    model, temperature = _calibrated_logistic(*sample([800, 200]), *sample([200, 50]))
    neutral = np.full((1, 3), 0.15)  # halfway between the two class means
    logit = model.decision_function(neutral)[0] / temperature
    assert 1 / (1 + np.exp(-logit)) == pytest.approx(0.5, abs=0.1)
    assert temperature > 0


def test_a_beam_regime_is_kept_only_where_it_counts_its_tiles_better():
    """Two data sets whose counts follow the embedding in opposite ways: one pooled GLM fits
    neither, so each beam gets its own; a data set like the others gets none."""
    from radiofm.evaluate._fit_heads import _beam_regimes

    rng = np.random.default_rng(3)
    n = 3000
    x = rng.normal(0, 1, (2 * n, 4))
    source = np.repeat(["counts_first", "counts_simulated"], n)
    sign = np.where(source == "counts_first", 1.0, -1.0)
    y = rng.poisson(np.exp(1.0 + sign * x[:, 0])).astype(float)
    tile = np.arange(2 * n) // 3  # three windows per tile
    train = np.ones(2 * n, bool)
    regimes, validation, pooled_dispersion = _beam_regimes(x, y, train, source, tile)
    assert [r["name"] for r in regimes] == ["FIRST", "MeerKAT-sim"]
    assert all(v["kept"] and v["regime_r2"] > v["pooled_r2"] for v in validation.values())
    assert regimes[0]["beam_range_arcsec"] == pytest.approx([5.4 / 1.15, 5.4 * 1.15])
    assert regimes[0]["coef"][0] > 0.8 and regimes[1]["coef"][0] < -0.8  # standardised x
    # each regime's counts are Poisson draws of its own GLM (a tile sums 3 windows): its
    # dispersion is about 1; the pooled GLM fits neither beam, so its tiles scatter more
    assert all(0.8 < r["dispersion"] < 1.25 for r in regimes)
    assert pooled_dispersion > 2
    # the pooled GLM counts beams it has no regime for: its largest scatter on any beam
    assert pooled_dispersion == max(v["pooled_dispersion"] for v in validation.values())

    same = rng.poisson(np.exp(1.0 + x[:, 0])).astype(float)
    regimes, validation, _ = _beam_regimes(x, same, train, source, tile)
    assert regimes == [] and not any(v["kept"] for v in validation.values())



def test_each_data_set_holds_out_its_own_fifth():
    """The regimes' validation tiles: a fifth of each data set's training tiles, the same
    whatever other data sets the fit holds (a depth set added once moved FIRST's validation
    tiles, and with them FIRST's choice of reading the peaks)."""
    from radiofm.evaluate._fit_heads import _held_out_tiles

    source = np.repeat(["counts_first", "counts_simulated", "counts_simulated_depths"],
                       [300, 150, 90])
    tile = np.arange(len(source)) // 3  # three windows per tile
    train = np.ones(len(source), bool)
    train[:30] = False  # FIRST's first ten tiles are test tiles
    held = _held_out_tiles(tile, train, source, seed=2)
    for name, tiles in (("counts_first", 90), ("counts_simulated", 50),
                        ("counts_simulated_depths", 30)):
        own = np.unique(tile[train & (source == name)])
        assert np.isin(held, own).sum() == tiles // 5
    assert not np.isin(held, tile[~train]).any()
    without = source != "counts_simulated_depths"
    fewer = _held_out_tiles(tile[without], train[without], source[without], seed=2)
    assert set(fewer) == set(held[np.isin(held, tile[without])])
    assert set(_held_out_tiles(tile, train, source, seed=3)) != set(held)

def test_a_regime_reads_the_peaks_where_they_count_its_tiles_better():
    """Counts of one beam follow the windows' peaks, which the embedding does not hold:
    that regime's GLM reads them; the pooled GLM reads the embedding alone."""
    from radiofm.evaluate._fit_heads import _beam_regimes

    rng = np.random.default_rng(6)
    n = 3000
    x = rng.normal(0, 1, (2 * n, 4))
    n_peaks = rng.poisson(3.0, 2 * n).astype(float)
    peaks = np.column_stack([n_peaks, n_peaks, np.log1p(n_peaks), np.log1p(n_peaks)])
    source = np.repeat(["counts_first", "counts_simulated"], n)
    y = np.where(source == "counts_first", n_peaks, rng.poisson(np.exp(1.0 + x[:, 0])))
    tile = np.arange(2 * n) // 3
    regimes, validation, _ = _beam_regimes(x, y.astype(float), np.ones(2 * n, bool), source,
                                           tile, peaks=peaks, peak_level=2.3)
    first = validation["FIRST"]
    assert first["reads_peaks"] and first["regime_peaks_r2"] > first["regime_r2"] + 0.3
    regime = next(r for r in regimes if r["name"] == "FIRST")
    assert regime["peak_level"] == 2.3 and len(regime["coef"]) == 8
    assert "5-sigma peaks" in regime["description"]


def test_the_count_uncertainty_covers_two_thirds_of_new_tiles():
    """Counts scattered more than Poisson draws (sources that come in pairs): the
    held-out dispersion measures the extra scatter, and one error sqrt(dispersion x
    prediction), as `Heads.count_errors` gives it, holds the truth of about two thirds of
    tiles it never saw (one sigma of a normal); a Poisson error alone (dispersion 1)
    would hold far fewer."""
    from radiofm.evaluate._fit_heads import _beam_regimes, _poisson
    from radiofm.models import PoissonGlm

    rng = np.random.default_rng(4)

    def draw(n):
        x = rng.normal(0, 1, (n, 3))
        rate = np.exp(2.0 + 0.5 * x[:, 0])
        return x, 2.0 * rng.poisson(rate / 2)  # mean rate, variance 2 x rate

    x, y = draw(4000)
    source, tile = np.full(len(y), "counts_first"), np.arange(len(y))
    # one beam only: no regime is better than the pooled GLM, whose dispersion this is
    regimes, _, dispersion = _beam_regimes(x, y, np.ones(len(y), bool), source, tile)
    assert regimes == [] and dispersion == pytest.approx(2.0, rel=0.15)
    x_new, y_new = draw(2000)
    predicted = PoissonGlm(_poisson(x, y, tile), 3, "test").predict(x_new)
    within = np.abs(y_new - predicted) <= np.sqrt(dispersion * predicted)
    assert 0.6 < within.mean() < 0.78
    assert (np.abs(y_new - predicted) <= np.sqrt(predicted)).mean() < 0.55


def test_the_count_penalty_is_chosen_on_tiles_held_out_whole():
    """The windows of a tile share its field (here a random effect on the counts that no
    feature carries, and a fingerprint every window of the tile carries). Held out one by
    one, a window's neighbours teach the GLM its tile's effect through the fingerprint and
    the search picks a weak penalty that fails on new tiles; held out whole, tiles choose a
    stronger one that counts new tiles better."""
    from sklearn.metrics import mean_poisson_deviance

    from radiofm.evaluate._fit_heads import _poisson, _poisson_rate

    rng = np.random.default_rng(0)

    def draw(tiles, windows=9, dim=20):
        tile = np.repeat(np.arange(tiles), windows)
        fingerprint = (rng.normal(size=(tiles, dim))[tile]
                       + 0.1 * rng.normal(size=(len(tile), dim)))
        signal = rng.normal(size=(len(tile), 1))
        effect = rng.normal(0, 0.7, tiles)[tile]
        y = rng.poisson(np.exp(0.3 + 0.5 * signal[:, 0] + effect)).astype(float)
        return np.concatenate([signal, fingerprint], axis=1), y, tile

    x, y, tile = draw(60)
    x_new, y_new, tile_new = draw(200)
    by_tiles, by_windows = _poisson(x, y, tile), _poisson(x, y, np.arange(len(y)))
    assert by_tiles["alpha"] > by_windows["alpha"]
    truth = np.bincount(tile_new, y_new)
    deviance = {name: mean_poisson_deviance(truth,
                                            np.bincount(tile_new, _poisson_rate(glm, x_new)))
                for name, glm in [("tiles", by_tiles), ("windows", by_windows)]}
    assert deviance["tiles"] < 0.9 * deviance["windows"]


def test_a_count_penalty_needs_two_tiles():
    from radiofm.evaluate._fit_heads import _poisson

    with pytest.raises(ValueError, match="at least 2 are needed"):
        _poisson(np.ones((9, 2)), np.ones(9), np.zeros(9))


def test_a_windowed_count_head_is_fitted_on_window_counts(tiny_model, shared_data, tmp_path):
    """With count_windows the head learns each window's own count, and its test figures
    are per tile: the sum of the tile's windows against the tile's count."""
    heads = fit_output_heads(str(tiny_model), shared_data, limit=4, finder="photutils",
                             artefact_fields=0, depth_fields=0, count_windows=3,
                             cache=tmp_path, catalogue_finders=())
    parsed = parse_heads(heads, embedding_dim=96)
    assert parsed.count_windows == 3 and "3 x 3 windows, summed" in parsed.count_description
    # what export and fit-heads write gives every count an uncertainty, and says how often
    # the test tiles' truth fell within it
    assert heads["counts"]["dispersion"] > 0 and parsed.count_errors(np.array([4.0]))[0] > 0
    simulated = heads["counts"]["figures"]["counts_simulated"]
    assert 0 <= simulated["within_1_error"] <= 1 and simulated["variance_ratio"] > 0
    from radiofm.evaluate._stamps import _simulated_count_tiles

    tiles = _simulated_count_tiles("snr", 1, 512, first_seed=1002)
    windows = _simulated_count_tiles("snr", 1, 512, first_seed=1002, windows=3)
    np.testing.assert_array_equal(np.bincount(windows.extra["tile"], windows.target),
                                  tiles.target)
    with pytest.raises(ValueError, match="README's example sky"):
        _simulated_count_tiles("snr", 30, 256, first_seed=2000)


def test_depth_skies_each_have_a_noise_of_their_own():
    """The count heads' depth skies: each seed its own noise, log-uniform in DEPTH_NOISE,
    the same on every call; the other count sets stay at the simulator's noise. A deeper
    sky holds more true compact sources above 5 sigma, the label the heads learn."""
    from radiofm.evaluate._stamps import DEPTH_NOISE, _simulated_count_tiles, _simulated_sky

    noise = [_simulated_sky(seed, 256, depths=True)[1].meta["SIMNOISE"]
             for seed in range(3000, 3012)]
    assert all(DEPTH_NOISE[0] <= n <= DEPTH_NOISE[1] for n in noise)
    assert len(set(noise)) == 12 and min(noise) < 3e-6 and max(noise) > 6e-6
    assert _simulated_sky(3000, 256, depths=True)[1].meta["SIMNOISE"] == noise[0]
    assert _simulated_sky(3000, 256)[1].meta["SIMNOISE"] == 4e-6
    seeds = np.argsort(noise)[[0, -1]] + 3000  # the deepest and the shallowest
    deep, shallow = (_simulated_count_tiles("snr", 1, 1024, first_seed=int(seed),
                                            artefacts=True, depths=True).target.sum()
                     for seed in seeds)
    assert deep > 2 * shallow


class _PixelStatistics:
    """An embedder of a model on the S/N stretch: a few pixel statistics of each input."""

    name, input_size, normalization = "pixel-statistics", 32, {"method": "snr",
                                                                "softening": 2.0}

    def embed(self, inputs):
        flat = np.asarray(inputs, np.float64).reshape(len(inputs), -1)
        return np.column_stack([flat.mean(1), flat.std(1), (flat > 1).mean(1),
                                np.percentile(flat, 99, axis=1)])


def test_a_model_on_the_snr_stretch_gets_a_count_head_that_reads_peaks(shared_data,
                                                                       tmp_path):
    """On the S/N stretch each regime's count GLM reads each window's 5-sigma peaks (at
    the stretch's own 5-sigma level) beside the embedding where they help on its held-out
    tiles, the pooled GLM never (other stretches give the embedding alone: the tiny
    model's percentile one, above)."""
    from radiofm.evaluate._embedders import normalization_of
    from radiofm.evaluate._stamps import _simulated_count_tiles
    from radiofm.models import peak_features

    options = dict(limit=4, finder="photutils", artefact_fields=0, depth_fields=0,
                   count_windows=2, cache=tmp_path, catalogue_finders=())
    heads = fit_output_heads(_PixelStatistics(), shared_data, **options)
    parse_heads(heads, embedding_dim=4)
    counts = heads["counts"]
    assert "peak_level" not in counts and len(counts["coef"]) == 4  # the pooled GLM
    validation = counts["regime_validation"]
    assert all("regime_peaks_deviance" in scores for scores in validation.values())
    for regime in counts["regimes"]:
        reads = validation[regime["name"]]["reads_peaks"]
        scores = validation[regime["name"]]
        assert reads == (scores["regime_peaks_deviance"] < scores["regime_deviance"]
                         and scores["regime_peaks_r2"] > scores["regime_r2"])
        assert ("peak_level" in regime) == reads
        assert len(regime["coef"]) == 4 + reads * len(PEAK_FEATURES)
        if reads:
            assert regime["peak_level"] == pytest.approx(np.arcsinh(5.0 / 2.0))
            assert "5-sigma peaks" in regime["description"]
    assert counts["figures"]["counts_simulated"]["r2"] is not None
    # heads version 9: each GLM knows its training fields' median 5-sigma peaks per tile;
    # the simulated skies (one depth, far more sources than FIRST's fields) span a narrow
    # range, the pooled GLM's spans both
    level = np.arcsinh(5.0 / 2.0)
    ranges = {regime["name"]: regime["field_peaks"]["range"] for regime in counts["regimes"]}
    ranges["pooled"] = counts["field_peaks"]["range"]
    assert all(glm["field_peaks"]["level"] == pytest.approx(level)
               for glm in [counts, *counts["regimes"]])
    sky = _simulated_count_tiles(normalization_of(_PixelStatistics()), 1, 1024,
                                 first_seed=1000, windows=2)
    peaks = np.bincount(sky.extra["tile"], peak_features(sky.prepared(32), level)[:, 0])
    assert ranges["MeerKAT-sim"][0] <= np.median(peaks) <= ranges["MeerKAT-sim"][1]
    assert ranges["pooled"][0] <= ranges["FIRST"][1] < ranges["MeerKAT-sim"][0]
    assert ranges["pooled"][1] == ranges["MeerKAT-sim"][1]
    heads_again = fit_output_heads(_PixelStatistics(), shared_data,
                                   **{**options, "count_peaks": False})
    assert heads_again["counts"]["field_peaks"] == counts["field_peaks"]  # read or not
    # fit-heads and export --embedding-counts-only ask for the embedding alone
    from radiofm.cli import _head_fit_options, build_parser

    args = build_parser().parse_args(["fit-heads", "m.onnx", "-o", "out",
                                      "--embedding-counts-only"])
    assert _head_fit_options(args) == {"count_peaks": False}
    assert _head_fit_options(build_parser().parse_args(["fit-heads", "m.onnx", "-o",
                                                          "out"])) == {}


def test_cached_embeddings_follow_the_prepared_inputs(tmp_path):
    """A changed stretch (or data set) under the same tag is embedded again, not read back."""
    from radiofm.evaluate._fit_heads import _embed
    from radiofm.evaluate._stamps import TaskData, _own_normalizations

    class Summing:  # an embedder that records its calls
        name, input_size, calls = "summing", 8, 0

        def embed(self, x):
            Summing.calls += 1
            return x.reshape(len(x), -1).sum(axis=1, keepdims=True)

    stamps = np.zeros((3, 16, 16), np.float32)
    stamps[:, 8, 8] = [5.0, 10.0, 20.0]
    stamps += np.random.default_rng(0).normal(0.0, 1.0, stamps.shape).astype(np.float32)

    def data(spec):
        return TaskData("toy", stamps, _own_normalizations(stamps, spec), np.zeros(3),
                        np.array(["train"] * 3))

    first, _ = _embed(Summing(), data("snr"), tmp_path, "toy")
    again, _ = _embed(Summing(), data("snr"), tmp_path, "toy")
    assert Summing.calls == 1 and np.array_equal(first, again)  # read back
    other, _ = _embed(Summing(), data({"method": "snr", "softening": 3.0}), tmp_path, "toy")
    assert Summing.calls == 2 and not np.allclose(first, other)  # embedded again
    assert len(list(tmp_path.glob("*_toy_*.npz"))) == 2


def test_a_checkpoint_trained_further_under_the_same_name_is_embedded_again(tmp_path):
    """Checkpoint embedders have no file sha256: their cache key holds their weights' digest
    and readout, so a resumed run's rewritten checkpoint.pt is not read back stale."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("timm")
    from radiofm.evaluate._fit_heads import _embedder_key
    from radiofm.export._export import TorchEmbedder
    from radiofm.tests.model_helpers import tiny_backbone
    from radiofm.train import StagePooled

    def embedder(backbone):
        return TorchEmbedder(backbone, input_size=32, normalization="snr",
                             name="run/checkpoint.pt", arch="test_resnet")

    key = _embedder_key(embedder(tiny_backbone(seed=0)))
    assert _embedder_key(embedder(tiny_backbone(seed=0))) == key
    trained = tiny_backbone(seed=0)
    with torch.no_grad():
        next(trained.parameters())[0] += 1e-3  # one more step
    assert _embedder_key(embedder(trained)) != key
    staged = StagePooled(tiny_backbone(seed=0), [3, 4])
    assert _embedder_key(embedder(staged)) != key


def test_cached_simulated_catalogues_are_read_back_per_finder_and_sky(tmp_path, monkeypatch):
    """The skies' catalogues come back from the cache unchanged, without the finder; another
    sky, or another finder version, is searched again."""
    from radiofm.evaluate import _stamps
    from radiofm.sources import find_sources

    calls = []

    def counting(image, method):
        calls.append(method)
        return find_sources(image, method)

    monkeypatch.setattr("radiofm.sources.find_sources", counting)
    first = _stamps._simulated_catalogues(1, 512, first_seed=7, cache=tmp_path)
    again = _stamps._simulated_catalogues(1, 512, first_seed=7, cache=tmp_path)
    assert calls == ["photutils"] and len(first["snr"]) > 10
    for key in first:
        assert np.array_equal(first[key], again[key])
    _stamps._simulated_catalogues(1, 512, first_seed=8, cache=tmp_path)
    monkeypatch.setitem(_stamps.CACHE_VERSIONS, "photutils", "changed")
    _stamps._simulated_catalogues(1, 512, first_seed=7, cache=tmp_path)
    assert len(calls) == 3
    assert len(list(tmp_path.glob("catalogue_photutils_*.ecsv"))) == 3


def test_each_test_tile_is_scored_with_its_own_heads_dispersion():
    """Tiles of two data sets counted by heads of different dispersions, with the same
    misses: each tile's error is sqrt(its head's dispersion x its predicted count), so the
    wide head holds its truth and the narrow one does not; train tiles are not scored."""
    from radiofm.evaluate._fit_heads import _test_tile_figures

    tile = np.repeat(np.arange(8), 3)  # 8 tiles of 3 windows
    source = np.repeat(["counts_first"] * 4 + ["counts_simulated"] * 4, 3)
    split = np.repeat(["test", "test", "test", "train"] * 2, 3)
    rate = np.full(24, 3.0)  # 9 per tile
    target = rate + np.tile([1.0, 1.0, 1.0, 1.0, 1.0, 1.0, -1.0, -1.0, -1.0, 0, 0, 0], 2)
    dispersion = np.where(source == "counts_first", 2.0, 0.1)  # errors 4.24 and 0.95
    figures = _test_tile_figures(tile, source, split, target, rate, dispersion)
    assert figures["counts_first"]["within_1_error"] == 1.0
    assert figures["counts_simulated"]["within_1_error"] == 0.0
    # misses of 3 per tile on the three test tiles of each data set
    assert figures["counts_first"]["mae"] == figures["counts_simulated"]["mae"] == 3.0
    assert figures["counts_first"]["variance_ratio"] == pytest.approx(9 / 18)
    assert figures["counts_simulated"]["variance_ratio"] == pytest.approx(9 / 0.9)


def test_fit_heads_can_measure_the_stretch_in_boxes(tiny_model, tmp_path, monkeypatch):
    """write_heads(box_pixels=) writes a copy whose S/N stretch is measured in boxes, and fits
    its heads through that copy's stretch; a percentile model or a bad box is refused."""
    onnx = pytest.importorskip("onnx")
    import json

    from radiofm.evaluate import _fit_heads
    from radiofm.tests.model_helpers import numpy_heads

    proto = onnx.load(str(tiny_model))
    props = {prop.key: prop.value for prop in proto.metadata_props}
    props["normalization"] = json.dumps({"method": "snr", "softening": 2.0})
    del proto.metadata_props[:]
    onnx.helper.set_model_props(proto, props)
    snr_model = tmp_path / "snr.onnx"
    onnx.save(proto, str(snr_model))

    fitted_with = []

    def fit(path, **options):  # reads the model as fit_output_heads does
        from radiofm.evaluate._embedders import load_embedder, normalization_of

        fitted_with.append((normalization_of(load_embedder(path)), options))
        return numpy_heads(96)

    monkeypatch.setattr(_fit_heads, "fit_output_heads", fit)
    out = tmp_path / "boxed" / "snr.onnx"
    write_heads(snr_model, out, box_pixels=64, limit=3)
    stretch = load_model(out, threads=1).spec.normalization
    assert (stretch.method, stretch.softening, stretch.box_pixels) == ("snr", 2.0, 64)
    assert fitted_with == [(stretch, {"limit": 3})]  # the heads saw the boxed stretch
    assert sorted(p.name for p in out.parent.iterdir()) == ["snr.onnx"]  # no staged copy left
    with pytest.raises(ValueError, match="'snr' stretch; this model uses 'percentile'"):
        write_heads(tiny_model, tmp_path / "pct.onnx", box_pixels=64)
    with pytest.raises(ValueError, match="box_pixels must be an integer >= 8"):
        write_heads(snr_model, tmp_path / "small.onnx", box_pixels=4)
    assert not (tmp_path / "pct.onnx").exists() and not (tmp_path / "small.onnx").exists()
    assert len(fitted_with) == 1
    # the command line passes --box-pixels on (and the model's own stretch without it)
    import radiofm.evaluate
    from radiofm.cli import main

    asked = []
    monkeypatch.setattr(radiofm.evaluate, "write_heads",
                        lambda model, output, **options: asked.append(options) or {})
    for extra in (["--box-pixels", "128", "--stamp-arcsec", "540"], []):
        assert main(["fit-heads", str(snr_model), "-o", str(tmp_path / "cli"), *extra]) == 0
    assert [options["box_pixels"] for options in asked] == [128, None]
    assert [options.get("stamp_arcsec") for options in asked] == [540.0, None]


def test_a_simulated_regime_learns_to_combine_with_a_catalogue(shared_data, tmp_path):
    """A regime fitted on simulated skies alone learns how its counts combine with each
    finder's catalogue of the sky (probabilities non-decreasing in S/N, coefficients >= 0,
    the combination's held-out and test figures recorded); FIRST's regime, whose label is
    itself a finder's count, gets none. The depth skies train the combination's crowding
    correction alone: every GLM, the noise range and the combination at the held-out
    fields' crowding are those of the fit without them."""
    options = dict(limit=4, finder="photutils", artefact_fields=4, count_windows=2,
                   cache=tmp_path, catalogue_finders=("photutils",))
    heads = fit_output_heads(_PixelStatistics(), shared_data, depth_fields=6, **options)
    without = fit_output_heads(_PixelStatistics(), shared_data, depth_fields=0, **options)
    parsed = parse_heads(heads, embedding_dim=4)
    counts = heads["counts"]
    regimes = {regime["name"]: regime for regime in counts["regimes"]}
    assert "MeerKAT-sim" in regimes
    assert all("catalogues" not in regime for name, regime in regimes.items()
               if name != "MeerKAT-sim")
    (catalogue,) = regimes["MeerKAT-sim"]["catalogues"]
    assert catalogue["finder"] == "photutils"
    assert (np.diff(catalogue["probability"]) >= 0).all()
    assert min(catalogue["coef"]) >= 0 and max(catalogue["coef"]) > 0
    held_out = counts["regime_validation"]["MeerKAT-sim"]["catalogues"]["photutils"]
    assert held_out["tiles"] >= 3 and held_out["combined_r2"] >= held_out["glm_r2"] - 1e-6
    assert set(counts["figures_catalogue"]["photutils"]) == {
        "counts_simulated", "counts_simulated_artefacts", "counts_simulated_depths"}
    assert set(parsed.count_catalogues(7.5)) == {"photutils"}
    assert parsed.count_catalogues(5.4) == {}
    # heads version 7: the combination knows the crowding of the skies it was fitted on
    # (the depth skies make it span a range) and judges a catalogue by it
    low, high = catalogue["crowding_range"]
    assert 0 < low < high
    mix = parsed.count_catalogues(7.5)["photutils"]
    assert mix.crowding_known((low + high) / 2) and not mix.crowding_known(3 * high)
    assert len(catalogue["coef"]) == 4 and catalogue["coef"][3] > 0
    assert held_out["deep_tiles"] > 0 and held_out["deep_r2"] > held_out["deep_r2_uncorrected"]
    plain = {regime["name"]: regime for regime in without["counts"]["regimes"]}
    for name, regime in regimes.items():
        np.testing.assert_allclose(regime["coef"], plain[name]["coef"], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(counts["coef"], without["counts"]["coef"], rtol=1e-4, atol=1e-6)
    assert heads["ood"]["noise_range"] == without["ood"]["noise_range"]
    (base,) = plain["MeerKAT-sim"]["catalogues"]
    assert len(base["coef"]) == 3 and base["probability"] == catalogue["probability"]
    at_reference = np.array(catalogue["coef"][:3])
    at_reference[2] += catalogue["coef"][3] * held_out["crowding_reference"]
    np.testing.assert_allclose(at_reference, base["coef"], rtol=1e-4, atol=1e-6)
    from radiofm.cli import _head_fit_options, build_parser

    args = build_parser().parse_args(["fit-heads", "m.onnx", "-o", "out",
                                      "--catalogue-finders", "photutils", "bdsf"])
    assert _head_fit_options(args) == {"catalogue_finders": ["photutils", "bdsf"]}
    args = build_parser().parse_args(["export", "run", "-o", "out", "--depth-fields", "6"])
    assert _head_fit_options(args) == {"depth_fields": 6}


def test_the_catalogue_combination_is_fitted_out_of_fold():
    """Probabilities from the training tiles' sources, the combination on every training
    tile with each tile's probabilities fitted without its fold; with no compact source or
    a single fold there is nothing to fit."""
    from radiofm.evaluate._fit_heads import _catalogue_count

    rng = np.random.default_rng(3)
    tile = rng.integers(0, 40, 4000)
    snr = rng.uniform(4.0, 12.0, 4000)
    counted = rng.random(4000) < np.clip((snr - 4.0) / 4.0, 0, 1)
    sources = {"tile": tile, "snr": snr, "compact": np.ones(4000, bool), "counted": counted,
               "crowding": np.full(4000, 0.01)}
    tiles = np.arange(40)
    truth = np.bincount(tile[counted], minlength=40).astype(float)
    folds = (tiles, truth, np.full(40, truth.mean()), tiles % 5)
    mix = _catalogue_count(sources, folds, "photutils")
    probability = np.interp([4.0, 6.0, 8.0, 11.0], mix["snr"], mix["probability"])
    np.testing.assert_allclose(probability, [0.0, 0.5, 1.0, 1.0], atol=0.12)
    assert mix["validation"]["tiles"] == 40
    assert mix["validation"]["combined_r2"] > 0.5 > mix["validation"]["glm_r2"]
    assert mix["coef"].shape == (3,)  # fields of one crowding: no crowding term
    assert mix["crowding_range"] == [0.01, 0.01]
    none = {**sources, "compact": np.zeros(4000, bool)}
    assert _catalogue_count(none, folds, "photutils") is None
    assert _catalogue_count(sources, (*folds[:3], np.zeros(40, int)), "photutils") is None


def test_pieces_of_resolved_sources_get_a_curve_and_a_weight_of_their_own():
    """Compact sources that share their island with a resolved source, counted half as
    often as the others at the same S/N, get their own isotonic curve (half the other one)
    and the combination counts the tiles better; with fewer than SHARED_MIN_SOURCES of them,
    or none marked, one curve serves all. On depth skies where the pieces are counted more
    often the more crowded the field, the pieces' weight grows with the crowding faster than
    the others' (its slope fitted there), while both curves stay those of the training
    skies."""
    from radiofm.evaluate._fit_heads import SHARED_MIN_SOURCES, _catalogue_count

    rng = np.random.default_rng(5)

    def sky(first_tile, tiles, n, crowding, piece_rate):
        tile = rng.integers(first_tile, first_tile + tiles, n)
        snr = rng.uniform(4.0, 12.0, n)
        shared = rng.random(n) < rng.uniform(0.0, 0.6, first_tile + tiles)[tile]
        rate = np.clip((snr - 4.0) / 4.0, 0, 1) * np.where(shared, piece_rate, 1.0)
        return {"tile": tile, "snr": snr, "compact": np.ones(n, bool), "shared": shared,
                "counted": rng.random(n) < rate, "crowding": np.full(n, crowding)}

    sources = sky(0, 60, 6000, 0.01, 0.5)
    tiles = np.arange(60)
    truth = np.bincount(sources["tile"][sources["counted"]], minlength=60).astype(float)
    folds = (tiles, truth, np.full(60, truth.mean()), tiles % 5)
    mix = _catalogue_count(sources, folds, "photutils")
    at = [6.0, 8.0, 11.0]
    np.testing.assert_allclose(np.interp(at, mix["snr"], mix["probability"]), [0.5, 1, 1],
                               atol=0.1)
    np.testing.assert_allclose(np.interp(at, mix["snr"], mix["shared_probability"]),
                               [0.25, 0.5, 0.5], atol=0.1)
    assert mix["shared_coef"] == [mix["coef"][2], 0.0]  # no depth skies: one weight
    one = _catalogue_count({k: v for k, v in sources.items() if k != "shared"}, folds,
                           "photutils")
    assert "shared_probability" not in one and "shared_coef" not in one
    assert mix["validation"]["combined_r2"] > one["validation"]["combined_r2"] + 0.02
    few = sources["shared"] & (np.cumsum(sources["shared"]) < SHARED_MIN_SOURCES)
    assert "shared_probability" not in _catalogue_count({**sources, "shared": few}, folds,
                                                        "photutils")
    # depth skies: pieces counted as often as any source in a field three times as crowded,
    # half as often in a sparse one
    deep = [sky(60, 10, 3000, 0.03, 1.0), sky(70, 10, 1000, 0.004, 0.5)]
    both = {key: np.concatenate([part[key] for part in [sources, *deep]]) for key in sources}
    deep_truth = np.bincount(both["tile"][both["counted"]], minlength=80)[60:].astype(float)
    mixed = _catalogue_count(both, folds, "photutils",
                             (np.arange(60, 80), deep_truth, np.full(20, truth.mean())))
    np.testing.assert_array_equal(mixed["probability"], mix["probability"])
    np.testing.assert_array_equal(mixed["shared_probability"], mix["shared_probability"])
    reference = mixed["validation"]["crowding_reference"]
    others, pieces = (mixed["coef"][2:], mixed["shared_coef"])
    assert pieces[1] > others[1] + 5.0
    # equal at the training skies' crowding, the pieces' twice the others' at 0.03
    assert pieces[0] + pieces[1] * reference == pytest.approx(
        others[0] + others[1] * reference)
    assert (pieces[0] + pieces[1] * 0.03) / (others[0] + others[1] * 0.03) == pytest.approx(
        2.0, rel=0.25)
    assert mixed["validation"]["deep_r2"] > mixed["validation"]["deep_r2_uncorrected"]


def test_a_tile_counted_out_of_fold_is_counted_by_a_glm_that_never_saw_it():
    """Each training tile's out-of-fold count comes from the regime's GLM fitted on the
    other folds (fold 0: the validation tiles): changing the labels of one fold's tiles
    changes every other fold's counts and none of its own. Test tiles get none; the folds
    keep per set."""
    from radiofm.evaluate._fit_heads import (
        _held_out_tiles,
        _out_of_fold_counts,
        _poisson,
        _tile_folds,
    )

    rng = np.random.default_rng(4)
    tile = np.repeat(np.arange(100), 2)  # two windows per tile
    source = np.where(tile < 60, "counts_simulated", "counts_simulated_artefacts")
    x = rng.normal(size=(200, 3))
    y = rng.poisson(np.exp(0.5 + 0.6 * x[:, 0])).astype(float)
    train = tile >= 10  # tiles 0-9 are test tiles
    regime = {"name": "MeerKAT-sim", **_poisson(x[train], y[train], tile[train])}
    tiles, truth, predicted, fold = _out_of_fold_counts(regime, x, y, train, source, tile)
    np.testing.assert_array_equal(tiles, np.arange(10, 100))
    np.testing.assert_allclose(truth, np.bincount(tile, y)[10:])
    assert set(tiles[fold == 0]) == set(_held_out_tiles(tile, train, source, seed=2))
    _, set_folds = _tile_folds(tile, train & (source == "counts_simulated"), source, seed=2)
    assert np.bincount(set_folds).tolist() == [10, 10, 10, 10, 10]
    assert np.corrcoef(predicted, truth)[0, 1] > 0.5

    few = tile == 99  # one training tile, one fold: nothing to fit without it
    _, _, counted, fold_of_few = _out_of_fold_counts(regime, x, y, few, source, tile)
    assert len(set(fold_of_few)) == 1 and not counted.any()
    changed = y.copy()
    changed[np.isin(tile, tiles[fold == 2])] += 5.0
    _, _, again, _ = _out_of_fold_counts(regime, x, changed, train, source, tile)
    np.testing.assert_allclose(again[fold == 2], predicted[fold == 2])
    assert np.all(again[fold != 2] > predicted[fold != 2])


def test_the_depth_skies_correct_the_combination_for_crowding():
    """Fields where the finder merges a share of the sources growing with their crowding:
    fitted on the depth skies' tiles, the crowding correction gets weight and counts their
    crowded tiles without the bias of the combination blind to crowding, which it leaves as
    it was at the held-out fields' crowding; without depth skies there is no correction."""
    from radiofm.evaluate._fit_heads import _catalogue_count

    rng = np.random.default_rng(5)
    tiles = np.arange(240)
    crowding = np.select([tiles < 120, tiles % 2 == 0], [0.015, 0.005], 0.03)
    true = rng.poisson(np.select([tiles < 120, tiles % 2 == 0], [30, 10], 60))
    kept = rng.binomial(true, 1 / (1 + 20 * crowding))  # the rest merged with a neighbour
    tile = np.repeat(tiles, kept)
    sources = {"tile": tile, "snr": np.full(len(tile), 20.0),
               "compact": np.ones(len(tile), bool), "counted": np.ones(len(tile), bool),
               "crowding": crowding[tile]}
    held, deep = tiles[60:120], tiles[120:]
    truth = true[held].astype(float)
    glm = (held, truth, np.full(len(held), truth.mean()), held % 5)
    blind = _catalogue_count(sources, glm, "photutils")
    assert len(blind["coef"]) == 3  # no depth skies: no correction, whatever the span
    mix = _catalogue_count(sources, glm, "photutils",
                           (deep, true[deep].astype(float), np.full(len(deep), truth.mean())))
    assert len(mix["coef"]) == 4 and mix["coef"][3] > 5.0
    assert mix["crowding_range"] == [0.005, 0.03]
    figures = mix["validation"]
    assert figures["crowding_reference"] == 0.015 and figures["deep_tiles"] == 120
    np.testing.assert_allclose(mix["coef"][:2], blind["coef"][:2])
    np.testing.assert_allclose(mix["coef"][2] + 0.015 * mix["coef"][3], blind["coef"][2])
    crowded = deep[crowding[deep] == 0.03]
    found = kept[crowded].astype(float)

    def bias(coef, weight):
        return np.mean(coef[0] + coef[1] * truth.mean() + weight * found - true[crowded])

    corrected = bias(mix["coef"], mix["coef"][2] + 0.03 * mix["coef"][3])
    assert abs(corrected) < abs(bias(blind["coef"], blind["coef"][2])) / 2
    assert figures["deep_r2"] > max(0.9, figures["deep_r2_uncorrected"])

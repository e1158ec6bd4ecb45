"""The numpy heads models carry in their ``heads`` metadata: parse, validate, apply."""

import json

import numpy as np
import pytest

from radiofm.models import (
    HEADS_VERSION,
    PEAK_FEATURES,
    ModelMetadataError,
    input_noise,
    parse_heads,
    parse_metadata,
    peak_features,
    serialize_heads,
)
from radiofm.tests.model_helpers import CLASSES, numpy_heads

DIM = 16


@pytest.fixture
def raw():
    return json.loads(serialize_heads(numpy_heads(DIM)))


def test_round_trip_and_version(raw):
    assert raw["heads_version"] == HEADS_VERSION
    heads = parse_heads(json.dumps(raw), embedding_dim=DIM, class_names=CLASSES)
    assert heads.classes == CLASSES and heads.embedding_dim == DIM
    assert heads.temperature == 1.5
    assert heads.noise_range == [0.0, 10.0] and heads.beam_range_arcsec == [1.0, 20.0]
    assert "compact" in heads.count_description
    again = parse_heads(serialize_heads(heads))
    np.testing.assert_allclose(again.predict_counts(np.ones((2, DIM))),
                               heads.predict_counts(np.ones((2, DIM))))


def test_counts_are_never_negative(raw):
    """The old linear head gave negative counts on every real field; a log link cannot."""
    heads = parse_heads(raw)
    rng = np.random.default_rng(1)
    embedding = rng.normal(0, 50, (200, DIM))  # far beyond any training embedding
    counts = heads.predict_counts(embedding)
    assert counts.dtype == np.float32 and counts.shape == (200,)
    assert (counts >= 0).all() and np.isfinite(counts).all()
    assert counts.max() <= np.exp(5.0) * (1 + 1e-6)  # capped at max_log_rate
    # a linear head with the same weights goes negative on the same embeddings
    linear = embedding @ np.asarray(raw["counts"]["coef"]) + raw["counts"]["intercept"]
    assert (linear < 0).any()


def test_morphology_probabilities_are_temperature_scaled(raw):
    heads = parse_heads(raw)
    embedding = np.random.default_rng(2).normal(0, 3, (5, DIM))
    probabilities = heads.morphology_probabilities(embedding)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1, rtol=1e-6)
    coef = np.asarray(raw["morphology"]["coef"])
    logits = embedding @ coef.T / 1.5
    expected = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(probabilities, expected, rtol=1e-5)


def test_ood_scores_flag_embeddings_far_from_the_reference(raw):
    heads = parse_heads(raw)
    near = np.zeros((3, DIM))
    near[:, 0] = 1.0
    far = np.full((2, DIM), 20.0)
    score, flag = heads.ood_scores(np.vstack([near, far]), "tiles")
    assert (score[:3] < 3).all() and not flag[:3].any()
    assert flag[3:].all() and (score[3:] > 3).all()
    assert heads.has_reference("stamps")
    with pytest.raises(ValueError, match="no 'nothing' OOD reference"):
        heads.ood_scores(near, "nothing")
    with pytest.raises(ValueError, match=r"embeddings shaped \(N, 16\)"):
        heads.predict_counts(np.zeros((2, 3)))


def test_input_noise_is_robust():
    rng = np.random.default_rng(3)
    inputs = rng.normal(0.5, 0.1, (4, 1, 64, 64)).astype(np.float32)
    inputs[:, 0, :4, :4] = 100.0  # a bright source barely moves it
    np.testing.assert_allclose(input_noise(inputs), 0.1, rtol=0.1)


@pytest.mark.parametrize(("change", "message"), [
    (lambda r: r.update(heads_version=99), "heads version 99 is not one this radiofm reads"),
    (lambda r: r.pop("counts"), r"heads lacks \['counts'\]"),
    (lambda r: r["counts"].pop("description"), r"counts lacks \['description'\]"),
    (lambda r: r["counts"].update(coef=[1.0, 2.0]), r"counts.coef has shape \(2,\), expected"),
    (lambda r: r["morphology"].update(temperature=0.0), "temperature must be positive"),
    (lambda r: r["morphology"]["intercept"].__setitem__(0, float("nan")),
     "morphology.intercept holds non-finite values"),
    (lambda r: r["ood"]["tiles"].update(components=[[1.0]]), r"components has shape \(1, 1\)"),
    (lambda r: r["ood"].update(noise_range=[2.0, 1.0]), "noise_range must be"),
    (lambda r: r.update(embedding_dim=8), "heads act on 8-d embeddings"),
])
def test_bad_heads_are_refused_with_a_clear_message(raw, change, message):
    change(raw)
    with pytest.raises(ModelMetadataError, match=message) as error:
        parse_heads(json.dumps(raw), embedding_dim=DIM, source="m.onnx")
    assert str(error.value).startswith("m.onnx: ")
    if "version" not in message:
        assert "radiofm fit-heads" in str(error.value)


def test_unreadable_heads_are_refused():
    with pytest.raises(ModelMetadataError, match="not valid JSON"):
        parse_heads("{not json")
    with pytest.raises(ModelMetadataError, match="must be a JSON object"):
        parse_heads("[1, 2]")
    with pytest.raises(ModelMetadataError, match="differ from the model's class_names"):
        parse_heads(numpy_heads(DIM), class_names=["a", "b"])


def test_metadata_checks_its_heads(raw):
    from radiofm.models import serialize_metadata

    metadata = {
        "name": "m", "arch": "resnet18", "input_pixels": 32, "embedding_dim": DIM,
        "tile_arcsec": 35.2, "stamp_arcsec": 44.0,
        "normalization": {"method": "percentile"}, "normalization_version": 1,
        "pixel_scale_range_arcsec": [0.5, 2.0], "beam_range_arcsec": None,
        "class_names": CLASSES, "train_config": {}, "data_summary": {},
        "parity_max_abs_diff": 0.0, "parity_tolerance": 1e-4, "quantization": "none",
        "heads": raw,
    }
    props = serialize_metadata(metadata)
    assert json.loads(props["heads"])["embedding_dim"] == DIM
    assert parse_metadata(props)["heads"]["counts"]["kind"] == "poisson-glm"
    raw["counts"]["coef"] = [0.0]
    props["heads"] = json.dumps(raw)
    with pytest.raises(ModelMetadataError, match="counts.coef has shape"):
        parse_metadata(props, source="bad.onnx")


def test_a_windowed_count_head_sums_its_windows():
    """With ``windows`` a tile's count is the sum of the head's counts on its windows."""
    heads = parse_heads(serialize_heads(numpy_heads(DIM, count_windows=3)))
    assert heads.count_windows == 3
    windows = np.random.default_rng(4).normal(0, 1, (2 * 9, DIM))
    per_window = heads.predict_counts(windows)
    np.testing.assert_allclose(heads.predict_tile_counts(windows),
                               [per_window[:9].sum(), per_window[9:].sum()], rtol=1e-6)
    with pytest.raises(ValueError, match="not whole tiles of 9 windows"):
        heads.predict_tile_counts(windows[:10])
    whole = parse_heads(serialize_heads(numpy_heads(DIM)))
    np.testing.assert_allclose(whole.predict_tile_counts(windows), whole.predict_counts(windows))


def test_version_1_heads_read_whole_tiles(raw):
    """Heads written before windows existed are read, as whole-tile heads; a version 1 head
    that names windows is refused (a radiofm of that version would apply it to tiles)."""
    old = {**raw, "heads_version": 1}
    del old["counts"]["windows"]
    assert parse_heads(old).count_windows == 1
    with pytest.raises(ModelMetadataError, match="counts.windows needs heads version 2"):
        parse_heads({**old, "counts": {**old["counts"], "windows": 3}})
    with pytest.raises(ModelMetadataError, match="counts.windows must be a positive integer"):
        parse_heads({**raw, "counts": {**raw["counts"], "windows": 0}})


def test_count_regimes_count_each_beam_with_its_own_head():
    """An image of a regime's beam is counted by that regime's GLM; any other beam, or none,
    by the head fitted on every tile."""
    heads = parse_heads(serialize_heads(numpy_heads(
        DIM, count_regimes=[("FIRST", [4.7, 6.2], 0.0), ("MeerKAT-sim", [6.5, 8.6], 2.0)])))
    assert heads.count_regimes == {"FIRST": [4.7, 6.2], "MeerKAT-sim": [6.5, 8.6]}
    x = np.random.default_rng(5).normal(0, 1, (4, DIM))
    pooled = heads.predict_counts(x)  # intercept 1.0
    np.testing.assert_allclose(heads.predict_counts(x, 5.4), pooled / np.e, rtol=1e-5)
    np.testing.assert_allclose(heads.predict_tile_counts(x, 7.5), pooled * np.e, rtol=1e-5)
    for beam in (None, 3.0, 6.3, 20.0):
        np.testing.assert_allclose(heads.predict_counts(x, beam), pooled)
        assert heads.count_regime(beam) == ("pooled", "every training tile, of any beam")
    assert heads.count_regime(7.5) == ("MeerKAT-sim", "MeerKAT-sim tiles")


@pytest.mark.parametrize(("regimes", "message"), [
    ([("a", [4.0, 7.0], 0.0), ("b", [6.0, 9.0], 0.0)], "count regimes 'a' and 'b' overlap"),
    ([("a", [5.0, 5.0], 0.0)], r"beam_range_arcsec must be \[low, high\] with low < high"),
    ([("pooled", [4.0, 5.0], 0.0)], "must be a name other than 'pooled'"),
    ([("a", [4.0, 5.0], 0.0), ("a", [6.0, 7.0], 0.0)], "need distinct names"),
])
def test_bad_count_regimes_are_refused(regimes, message):
    with pytest.raises(ModelMetadataError, match=message):
        parse_heads(numpy_heads(DIM, count_regimes=regimes))


def test_version_2_heads_count_every_beam_with_one_head(raw):
    """Heads written before regimes existed are read; a version 2 head with regimes is
    refused (a radiofm of that version would count every beam with the pooled head)."""
    old = {**raw, "heads_version": 2}
    heads = parse_heads(old)
    assert heads.count_regimes == {} and heads.count_regime(5.4)[0] == "pooled"
    regimes = numpy_heads(DIM, count_regimes=[("FIRST", [4.7, 6.2], 0.0)])["counts"]
    with pytest.raises(ModelMetadataError, match="counts.regimes needs heads version 3"):
        parse_heads({**old, "counts": regimes})


def test_version_3_heads_give_counts_no_uncertainty():
    """Heads written before dispersions existed are read, and their counts have no error
    (none is guessed); a version 3 head that carries a dispersion, anywhere, is refused (a
    radiofm of that version would not show it); in version 4 every GLM has one or none."""
    regimes = [("FIRST", [4.7, 6.2], 0.0, 0.5)]
    dispersed = json.loads(serialize_heads(numpy_heads(DIM, count_regimes=regimes,
                                                       count_dispersion=2.0)))
    heads = parse_heads(dispersed)
    assert heads.count_errors(np.array([8.0]))[0] == pytest.approx(4.0)  # sqrt(2 x 8)
    assert heads.count_errors(np.array([8.0]), 5.4)[0] == pytest.approx(2.0)  # the regime's
    assert parse_heads(serialize_heads(heads)).count_errors(np.array([8.0]))[0] == (
        pytest.approx(4.0))
    plain = {**numpy_heads(DIM, count_regimes=[("FIRST", [4.7, 6.2], 0.0)]),
             "heads_version": 3}
    assert parse_heads(plain).count_errors(np.array([8.0]), 5.4) is None
    assert "Heads v3" in repr(parse_heads(plain))
    with pytest.raises(ModelMetadataError, match="a count dispersion needs heads version 4"):
        parse_heads({**dispersed, "heads_version": 3})
    regime_only = numpy_heads(DIM, count_regimes=regimes)
    with pytest.raises(ModelMetadataError, match="every count GLM .* has a dispersion"):
        parse_heads(regime_only)
    with pytest.raises(ModelMetadataError, match="a count dispersion needs heads version 4"):
        parse_heads({**regime_only, "heads_version": 3})


@pytest.mark.parametrize("value", [0.0, -1.0, float("nan")])
def test_a_dispersion_must_be_positive(value):
    with pytest.raises(ModelMetadataError, match="counts.dispersion"):
        parse_heads(numpy_heads(DIM, count_dispersion=value))


@pytest.mark.parametrize("regimes", [[5], [None]])
def test_malformed_regimes_of_old_heads_get_a_clear_error(regimes):
    """The dispersion check ran before each regime was checked to be an object: a TypeError
    escaped instead of the metadata error that says what to do."""
    raw = numpy_heads(DIM)
    raw["heads_version"] = 3
    raw["counts"]["regimes"] = regimes
    with pytest.raises(ModelMetadataError, match="must be an object"):
        parse_heads(raw)


def _peaky_windows(n_peaks, size=32, level=2.3):
    """(len(n_peaks), 1, size, size) inputs of noise below ``level`` with the given number
    of separate bright pixels each."""
    rng = np.random.default_rng(5)
    windows = rng.uniform(-1.0, 1.0, (len(n_peaks), 1, size, size)).astype(np.float32)
    for window, count in zip(windows, n_peaks, strict=True):
        for k in range(count):
            window[0, 4 + 6 * (k // 4), 4 + 6 * (k % 4)] = level + 1.0
    return windows


def test_peak_features_count_peaks_and_islands():
    windows = _peaky_windows([0, 1, 5])
    features = peak_features(windows, 2.3)
    assert features.shape == (3, len(PEAK_FEATURES))
    np.testing.assert_array_equal(features[:, :2], [[0, 0], [1, 1], [5, 5]])
    np.testing.assert_allclose(features[:, 2:], np.log1p(features[:, :2]))
    # one source of two blended peaks: one island, two peaks; (N, S, S) inputs as well
    blended = np.zeros((1, 16, 16), np.float32)
    blended[0, 8, 6:11] = [3.0, 2.6, 2.5, 2.6, 3.0]
    assert peak_features(blended, 2.3)[0, :2].tolist() == [2.0, 1.0]
    with pytest.raises(ValueError, match=r"\(N, S, S\) or \(N, 1, S, S\)"):
        peak_features(np.zeros((2, 3, 16, 16)), 2.3)


def test_a_count_glm_with_a_peak_level_reads_the_inputs_peaks():
    """Version 5: a GLM with a peak_level reads the embedding and the inputs' peak
    features; the same embeddings with more peaks give more counts, and a GLM that needs
    the inputs says so when they are missing. Each GLM reads them or not on its own."""
    raw = json.loads(serialize_heads(numpy_heads(DIM, count_peak_level=2.3, count_windows=2,
                                                 count_regimes=[("FIRST", [4.7, 6.2], 0.5)])))
    heads = parse_heads(raw, embedding_dim=DIM)
    assert heads.count_reads_peaks
    embedding = np.zeros((4, DIM))
    windows = _peaky_windows([0, 1, 3, 7])
    counts = heads.predict_counts(embedding, inputs=windows)
    # zero embedding: log rate = intercept 1 + 0.3 log(1 + peaks)
    np.testing.assert_allclose(counts, np.exp(1.0) * (1 + np.array([0, 1, 3, 7])) ** 0.3,
                               rtol=1e-5)
    np.testing.assert_allclose(heads.predict_tile_counts(embedding, 5.4, windows),
                               [heads.predict_counts(embedding, 5.4, windows)[:4].sum()],
                               rtol=1e-5)
    with pytest.raises(ValueError, match="pass the inputs the embeddings came from"):
        heads.predict_counts(embedding)
    with pytest.raises(ValueError, match="3 inputs for 4 embeddings"):
        heads.predict_counts(embedding, inputs=windows[:3])
    # the pooled GLM on the embedding alone, the FIRST regime's on the peaks too
    for key in ("mean", "scale", "coef"):
        raw["counts"][key] = raw["counts"][key][:DIM]
    del raw["counts"]["peak_level"]
    mixed = parse_heads(raw, embedding_dim=DIM)
    assert mixed.count_reads_peaks
    np.testing.assert_allclose(mixed.predict_counts(embedding, 20.0), np.exp(1.0),
                               rtol=1e-6)  # no inputs needed
    np.testing.assert_allclose(mixed.predict_counts(embedding, 5.4, windows),
                               np.exp(0.5) * (1 + np.array([0, 1, 3, 7])) ** 0.3, rtol=1e-5)
    plain = parse_heads(numpy_heads(DIM))
    assert not plain.count_reads_peaks
    np.testing.assert_array_equal(plain.predict_counts(embedding, inputs=windows),
                                  plain.predict_counts(embedding))


@pytest.mark.parametrize(("change", "message"), [
    (lambda r: r.update(heads_version=4), "a count peak_level needs heads version 5"),
    (lambda r: r["counts"].update(coef=r["counts"]["coef"][:DIM]),
     rf"counts.coef has shape \({DIM},\), expected \({DIM + 4},\)"),
    (lambda r: r["counts"].update(peak_level="high"), "counts.peak_level is not numeric"),
])
def test_bad_peak_heads_are_refused(change, message):
    raw = json.loads(serialize_heads(numpy_heads(DIM, count_peak_level=2.3)))
    change(raw)
    with pytest.raises(ModelMetadataError, match=message):
        parse_heads(raw, embedding_dim=DIM)


CATALOGUE = {"finder": "photutils", "snr": [5.0, 6.0, 8.0], "probability": [0.3, 0.7, 1.0],
             "coef": [0.5, 0.4, 0.6], "dispersion": 1.5}


def _with_catalogue(**change):
    """Heads whose MeerKAT-sim regime combines its counts with a photutils catalogue."""
    raw = json.loads(serialize_heads(numpy_heads(
        DIM, count_regimes=[("MeerKAT-sim", [6.5, 8.6], 0.0, 1.0)], count_dispersion=1.0)))
    raw["counts"]["regimes"][0]["catalogues"] = [{**CATALOGUE, **change}]
    return raw


def test_a_count_catalogue_weighs_each_compact_source_by_its_snr():
    """A regime's catalogue turns each compact source into the probability, read at its
    measured S/N, that it is a counted source; a tile's count combines the head's count
    with their sum, never negative, with a quasi-Poisson error."""
    heads = parse_heads(_with_catalogue(), embedding_dim=DIM)
    assert heads.count_catalogues(20.0) == {} and heads.count_catalogues() == {}
    mix = heads.count_catalogues(7.5)["photutils"]
    assert mix.finder == "photutils"
    weights = mix.source_probabilities(np.array([5.0, 5.5, 7.0, 50.0, 7.0, np.nan]),
                                       np.array([True, True, True, True, False, True]))
    np.testing.assert_allclose(weights, [0.3, 0.5, 0.85, 1.0, 0.0, 0.0])
    counts, errors = mix.combine(np.array([0.0, 10.0]), np.array([0.0, 5.0]))
    np.testing.assert_allclose(counts, [0.5, 0.5 + 4.0 + 3.0])
    np.testing.assert_allclose(errors, np.sqrt(1.5 * counts), rtol=1e-6)
    again = parse_heads(serialize_heads(heads))
    assert again.count_catalogues(7.5)["photutils"].coef.tolist() == [0.5, 0.4, 0.6]


@pytest.mark.parametrize(("change", "message"), [
    ({"coef": [0.5, -0.4, 0.6]}, "coef must be >= 0"),
    ({"coef": [0.5, 0.4]}, r"coef has shape \(2,\), expected \(3,\)"),
    ({"coef": [0.5, 0.4, 0.6, -1.0]}, "coef must be >= 0"),
    ({"snr": [5.0, 5.0, 8.0]}, "snr must be a non-empty increasing list"),
    ({"snr": []}, "snr must be a non-empty increasing list"),
    ({"probability": [0.3, 1.2, 1.0]}, r"probability must lie in \[0, 1\]"),
    ({"probability": [0.3, 1.0]}, r"probability has shape \(2,\), expected \(3,\)"),
    ({"shared_probability": [0.1, 1.5, 1.0], "shared_coef": [0.6, 0.0]},
     r"shared_probability must lie in \[0, 1\]"),
    ({"shared_probability": [0.1, 0.4], "shared_coef": [0.6, 0.0]},
     r"shared_probability has shape \(2,\), expected \(3,\)"),
    ({"shared_probability": [0.1, 0.2, 0.5]}, "needs both shared_probability and shared_coef"),
    ({"shared_coef": [0.6, 0.0]}, "needs both shared_probability and shared_coef"),
    ({"shared_probability": [0.1, 0.2, 0.5], "shared_coef": [0.6, -1.0],
      "crowding_range": [0.01, 0.02]}, "shared_coef must be >= 0"),
    ({"shared_probability": [0.1, 0.2, 0.5], "shared_coef": [0.6]},
     r"shared_coef has shape \(1,\), expected \(2,\)"),
    ({"shared_probability": [0.1, 0.2, 0.5], "shared_coef": [0.6, 10.0]},
     "weighs the crowding but has no crowding_range"),
    ({"finder": ""}, "finder must name a source finder"),
    ({"dispersion": 0.0}, "dispersion must be positive"),
])
def test_bad_count_catalogues_are_refused(change, message):
    with pytest.raises(ModelMetadataError, match=message):
        parse_heads(_with_catalogue(**change), embedding_dim=DIM)


def test_a_crowding_coefficient_needs_heads_version_8():
    """A fourth catalogue coefficient weighs the summed probabilities by the catalogue's
    crowding; a radiofm of heads version 6 would drop that term, and version 7 measured the
    crowding over every detection (inference now over the compact ones), so such heads are
    refused below version 8, and round-trip from it."""
    crowded = _with_catalogue(coef=[0.5, 0.4, 0.6, 20.0], crowding_range=[0.004, 0.02])
    for version in (6, 7):
        with pytest.raises(ModelMetadataError, match="range needs heads version 8"):
            parse_heads({**crowded, "heads_version": version})
        with pytest.raises(ModelMetadataError, match="range needs heads version 8"):
            parse_heads({**_with_catalogue(crowding_range=[0.004, 0.02]),
                         "heads_version": version})
    assert parse_heads({**_with_catalogue(), "heads_version": 7}).count_catalogues(7.5)
    with pytest.raises(ModelMetadataError, match="weighs the crowding but has no crowding_range"):
        parse_heads(_with_catalogue(coef=[0.5, 0.4, 0.6, 20.0]))
    with pytest.raises(ModelMetadataError, match="crowding_range must be"):
        parse_heads(_with_catalogue(coef=[0.5, 0.4, 0.6, 20.0], crowding_range=[0.02, 0.004]))
    heads = parse_heads(crowded, embedding_dim=DIM)
    mix = heads.count_catalogues(7.5)["photutils"]
    assert mix.reads_crowding
    plain = parse_heads(_with_catalogue()).count_catalogues(7.5)["photutils"]
    assert not plain.reads_crowding and plain.crowding_known(1.0)  # no range: no judgement
    ranged = parse_heads(_with_catalogue(crowding_range=[0.004, 0.02]))
    assert not ranged.count_catalogues(7.5)["photutils"].crowding_known(0.05)
    counts, _ = mix.combine(np.array([10.0, 10.0]), np.array([5.0, 5.0]),
                            np.array([0.0, 0.01]))
    np.testing.assert_allclose(counts, [0.5 + 4.0 + 3.0, 0.5 + 4.0 + 3.0 + 1.0], rtol=1e-6)
    again = parse_heads(serialize_heads(heads)).count_catalogues(7.5)["photutils"]
    assert again.coef.tolist() == [0.5, 0.4, 0.6, 20.0]
    assert again.crowding_range == [0.004, 0.02]
    # known within CROWDING_TOLERANCE of the fitted fields' range, not beyond
    assert [mix.crowding_known(c) for c in (0.0033, 0.01, 0.0249, 0.0031, 0.026)] == [
        True, True, True, False, False]


def test_a_shared_island_curve_needs_heads_version_10_and_weighs_only_the_pieces():
    """A catalogue's ``shared_probability`` and ``shared_coef`` (heads version 10) weigh the
    compact sources that share their island with a resolved source: by a curve of their own
    and by a weight that grows with the catalogue's crowding; every other compact source
    keeps ``probability`` and ``coef``, as do all of them without the curve or without
    ``shared``. A radiofm of version 9 would weigh the pieces as whole sources: such heads
    are refused below 10."""
    raw = _with_catalogue(shared_probability=[0.1, 0.2, 0.5], shared_coef=[0.2, 30.0],
                          crowding_range=[0.01, 0.03])
    with pytest.raises(ModelMetadataError, match="shared_probability needs heads version 10"):
        parse_heads({**raw, "heads_version": 9})
    mix = parse_heads(raw, embedding_dim=DIM).count_catalogues(7.5)["photutils"]
    assert mix.reads_islands and not mix.reads_crowding
    snr = np.array([5.5, 5.5, 7.0, 7.0, 7.0])
    compact = np.array([True, True, True, True, False])
    shared = np.array([False, True, False, True, True])
    np.testing.assert_allclose(mix.source_probabilities(snr, compact, shared),
                               [0.5, 0.15, 0.85, 0.35, 0.0])
    np.testing.assert_allclose(mix.source_probabilities(snr, compact),
                               [0.5, 0.5, 0.85, 0.85, 0.0])
    # 0.5 + 0.4 x the head's count + 0.6 x the others' sum + (0.2 + 30 x crowding) x the
    # pieces' sum
    counts, _ = mix.combine(np.array([10.0, 10.0]), np.array([5.0, 5.0]), [0.01, 0.03],
                            shared_counts=np.array([2.0, 2.0]))
    np.testing.assert_allclose(counts, [7.5 + 0.5 * 2.0, 7.5 + 1.1 * 2.0], rtol=1e-6)
    plain = parse_heads(_with_catalogue()).count_catalogues(7.5)["photutils"]
    assert not plain.reads_islands
    np.testing.assert_allclose(plain.source_probabilities(snr, compact, shared),
                               [0.5, 0.5, 0.85, 0.85, 0.0])
    with pytest.raises(ValueError, match="no weight of its own"):
        plain.combine(np.array([10.0]), np.array([5.0]), shared_counts=np.array([2.0]))
    again = parse_heads(serialize_heads(parse_heads(raw))).count_catalogues(7.5)["photutils"]
    assert again.shared_probability.tolist() == [0.1, 0.2, 0.5]
    assert again.shared_coef.tolist() == [0.2, 30.0]


def test_a_count_heads_field_peaks_need_heads_version_9_and_judge_by_beam():
    """A count GLM's range of training fields' median peaks per tile (heads version 9)
    judges an image's tiles by their median, for the head that counts its beam only, within
    FIELD_PEAKS_TOLERANCE; older versions refuse it, and it round-trips."""
    raw = _with_catalogue()
    raw["counts"]["regimes"][0]["field_peaks"] = {"level": 2.3, "range": [16.0, 24.0]}
    for version in (6, 8):
        with pytest.raises(ModelMetadataError, match="field_peaks range needs heads version 9"):
            parse_heads({**raw, "heads_version": version})
    heads = parse_heads(raw, embedding_dim=DIM)
    assert heads.count_field_peaks(7.5) == (2.3, [16.0, 24.0])
    assert heads.count_field_peaks(20.0) is None  # the pooled head has none
    assert heads.field_peaks_known([40.0, 41.0], 20.0)
    assert [heads.field_peaks_known([1.0, p, 90.0], 7.5) for p in (12.7, 12.9, 29.9, 30.1)] == [
        False, True, True, False]
    assert heads.field_peaks_known([np.nan], 7.5) and heads.field_peaks_known([], 7.5)
    assert parse_heads(serialize_heads(heads)).count_field_peaks(7.5) == (2.3, [16.0, 24.0])
    for bad, message in (({"level": 2.3}, r"field_peaks lacks \['range'\]"),
                         ({"level": 0.0, "range": [1.0, 2.0]}, "level must be positive"),
                         ({"level": 2.3, "range": [3.0, 2.0]}, "range must be")):
        raw["counts"]["regimes"][0]["field_peaks"] = bad
        with pytest.raises(ModelMetadataError, match=message):
            parse_heads(raw)


def test_count_catalogues_need_heads_version_6_and_one_per_finder():
    """A radiofm of version 5 would print the head's count alone: such heads are refused;
    two catalogues of one finder would leave it unclear which applies."""
    with pytest.raises(ModelMetadataError, match="count catalogues need heads version 6"):
        parse_heads({**_with_catalogue(), "heads_version": 5})
    heads = parse_heads({**_with_catalogue(), "heads_version": 6})
    assert set(heads.count_catalogues(7.5)) == {"photutils"}
    twice = _with_catalogue()
    regime = twice["counts"]["regimes"][0]
    regime["catalogues"] = regime["catalogues"] * 2
    with pytest.raises(ModelMetadataError, match="two for finder 'photutils'"):
        parse_heads(twice)
    regime["catalogues"] = CATALOGUE
    with pytest.raises(ModelMetadataError, match="catalogues must be a list"):
        parse_heads(twice)
    regime["catalogues"] = [CATALOGUE, {**CATALOGUE, "finder": "bdsf"}]
    assert set(parse_heads(twice).count_catalogues(7.5)) == {"photutils", "bdsf"}

"""The evaluation tasks and probes on synthetic data (no shared data needed)."""

import numpy as np
import pytest

from radiofm.evaluate import PixelEmbedder, TaskData, anomaly_scores, evaluate, normalised_stamps
from radiofm.evaluate._harness import _fold
from radiofm.evaluate._tasks import Features, classification_task, counts_task, similarity_task
from radiofm.tiling import Normalization


class _BrightPixels:
    """Features a probe can count from: bright pixels and total flux."""

    name = "bright"
    input_size = 16
    pca = None

    def embed(self, stamps):
        return np.stack([(stamps > 0.5).sum(axis=(1, 2)), stamps.sum(axis=(1, 2))], axis=1)


def _lobes(count, rng):
    """One blob (class 0, compact) or two blobs either side of the centre (class 1, double),
    at any angle, with noise: labels survive flips and quarter turns."""
    labels = rng.integers(0, 2, count)
    stamps = rng.normal(0.0, 0.1, (count, 16, 16)).astype(np.float32)
    for stamp, label, angle in zip(stamps, labels, rng.uniform(0, np.pi, count), strict=True):
        offsets = [(0.0, 0.0)] if label == 0 else [(5 * np.cos(angle), 5 * np.sin(angle)),
                                                   (-5 * np.cos(angle), -5 * np.sin(angle))]
        for dx, dy in offsets:
            x, y = int(round(7 + dx)), int(round(7 + dy))
            stamp[y:y + 2, x:x + 2] += 1.0
    return stamps, labels


def _halves(count, rng):
    """A blob in the upper (class 0) or lower (class 1) half, at random places, with noise."""
    labels = rng.integers(0, 2, count)
    stamps = rng.normal(0.0, 0.1, (count, 16, 16)).astype(np.float32)
    for stamp, label, x, y in zip(stamps, labels, rng.integers(1, 14, count),
                                  rng.integers(1, 6, count), strict=True):
        row = y + 8 * label
        stamp[row:row + 2, x:x + 2] += 1.0
    return stamps, labels


def _task_data(stamps, target, split, class_names=()):
    identity = [Normalization("percentile", 0.0, 1.0)] * len(stamps)
    return TaskData("synthetic", stamps, identity, np.asarray(target), np.asarray(split),
                    tuple(class_names))


def test_normalised_stamps_resamples_then_normalises():
    stamps = np.full((2, 8, 8), 3.0, dtype=np.float32)
    out = normalised_stamps(stamps, [Normalization("percentile", 1.0, 4.0), None], 4)
    assert out.shape == (2, 4, 4)
    np.testing.assert_allclose(out[0], 0.5)
    np.testing.assert_array_equal(out[1], 0.0)  # no-contrast image


def test_classification_probes_separate_halves():
    rng = np.random.default_rng(0)
    stamps, labels = _halves(160, rng)
    split = np.where(np.arange(160) < 120, "train", "test")
    data = _task_data(stamps, labels, split, ("upper", "lower"))
    features = Features({"pixels": PixelEmbedder(16, n_components=20)})
    rows, plot = classification_task("bars", data, features)
    error = {r["probe"]: r for r in rows if r["metric"] == "error"}
    assert error["logistic"]["value"] < 0.1
    assert error["logistic"]["low"] <= error["logistic"]["value"] <= error["logistic"]["high"]
    assert error["knn"]["n_test"] == 40
    matrix = plot["confusion"][("pixels", "logistic")]
    assert matrix.sum() == 40 and matrix.shape == (2, 2)


def test_classification_needs_two_items_per_class():
    stamps = np.zeros((4, 16, 16), dtype=np.float32)
    data = _task_data(stamps, [0, 1, 1, 0], ["train", "train", "train", "test"], ("a", "b"))
    with pytest.raises(ValueError, match="at least 2 training items"):
        classification_task("toy", data, Features({"pixels": PixelEmbedder(16)}))


def _counted_pixels(rng):
    """200 stamps with 0-5 bright pixels each (the count), 150 to train and 50 to test."""
    counts = rng.integers(0, 6, 200)
    stamps = np.zeros((200, 16, 16), dtype=np.float32)
    for stamp, count in zip(stamps, counts, strict=True):
        stamp.flat[rng.choice(256, count, replace=False)] = 1.0
    split = np.where(np.arange(200) < 150, "train", "test")
    return _task_data(stamps, counts.astype(float), split)


def test_counts_probe_reports_r2_of_the_test_split():
    rows, plot = counts_task(_counted_pixels(np.random.default_rng(1)),
                             Features({"bright": _BrightPixels()}))
    values = {r["metric"]: r["value"] for r in rows}
    assert values["r2"] > 0.99 and values["mse"] < 0.01
    true, predicted = plot["bright"]
    assert len(true) == len(predicted) == 50


def test_window_counts_are_scored_per_tile():
    """Windows of tiles are fitted on each window's count and scored on each tile's sum: a
    probe that counts every window right counts every tile right, and the test has as
    many items as test tiles, not windows."""
    windows = _counted_pixels(np.random.default_rng(3))  # 200 windows: 50 tiles of 4
    tile = np.repeat(np.arange(50), 4)
    split = np.where(tile < 35, "train", "test")
    data = TaskData("windows", windows.stamps, windows.normalizations, windows.target, split,
                    extra={"tile": tile})
    assert data.windowed and not windows.windowed
    rows, plot = counts_task(data, Features({"bright": _BrightPixels()}))
    values = {r["metric"]: r for r in rows}
    assert values["r2"]["value"] > 0.99 and values["r2"]["n_test"] == 15
    true, predicted = plot["bright"]
    np.testing.assert_allclose(true, np.bincount(tile[tile >= 35] - 35,
                                                 windows.target[tile >= 35]))
    assert len(predicted) == 15


def test_similarity_precision():
    rng = np.random.default_rng(2)
    stamps, labels = _halves(100, rng)
    split = np.where(np.arange(100) < 70, "train", "test")
    rows, plot = similarity_task(_task_data(stamps, labels, split),
                                 Features({"pixels": PixelEmbedder(16, n_components=10)}))
    precision = {r["metric"]: r["value"] for r in rows}
    assert set(precision) == {"precision@1", "precision@5", "precision@10"}
    assert precision["precision@1"] > 0.8
    assert plot["ks"] == (1, 5, 10)


@pytest.mark.parametrize("method", ["knn", "iforest"])
def test_anomaly_score_ranks_the_outlier_first(method):
    rng = np.random.default_rng(3)
    x = rng.normal(0.0, 1.0, (300, 8))
    x[17] += 12.0
    assert np.argmax(anomaly_scores(x, method)) == 17


def test_anomaly_score_rejects_unknown_method():
    with pytest.raises(ValueError, match="unknown anomaly method 'lof'"):
        anomaly_scores(np.zeros((5, 2)), "lof")


def test_fold_puts_the_scaler_into_the_weights():
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(4)
    x = rng.normal(5.0, 3.0, (120, 6))
    y = rng.integers(0, 3, 120)
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(x, y)
    weights, intercept = _fold(probe[0], probe[-1].coef_, probe[-1].intercept_)
    np.testing.assert_allclose(x @ weights.T + intercept, probe.decision_function(x),
                               rtol=1e-8, atol=1e-8)


def test_bounded_scaler_keeps_folded_weights_small():
    from radiofm.evaluate._harness import SCALE_FLOOR, _bounded_scaler

    rng = np.random.default_rng(6)
    x = rng.normal(0.0, 1.0, (200, 5))
    x[:, 2] = 3.0 + rng.normal(0.0, 1e-9, 200)  # a feature that hardly varies
    scaler = _bounded_scaler(x)
    assert scaler.scale_[2] == pytest.approx(SCALE_FLOOR * np.median(scaler.scale_))
    weights, _ = _fold(scaler, np.ones((1, 5)), np.zeros(1))
    assert np.abs(weights).max() <= 1 / (SCALE_FLOOR * np.median(scaler.scale_)) * 1.0001


def test_evaluate_rejects_unknown_tasks_and_baselines():
    with pytest.raises(ValueError, match="unknown tasks"):
        evaluate("pixels", tasks=["colour"])
    with pytest.raises(ValueError, match="unknown baselines"):
        evaluate("pixels", baselines=["oracle"])


class _SnrPixels(PixelEmbedder):
    """Pixels read on the S/N stretch, as a model trained on it would be."""

    normalization = {"method": "snr", "softening": 1.0}


def test_a_reference_with_another_stretch_is_refused():
    with pytest.raises(ValueError, match="reference .* another stretch .*evaluate the "
                                         "reference on its own"):
        evaluate(_SnrPixels(16), reference="pixels", tasks=["frii"], baselines=[])


def test_supervised_cnn_learns_lobes():
    pytest.importorskip("torch")
    from radiofm.train import train_small_cnn

    rng = np.random.default_rng(5)
    train_x, train_y = _lobes(256, rng)
    test_x, test_y = _lobes(64, rng)
    predict = train_small_cnn(train_x, train_y, 2, epochs=12, batch_size=32, threads=1)
    probabilities = predict(test_x)
    assert probabilities.shape == (64, 2)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    assert (probabilities.argmax(1) == test_y).mean() > 0.9


def _sky_tiles(count, rng, size=48):
    """Noise tiles (sigma 1) with 0-5 compact sources of 8-30 sigma, and 4-sigma bumps that
    must not count."""
    counts = rng.integers(0, 6, count)
    stamps = rng.normal(0.0, 1.0, (count, size, size)).astype(np.float32)
    y, x = np.indices((size, size))
    for stamp, n in zip(stamps, counts, strict=True):
        for k in range(n + 2):
            cy, cx = rng.uniform(4, size - 4, 2)
            peak = rng.uniform(8, 30) if k < n else 3.0
            stamp += peak * np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (2 * 1.2**2))
    return stamps, counts


def test_island_counter_counts_compact_sources_above_five_sigma():
    from radiofm.evaluate import IslandCounter, count_islands

    rng = np.random.default_rng(7)
    stamps, counts = _sky_tiles(120, rng)
    found = count_islands(stamps)
    assert np.mean(np.abs(found - counts)) < 0.3  # overlaps may merge a pair now and then
    clipped = np.zeros((1, 32, 32), np.float32)
    clipped[0, 10:14, 10:14] = 5.0  # no noise to scale by: nothing is counted
    assert count_islands(clipped).tolist() == [0.0]
    split = np.where(np.arange(120) < 80, "train", "test")
    features = Features({"islands": IslandCounter(), "pixels": PixelEmbedder(16, 10)})
    assert features.roles_for("counts") == ["islands", "pixels"]
    assert features.roles_for("morphology") == ["pixels"]
    rows, _ = counts_task(_task_data(stamps, counts.astype(float), split), features)
    r2 = {r["features"]: r for r in rows if r["metric"] == "r2"}
    assert r2["islands"]["value"] > 0.9 > r2["pixels"]["value"]
    assert r2["islands"]["low"] <= r2["islands"]["value"] <= r2["islands"]["high"]


def test_shape_measurements_separate_compact_from_double_sources():
    from radiofm.evaluate import ShapeMeasurer, measure_shapes
    from radiofm.evaluate._classical import SHAPE_FEATURES

    rng = np.random.default_rng(8)
    stamps, labels = _lobes(200, rng)
    shapes = measure_shapes(stamps)
    assert shapes.shape == (200, len(SHAPE_FEATURES)) and np.isfinite(shapes).all()
    fr = shapes[:, SHAPE_FEATURES.index("fr_ratio")]
    assert np.median(fr[labels == 1]) > np.median(fr[labels == 0]) + 0.3
    split = np.where(np.arange(200) < 150, "train", "test")
    rows, _ = classification_task("frii", _task_data(stamps, labels, split, ("C", "D")),
                                  Features({"shapes": ShapeMeasurer()}), knn=False)
    error = next(r for r in rows if r["metric"] == "error")
    assert error["value"] < 0.1 and error["features"] == "shapes"


def _two_samples(rng):
    """Two samples of compact/double sources; the second has a brighter, offset 'processing'."""
    first, first_y = _lobes(160, rng)
    second, second_y = _lobes(160, rng)
    second = 3.0 * second + 0.5
    stamps = np.concatenate([first, second])
    split = np.tile(np.where(np.arange(160) < 110, "train", "test"), 2)
    sample = np.repeat(["MiraBest", "RGD"], 160)
    clear = (sample == "MiraBest") & (np.arange(320) % 2 == 0)
    data = _task_data(stamps, np.concatenate([first_y, second_y]), split, ("FRI", "FRII"))
    data.extra.update(sample=sample, reverse_test=clear & (split == "test"), reverse_any=clear)
    return data


class _Processing:
    """Features that see the sample's processing (mean level) and little else."""

    name, input_size, pca = "processing", 16, None

    def embed(self, stamps):
        return np.stack([stamps.mean(axis=(1, 2)), stamps.std(axis=(1, 2))], axis=1)


def test_cross_sample_task_trains_on_one_sample_and_tests_on_the_other():
    from radiofm.evaluate import ShapeMeasurer
    from radiofm.evaluate._tasks import cross_sample_task

    data = _two_samples(np.random.default_rng(9))
    features = Features({"shapes": ShapeMeasurer(), "processing": _Processing()})
    rows, plot = cross_sample_task(data, features)
    table = {(r["dataset"], r["features"], r["metric"]): r for r in rows}
    forward = table[("MiraBest -> RGD", "shapes", "error")]
    assert forward["n_train"] == 110 and forward["n_test"] == 50
    assert forward["value"] < 0.1  # shapes hold across the two processings
    assert table[("RGD -> MiraBest", "shapes", "error")]["n_test"] == 25
    assert table[("RGD -> MiraBest train+test", "shapes", "error")]["n_test"] == 80
    assert table[("MiraBest -> RGD", "processing", "error")]["value"] > 0.25
    assert ("shapes", "RGD -> MiraBest") in plot["confusion"]


def test_regression_bootstrap_matches_sklearn_and_brackets_the_value():
    from sklearn.metrics import mean_absolute_error, r2_score

    from radiofm.evaluate._tasks import _bootstrap_metric

    rng = np.random.default_rng(10)
    true = rng.normal(size=300)
    predicted = true + rng.normal(scale=0.5, size=300)
    low, high = _bootstrap_metric("r2", true, predicted)
    assert low < r2_score(true, predicted) < high and high - low < 0.2
    low, high = _bootstrap_metric("mae", true, predicted)
    assert low < mean_absolute_error(true, predicted) < high


def test_relabel_shares_the_prepared_stamps():
    rng = np.random.default_rng(11)
    stamps = rng.random((6, 16, 16)).astype(np.float32)
    data = _task_data(stamps, np.arange(6.0), np.array(["train"] * 3 + ["test"] * 3))
    other = data.relabel("other", np.ones(6))
    assert other.key == data.key == "synthetic" and other.name == "other"
    assert other.prepared(8) is data.prepared(8)


def test_fit_stretch_keeps_every_option():
    from radiofm.evaluate._embedders import normalization_of
    from radiofm.evaluate._stamps import fit_stretch
    from radiofm.tiling import NormalizationSpec, fit_normalization

    image = np.random.default_rng(12).normal(size=(64, 64))
    spec = {"method": "percentile", "lower": 10.0, "upper": 90.0}
    assert fit_stretch(image, spec) == fit_normalization(image, lower=10.0, upper=90.0)
    assert fit_stretch(image, "percentile") == fit_normalization(image)
    assert fit_stretch(image, spec) != fit_stretch(image, "percentile")

    class Exported:
        metadata = {"normalization": spec}

    assert normalization_of(Exported()) == NormalizationSpec.from_value(spec)


def test_view_averaged_with_two_views_is_the_stamp_and_its_mirror():
    from radiofm.evaluate import ViewAveraged, with_views

    class Corner:
        name, input_size, pca = "corner", 4, None

        def embed(self, stamps):
            return stamps[:, :1, :2].reshape(len(stamps), -1)

    stamps = np.arange(32, dtype=np.float32).reshape(2, 4, 4)
    two = with_views(Corner(), 2)
    assert isinstance(two, ViewAveraged) and two.views == 2
    expected = (stamps[:, 0, :2] + stamps[:, 0, ::-1][:, :2]) / 2
    np.testing.assert_allclose(two.embed(stamps), expected)
    with pytest.raises(ValueError, match="views must be 2 or 8"):
        ViewAveraged(Corner(), 1)


def test_cli_views_take_one_count_or_several():
    import argparse

    from radiofm.cli import _view_counts

    assert _view_counts("8") == 8
    assert _view_counts("1,2,8") == [1, 2, 8]
    for bad in ("4", "1,x", ""):
        with pytest.raises(argparse.ArgumentTypeError, match="view counts among 1, 2, 8"):
            _view_counts(bad)


TWIN_MARGIN = "model-random"


def test_the_margin_over_the_random_twin_is_paired():
    from radiofm.evaluate._tasks import _bootstrap, _error

    rng = np.random.default_rng(12)
    correct = rng.random(100) < 0.7
    # the same outcomes twice: a paired difference is exactly 0 on every resample, though
    # each error alone varies by about 0.18 across them
    low, high = _bootstrap(lambda a, b: _error(a) - _error(b), correct, correct)
    assert low == high == 0.0
    alone = _bootstrap(_error, correct)
    assert alone[1] - alone[0] > 0.1
    # in a task: one row per probe, the model's value minus the twin's
    stamps, labels = _halves(160, rng)
    split = np.where(np.arange(160) < 120, "train", "test")
    data = _task_data(stamps, labels, split, ("upper", "lower"))
    features = Features({"model": PixelEmbedder(16, n_components=20),
                         "random": _BrightPixels()})
    rows, _ = classification_task("bars", data, features)
    table = {(r["features"], r["probe"], r["metric"]): r for r in rows}
    for probe in ("logistic", "knn"):
        margin = table[(TWIN_MARGIN, probe, "error")]
        expected = (table[("model", probe, "error")]["value"]
                    - table[("random", probe, "error")]["value"])
        assert margin["value"] == pytest.approx(expected)
        assert margin["low"] <= margin["value"] <= margin["high"] < 0  # pixels see halves
        assert "random twin" in margin["name"]


class _Noise:
    """Features that know nothing of the stamps."""

    name, input_size, pca = "noise", 16, None

    def embed(self, stamps):
        return np.random.default_rng(len(stamps)).normal(size=(len(stamps), 4))


def test_regression_and_cross_sample_margins():
    from radiofm.evaluate._tasks import cross_sample_task

    rng = np.random.default_rng(13)
    features = Features({"model": _BrightPixels(), "random": _Noise()})
    rows, _ = counts_task(_counted_pixels(rng), features)
    table = {(r["features"], r["metric"]): r for r in rows}
    for metric in ("r2", "mse"):
        assert table[(TWIN_MARGIN, metric)]["value"] == pytest.approx(
            table[("model", metric)]["value"] - table[("random", metric)]["value"])
    assert table[(TWIN_MARGIN, "r2")]["low"] > 0.8  # bright pixels count, noise does not
    from radiofm.evaluate import ShapeMeasurer

    data = _two_samples(rng)
    rows, _ = cross_sample_task(data, Features({"model": ShapeMeasurer(),
                                                "random": _Processing()}))
    margins = [r for r in rows if r["features"] == TWIN_MARGIN]
    assert [r["dataset"] for r in margins] == ["MiraBest -> RGD", "RGD -> MiraBest",
                                                "RGD -> MiraBest train+test"]
    assert all(r["metric"] == "error" and r["value"] < 0 for r in margins)


def test_margins_over_a_reference_model():
    """Two models in one run: the model's margin over the reference on the same items."""
    rng = np.random.default_rng(14)
    stamps, labels = _halves(160, rng)
    split = np.where(np.arange(160) < 120, "train", "test")
    data = _task_data(stamps, labels, split, ("upper", "lower"))
    features = Features({"model": PixelEmbedder(16, n_components=20),
                         "reference": _BrightPixels()})
    rows, _ = classification_task("bars", data, features, knn=False)
    table = {(r["features"], r["metric"]): r for r in rows}
    margin = table[("model-reference", "error")]
    assert margin["value"] == pytest.approx(table[("model", "error")]["value"]
                                            - table[("reference", "error")]["value"])
    assert "reference model" in margin["name"]
    assert ("model-random", "error") not in table  # no twin in this run
    rows, _ = counts_task(_counted_pixels(rng), Features({"model": _BrightPixels(),
                                                          "reference": _Noise()}))
    assert {r["features"] for r in rows} == {"model", "reference", "model-reference"}


class _MeanLevel:
    """The stamp's mean level, and a constant."""

    name, input_size, pca = "level", 16, None

    def embed(self, stamps):
        return np.stack([stamps.mean(axis=(1, 2)), np.ones(len(stamps))], axis=1)


def test_logistic_probes_weight_the_classes_equally_for_a_balanced_test_split():
    # class 1 sits 1.5 sigma above class 0; train holds 9 of class 0 per class 1, test
    # holds as many of each. A probe fitted for train's priors calls most of class 1
    # class 0 (accuracy about 0.6); one that weights the classes equally about 0.77.
    rng = np.random.default_rng(3)
    labels = np.concatenate([np.zeros(360, int), np.ones(40, int), np.repeat([0, 1], 100)])
    levels = rng.normal(1.5 * labels, 1.0)
    stamps = np.repeat(levels[:, None, None], 16, axis=1).repeat(16, axis=2).astype(np.float32)
    split = np.where(np.arange(600) < 400, "train", "test")
    rows, plot = classification_task("bars", _task_data(stamps, labels, split, ("A", "B")),
                                     Features({"model": _MeanLevel()}), knn=False)
    accuracy = next(r["value"] for r in rows if r["metric"] == "accuracy")
    called_b = plot["confusion"][("model", "logistic")][:, 1].sum()
    assert accuracy > 0.7 and 70 < called_b < 130

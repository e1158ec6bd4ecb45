"""The model shipped inside radiofm: its file, its sha256, and its model card figures."""

import numpy as np
import pytest

from radiofm.inference import embed_image, load_model
from radiofm.models import bundled_registry, file_sha256, resolve_model
from radiofm.simulate import make_radio_sky

MAX_BYTES = 25 * 2**20
#: How far a rerun of the MiraBest probe may land from the model card: one test image of 104
#: is 0.0096; float rounding across machines can flip a borderline one.
CARD_TOLERANCE = 0.02
CARD_FIGURE = "frii/MBFRConfident/logistic/error"


@pytest.fixture(scope="module")
def shipped():
    registry = bundled_registry()
    entry = registry.entry("default")
    return registry, entry, registry.folder / entry["file"]


def test_default_model_is_bundled_small_and_matches_its_sha256(shipped):
    registry, entry, path = shipped
    assert path.is_file(), f"{path} is missing from the package"
    assert path.stat().st_size <= MAX_BYTES
    assert file_sha256(path) == entry["sha256"]
    assert resolve_model("default") == (path, entry["name"])
    model = load_model("default", threads=1)
    meta = model.metadata
    assert meta["name"] == entry["name"] and meta["quantization"] == "fp16-weights"
    assert meta["class_names"] == ["FRI", "FRII", "Compact", "Bent"]
    assert meta["views"] == 8
    assert meta["train_config"]["model"]["arch"] == meta["arch"]
    assert set(meta["data_summary"]) >= {"mgcls-0", "first-1"}  # MeerKAT and FIRST
    # every count head (FIRST's beam, the simulated MeerKAT sky's, any other) gives its
    # counts an uncertainty
    for beam in (5.4, 7.5, None):
        errors = model.heads.count_errors(np.array([0.0, 4.0]), beam)
        assert errors is not None and errors[0] == 0 and errors[1] > 0
    # heads version 5: the regimes of FIRST's beam and the simulated MeerKAT sky's also read
    # each window's peaks, so they need its input; the pooled head reads the embedding alone
    assert model.heads.count_reads_peaks
    embedding = np.zeros((1, meta["embedding_dim"]), dtype=np.float32)
    for beam in (5.4, 7.5):
        with pytest.raises(ValueError, match="peaks"):
            model.heads.predict_counts(embedding, beam)
    assert np.isfinite(model.heads.predict_counts(embedding, None)).all()
    # heads version 6: the simulated MeerKAT sky's regime combines its counts with the
    # catalogue annotate finds (photutils in README's main job, or pyBDSF); FIRST's and the
    # pooled head, with no truth to fit one on, do not
    assert set(model.heads.count_catalogues(7.5)) == {"photutils", "bdsf"}
    assert model.heads.count_catalogues(5.4) == model.heads.count_catalogues() == {}
    # heads version 8: each combination corrects for the sources its finder merges in
    # crowded (deep) fields, and judges a catalogue by the crowding of its fitted fields
    # (README's example: about 0.017 compact sources per beam; fields of 2 to 8 uJy/beam
    # span 0.01 to 0.03)
    for mix in model.heads.count_catalogues(7.5).values():
        assert mix.reads_crowding and mix.coef[3] > 0
        low, high = mix.crowding_range
        assert low < 0.011 and 0.025 < high and mix.crowding_known(0.017)
        assert not mix.crowding_known(0.1) and not mix.crowding_known(0.003)
    # heads version 9: each count head knows its training fields' median 5-sigma peaks per
    # tile; the simulated MeerKAT sky's (fields at 4 uJy/beam, about 20 per tile) flags a
    # 1.5 or 2 uJy/beam field (about 43 and 36), where its count alone falls short
    level, (low, high) = model.heads.count_field_peaks(7.5)
    assert level == pytest.approx(np.arcsinh(5.0 / model.spec.normalization.softening), rel=1e-5)
    assert 15 <= low <= 20 <= high <= 25
    assert model.heads.field_peaks_known([20.0], 7.5)
    assert not model.heads.field_peaks_known([36.0], 7.5)
    assert not model.heads.field_peaks_known([43.0], 7.5)
    assert all(model.heads.count_field_peaks(beam) is not None for beam in (5.4, None))
    # heads version 10: compact sources that share their island with a resolved source are
    # counted by a curve of their own, lower than the others' at 4 uJy/beam's S/N, and by a
    # weight that grows with the crowding faster than the others' (a piece is more often a
    # blended compact source in a deep field), equal at the training fields' crowding
    for mix in model.heads.count_catalogues(7.5).values():
        assert mix.reads_islands
        at = np.interp(8.0, mix.snr, mix.shared_probability), np.interp(8.0, mix.snr,
                                                                        mix.probability)
        assert at[0] < 0.8 * at[1]
        (pieces, steep), (others, slope) = mix.shared_coef, mix.coef[2:]
        assert steep > slope > 0
        crossing = (others - pieces) / (steep - slope)
        low, high = mix.crowding_range
        assert low < crossing < high


def test_default_model_embeds_an_image_out_of_the_box():
    hdu, _ = make_radio_sky((512, 512), seed=11)
    table = embed_image(hdu, threads=1)
    model = load_model("default", threads=1)
    assert table["embedding"].shape[1] == model.metadata["embedding_dim"]
    assert np.isfinite(table["embedding"]).all() and np.ptp(table["embedding"], axis=0).max() > 0
    assert table.meta["MODELSHA"] == bundled_registry().entry("default")["sha256"]


def test_default_model_reproduces_its_model_card_mirabest_error(shipped, shared_data):
    from radiofm.evaluate import evaluate

    _, entry, path = shipped
    report = evaluate(path, root=shared_data, tasks=["frii"], baselines=())
    row = [r for r in report if (r["task"], r["probe"], r["metric"]) == ("frii", "logistic",
                                                                         "error")]
    assert len(row) == 1 and row[0]["n_test"] == 104
    assert row[0]["value"] == pytest.approx(entry["figures"][CARD_FIGURE], abs=CARD_TOLERANCE)

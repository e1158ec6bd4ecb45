"""fit_output_heads and write_heads: numpy heads fitted on an ONNX model's embeddings."""

import numpy as np
import pytest

from radiofm.evaluate import expected_calibration_error, fit_output_heads, write_heads
from radiofm.inference import load_model
from radiofm.models import ModelMetadataError, parse_heads


def test_expected_calibration_error():
    confident = np.array([[0.9, 0.1]] * 10)
    assert expected_calibration_error(confident, np.zeros(10, int)) == pytest.approx(0.1)
    assert expected_calibration_error(confident, np.ones(10, int)) == pytest.approx(0.9)


def test_heads_fitted_on_an_onnx_model_are_written_into_a_copy(tiny_model, shared_data,
                                                                tmp_path):
    pytest.importorskip("onnx")
    heads = fit_output_heads(str(tiny_model), shared_data, limit=6, finder="photutils",
                             artefact_fields=2, cache=tmp_path / "cache")
    parsed = parse_heads(heads, embedding_dim=96)
    assert set(heads["counts"]["figures"]) == {"counts_first", "counts_simulated",
                                                "counts_simulated_artefacts"}
    assert "peak >= 5 sigma" in parsed.count_description
    assert parsed.temperature > 0 and parsed.has_reference("stamps")
    assert "ece_test" in heads["morphology"]["figures"]
    assert sorted((tmp_path / "cache").iterdir())  # embeddings cached for the next fit
    out = tmp_path / "headed.onnx"
    figures = write_heads(tiny_model, out, heads=heads)
    assert figures["ood_thresholds"]["tiles"] == heads["ood"]["tiles"]["threshold"]
    model = load_model(out, threads=1)
    assert model.heads is not None and model.class_names == parsed.classes
    with pytest.raises(FileExistsError, match="pass overwrite=True"):
        write_heads(tiny_model, out, heads=heads)
    heads["counts"]["coef"] = heads["counts"]["coef"][:3]
    with pytest.raises(ModelMetadataError, match="counts.coef has shape"):
        write_heads(tiny_model, tmp_path / "bad.onnx", heads=heads)
    assert not (tmp_path / "bad.onnx").exists()

"""scripts/ship_rule.py, the rule a candidate model must pass to replace the default (issue 12):
the six headline figures, the kNN guard and the heads' own test figures."""

import json

import pytest


@pytest.fixture
def ship_rule(repo_script):
    return repo_script("ship_rule")


def _report(path, ship_rule, *, gain=0.02, knn_loss=0.0):
    """A report.json in which the candidate beats the default on every headline figure by
    ``gain`` and loses ``knn_loss`` on the kNN guard; the default's intervals are +-0.05."""
    rows = []
    for figures, change in ((ship_rule.HEADLINE, gain), (ship_rule.GUARDS, -knn_loss)):
        for task, dataset, probe, metric, higher in figures:
            key = {"task": task, "dataset": dataset, "probe": probe, "metric": metric}
            reference = 0.5
            model = reference + (change if higher else -change)
            rows.append({**key, "features": "reference", "value": reference,
                         "low": reference - 0.05, "high": reference + 0.05})
            rows.append({**key, "features": "model", "value": model,
                         "low": model - 0.05, "high": model + 0.05})
    path.write_text(json.dumps({"meta": {}, "results": rows}))
    return path


def test_a_candidate_better_on_the_headline_ships_only_while_its_knn_error_holds(
        ship_rule, tmp_path, capsys):
    assert ship_rule.main([str(_report(tmp_path / "a.json", ship_rule, knn_loss=0.04))]) == 0
    assert "provisional" in capsys.readouterr().out  # the heads were not judged
    # v6's case: 6 of 6 better, the kNN error worse by more than half the default's interval
    assert ship_rule.main([str(_report(tmp_path / "b.json", ship_rule, knn_loss=0.06))]) == 1
    out = capsys.readouterr().out
    assert "guard frii / MBFRConfident / knn error" in out and "much worse" in out
    assert "provisional" not in out  # no heads can make it ship


def test_a_report_without_the_guard_figure_is_refused(ship_rule, tmp_path):
    path = _report(tmp_path / "r.json", ship_rule)
    report = json.loads(path.read_text())
    report["results"] = [r for r in report["results"] if r["probe"] != "knn"]
    path.write_text(json.dumps(report))
    with pytest.raises(ValueError, match="knn error"):
        ship_rule.main([str(path)])


def test_judge_heads_fails_a_drop_beyond_the_tolerance_and_a_missing_figure(ship_rule):
    reference = {"counts counts_first r2": 0.52, "morphology accuracy_test": 0.725}
    verdicts, passes = ship_rule.judge_heads(
        {"counts counts_first r2": 0.48, "morphology accuracy_test": 0.765}, reference)
    assert passes and [v["passes"] for v in verdicts] == [True, True]
    _, passes = ship_rule.judge_heads(
        {"counts counts_first r2": 0.385, "morphology accuracy_test": 0.765}, reference)
    assert not passes  # v6's FIRST count head
    _, passes = ship_rule.judge_heads({"morphology accuracy_test": 0.9}, reference)
    assert not passes


def _headed_model(tiny_model, tmp_path, monkeypatch, name, first_r2):
    """The tiny model with numpy heads whose recorded test figures include ``first_r2``."""
    import radiofm.evaluate._fit_heads as fitting
    from radiofm.cli import main
    from radiofm.tests.model_helpers import numpy_heads

    heads = numpy_heads(96)
    heads["counts"]["figures"] = {
        "counts_first": {"r2": first_r2, "mae": 0.6},
        "counts_simulated": {"r2": 0.73}, "counts_simulated_artefacts": {"r2": 0.70},
        "counts_simulated_depths": {"r2": 0.86}}
    heads["morphology"]["figures"] = {"accuracy_test": 0.75}
    monkeypatch.setattr(fitting, "fit_output_heads", lambda model, **options: heads)
    assert main(["fit-heads", str(tiny_model), "-o", str(tmp_path), "--name", name]) == 0
    return tmp_path / f"{name}.onnx"


def test_the_heads_figures_are_read_from_exported_models_and_judged(
        ship_rule, tiny_model, tmp_path, monkeypatch, capsys):
    pytest.importorskip("onnx")
    default = _headed_model(tiny_model, tmp_path, monkeypatch, "default", 0.519)
    level = _headed_model(tiny_model, tmp_path, monkeypatch, "level", 0.50)
    fallen = _headed_model(tiny_model, tmp_path, monkeypatch, "fallen", 0.385)
    assert ship_rule.head_figures(default) == pytest.approx({
        "counts counts_first r2": 0.519, "counts counts_simulated r2": 0.73,
        "counts counts_simulated_artefacts r2": 0.70, "counts counts_simulated_depths r2": 0.86,
        "morphology accuracy_test": 0.75})
    report = str(_report(tmp_path / "r.json", ship_rule))
    assert ship_rule.main([report, "--heads", str(level), "--reference-heads", str(default)]) == 0
    assert ship_rule.main([report, "--heads", str(fallen),
                           "--reference-heads", str(default)]) == 1
    assert "heads' test counts counts_first r2: candidate 0.385, default 0.519 -> fails" in (
        capsys.readouterr().out)


def test_a_model_without_heads_is_refused(ship_rule, tiny_model):
    with pytest.raises(ValueError, match="carries no heads"):
        ship_rule.head_figures(tiny_model)


def test_heads_and_reference_heads_go_together(ship_rule, tmp_path, tiny_model):
    with pytest.raises(SystemExit):
        ship_rule.main([str(_report(tmp_path / "r.json", ship_rule)),
                        "--heads", str(tiny_model)])

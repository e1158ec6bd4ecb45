"""scripts/study_summary.py: the study's table of runs, read from run folders or copied logs."""

import csv

import pytest

COLUMNS = ["step", "loss", "seconds", "teacher_entropy", "mean_entropy", "mb_logistic_acc",
           "mb_knn_acc", "sim_count_r2"]


def _write_log(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows({"step": step, **values} for step, values in rows)


def _read(path):
    return list(csv.DictReader(path.read_text().splitlines()))


def _step(entropy):
    return {"loss": 5.0, "seconds": 0.5, "teacher_entropy": entropy, "mean_entropy": entropy / 2}


def test_teacher_regime_over_a_window_of_steps_from_folders_and_logs(repo_script, tmp_path):
    script = repo_script("study_summary")
    # a run folder: 6 steps, the monitor before step 0 and after the last; entropy = step / 10
    monitor = {"mb_logistic_acc": 0.6, "mb_knn_acc": 0.55, "sim_count_r2": 0.1}
    rows = [(0, {**_step(0.0), **monitor})] + [(s, _step(s / 10)) for s in range(1, 6)]
    _write_log(tmp_path / "runs" / "sharp" / "train_log.csv", rows + [(6, monitor)])
    # a copied log of a resumed run: steps 2 and 3 logged twice, the later rows count
    resumed = [(s, _step(0.9)) for s in range(4)] + [(s, _step(0.5)) for s in range(2, 6)]
    _write_log(tmp_path / "copied" / "soft.csv", resumed)
    out = tmp_path / "out"

    script.main([str(tmp_path / "runs" / "sharp"), str(tmp_path / "copied" / "soft.csv"),
                 "--window", "2", "--end", "4", "--out", str(out)])
    summary = {row["run"]: row for row in _read(out / "summary.csv")}
    assert float(summary["sharp"]["teacher_entropy_window"]) == pytest.approx(0.35)  # 3, 4
    assert float(summary["sharp"]["mean_entropy_window"]) == pytest.approx(0.175)
    assert float(summary["soft"]["teacher_entropy_window"]) == pytest.approx(0.5)
    assert summary["sharp"]["mb_logistic_acc_step0"] == "0.6"
    assert (out / "sharp.csv").is_file() and not (out / "soft.csv").exists()  # folders only

    script.main([str(tmp_path / "runs" / "sharp"), "--window", "2", "--out", str(out)])
    summary = _read(out / "summary.csv")[0]
    assert float(summary["teacher_entropy_window"]) == pytest.approx(0.45)  # its last: 4, 5

    with pytest.raises(SystemExit):  # argparse's error: neither a log nor a run folder
        script.main([str(tmp_path / "copied"), "--out", str(out)])

"""Summarise recipe-study runs from their training logs (issue 12, part 4).

Each run is a run folder (its ``train_log.csv`` is copied to ``OUT/<run>.csv``) or a log
already copied (``configs/study-results/<run>.csv``, read where it is). The script prints
(and writes to ``OUT/summary.csv``) the steps reached, the mean and median s/step, the monitor
figures before step 0 (the random network), at the last monitored step, and at the last step
that every run reached (the fair comparison while runs are unfinished), and the teacher's
regime: ``teacher_entropy`` and ``mean_entropy`` averaged over ``--window`` steps ending at
``--end`` (default: each run's last step; steps 3751-4000 for a run stopped after step 4001),
the figures the study's rules read::

    python scripts/study_summary.py /work/runs/study-* --out configs/study-results
    python scripts/study_summary.py configs/study-results/v20-koleo-64*.csv --end 4000 \
        --out /tmp/v20
"""

import argparse
import csv
import shutil
from pathlib import Path

import numpy as np

FIGURES = ("mb_logistic_acc", "mb_knn_acc", "sim_count_r2")
# collapse indicators (radiofm.train's log columns) averaged over a window of steps
TEACHER = ("teacher_entropy", "mean_entropy")


def read_log(path):
    with open(path, newline="") as stream:
        return list(csv.DictReader(stream))


def teacher_regime(steps, window, end=None):
    """The mean of each `TEACHER` column over the ``window`` steps up to step ``end``
    (default: the run's last step); a step logged twice (a resumed run) counts once."""
    by_step = {int(r["step"]): r for r in steps}
    end = max(by_step, default=0) if end is None else end
    chosen = [r for step, r in by_step.items() if end - window < step <= end]
    return {column: round(float(np.mean([float(r[column]) for r in chosen])), 3)
            if chosen else "" for column in TEACHER}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="run folders or copied logs (.csv)")
    parser.add_argument("--out", required=True, help="folder for the copied logs and summary")
    parser.add_argument("--window", type=int, default=250,
                        help="steps over which the teacher columns are averaged")
    parser.add_argument("--end", type=int, default=None,
                        help="the last step of that window (default: each run's last step)")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    logs = {}
    for run in map(Path, args.runs):
        if run.suffix == ".csv" and run.is_file():
            logs[run.stem] = read_log(run)
        elif (run / "train_log.csv").is_file():
            logs[run.name] = read_log(run / "train_log.csv")
            shutil.copyfile(run / "train_log.csv", out / f"{run.name}.csv")
        else:
            parser.error(f"{run} is neither a log (.csv) nor a run folder with a train_log.csv")
    monitored = {name: {int(r["step"]): r for r in rows if r.get("sim_count_r2")}
                 for name, rows in logs.items()}
    common = set.intersection(*(set(m) for m in monitored.values())) if monitored else set()
    shared = max(common) if common else None
    summary = []
    for name, rows in logs.items():
        steps = [r for r in rows if r["loss"]]
        seconds = np.array([float(r["seconds"]) for r in steps])
        marks = monitored[name]
        last = max(marks) if marks else None
        row = {"run": name, "steps": len(steps),
               "s_per_step_mean": round(float(seconds.mean()), 2) if len(seconds) else "",
               "s_per_step_median": round(float(np.median(seconds)), 2) if len(seconds) else "",
               "last_loss": steps[-1]["loss"] if steps else "", "shared_step": shared,
               "last_monitored_step": last}
        row.update({f"{column}_window": value for column, value in
                    teacher_regime(steps, args.window, args.end).items()})
        for label, step in (("step0", 0), ("shared", shared), ("last", last)):
            for figure in FIGURES:
                value = marks.get(step, {}).get(figure, "") if step is not None else ""
                row[f"{figure}_{label}"] = value
        summary.append(row)
    with open(out / "summary.csv", "w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=list(summary[0]))
        writer.writeheader()
        writer.writerows(summary)
    for row in summary:
        print(", ".join(f"{key}={value}" for key, value in row.items()))
    print(f"wrote {out / 'summary.csv'}")


if __name__ == "__main__":
    main()

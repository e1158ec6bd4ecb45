"""Summarise recipe-study runs from their training logs (issue 12, part 4).

For each run folder it copies ``train_log.csv`` to ``OUT/<run>.csv`` and prints (and writes to
``OUT/summary.csv``) the steps reached, the mean and median s/step, and the monitor figures
before step 0 (the random network), at the last monitored step, and at the last step that
every run reached (the fair comparison while runs are unfinished)::

    python scripts/study_summary.py /work/runs/study-* --out configs/study-results
"""

import argparse
import csv
import shutil
from pathlib import Path

import numpy as np

FIGURES = ("mb_logistic_acc", "mb_knn_acc", "sim_count_r2")


def read_log(folder):
    with open(Path(folder) / "train_log.csv", newline="") as stream:
        return list(csv.DictReader(stream))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="run folders")
    parser.add_argument("--out", required=True, help="folder for the copied logs and summary")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    logs = {}
    for folder in args.runs:
        if (Path(folder) / "train_log.csv").is_file():
            logs[Path(folder).name] = read_log(folder)
            shutil.copyfile(Path(folder) / "train_log.csv", out / f"{Path(folder).name}.csv")
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

"""Apply the recipe study's ship rule to an evaluation of a candidate beside the default.

The rule (issue 12; ``configs/study-results/README.md``), written before each candidate's
evaluation: a candidate replaces the default model only if, on the test splits, it beats the
default on at least 4 of the 6 headline figures (`HEADLINE`) and is worse on none by more
than half the width of the default's 95 % interval. The figures come from one
``radiofm evaluate CANDIDATE --reference DEFAULT`` run, so both models are read with the
same data, probes and seeds; its paired margins (feature set ``model-reference``) are
printed beside them::

    radiofm evaluate CANDIDATE.onnx --reference radiofm/models/data/DEFAULT.onnx \\
        --baselines random,classical --finder photutils -o eval/candidate
    python scripts/ship_rule.py eval/candidate/report.json

Several reports may be given (for example a later run of some tasks); a later report's rows
replace an earlier one's. The script prints a table and the verdict, and exits with status 0
when the candidate ships, 1 when it does not.
"""

import argparse
import json
import math
import sys

# (task, dataset, probe, metric, higher is better)
HEADLINE = (
    ("frii", "MBFRConfident", "logistic", "error", False),
    ("crosssample", "MiraBest -> RGD", "logistic", "error", False),
    ("crosssample", "RGD -> MiraBest train+test", "logistic", "error", False),
    ("morphology", "RadioGalaxyDataset", "logistic", "accuracy", True),
    ("counts", "simulated tiles", "ridge", "r2", True),
    ("counts", "FIRST tiles", "ridge", "r2", True),
)
WINS_NEEDED = 4


def read_rows(paths):
    """``(features, task, dataset, probe, metric)`` -> row, later reports replacing earlier."""
    rows = {}
    for path in paths:
        with open(path) as stream:
            for row in json.load(stream)["results"]:
                key = tuple(row[k] for k in ("features", "task", "dataset", "probe", "metric"))
                rows[key] = row
    return rows


def judge(rows):
    """The rule on the rows: per-figure verdicts, the number of wins, and whether it ships.

    Each verdict is a dict with the figure's name, both values, the default's interval, the
    paired margin (candidate minus default, with its interval, where the report has it),
    and ``outcome``: ``"better"``, ``"level"``, ``"worse"`` (within half the default's
    interval) or ``"much worse"``.
    """
    verdicts = []
    for task, dataset, probe, metric, higher in HEADLINE:
        name = f"{task} / {dataset} / {probe} {metric}"
        try:
            model = rows[("model", task, dataset, probe, metric)]
            reference = rows[("reference", task, dataset, probe, metric)]
        except KeyError:
            raise ValueError(f"the reports have no model and reference rows for {name}: "
                             "evaluate the candidate with --reference DEFAULT on every "
                             "headline task") from None
        gain = (model["value"] - reference["value"]) * (1 if higher else -1)
        half_width = (reference["high"] - reference["low"]) / 2
        if not math.isfinite(half_width):
            raise ValueError(f"the reference's {name} has no interval")
        if gain > 0:
            outcome = "better"
        elif gain == 0:
            outcome = "level"
        else:
            outcome = "much worse" if -gain > half_width else "worse"
        margin = rows.get(("model-reference", task, dataset, probe, metric))
        verdicts.append({"figure": name, "model": model["value"],
                         "reference": reference["value"], "low": reference["low"],
                         "high": reference["high"], "margin": margin, "outcome": outcome})
    wins = sum(v["outcome"] == "better" for v in verdicts)
    ships = wins >= WINS_NEEDED and not any(v["outcome"] == "much worse" for v in verdicts)
    return verdicts, wins, ships


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("reports", nargs="+", help="report.json files of radiofm evaluate")
    args = parser.parse_args(argv)
    verdicts, wins, ships = judge(read_rows(args.reports))
    for v in verdicts:
        margin = ""
        if v["margin"] is not None:
            m = v["margin"]
            margin = f"; paired margin {m['value']:+.3f} [{m['low']:+.3f}, {m['high']:+.3f}]"
        print(f"{v['figure']}: candidate {v['model']:.3f}, default {v['reference']:.3f} "
              f"[{v['low']:.3f}, {v['high']:.3f}] -> {v['outcome']}{margin}")
    print(f"better on {wins} of {len(verdicts)} (needs {WINS_NEEDED}), much worse on "
          f"{sum(v['outcome'] == 'much worse' for v in verdicts)} (needs none): "
          f"{'ships' if ships else 'does not ship'}")
    return 0 if ships else 1


if __name__ == "__main__":
    sys.exit(main())

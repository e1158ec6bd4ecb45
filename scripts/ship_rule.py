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

Two guards follow (added after v6, which passed the headline but lost outputs the package
ships; ``RULE-v15-crops-hybrid.txt``), and any guard that fails stops the candidate:

- `GUARDS`: figures of the same report that must not be worse than the default's by more
  than half the width of the default's interval (the FRI/FRII kNN error, which similarity
  search relies on);
- with ``--heads CANDIDATE.onnx --reference-heads DEFAULT.onnx`` (exported files), each of
  the heads' own held-out test figures (`HEAD_FIGURES`, written into the models' metadata by
  the export) must not fall below the default's by more than `HEAD_TOLERANCE`.

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
# Figures that count no win but must not be much worse (same key layout as HEADLINE).
GUARDS = (
    ("frii", "MBFRConfident", "knn", "error", False),
)
# (part of the heads' JSON, data set or None, figure): the heads' held-out test figures, all
# higher-is-better, read from the exported models' ``heads`` metadata.
HEAD_FIGURES = (
    ("counts", "counts_first", "r2"),
    ("counts", "counts_simulated", "r2"),
    ("counts", "counts_simulated_artefacts", "r2"),
    ("counts", "counts_simulated_depths", "r2"),
    ("morphology", None, "accuracy_test"),
)
HEAD_TOLERANCE = 0.05


def read_rows(paths):
    """``(features, task, dataset, probe, metric)`` -> row, later reports replacing earlier."""
    rows = {}
    for path in paths:
        with open(path) as stream:
            for row in json.load(stream)["results"]:
                key = tuple(row[k] for k in ("features", "task", "dataset", "probe", "metric"))
                rows[key] = row
    return rows


def judge(rows, figures=HEADLINE, wins_needed=WINS_NEEDED):
    """The rule on the rows: per-figure verdicts, the number of wins, and whether it ships.

    Each verdict is a dict with the figure's name, both values, the default's interval, the
    paired margin (candidate minus default, with its interval, where the report has it),
    and ``outcome``: ``"better"``, ``"level"``, ``"worse"`` (within half the default's
    interval) or ``"much worse"``. ``figures`` are the figures judged and ``wins_needed``
    how many must be better (`GUARDS` need none: none may be much worse).
    """
    verdicts = []
    for task, dataset, probe, metric, higher in figures:
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
    none_much_worse = not any(v["outcome"] == "much worse" for v in verdicts)
    ships = none_much_worse and wins >= wins_needed
    return verdicts, wins, ships


def head_figures(path):
    """`HEAD_FIGURES` name -> value, from the ``heads`` metadata of the exported model at
    ``path``; a figure the heads do not hold is missing from the result."""
    from radiofm.inference import load_model

    heads = load_model(path).heads
    if heads is None:
        raise ValueError(f"{path} carries no heads: give an exported model with heads")
    found = {}
    for part, dataset, figure in HEAD_FIGURES:
        table = heads.raw[part].get("figures", {})
        value = (table.get(dataset, {}) if dataset else table).get(figure)
        if value is not None:
            found[" ".join(filter(None, (part, dataset, figure)))] = float(value)
    return found


def judge_heads(candidate, reference, tolerance=HEAD_TOLERANCE):
    """Compare two `head_figures` results: per-figure verdicts and whether none of the
    candidate's figures is below the reference's by more than ``tolerance``.

    A figure the reference has and the candidate lacks fails; one only the candidate has is
    not judged.
    """
    verdicts = []
    for name, value in reference.items():
        mine = candidate.get(name, math.nan)
        drop = value - mine
        verdicts.append({"figure": name, "model": mine, "reference": value,
                         "passes": math.isfinite(mine) and drop <= tolerance})
    return verdicts, all(v["passes"] for v in verdicts)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("reports", nargs="+", help="report.json files of radiofm evaluate")
    parser.add_argument("--heads", metavar="CANDIDATE.onnx",
                        help="the candidate exported with heads: judge the heads' test figures")
    parser.add_argument("--reference-heads", metavar="DEFAULT.onnx",
                        help="the default model file, whose heads' figures --heads is held to")
    args = parser.parse_args(argv)
    if (args.heads is None) != (args.reference_heads is None):
        parser.error("--heads and --reference-heads go together")
    rows = read_rows(args.reports)
    verdicts, wins, headline_passes = judge(rows)
    guards, _, guards_pass = judge(rows, GUARDS, wins_needed=0)
    for kind, v in [("", v) for v in verdicts] + [("guard ", v) for v in guards]:
        margin = ""
        if v["margin"] is not None:
            m = v["margin"]
            margin = f"; paired margin {m['value']:+.3f} [{m['low']:+.3f}, {m['high']:+.3f}]"
        print(f"{kind}{v['figure']}: candidate {v['model']:.3f}, default {v['reference']:.3f} "
              f"[{v['low']:.3f}, {v['high']:.3f}] -> {v['outcome']}{margin}")
    print(f"headline: better on {wins} of {len(verdicts)} (needs {WINS_NEEDED}), much worse on "
          f"{sum(v['outcome'] == 'much worse' for v in verdicts)} (needs none); guards much "
          f"worse on {sum(v['outcome'] == 'much worse' for v in guards)} (needs none)")
    ships = headline_passes and guards_pass
    if args.heads is not None:
        heads, heads_pass = judge_heads(head_figures(args.heads),
                                        head_figures(args.reference_heads))
        for v in heads:
            print(f"heads' test {v['figure']}: candidate {v['model']:.3f}, default "
                  f"{v['reference']:.3f} -> {'passes' if v['passes'] else 'fails'} "
                  f"(may fall by {HEAD_TOLERANCE})")
        ships = ships and heads_pass
    verdict = "ships" if ships else "does not ship"
    if ships and args.heads is None:  # a failed report fails whatever the heads say
        verdict += (", provisionally: the heads were not judged (give --heads and "
                    "--reference-heads once the candidate is exported)")
    print(verdict)
    return 0 if ships else 1


if __name__ == "__main__":
    sys.exit(main())

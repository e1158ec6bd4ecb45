"""Bundle an exported model with radiofm: register it, with its model card figures.

The ONNX file must already lie in ``radiofm/models/data``. Its figures come from the
``report.json`` that ``radiofm evaluate`` wrote for that very file (its rows for the model,
not the baselines); the registry records them beside the file's sha256, and the tests check
that the shipped file still reproduces its MiraBest figure.

Usage::

    python scripts/register_model.py radiofm/models/data/NAME.onnx \\
        --report eval/NAME/report.json [eval/NAME-counts/report.json] --description "..." \\
        --default

A file whose heads alone were re-fitted (``radiofm fit-heads``: the same graph, so the same
embedding and the same harness figures) keeps the figures registered under its name with
``--keep-figures``; its reports then replace the figures they re-measure.
"""

import argparse
import json
import math
import sys
from pathlib import Path

from radiofm.inference import load_model
from radiofm.models import DEFAULT_MODEL, bundled_registry


def model_figures(report, model_name):
    """``"task/dataset/probe/metric"`` -> value for the model's rows of a report.json."""
    if report["meta"].get("MODEL") != model_name:
        raise ValueError(f"the report evaluates {report['meta'].get('MODEL')!r}, not "
                         f"{model_name!r}: evaluate the bundled file itself")
    figures = {}
    for row in report["results"]:
        if row["features"] == "model" and math.isfinite(row["value"]):
            key = "/".join(str(row[k]) for k in ("task", "dataset", "probe", "metric"))
            figures[key] = round(float(row["value"]), 6)
    if not figures:
        raise ValueError("the report has no finite figures for the model")
    return figures


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", type=Path, help="the ONNX file, inside radiofm/models/data")
    parser.add_argument("--report", type=Path, required=True, nargs="+",
                        help="report.json of `radiofm evaluate` on that file; of several "
                        "(e.g. a full run and a later run of some tasks), a later one's "
                        "figures replace an earlier one's")
    parser.add_argument("--description", required=True, help="one line for listings")
    parser.add_argument("--default", action="store_true", help=f"make it {DEFAULT_MODEL!r}")
    parser.add_argument("--keep-figures", action="store_true",
                        help="start from the figures registered under the model's name (only "
                        "for a file whose graph is unchanged: re-fitted heads)")
    args = parser.parse_args(argv)
    name = load_model(args.model).name
    registry = bundled_registry()
    figures = {}
    if args.keep_figures:
        if name not in registry.models:
            parser.error(f"--keep-figures: no model {name!r} is registered yet")
        figures.update(registry.entry(name).get("figures", {}))
    for report in args.report:
        with open(report) as stream:
            figures.update(model_figures(json.load(stream), name))
    registry.add(name, args.model, description=args.description, default=args.default,
                 figures=figures)
    print(f"registered {name} ({registry.entry(name)['sha256']}) with {len(figures)} figures")
    return 0


if __name__ == "__main__":
    sys.exit(main())

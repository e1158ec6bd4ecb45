"""Evaluation harness: downstream tasks on frozen embeddings, beside baselines.

`evaluate` runs any embedding function (a trained backbone, an exported ONNX model, a
random backbone) on every task of the source work, with scikit-learn probes fitted on
train splits only, and puts it beside raw pixels (resized, PCA), a randomly initialised
backbone of the same architecture, classical non-learned measurements (an island counter,
shape measurements) and a small supervised CNN:

- ``counts``: compact-source counts per tile on FIRST and simulated MeerKAT-like tiles
  (ridge regression; MSE, R^2);
- ``frii``: FRI/FRII on MBFRConfident (logistic and kNN; test error with a bootstrap
  interval);
- ``crosssample``: FRI/FRII probes fitted on MiraBest and tested on RadioGalaxyDataset's
  FRI/FRII sources, and the reverse, with a two-way leakage guard;
- ``morphology``: FRI/FRII/Compact/Bent on RadioGalaxyDataset (logistic, C by
  cross-validation on train: the literature valid split is an evaluation split and no probe
  uses it; accuracy, macro F1, confusion matrix);
- ``similarity``: precision@k of same-class neighbours for MiraBest test queries;
- ``anomaly``: how the authors' scored MGCLS cutouts rank by an embedding anomaly score;
- ``redshift``: FIRST source redshifts (ridge; MAE, R^2).

`fit_output_heads` fits the numpy heads (Poisson counts, calibrated morphology, OOD
references) that models carry in their ``heads`` metadata (`radiofm.models.Heads`);
`fit_heads` fits the linear heads older exports folded into the graph.
"""

from ._classical import IslandCounter, ShapeMeasurer, count_islands, measure_shapes
from ._embedders import (
    EVALUATION_VIEWS,
    PixelEmbedder,
    ViewAveraged,
    load_embedder,
    random_twin,
    with_views,
)
from ._fit_heads import (
    ARTEFACT_FIELDS,
    COUNT_REGIMES,
    COUNT_WINDOWS,
    DEPTH_FIELDS,
    MORPHOLOGY_STAMP_ARCSEC,
    SIMULATED_FIELDS,
    expected_calibration_error,
    fit_output_heads,
    write_heads,
)
from ._harness import TASKS, evaluate, fit_heads, format_report
from ._stamps import TaskData, cross_sample_data, load_task_data, normalised_stamps
from ._tasks import anomaly_scores

__all__ = [
    "ARTEFACT_FIELDS",
    "COUNT_REGIMES",
    "COUNT_WINDOWS",
    "DEPTH_FIELDS",
    "EVALUATION_VIEWS",
    "IslandCounter",
    "MORPHOLOGY_STAMP_ARCSEC",
    "ShapeMeasurer",
    "TASKS",
    "PixelEmbedder",
    "SIMULATED_FIELDS",
    "TaskData",
    "ViewAveraged",
    "anomaly_scores",
    "count_islands",
    "cross_sample_data",
    "evaluate",
    "expected_calibration_error",
    "fit_heads",
    "fit_output_heads",
    "format_report",
    "load_embedder",
    "load_task_data",
    "measure_shapes",
    "normalised_stamps",
    "random_twin",
    "with_views",
    "write_heads",
]

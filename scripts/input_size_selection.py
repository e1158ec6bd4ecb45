"""Choose the input side a model reads its morphology stamps at, on training data only.

A convolutional backbone takes any input side. This script reads an exported 8-view model
(its graph given free height and width) and its random-init twin at several input sides,
on the stamp tasks only, and scores each side without touching a test split:

- MBFRConfident TRAIN, 5-fold cross-validated logistic error (C by an inner 3-fold search);
- RadioGalaxyDataset 4-class, 5-fold cross-validated accuracy on its train split.

RadioGalaxyDataset's literature valid split is an evaluation split (the data README), so no
figure reads it; the selection of ``configs/study-results/input_size_selection.csv`` was
made before that rule was applied and also scored it (its ``rgd4_valid_accuracy`` and
``mb_to_rgd_valid_error`` columns).

Usage (about 30 minutes on 2 cores for 64, 96 and 128)::

    python scripts/input_size_selection.py radiofm/models/data/radiofm-resnet18-dino-v2.onnx \
        --sizes 64 96 128 --out /work/exp/input-size

writes ``input_size_selection.csv`` (one row per backbone and side) and prints it.
"""

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from readout_selection import stamp_figures, write_selection  # noqa: E402

STAMP_TASKS = ("frii", "morphology")


class FreeSideOnnx:
    """An exported model's ``embedding`` output with the input's height and width left free."""

    pca = None

    def __init__(self, path, input_size, batch_size=64):
        import onnx
        import onnxruntime as ort

        graph = onnx.load(str(path))
        dims = graph.graph.input[0].type.tensor_type.shape.dim
        dims[2].dim_param, dims[3].dim_param = "height", "width"
        self.session = ort.InferenceSession(graph.SerializeToString(),
                                            providers=["CPUExecutionProvider"])
        self.input_size = input_size
        self.batch_size = batch_size

    def embed(self, stamps):
        """(N, S, S) prepared stamps -> (N, D) float32."""
        batch = np.asarray(stamps, dtype=np.float32)[:, None]
        return np.concatenate([
            self.session.run(["embedding"], {self.session.get_inputs()[0].name:
                                             batch[start:start + self.batch_size]})[0]
            for start in range(0, len(batch), self.batch_size)])


def training_items(data):
    """A `~radiofm.evaluate.TaskData` of its training items only (nothing else is embedded)."""
    from radiofm.evaluate import TaskData

    keep = np.flatnonzero(data.split == "train")
    return TaskData(data.name, data.stamps[keep], [data.normalizations[k] for k in keep],
                    data.target[keep], data.split[keep], data.class_names)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="an exported 8-view .onnx model")
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 96, 128],
                        help="input sides to compare")
    parser.add_argument("--out", required=True, help="folder for input_size_selection.csv")
    parser.add_argument("--skip-twin", action="store_true",
                        help="score the model only, not its random-init twin")
    args = parser.parse_args(argv)

    from sklearn.model_selection import StratifiedKFold

    from radiofm.evaluate import load_embedder, with_views
    from radiofm.evaluate._embedders import _random_backbone, normalization_of
    from radiofm.evaluate._stamps import load_task_data

    model = load_embedder(args.model)
    if model.views != 8:
        raise SystemExit(f"{args.model} averages {model.views} views; this script compares "
                         "8-view models with their 8-view twins")
    normalization = normalization_of(model)
    data = {task: training_items(load_task_data(task, normalization=normalization))
            for task in STAMP_TASKS}
    folds = StratifiedKFold(5, shuffle=True, random_state=0)
    rows = []
    for size in args.sizes:
        roles = {"model": FreeSideOnnx(args.model, size)}
        if not args.skip_twin:
            roles["random twin"] = with_views(_random_backbone(model.architecture, size, 0, 128),
                                              8)
        for role, embedder in roles.items():
            features = {task: embedder.embed(task_data.prepared(size))
                        for task, task_data in data.items()}
            rows.append({"backbone": role, "input_pixels": size,
                         **stamp_figures(features, data, folds)})
            print(rows[-1], flush=True)
    write_selection(rows, Path(args.out) / "input_size_selection.csv")


if __name__ == "__main__":
    main()

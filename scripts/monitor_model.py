"""The training monitor's figures for an exported ONNX model or a run's teacher backbone.

Issue 12, part 4: puts the shipped model on the same scale as the study runs' monitor rows
(MBFRConfident TRAIN carve: logistic and kNN accuracy; simulated compact-count R^2), with the
same carve sizes and inputs (the model's own stretch and input size)::

    python scripts/monitor_model.py radiofm/models/data/radiofm-resnet18-dino-v2.onnx \
        --config configs/study-old-64.toml
    python scripts/monitor_model.py /work/runs/study-snrproc-64 \
        --config configs/study-snrproc-64.toml

``--config`` gives the monitor section (carve sizes, count fields); the stretch and input size
come from the model (ONNX metadata) or from the run's own config.
"""

import argparse
import json
from pathlib import Path

import numpy as np


class _OnnxBackbone:
    """An ONNX model's ``embedding`` output behind the torch-module calls the monitor makes."""

    def __init__(self, path):
        import onnxruntime

        self.session = onnxruntime.InferenceSession(str(path),
                                                    providers=["CPUExecutionProvider"])
        self.training = False

    def eval(self):
        return self

    def train(self, mode=True):
        return self

    def __call__(self, tiles):
        import torch

        out = self.session.run(["embedding"], {"tiles": tiles.numpy().astype(np.float32)})[0]
        return torch.from_numpy(out)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="an .onnx file, or a run folder / teacher_backbone.pt")
    parser.add_argument("--config", required=True, help="training config for [monitor]")
    args = parser.parse_args(argv)

    import torch

    from radiofm.train import FeatureMonitor, load_backbone, load_config

    config = load_config(args.config)
    path = Path(args.model)
    if path.suffix == ".onnx":
        import onnxruntime

        meta = onnxruntime.InferenceSession(
            str(path), providers=["CPUExecutionProvider"]).get_modelmeta().custom_metadata_map
        config.data.normalization = json.loads(meta["normalization"])
        config.crops.global_size = int(meta.get("input_size") or meta.get("input_pixels"))
        backbone = _OnnxBackbone(path)
        label = f"{path.name} (views {meta.get('views', '1')})"
    else:
        run = path if path.is_dir() else path.parent
        weights = run / "teacher_backbone.pt"
        if not weights.exists():
            weights = run / "checkpoint.pt"
        saved = torch.load(weights, weights_only=True, map_location="cpu")["config"]
        config.data.normalization = saved["data"]["normalization"]
        config.crops.global_size = saved["crops"]["global_size"]
        backbone = load_backbone(weights)
        label = f"{run.name} ({weights.name})"
    torch.set_num_threads(1)
    monitor = FeatureMonitor(config)
    row = monitor(backbone, torch.device("cpu"))
    print(f"{label}: input {config.crops.global_size} px, stretch "
          f"{config.data.normalization}: " + ", ".join(f"{k} {v}" for k, v in row.items()))


if __name__ == "__main__":
    main()

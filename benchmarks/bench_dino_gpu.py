"""DINO throughput and loss curve of ViT-S/16 on one GPU (bf16 autocast, channels-last).

Trains ``--steps`` steps of radiofm's DINO on simulated MeerKAT-like tiles with the same
code path as ``radiofm train`` and prints images/s (2 global + ``--local`` local crops per
image; steps after the first ``--warmup`` only) and the loss curve. Runs on the CPU too
(slowly) for a smoke check.

Usage::

    python benchmarks/bench_dino_gpu.py [--steps 200] [--batch 128] [--output DIR]
"""

import argparse
import csv
import tempfile
from pathlib import Path

import numpy as np
import torch

from radiofm.train import TrainConfig, train


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="vit_small_patch16_224")
    parser.add_argument("--patch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--global-size", type=int, default=112)
    parser.add_argument("--local-size", type=int, default=48)
    parser.add_argument("--local", type=int, default=6)
    parser.add_argument("--fields", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--out-dim", type=int, default=65536)
    parser.add_argument("--lr", type=float, default=5e-4, help="for a batch of 256")
    parser.add_argument("--free-last-layer", action="store_true",
                        help="norm_last_layer = false (DINO's option for better features)")
    parser.add_argument("--teacher-temp", type=float, default=0.04)
    parser.add_argument("--output", default=tempfile.mkdtemp(prefix="radiofm-dino-gpu-"))
    args = parser.parse_args()

    config = TrainConfig.from_dict({
        "data": {"sources": [{"kind": "simulated", "fields": args.fields, "size": 1024}],
                 "tile_size": 128},
        "model": {"arch": args.arch, "patch_size": args.patch, "out_dim": args.out_dim,
                  "norm_last_layer": not args.free_last_layer},
        "crops": {"global_size": args.global_size, "local_size": args.local_size,
                  "n_local": args.local},
        "optim": {"epochs": 1, "steps_per_epoch": args.steps, "batch_size": args.batch,
                  "warmup_epochs": 0.1, "freeze_last_layer": 0, "lr": args.lr,
                  "teacher_temp": args.teacher_temp, "warmup_teacher_temp": args.teacher_temp},
        "run": {"output": str(Path(args.output) / "run"), "checkpoint_every": args.steps,
                "amp": True},
    })
    device = "cuda" if torch.cuda.is_available() else "cpu"
    name = torch.cuda.get_device_name() if device == "cuda" else "CPU"
    print(f"{args.arch} (patch {args.patch}) on {name}, torch {torch.__version__}, batch "
          f"{args.batch}, crops 2x{args.global_size} + {args.local}x{args.local_size}, "
          f"{args.steps} steps, bf16 autocast: {device == 'cuda'}, out_dim {args.out_dim}, "
          f"norm_last_layer {not args.free_last_layer}, lr {args.lr} per 256, teacher temp "
          f"{args.teacher_temp}", flush=True)
    output = train(config, progress=False)
    with open(output / "train_log.csv", newline="") as stream:
        rows = list(csv.DictReader(stream))
    seconds = np.array([float(r["seconds"]) for r in rows[args.warmup:]])
    print(f"step time {seconds.mean() * 1e3:.1f} ms (median {np.median(seconds) * 1e3:.1f}); "
          f"throughput {args.batch / seconds.mean():.0f} images/s")
    print("step   loss     lr         teacher_entropy  mean_entropy")
    for r in rows[:: max(1, len(rows) // 20)] + [rows[-1]]:
        print(f"{int(r['step']):>4}  {float(r['loss']):.4f}  {float(r['lr']):.3e}  "
              f"{float(r['teacher_entropy']):>15.3f}  {float(r['mean_entropy']):>12.3f}")
    print(f"log: {output / 'train_log.csv'}")


if __name__ == "__main__":
    main()

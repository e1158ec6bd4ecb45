"""Where a DINO training step's time goes, for a training config, on one device.

Side by side in one run, with the config's model, crops, batch and normalisation (its data
replaced by simulated sky tiles, so that no data folder is needed) on the accelerator when
there is one, else the CPU:

- ``sample``: a batch drawn from the bank (`radiofm.train.TileBank.sample`) and copied to
  the device;
- ``augment on device``: the multi-crop augmentation (`radiofm.train.RadioMultiCrop`) of a
  batch already on the device, as the trainer runs it;
- ``augment on CPU + copy``: the same augmentation run on the CPU, its crops then copied to
  the device;
- ``whole step``: training steps of `radiofm.train.train` (the ``seconds`` column of its
  log, after ``--warmup`` steps), which hold the two above plus the network: student and
  teacher forward, backward, optimiser step and EMA.

Every device part is timed between two synchronisations. On a CPU-only machine the two
augmentation rows time the same work (a smoke check); the comparison is for an accelerator,
where the prepared device command of ``docs/train.rst`` runs it before training.

Usage::

    python benchmarks/bench_step_parts.py [configs/gpu-resnet18-64.toml] [--steps 40]
        [--batch N] [--repeats 10]
"""

import argparse
import csv
import dataclasses
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from radiofm.train import RadioMultiCrop, build_tile_bank, load_config, train


def _timed(work, device, repeats):
    """Median seconds of ``work()`` over ``repeats`` calls after one warm-up call."""
    def synchronise():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    work()
    seconds = []
    for _ in range(repeats):
        synchronise()
        began = time.perf_counter()
        work()
        synchronise()
        seconds.append(time.perf_counter() - began)
    return float(np.median(seconds))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", nargs="?", default="configs/gpu-resnet18-64.toml")
    parser.add_argument("--steps", type=int, default=40, help="whole training steps")
    parser.add_argument("--warmup", type=int, default=10, help="first steps left out")
    parser.add_argument("--batch", type=int, help="batch size (default: the config's)")
    parser.add_argument("--repeats", type=int, default=10, help="calls per part timing")
    parser.add_argument("--fields", type=int, default=4, help="simulated 1024 px skies")
    args = parser.parse_args()
    if args.steps <= args.warmup:
        parser.error(f"--steps ({args.steps}) must exceed --warmup ({args.warmup})")

    config = load_config(args.config)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    batch = args.batch or config.optim.batch_size
    output = Path(tempfile.mkdtemp(prefix="radiofm-step-parts-")) / "run"
    config = dataclasses.replace(
        config,
        data=dataclasses.replace(config.data, sources=[
            {"kind": "simulated", "fields": args.fields, "size": 1024, "weight": 1.0}]),
        optim=dataclasses.replace(config.optim, epochs=1, steps_per_epoch=args.steps,
                                  batch_size=batch),
        run=dataclasses.replace(config.run, output=str(output), checkpoint_every=args.steps,
                                device=device.type),
        monitor=dataclasses.replace(config.monitor, every=0),
    )
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"{args.config}: {config.model.arch}, batch {batch}, crops "
          f"2x{config.crops.global_size} + {config.crops.n_local}x{config.crops.local_size}, "
          f"{config.data.spec.method} tiles, on {name} ({torch.get_num_threads()} CPU threads), "
          f"torch {torch.__version__}", flush=True)

    bank = build_tile_bank(config.data)
    augment = RadioMultiCrop(config.crops, config.data.spec)
    rng = np.random.default_rng(0)
    tiles = bank.sample(rng, batch)
    on_device = tiles.to(device)
    parts = {
        "sample": lambda: bank.sample(rng, batch).to(device),
        "augment on device": lambda: augment(on_device, torch.Generator().manual_seed(0)),
        "augment on CPU + copy": lambda: [
            crop.to(device) for crop in augment(tiles, torch.Generator().manual_seed(0))],
    }
    timings = {label: _timed(work, device, args.repeats) for label, work in parts.items()}

    train(config, progress=False)
    with open(output / "train_log.csv", newline="") as stream:
        steps = [float(row["seconds"]) for row in csv.DictReader(stream)][args.warmup:]
    timings["whole step"] = float(np.median(steps))
    print(f"{'part':<24}{'ms (median)':>12}{'share of a step':>18}")
    for label, seconds in timings.items():
        print(f"{label:<24}{seconds * 1e3:>12.1f}{seconds / timings['whole step']:>18.0%}")
    rest = timings["whole step"] - timings["sample"] - timings["augment on device"]
    print(f"network, optimiser and EMA (step - sample - augment on device): {rest * 1e3:.1f} ms; "
          f"{batch / timings['whole step']:.0f} images/s")


if __name__ == "__main__":
    main()

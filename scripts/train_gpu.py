"""Run a GPU training config within a wall-clock limit and leave its state where it is copied back.

Issue 12, part 5: the one prepared command for a lent GPU. It runs ``radiofm train`` on the
config (bf16 autocast and channels-last come from ``run.amp``), under a limit that stops the
run cleanly (its last ``checkpoint.pt`` stays; ``--resume`` continues it), then prints the
measured s/step and the monitor rows, so a later CPU session can export and evaluate it::

    python scripts/train_gpu.py configs/gpu-vits16.toml --output "$OUT/gpu-vits16"
    radiofm export "$OUT/gpu-vits16" --name radiofm-vits16-dino-v2 --views 8 --half-weights

``--dry-run`` is the CPU smoke check: the same config for 2 steps of batch 4 on a few tiles
of each source (simulated tiles when the data root is absent), on the CPU.
"""

import argparse
import csv
import signal
import sys
import tempfile
import time
from pathlib import Path


def dry_run_config(config, output):
    """``config`` shrunk to 2 CPU steps of batch 4 on a few tiles of each source."""
    from radiofm.datasets import data_root

    try:
        have_data = data_root(config.data.root or None).is_dir()
    except (FileNotFoundError, ValueError):
        have_data = False
    if have_data:
        sources = []
        for source in config.data.sources:
            limited = dict(source)
            if limited.get("kind") in ("first", "mgcls", "mirabest"):
                limited["limit"] = 3
            sources.append(limited)
        config.data.sources = sources
    else:
        config.data.sources = [{"kind": "simulated", "fields": 1, "size": 256}]
    config.optim.epochs, config.optim.steps_per_epoch, config.optim.batch_size = 1, 2, 4
    config.optim.warmup_epochs = 0.5
    config.monitor.every = 0
    config.run.device, config.run.threads, config.run.checkpoint_every = "cpu", 1, 1
    config.run.output = str(output)
    return config


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", help="TOML training config (e.g. configs/gpu-vits16.toml)")
    parser.add_argument("--output", help="run folder (default: the config's run.output)")
    parser.add_argument("--limit", type=float, default=530.0,
                        help="seconds after which the run stops at the next step, keeping its "
                        "checkpoint (default 530)")
    parser.add_argument("--resume", action="store_true", help="continue the run's checkpoint")
    parser.add_argument("--dry-run", action="store_true",
                        help="2 CPU steps on a few tiles (smoke check)")
    args = parser.parse_args(argv)

    import torch

    from radiofm.train import load_config, train

    config = load_config(args.config)
    if args.dry_run:
        config = dry_run_config(config, Path(args.output or tempfile.mkdtemp()) / "dry-run")
    elif args.output:
        config.run.output = args.output
    if config.run.device == "cuda" and not torch.cuda.is_available():
        sys.exit("this config wants a GPU and torch sees none; use --dry-run for a CPU check")
    name = torch.cuda.get_device_name() if torch.cuda.is_available() and not args.dry_run \
        else "CPU"
    print(f"{args.config} on {name}: {config.model.arch} at {config.crops.global_size} px, "
          f"batch {config.optim.batch_size}, "
          f"{config.optim.epochs * config.optim.steps_per_epoch} steps -> {config.run.output}",
          flush=True)

    began = time.monotonic()

    def stop(signum, frame):  # the trainer checkpoints on the way out of its loop
        raise KeyboardInterrupt

    signal.signal(signal.SIGALRM, stop)
    signal.alarm(max(1, int(args.limit)))
    try:
        output = train(config, resume=args.resume, progress=False)
        finished = True
    except KeyboardInterrupt:
        output, finished = Path(config.run.output), False
    finally:
        signal.alarm(0)
    log = Path(output) / "train_log.csv"
    with open(log, newline="") as stream:
        rows = [r for r in csv.DictReader(stream) if r["loss"]]
    seconds = [float(r["seconds"]) for r in rows[5:]] or [float(r["seconds"]) for r in rows]
    print(f"{'finished' if finished else 'stopped at the limit'} after "
          f"{time.monotonic() - began:.0f} s: {len(rows)} steps logged, "
          f"{sum(seconds) / max(1, len(seconds)):.3f} s/step (after the first 5)")
    with open(log, newline="") as stream:
        for r in csv.DictReader(stream):
            if r.get("sim_count_r2"):
                print(f"step {r['step']}: mb_logistic_acc {r['mb_logistic_acc']} mb_knn_acc "
                      f"{r['mb_knn_acc']} sim_count_r2 {r['sim_count_r2']}")
    print(f"state in {output} (checkpoint.pt; teacher_backbone.pt when finished)")


if __name__ == "__main__":
    main()

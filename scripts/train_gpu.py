"""Train a config on a lent GPU within a time budget, with data and weights small enough to travel.

Issue 12, part 5: the one prepared route for a lent GPU. The device machine gets the working
tree and what is carried (64 MiB in all), not ``../shared/data``, and gives back at most 8
files of 16 MiB. So the route has three steps:

``pack`` (here, CPU)
    Build the config's tile bank with the leakage guard, exactly as ``radiofm train`` would,
    and write it as one compressed file: each tile's S/N as an int8 code of
    ``asinh(value / 0.5)`` in steps of 0.1 (0.025 sigma near zero, 5 % of the value for bright
    pixels: finer than the processing augmentations' re-noising, as 8-bit MiraBest and MGCLS
    stamps already are).
``run`` (device)
    Decode the bank into ``npy`` sources with the same weights, time ``--probe-steps`` steps,
    set the epochs to what fits in ``--seconds``, train (bf16 and channels-last from
    ``run.amp``) and write the teacher backbone in half precision, cut into parts below
    15 MB, with the training log, into ``--return``. A run stopped at ``--limit`` keeps its
    ``checkpoint.pt``; its teacher is returned all the same.
``unpack`` (here)
    Join the parts into a run folder's ``teacher_backbone.pt`` (float32, with the packed
    config's own data sources for provenance) that ``radiofm export`` and
    ``radiofm evaluate`` read.

Example (the device command carries ``.gpubank``)::

    python scripts/train_gpu.py pack configs/gpu-resnet18-64.toml --bank .gpubank/bank.npz
    python scripts/train_gpu.py run configs/gpu-resnet18-64.toml --bank .gpubank/bank.npz \\
        --seconds 400 --output /tmp/gpu-run --return "$OUT/back"
    python scripts/train_gpu.py unpack BACK --into runs/gpu-resnet18-64
    radiofm export runs/gpu-resnet18-64 --name radiofm-resnet18-dino-gpu --views 8 --half-weights

``run --dry-run`` is the CPU smoke check of the same route: 2 steps of batch 4.
"""

import argparse
import copy
import csv
import json
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SOFTENING = 0.5  # the int8 code is asinh(value / SOFTENING) / STEP
STEP = 0.1
PART_BYTES = 15_000_000
PART_GLOB = "backbone-part*.pt"


def encode(tiles):
    """Tiles (float) -> int8 codes; values beyond the code range saturate."""
    codes = np.rint(np.arcsinh(np.asarray(tiles, np.float32) / SOFTENING) / STEP)
    return np.clip(codes, -127, 127).astype(np.int8)


def decode(codes):
    """int8 codes -> float32 tiles (the inverse of `encode` up to its rounding)."""
    return (SOFTENING * np.sinh(codes.astype(np.float32) * STEP)).astype(np.float32)


def pack(args):
    from radiofm.train import load_config
    from radiofm.train._data import build_tile_bank

    config = load_config(args.config)
    bank = build_tile_bank(config.data, monitor=config.monitor)
    arrays = {f"tiles_{k}": encode(tiles) for k, tiles in enumerate(bank.banks)}
    info = {"names": bank.names, "share": [float(s) for s in bank.share],
            "tile_size": bank.tile_size, "summary": bank.summary(),
            "sources": config.data.sources, "normalization": config.data.normalization}
    Path(args.bank).parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.bank, info=np.array(json.dumps(info)), **arrays)
    size = Path(args.bank).stat().st_size
    print(f"{args.bank}: {len(bank)} tiles {bank.summary()} in {size / 1e6:.1f} MB")


def log_rows(output):
    """The rows of run folder ``output``'s training log (step rows have a loss; monitor-only
    rows do not)."""
    from radiofm.train._checkpoint import LOG_FILE

    with open(Path(output) / LOG_FILE, newline="") as stream:
        return list(csv.DictReader(stream))


def unpacked_sources(bank_file, folder):
    """The packed bank as ``npy`` sources in ``folder`` (same weights), and its info."""
    with np.load(bank_file) as packed:
        info = json.loads(str(packed["info"]))
        sources = []
        for k, share in enumerate(info["share"]):
            path = Path(folder) / f"tiles_{k}.npy"
            np.save(path, decode(packed[f"tiles_{k}"]))
            sources.append({"kind": "npy", "path": str(path), "weight": share})
    return sources, info


def timed_steps(config, steps, folder):
    """Median seconds per step of ``steps`` steps of ``config`` (no monitor, no checkpoint)."""
    from radiofm.train import train

    probe = copy.deepcopy(config)
    probe.optim.epochs, probe.optim.steps_per_epoch = 1, steps
    probe.optim.warmup_epochs = min(probe.optim.warmup_epochs, 1.0)
    probe.monitor.every, probe.run.checkpoint_every = 0, steps
    probe.run.output = str(Path(folder) / "probe")
    train(probe, progress=False)
    seconds = [float(r["seconds"]) for r in log_rows(probe.run.output) if r["loss"]]
    return float(np.median(seconds[min(5, len(seconds) - 1):]))


def dry_run_config(config, output):
    """``config`` shrunk to 2 CPU steps of batch 4."""
    config.optim.epochs, config.optim.steps_per_epoch, config.optim.batch_size = 1, 2, 4
    config.optim.warmup_epochs = 0.5
    config.monitor.every = 0
    config.run.device, config.run.threads, config.run.checkpoint_every = "cpu", 1, 1
    config.run.output = str(output)
    return config


def write_return(output, folder, info):
    """The teacher backbone of run folder ``output`` in half-precision parts, and its log;
    the config and the data summary name the packed bank's own sources (`pack`'s ``info``)."""
    import torch

    from radiofm.train._checkpoint import backbone_state, find_checkpoint, read_checkpoint

    state = read_checkpoint(find_checkpoint(output))
    model, weights = backbone_state(state)
    config = dict(state["config"])
    config["data"] = {**config["data"], "sources": info["sources"]}
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    parts, size = [{}], 0
    for key, value in weights.items():
        value = value.half() if value.is_floating_point() else value
        nbytes = value.numel() * value.element_size()
        if size + nbytes > PART_BYTES and parts[-1]:
            parts.append({})
            size = 0
        parts[-1][key] = value.contiguous()
        size += nbytes
    steps = sum(1 for row in log_rows(output) if row["loss"])
    common = {"model": model, "config": config, "step": int(state.get("step", steps)),
              "data": json.dumps(info["summary"]), "parts": len(parts)}
    for k, part in enumerate(parts):
        torch.save({**common, "part": k, "weights": part}, folder / f"backbone-part{k}.pt")
    shutil.copy(Path(output) / "train_log.csv", folder / "train_log.csv")
    print(f"returned {len(parts)} parts to {folder}")


def run(args):
    import torch

    from radiofm.train import load_config, train

    if args.resume and args.seconds:
        sys.exit("--resume continues the checkpoint's own number of steps; drop --seconds")
    config = load_config(args.config)
    scratch = Path(tempfile.mkdtemp(prefix="radiofm-gpu-"))
    config.data.sources, info = unpacked_sources(args.bank, scratch)
    if config.data.tile_size != info["tile_size"]:
        sys.exit(f"{args.bank} holds {info['tile_size']} px tiles; {args.config} wants "
                 f"{config.data.tile_size}: pack it again")
    if args.dry_run:
        config = dry_run_config(config, Path(args.output or scratch) / "dry-run")
    elif args.output:
        config.run.output = args.output
    if config.run.device == "cuda" and not torch.cuda.is_available():
        sys.exit("this config wants a GPU and torch sees none; use --dry-run for a CPU check")
    began = time.monotonic()
    if args.seconds and not args.dry_run:
        per_step = timed_steps(config, args.probe_steps, scratch)
        fit = int((args.seconds - (time.monotonic() - began)) / per_step)
        epochs = max(1, min(config.optim.epochs, fit // config.optim.steps_per_epoch))
        print(f"{per_step:.4f} s/step: {epochs} epochs of {config.optim.steps_per_epoch} steps "
              f"fit in {args.seconds:.0f} s", flush=True)
        config.optim.epochs = epochs
    name = (torch.cuda.get_device_name()
            if config.run.device != "cpu" and torch.cuda.is_available() else "CPU")
    print(f"{args.config} on {name}: {config.model.arch} at {config.crops.global_size} px, "
          f"batch {config.optim.batch_size}, "
          f"{config.optim.epochs * config.optim.steps_per_epoch} steps -> {config.run.output}",
          flush=True)

    def stop(signum, frame):  # the trainer checkpoints on the way out of its loop
        raise KeyboardInterrupt

    signal.signal(signal.SIGALRM, stop)
    signal.alarm(max(1, int(args.limit - (time.monotonic() - began))))
    try:
        output = train(config, resume=args.resume, progress=False)
        finished = True
    except KeyboardInterrupt:
        output, finished = Path(config.run.output), False
    finally:
        signal.alarm(0)
    rows = log_rows(output)
    steps = [r for r in rows if r["loss"]]
    seconds = [float(r["seconds"]) for r in steps[5:]] or [float(r["seconds"]) for r in steps]
    print(f"{'finished' if finished else 'stopped at the limit'} after "
          f"{time.monotonic() - began:.0f} s: {len(steps)} steps, "
          f"{np.mean(seconds):.4f} s/step (after the first 5)")
    for r in rows:
        if r.get("sim_count_r2"):
            print(f"step {r['step']}: loss {r['loss'] or '-'} mb_logistic_acc "
                  f"{r['mb_logistic_acc']} mb_knn_acc {r['mb_knn_acc']} sim_count_r2 "
                  f"{r['sim_count_r2']}")
    if args.return_to:
        write_return(output, args.return_to, info)


def unpack(args):
    import torch

    from radiofm import __version__
    from radiofm.train._checkpoint import BACKBONE_FILE, save_checkpoint

    files = sorted(Path(args.back).glob(PART_GLOB))
    if not files:
        sys.exit(f"{args.back} holds no {PART_GLOB}")
    parts = [torch.load(f, map_location="cpu", weights_only=True) for f in files]
    if sorted(p["part"] for p in parts) != list(range(parts[0]["parts"])):
        sys.exit(f"{args.back}: parts {[p['part'] for p in parts]} of {parts[0]['parts']}")
    weights = {}
    for part in parts:
        weights.update({k: v.float() if v.is_floating_point() else v
                        for k, v in part["weights"].items()})
    model = dict(parts[0]["model"])
    into = Path(args.into)
    into.mkdir(parents=True, exist_ok=True)
    save_checkpoint({"model": model, "state_dict": weights, "config": parts[0]["config"],
                     "radiofm_version": __version__, "data": parts[0]["data"],
                     "step": parts[0]["step"]}, into / BACKBONE_FILE)
    if (Path(args.back) / "train_log.csv").is_file():
        shutil.copy(Path(args.back) / "train_log.csv", into / "train_log.csv")
    print(f"{into / BACKBONE_FILE}: {len(weights)} tensors at step {parts[0]['step']}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    verbs = parser.add_subparsers(dest="verb", required=True)
    p = verbs.add_parser("pack", help="build the config's guarded bank into one small file")
    p.add_argument("config")
    p.add_argument("--bank", required=True, help="the .npz to write")
    r = verbs.add_parser("run", help="train on a packed bank (the device step)")
    r.add_argument("config")
    r.add_argument("--bank", required=True, help="a file `pack` wrote")
    r.add_argument("--output", help="run folder (default: the config's run.output)")
    r.add_argument("--seconds", type=float, default=0.0,
                   help="fit the epochs to this many seconds after timing --probe-steps steps "
                   "(default: the config's epochs)")
    r.add_argument("--probe-steps", type=int, default=30)
    r.add_argument("--limit", type=float, default=530.0,
                   help="seconds after which the run stops at the next step, keeping its "
                   "checkpoint (default 530)")
    r.add_argument("--return", dest="return_to",
                   help="folder for the half-precision backbone parts and the log")
    r.add_argument("--resume", action="store_true",
                   help="continue the run's checkpoint (a run sized by --seconds resumes from "
                   "a config whose optim.epochs is the number it printed)")
    r.add_argument("--dry-run", action="store_true", help="2 CPU steps of batch 4")
    u = verbs.add_parser("unpack", help="join returned parts into a run folder")
    u.add_argument("back", help="the folder `run --return` wrote")
    u.add_argument("--into", required=True, help="run folder to write teacher_backbone.pt to")
    args = parser.parse_args(argv)
    {"pack": pack, "run": run, "unpack": unpack}[args.verb](args)


if __name__ == "__main__":
    main()

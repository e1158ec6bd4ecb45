"""The DINO training loop: one process or many (torchrun), resumable exactly."""

import json
import logging
import math
import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from .._provenance import radiofm_version
from ._augment import RadioMultiCrop
from ._checkpoint import (
    BACKBONE_FILE,
    CHECKPOINT_FILE,
    LOG_FILE,
    RunLog,
    read_checkpoint,
    save_checkpoint,
)
from ._config import DEVICES
from ._data import build_tile_bank
from ._loss import DINOLoss, cosine_schedule, koleo_loss
from ._model import DINOHead, MultiCropModel, create_backbone
from ._monitor import MONITOR_COLUMNS, FeatureMonitor

__all__ = ["train"]

log = logging.getLogger("radiofm")

CHECKPOINT, BACKBONE, LOG = CHECKPOINT_FILE, BACKBONE_FILE, LOG_FILE
LOG_COLUMNS = ("step", "epoch", "loss", "koleo", "lr", "weight_decay", "momentum",
               "teacher_temp", "teacher_entropy", "mean_entropy", "embedding_std", "seconds",
               *MONITOR_COLUMNS)


def _step_seed(seed, step, rank):
    """One integer per (run seed, step, process): every draw of a step derives from it."""
    return int(np.random.SeedSequence([seed, step, rank]).generate_state(1, np.uint64)[0]
               % (2**63))


def _distributed():
    """(rank, world size), initialising the process group under torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend)
    if world > 1:
        return dist.get_rank(), world
    return 0, 1


def _device(config, rank):
    wanted = config.run.device
    if wanted == "auto":
        wanted = "cuda" if torch.cuda.is_available() else "cpu"
    if wanted == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("run.device is 'cuda' but torch sees no GPU")
        local = int(os.environ.get("LOCAL_RANK", rank))
        torch.cuda.set_device(local)
        return torch.device("cuda", local)
    if wanted != "cpu":
        raise ValueError(f"run.device must be one of {DEVICES}, got {config.run.device!r}")
    return torch.device("cpu")


class _StopRequest:
    """SIGINT and SIGTERM ask the run to stop after the step it is in, with a checkpoint.

    A scheduler's SIGTERM (Slurm at the end of a job's time, a preempted node) or a Ctrl-C
    then costs no finished step. A second signal stops at once (`KeyboardInterrupt`); a
    signal the process ignores (SIGINT of a job a shell put in the background) stays
    ignored. Only the main thread can take signals; elsewhere nothing is installed.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.received = None
        self._previous = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for number in self.SIGNALS:
                if signal.getsignal(number) is not signal.SIG_IGN:
                    self._previous[number] = signal.signal(number, self._receive)
        return self

    def __exit__(self, *exc_info):
        for number, handler in self._previous.items():
            signal.signal(number, handler)

    def _receive(self, number, frame):
        if self.received is not None:
            raise KeyboardInterrupt(f"a second {signal.Signals(number).name}")
        self.received = signal.Signals(number).name

    def agreed(self, device, world):
        """Whether any process was asked to stop (every process gets the same answer)."""
        if world == 1:
            return self.received is not None
        flag = torch.tensor([self.received is not None], dtype=torch.int32, device=device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item())


def _param_groups(model):
    decay, no_decay = [], []
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        (no_decay if parameter.ndim <= 1 or name.endswith(".bias") else decay).append(parameter)
    return [{"params": decay}, {"params": no_decay, "weight_decay": 0.0}]


def train(config, *, resume=False, progress=True, stop_after=None):
    """Pre-train a backbone with DINO.

    Run it in one process, or in several with ``torchrun --nproc_per_node N -m radiofm train
    CONFIG`` (gloo on CPU, nccl on GPU; multi-node is the same code path).

    Parameters
    ----------
    config : `~radiofm.train.TrainConfig`
        Every hyper-parameter (see `load_config`).
    resume : bool
        Continue from ``run.output/checkpoint.pt``: the run then ends with the weights an
        uninterrupted run would have (same data order, same random draws).
    progress : bool
        Progress bar on the first process (only on a terminal).
    stop_after : int, optional
        Stop (with a checkpoint) once the run has done this many steps, counted from its
        start whether or not this call resumes it, e.g. to stop at a chosen point of the
        schedule or to split a run across sessions: the same ``stop_after`` starts the run
        and resumes it to the same step.

    Returns
    -------
    output : `~pathlib.Path`
        The folder with ``checkpoint.pt``, ``teacher_backbone.pt`` (the teacher backbone,
        readable with ``torch.load(weights_only=True)``, see `load_backbone`) and
        ``train_log.csv`` (loss, lr, momentum, teacher entropy and collapse indicators per
        step).

    Raises
    ------
    KeyboardInterrupt
        After SIGINT or SIGTERM (Ctrl-C, a scheduler ending the job): the run finishes the
        step it is in, writes a checkpoint there and stops; ``resume=True`` continues it.
    """
    if stop_after is not None and (isinstance(stop_after, bool)
                                   or not isinstance(stop_after, int) or stop_after < 1):
        raise ValueError(f"stop_after must be a positive number of steps, got {stop_after!r}")
    config.validate()
    rank, world = _distributed()
    device = _device(config, rank)
    if config.run.threads:
        torch.set_num_threads(config.run.threads)
    output = Path(config.run.output)
    if rank == 0:
        output.mkdir(parents=True, exist_ok=True)
    optim, model_config = config.optim, config.model
    use_amp = config.run.amp and device.type == "cuda"
    # The checkpoint is checked (sha256, config) before minutes of data loading.
    resumed = None
    if resume:
        resumed = _read_resume_state(output / CHECKPOINT, config, device)
        if stop_after is not None and resumed["step"] >= stop_after:
            raise ValueError(f"{output / CHECKPOINT} is already at step {resumed['step']}, "
                             f"not before stop_after={stop_after} (--stop-after counts the "
                             "run's steps from its start); pass a later step, or none to "
                             "finish the schedule")
    elif (output / CHECKPOINT).exists():
        raise ValueError(f"{output / CHECKPOINT} exists: pass resume=True (--resume) to continue "
                         "it, or choose another run.output")

    bank = build_tile_bank(config.data, monitor=config.monitor)
    augment = RadioMultiCrop(config.crops, config.data.spec)
    monitor = None
    if config.monitor.every and rank == 0:
        monitor = FeatureMonitor(config)
    torch.manual_seed(config.run.seed)
    backbone = create_backbone(model_config.arch, patch_size=model_config.patch_size,
                               drop_path_rate=model_config.drop_path_rate,
                               **model_config.timm_options)
    head_options = dict(out_dim=model_config.out_dim, hidden_dim=model_config.hidden_dim,
                        bottleneck_dim=model_config.bottleneck_dim)
    student = MultiCropModel(backbone, DINOHead(backbone.num_features,
                                                norm_last_layer=model_config.norm_last_layer,
                                                **head_options))
    teacher_backbone = create_backbone(model_config.arch, patch_size=model_config.patch_size,
                                       **model_config.timm_options)
    teacher = MultiCropModel(teacher_backbone, DINOHead(teacher_backbone.num_features,
                                                        **head_options))
    teacher.load_state_dict(student.state_dict())
    for parameter in teacher.parameters():
        parameter.requires_grad = False
    student.to(device)
    teacher.to(device)
    if use_amp:
        student.to(memory_format=torch.channels_last)
        teacher.to(memory_format=torch.channels_last)
    trained = DistributedDataParallel(student) if world > 1 else student
    optimizer = torch.optim.AdamW(_param_groups(student))

    total = optim.epochs * optim.steps_per_epoch
    per_epoch = optim.steps_per_epoch
    lr = cosine_schedule(optim.lr * optim.batch_size * world / 256.0, optim.min_lr, total,
                         warmup_steps=int(optim.warmup_epochs * per_epoch))
    weight_decay = cosine_schedule(optim.weight_decay, optim.weight_decay_end, total)
    momentum = cosine_schedule(optim.momentum_teacher, 1.0, total)
    teacher_temps = np.concatenate([
        np.linspace(optim.warmup_teacher_temp, optim.teacher_temp,
                    optim.warmup_teacher_temp_epochs),
        np.full(max(optim.epochs - optim.warmup_teacher_temp_epochs, 1), optim.teacher_temp),
    ])
    loss_fn = DINOLoss(model_config.out_dim, 2, teacher_temps, optim.student_temp,
                       optim.center_momentum, centering=optim.centering,
                       sinkhorn_iterations=optim.sinkhorn_iterations).to(device)

    start = 0
    if resumed is not None:
        start = _apply_state(resumed, student, teacher, optimizer, loss_fn, device)
        resumed = None
        log.info("resuming at step %d of %d", start, total)
    end = total if stop_after is None else min(total, stop_after)
    writer = (RunLog(output / LOG, LOG_COLUMNS, start, finished=start == end) if rank == 0
              else None)
    bar = tqdm(total=total, initial=start, unit="step",
               disable=rank != 0 or (None if progress else True))

    def checkpoint(step):
        if rank == 0:
            save_checkpoint({
                "student": student.state_dict(), "teacher": teacher.state_dict(),
                "optimizer": optimizer.state_dict(), "center": loss_fn.center.cpu(),
                "step": step, "config": config.to_dict(), "radiofm_version": radiofm_version(),
                "data": json.dumps(bank.summary()),
            }, output / CHECKPOINT)
        if world > 1:
            dist.barrier()

    def monitored(step):
        """Monitor columns for the log row of ``step`` (the teacher before its update)."""
        if monitor is None or step % config.monitor.every:
            return {}
        return monitor(teacher.backbone, device)

    stopped_after = None
    with _StopRequest() as stop:
        try:
            for step in range(start, end):
                figures = monitored(step)
                began = time.perf_counter()
                epoch = step // per_epoch
                seed = _step_seed(config.run.seed, step, rank)
                torch.manual_seed(seed)  # drop-path draws
                generator = torch.Generator().manual_seed(seed)
                tiles = bank.sample(np.random.default_rng(seed), optim.batch_size)
                crops = augment(tiles.to(device, non_blocking=True), generator)
                if use_amp:
                    crops = [c.contiguous(memory_format=torch.channels_last) for c in crops]
                for group in optimizer.param_groups:
                    group["lr"] = float(lr[step])
                optimizer.param_groups[0]["weight_decay"] = float(weight_decay[step])  # not biases
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
                    with torch.no_grad():
                        teacher_out = teacher(crops[:2])
                    student_out, features = trained(crops, with_features=True)
                loss, teacher_probs = loss_fn(student_out.float(), teacher_out.float(), epoch)
                koleo = (sum(koleo_loss(f) for f in features[:2 * len(crops[0])].chunk(2)) / 2
                         if optim.koleo_weight else None)
                objective = loss if koleo is None else loss + optim.koleo_weight * koleo
                if not math.isfinite(objective.item()):
                    raise FloatingPointError(f"loss is {objective.item()} at step {step}; "
                                             "stopping")
                optimizer.zero_grad(set_to_none=True)
                objective.backward()
                if optim.clip_grad:
                    torch.nn.utils.clip_grad_norm_(student.parameters(), optim.clip_grad)
                if epoch < optim.freeze_last_layer:
                    for parameter in student.head.last_layer.parameters():
                        parameter.grad = None
                optimizer.step()
                with torch.no_grad():
                    m = float(momentum[step])
                    for p_student, p_teacher in zip(student.parameters(), teacher.parameters(),
                                                    strict=True):
                        p_teacher.mul_(m).add_(p_student.detach(), alpha=1 - m)
                if writer is not None:
                    writer.writerow({**_metrics(step, epoch, loss, koleo, lr, weight_decay,
                                                momentum, loss_fn, teacher_probs, teacher_out,
                                                began),
                                     **figures})
                bar.update()
                asked = stop.agreed(device, world) and step + 1 < end  # else it ends here
                if (step + 1) % config.run.checkpoint_every == 0 or step + 1 == end or asked:
                    checkpoint(step + 1)
                if asked:
                    stopped_after = step + 1
                    break
            if writer is not None and monitor is not None and end > start and not stopped_after:
                # the teacher after this call's last step (rewritten when a resume passes it)
                writer.writerow({"step": end, "epoch": end // per_epoch,
                                 **monitor(teacher.backbone, device)})
        finally:
            bar.close()
            if writer is not None:
                writer.close()
    if stopped_after:
        message = (f"{stop.received or 'a signal to another process'}: stopped after step "
                   f"{stopped_after} of {total} with a checkpoint in {output}; --resume "
                   "continues the run")
        if rank == 0:
            log.warning("%s", message)
        raise KeyboardInterrupt(message)
    if end == total and rank == 0:
        save_checkpoint({
            "model": {"arch": model_config.arch, "patch_size": model_config.patch_size,
                      "timm_options": model_config.timm_options,
                      "num_features": int(teacher.backbone.num_features)},
            "state_dict": {k: v.cpu() for k, v in teacher.backbone.state_dict().items()},
            "config": config.to_dict(), "radiofm_version": radiofm_version(),
            "data": json.dumps(bank.summary()),
        }, output / BACKBONE)
    if world > 1:
        dist.barrier()
    return output


def _metrics(step, epoch, loss, koleo, lr, weight_decay, momentum, loss_fn, probs,
             teacher_out, began):
    """One log row: the schedules, the losses and three collapse indicators.

    ``loss`` is the DINO term alone, comparable across runs with and without the KoLeo term;
    ``koleo`` is the unweighted KoLeo term (empty when its weight is 0).

    ``teacher_entropy`` is the entropy of the batch-mean teacher distribution over log K (near
    0: every image maps to the same prototype); ``mean_entropy`` the mean per-image entropy
    over log K (near 1: the teacher is uniform); ``embedding_std`` the mean per-dimension
    standard deviation of the teacher outputs across the batch (near 0: collapse).
    ``exp(teacher_entropy * log K)`` is the number of prototypes the step's N teacher
    outputs use; with a sharp teacher (``mean_entropy`` near 0) it is at most N, so
    ``teacher_entropy`` cannot exceed log N / log K (0.545 for 64 outputs and K = 2048) and a
    value well below that ceiling means the batch shares a handful of prototypes. With
    ``optim.centering = "sinkhorn"`` the batch mean is balanced over the prototypes by
    construction, so ``teacher_entropy`` reads near 1 and ``mean_entropy`` (at least about
    log(K / N) / log K once balanced) carries the sharpness.
    """
    k = math.log(probs.shape[-1])
    mean = probs.mean(dim=0)
    batch_entropy = float(-(mean * torch.log(mean + 1e-12)).sum() / k)
    per_image = float((-(probs * torch.log(probs + 1e-12)).sum(dim=-1)).mean() / k)
    spread = float(teacher_out.float().std(dim=0).mean())
    return {"step": step, "epoch": epoch, "loss": round(loss.item(), 6),
            "koleo": "" if koleo is None else round(koleo.item(), 6), "lr": float(lr[step]),
            "weight_decay": float(weight_decay[step]), "momentum": float(momentum[step]),
            "teacher_temp": loss_fn.teacher_temps[min(epoch, len(loss_fn.teacher_temps) - 1)],
            "teacher_entropy": round(batch_entropy, 6), "mean_entropy": round(per_image, 6),
            "embedding_std": round(spread, 6),
            "seconds": round(time.perf_counter() - began, 4)}


def _read_resume_state(path, config, device):
    """The verified checkpoint to resume from, refused if the config changed since."""
    if not path.exists():
        raise FileNotFoundError(f"cannot resume: {path} does not exist")
    state = read_checkpoint(path, map_location=device)
    if "teacher" not in state:
        raise ValueError(f"cannot resume from {path}: it is a finished teacher backbone, not "
                         "a training checkpoint")
    saved, current = state["config"], config.to_dict()
    # options added since the checkpoint was written count with their defaults
    defaults = type(config)().to_dict()
    changed = [name for name in ("data", "model", "crops", "optim")
               if {**defaults[name], **saved[name]} != current[name]]
    if changed or saved["run"]["seed"] != current["run"]["seed"]:
        raise ValueError(f"cannot resume {path}: the config changed since it was written "
                         f"(sections {changed or ['run.seed']}); resume with the same config")
    return state


def _apply_state(state, student, teacher, optimizer, loss_fn, device):
    student.load_state_dict(state["student"])
    teacher.load_state_dict(state["teacher"])
    optimizer.load_state_dict(state["optimizer"])
    loss_fn.center.copy_(state["center"].to(device))
    return int(state["step"])

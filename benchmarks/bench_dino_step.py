"""DINO step time on CPU: radiofm's pieces vs lightly's, same backbone, batch and crops.

Both sides train the same timm backbone (made by `radiofm.train.create_backbone`) on the same
pre-computed multi-crop batch, and a step is the same work: student on every crop, teacher
on the two global crops, loss, backward, gradient clipping, AdamW step, EMA teacher update.

- ``radiofm``: `radiofm.train.MultiCropModel` (one backbone pass per crop size),
  `radiofm.train.DINOHead`, `radiofm.train.DINOLoss`.
- ``lightly``: ``lightly.models.modules.DINOProjectionHead``, ``lightly.loss.DINOLoss`` and
  ``lightly.models.utils.update_momentum``, one backbone pass per crop as in lightly's
  examples. lightly is not a radiofm dependency: install it for this script only, e.g.
  ``pip install --no-deps --target /tmp/lightly lightly hydra-core omegaconf
  antlr4-python3-runtime==4.9.3 pytorch_lightning lightning-utilities torchmetrics
  lightly-utils aenum`` and run with ``PYTHONPATH=/tmp/lightly``.

The multi-crop augmentation itself (radiofm's, per batch) is timed separately. From the
radiofm rate the script also prints the epochs 6 wall-clock hours buy with ``--threads``
threads (on this 2-core machine, 6 hours with 2 threads: 12 core-hours).

Usage::

    python benchmarks/bench_dino_step.py [--batch 32] [--steps 10] [--threads 2]
"""

import argparse
import time

import torch

from radiofm.train import (
    CropConfig,
    DINOHead,
    DINOLoss,
    MultiCropModel,
    RadioMultiCrop,
    create_backbone,
)

ARCHS = [("vit_tiny_patch16_224", 8), ("resnet18", None)]
OUT_DIM = 4096


def _ema(student, teacher, m):
    with torch.no_grad():
        for ps, pt in zip(student.parameters(), teacher.parameters(), strict=True):
            pt.mul_(m).add_(ps.detach(), alpha=1 - m)


def radiofm_step(arch, patch):
    def model():
        backbone = create_backbone(arch, patch_size=patch)
        return MultiCropModel(backbone, DINOHead(backbone.num_features, OUT_DIM))

    torch.manual_seed(0)
    student, teacher = model(), model()  # weight-normalised heads cannot be deep-copied
    teacher.load_state_dict(student.state_dict())
    for p in teacher.parameters():
        p.requires_grad = False
    loss_fn = DINOLoss(OUT_DIM, 2, [0.04])
    optimizer = torch.optim.AdamW([p for p in student.parameters() if p.requires_grad])

    def step(crops):
        teacher_out = teacher(crops[:2])
        loss, _ = loss_fn(student(crops), teacher_out, 0)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(student.parameters(), 3.0)
        optimizer.step()
        _ema(student, teacher, 0.996)
        return loss.item()

    return step


def lightly_step(arch, patch):
    from lightly.loss import DINOLoss as LightlyDINOLoss
    from lightly.models.modules import DINOProjectionHead
    from lightly.models.utils import update_momentum

    torch.manual_seed(0)
    backbone = create_backbone(arch, patch_size=patch)
    head = DINOProjectionHead(backbone.num_features, 2048, 256, OUT_DIM)
    teacher_backbone = create_backbone(arch, patch_size=patch)
    teacher_head = DINOProjectionHead(backbone.num_features, 2048, 256, OUT_DIM)
    teacher_backbone.load_state_dict(backbone.state_dict())
    teacher_head.load_state_dict(head.state_dict())
    for p in list(teacher_backbone.parameters()) + list(teacher_head.parameters()):
        p.requires_grad = False
    criterion = LightlyDINOLoss(output_dim=OUT_DIM, warmup_teacher_temp_epochs=0)
    params = [p for p in list(backbone.parameters()) + list(head.parameters())
              if p.requires_grad]
    optimizer = torch.optim.AdamW(params)

    def step(crops):
        teacher_out = [teacher_head(teacher_backbone(v)) for v in crops[:2]]
        student_out = [head(backbone(v)) for v in crops]
        loss = criterion(teacher_out, student_out, epoch=0)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 3.0)
        optimizer.step()
        update_momentum(backbone, teacher_backbone, m=0.996)
        update_momentum(head, teacher_head, m=0.996)
        return loss.item()

    return step


def timed(step, crops, steps, warmup=2):
    for _ in range(warmup):
        step(crops)
    start = time.perf_counter()
    for _ in range(steps):
        step(crops)
    return (time.perf_counter() - start) / steps


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--dataset", type=int, default=10_000,
                        help="tiles per epoch for the 6-hour estimate")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    crops_config = CropConfig()
    augment = RadioMultiCrop(crops_config)
    tiles = torch.rand(args.batch, 1, 128, 128)
    start = time.perf_counter()
    crops = augment(tiles, torch.Generator().manual_seed(0))
    augment_seconds = time.perf_counter() - start
    print(f"CPU, {args.threads} threads, batch {args.batch}, crops 2x{crops_config.global_size} "
          f"+ {crops_config.n_local}x{crops_config.local_size} (the CPU defaults), head "
          f"{OUT_DIM} prototypes; augmentation {augment_seconds * 1e3:.0f} ms per batch")
    print(f"{'backbone':<24}{'radiofm s/step':>15}{'lightly s/step':>15}{'ratio':>8}"
          f"{'radiofm img/s':>15}{'epochs in 6 h':>16}")
    for arch, patch in ARCHS:
        name = f"{arch}{'' if patch is None else f'/{patch}'}"
        ours = timed(radiofm_step(arch, patch), crops, args.steps)
        try:
            theirs = timed(lightly_step(arch, patch), crops, args.steps)
        except ImportError:
            theirs = float("nan")
        rate = args.batch / (ours + augment_seconds)
        epochs = rate * 6 * 3600 / args.dataset
        print(f"{name:<24}{ours:>15.3f}{theirs:>15.3f}{theirs / ours:>8.2f}{rate:>15.1f}"
              f"{epochs:>16.1f}")
    print(f"ratio = lightly / radiofm step time (> 1: radiofm faster); img/s and epochs "
          f"include the augmentation; epochs of {args.dataset} tiles")


if __name__ == "__main__":
    main()

"""DINO's self-distillation loss with centering (an EMA centre or Sinkhorn-Knopp) and
sharpening, the KoLeo spread term, and the schedules."""

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from ._config import CENTERINGS

__all__ = ["DINOLoss", "cosine_schedule", "koleo_loss", "sinkhorn_knopp"]


def cosine_schedule(start, end, steps, *, warmup_steps=0, warmup_start=0.0):
    """Per-step values: linear warm-up from ``warmup_start`` to ``start``, then cosine to ``end``.

    Parameters
    ----------
    start, end : float
        Value after the warm-up and final value.
    steps : int
        Total number of steps (warm-up included).
    warmup_steps : int
        Steps of linear warm-up.
    warmup_start : float
        Value at step 0 of the warm-up.

    Returns
    -------
    values : `numpy.ndarray`
        Length ``steps``.
    """
    warmup_steps = min(int(warmup_steps), steps)
    warmup = np.linspace(warmup_start, start, warmup_steps, endpoint=False)
    rest = np.arange(steps - warmup_steps)
    cosine = end + 0.5 * (start - end) * (1 + np.cos(np.pi * rest / max(len(rest), 1)))
    return np.concatenate([warmup, cosine])


class DINOLoss(nn.Module):
    """Cross-entropy between the sharpened, centred teacher and the student, across crops.

    The teacher sees the global crops only; each student crop is compared with every
    teacher crop but its own view. With ``centering="ema"`` (DINO) the teacher's logits lose
    a centre, an EMA of the teacher's batch mean (all-reduced across processes when a process
    group exists), before the sharpened softmax. With ``centering="sinkhorn"`` (DINOv2) the
    sharpened teacher is balanced over the prototypes by `sinkhorn_knopp` instead, and the
    centre stays unused.

    Parameters
    ----------
    out_dim : int
        Prototypes.
    n_global : int
        Global crops (2 in DINO).
    teacher_temps : sequence of float
        Teacher temperature per epoch (warm-up then constant).
    student_temp : float
    center_momentum : float
    centering : {"ema", "sinkhorn"}
    sinkhorn_iterations : int
        Normalisation rounds of `sinkhorn_knopp` (DINOv2 uses 3).

    Raises
    ------
    ValueError
        For a ``centering`` not in `CENTERINGS` or fewer than one Sinkhorn iteration.
    """

    def __init__(self, out_dim, n_global, teacher_temps, student_temp=0.1, center_momentum=0.9,
                 centering="ema", sinkhorn_iterations=3):
        super().__init__()
        if centering not in CENTERINGS:
            raise ValueError(f"centering must be one of {CENTERINGS}, got {centering!r}")
        if sinkhorn_iterations < 1:
            raise ValueError(f"sinkhorn_iterations must be >= 1, got {sinkhorn_iterations}")
        self.n_global = n_global
        self.student_temp = student_temp
        self.center_momentum = center_momentum
        self.centering = centering
        self.sinkhorn_iterations = sinkhorn_iterations
        self.teacher_temps = list(map(float, teacher_temps))
        self.register_buffer("center", torch.zeros(1, out_dim))

    def forward(self, student_output, teacher_output, epoch):
        """Loss for one step; with EMA centering it also updates the centre.

        Parameters
        ----------
        student_output : `torch.Tensor`
            (n_crops * B, out_dim), crops in order (globals first).
        teacher_output : `torch.Tensor`
            (n_global * B, out_dim).
        epoch : int
            Picks the teacher temperature.

        Returns
        -------
        loss : `torch.Tensor`
        teacher_probs : `torch.Tensor`
            The teacher's softmax (n_global * B, out_dim), for collapse monitoring.
        """
        temp = self.teacher_temps[min(epoch, len(self.teacher_temps) - 1)]
        student = (student_output / self.student_temp).chunk(
            student_output.shape[0] // (teacher_output.shape[0] // self.n_global))
        if self.centering == "sinkhorn":
            teacher_probs = sinkhorn_knopp(teacher_output / temp, self.sinkhorn_iterations)
        else:
            teacher_probs = torch.softmax((teacher_output - self.center) / temp, dim=-1)
        teacher = teacher_probs.detach().chunk(self.n_global)
        total, terms = 0.0, 0
        for iq, q in enumerate(teacher):
            for v, s in enumerate(student):
                if v == iq:
                    continue
                total = total + torch.sum(-q * torch.log_softmax(s, dim=-1), dim=-1).mean()
                terms += 1
        if self.centering == "ema":
            self.update_center(teacher_output)
        return total / terms, teacher_probs.detach()

    @torch.no_grad()
    def update_center(self, teacher_output):
        """EMA of the teacher's mean output over the whole (all-process) batch."""
        batch_sum = teacher_output.float().sum(dim=0, keepdim=True)
        count = torch.tensor([teacher_output.shape[0]], dtype=torch.float32,
                             device=teacher_output.device)
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(batch_sum)
            dist.all_reduce(count)
        self.center.mul_(self.center_momentum).add_(batch_sum / count,
                                                    alpha=1 - self.center_momentum)


def koleo_loss(features, eps=1e-8):
    """Kozachenko-Leonenko spread term: minus the mean log distance to the nearest neighbour.

    The features are L2-normalised first, so the term depends on directions only. It is
    lowest when the batch spreads evenly over the sphere, and it grows without bound as two
    images map to the same direction. Added to the DINO loss (DINOv2 weighs it 0.1), its
    gradient pushes each image away from its nearest neighbour in the batch.

    Parameters
    ----------
    features : `torch.Tensor`
        (B, D) backbone features of one crop of each image, B >= 2.
    eps : float
        Added to each distance inside the logarithm.

    Returns
    -------
    loss : `torch.Tensor`
        A scalar.

    Examples
    --------
    >>> import torch
    >>> spread = koleo_loss(torch.eye(4))
    >>> clustered = koleo_loss(torch.tensor([[1.0, 0], [1.0, 0.01], [0, 1.0], [0.01, 1.0]]))
    >>> bool(spread < clustered)
    True
    """
    if features.ndim != 2 or features.shape[0] < 2:
        raise ValueError(f"koleo_loss needs (B, D) features with B >= 2, got shape "
                         f"{tuple(features.shape)}")
    unit = nn.functional.normalize(features.float(), dim=-1)
    similarity = unit @ unit.T
    similarity.fill_diagonal_(-2.0)  # below any cosine: never its own neighbour
    nearest = unit[similarity.argmax(dim=1)]
    distance = (unit - nearest).norm(dim=-1)
    return -torch.log(distance + eps).mean()


def sinkhorn_knopp(scores, iterations=3):
    """Teacher targets balanced over the prototypes by Sinkhorn-Knopp normalisation.

    ``exp(scores)`` is normalised in turn so that every prototype carries the same total over
    the batch and every image's row sums to one, ``iterations`` times, ending with the rows:
    each row is a distribution, and the batch (all processes' rows, when a process group
    exists) spreads evenly over the prototypes. Where EMA centering lets a sharp teacher
    settle on a handful of prototypes for the whole batch, this balancing gives each image a
    share of them (about K / N prototypes each for N rows and K prototypes, when N < K).
    It runs in log space, so sharp scores (logits over a small temperature) do not
    overflow.

    Parameters
    ----------
    scores : `torch.Tensor`
        (N, K) teacher logits over the teacher temperature.
    iterations : int
        Normalisation rounds (SwAV and DINOv2 use 3).

    Returns
    -------
    probs : `torch.Tensor`
        (N, K) float32, each row summing to one.

    Raises
    ------
    ValueError
        If ``scores`` is not two-dimensional.

    Examples
    --------
    >>> import torch
    >>> collapsed = torch.tensor([[9.0, 0.0], [9.0, 0.0]])  # both rows on prototype 0
    >>> balanced = sinkhorn_knopp(collapsed, iterations=20)
    >>> torch.allclose(balanced.sum(dim=0), torch.ones(2))  # each prototype: one row's worth
    True
    """
    if scores.ndim != 2:
        raise ValueError(f"sinkhorn_knopp needs (N, K) scores, got shape {tuple(scores.shape)}")
    log_probs = scores.float()
    for _ in range(iterations):
        log_probs = log_probs - _batch_logsumexp(log_probs)  # each prototype's batch total: 1
        log_probs = log_probs - torch.logsumexp(log_probs, dim=1, keepdim=True)  # rows: 1
    return log_probs.exp()


def _batch_logsumexp(log_probs):
    """(1, K) logsumexp over the rows of every process's batch."""
    distributed = dist.is_available() and dist.is_initialized()
    peak = log_probs.max(dim=0, keepdim=True).values
    if distributed:
        dist.all_reduce(peak, op=dist.ReduceOp.MAX)
    total = (log_probs - peak).exp().sum(dim=0, keepdim=True)
    if distributed:
        dist.all_reduce(total)
    return peak + total.log()

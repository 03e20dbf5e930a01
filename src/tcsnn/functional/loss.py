r"""Losses on output spike values ``z`` (B, K) and the paper's weight-sum penalty (eq. 5).

Paper eq. (5):  :math:`L = -\ln\frac{z_c^{-1}}{\sum_{i \ne c} z_i^{-1}} + K \sum_j \max(0, \beta - \sum_i w_{ji})
+ \lambda \sum w^2`.

Three classification terms are offered (``LOSSES``):

``"ce"`` (default)
    softmax cross-entropy on ``-z`` — the variant the authors' public code trained with.  Bounded below by 0.
    Not invariant to a common shift of the output times: multiplying every ``z`` by ``c < 1`` (firing
    everything earlier) shrinks the logit gaps, which lowers the loss of a mostly wrong network, so early in
    training it rewards larger weight sums everywhere, and with them layers that average their inputs.
``"time"``
    softmax cross-entropy on ``-t / T`` with ``t = ln z`` and temperature ``T`` (``temperature``, default
    :data:`TIME_TEMPERATURE`): depends only on the differences of the output spike times, so a common shift
    changes nothing.  ``T`` sets how many time units apart the outputs must fire for a confident decision.
``"paper"``
    ``-ln(z_c^-1 / sum_{i != c} z_i^-1)`` exactly as printed.  It is unbounded below: pushing every wrong
    output to ``NO_SPIKE`` (z -> inf) drives it to -inf, so training learns to silence the wrong outputs,
    and silent neurons get no gradient.  In our trials it stalls (see the README).
``"paper_all"``
    ``-ln(z_c^-1 / sum_i z_i^-1)``, i.e. cross-entropy on logits ``-ln z = -t`` (``"time"`` at T = 1, far
    too soft for outputs that fire hundredths of a time unit apart).  Its gradient also rewards delaying
    wrong outputs until they fall silent; it silenced the whole output layer early in training in our trials.

A silent output (``NO_SPIKE``) enters the loss at ``z_silent``: twice the latest finite output spike of that
sample (detached), so the loss stays finite and a silent *correct* output still yields gradients that delay
the wrong ones.  Samples whose outputs are all silent contribute no classification gradient; the weight-sum
penalty is what revives such networks.

:func:`distillation_loss` is knowledge distillation (Hinton et al., 2015) from a trained teacher network,
:math:`T^2\,\mathrm{KL}(p^{teacher} \,\|\, p^{student})` with :math:`p = \mathrm{softmax}(-z / T)` on the
same logits ``-z`` as ``"ce"``: a low-bit student in quantisation-aware training learns from the full-precision
model how close the runner-up classes came, not only which class won.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import Tensor

LOSSES: tuple[str, ...] = ("ce", "time", "paper", "paper_all")

#: Default temperature of the ``"time"`` loss, in time constants.
TIME_TEMPERATURE = 0.03

#: A silent output enters the loss as this multiple of the sample's latest finite output spike.
SILENT_FACTOR = 2.0


def _fill_silent(z: Tensor) -> Tensor:
    fired = torch.isfinite(z)  # (B, K)
    latest = torch.where(fired, z, torch.zeros_like(z)).amax(dim=1, keepdim=True).detach()  # (B, 1)
    latest = torch.where(latest > 0, latest, torch.ones_like(latest))
    return torch.where(fired, z, SILENT_FACTOR * latest)


def classification_loss(
    z: Tensor, target: Tensor, kind: str = "ce", temperature: float = TIME_TEMPERATURE,
) -> Tensor:
    """Mean classification term over the batch.  z (B, K) output spike values, target (B,) class indices;
    ``temperature`` is used by ``kind="time"`` only."""
    if kind not in LOSSES:
        raise ValueError(f"unknown loss {kind!r}; choose one of {', '.join(LOSSES)}")
    if not temperature > 0:
        raise ValueError(f"loss temperature must be > 0, got {temperature}")
    zf = _fill_silent(z)
    if kind == "ce":
        return F.cross_entropy(-zf, target)
    if kind == "time":
        return F.cross_entropy(-torch.log(zf) / temperature, target)
    inv = 1.0 / zf  # (B, K)
    correct = inv.gather(1, target[:, None]).squeeze(1)  # (B,)
    if kind == "paper_all":
        return (torch.log(inv.sum(dim=1)) - torch.log(correct)).mean()
    others = inv.sum(dim=1) - correct  # (B,)
    return (torch.log(others) - torch.log(correct)).mean()


def distillation_loss(z: Tensor, z_teacher: Tensor, temperature: float = 4.0) -> Tensor:
    r""":math:`T^2\,\mathrm{KL}(p^{teacher} \| p^{student})`, :math:`p = \mathrm{softmax}(-z / T)`, mean over the batch.

    z, z_teacher (B, K) output spike values of the student and the (frozen) teacher.  Silent outputs enter at
    ``z_silent`` as in :func:`classification_loss`.  The factor ``T^2`` keeps the gradient's size independent of
    ``T``; ``T`` must be > 0.  Zero exactly when the two output distributions agree.
    """
    if not temperature > 0:
        raise ValueError(f"distillation temperature must be > 0, got {temperature}")
    if z.shape != z_teacher.shape:
        raise ValueError(f"student outputs {tuple(z.shape)} and teacher outputs {tuple(z_teacher.shape)} differ")
    log_student = F.log_softmax(-_fill_silent(z) / temperature, dim=1)  # (B, K)
    log_teacher = F.log_softmax(-_fill_silent(z_teacher.detach()) / temperature, dim=1)  # (B, K)
    kl = F.kl_div(log_student, log_teacher, log_target=True, reduction="batchmean")
    return temperature**2 * kl


def weight_sum_penalty(layers: Iterable[tuple[Tensor, Tensor | None]], beta: float = 1.0) -> Tensor:
    r""":math:`\sum_j \max(0, \beta - \sum_i w_{ji})` over the neurons j of every ``(weight, bias)`` pair.

    ``weight`` is (out, ...) and its rows are summed over everything but the first dimension; the bias is the
    weight of one more input (at t = 0), so it belongs to the row sum.
    """
    terms = []
    for weight, bias in layers:
        rows = weight.reshape(weight.shape[0], -1).sum(dim=1)  # (out,)
        if bias is not None:
            rows = rows + bias
        terms.append(F.relu(beta - rows).sum())
    return torch.stack(terms).sum() if terms else torch.zeros(())


def l2_penalty(weights: Iterable[Tensor]) -> Tensor:
    terms = [(w * w).sum() for w in weights]
    return torch.stack(terms).sum() if terms else torch.zeros(())

"""The paper's loss: cross-entropy with class-balanced weights and a focal factor.

Chest-CT cohorts are unbalanced (far more NP slices than CAP ones, say) and most lung slices are easy once the
model has learned the obvious cases. The loss for a sample of true class ``c`` with softmax probability ``p_c`` is

    L = - w_c * (1 - p_c) ** gamma * log(p_c)

with ``w_c = 1 / freq(c)`` rescaled so that the K weights sum to K (a balanced set then gets all-ones weights and the
loss equals the focal loss; the scale keeps the learning rate meaning the same whatever the imbalance). ``gamma = 1``
is the paper's value; ``gamma = 0`` gives class-weighted cross-entropy. The batch loss is the plain mean over samples
(not divided by the sum of weights as torch's weighted cross-entropy does), so rare-class samples really weigh more.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["class_weights", "focal_balanced_loss", "FocalBalancedLoss"]


def class_weights(labels: Sequence[int] | torch.Tensor, num_classes: int) -> torch.Tensor:
    """``w_c = 1 / freq(c)``, normalised to sum to ``num_classes``; a class absent from ``labels`` gets weight 0.

    Absent classes get 0 instead of infinity so a small training split that misses a class still trains; the present
    classes' weights are then normalised to sum to K.
    """
    counts = torch.bincount(torch.as_tensor(labels, dtype=torch.long).flatten(), minlength=num_classes).double()
    if counts.numel() > num_classes:
        raise ValueError(f"labels hold class indices >= num_classes ({num_classes})")
    if counts.sum() == 0:
        raise ValueError("no labels to compute class weights from")
    freq = counts / counts.sum()
    inv = torch.where(counts > 0, 1.0 / freq.clamp_min(1e-12), torch.zeros_like(freq))
    return (inv * num_classes / inv.sum()).float()


def focal_balanced_loss(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None,
                        gamma: float = 1.0, reduction: str = "mean") -> torch.Tensor:
    """``-w_c (1 - p_c)^gamma log p_c`` per sample; ``reduction`` is ``mean``, ``sum`` or ``none``."""
    log_p = F.log_softmax(logits.float(), dim=1).gather(1, target[:, None]).squeeze(1)
    loss = -((1.0 - log_p.exp()) ** gamma) * log_p if gamma else -log_p
    if weight is not None:
        loss = loss * weight.to(loss.device)[target]
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    if reduction == "none":
        return loss
    raise ValueError(f"reduction must be mean, sum or none, not {reduction!r}")


class FocalBalancedLoss(nn.Module):
    """Module form of :func:`focal_balanced_loss` holding the class weights as a buffer (moves with ``.to``)."""

    def __init__(self, weight: torch.Tensor | None = None, gamma: float = 1.0) -> None:
        super().__init__()
        self.gamma = gamma
        self.register_buffer("weight", weight.float() if weight is not None else None)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return focal_balanced_loss(logits, target, self.weight, self.gamma)

"""DIM's training losses: Charbonnier on alpha and on the re-composited image, over the unknown region.

The reduction matters for parity: weighted losses are averaged over the masked elements of the whole batch
(`sum(l*w) / (sum(w) + 1e-12)`), not per sample, and the composition loss counts 3 channels per pixel.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

_REDUCTIONS = ("none", "mean", "sum")


def mask_reduce(loss: Tensor, weight: Tensor | None, reduction: str = "mean", sample_wise: bool = False) -> Tensor:
    """Apply an element-wise weight and reduce like the reference's `mask_reduce_loss`."""
    if weight is not None:
        loss = loss * weight
    if weight is None or reduction == "sum":
        return {"none": loss, "mean": loss.mean(), "sum": loss.sum()}[reduction]
    if reduction == "none":
        return loss
    weight = weight.expand_as(loss)
    eps = 1e-12
    if sample_wise:
        per_sample = weight.sum(dim=[1, 2, 3], keepdim=True)
        return (loss / (per_sample + eps)).sum() / weight.size(0)
    return loss.sum() / (weight.sum() + eps)


def charbonnier(pred: Tensor, target: Tensor, eps: float = 1e-12) -> Tensor:
    """sqrt((pred - target)^2 + eps): a smooth L1 whose eps sits inside the square root."""
    return torch.sqrt((pred - target) ** 2 + eps)


class CharbonnierLoss(nn.Module):
    """Charbonnier loss on alpha (DIM: loss_weight 0.5 for the decoder, 1.0 for the refiner)."""

    def __init__(
        self, loss_weight: float = 1.0, reduction: str = "mean", sample_wise: bool = False, eps: float = 1e-12
    ) -> None:
        super().__init__()
        if reduction not in _REDUCTIONS:
            raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")
        self.loss_weight = loss_weight
        self.reduction = reduction
        self.sample_wise = sample_wise
        self.eps = eps

    def forward(self, pred: Tensor, target: Tensor, weight: Tensor | None = None) -> Tensor:
        loss = charbonnier(pred, target, self.eps)
        return self.loss_weight * mask_reduce(loss, weight, self.reduction, self.sample_wise)


class CharbonnierCompLoss(CharbonnierLoss):
    """Charbonnier loss between alpha*fg + (1-alpha)*bg and the merged image (all RGB in [0, 1])."""

    def forward(  # type: ignore[override]
        self, pred_alpha: Tensor, fg: Tensor, bg: Tensor, ori_merged: Tensor, weight: Tensor | None = None
    ) -> Tensor:
        pred_merged = pred_alpha * fg + (1.0 - pred_alpha) * bg
        loss = charbonnier(pred_merged, ori_merged, self.eps)
        if weight is not None:
            weight = weight.expand_as(loss)
        return self.loss_weight * mask_reduce(loss, weight, self.reduction, self.sample_wise)

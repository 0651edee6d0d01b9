"""Dice plus binary cross-entropy on tumour logits.

Cross-entropy gives every pixel a gradient (including every pixel of tumour-free images,
which is what keeps false tumour area down); soft Dice optimises overlap directly and is
insensitive to how much of an image is tumour.

Two ways to pool the Dice term:

- ``"batch"``: one soft Dice over the whole batch. Large tumours dominate it, so an image whose
  tumour is a small part of the field counts for little, although the paper's metric (Dice per
  image or slide, averaged) weighs it like any other.
- ``"image"``: soft Dice per tumour-bearing image, averaged, which is the metric's own
  weighting. Tumour-free images have no Dice (the reference is empty); cross-entropy alone
  speaks for them, and a batch of only tumour-free images has no Dice term at all.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

DiceMode = Literal["batch", "image"]


class DiceBCELoss(nn.Module):
    def __init__(
        self,
        dice_weight: float = 1.0,
        bce_weight: float = 1.0,
        smooth: float = 1.0,
        mode: DiceMode = "batch",
    ) -> None:
        super().__init__()
        if mode not in ("batch", "image"):
            raise ValueError(f"Dice mode must be 'batch' or 'image', not {mode!r}")
        self.dice_weight = dice_weight
        self.bce_weight = bce_weight
        self.smooth = smooth
        self.mode = mode

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        target = target.float()
        bce = F.binary_cross_entropy_with_logits(logits, target)
        prob = torch.sigmoid(logits)
        if self.mode == "batch":
            intersection = (prob * target).sum()
            denominator = prob.sum() + target.sum()
            soft_dice = (2 * intersection + self.smooth) / (denominator + self.smooth)
            return self.bce_weight * bce + self.dice_weight * (1 - soft_dice)
        dims = tuple(range(1, prob.ndim))
        target_sum = target.sum(dims)
        bearing = target_sum > 0
        if not bool(bearing.any()):
            return self.bce_weight * bce
        intersection = (prob * target).sum(dims)[bearing]
        denominator = prob.sum(dims)[bearing] + target_sum[bearing]
        soft_dice = (2 * intersection + self.smooth) / (denominator + self.smooth)
        return self.bce_weight * bce + self.dice_weight * (1 - soft_dice.mean())

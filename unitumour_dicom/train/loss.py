"""Dice plus binary cross-entropy on tumour logits.

Cross-entropy gives every pixel a gradient (including every pixel of tumour-free images,
which is what keeps false tumour area down); soft Dice optimises overlap directly and is
insensitive to how much of an image is tumour. The Dice term pools the whole batch, so a
batch of tumour-free images contributes through the denominator without dividing by zero.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class DiceBCELoss(nn.Module):
    def __init__(
        self, dice_weight: float = 1.0, bce_weight: float = 1.0, smooth: float = 1.0
    ) -> None:
        super().__init__()
        self.dice_weight = dice_weight
        self.bce_weight = bce_weight
        self.smooth = smooth

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        target = target.float()
        bce = F.binary_cross_entropy_with_logits(logits, target)
        prob = torch.sigmoid(logits)
        intersection = (prob * target).sum()
        denominator = prob.sum() + target.sum()
        soft_dice = (2 * intersection + self.smooth) / (denominator + self.smooth)
        return self.bce_weight * bce + self.dice_weight * (1 - soft_dice)

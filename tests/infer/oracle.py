"""Stand-in models for inference tests: the geometry must be judged apart from a network's
mistakes, so these "see" the tumour from the colour it is painted in."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from unitumour_dicom.model import ModelCard

TUMOUR_RGB = (70, 60, 200)  # blue-violet: blue well above red, unlike stroma or background
TISSUE_RGB = (235, 150, 200)  # eosin pink
GLASS_RGB = (245, 245, 245)


class ColourOracle(nn.Module):
    """Tumour logit from the colour: positive where blue exceeds red by more than half the
    gap between TUMOUR_RGB and TISSUE_RGB (so resampled edges split at their midpoint)."""

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...], gain: float = 40.0):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1))
        self.gain = gain
        tumour = (TUMOUR_RGB[2] - TUMOUR_RGB[0]) / 255
        tissue = (TISSUE_RGB[2] - TISSUE_RGB[0]) / 255
        self.midpoint = (tumour + tissue) / 2
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        rgb = x * self.std + self.mean
        return self.gain * (rgb[:, 2:3] - rgb[:, 0:1] - self.midpoint)


def card(**overrides: Any) -> ModelCard:
    fields: dict[str, Any] = {
        "name": "colour-oracle",
        "version": "1",
        "architecture": "TumourUNet",
        "architecture_args": {},
        "mpp": 1.0,
        "tile_size": 64,
        "overlap": 8,
        "normalisation": {"mean": [0.8, 0.6, 0.75], "std": [0.15, 0.2, 0.15]},
        "threshold": 0.5,
        "min_tumour_area_um2": 0.0,
        "fill_holes_max_area_um2": 0.0,
        "training_data": {"name": "none"},
        "metrics": {},
        "intended_use": "Software tests only.",
        "not_for_clinical_use": True,
        "weights_sha256": "0" * 64,
    }
    fields.update(overrides)
    return ModelCard(**fields)


@dataclass(frozen=True)
class StandInModel:
    """Has what ``LoadedModel`` offers to inference: module, card, device."""

    module: nn.Module
    card: ModelCard
    device: torch.device


def oracle_model(**card_overrides: Any) -> StandInModel:
    c = card(**card_overrides)
    module = ColourOracle(c.mean, c.std).eval()
    return StandInModel(module, c, torch.device("cpu"))

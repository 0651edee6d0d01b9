"""A small untrained checkpoint with a complete card, for tests of any layer that loads a model.

Other areas' tests may import it:
``from tests.model.checkpoints import write_untrained_checkpoint``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from unitumour_dicom.model import TumourUNet, save_checkpoint

SMALL_ARGS: dict[str, Any] = {"widths": [8, 16, 24], "blocks": 1, "context_dilations": [2]}


def card_fields(**overrides: Any) -> dict[str, Any]:
    """Every card field but the digest, for a tiny untrained network."""
    fields: dict[str, Any] = {
        "name": "test-untrained",
        "version": "0.0.1",
        "architecture": "TumourUNet",
        "architecture_args": SMALL_ARGS,
        "mpp": 1.0,
        "tile_size": 64,
        "overlap": 8,
        "normalisation": {"mean": [0.8, 0.6, 0.75], "std": [0.15, 0.2, 0.15]},
        "threshold": 0.5,
        "min_tumour_area_um2": 0.0,
        "fill_holes_max_area_um2": 0.0,
        "training_data": {"name": "none", "note": "randomly initialised, for tests"},
        "metrics": {},
        "intended_use": "Software tests only.",
        "not_for_clinical_use": True,
    }
    fields.update(overrides)
    return fields


def write_untrained_checkpoint(folder: Path, seed: int = 0, **overrides: Any) -> Path:
    """Write ``folder/untrained.safetensors`` and its card; return the weights path."""
    torch.manual_seed(seed)
    fields = card_fields(**overrides)
    module = TumourUNet(**fields["architecture_args"])
    path = Path(folder) / "untrained.safetensors"
    save_checkpoint(module, path, fields)
    return path

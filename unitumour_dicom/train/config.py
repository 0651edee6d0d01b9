"""The training run's configuration, apart from the trainer: the command builds its options'
defaults from it, and ``unitumour --help`` must not import torch to show them."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .augment import AugmentConfig

if TYPE_CHECKING:
    from .loss import DiceMode


@dataclass
class TrainConfig:
    """Everything a run depends on; stored in the card so the run can be repeated."""

    out: Path
    manifest: Path | None = None
    slides: Path | None = None  # CSV of DICOM slides with reference SEGs (see train.slides)
    name: str = "unitumour-demo"
    version: str = "1.0.0"
    architecture: str = "TumourUNet"
    architecture_args: dict[str, Any] = field(
        default_factory=lambda: {
            "widths": [24, 48, 96, 160],
            "blocks": 1,
            "context_dilations": [2],
        }
    )
    mpp: float = 0.9
    tile_size: int = 448
    overlap: int = 32
    crop_size: int = 224
    tiles_per_slide: int = 256  # crops drawn from each DICOM slide (train.slides)
    train_split: str = "train"
    val_split: str = "val"
    test_split: str | None = "test"
    epochs: int = 20
    batch_size: int = 16
    lr: float = 2e-3
    weight_decay: float = 1e-4
    warmup_epochs: float = 1.0
    ema_decay: float = 0.99
    dice_weight: float = 1.0
    bce_weight: float = 1.0
    dice_mode: DiceMode = "batch"  # "image": the metric's weighting (see train.loss)
    seed: int = 2
    device: str = "auto"
    amp: bool = True
    workers: int | None = None  # default: 0 on CPU, min(8, cores - 2) on CUDA
    threads: int | None = None  # torch CPU threads; default: torch's choice
    storage_dtype: str = "float16"
    limit: int | None = None  # first N records per split (smoke runs)
    max_steps: int | None = None  # stop after N optimiser steps (smoke runs)
    bootstrap_resamples: int = 2000
    thresholds: tuple[float, ...] = tuple(round(0.25 + 0.05 * i, 2) for i in range(12))
    min_areas_um2: tuple[float, ...] = (0.0, 1000.0, 2500.0, 5000.0, 10000.0)
    fill_holes_um2: tuple[float, ...] = (0.0, 2500.0, 10000.0)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    log_file: Path | None = None
    command: str | None = None  # how this run was started, for the card

    def jsonable(self) -> dict[str, Any]:
        data = asdict(self)
        for k, v in data.items():
            if isinstance(v, Path):
                data[k] = str(v)
        data["thresholds"] = list(self.thresholds)
        return data

"""Training: datasets from image/mask pairs and from DICOM slides with reference SEGs,
H&E augmentation, the training loop, and export of a checkpoint with its card.

The names below are imported on first use (the trainer imports torch): the command's module,
``train.command``, is imported by ``unitumour --help`` and must not pull torch in.
"""

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

if TYPE_CHECKING:
    from ..evaluate.manifest import ManifestError, PairRecord, load_pair, read_manifest
    from .augment import AugmentConfig, augment_pair
    from .config import TrainConfig
    from .loss import DiceBCELoss
    from .trainer import TrainingError, TrainResult, train

__all__ = [
    "AugmentConfig",
    "DiceBCELoss",
    "ManifestError",
    "PairRecord",
    "TrainConfig",
    "TrainResult",
    "TrainingError",
    "augment_pair",
    "load_pair",
    "read_manifest",
    "train",
]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "ManifestError": "..evaluate.manifest",
        "PairRecord": "..evaluate.manifest",
        "load_pair": "..evaluate.manifest",
        "read_manifest": "..evaluate.manifest",
        "AugmentConfig": ".augment",
        "augment_pair": ".augment",
        "TrainConfig": ".config",
        "DiceBCELoss": ".loss",
        "TrainingError": ".trainer",
        "TrainResult": ".trainer",
        "train": ".trainer",
    },
)

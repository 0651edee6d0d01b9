"""Training: datasets from image/mask pairs and from DICOM slides with reference SEGs,
H&E augmentation, the training loop, and export of a checkpoint with its card."""

from ..evaluate.manifest import ManifestError, PairRecord, load_pair, read_manifest
from .augment import AugmentConfig, augment_pair
from .loss import DiceBCELoss
from .trainer import TrainConfig, TrainingError, TrainResult, train

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

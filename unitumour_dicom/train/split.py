"""One split of a training run's data (train, val or test): the records and their loaded
image and mask arrays, in the same order. Both sources fill it: image/mask pairs (the
trainer's manifest) and tiles sampled from DICOM slides (:mod:`.slides`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..evaluate.manifest import PairRecord

__all__ = ["Split"]


@dataclass
class Split:
    records: list[PairRecord]
    images: list[np.ndarray]
    masks: list[np.ndarray]

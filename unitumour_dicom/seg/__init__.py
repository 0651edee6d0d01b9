"""DICOM Segmentation (highdicom) of the tumour mask, as a pyramid on the source slide.

Modules: ``pyramid`` (write_seg_pyramid: the entry point), ``levels`` (the source pyramid and
its geometry), ``sampling`` (the mask resampled onto a level, tile by tile), ``header``
(highdicom builds each instance's header), ``encoding`` and ``writer`` (frames streamed into
the file), ``algorithm`` (the model's identification), ``uids`` (UIDs from the job's UUID),
``record`` (the result rows, written before any delivery).
"""

from .algorithm import ALGORITHM_FAMILIES, AlgorithmInfo
from .levels import SourceLevel, source_levels
from .pyramid import SEGMENTATION_STORAGE, SegInstanceInfo, SegPyramid, write_seg_pyramid
from .record import record_result
from .uids import SegUIDs, derived_frame_of_reference_uid

__all__ = [
    "ALGORITHM_FAMILIES",
    "SEGMENTATION_STORAGE",
    "AlgorithmInfo",
    "SegInstanceInfo",
    "SegPyramid",
    "SegUIDs",
    "SourceLevel",
    "derived_frame_of_reference_uid",
    "record_result",
    "source_levels",
    "write_seg_pyramid",
]

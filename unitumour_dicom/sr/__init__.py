"""DICOM Comprehensive 3D SR with a TID 1500 Measurement Report of the slide's tumour figures.

Modules: ``report`` (write_measurement_report, the entry point), ``concepts`` (the coded
concepts and units it uses).
"""

from .report import (
    COMPREHENSIVE_3D_SR_STORAGE,
    TISSUE_TRACKING_ID,
    TUMOUR_TRACKING_ID,
    write_measurement_report,
)

__all__ = [
    "COMPREHENSIVE_3D_SR_STORAGE",
    "TISSUE_TRACKING_ID",
    "TUMOUR_TRACKING_ID",
    "write_measurement_report",
]

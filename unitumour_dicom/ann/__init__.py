"""DICOM Microscopy Bulk Simple Annotations of the tumour contours.

Modules: ``annotations`` (write_bulk_annotations, the entry point), ``contours`` (the
bounded analysis raster, tracing, simplification, and rasterising polygons back).
"""

from .annotations import (
    HOLES_GROUP_LABEL,
    MICROSCOPY_BULK_SIMPLE_ANNOTATIONS_STORAGE,
    TUMOUR_GROUP_LABEL,
    write_bulk_annotations,
)
from .contours import MAX_SIDE, Contours, analysis_raster, rasterise, trace_contours

__all__ = [
    "HOLES_GROUP_LABEL",
    "MAX_SIDE",
    "MICROSCOPY_BULK_SIMPLE_ANNOTATIONS_STORAGE",
    "TUMOUR_GROUP_LABEL",
    "Contours",
    "analysis_raster",
    "rasterise",
    "trace_contours",
    "write_bulk_annotations",
]

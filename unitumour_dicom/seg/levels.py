"""The source slide's pyramid as the SEG writer sees it: one entry per resolution level, with
the geometry that maps each level's pixels onto the slide.

A level is the set of VL Whole Slide Microscopy instances that share a total pixel matrix size
(several instances for concatenations, focal planes or optical paths). The SEG of a level
derives from its first instance and references the others. LABEL and OVERVIEW images are not
levels and are left out; VOLUME and THUMBNAIL images are.

Geometry (PS3.3 C.8.12.9, C.8.12.4.1): the total pixel matrix of each level starts at its
Total Pixel Matrix Origin (slide coordinates, mm) and steps along Image Orientation (Slide)
by its Pixel Spacing. A level's pixels are placed on the base level's axes in micrometres, so
that a mask in base-level coordinates (:class:`~unitumour_dicom.slide.mask.SlideMask`) can be
sampled at each level's pixel centres, also when a converter shifted or rescaled a level.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from pydicom import Dataset

from ..errors import SegmentationError
from ..store import is_valid_uid

log = logging.getLogger(__name__)

VL_WSI_SOP_CLASS_UID = "1.2.840.10008.5.1.4.1.1.77.1.6"
LEVEL_IMAGE_FLAVORS = {"VOLUME", "THUMBNAIL"}
#: Image Orientation (Slide) that scanners write when they say nothing else (PS3.3 C.8.12.4.1.4)
DEFAULT_ORIENTATION = (0.0, -1.0, 0.0, -1.0, 0.0, 0.0)


@dataclass(frozen=True)
class SourceLevel:
    """One resolution level of the source pyramid.

    Spacings are micrometres between pixel centres: ``row_spacing_um`` between rows (down),
    ``column_spacing_um`` between columns (across). Offsets place the level's top-left corner
    on the base level's axes, in micrometres.
    """

    index: int
    dataset: Dataset
    further: tuple[Dataset, ...]
    rows: int
    columns: int
    tile_rows: int
    tile_columns: int
    row_spacing_um: float
    column_spacing_um: float
    row_offset_um: float = 0.0
    column_offset_um: float = 0.0

    @property
    def tiles_down(self) -> int:
        return math.ceil(self.rows / self.tile_rows)

    @property
    def tiles_across(self) -> int:
        return math.ceil(self.columns / self.tile_columns)

    @property
    def number_of_frames(self) -> int:
        return self.tiles_down * self.tiles_across

    @property
    def sop_instance_uid(self) -> str:
        return str(self.dataset.SOPInstanceUID)

    @property
    def frame_of_reference_uid(self) -> str | None:
        value = self.dataset.get("FrameOfReferenceUID")
        return str(value) if value else None

    def row_centres_um(self) -> np.ndarray:
        """Centre of every row of the level, on the base level's vertical axis."""
        return self.row_offset_um + (np.arange(self.rows, dtype=np.float64) + 0.5) * (
            self.row_spacing_um
        )

    def column_centres_um(self) -> np.ndarray:
        return self.column_offset_um + (np.arange(self.columns, dtype=np.float64) + 0.5) * (
            self.column_spacing_um
        )


def _image_flavor(ds: Dataset) -> str:
    image_type = ds.get("ImageType")
    if image_type is None:
        return "VOLUME"
    values = [image_type] if isinstance(image_type, str) else list(image_type)
    return str(values[2]).upper() if len(values) > 2 else "VOLUME"


def pixel_spacing_mm(ds: Dataset) -> tuple[float, float]:
    """(row spacing, column spacing) in mm: shared functional groups, else the first
    per-frame item, else Imaged Volume Width/Height over the matrix size."""
    for group_kw in ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence"):
        groups = ds.get(group_kw)
        if groups:
            measures = groups[0].get("PixelMeasuresSequence")
            if measures and "PixelSpacing" in measures[0]:
                spacing = measures[0].PixelSpacing
                return float(spacing[0]), float(spacing[1])
    if "ImagedVolumeWidth" in ds and "ImagedVolumeHeight" in ds:
        return (
            float(ds.ImagedVolumeHeight) / int(ds.TotalPixelMatrixRows),
            float(ds.ImagedVolumeWidth) / int(ds.TotalPixelMatrixColumns),
        )
    raise SegmentationError(
        f"source instance {ds.get('SOPInstanceUID')} states no pixel spacing "
        "(Pixel Measures Sequence or Imaged Volume Width/Height)"
    )


def orientation(ds: Dataset) -> tuple[float, ...]:
    value = ds.get("ImageOrientationSlide")
    if not value:
        return DEFAULT_ORIENTATION
    return tuple(float(v) for v in value)


def origin_mm(ds: Dataset) -> tuple[float, float]:
    seq = ds.get("TotalPixelMatrixOriginSequence")
    if not seq:
        return 0.0, 0.0
    item = seq[0]
    return (
        float(item.get("XOffsetInSlideCoordinateSystem", 0.0)),
        float(item.get("YOffsetInSlideCoordinateSystem", 0.0)),
    )


def _sort_key(ds: Dataset) -> tuple[int, int, str]:
    """First concatenation part, then instance number: the instance a level derives from."""
    return (
        int(ds.get("InConcatenationNumber", 1) or 1),
        int(ds.get("InstanceNumber", 0) or 0),
        str(ds.SOPInstanceUID),
    )


def source_levels(source_datasets: Sequence[Dataset]) -> list[SourceLevel]:
    """Group the source headers into levels, base (largest) first, and place each level on
    the base level's axes. Raises SegmentationError for inputs no SEG can be made from."""
    if not source_datasets:
        raise SegmentationError("no source datasets: a SEG needs the slide's VOLUME instances")
    images: list[Dataset] = []
    for ds in source_datasets:
        if "PixelData" in ds:
            raise SegmentationError(
                f"source instance {ds.get('SOPInstanceUID')} carries pixel data; pass headers "
                "only (dcmread(..., stop_before_pixels=True))"
            )
        if ds.get("SOPClassUID") != VL_WSI_SOP_CLASS_UID:
            raise SegmentationError(
                f"source instance {ds.get('SOPInstanceUID')} has SOP Class "
                f"{ds.get('SOPClassUID')}, not VL Whole Slide Microscopy Image"
            )
        for kw in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "Rows", "Columns"):
            if kw not in ds or ds[kw].value in (None, ""):
                raise SegmentationError(f"source instance {ds.get('SOPInstanceUID')} lacks {kw}")
        for kw in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"):
            if not is_valid_uid(str(ds[kw].value)):
                raise SegmentationError(
                    f"source {kw} {str(ds[kw].value)[:80]!r} is not a valid DICOM UID"
                )
        for kw in ("TotalPixelMatrixRows", "TotalPixelMatrixColumns"):
            if kw not in ds or not ds[kw].value or int(ds[kw].value) < 1:
                raise SegmentationError(
                    f"source instance {ds.SOPInstanceUID} lacks {kw}: not a tiled WSI image"
                )
        if _image_flavor(ds) in LEVEL_IMAGE_FLAVORS:
            images.append(ds)
    if not images:
        raise SegmentationError("no VOLUME or THUMBNAIL image among the source datasets")
    studies = {str(ds.StudyInstanceUID) for ds in images}
    if len(studies) != 1:
        raise SegmentationError(f"source datasets span {len(studies)} studies; one slide only")
    frames = {str(ds.FrameOfReferenceUID) for ds in images if ds.get("FrameOfReferenceUID")}
    if len(frames) > 1:
        raise SegmentationError(
            "source levels disagree on Frame of Reference UID: they are not one slide"
        )

    groups: dict[tuple[int, int], list[Dataset]] = {}
    for ds in images:
        key = (int(ds.TotalPixelMatrixRows), int(ds.TotalPixelMatrixColumns))
        groups.setdefault(key, []).append(ds)
    ordered = sorted(groups.items(), key=lambda kv: kv[0][0] * kv[0][1], reverse=True)

    base_ds = sorted(ordered[0][1], key=_sort_key)[0]
    base_orientation = np.array(orientation(base_ds))
    row_dir = base_orientation[:3]  # direction along a row: columns increase
    col_dir = base_orientation[3:]  # direction down a column: rows increase
    base_origin = np.array([*origin_mm(base_ds), 0.0])

    levels: list[SourceLevel] = []
    for index, ((rows, columns), members) in enumerate(ordered):
        members = sorted(members, key=_sort_key)
        primary = members[0]
        for other in members[1:]:
            if (int(other.Rows), int(other.Columns)) != (int(primary.Rows), int(primary.Columns)):
                raise SegmentationError(
                    f"instances of the {rows} x {columns} level use different tile sizes"
                )
        if not np.allclose(orientation(primary), base_orientation, atol=1e-6):
            raise SegmentationError(
                f"level {index} ({rows} x {columns}) is not oriented like the base level"
            )
        row_mm, col_mm = pixel_spacing_mm(primary)
        if not (row_mm > 0 and col_mm > 0):
            raise SegmentationError(f"level {index} has a non-positive pixel spacing")
        delta = np.array([*origin_mm(primary), 0.0]) - base_origin
        levels.append(
            SourceLevel(
                index=index,
                dataset=primary,
                further=tuple(members[1:]),
                rows=rows,
                columns=columns,
                tile_rows=int(primary.Rows),
                tile_columns=int(primary.Columns),
                row_spacing_um=row_mm * 1000.0,
                column_spacing_um=col_mm * 1000.0,
                # Rounded to 0.1 nm: origins are decimal strings in mm, and their float noise
                # must not move a pixel centre that lies on a mask pixel's edge.
                row_offset_um=round(float(delta @ col_dir) * 1000.0, 4) + 0.0,
                column_offset_um=round(float(delta @ row_dir) * 1000.0, 4) + 0.0,
            )
        )
    log.debug(
        "source pyramid: %s",
        ", ".join(f"{lv.rows}x{lv.columns}@{lv.column_spacing_um:.4g}um" for lv in levels),
    )
    return levels

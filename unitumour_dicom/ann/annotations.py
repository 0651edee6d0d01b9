"""``write_bulk_annotations``: the tumour contours as DICOM Microscopy Bulk Simple
Annotations (highdicom), on the slide's base level.

Coordinates are 2D (Annotation Coordinate Type "2D"): column and row of the base level's
total pixel matrix, (0, 0) being the top-left corner of its top-left pixel (PS3.3
C.37.1.2, C.18.6.1.1), with the base level as the referenced image. That is what
dicom-microscopy-viewer (Slim) and QuPath place on the slide without a frame-of-reference
transform, and it keeps the mapping exact: an analysis pixel's centre (x, y) lands at
((x + 0.5) * s / column spacing, (y + 0.5) * s / row spacing), s being the analysis pixel
size in micrometres.

Groups: "Tumour" (POLYGON, one per 8-connected tumour region, area per polygon in mm2) and,
when there are any, "Tumour holes" (POLYGON, one per hole inside a region, area in mm2): a
bulk annotation polygon has no holes (PS3.3 C.37.1.2), so holes are polygons of their own
and a point is tumour when more Tumour than hole polygons contain it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import highdicom as hd
import numpy as np
from pydicom import Dataset
from pydicom.sr.codedict import codes

from ..config.sections import SegSettings
from ..errors import SegmentationError
from ..findings import MaskResult, ModelIdentity, content_label, labelled
from ..findings.equipment import (
    all_software_versions,
    device_serial_number,
    fix_times,
    highdicom_refusal,
    processing_equipment,
)
from ..seg.header import TUMOUR_CATEGORY, TUMOUR_DISPLAY_RGB, TUMOUR_TYPE
from ..seg.levels import SourceLevel, source_levels
from ..seg.uids import derived_uid
from .contours import MAX_SIDE, Contours, polygon_area, trace_contours

MICROSCOPY_BULK_SIMPLE_ANNOTATIONS_STORAGE = "1.2.840.10008.5.1.4.1.1.91.1"
DEFAULT_SERIES_NUMBER = 902
DEFAULT_SERIES_DESCRIPTION = "Tumour contours, {model_name} {model_version} (AI)"
TUMOUR_GROUP_LABEL = "Tumour"
HOLES_GROUP_LABEL = "Tumour holes"
#: Holes: tissue inside a tumour region that is not tumour (CID 7150 Tissue, CID 7151).
HOLE_CATEGORY = codes.SCT.Tissue
HOLE_TYPE = codes.SCT.Tissue
AREA = codes.SCT.Area
SQUARE_MILLIMETRE = codes.UCUM.SquareMillimeter
#: Douglas-Peucker tolerance, in analysis-raster pixels.
DEFAULT_TOLERANCE_PX = 1.0


def _to_base_pixels(points: np.ndarray, contours: Contours, base: SourceLevel) -> np.ndarray:
    """Analysis pixel centres to base-level (column, row) total pixel matrix coordinates."""
    scale_x = contours.mpp / base.column_spacing_um
    scale_y = contours.mpp / base.row_spacing_um
    out = np.empty((len(points), 2), np.float32)
    out[:, 0] = (points[:, 0] + 0.5) * scale_x
    out[:, 1] = (points[:, 1] + 0.5) * scale_y
    return out


def _areas_mm2(polygons: list[np.ndarray], mpp: float) -> np.ndarray:
    return np.array([polygon_area(p) for p in polygons], np.float32) * np.float32(
        (mpp / 1000.0) ** 2
    )


def _description(contours: Contours, what: str) -> str:
    return (
        f"{what}: contours of the tumour mask traced on a {contours.shape[1]} x "
        f"{contours.shape[0]} raster at {contours.mpp:g} um/px ({contours.factor} mask "
        f"pixel(s) per side, block majority), through boundary pixel centres, simplified "
        f"(Douglas-Peucker) to {contours.tolerance_px * contours.mpp:g} um "
        f"({contours.tolerance_px:g} px). Tumour = inside more '{TUMOUR_GROUP_LABEL}' than "
        f"'{HOLES_GROUP_LABEL}' polygons."
    )


def write_bulk_annotations(
    *,
    source_datasets: Sequence[Dataset],
    result: MaskResult,
    identity: ModelIdentity,
    settings: SegSettings,
    uid_seed: str,
    content_datetime: datetime | None = None,
    max_side: int = MAX_SIDE,
    tolerance_px: float = DEFAULT_TOLERANCE_PX,
    series_number: int = DEFAULT_SERIES_NUMBER,
    series_description: str = DEFAULT_SERIES_DESCRIPTION,
) -> hd.ann.MicroscopyBulkSimpleAnnotations | None:
    """The tumour contours of one slide as a bulk annotations dataset (not stored), or None
    when the mask has no tumour (an annotation group must hold at least one annotation).

    ``max_side`` bounds the analysis raster (memory: about 10 bytes per raster pixel);
    ``tolerance_px`` is the simplification tolerance in analysis pixels. Both are stated in
    each group's description. A model card that says not for clinical use puts "RESEARCH
    USE ONLY" in front of the Series and Content Description and ``RUO_`` in front of the
    Content Label.
    """
    when = content_datetime or datetime.now(UTC)
    if when.tzinfo is None:
        raise SegmentationError("content_datetime must be timezone-aware")
    base = source_levels(source_datasets)[0]
    contours = trace_contours(result.tumour, max_side=max_side, tolerance_px=tolerance_px)
    if not contours.tumour:
        return None
    with highdicom_refusal("bulk annotations"):
        algorithm = identity.algorithm_info().identification()
        groups = [
            hd.ann.AnnotationGroup(
                number=1,
                uid=derived_uid("ann", uid_seed, "group", "tumour"),
                label=TUMOUR_GROUP_LABEL,
                annotated_property_category=TUMOUR_CATEGORY,
                annotated_property_type=TUMOUR_TYPE,
                graphic_type=hd.ann.GraphicTypeValues.POLYGON,
                graphic_data=[_to_base_pixels(p, contours, base) for p in contours.tumour],
                algorithm_type=hd.ann.AnnotationGroupGenerationTypeValues.AUTOMATIC,
                algorithm_identification=algorithm,
                measurements=[
                    hd.ann.Measurements(
                        name=AREA,
                        values=_areas_mm2(contours.tumour, contours.mpp),
                        unit=SQUARE_MILLIMETRE,
                    )
                ],
                description=_description(contours, "Tumour regions"),
                display_color=hd.color.CIELabColor.from_rgb(*TUMOUR_DISPLAY_RGB),
            )
        ]
        if contours.holes:
            groups.append(
                hd.ann.AnnotationGroup(
                    number=2,
                    uid=derived_uid("ann", uid_seed, "group", "holes"),
                    label=HOLES_GROUP_LABEL,
                    annotated_property_category=HOLE_CATEGORY,
                    annotated_property_type=HOLE_TYPE,
                    graphic_type=hd.ann.GraphicTypeValues.POLYGON,
                    graphic_data=[_to_base_pixels(p, contours, base) for p in contours.holes],
                    algorithm_type=hd.ann.AnnotationGroupGenerationTypeValues.AUTOMATIC,
                    algorithm_identification=algorithm,
                    measurements=[
                        hd.ann.Measurements(
                            name=AREA,
                            values=_areas_mm2(contours.holes, contours.mpp),
                            unit=SQUARE_MILLIMETRE,
                        )
                    ],
                    description=_description(contours, "Holes inside tumour regions (not tumour)"),
                )
            )
        description = series_description.format(
            model_name=identity.name, model_version=identity.version
        )
        ann = hd.ann.MicroscopyBulkSimpleAnnotations(
            source_images=[base.dataset],
            annotation_coordinate_type=hd.ann.AnnotationCoordinateTypeValues.SCOORD,
            annotation_groups=groups,
            series_instance_uid=derived_uid("ann", uid_seed, "series"),
            series_number=series_number,
            sop_instance_uid=derived_uid("ann", uid_seed, "instance"),
            instance_number=1,
            manufacturer=settings.manufacturer,
            manufacturer_model_name=settings.manufacturer_model_name,
            software_versions=all_software_versions(identity),  # type: ignore[arg-type]
            device_serial_number=device_serial_number(settings),
            content_description=labelled(
                f"Tumour contours, {identity.name} {identity.version}", identity, 64
            ),
            content_label=content_label("Tumour", identity),
            content_creator_name=settings.content_creator_name,
            contributing_equipment=[
                processing_equipment(settings, identity, when, "Tumour contours")
            ],
            series_description=labelled(description, identity, 64),
            institution_name=settings.institution_name,
            content_date=when.date(),
            content_time=when.time(),
            series_date=when.date(),
            series_time=when.time(),
        )
    fix_times(ann, when)
    return ann

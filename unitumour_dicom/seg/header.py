"""The header of one SEG instance, built by highdicom on a one-tile stand-in of the source.

highdicom knows the Segmentation IOD: which modules, what to copy from the source (patient,
study, specimen, container, frame of reference, pixel measures, orientation, origin), the
source and derivation references, the segment and algorithm content. Its constructor also
wants the whole mask in memory and encodes every frame in Python, which a slide's base level
cannot afford. So highdicom builds the header of a stand-in whose total pixel matrix is one
tile (same geometry, same tile size, one frame), and the only attributes that depend on the
matrix size are then set to the level's: Total Pixel Matrix Rows/Columns and Number of Frames
(TILED_FULL has no per-frame functional groups). The frames are streamed by the caller.
tests/seg/test_header_equivalence.py proves the result matches highdicom's own output for
the whole matrix, element by element and byte for byte in the pixel data.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import highdicom as hd
import numpy as np
from pydicom import Dataset, Sequence
from pydicom.dataset import FileMetaDataset
from pydicom.sr.codedict import codes
from pydicom.uid import UID, ExplicitVRLittleEndian

from .. import __version__
from ..errors import SegmentationError
from .algorithm import AlgorithmInfo
from .encoding import Compression
from .levels import DEFAULT_ORIENTATION, SourceLevel, pixel_spacing_mm
from .uids import SegUIDs, derived_uid

log = logging.getLogger(__name__)

#: Segmented Property Category and Type (CID 7150 / CID 7151, SNOMED CT).
TUMOUR_CATEGORY = codes.SCT.MorphologicallyAbnormalStructure  # 49755003
TUMOUR_TYPE = codes.SCT.Neoplasm  # 108369006
#: Recommended display colour of the tumour segment (CIELab of a saturated yellow-green that
#: stands out on pink and purple H&E).
TUMOUR_DISPLAY_RGB = (0, 255, 96)
CONTENT_LABEL = "TUMOUR"
#: Implementation Class UID and Version Name of the files we write (PS3.7 D.3.3.2).
IMPLEMENTATION_CLASS_UID = derived_uid("implementation", "unitumour-dicom")
IMPLEMENTATION_VERSION_NAME = f"UNITUMOUR_{__version__}"[:16]

_REQUIRED_TYPE2 = (
    "PatientID",
    "PatientName",
    "PatientBirthDate",
    "PatientSex",
    "AccessionNumber",
    "StudyID",
    "StudyDate",
    "StudyTime",
    "ReferringPhysicianName",
)


@dataclass(frozen=True)
class HeaderContext:
    """What every instance of one pyramid shares."""

    segmentation_type: str
    fractional_type: str
    compression: Compression
    uids: SegUIDs
    frame_of_reference_uid: str
    algorithm: AlgorithmInfo
    series_number: int
    series_description: str
    manufacturer: str
    manufacturer_model_name: str
    device_serial_number: str
    content_creator_name: str
    segment_label: str
    institution_name: str | None
    content_datetime: datetime
    pyramid_label: str
    #: The model card says not for clinical use: "RESEARCH USE ONLY" in the Series and
    #: Content Description, ``RUO_`` in front of the Content Label.
    research_use_only: bool = False


def labelled(text: str, ctx: HeaderContext, max_length: int) -> str:
    """``findings.labelled`` (imported here: findings imports seg)."""
    from ..findings.identity import labelled as label_text

    return label_text(text, ctx, max_length)


def content_label(label: str, ctx: HeaderContext) -> str:
    from ..findings.identity import content_label as label_cs

    return label_cs(label, ctx)


def software_versions() -> list[str]:
    return [f"unitumour-dicom {__version__}", f"highdicom {hd.__version__}"]


def segment_description(ctx: HeaderContext) -> hd.seg.SegmentDescription:
    return hd.seg.SegmentDescription(
        segment_number=1,
        segment_label=ctx.segment_label,
        segmented_property_category=TUMOUR_CATEGORY,
        segmented_property_type=TUMOUR_TYPE,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=ctx.algorithm.identification(),
        tracking_uid=derived_uid("seg", ctx.uids.seed, "tracking", "tumour"),
        tracking_id=ctx.segment_label,
        display_color=hd.color.CIELabColor.from_rgb(*TUMOUR_DISPLAY_RGB),
    )


def contributing_equipment(ctx: HeaderContext) -> hd.ContributingEquipment:
    """This installation as Processing Equipment, naming the model it ran."""
    return hd.ContributingEquipment(
        manufacturer=ctx.manufacturer,
        purpose_of_reference=codes.DCM.ProcessingEquipment,
        manufacturer_model_name=ctx.manufacturer_model_name,
        software_versions=[*software_versions(), f"{ctx.algorithm.name} {ctx.algorithm.version}"],
        device_serial_number=ctx.device_serial_number,
        institution_name=ctx.institution_name,
        contribution_datetime=ctx.content_datetime,
        contribution_description=(
            f"Tumour segmentation by {ctx.algorithm.name} {ctx.algorithm.version}"
        )[:64],
    )


def stand_in(level: SourceLevel, frame_of_reference_uid: str) -> Dataset:
    """A copy of the level's header with a one-tile total pixel matrix and the attributes
    highdicom needs filled in where the source left them out. The source is not touched."""
    src = level.dataset
    ds = Dataset()
    for elem in src:
        if elem.keyword in ("PerFrameFunctionalGroupsSequence", "PixelData"):
            continue  # not needed for TILED_FULL, and large for TILED_SPARSE sources
        ds.add(copy.deepcopy(elem))  # setting a value mutates the element: never share one
    ds.file_meta = copy.deepcopy(getattr(src, "file_meta", FileMetaDataset()))
    ds.TotalPixelMatrixRows = level.tile_rows
    ds.TotalPixelMatrixColumns = level.tile_columns
    ds.NumberOfFrames = 1
    ds.DimensionOrganizationType = "TILED_FULL"
    ds.FrameOfReferenceUID = frame_of_reference_uid
    if not src.get("ImageOrientationSlide"):
        ds.ImageOrientationSlide = list(DEFAULT_ORIENTATION)
    if not src.get("TotalPixelMatrixOriginSequence"):
        origin = Dataset()
        origin.XOffsetInSlideCoordinateSystem = 0.0
        origin.YOffsetInSlideCoordinateSystem = 0.0
        ds.TotalPixelMatrixOriginSequence = [origin]
    shared = src.get("SharedFunctionalGroupsSequence")
    if not shared or "PixelMeasuresSequence" not in shared[0]:
        row_mm, col_mm = pixel_spacing_mm(src)
        measures = Dataset()
        measures.PixelSpacing = [row_mm, col_mm]
        measures.SliceThickness = src.get("ImagedVolumeDepth", None)
        item = copy.deepcopy(shared[0]) if shared else Dataset()
        item.PixelMeasuresSequence = [measures]
        ds.SharedFunctionalGroupsSequence = Sequence([item])
    for kw in _REQUIRED_TYPE2:
        if kw not in ds:
            setattr(ds, kw, None)
    return ds


def segmentation_arguments(level: SourceLevel, ctx: HeaderContext) -> dict[str, Any]:
    """Keyword arguments of ``highdicom.seg.Segmentation`` for a level, apart from the source
    images and the pixel array (the equivalence test passes the same to highdicom's own
    whole-matrix path)."""
    binary = ctx.segmentation_type == "BINARY"
    return {
        "segmentation_type": ctx.segmentation_type,
        "segment_descriptions": [segment_description(ctx)],
        "series_instance_uid": ctx.uids.series_instance_uid,
        "series_number": ctx.series_number,
        "sop_instance_uid": ctx.uids.sop_instance_uid(level.index),
        "instance_number": level.index + 1,
        "manufacturer": ctx.manufacturer,
        "manufacturer_model_name": ctx.manufacturer_model_name,
        "software_versions": software_versions(),
        "device_serial_number": ctx.device_serial_number,
        "fractional_type": None if binary else ctx.fractional_type,
        "max_fractional_value": 255,
        "content_description": labelled(
            f"Tumour, {ctx.algorithm.name} {ctx.algorithm.version}", ctx, 64
        ),
        "content_creator_name": ctx.content_creator_name,
        "content_label": content_label(CONTENT_LABEL, ctx),
        "transfer_syntax_uid": (
            ExplicitVRLittleEndian
            if ctx.compression.deflated
            else ctx.compression.transfer_syntax_uid
        ),
        "omit_empty_frames": False,  # TILED_FULL holds every tile (and highdicom needs it)
        "dimension_organization_type": "TILED_FULL",
        "tile_pixel_array": True,
        "tile_size": (level.tile_rows, level.tile_columns),
        "pyramid_uid": ctx.uids.pyramid_uid,
        "pyramid_label": ctx.pyramid_label[:64],
        "further_source_images": [
            stand_in_further(ds, ctx.frame_of_reference_uid) for ds in level.further
        ]
        or None,
        "contributing_equipment": [contributing_equipment(ctx)],
        "series_description": labelled(ctx.series_description, ctx, 64),
        "institution_name": ctx.institution_name,
        "content_date": ctx.content_datetime.date(),
        "content_time": ctx.content_datetime.time(),
        "series_date": ctx.content_datetime.date(),
        "series_time": ctx.content_datetime.time(),
    }


def build_header(level: SourceLevel, ctx: HeaderContext) -> Dataset:
    """The complete SEG header of one level, without Pixel Data."""
    try:
        seg = hd.seg.Segmentation(
            source_images=[stand_in(level, ctx.frame_of_reference_uid)],
            pixel_array=np.zeros((level.tile_rows, level.tile_columns), dtype=np.uint8),
            **segmentation_arguments(level, ctx),
        )
    except (ValueError, TypeError, AttributeError, KeyError) as exc:
        raise SegmentationError(
            f"highdicom refused the SEG header of level {level.index} "
            f"({level.rows} x {level.columns}): {exc}"
        ) from exc

    header = Dataset()
    for elem in seg:
        if elem.keyword != "PixelData":
            header.add(elem)
    header.file_meta = seg.file_meta
    header.file_meta.TransferSyntaxUID = UID(ctx.compression.transfer_syntax_uid)
    header.file_meta.ImplementationClassUID = UID(IMPLEMENTATION_CLASS_UID)
    header.file_meta.ImplementationVersionName = IMPLEMENTATION_VERSION_NAME
    header.TotalPixelMatrixRows = level.rows
    header.TotalPixelMatrixColumns = level.columns
    header.NumberOfFrames = level.number_of_frames
    header.DimensionOrganizationSequence[
        0
    ].DimensionOrganizationUID = ctx.uids.dimension_organization_uid
    # Creation times follow the content time, so that the same inputs give the same bytes
    # (a retried job finds its earlier file identical).
    when = ctx.content_datetime
    header.InstanceCreationDate = when.strftime("%Y%m%d")
    header.InstanceCreationTime = when.strftime("%H%M%S.%f")
    for item in header.ContributingEquipmentSequence:
        if "ContributionDateTime" in item:
            item.ContributionDateTime = when.strftime("%Y%m%d%H%M%S.%f%z")
    header.TimezoneOffsetFromUTC = when.strftime("%z") or "+0000"
    if "PatientOrientation" not in header:
        header.PatientOrientation = None  # General Image Module, Type 2C: empty for slides
    return header


def stand_in_further(ds: Dataset, frame_of_reference_uid: str) -> Dataset:
    """Further source images only need their identification and frame of reference."""
    out = Dataset()
    for kw in (
        "SOPClassUID",
        "SOPInstanceUID",
        "StudyInstanceUID",
        "SeriesInstanceUID",
        "Rows",
        "Columns",
    ):
        if kw in ds:
            out.add(copy.deepcopy(ds[kw]))
    out.FrameOfReferenceUID = frame_of_reference_uid
    return out

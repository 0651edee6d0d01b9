"""Validation of a received instance before admission, each failure with its DICOM status.

Statuses (PS3.4 B.2.3): 0xA900 when the data set is not what its SOP class requires (wrong
class, an attribute the WSI pipeline needs missing or unusable); 0xC000 when it cannot be
understood (unreadable, truncated, invalid UIDs, inconsistent with its own request); 0xA700 when
it exceeds a configured limit. Reading is tolerant, refusing is explicit: only what the
pipeline truly needs is required, so optional attributes that converters leave out
(DimensionOrganizationType, FrameOfReferenceUID) never cause a refusal.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence

from ..config.sections import ListenerSettings
from ..errors import InvalidInstanceError, InvalidUIDError
from ..store import validate_uid
from .contexts import WSI_SOP_CLASS
from .header import InstanceHeader
from .status import StoreStatus

WSI_IMAGE_FLAVORS = ("VOLUME", "LABEL", "OVERVIEW", "THUMBNAIL")


@dataclass(frozen=True)
class InstanceLimits:
    """The sizes beyond which an instance is refused with 0xA700 (Out of Resources)."""

    max_instance_bytes: int
    max_total_pixels: int
    max_frames: int
    max_frame_pixels: int
    max_frame_dimension: int = 16384
    max_matrix_dimension: int = 1_000_000
    max_optical_paths: int = 64
    max_focal_planes: int = 256

    @classmethod
    def from_settings(cls, settings: ListenerSettings) -> InstanceLimits:
        return cls(
            max_instance_bytes=settings.max_instance_bytes,
            max_total_pixels=settings.max_total_pixels,
            max_frames=settings.max_frames,
            max_frame_pixels=settings.max_frame_pixels,
            max_frame_dimension=settings.max_frame_dimension,
            max_matrix_dimension=settings.max_matrix_dimension,
            max_optical_paths=settings.max_optical_paths,
            max_focal_planes=settings.max_focal_planes,
        )

    def check(self, keyword: str, value: int) -> int:
        """Refuse (0xA700) a dimension or count over its own limit; returns ``value``."""
        limit = {
            "Rows": self.max_frame_dimension,
            "Columns": self.max_frame_dimension,
            "NumberOfFrames": self.max_frames,
            "TotalPixelMatrixRows": self.max_matrix_dimension,
            "TotalPixelMatrixColumns": self.max_matrix_dimension,
            "NumberOfOpticalPaths": self.max_optical_paths,
            "TotalPixelMatrixFocalPlanes": self.max_focal_planes,
        }[keyword]
        if value > limit:
            raise InvalidInstanceError(
                f"{keyword} {value} exceeds the limit of {limit}",
                int(StoreStatus.OUT_OF_RESOURCES),
            )
        return value


@dataclass(frozen=True)
class InstanceSummary:
    """What admission records about a valid instance (strings clipped to their columns)."""

    sop_class_uid: str
    sop_instance_uid: str
    study_instance_uid: str
    series_instance_uid: str
    transfer_syntax_uid: str
    frame_of_reference_uid: str | None
    is_wsi: bool
    image_type: str | None
    image_flavor: str | None
    total_pixel_matrix_columns: int | None
    total_pixel_matrix_rows: int | None
    number_of_frames: int | None
    patient_id: str | None
    patient_name: str | None
    accession_number: str | None
    study_date: str | None
    container_identifier: str | None


def _invalid(message: str, status: StoreStatus) -> InvalidInstanceError:
    return InvalidInstanceError(message, int(status))


def _mismatch(message: str) -> InvalidInstanceError:
    return _invalid(message, StoreStatus.DATASET_DOES_NOT_MATCH_SOP_CLASS)


def _get(ds: Dataset, keyword: str) -> Any:
    """An attribute's value, None when absent or empty; unparseable values cannot be understood."""
    try:
        value = ds.get(keyword)
    except Exception as exc:  # pydicom converts raw values lazily; any failure is the sender's
        raise _invalid(
            f"{keyword} cannot be decoded: {exc}", StoreStatus.CANNOT_UNDERSTAND
        ) from exc
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, MultiValue | Sequence | list | tuple) and len(value) == 0:
        return None
    return value


def _text(ds: Dataset, keyword: str, max_length: int) -> str | None:
    value = _get(ds, keyword)
    if value is None:
        return None
    text = str(value).strip().replace("\x00", "")
    return text[:max_length] or None


def _uid(ds: Dataset, keyword: str, *, required: bool) -> str | None:
    value = _get(ds, keyword)
    if value is None:
        if required:
            raise _mismatch(f"{keyword} is missing")
        return None
    try:
        return validate_uid(str(value), keyword)
    except InvalidUIDError as exc:
        raise _invalid(str(exc), StoreStatus.CANNOT_UNDERSTAND) from exc


def _positive_int(ds: Dataset, keyword: str) -> int:
    value = _get(ds, keyword)
    if value is None:
        raise _mismatch(f"{keyword} is missing")
    try:
        number = int(value)
    except (TypeError, ValueError) as exc:
        raise _mismatch(f"{keyword} {value!r} is not an integer") from exc
    if number < 1:
        raise _mismatch(f"{keyword} is {number}; it must be at least 1")
    return number


def _optional_count(ds: Dataset, keyword: str) -> int:
    """A count that defaults to 1 when absent (focal planes, optical paths)."""
    return 1 if _get(ds, keyword) is None else _positive_int(ds, keyword)


def _first_item(ds: Dataset | None, keyword: str) -> Dataset | None:
    if ds is None:
        return None
    seq = _get(ds, keyword)
    if not seq:
        return None
    return seq[0]


def pixel_spacing_mm(ds: Dataset) -> tuple[float, float] | None:
    """Pixel spacing (row, column) in mm: shared, else first per-frame, else imaged volume."""
    for groups_keyword in ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence"):
        measures = _first_item(_first_item(ds, groups_keyword), "PixelMeasuresSequence")
        spacing = _get(measures, "PixelSpacing") if measures is not None else None
        if spacing is not None and len(spacing) == 2:
            row, column = float(spacing[0]), float(spacing[1])
            if row > 0 and column > 0 and math.isfinite(row) and math.isfinite(column):
                return row, column
    width = _get(ds, "ImagedVolumeWidth")
    height = _get(ds, "ImagedVolumeHeight")
    columns = _get(ds, "TotalPixelMatrixColumns")
    rows = _get(ds, "TotalPixelMatrixRows")
    if width and height and columns and rows and float(width) > 0 and float(height) > 0:
        return float(height) / int(rows), float(width) / int(columns)
    return None


def _check_pixel_data(header: InstanceHeader, ds: Dataset, frames: int) -> None:
    info = header.pixel_data
    if info is None:
        raise _mismatch("Pixel Data is missing (or the data set ends before it)")
    if info.encapsulated:
        if not header.transfer_syntax_uid.is_encapsulated:
            raise _invalid(
                "Pixel Data is encapsulated but the transfer syntax is native",
                StoreStatus.CANNOT_UNDERSTAND,
            )
        if (info.fragments or 0) < frames:
            raise _invalid(
                f"encapsulated Pixel Data holds {info.fragments} fragments for "
                f"{frames} frames (truncated or inconsistent)",
                StoreStatus.CANNOT_UNDERSTAND,
            )
        return
    if header.transfer_syntax_uid.is_encapsulated:
        raise _invalid(
            f"transfer syntax {header.transfer_syntax_uid.name} needs encapsulated Pixel Data",
            StoreStatus.CANNOT_UNDERSTAND,
        )
    rows = _positive_int(ds, "Rows")
    columns = _positive_int(ds, "Columns")
    samples = _positive_int(ds, "SamplesPerPixel")
    bits = _positive_int(ds, "BitsAllocated")
    if samples > 4 or bits > 64:
        raise _mismatch(f"SamplesPerPixel {samples} / BitsAllocated {bits} out of range")
    expected = math.ceil(rows * columns * samples * bits * frames / 8)
    if info.length not in (expected, expected + (expected % 2)):
        raise _invalid(
            f"native Pixel Data has {info.length} bytes; {frames} frames of "
            f"{columns}x{rows}x{samples} at {bits} bits need {expected}",
            StoreStatus.CANNOT_UNDERSTAND,
        )


def _check_wsi(header: InstanceHeader, ds: Dataset, limits: InstanceLimits) -> tuple[str, str]:
    """The checks only VL Whole Slide Microscopy images get; returns (ImageType, flavour)."""
    image_type = _get(ds, "ImageType")
    if image_type is None:
        raise _mismatch("ImageType is missing")
    values = [
        str(v).strip().upper()
        for v in ([image_type] if isinstance(image_type, str) else list(image_type))
    ]
    joined = "\\".join(values)
    if len(values) < 3 or values[2] not in WSI_IMAGE_FLAVORS:
        raise _mismatch(
            f"ImageType {joined!r}: value 3 must be one of {', '.join(WSI_IMAGE_FLAVORS)}"
        )
    flavor = values[2]
    # each dimension and count on its own first: a product can hide one absurd factor
    rows = limits.check("Rows", _positive_int(ds, "Rows"))
    columns = limits.check("Columns", _positive_int(ds, "Columns"))
    frames = limits.check("NumberOfFrames", _positive_int(ds, "NumberOfFrames"))
    total_columns = limits.check(
        "TotalPixelMatrixColumns", _positive_int(ds, "TotalPixelMatrixColumns")
    )
    total_rows = limits.check("TotalPixelMatrixRows", _positive_int(ds, "TotalPixelMatrixRows"))
    planes = limits.check(
        "TotalPixelMatrixFocalPlanes", _optional_count(ds, "TotalPixelMatrixFocalPlanes")
    )
    paths = limits.check("NumberOfOpticalPaths", _optional_count(ds, "NumberOfOpticalPaths"))
    samples = _positive_int(ds, "SamplesPerPixel")
    if samples not in (1, 3):
        raise _mismatch(f"SamplesPerPixel is {samples}; a slide has 1 or 3")
    bits = _positive_int(ds, "BitsAllocated")
    if bits not in (8, 16):
        raise _mismatch(f"BitsAllocated is {bits}; a slide has 8 or 16")
    if _get(ds, "PhotometricInterpretation") is None:
        raise _mismatch("PhotometricInterpretation is missing")

    if rows * columns > limits.max_frame_pixels:
        raise _invalid(
            f"frames of {columns}x{rows} pixels exceed the limit of {limits.max_frame_pixels}",
            StoreStatus.OUT_OF_RESOURCES,
        )
    if total_columns * total_rows > limits.max_total_pixels:
        raise _invalid(
            f"total pixel matrix {total_columns}x{total_rows} exceeds the limit of "
            f"{limits.max_total_pixels} pixels",
            StoreStatus.OUT_OF_RESOURCES,
        )

    if flavor in ("VOLUME", "THUMBNAIL") and pixel_spacing_mm(ds) is None:
        raise _mismatch(
            "no pixel spacing: neither PixelMeasuresSequence > PixelSpacing nor "
            "ImagedVolumeWidth/Height"
        )

    organization = _text(ds, "DimensionOrganizationType", 16)
    per_frame = _get(ds, "PerFrameFunctionalGroupsSequence")
    if organization == "TILED_SPARSE" or (organization is None and per_frame is not None):
        if per_frame is None or len(per_frame) != frames:
            count = 0 if per_frame is None else len(per_frame)
            raise _mismatch(
                f"TILED_SPARSE with {frames} frames needs as many "
                f"PerFrameFunctionalGroupsSequence items; it has {count}"
            )
        if _first_item(per_frame[0], "PlanePositionSlideSequence") is None:
            raise _mismatch("TILED_SPARSE frames lack PlanePositionSlideSequence")
    elif organization in (None, "TILED_FULL"):
        tiles = math.ceil(total_columns / columns) * math.ceil(total_rows / rows)
        if frames > tiles * planes * paths:
            raise _mismatch(
                f"{frames} frames cannot tile a {total_columns}x{total_rows} matrix of "
                f"{columns}x{rows} tiles ({tiles} tiles, {planes} focal planes, "
                f"{paths} optical paths)"
            )
    _check_pixel_data(header, ds, frames)
    return joined, flavor


def validate_instance(
    header: InstanceHeader,
    *,
    command_sop_class_uid: str,
    command_sop_instance_uid: str,
    allowed_sop_classes: Collection[str],
    limits: InstanceLimits,
) -> InstanceSummary:
    """Check a received instance against its C-STORE request, its SOP class and our limits.

    Returns what admission records; raises :class:`InvalidInstanceError` with the status.
    """
    ds = header.dataset
    try:
        command_class = validate_uid(str(command_sop_class_uid), "C-STORE Affected SOP Class UID")
        command_instance = validate_uid(
            str(command_sop_instance_uid), "C-STORE Affected SOP Instance UID"
        )
    except InvalidUIDError as exc:
        raise _invalid(str(exc), StoreStatus.CANNOT_UNDERSTAND) from exc
    sop_class = _uid(ds, "SOPClassUID", required=True)
    if sop_class != command_class:
        raise _mismatch(
            f"data set's SOP Class UID {sop_class} does not match the request's {command_class}"
        )
    if sop_class not in allowed_sop_classes:
        raise _invalid(
            f"SOP Class {sop_class} is not accepted here", StoreStatus.SOP_CLASS_NOT_SUPPORTED
        )
    sop_instance = _uid(ds, "SOPInstanceUID", required=True)
    if sop_instance != command_instance:
        raise _invalid(
            f"data set's SOP Instance UID {sop_instance} does not match the request's "
            f"{command_instance}",
            StoreStatus.CANNOT_UNDERSTAND,
        )
    study = _uid(ds, "StudyInstanceUID", required=True)
    series = _uid(ds, "SeriesInstanceUID", required=True)
    frame_of_reference = _uid(ds, "FrameOfReferenceUID", required=False)

    is_wsi = sop_class == WSI_SOP_CLASS
    image_type: str | None = None
    flavor: str | None = None
    if is_wsi:
        image_type, flavor = _check_wsi(header, ds, limits)
    elif header.pixel_data is not None and _get(ds, "Rows") is not None:
        limits.check("Rows", _positive_int(ds, "Rows"))
        limits.check("Columns", _positive_int(ds, "Columns"))
        frames = limits.check("NumberOfFrames", _optional_count(ds, "NumberOfFrames"))
        _check_pixel_data(header, ds, frames)

    def _int_or_none(keyword: str) -> int | None:
        value = _get(ds, keyword)
        try:
            return int(value) if value is not None else None
        except (TypeError, ValueError):
            return None

    assert sop_instance is not None and study is not None and series is not None
    return InstanceSummary(
        sop_class_uid=sop_class,
        sop_instance_uid=sop_instance,
        study_instance_uid=study,
        series_instance_uid=series,
        transfer_syntax_uid=str(header.transfer_syntax_uid),
        frame_of_reference_uid=frame_of_reference,
        is_wsi=is_wsi,
        image_type=image_type[:128] if image_type else None,
        image_flavor=flavor,
        total_pixel_matrix_columns=_int_or_none("TotalPixelMatrixColumns"),
        total_pixel_matrix_rows=_int_or_none("TotalPixelMatrixRows"),
        number_of_frames=_int_or_none("NumberOfFrames"),
        patient_id=_text(ds, "PatientID", 64),
        patient_name=_text(ds, "PatientName", 324),
        accession_number=_text(ds, "AccessionNumber", 64),
        study_date=_text(ds, "StudyDate", 8),
        container_identifier=_text(ds, "ContainerIdentifier", 64),
    )

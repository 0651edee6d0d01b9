"""Reference tumour masks from DICOM Segmentations, as ``SlideMask``s on the source slide.

A reference SEG may be a pyramid (one instance per resolution), BINARY or FRACTIONAL, with
several segments. We read the instance whose pixel size is closest to (and not coarser than,
when there is a choice) the pixel size asked for, pick the tumour segment, and return it with
its own pixel size; ``SlideMask.region`` then resamples it onto any grid. The SEG must share
the slide's frame of reference and total-pixel-matrix origin: a SEG drawn on another scan of
the glass is not comparable pixel for pixel, and is refused rather than misaligned.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydicom import Dataset

from ..errors import UniTumourError
from ..slide.mask import SlideMask

logger = logging.getLogger(__name__)

SEG_SOP_CLASS_UID = "1.2.840.10008.5.1.4.1.1.66.4"
# SNOMED CT concepts a tumour segment is coded with (neoplasm, malignant neoplasm, carcinoma,
# tumour tissue), and words its label may use.
TUMOUR_CODES = {"108369006", "86049000", "68453008", "367643001", "1240414004"}
TUMOUR_WORDS = ("tumour", "tumor", "carcinoma", "neoplasm", "cancer", "malignan")


class ReferenceError(UniTumourError):
    """A reference segmentation cannot be read or does not fit its slide."""


@dataclass(frozen=True)
class ReferenceSeg:
    mask: SlideMask  # bool
    sop_instance_uid: str
    segment_number: int
    frame_of_reference_uid: str | None
    origin_mm: tuple[float, float] | None


def _header(path: Path) -> Dataset:
    import pydicom

    try:
        return pydicom.dcmread(path, stop_before_pixels=True)
    except Exception as exc:
        raise ReferenceError(f"{path} is not a readable DICOM file: {exc}") from exc


def _pixel_spacing_mm(ds: Dataset) -> float:
    try:
        spacing = ds.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0].PixelSpacing
    except (AttributeError, IndexError) as exc:
        raise ReferenceError(f"SEG {ds.SOPInstanceUID} states no PixelSpacing") from exc
    rows, cols = float(spacing[0]), float(spacing[1])
    if abs(rows - cols) > 1e-3 * max(rows, cols):
        raise ReferenceError(f"SEG {ds.SOPInstanceUID} has non-square pixels {rows} x {cols} mm")
    return rows


def _origin(ds: Dataset) -> tuple[float, float] | None:
    try:
        item = ds.TotalPixelMatrixOriginSequence[0]
        return float(item.XOffsetInSlideCoordinateSystem), float(
            item.YOffsetInSlideCoordinateSystem
        )
    except (AttributeError, IndexError):
        return None


def _tumour_segment(ds: Dataset, requested: int | None) -> int:
    segments = list(getattr(ds, "SegmentSequence", []))
    numbers = [int(s.SegmentNumber) for s in segments]
    if not numbers:
        raise ReferenceError(f"SEG {ds.SOPInstanceUID} has no segments")
    if requested is not None:
        if requested not in numbers:
            raise ReferenceError(f"SEG {ds.SOPInstanceUID} has no segment {requested}: {numbers}")
        return requested
    if len(numbers) == 1:
        return numbers[0]
    found = []
    for s in segments:
        codes = {
            str(getattr(item, "CodeValue", ""))
            for item in getattr(s, "SegmentedPropertyTypeCodeSequence", [])
        }
        label = " ".join(
            str(getattr(s, k, "")) for k in ("SegmentLabel", "SegmentDescription")
        ).lower()
        if codes & TUMOUR_CODES or any(w in label for w in TUMOUR_WORDS):
            found.append(int(s.SegmentNumber))
    if len(found) != 1:
        raise ReferenceError(
            f"SEG {ds.SOPInstanceUID} has segments {numbers} and {len(found)} look like tumour; "
            "name the segment number"
        )
    return found[0]


def read_reference_seg(
    paths: Sequence[Path], *, target_mpp: float, segment_number: int | None = None
) -> ReferenceSeg:
    """The tumour segment of a (pyramid) SEG at the resolution nearest ``target_mpp``."""
    import highdicom as hd

    candidates = []
    for path in paths:
        ds = _header(Path(path))
        if str(getattr(ds, "SOPClassUID", "")) != SEG_SOP_CLASS_UID:
            raise ReferenceError(f"{path} is not a Segmentation (SOP class {ds.SOPClassUID})")
        candidates.append((_pixel_spacing_mm(ds) * 1000.0, Path(path), ds))
    if not candidates:
        raise ReferenceError("no reference SEG files given")
    finer = [c for c in candidates if c[0] <= target_mpp * 1.01]
    mpp, path, header = (
        max(finer, key=lambda c: c[0]) if finer else min(candidates, key=lambda c: c[0])
    )
    number = _tumour_segment(header, segment_number)
    try:
        seg = hd.seg.segread(path)
        array = seg.get_total_pixel_matrix(segment_numbers=[number], skip_overlap_checks=True)
    except Exception as exc:
        raise ReferenceError(f"cannot read the pixels of SEG {path}: {exc}") from exc
    plane = np.asarray(array)[..., 0]
    mask = plane >= 0.5 if np.issubdtype(plane.dtype, np.floating) else plane > 0
    return ReferenceSeg(
        mask=SlideMask(np.ascontiguousarray(mask), mpp),
        sop_instance_uid=str(header.SOPInstanceUID),
        segment_number=number,
        frame_of_reference_uid=getattr(header, "FrameOfReferenceUID", None),
        origin_mm=_origin(header),
    )


def check_alignment(
    reference: ReferenceSeg,
    *,
    frame_of_reference_uid: str | None,
    origin_mm: tuple[float, float] | None,
    base_mpp: float,
) -> None:
    """Refuse a reference that is not on the slide's frame of reference or origin."""
    if (
        reference.frame_of_reference_uid
        and frame_of_reference_uid
        and reference.frame_of_reference_uid != frame_of_reference_uid
    ):
        raise ReferenceError(
            f"SEG {reference.sop_instance_uid} is on frame of reference "
            f"{reference.frame_of_reference_uid}, the slide on {frame_of_reference_uid}"
        )
    if reference.origin_mm and origin_mm:
        dx = abs(reference.origin_mm[0] - origin_mm[0]) * 1000.0
        dy = abs(reference.origin_mm[1] - origin_mm[1]) * 1000.0
        if max(dx, dy) > base_mpp:
            raise ReferenceError(
                f"SEG {reference.sop_instance_uid} starts {dx:.1f}, {dy:.1f} µm from the "
                "slide's origin; only SEGs on the slide's own total pixel matrix are supported"
            )

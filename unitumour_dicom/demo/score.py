"""The SEG as the PACS received it, judged against the known mask: Dice at the model's pixel
size, read with highdicom from the received files (not from our store), so that what is
scored is exactly what a PACS viewer would show."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom

from ..evaluate.metrics import dice
from ..evaluate.reference import SEG_SOP_CLASS_UID, check_alignment, read_reference_seg
from ..slide.mask import SlideMask
from .errors import DemoError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SegScore:
    """Dice of a received SEG against the known tumour mask, on a grid of ``mpp`` µm."""

    dice: float
    mpp: float
    seg_tumour_mm2: float
    truth_tumour_mm2: float
    seg_sop_instance_uid: str  # the pyramid level that was read
    frame_of_reference_uid: str | None
    referenced_series_uids: tuple[str, ...]


def received_seg_files(folder: Path, sop_instance_uids: Iterable[str]) -> dict[str, Path]:
    """The files in ``folder`` (a storescp output folder) holding the given SEG instances."""
    wanted = set(sop_instance_uids)
    found: dict[str, Path] = {}
    if not Path(folder).is_dir():
        return found
    for path in sorted(Path(folder).iterdir()):
        if not path.is_file() or path.name.startswith("."):
            continue
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["SOPInstanceUID"])
        except Exception:  # storescp may still be writing it, or it is no DICOM file
            logger.debug("skipping %s: not (yet) a readable DICOM file", path)
            continue
        uid = str(ds.get("SOPInstanceUID", ""))
        if uid in wanted:
            found[uid] = path
    return found


def _referenced_series(path: Path) -> tuple[str, ...]:
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    return tuple(str(item.SeriesInstanceUID) for item in ds.get("ReferencedSeriesSequence", []))


def score_seg(
    paths: Sequence[Path],
    truth: SlideMask,
    *,
    series_uid: str,
    frame_of_reference_uid: str | None,
    origin_mm: tuple[float, float] | None = None,
    base_mpp: float,
) -> SegScore:
    """Dice of the SEG pyramid ``paths`` against ``truth`` (a mask of the slide at its own
    pixel size). The level nearest the truth's pixel size is read and resampled onto the
    truth's grid. A SEG on another frame of reference or referencing another series is
    refused, not scored."""
    for path in paths:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        if str(ds.SOPClassUID) != SEG_SOP_CLASS_UID:
            raise DemoError(f"{path} is not a Segmentation (SOP class {ds.SOPClassUID})")
    reference = read_reference_seg(list(paths), target_mpp=truth.mpp)
    check_alignment(
        reference,
        frame_of_reference_uid=frame_of_reference_uid,
        origin_mm=origin_mm,
        base_mpp=base_mpp,
    )
    read_path = next(
        p
        for p in paths
        if str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID)
        == reference.sop_instance_uid
    )
    referenced = _referenced_series(read_path)
    if series_uid not in referenced:
        raise DemoError(
            f"SEG {reference.sop_instance_uid} references series {', '.join(referenced)}, "
            f"not the slide's {series_uid}"
        )
    rows, cols = truth.shape
    seg = reference.mask.region(0, 0, rows, cols, truth.mpp).astype(bool)
    expected = np.asarray(truth.array, dtype=bool)
    return SegScore(
        dice=dice(seg, expected),
        mpp=truth.mpp,
        seg_tumour_mm2=SlideMask(seg, truth.mpp).area_mm2(),
        truth_tumour_mm2=truth.area_mm2(),
        seg_sop_instance_uid=reference.sop_instance_uid,
        frame_of_reference_uid=reference.frame_of_reference_uid,
        referenced_series_uids=referenced,
    )

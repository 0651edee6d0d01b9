"""Evaluation on DICOM whole-slide images with reference DICOM SEGs: the paper's protocol.

Each slide goes through exactly the production path (``open_slide`` + ``segment_slide``, the
card's tiling, blending and post-processing); its mask at the model's pixel size is compared
with the reference resampled onto the same grid. Dice per slide, averaged per cohort (the
``cls`` column), with case-level bootstrap CIs; on tumour-free slides, the fraction of tissue
called tumour.

Slide list CSV: ``slide`` (a folder holding the series' .dcm files, or one .dcm), ``seg`` (a
SEG file, or a folder of SEG instances of one pyramid), ``cls``, ``case``, ``split``; paths
relative to the CSV. An optional ``segment`` column names the tumour segment number.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..csvfiles import read_csv_rows
from ..model.checkpoint import LoadedModel
from .manifest import ManifestError
from .reference import check_alignment, read_reference_seg
from .report import ItemResult, summarise

logger = logging.getLogger(__name__)

SLIDE_COLUMNS = ("slide", "seg", "cls", "case", "split")


@dataclass(frozen=True)
class SlideRecord:
    slide: Path
    seg: Path
    cls: str
    case: str
    split: str
    segment_number: int | None = None

    def slide_files(self) -> list[Path]:
        return _dicom_files(self.slide)

    def seg_files(self) -> list[Path]:
        return _dicom_files(self.seg)


def _dicom_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and _is_dicom(p))
        if files:
            return files
    raise ManifestError(f"{path} holds no DICOM files")


def _is_dicom(path: Path) -> bool:
    try:
        with path.open("rb") as fh:
            fh.seek(128)
            return fh.read(4) == b"DICM"
    except OSError:
        return False


def read_slide_manifest(path: Path, *, splits: Sequence[str] | None = None) -> list[SlideRecord]:
    path = Path(path)
    rows = read_csv_rows(path, SLIDE_COLUMNS, what="slide list", error=ManifestError)
    wanted = set(splits) if splits else None
    out = []
    for line, row in enumerate(rows, start=2):
        if wanted is not None and row["split"] not in wanted:
            continue
        for col in ("slide", "seg"):
            if not row[col] or Path(row[col]).is_absolute():
                raise ManifestError(f"{path}:{line}: {col} must be a path relative to the CSV")
        segment = (row.get("segment") or "").strip()
        try:
            number = int(segment) if segment else None
        except ValueError:
            raise ManifestError(f"{path}:{line}: segment {segment!r} is not a number") from None
        rec = SlideRecord(
            slide=path.parent / row["slide"],
            seg=path.parent / row["seg"],
            cls=row["cls"],
            case=row["case"],
            split=row["split"],
            segment_number=number,
        )
        for p in (rec.slide, rec.seg):
            if not p.exists():
                raise ManifestError(f"{path}:{line}: {p} does not exist")
        out.append(rec)
    if wanted is not None and not out:
        raise ManifestError(f"slide list {path} has no rows in split(s) {sorted(wanted)}")
    return out


def _slide_origin_mm(files: Sequence[Path]) -> tuple[float, float] | None:
    import pydicom

    for f in files:
        try:
            ds = pydicom.dcmread(f, stop_before_pixels=True)
            item = ds.TotalPixelMatrixOriginSequence[0]
            return (
                float(item.XOffsetInSlideCoordinateSystem),
                float(item.YOffsetInSlideCoordinateSystem),
            )
        except (AttributeError, IndexError, OSError, pydicom.errors.InvalidDicomError):
            continue
    return None


def evaluate_slides(
    records: Sequence[SlideRecord],
    model: LoadedModel,
    *,
    batch_size: int = 16,
    read_threads: int = 2,
    n_resamples: int = 2000,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[list[ItemResult], dict[str, Any]]:
    """Per-slide results and their summary; each slide is opened, segmented and closed in
    turn, so memory is one slide's masks at the model's pixel size."""
    from ..infer import segment_slide
    from ..slide import open_slide

    card = model.card
    items: list[ItemResult] = []
    for i, rec in enumerate(records):
        files = rec.slide_files()
        with open_slide(files) as slide:
            result = segment_slide(slide, model, batch_size=batch_size, read_threads=read_threads)
            reference = read_reference_seg(
                rec.seg_files(), target_mpp=card.mpp, segment_number=rec.segment_number
            )
            check_alignment(
                reference,
                frame_of_reference_uid=slide.frame_of_reference_uid,
                origin_mm=_slide_origin_mm(files),
                base_mpp=slide.base_mpp,
            )
            key = slide.series_instance_uid or str(rec.slide)
        rows, cols = result.tumour.shape
        ref = reference.mask.region(0, 0, rows, cols, card.mpp).astype(bool)
        tissue = np.asarray(result.tissue.array, dtype=bool)
        pred = np.asarray(result.tumour.array, dtype=bool)
        items.append(ItemResult.from_masks(key, rec.cls, rec.case, pred, ref, region=tissue))
        logger.info("slide %s: Dice %.4f", key, items[-1].dice)
        if progress is not None:
            progress(i + 1, len(records))
    return items, summarise(items, n_resamples=n_resamples, seed=seed)

"""Training tiles from DICOM whole-slide images with reference DICOM SEGs.

The slide list is the one ``unitumour evaluate --slides`` reads (slide, seg, cls, case,
split). From each slide we take up to ``tiles_per_slide`` crops at the model's pixel size,
drawn from the tissue, half of them (where there is enough) centred on reference tumour, so
rare tumour is not drowned by the rest; pixels are read through the production reader
(``WsiSlide.reader``: the nearest finer level, resampled exactly), labels from the SEG
resampled onto the same grid. Memory is the tiles kept, never a slide: the reference SEG is
read at the resolution of the model (or the nearest finer one stored) as one bit per pixel.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np

from ..evaluate.manifest import ManifestError, PairRecord
from ..evaluate.reference import check_alignment, read_reference_seg
from ..evaluate.slides import SlideRecord, _slide_origin_mm, read_slide_manifest
from .split import Split

if TYPE_CHECKING:
    from .config import TrainConfig

logger = logging.getLogger(__name__)


def sample_slide_tiles(
    record: SlideRecord,
    *,
    mpp: float,
    crop_size: int,
    tiles: int,
    seed: int,
    tumour_share: float = 0.5,
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Up to ``tiles`` (RGB uint8, bool mask) crops of ``crop_size`` at ``mpp`` from a slide."""
    from ..slide import open_slide

    files = record.slide_files()
    rng = np.random.default_rng([seed, *(ord(c) for c in str(record.slide.name)[:32])])
    with open_slide(files) as slide:
        reference = read_reference_seg(
            record.seg_files(), target_mpp=mpp, segment_number=record.segment_number
        )
        check_alignment(
            reference,
            frame_of_reference_uid=slide.frame_of_reference_uid,
            origin_mm=_slide_origin_mm(files),
            base_mpp=slide.base_mpp,
        )
        rows, cols = slide.grid_shape(mpp)
        if rows < crop_size or cols < crop_size:
            logger.warning("slide %s is smaller than one %d px crop", record.slide, crop_size)
            return [], []
        tissue = slide.tissue_mask()
        # Candidate crop centres on a coarse lattice, kept where tissue is.
        step = max(crop_size // 4, 1)
        cy = np.arange(crop_size // 2, rows - crop_size // 2 + 1, step)
        cx = np.arange(crop_size // 2, cols - crop_size // 2 + 1, step)
        grid_y, grid_x = np.meshgrid(cy, cx, indexing="ij")
        yy, xx = grid_y.ravel(), grid_x.ravel()
        on_tissue = tissue.sample(yy, xx, mpp).astype(bool)
        on_tumour = reference.mask.sample(yy, xx, mpp).astype(bool)
        tumour_idx = np.flatnonzero(on_tissue & on_tumour)
        other_idx = np.flatnonzero(on_tissue & ~on_tumour)
        n_tumour = min(len(tumour_idx), round(tiles * tumour_share))
        n_other = min(len(other_idx), tiles - n_tumour)
        chosen = np.concatenate(
            [
                rng.choice(tumour_idx, n_tumour, replace=False),
                rng.choice(other_idx, n_other, replace=False),
            ]
        ).astype(np.int64)
        level = slide.choose_level(mpp)
        reader = slide.reader(level, mpp)
        images, masks = [], []
        for i in chosen:
            top = int(yy[i]) - crop_size // 2
            left = int(xx[i]) - crop_size // 2
            images.append(np.ascontiguousarray(reader.read(top, left, crop_size, crop_size)))
            masks.append(reference.mask.region(top, left, crop_size, crop_size, mpp).astype(bool))
    logger.info(
        "slide %s: %d tiles (%d centred on tumour) at %g µm/px",
        record.slide,
        len(images),
        n_tumour,
        mpp,
    )
    return images, masks


def load_slide_splits(config: TrainConfig) -> dict[str, Split]:
    """Train/val/test tiles from the slide list in ``config.slides``."""
    assert config.slides is not None
    names = {"train": config.train_split, "val": config.val_split}
    if config.test_split:
        names["test"] = config.test_split
    out: dict[str, Split] = {}
    for key, split_name in names.items():
        try:
            records = read_slide_manifest(config.slides, splits=[split_name])
        except ManifestError as exc:
            if key == "test":
                logger.info("no test slides: %s", exc)
                continue
            raise
        if config.limit:
            records = records[: config.limit]
        split = Split([], [], [])
        for i, rec in enumerate(records):
            images, masks = sample_slide_tiles(
                rec,
                mpp=config.mpp,
                crop_size=config.crop_size,
                tiles=config.tiles_per_slide,
                seed=config.seed + 1000 * i,
            )
            split.images.extend(images)
            split.masks.extend(masks)
            split.records.extend(
                PairRecord(rec.slide, rec.seg, rec.cls, rec.case, rec.split) for _ in images
            )
        out[key] = split
    return out

"""The QA overlay picture: the slide's thumbnail with the tumour outline and a translucent fill.

The slide comes from its smallest pyramid level (wsidicom picks the level nearest the asked
size, so memory stays that of a thumbnail), and the tumour from the very SEG instance that
was stored and sent (read back with highdicom), the level nearest the picture's size. The web
app's case picture and ``unitumour process --png`` both draw it here.

The SEG level is never read whole: it is opened with lazy frame retrieval and read in bands
of rows (at most ``BAND_PIXELS`` pixels, 16 MB of float32, a band), of which only the rows
and columns the picture samples are kept; so a SEG with no level near the picture's size (a
slide scanned without a pyramid) costs a band and the picture, not its base level. The same
holds for the slide: when the level wsidicom would make the thumbnail from is larger than
``BAND_PIXELS`` (no small level, or a long narrow slide), it is read in bands of rows, each
box-filtered down to its rows of the picture (12 MB of RGB a band).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
from PIL import Image
from scipy import ndimage
from wsidicom import WsiDicom
from wsidicom.geometry import Size

FILL_RGB = (0, 229, 255)  # cyan: stands out on pink eosin and purple haematoxylin
FILL_ALPHA = 0.35
OUTLINE_RGB = (0, 229, 255)
OUTLINE_PIXELS = 2
BAND_PIXELS = 1 << 22  # SEG pixels decoded at a time for a picture


class PictureError(RuntimeError):
    """The slide or its SEG could not be read to draw the picture."""


@dataclass(frozen=True)
class SegLevel:
    path: Path
    rows: int
    columns: int


def seg_levels(paths: Sequence[Path]) -> list[SegLevel]:
    """Each SEG instance's total pixel matrix size, from its header alone."""
    levels = []
    for path in paths:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        rows = int(ds.get("TotalPixelMatrixRows", ds.get("Rows", 0)))
        columns = int(ds.get("TotalPixelMatrixColumns", ds.get("Columns", 0)))
        levels.append(SegLevel(path, rows, columns))
    return levels


def choose_seg_level(levels: Sequence[SegLevel], width: int) -> SegLevel:
    """The smallest level at least as wide as the picture, else the largest there is."""
    wide_enough = [lv for lv in levels if lv.columns >= width]
    if wide_enough:
        return min(wide_enough, key=lambda lv: lv.columns)
    return max(levels, key=lambda lv: lv.columns)


def read_seg_mask(level: SegLevel) -> np.ndarray:
    """The SEG's segments combined (max over segments) as floats in [0, 1]."""
    seg = hd.seg.segread(level.path)
    array = seg.get_total_pixel_matrix(dtype=np.float32)
    if array.ndim == 3:
        array = array.max(axis=2)
    if seg.segmentation_type == hd.seg.SegmentationTypeValues.FRACTIONAL:
        return np.clip(array, 0.0, 1.0)
    return (array > 0).astype(np.float32)


def _nearest(size: int, out: int) -> np.ndarray:
    """Source index of each of ``out`` pixel centres over ``size`` pixels."""
    return np.minimum(((np.arange(out) + 0.5) * size / out).astype(int), size - 1)


def read_seg_picture(
    level: SegLevel, height: int, width: int, *, band_pixels: int = BAND_PIXELS
) -> np.ndarray:
    """The SEG's segments combined (max over segments) as floats in [0, 1], resampled onto
    (height, width) as :func:`resample_nearest` does, reading the level band by band: equal
    to ``resample_nearest(read_seg_mask(level), height, width)`` without holding the level."""
    seg = hd.seg.segread(level.path, lazy_frame_retrieval=True)
    fractional = seg.segmentation_type == hd.seg.SegmentationTypeValues.FRACTIONAL
    rows = _nearest(level.rows, height)
    cols = _nearest(level.columns, width)
    budget = max(1, band_pixels // max(level.columns, 1))
    out = np.empty((height, width), np.float32)
    i = 0
    while i < height:
        r0 = int(rows[i])
        j = i + 1
        while j < height and rows[j] - r0 < budget:
            j += 1
        r1 = int(rows[j - 1]) + 1
        block = seg.get_total_pixel_matrix(row_start=r0 + 1, row_end=r1 + 1, dtype=np.float32)
        if block.ndim == 3:
            block = block.max(axis=2)
        picked = block[rows[i:j] - r0][:, cols]
        out[i:j] = np.clip(picked, 0.0, 1.0) if fractional else (picked > 0)
        i = j
    return out


def resample_nearest(mask: np.ndarray, height: int, width: int) -> np.ndarray:
    """``mask`` (covering the slide's whole image area) at (height, width), pixel centres."""
    rows = _nearest(mask.shape[0], height)
    cols = _nearest(mask.shape[1], width)
    return mask[rows[:, None], cols[None, :]]


def draw_overlay(rgb: np.ndarray, tumour: np.ndarray) -> np.ndarray:
    """Blend a translucent fill (alpha scaled by the fraction) and an opaque outline."""
    out: np.ndarray = rgb.astype(np.float32)
    fill = np.asarray(FILL_RGB, np.float32)
    alpha = (FILL_ALPHA * tumour)[..., None]
    out = out * (1 - alpha) + fill * alpha
    inside = tumour >= 0.5
    if inside.any():
        eroded = ndimage.binary_erosion(inside, iterations=OUTLINE_PIXELS, border_value=0)
        edge = inside & ~eroded
        out[edge] = OUTLINE_RGB
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def read_slide_picture(
    wsi: WsiDicom, max_pixels: int, *, band_pixels: int = BAND_PIXELS
) -> np.ndarray:
    """The slide as RGB fitting in ``max_pixels`` x ``max_pixels``, from the level wsidicom
    picks for a thumbnail (the smallest at least as large as asked): wsidicom's own thumbnail
    when that level holds at most ``band_pixels`` pixels, else the level read in bands of
    rows, each box-filtered onto its rows of the picture, so memory is a band and the
    picture whatever the level's size."""
    level = wsi.levels.get_closest_by_size(Size(max_pixels, max_pixels))
    if level is None or level.size.width * level.size.height <= band_pixels:
        return np.asarray(wsi.read_thumbnail((max_pixels, max_pixels)).convert("RGB"))
    width, height = level.size.width, level.size.height
    scale = min(max_pixels / width, max_pixels / height)
    out_w, out_h = max(1, round(width * scale)), max(1, round(height * scale))
    out = np.empty((out_h, out_w, 3), np.uint8)
    source_rows_per_row = height / out_h
    step = max(1, int(band_pixels // (width * max(source_rows_per_row, 1.0))))
    for i0 in range(0, out_h, step):
        i1 = min(i0 + step, out_h)
        r0 = int(i0 * source_rows_per_row)
        r1 = height if i1 == out_h else max(r0 + 1, int(i1 * source_rows_per_row))
        band = wsi.read_region((0, r0), level.level, (width, r1 - r0)).convert("RGB")
        out[i0:i1] = np.asarray(band.resize((out_w, i1 - i0), Image.Resampling.BOX))
    return out


def render_overlay_png(
    *, slide_paths: Sequence[Path], seg_paths: Sequence[Path], max_pixels: int
) -> bytes:
    """PNG of the slide thumbnail with the tumour drawn over it (or bare, without a SEG)."""
    try:
        with WsiDicom.open(list(slide_paths)) as wsi:
            rgb = read_slide_picture(wsi, max_pixels)
    except Exception as exc:
        raise PictureError(f"could not read the slide's thumbnail: {exc}") from exc
    if seg_paths:
        try:
            level = choose_seg_level(seg_levels(seg_paths), rgb.shape[1])
            tumour = read_seg_picture(level, rgb.shape[0], rgb.shape[1])
        except Exception as exc:
            raise PictureError(f"could not read the SEG: {exc}") from exc
        rgb = draw_overlay(rgb, tumour)
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()

"""The QA overlay picture: the slide's thumbnail with the tumour outline and a translucent fill.

The slide comes from its smallest pyramid level (wsidicom picks the level nearest the asked
size, so memory stays that of a thumbnail), and the tumour from the very SEG instance that
was stored and sent (read back with highdicom), the level nearest the picture's size. The web
app's case picture and ``unitumour process --png`` both draw it here.
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

FILL_RGB = (0, 229, 255)  # cyan: stands out on pink eosin and purple haematoxylin
FILL_ALPHA = 0.35
OUTLINE_RGB = (0, 229, 255)
OUTLINE_PIXELS = 2


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


def resample_nearest(mask: np.ndarray, height: int, width: int) -> np.ndarray:
    """``mask`` (covering the slide's whole image area) at (height, width), pixel centres."""
    rows = np.minimum(
        ((np.arange(height) + 0.5) * mask.shape[0] / height).astype(int), mask.shape[0] - 1
    )
    cols = np.minimum(
        ((np.arange(width) + 0.5) * mask.shape[1] / width).astype(int), mask.shape[1] - 1
    )
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


def render_overlay_png(
    *, slide_paths: Sequence[Path], seg_paths: Sequence[Path], max_pixels: int
) -> bytes:
    """PNG of the slide thumbnail with the tumour drawn over it (or bare, without a SEG)."""
    try:
        with WsiDicom.open(list(slide_paths)) as wsi:
            thumb = wsi.read_thumbnail((max_pixels, max_pixels)).convert("RGB")
    except Exception as exc:
        raise PictureError(f"could not read the slide's thumbnail: {exc}") from exc
    rgb = np.asarray(thumb)
    if seg_paths:
        try:
            level = choose_seg_level(seg_levels(seg_paths), rgb.shape[1])
            tumour = resample_nearest(read_seg_mask(level), rgb.shape[0], rgb.shape[1])
        except Exception as exc:
            raise PictureError(f"could not read the SEG: {exc}") from exc
        rgb = draw_overlay(rgb, tumour)
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()

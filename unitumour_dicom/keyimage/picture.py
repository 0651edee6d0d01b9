"""The key image's picture: the slide thumbnail with the tumour outlined and a panel of
figures burned in below it (PIL). Pure functions of arrays, so tests need no slide reader."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ..ann.contours import analysis_raster
from ..findings import RESEARCH_USE_ONLY, ModelIdentity, SlideFigures
from ..seg.overlay import resample_nearest
from ..slide.mask import SlideMask

OUTLINE_RGB = (0, 229, 255)  # as the QA picture: cyan stands out on H&E
RESEARCH_RGB = (200, 0, 0)
TEXT_RGB = (0, 0, 0)
PANEL_RGB = (255, 255, 255)
#: Longest side of the thumbnail (pixels) read for the key image.
DEFAULT_MAX_SIDE = 1024


def read_thumbnail(slide_paths: Sequence[Path], max_side: int = DEFAULT_MAX_SIDE) -> np.ndarray:
    """The whole slide as uint8 RGB, at most ``max_side`` pixels a side, read by wsidicom
    from the smallest pyramid level that covers that size (memory: a thumbnail). A slide
    smaller than ``max_side`` comes at its own size (wsidicom has no level to scale up from)."""
    from wsidicom import WsiDicom

    with WsiDicom.open([str(p) for p in slide_paths]) as wsi:
        base = wsi.size
        box = (min(max_side, int(base.width)), min(max_side, int(base.height)))
        image = wsi.read_thumbnail(box).convert("RGB")
    return np.asarray(image)


def tumour_on_thumbnail(mask: SlideMask, height: int, width: int) -> np.ndarray:
    """The tumour mask (any size; read in strips) at the thumbnail's size, as bool."""
    raster, _ = analysis_raster(mask, max_side=2 * max(height, width))
    return resample_nearest(raster, height, width) > 0


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def panel_lines(figures: SlideFigures, identity: ModelIdentity) -> list[tuple[str, tuple]]:
    """The burned-in text, line by line, with its colour."""
    lines: list[tuple[str, tuple]] = []
    if identity.research_use_only:
        lines.append((f"{RESEARCH_USE_ONLY} - not for clinical use", RESEARCH_RGB))
    lines += [
        (
            f"Tumour area {figures.tumour_area_mm2:.2f} mm2 "
            f"({figures.tumour_fraction_percent:.1f} % of {figures.tissue_area_mm2:.2f} mm2 "
            "tissue)",
            TEXT_RGB,
        ),
        (
            f"{figures.region_count} tumour region(s), "
            f"largest {figures.largest_region_mm2:.2f} mm2",
            TEXT_RGB,
        ),
        (f"Model {identity.name} {identity.version} (automatic segmentation)", TEXT_RGB),
    ]
    return lines


def compose(
    thumbnail: np.ndarray, tumour: np.ndarray, figures: SlideFigures, identity: ModelIdentity
) -> np.ndarray:
    """Thumbnail with the tumour outline, and the figures in a panel below: uint8 RGB."""
    height, width = thumbnail.shape[:2]
    picture = Image.fromarray(np.ascontiguousarray(thumbnail[..., :3]), "RGB")
    draw = ImageDraw.Draw(picture)
    outline = max(2, round(max(height, width) / 400))
    found, _ = cv2.findContours(tumour.astype(np.uint8), cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
    for contour in found:
        points = [tuple(map(int, p)) for p in contour[:, 0, :]]
        if len(points) > 1:
            draw.line([*points, points[0]], fill=OUTLINE_RGB, width=outline, joint="curve")
        else:
            draw.point(points, fill=OUTLINE_RGB)
    lines = panel_lines(figures, identity)
    size = max(12, round(max(width, 600) / 50))
    font = _font(size)
    line_height = round(size * 1.35)
    canvas_width = max(width, 600)
    canvas = Image.new("RGB", (canvas_width, height + line_height * len(lines) + size), PANEL_RGB)
    canvas.paste(picture, (0, 0))
    text = ImageDraw.Draw(canvas)
    y = height + size // 2
    for line, colour in lines:
        text.text((size // 2, y), line, fill=colour, font=font)
        y += line_height
    return np.asarray(canvas)

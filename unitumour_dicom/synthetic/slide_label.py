"""The LABEL and OVERVIEW images a scanner takes besides the pyramid.

The label carries the accession number and patient ID printed as text (burned-in
identifiers, which is why scanners flag these images with BurnedInAnnotation YES). The
overview is the whole glass at low resolution, label included, with the tissue rendered from
the same scene as the pyramid so that the two agree where they overlap.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .dicom_header import SlidePlacement
from .render import pixel_centres_um, render_region
from .scene import Scene
from .spec import PhantomSpec

LABEL_PAPER_RGB = (248, 247, 240)
LABEL_INK_RGB = (20, 20, 30)


def label_lines(spec: PhantomSpec) -> list[str]:
    return [spec.accession_number, spec.patient_id, spec.container, "H&E", f"seed {spec.seed}"]


def render_label(spec: PhantomSpec, placement: SlidePlacement) -> np.ndarray:
    """The paper label: printed lines of text on an off-white sticker."""
    width, height = placement.columns, placement.rows
    image = Image.new("RGB", (width, height), LABEL_PAPER_RGB)
    draw = ImageDraw.Draw(image)
    margin = max(2, width // 20)
    draw.rectangle((1, 1, width - 2, height - 2), outline=(180, 180, 170), width=2)
    lines = label_lines(spec)
    size = max(6, min(width // 10, (height - 2 * margin) // (len(lines) + 1)))
    font = ImageFont.load_default(size=size)
    y = margin
    for line in lines:
        draw.text((margin, y), line, fill=LABEL_INK_RGB, font=font)
        y += int(size * 1.3)
    return np.asarray(image, dtype=np.uint8).copy()


def render_overview(
    spec: PhantomSpec,
    scene: Scene,
    volume: SlidePlacement,
    overview: SlidePlacement,
    label_placement: SlidePlacement,
    label: np.ndarray,
) -> np.ndarray:
    """The whole glass at the overview's pixel size, with the label pasted where it lies."""
    mpp = overview.spacing_mm * 1000
    # Overview column c lies at slide Y = y0 - (c + 0.5) s; the pyramid's x_um = (Y0 - Y).
    x_um = (volume.y_mm - overview.y_mm) * 1000 + pixel_centres_um(0, overview.columns, mpp)
    y_um = (volume.x_mm - overview.x_mm) * 1000 + pixel_centres_um(0, overview.rows, mpp)
    pixels = render_region(scene, x_um, y_um, mpp, spec.seed, rng=None)
    # The label's top-left corner in overview pixels, and its size at the overview's scale.
    left = round((overview.y_mm - label_placement.y_mm) / overview.spacing_mm)
    top = round((overview.x_mm - label_placement.x_mm) / overview.spacing_mm)
    cols = round(label_placement.width_mm / overview.spacing_mm)
    rows = round(label_placement.height_mm / overview.spacing_mm)
    scaled = np.asarray(Image.fromarray(label).resize((cols, rows), Image.Resampling.BOX))
    rows = min(rows, overview.rows - top)
    cols = min(cols, overview.columns - left)
    pixels[top : top + rows, left : left + cols] = scaled[:rows, :cols]
    return pixels

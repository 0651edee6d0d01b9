"""Tissue detection on a low-resolution RGB image of an H&E slide.

Background glass is bright and unsaturated. Haematoxylin and eosin both absorb green light
most, so in optical density (OD = -ln(I / 255)) tissue has its green OD above its red OD and
well above its blue OD. Marker ink breaks that pattern: blue and green ink absorb red most,
red and black ink absorb blue about as much as green. Glass edges and their shadows are grey
(equal OD in all channels) or dark, and thin. So a pixel is tissue when it is saturated
enough (Otsu's threshold on saturation, clamped to a sane range), carries enough green OD, is
not near black, and has H&E's OD ratios; the mask is then cleaned with an opening (thin
lines go), small fragments are dropped and small holes filled.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from .mask import SlideMask


@dataclass(frozen=True)
class TissueParams:
    """Thresholds of tissue detection; the defaults suit bright-field H&E at 2-16 µm/px."""

    min_saturation: float = 0.05  # Otsu's saturation threshold is clamped to
    max_saturation: float = 0.15  # [min_saturation, max_saturation]
    min_green_od: float = 0.15  # paler than this is glass (I_green above ~220)
    min_brightness: int = 40  # brightest channel below this: black ink, shadows
    min_green_to_red_od: float = 0.8  # blue and green ink absorb red most
    max_blue_to_green_od: float = 0.75  # red and black ink absorb blue as much as green
    opening_um: float = 16.0  # structures thinner than this are not tissue
    min_area_um2: float = 5_000.0  # fragments smaller than this (~70 µm across) are dust
    max_hole_area_um2: float = 50_000.0  # enclosed gaps up to this are lumens or fat: tissue


def otsu_threshold(
    values: np.ndarray | None = None,
    bins: int = 256,
    value_range: tuple[float, float] = (0, 1),
    *,
    histogram: np.ndarray | None = None,
) -> float:
    """Otsu's threshold: the cut of the histogram that maximises between-class variance.
    Give the values, or their ``histogram`` over ``bins`` equal bins of ``value_range``."""
    if histogram is None:
        if values is None:
            raise ValueError("give the values or their histogram")
        histogram, _ = np.histogram(values, bins=bins, range=value_range)
    hist = np.asarray(histogram, np.float64)
    edges = np.linspace(value_range[0], value_range[1], len(hist) + 1)
    if hist.sum() == 0:
        return value_range[0]
    centres = (edges[:-1] + edges[1:]) / 2
    weight_low = np.cumsum(hist)
    weight_high = weight_low[-1] - weight_low
    sum_low = np.cumsum(hist * centres)
    mean_low = sum_low / np.maximum(weight_low, 1e-12)
    mean_high = (sum_low[-1] - sum_low) / np.maximum(weight_high, 1e-12)
    between = weight_low * weight_high * (mean_low - mean_high) ** 2
    return float(edges[int(np.argmax(between[:-1])) + 1])


_CHUNK_PIXELS = 1 << 20  # temporaries of the colour tests: about 40 bytes per pixel


def _colour_tests(rgb: np.ndarray, p: TissueParams) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(saturation, candidates, H&E colour) of a block of uint8 RGB."""
    pixels = rgb.astype(np.float32)
    brightest = pixels.max(axis=2)
    saturation = (brightest - pixels.min(axis=2)) / np.maximum(brightest, 1.0)
    od = -np.log((pixels + 1.0) / 256.0)
    od_r, od_g, od_b = od[..., 0], od[..., 1], od[..., 2]
    candidates = (od_g >= p.min_green_od) & (brightest >= p.min_brightness)
    stain = (od_g >= p.min_green_to_red_od * od_r) & (od_b <= p.max_blue_to_green_od * od_g)
    return saturation, candidates, stain


def tissue_pixels(rgb: np.ndarray, params: TissueParams | None = None) -> np.ndarray:
    """Per-pixel tissue decision (no cleaning) for uint8 RGB (rows x columns x 3), computed
    in blocks of rows so that temporaries stay small whatever the image's size."""
    p = params or TissueParams()
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected rows x columns x 3 RGB, got shape {rgb.shape}")
    step = max(1, _CHUNK_PIXELS // max(rgb.shape[1], 1))
    blocks = range(0, rgb.shape[0], step)
    histogram = np.zeros(256, np.int64)
    for r0 in blocks:
        saturation, candidates, _ = _colour_tests(rgb[r0 : r0 + step], p)
        histogram += np.histogram(saturation[candidates], bins=256, range=(0, 1))[0]
    cut = otsu_threshold(histogram=histogram) if histogram.any() else p.min_saturation
    cut = min(max(cut, p.min_saturation), p.max_saturation)
    out = np.empty(rgb.shape[:2], bool)
    for r0 in blocks:
        saturation, candidates, stain = _colour_tests(rgb[r0 : r0 + step], p)
        out[r0 : r0 + step] = candidates & stain & (saturation >= cut)
    return out


def _disk(radius: int) -> np.ndarray:
    y, x = np.ogrid[-radius : radius + 1, -radius : radius + 1]
    return x * x + y * y <= radius * radius


def clean_tissue(mask: np.ndarray, mpp: float, params: TissueParams | None = None) -> np.ndarray:
    """Opening, then removal of small fragments, then filling of small holes."""
    p = params or TissueParams()
    out = mask.astype(bool, copy=True)
    radius = round(p.opening_um / mpp / 2)
    if radius >= 1:
        out = ndimage.binary_opening(out, structure=_disk(radius))
    pixel_area = mpp * mpp
    min_pixels = math.ceil(p.min_area_um2 / pixel_area)
    if min_pixels > 1:
        labels, count = ndimage.label(out, structure=np.ones((3, 3), bool))
        if count:
            sizes = np.bincount(labels.ravel())
            small = sizes < min_pixels
            small[0] = False
            out[small[labels]] = False
    max_hole = math.floor(p.max_hole_area_um2 / pixel_area)
    if max_hole >= 1:
        holes, count = ndimage.label(
            ~out
        )  # 4-connected background, complementing 8-connected tissue
        if count:
            sizes = np.bincount(holes.ravel())
            border = np.unique(np.concatenate([holes[0], holes[-1], holes[:, 0], holes[:, -1]]))
            fill = sizes <= max_hole
            fill[0] = False
            fill[border] = False
            out[fill[holes]] = True
    return out


def detect_tissue(rgb: np.ndarray, mpp: float, params: TissueParams | None = None) -> SlideMask:
    """Tissue mask of a whole-slide RGB image whose pixels are ``mpp`` micrometres wide."""
    return SlideMask(clean_tissue(tissue_pixels(rgb, params), mpp, params), float(mpp))

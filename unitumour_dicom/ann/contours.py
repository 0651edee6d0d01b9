"""Tumour contours from a mask of any size: the mask is first reduced to a bounded analysis
raster (at most ``max_side`` pixels a side, block majority), then traced with OpenCV and
simplified (Douglas-Peucker) to a stated tolerance.

Topology follows the mask's: tumour regions are 8-connected (as post-processing and the
region count treat them) and the holes in them 4-connected. A region becomes one polygon
through the centres of its boundary pixels; each hole becomes one polygon through the
centres of its own boundary pixels; a tumour island inside a hole is again a tumour polygon.
So a point is tumour when more tumour polygons than hole polygons contain it, counting a
polygon's boundary as inside (as OpenCV's ``fillPoly`` and PIL's ``polygon`` rasterise).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from ..slide.mask import SlideMask

#: The longest side of the analysis raster (pixels).
MAX_SIDE = 4096
#: Mask bytes reduced at once.
_STRIP_BYTES = 64 << 20


@dataclass(frozen=True)
class Contours:
    """Polygons in analysis-raster pixel coordinates: (x, y) = (column, row) of pixel
    centres, so pixel (0, 0) has its centre at (0, 0). ``mpp``: the analysis pixel size."""

    tumour: list[np.ndarray]
    holes: list[np.ndarray]
    mpp: float
    factor: int
    shape: tuple[int, int]
    tolerance_px: float


def analysis_raster(mask: SlideMask, max_side: int = MAX_SIDE) -> tuple[np.ndarray, int]:
    """The mask as uint8 0/1 at an integer reduction ``factor`` (block majority: a block is
    tumour when at least half of its pixels inside the mask are), read in strips."""
    height, width = mask.shape
    factor = max(1, math.ceil(max(height, width) / max_side))
    out_h, out_w = math.ceil(height / factor), math.ceil(width / factor)
    out = np.zeros((out_h, out_w), np.uint8)
    rows_per_strip = max(1, _STRIP_BYTES // max(1, width * factor * 4)) * factor
    for top in range(0, height, rows_per_strip):
        block = np.asarray(mask.array[top : top + rows_per_strip])
        binary = block >= 0.5 if block.dtype.kind == "f" else block != 0
        if factor == 1:
            out[top : top + len(binary)] = binary
            continue
        h = binary.shape[0]
        ph, pw = math.ceil(h / factor) * factor, out_w * factor
        padded = np.zeros((ph, pw), np.uint16)
        padded[:h, :width] = binary
        inside = np.zeros((ph, pw), np.uint16)
        inside[:h, :width] = 1
        counts = padded.reshape(ph // factor, factor, out_w, factor).sum(axis=(1, 3))
        sizes = inside.reshape(ph // factor, factor, out_w, factor).sum(axis=(1, 3))
        r0 = top // factor
        out[r0 : r0 + counts.shape[0]] = (2 * counts >= sizes) & (counts > 0)
    return out, factor


def _top_level(binary: np.ndarray) -> list[np.ndarray]:
    """Outer boundaries of every 8-connected component (islands in holes included)."""
    found, hierarchy = cv2.findContours(binary, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_NONE)
    if hierarchy is None:
        return []
    return [c[:, 0, :] for c, h in zip(found, hierarchy[0], strict=True) if h[3] == -1]


def hole_mask(binary: np.ndarray) -> np.ndarray:
    """Background pixels enclosed by tumour: 4-connected background components that do not
    touch the raster's edge."""
    count, labels = cv2.connectedComponents((binary == 0).astype(np.uint8), connectivity=4)
    if count <= 1:
        return np.zeros_like(binary)
    edge = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    holes = (labels > 0) & ~np.isin(labels, edge)
    return holes.astype(np.uint8)


def _simplify(points: np.ndarray, tolerance_px: float) -> np.ndarray:
    """Douglas-Peucker within ``tolerance_px``; a region too small for a polygon (one or two
    pixel centres, or a straight line of them) becomes the box around its pixels."""
    if tolerance_px > 0 and len(points) > 3:
        points = cv2.approxPolyDP(points.reshape(-1, 1, 2), tolerance_px, True)[:, 0, :]
    points = points.astype(np.float64)
    if len(points) < 3 or _area(points) == 0:
        x0, y0 = points.min(axis=0) - 0.5
        x1, y1 = points.max(axis=0) + 0.5
        points = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]])
    return points


def _area(points: np.ndarray) -> float:
    x, y = points[:, 0], points[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def polygon_area(points: np.ndarray) -> float:
    """Shoelace area of a closed polygon (in its own units squared)."""
    return _area(np.asarray(points, np.float64))


def trace_contours(
    mask: SlideMask, *, max_side: int = MAX_SIDE, tolerance_px: float = 1.0
) -> Contours:
    """Tumour and hole polygons of ``mask`` on its analysis raster."""
    binary, factor = analysis_raster(mask, max_side)
    tumour = [_simplify(c, tolerance_px) for c in _top_level(binary)]
    holes = [_simplify(c, tolerance_px) for c in _top_level(hole_mask(binary))]
    return Contours(
        tumour=tumour,
        holes=holes,
        mpp=mask.mpp * factor,
        factor=factor,
        shape=(int(binary.shape[0]), int(binary.shape[1])),
        tolerance_px=tolerance_px,
    )


def rasterise(
    tumour: Sequence[np.ndarray], holes: Sequence[np.ndarray], shape: tuple[int, int]
) -> np.ndarray:
    """The region the polygons describe (see the module docstring) on a raster of ``shape``
    whose pixel centres lie at integer (x, y); vertices may be fractional (8 bits kept)."""
    counts = []
    for polygons in (tumour, holes):
        total = np.zeros(shape, np.int32)
        for points in polygons:
            layer = np.zeros(shape, np.uint8)
            fixed = np.rint(np.asarray(points, np.float64) * 256).astype(np.int32)
            cv2.fillPoly(layer, [fixed.reshape(-1, 1, 2)], 1, lineType=cv2.LINE_8, shift=8)
            total += layer
        counts.append(total)
    return counts[0] > counts[1]

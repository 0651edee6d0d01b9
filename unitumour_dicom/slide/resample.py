"""Exact area resampling between pixel grids whose sizes and origins need not align.

Every grid here shares one convention: pixel ``i`` of a grid with pixel size ``s`` covers
``[i * s, (i + 1) * s)`` from the slide's top-left corner. Resampling pixels of size ``s`` onto
pixels of size ``t`` gives each target pixel the mean of the source over exactly the area it
covers (a box filter as wide as the target pixel, so no aliasing when shrinking). The weights
are the exact overlaps of each target pixel with the source pixels it covers, whatever the
scale and whatever the sub-pixel offset between the grids, applied as two sparse products
(rows, then columns). That is what lets tiles start anywhere on
the model's grid without drifting against the scanner's.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import sparse

# Pixel sizes read from DICOM are decimal strings; grid edges that should coincide may miss
# by rounding. A position within this many source pixels of an integer counts as that integer
# when deciding which source pixels a region needs.
_EDGE_TOLERANCE = 1e-6


def source_span(start: int, count: int, scale: float) -> tuple[int, int]:
    """Source pixel range ``[first, stop)`` that target pixels ``[start, start + count)``
    cover, where one target pixel spans ``scale`` source pixels."""
    first = math.floor(start * scale + _EDGE_TOLERANCE)
    stop = math.ceil((start + count) * scale - _EDGE_TOLERANCE)
    return first, max(stop, first + 1)


def area_weights(n_source: int, origin: float, scale: float, count: int) -> sparse.csr_matrix:
    """Sparse (count x n_source) matrix whose row ``k`` holds the share of target pixel
    ``[origin + k * scale, origin + (k + 1) * scale)`` (source units) that each source pixel
    covers, divided by the target pixel's width: multiplying by it takes area means."""
    edges = origin + scale * np.arange(count + 1, dtype=np.float64)
    first = np.floor(edges[:-1] + _EDGE_TOLERANCE).astype(np.intp)
    stop = np.ceil(edges[1:] - _EDGE_TOLERANCE).astype(np.intp)
    width = max(int((stop - first).max()), 1)
    rows, cols, vals = [], [], []
    for k in range(width):
        col = first + k
        share = np.minimum(edges[1:], col + 1) - np.maximum(edges[:-1], col)
        keep = (share > 0) & (col >= 0) & (col < n_source)
        rows.append(np.flatnonzero(keep))
        cols.append(col[keep])
        vals.append(share[keep] / scale)
    return sparse.csr_matrix(
        (np.concatenate(vals).astype(np.float32), (np.concatenate(rows), np.concatenate(cols))),
        shape=(count, n_source),
    )


def resample_area(
    src: np.ndarray,
    origin: tuple[float, float],
    scale: tuple[float, float],
    shape: tuple[int, int],
) -> np.ndarray:
    """Area-resample ``src`` (rows x columns [x channels]) onto a grid of ``shape`` pixels.

    Parameters
    ----------
    src:
        Source pixels; pixel (r, c) covers ``[r, r + 1) x [c, c + 1)`` in source units.
    origin:
        (row, column) of the target grid's top-left corner in source pixels relative to
        ``src[0, 0]``'s corner; fractional values are exact, not rounded.
    scale:
        (row, column) size of one target pixel in source pixels (above 1 shrinks).
    shape:
        (rows, columns) of the result.

    Returns
    -------
    numpy.ndarray
        float32 means with ``src``'s trailing channel axis. Target area outside ``src``
        contributes nothing, so callers pad the source to cover every target pixel.
    """
    rows, cols = shape
    if rows <= 0 or cols <= 0:
        raise ValueError(f"target shape must be positive, not {shape}")
    if not (scale[0] > 0 and scale[1] > 0):
        raise ValueError(f"scale must be positive, not {scale}")
    if (
        scale == (1.0, 1.0)
        and float(origin[0]).is_integer()
        and float(origin[1]).is_integer()
        and origin[0] >= 0
        and origin[0] + rows <= src.shape[0]
        and origin[1] >= 0
        and origin[1] + cols <= src.shape[1]
    ):
        r0, c0 = int(origin[0]), int(origin[1])
        return src[r0 : r0 + rows, c0 : c0 + cols].astype(np.float32)
    height, width = src.shape[:2]
    channels = src.shape[2] if src.ndim == 3 else 1
    along_rows = area_weights(height, origin[0], scale[0], rows)
    along_cols = area_weights(width, origin[1], scale[1], cols)
    # Rows first on (height, width * channels); then columns on the transposed result, so
    # both products are sparse-times-dense with the dense operand contiguous.
    out = along_rows @ src.reshape(height, width * channels).astype(np.float32)
    out = out.reshape(rows, width, channels).transpose(1, 0, 2).reshape(width, rows * channels)
    out = along_cols @ out
    out = out.reshape(cols, rows, channels).transpose(1, 0, 2)
    return np.ascontiguousarray(out if src.ndim == 3 else out[..., 0])


def to_uint8(values: np.ndarray) -> np.ndarray:
    """Round float pixel values to uint8 (half up), clipped to 0..255."""
    return np.clip(values + 0.5, 0, 255).astype(np.uint8)


def bilinear_sample(
    array: np.ndarray,
    array_mpp: float,
    top: int,
    left: int,
    shape: tuple[int, int],
    target_mpp: float,
) -> np.ndarray:
    """Values of a 2-D grid of pixel size ``array_mpp`` interpolated linearly at the centres
    of target pixels ``[top, top + rows) x [left, left + cols)`` of size ``target_mpp``.

    Used to bring a coarse mask up to the model's resolution with smooth edges instead of
    the coarse grid's staircase. Beyond the array's edge the nearest edge value holds.
    """
    rows, cols = shape
    ratio = target_mpp / array_mpp

    def axis(start: int, count: int, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        pos = (np.arange(start, start + count, dtype=np.float64) + 0.5) * ratio - 0.5
        pos = np.clip(pos, 0.0, n - 1.0)
        lo = np.minimum(np.floor(pos).astype(np.intp), max(n - 2, 0))
        hi = np.minimum(lo + 1, n - 1)
        return lo, hi, (pos - lo).astype(np.float32)

    r_lo, r_hi, r_w = axis(top, rows, array.shape[0])
    c_lo, c_hi, c_w = axis(left, cols, array.shape[1])
    a = array.astype(np.float32, copy=False)
    upper = a[r_lo][:, c_lo] * (1 - c_w) + a[r_lo][:, c_hi] * c_w
    lower = a[r_hi][:, c_lo] * (1 - c_w) + a[r_hi][:, c_hi] * c_w
    return upper * (1 - r_w)[:, None] + lower * r_w[:, None]

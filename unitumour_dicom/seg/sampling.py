"""Resampling a slide mask onto one pyramid level, one row of tiles at a time.

Each level pixel takes the value of the mask pixel that contains its centre (nearest
neighbour, as :meth:`SlideMask.sample` defines it), so a mask at the base level's pixel size
comes back unchanged at the base level, and lower levels are its decimations. Work and memory
per row of tiles are bounded by (tile rows x level columns); rows and tiles the mask leaves
empty cost almost nothing, so time follows the tumour's area rather than the slide's.

The mask may be a :class:`~unitumour_dicom.slide.raster.DiskRaster` (inference's masks are):
each row of tiles then reads just the mask rows and columns it samples, and nothing of the
mask stays in memory between rows of tiles.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Literal

import numpy as np

from ..slide.mask import SlideMask
from ..slide.raster import band_rows, read_rows
from .levels import SourceLevel

ValueKind = Literal["binary", "fractional"]
_CHUNK_PIXELS = 1 << 22  # mask pixels converted at a time by rows_with_values


def to_binary(block: np.ndarray) -> np.ndarray:
    """Stored values of a BINARY segment (0 or 1): booleans as they are, integers that are
    not 0, and probabilities of at least 0.5."""
    if block.dtype == np.bool_:
        return block.view(np.uint8)
    if block.dtype.kind == "f":
        return (block >= 0.5).view(np.uint8)
    return (block != 0).view(np.uint8)


def to_fractional(
    block: np.ndarray, max_value: int = 255, source_max: int | None = None
) -> np.ndarray:
    """Stored values of a FRACTIONAL segment: probabilities scaled to 0..max_value and
    rounded; integer probabilities stored as 0..source_max (SlideMask.max_value) rescaled;
    a boolean or integer mask as 0 or max_value."""
    if source_max is not None:
        if source_max == max_value:
            return block.astype(np.uint8, copy=False)
        scaled = np.rint(block.astype(np.float32) * (max_value / source_max))
        return np.clip(scaled, 0, max_value).astype(np.uint8)
    if block.dtype.kind == "f":
        scaled = np.rint(np.clip(block, 0.0, 1.0) * max_value)
        return np.nan_to_num(scaled, nan=0.0).astype(np.uint8)
    return ((block != 0) * np.uint8(max_value)).astype(np.uint8)


def _indices(centres_um: np.ndarray, mpp: float, size: int) -> tuple[np.ndarray, int, int]:
    """Mask index of each centre and the [first, stop) range of positions inside the mask
    (indices grow with position, so the positions inside form one run)."""
    idx = np.floor(centres_um / mpp).astype(np.int64)
    first = int(np.searchsorted(idx, 0, side="left"))
    stop = int(np.searchsorted(idx, size, side="left"))
    return idx, first, stop


class LevelSampler:
    """Frames of one level, in TILED_FULL order, from one mask.

    A frame is a (tile_rows, tile_columns) uint8 array of stored values, padded with 0 past
    the level's edge, or None when every value in it is 0.
    """

    def __init__(
        self,
        mask: SlideMask,
        level: SourceLevel,
        convert: Callable[[np.ndarray], np.ndarray],
        row_has_values: np.ndarray | None = None,
    ) -> None:
        self.mask = mask
        self.level = level
        self.convert = convert
        height, width = mask.shape
        self.row_idx, self.row_first, self.row_stop = _indices(
            level.row_centres_um(), mask.mpp, height
        )
        col_idx, self.col_first, self.col_stop = _indices(
            level.column_centres_um(), mask.mpp, width
        )
        inside = col_idx[self.col_first : self.col_stop]
        # The distinct mask columns this level reads, and for each level column inside the
        # mask, which of them it reads: one gather per row of tiles instead of one per tile.
        self.col_unique, self.col_inverse = np.unique(inside, return_inverse=True)
        self.cols_contiguous = bool(
            self.col_unique.size
            and self.col_unique[-1] - self.col_unique[0] + 1 == self.col_unique.size
        )
        # Each level column inside the mask reads its own mask column (no column repeats):
        # tiles are plain slices of the block.
        self.cols_one_to_one = self.cols_contiguous and self.col_unique.size == inside.size
        self.row_has_values = (
            row_has_values if row_has_values is not None else rows_with_values(mask, convert)
        )

    def frames(self) -> Iterator[np.ndarray | None]:
        level = self.level
        for tile_row in range(level.tiles_down):
            yield from self._strip(tile_row)

    def _strip(self, tile_row: int) -> Iterator[np.ndarray | None]:
        level = self.level
        tr, tc = level.tile_rows, level.tile_columns
        r0 = tile_row * tr
        r1 = min(r0 + tr, level.rows)
        a, b = max(r0, self.row_first), min(r1, self.row_stop)
        if a >= b or self.col_unique.size == 0:
            yield from (None for _ in range(level.tiles_across))
            return
        rows = self.row_idx[a:b]
        if not self.row_has_values[rows].any():
            yield from (None for _ in range(level.tiles_across))
            return
        row_unique, row_inverse = np.unique(rows, return_inverse=True)
        if self.cols_contiguous:
            c0 = int(self.col_unique[0])
            block = self.mask.array[row_unique, c0 : c0 + self.col_unique.size]
        else:
            block = self.mask.array[np.ix_(row_unique, self.col_unique)]
        block = self.convert(block)
        col_has_values = np.asarray(block.any(axis=0))  # an array: block is 2-D
        expanded: np.ndarray | None = None  # block with one row per level row, made once
        for tile_col in range(level.tiles_across):
            c_start = tile_col * tc
            c_end = min(c_start + tc, level.columns)
            ca, cb = max(c_start, self.col_first), min(c_end, self.col_stop)
            if ca >= cb:
                yield None
                continue
            if self.cols_one_to_one:
                cols: slice | np.ndarray = slice(ca - self.col_first, cb - self.col_first)
                empty = not col_has_values[cols].any()
            else:
                cols = self.col_inverse[ca - self.col_first : cb - self.col_first]
                empty = not col_has_values[cols].any()
            if empty:
                yield None
                continue
            if expanded is None:
                expanded = block if row_unique.size == rows.size else block[row_inverse]
            values = expanded[:, cols] if isinstance(cols, slice) else expanded.take(cols, axis=1)
            if not values.any():
                yield None
                continue
            tile = np.zeros((tr, tc), dtype=np.uint8)
            tile[a - r0 : b - r0, ca - c_start : cb - c_start] = values
            yield tile


def rows_with_values(mask: SlideMask, convert: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """For every mask row, whether any of its stored values is not 0 (in chunks of about
    4 M pixels, so converting a float map never copies it whole, and a mask on disk is read
    a chunk at a time)."""
    height, width = mask.shape
    out = np.zeros(height, dtype=bool)
    step = band_rows(width, _CHUNK_PIXELS)
    for start in range(0, height, step):
        block = read_rows(mask.array, start, start + step)
        out[start : start + block.shape[0]] = convert(block).any(axis=1)
    return out

"""The grid of model tiles over a slide, which of them hold tissue, and their blending weights.

Tiles are ``tile_size`` squares on the model's pixel grid (``card.mpp``), laid edge to edge
from the slide's top-left corner, so their cores partition the raster. Each is read with a
halo of ``overlap`` pixels on every side (the network's input is ``tile_size + 2 * overlap``
square); neighbouring inputs therefore overlap by ``2 * overlap`` pixels, across which their
predictions are blended with linear ramps that sum to one: no seam, and no pixel counted
twice.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from ..slide.mask import SlideMask


@dataclass(frozen=True, order=True)
class Tile:
    """One tile: its grid row and column, and its core's top-left pixel on the model grid."""

    row: int
    col: int
    top: int
    left: int


@dataclass(frozen=True)
class TileGrid:
    """Tiles of ``tile_size`` with a halo of ``overlap`` over a raster of ``shape`` pixels."""

    shape: tuple[int, int]
    tile_size: int
    overlap: int

    def __post_init__(self) -> None:
        if self.tile_size < 1 or self.overlap < 0 or 2 * self.overlap > self.tile_size:
            raise ValueError(
                f"need tile_size >= 1 and 0 <= 2 * overlap <= tile_size, not "
                f"{self.tile_size} and {self.overlap}"
            )
        if self.shape[0] < 1 or self.shape[1] < 1:
            raise ValueError(f"raster shape must be positive, not {self.shape}")

    @property
    def input_size(self) -> int:
        return self.tile_size + 2 * self.overlap

    @property
    def rows(self) -> int:
        return math.ceil(self.shape[0] / self.tile_size)

    @property
    def cols(self) -> int:
        return math.ceil(self.shape[1] / self.tile_size)

    def tile(self, row: int, col: int) -> Tile:
        return Tile(row, col, row * self.tile_size, col * self.tile_size)

    def window(self, tile: Tile) -> tuple[int, int]:
        """Top-left pixel of the tile's input (core plus halo); may lie outside the raster."""
        return tile.top - self.overlap, tile.left - self.overlap

    def core(self, tile: Tile) -> tuple[int, int, int, int]:
        """(top, left, bottom, right) of the tile's core, clipped to the raster."""
        return (
            tile.top,
            tile.left,
            min(tile.top + self.tile_size, self.shape[0]),
            min(tile.left + self.tile_size, self.shape[1]),
        )

    def all_tiles(self) -> list[Tile]:
        return [self.tile(r, c) for r in range(self.rows) for c in range(self.cols)]

    def tissue_tiles(self, tissue: SlideMask, mpp: float) -> list[Tile]:
        """Tiles, in raster order, whose core may hold tissue: some tissue pixel lies within
        one tissue pixel of the core (the margin covers interpolating the coarse mask up to
        the model grid, so no tissue pixel at model resolution falls in an unread tile)."""
        low = np.asarray(tissue.array, dtype=bool)  # the low-resolution mask is in memory
        occupied = np.pad(low, 1).cumsum(0, dtype=np.int64).cumsum(1)
        occupied = np.pad(occupied, ((1, 0), (1, 0)))  # integral image with a zero edge
        n_rows, n_cols = tissue.shape
        ratio = mpp / tissue.mpp
        t = self.tile_size

        def span(start: int, stop: int, n: int) -> tuple[int, int]:
            # tissue pixels [a, b) near model pixels [start, stop); +1 for the padding
            a = max(math.floor(start * ratio) - 1, -1) + 1
            b = min(math.ceil(stop * ratio) + 1, n + 1) + 1
            return a, b

        row_spans = [span(r * t, min((r + 1) * t, self.shape[0]), n_rows) for r in range(self.rows)]
        col_spans = [span(c * t, min((c + 1) * t, self.shape[1]), n_cols) for c in range(self.cols)]
        r0 = np.array([s[0] for s in row_spans])[:, None]
        r1 = np.array([s[1] for s in row_spans])[:, None]
        c0 = np.array([s[0] for s in col_spans])[None, :]
        c1 = np.array([s[1] for s in col_spans])[None, :]
        counts = occupied[r1, c1] - occupied[r0, c1] - occupied[r1, c0] + occupied[r0, c0]
        return [self.tile(int(r), int(c)) for r, c in zip(*np.nonzero(counts > 0), strict=True)]

    @cached_property
    def ramp(self) -> np.ndarray:
        """1-D blending weights across a tile's input: rising over the first ``2 * overlap``
        pixels, flat, falling over the last ``2 * overlap``; a tile's falling ramp and its
        neighbour's rising one sum to exactly one at every pixel they share."""
        n, h = self.input_size, self.overlap
        weights = np.ones(n, np.float32)
        if h:
            rise = (np.arange(2 * h, dtype=np.float32) + 0.5) / (2 * h)
            weights[: 2 * h] = rise
            weights[n - 2 * h :] = rise[::-1]
        return weights

    @cached_property
    def weights(self) -> np.ndarray:
        """2-D blending weights of a tile's input (outer product of the ramps)."""
        return np.outer(self.ramp, self.ramp)

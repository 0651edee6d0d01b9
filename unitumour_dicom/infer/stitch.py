"""Stitching tile probabilities into the slide's probability map with bounded memory.

Tiles arrive in raster order. Blending needs weighted sums in floating point, but only where
tiles still overlap: a band as tall as one tile's input and as wide as the raster. When the
grid moves to the next row of tiles, the band's top ``tile_size`` rows can receive nothing
more; they are normalised by their summed weights, rounded to uint8 and written out, and the
``2 * overlap`` rows the next row of tiles shares are carried over. Dividing by the summed
weights (rather than trusting the ramps to add up to one) keeps probabilities right at the
slide's edges and beside tiles skipped for holding no tissue.
"""

from __future__ import annotations

import numpy as np

from ..slide.resample import to_uint8
from .tiling import Tile, TileGrid


class BandStitcher:
    """Blends (input_size x input_size) tile probabilities into ``out`` (uint8, 0..255)."""

    def __init__(self, grid: TileGrid, out: np.ndarray) -> None:
        if out.shape != grid.shape or out.dtype != np.uint8:
            raise ValueError(f"out must be uint8 {grid.shape}, not {out.dtype} {out.shape}")
        self.grid = grid
        self.out = out
        n, h = grid.input_size, grid.overlap
        width = grid.shape[1] + 2 * h + grid.tile_size  # room for the last column's input
        self._sum = np.zeros((n, width), np.float32)
        self._weight = np.zeros((n, width), np.float32)
        self._row = 0  # grid row whose band is open
        self._dirty = False  # whether the open band holds any contribution
        self._finished = False

    def add(self, tile: Tile, probability: np.ndarray) -> None:
        """Add one tile's probabilities (floats in [0, 1], its whole input window)."""
        if self._finished:
            raise RuntimeError("stitcher already finished")
        n = self.grid.input_size
        if probability.shape != (n, n):
            raise ValueError(f"tile probabilities must be {n} x {n}, not {probability.shape}")
        if tile.row < self._row:
            raise ValueError(f"tiles must come in raster order: row {tile.row} after {self._row}")
        while self._row < tile.row:
            self._advance()
        # window left is tile.left - overlap; the band's column 0 is raster column -overlap
        x = tile.left
        weights = self.grid.weights
        self._sum[:, x : x + n] += probability * weights
        self._weight[:, x : x + n] += weights
        self._dirty = True

    def finish(self) -> np.ndarray:
        """Write out everything still held; returns ``out``."""
        if not self._finished:
            while self._row < self.grid.rows:
                self._advance()
            self._flush(2 * self.grid.overlap)
            self._finished = True
        return self.out

    def _advance(self) -> None:
        t, h = self.grid.tile_size, self.grid.overlap
        if self._dirty:
            self._flush(t)
            carried = 2 * h
            self._sum[:carried] = self._sum[t : t + carried]
            self._weight[:carried] = self._weight[t : t + carried]
            self._sum[carried:] = 0
            self._weight[carried:] = 0
            self._dirty = bool(carried) and bool(self._weight[:carried].any())
        self._row += 1

    def _flush(self, count: int) -> None:
        """Write band rows [0, count) to the raster rows they stand for."""
        if not self._dirty or count <= 0:
            return
        t, h = self.grid.tile_size, self.grid.overlap
        top = self._row * t - h
        r0, r1 = max(top, 0), min(top + count, self.grid.shape[0])
        if r0 >= r1:
            return
        cols = self.grid.shape[1]
        sums = self._sum[r0 - top : r1 - top, h : h + cols]
        weights = self._weight[r0 - top : r1 - top, h : h + cols]
        values = np.divide(sums, weights, out=np.zeros_like(sums), where=weights > 0)
        self.out[r0:r1] = to_uint8(values * 255.0)

"""Stitching tile probabilities into the slide's probability map with bounded memory.

Tiles arrive in raster order. Blending needs weighted sums in floating point, but only where
tiles still overlap: a band as tall as one tile's input and as wide as the raster. When the
grid moves to the next row of tiles, the band's top ``tile_size`` rows can receive nothing
more; they are divided by their summed weights, rounded to uint8 and written out, and the
``2 * overlap`` rows the next row of tiles shares are carried over.

The summed weights are not stored as a second band: a tile's weights are the outer product of
a row ramp and a column ramp, so the sum over one row of tiles is the row ramp times the sum
of the column ramps of the tiles present in that row (one number per raster column), and a
band row holds contributions from at most two rows of tiles. Dividing by these sums (rather
than trusting the ramps to add up to one) keeps probabilities right at the slide's edges and
beside tiles skipped for holding no tissue.

``out`` may be a numpy array or a :class:`~unitumour_dicom.slide.raster.DiskRaster`; rows
are written to it ``_FLUSH_ROWS`` at a time and never read back. The band that remains is
``input_size x (width + input_size)`` float32 (:attr:`BandStitcher.nbytes`): it grows with
the raster's width but not its height (about 0.13 GB for a 55,000 px wide raster with 576 px
inputs; 9 MB for a 20,000 px raster with 96 px inputs).
"""

from __future__ import annotations

import numpy as np

from ..slide.raster import DiskRaster
from ..slide.resample import to_uint8
from .tiling import Tile, TileGrid

_FLUSH_ROWS = 64  # rows normalised at a time, to keep temporaries small


class BandStitcher:
    """Blends (input_size x input_size) tile probabilities into ``out`` (uint8, 0..255)."""

    def __init__(self, grid: TileGrid, out: np.ndarray | DiskRaster) -> None:
        if out.shape != grid.shape or out.dtype != np.uint8:
            raise ValueError(f"out must be uint8 {grid.shape}, not {out.dtype} {out.shape}")
        self.grid = grid
        self.out = out
        n, h = grid.input_size, grid.overlap
        width = grid.shape[1] + 2 * h + grid.tile_size  # room for the last column's input
        self._sum = np.zeros((n, width), np.float32)
        # summed column ramps of the tiles present in the open row and in the one before
        self._columns = np.zeros(width, np.float32)
        self._columns_before = np.zeros(width, np.float32)
        self._row = 0  # grid row whose band is open
        self._dirty = False  # whether the open band holds any contribution
        self._finished = False

    @property
    def nbytes(self) -> int:
        """Memory held for blending (grows with the raster's width, not its height)."""
        return self._sum.nbytes + self._columns.nbytes + self._columns_before.nbytes

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
        self._sum[:, x : x + n] += probability * self.grid.weights
        self._columns[x : x + n] += self.grid.ramp
        self._dirty = True

    def finish(self) -> np.ndarray | DiskRaster:
        """Write out everything still held and free the band (post-processing, which runs
        next, should not find it still allocated); returns ``out``."""
        if not self._finished:
            while self._row < self.grid.rows:
                self._advance()
            self._flush(2 * self.grid.overlap)
            self._finished = True
            self._sum = np.zeros((0, 0), np.float32)
            self._columns = self._columns_before = np.zeros(0, np.float32)
        return self.out

    def _advance(self) -> None:
        t, h = self.grid.tile_size, self.grid.overlap
        if self._dirty:
            self._flush(t)
            carried = 2 * h
            self._sum[:carried] = self._sum[t : t + carried]
            self._sum[carried:] = 0
            self._dirty = bool(carried) and bool(self._columns.any())
        self._columns_before, self._columns = self._columns, self._columns_before
        self._columns[:] = 0
        self._row += 1

    def _weights(self, band_rows: slice) -> np.ndarray:
        """Summed weights of band rows ``band_rows`` (all raster columns of the band)."""
        t, ramp = self.grid.tile_size, self.grid.ramp
        n = self.grid.input_size
        rows = np.arange(band_rows.start, band_rows.stop)
        weights = np.outer(ramp[rows], self._columns)
        # band rows [0, 2h) also lie in the previous tile row's windows, at ramp positions T+y
        shared = rows + t < n
        if shared.any():
            weights[shared] += np.outer(ramp[rows[shared] + t], self._columns_before)
        return weights

    def _flush(self, count: int) -> None:
        """Write band rows [0, count) to the raster rows they stand for."""
        if not self._dirty or count <= 0:
            return
        t, h = self.grid.tile_size, self.grid.overlap
        cols = self.grid.shape[1]
        top = self._row * t - h
        first, stop = max(top, 0) - top, min(top + count, self.grid.shape[0]) - top
        for start in range(first, stop, _FLUSH_ROWS):
            rows = slice(start, min(start + _FLUSH_ROWS, stop))
            sums = self._sum[rows, h : h + cols]
            weights = self._weights(rows)[:, h : h + cols]
            values = np.divide(sums, weights, out=np.zeros_like(sums), where=weights > 0)
            self.out[top + rows.start : top + rows.stop] = to_uint8(values * 255.0)

"""Blending tile probabilities into the slide's map: seamless, exact, bounded."""

from __future__ import annotations

import numpy as np
import pytest

from unitumour_dicom.infer import BandStitcher, TileGrid

pytestmark = pytest.mark.unittest


def field(rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """A smooth probability field over the raster."""
    return 0.5 + 0.4 * np.sin(rows / 23.0) * np.cos(cols / 31.0)


def stitch(grid: TileGrid, tiles, values) -> np.ndarray:
    out = np.zeros(grid.shape, np.uint8)
    stitcher = BandStitcher(grid, out)
    for tile in tiles:
        stitcher.add(tile, values(tile))
    return stitcher.finish()


def window_of_field(grid: TileGrid):
    def values(tile):
        top, left = grid.window(tile)
        n = grid.input_size
        r, c = np.mgrid[top : top + n, left : left + n]
        return field(r, c).astype(np.float32)

    return values


@pytest.mark.parametrize(
    ("shape", "tile_size", "overlap"), [((200, 310), 64, 16), ((97, 53), 32, 0)]
)
def test_tiles_that_agree_stitch_to_the_field_itself(shape, tile_size, overlap):
    """Each tile sees the same field at the same place: the stitched map must be that field,
    rounded, everywhere. An off-by-one in placing a tile or its weights shows at once."""
    grid = TileGrid(shape, tile_size, overlap)
    out = stitch(grid, grid.all_tiles(), window_of_field(grid))
    r, c = np.mgrid[: shape[0], : shape[1]]
    expected = np.clip(field(r, c) * 255 + 0.5, 0, 255).astype(np.uint8)
    assert np.abs(out.astype(int) - expected).max() <= 1


def test_disagreeing_tiles_blend_without_a_seam():
    """Tiles predicting different constants: inside a core its own value; across the overlap
    a linear ramp from one to the other, with no step larger than the ramp's slope."""
    grid = TileGrid((64, 128), 64, 16)
    out = stitch(
        grid, grid.all_tiles(), lambda t: np.full((96, 96), 0.2 if t.col == 0 else 0.8, np.float32)
    )
    row = out[32].astype(int)
    assert row[10] == 51 and row[120] == 204  # 0.2 and 0.8 away from the overlap
    steps = np.abs(np.diff(row))
    assert steps.max() <= np.ceil((204 - 51) / 32) + 1
    assert row[64 - 16] == pytest.approx(51, abs=3) and row[64 + 15] == pytest.approx(204, abs=3)


def test_skipped_neighbours_do_not_dim_a_tile():
    grid = TileGrid((192, 192), 64, 16)
    middle = grid.tile(1, 1)
    out = stitch(grid, [middle], lambda t: np.full((96, 96), 0.6, np.float32))
    top, left, bottom, right = grid.core(middle)
    assert (out[top - 16 : bottom + 16, left - 16 : right + 16] == 153).all()
    assert out[: top - 16].max() == 0 and out[bottom + 16 :].max() == 0


def test_tiles_out_of_raster_order_are_refused():
    grid = TileGrid((128, 128), 64, 8)
    stitcher = BandStitcher(grid, np.zeros(grid.shape, np.uint8))
    stitcher.add(grid.tile(1, 0), np.zeros((80, 80), np.float32))
    with pytest.raises(ValueError, match="raster order"):
        stitcher.add(grid.tile(0, 1), np.zeros((80, 80), np.float32))
    with pytest.raises(ValueError, match="80 x 80"):
        stitcher.add(grid.tile(1, 1), np.zeros((64, 64), np.float32))


def test_band_memory_does_not_depend_on_raster_height():
    small = BandStitcher(TileGrid((100, 1000), 64, 16), np.zeros((100, 1000), np.uint8))
    tall = BandStitcher(TileGrid((10000, 1000), 64, 16), np.zeros((10000, 1000), np.uint8))
    assert small.nbytes == tall.nbytes < 100 * 1000 * 4 * 2


def test_finishing_frees_the_band():
    """The band is only needed while tiles arrive; post-processing runs after ``finish``."""
    grid = TileGrid((200, 300), 64, 16)
    out = np.zeros((200, 300), np.uint8)
    stitcher = BandStitcher(grid, out)
    assert stitcher.nbytes > 64 * 300 * 4
    stitcher.add(grid.tile(0, 0), np.ones((96, 96), np.float32))
    assert stitcher.finish() is out
    assert stitcher.nbytes == 0
    assert (out[:64, :64] == 255).all() and (out[:, 96:] == 0).all()
    assert stitcher.finish() is out  # again: nothing more to write

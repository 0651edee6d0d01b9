"""The tile grid: cores partition the raster, tissue tiles cover all tissue, ramps sum to one."""

from __future__ import annotations

import numpy as np
import pytest

from unitumour_dicom.infer import BandStitcher, TileGrid
from unitumour_dicom.slide import SlideMask
from unitumour_dicom.slide.resample import bilinear_sample

pytestmark = pytest.mark.unittest


def test_cores_partition_the_raster():
    grid = TileGrid((150, 230), 64, 8)
    assert (grid.rows, grid.cols, grid.input_size) == (3, 4, 80)
    count = np.zeros(grid.shape, int)
    for tile in grid.all_tiles():
        top, left, bottom, right = grid.core(tile)
        count[top:bottom, left:right] += 1
        assert grid.window(tile) == (tile.top - 8, tile.left - 8)
    assert (count == 1).all()


@pytest.mark.parametrize(("tile_size", "overlap"), [(64, 8), (64, 32), (50, 0), (30, 7)])
def test_ramps_of_neighbours_sum_to_one(tile_size, overlap):
    grid = TileGrid((500, 500), tile_size, overlap)
    ramp = grid.ramp
    assert ramp.shape == (grid.input_size,) and ramp.min() > 0 and ramp.max() <= 1
    total = np.zeros(tile_size * 4 + 2 * overlap)
    for k in range(4):
        total[k * tile_size : k * tile_size + grid.input_size] += ramp
    # every pixel of the inner cores gets weights summing to exactly one
    np.testing.assert_allclose(total[tile_size + overlap : 3 * tile_size + overlap], 1.0, atol=1e-6)


def test_invalid_geometry_is_refused():
    with pytest.raises(ValueError, match="overlap"):
        TileGrid((10, 10), 16, 9)
    with pytest.raises(ValueError, match="shape"):
        TileGrid((0, 10), 16, 2)


def phantom_tissue(rows: int, cols: int, mpp: float) -> SlideMask:
    """A coarse tissue mask: two blobs and one isolated pixel near a corner."""
    y, x = np.mgrid[:rows, :cols]
    mask = ((y - 20) ** 2 + (x - 30) ** 2 < 12**2) | ((y - 40) ** 2 / 4 + (x - 70) ** 2 < 9**2)
    mask[rows - 1, 0] = True
    return SlideMask(mask, mpp)


def test_tissue_tiles_cover_every_tissue_pixel_exactly_once_after_stitching():
    """Tissue at 8 µm/px brought to a 0.92 µm/px model grid; tiles chosen from the coarse
    mask; every tissue pixel at model resolution lies in exactly one chosen core, and
    stitching constant probabilities gives that constant on every tissue pixel."""
    tissue = phantom_tissue(60, 100, 8.0)
    mpp = 0.92
    shape = (int(np.ceil(60 * 8 / mpp)), int(np.ceil(100 * 8 / mpp)))
    grid = TileGrid(shape, 64, 16)
    tiles = grid.tissue_tiles(tissue, mpp)
    assert 0 < len(tiles) < grid.rows * grid.cols
    assert tiles == sorted(tiles), "raster order"
    fine = bilinear_sample(tissue.array, 8.0, 0, 0, shape, mpp) >= 0.5
    covered = np.zeros(shape, int)
    for tile in tiles:
        top, left, bottom, right = grid.core(tile)
        covered[top:bottom, left:right] += 1
    assert covered.max() == 1
    assert covered[fine].all(), "a tissue pixel lies outside every chosen tile"
    out = np.zeros(shape, np.uint8)
    stitcher = BandStitcher(grid, out)
    for tile in tiles:
        stitcher.add(tile, np.full((grid.input_size,) * 2, 0.6, np.float32))
    stitcher.finish()
    assert (out[fine] == 153).all()  # round(0.6 * 255), exactly: the weights sum to one


def test_no_tissue_means_no_tiles():
    assert (
        TileGrid((100, 100), 32, 4).tissue_tiles(SlideMask(np.zeros((5, 5), bool), 20.0), 1.0) == []
    )

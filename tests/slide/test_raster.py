"""DiskRaster behaves as numpy indexing says, holds nothing between accesses, keeps its file
sparse where nothing was written, and frees its disk when closed."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from unitumour_dicom.slide import SlideMask
from unitumour_dicom.slide.raster import (
    DiskRaster,
    any_nonzero,
    band_rows,
    count_nonzero,
    read_rows,
    total,
    write_rows,
)

pytestmark = pytest.mark.unittest


@pytest.fixture
def pair(tmp_path: Path) -> tuple[np.ndarray, DiskRaster]:
    rng = np.random.default_rng(3)
    array = rng.integers(0, 256, (301, 77)).astype(np.uint8)
    raster = DiskRaster(array.shape, np.uint8, tmp_path)
    raster[:] = array
    return array, raster


def test_reads_follow_numpy_indexing(pair) -> None:
    array, raster = pair
    rows = np.array([0, 3, 3, 150, 300])
    cols = np.array([76, 0, 5, 5, 40])
    for key in (
        slice(10, 20),
        (slice(10, 20), slice(None)),
        (slice(5, 9), slice(3, 30)),
        (slice(None, None, 7), slice(2, 9)),
        (rows, slice(4, 60)),
        np.ix_(rows, cols),
        (rows, cols),  # points
        (-1, slice(None)),
        7,
        (slice(290, 400),),
    ):
        got = raster[key]
        np.testing.assert_array_equal(got, array[key])
        assert not np.shares_memory(got, array)
    np.testing.assert_array_equal(np.asarray(raster), array)
    np.testing.assert_array_equal(np.asarray(raster, dtype=np.int16), array.astype(np.int16))


def test_writes_follow_numpy_indexing(pair) -> None:
    array, raster = pair
    for key, value in (
        ((slice(10, 20), slice(5, 9)), 7),
        (3, 1),
        ((np.array([4, 100]), slice(0, 3)), 9),
        ((np.array([8, 200]), np.array([1, 60])), 255),
        (slice(40, 41), np.arange(77, dtype=np.uint8)[None]),
    ):
        raster[key] = value
        array[key] = value
    raster[50:60] &= np.uint8(1)  # get, change, set: augmented assignment writes through
    array[50:60] &= np.uint8(1)
    np.testing.assert_array_equal(np.asarray(raster), array)
    with pytest.raises(IndexError):
        raster.write_rows(300, np.zeros((2, 77), np.uint8))
    with pytest.raises(ValueError):
        raster.write_rows(0, np.zeros((2, 76), np.uint8))


def test_band_helpers_treat_arrays_and_rasters_alike(pair) -> None:
    array, raster = pair
    assert count_nonzero(raster) == count_nonzero(array) == np.count_nonzero(array)
    assert total(raster) == total(array) == float(array.sum())
    assert any_nonzero(raster) and not any_nonzero(DiskRaster((5, 5), bool))
    view = read_rows(array, 2, 5)
    assert np.shares_memory(view, array)  # an array's rows are a view...
    copy = read_rows(raster, 2, 5)
    copy[:] = 0  # ...a raster's a copy, stored back explicitly
    assert raster[2:5].any()
    write_rows(raster, 2, copy)
    assert not raster[2:5].any()
    assert [b[:2] for b in raster.bands(100)] == [(0, 100), (100, 200), (200, 300), (300, 301)]
    assert band_rows(1 << 30) == 1 and band_rows(1000) == (1 << 22) // 1000


def test_unwritten_rows_cost_no_disk_and_closing_frees_it(tmp_path: Path) -> None:
    raster = DiskRaster((200_000, 5_000), bool, tmp_path)  # 1 GB if it were not sparse
    assert list(tmp_path.iterdir()) == [], "the file is unlinked from the start"
    assert raster.nbytes == 10**9 and raster.disk_bytes == 0
    raster[:] = False  # zeros over rows never written: skipped
    raster[0:10] = np.zeros((10, 5_000), bool)
    assert raster.disk_bytes == 0
    raster[1000:1002] = True
    assert 0 < raster.disk_bytes <= 64 * 1024
    assert count_nonzero(raster[995:1005]) == 10_000
    # a gather over a wide span of rows reads only the rows asked for
    picked = raster[np.array([5, 1001, 199_999]), 10:20]
    assert picked.tolist() == [[False] * 10, [True] * 10, [False] * 10]
    fd = raster._fd
    raster.close()
    assert raster.closed and raster.disk_bytes == 0
    with pytest.raises(OSError):
        os.fstat(fd)


def test_a_slide_mask_on_disk_measures_and_samples_like_one_in_memory(pair) -> None:
    array, raster = pair
    on_disk = SlideMask(raster, 0.5, max_value=255)
    in_memory = SlideMask(array, 0.5, max_value=255)
    assert on_disk.shape == in_memory.shape and on_disk.is_probability
    assert on_disk.area_mm2() == in_memory.area_mm2()
    np.testing.assert_array_equal(
        on_disk.region(3, 4, 50, 20, 1.3), in_memory.region(3, 4, 50, 20, 1.3)
    )
    np.testing.assert_array_equal(on_disk.fraction(), in_memory.fraction())

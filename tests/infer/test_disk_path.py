"""The disk-backed path (masks in DiskRaster scratch files, worked band by band) gives, bit
for bit, what straightforward whole-array code gives: stitching, post-processing with
components that span band seams, and a whole slide through ``segment_slide``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from tests.infer.oracle import oracle_model
from tests.infer.test_components import blobby, reference_fill, reference_remove
from tests.infer.test_postprocess import random_inputs, whole_array_postprocessing
from tests.infer.test_segment import painted_slide
from unitumour_dicom.infer import (
    BandStitcher,
    ModelRunner,
    PostprocessParams,
    TileGrid,
    fill_small_holes,
    remove_small_objects,
    segment_slide,
    tumour_mask,
)
from unitumour_dicom.slide import open_slide
from unitumour_dicom.slide.raster import DiskRaster
from unitumour_dicom.slide.resample import bilinear_sample
from unitumour_dicom.synthetic import PhantomSpec, write_phantom_slide

pytestmark = pytest.mark.unittest


class WholeReadRefused(DiskRaster):
    """A raster that fails any attempt to read it whole (``np.asarray``): what is given one
    must work band by band."""

    def __array__(self, dtype=None, copy=None):  # type: ignore[no-untyped-def]
        raise AssertionError("the whole raster was read")

    def contents(self) -> np.ndarray:
        return self.rows(0, self.shape[0])


def on_disk(array: np.ndarray, directory: Path) -> WholeReadRefused:
    raster = WholeReadRefused(array.shape, array.dtype, directory)
    raster[:] = array
    return raster


def seam_shapes() -> np.ndarray:
    """Objects and holes that only join across band seams when bands are 5 rows tall."""
    mask = np.zeros((40, 36), bool)
    mask[0:25, 2] = mask[0:25, 17] = True  # a U joined only in its bottom band
    mask[24, 2:18] = True
    mask[2:5, 22:25] = True  # two squares touching at a corner across rows 4 / 5
    mask[5:8, 25:28] = True
    for r in range(8, 38, 2):  # a snake through every band: one object of many pieces
        mask[r, 30 if r % 4 else 33 : 35 if r % 4 else 31] = True
        mask[r : r + 3, 34 if r % 4 else 30] = True
    mask[27:38, 3:16] = True  # a ring whose hole spans the seams at rows 30 and 35
    mask[29:36, 5:14] = False
    mask[32, 9] = True  # with an island in it
    return mask


@pytest.mark.parametrize("band_rows", [1, 5, 7, None])
def test_components_on_disk_equal_whole_array_labelling(tmp_path: Path, band_rows) -> None:
    masks = [seam_shapes(), blobby(0), blobby(1, shape=(97, 130), density=0.55)]
    for mask in masks:
        for min_area in (5, 30, 200):
            raster = on_disk(mask, tmp_path)
            removed = remove_small_objects(raster, min_area, band_rows=band_rows)
            expected = reference_remove(mask, min_area)
            np.testing.assert_array_equal(raster.contents(), expected)
            assert removed == np.count_nonzero(mask & ~expected)
        for max_area in (3, 40, 300):
            raster = on_disk(mask, tmp_path)
            filled = fill_small_holes(raster, max_area, band_rows=band_rows)
            expected = reference_fill(mask, max_area)
            np.testing.assert_array_equal(raster.contents(), expected)
            assert filled == np.count_nonzero(expected & ~mask)


def test_the_seam_shapes_really_cross_seams() -> None:
    """Guard on the fixture: with 5-row bands the U, the squares and the snake are several
    pieces each, which only the union across seams makes one object."""
    mask = seam_shapes()
    whole = ndimage.label(mask, structure=np.ones((3, 3), bool))[1]
    pieces = sum(
        ndimage.label(mask[r : r + 5], structure=np.ones((3, 3), bool))[1] for r in range(0, 40, 5)
    )
    assert pieces > whole + 10


@pytest.mark.parametrize("band_rows", [3, 16, None])
@pytest.mark.parametrize(
    ("threshold", "min_area", "max_hole"), [(0.3, 400.0, 250.0), (0.6, 90.0, 5000.0)]
)
def test_postprocessing_on_disk_equals_in_memory(
    tmp_path: Path, band_rows, threshold, min_area, max_hole
) -> None:
    probability, tissue = random_inputs(1)
    params = PostprocessParams(threshold, min_area, max_hole)
    expected = whole_array_postprocessing(probability, tissue, 1.5, params)
    in_memory = tumour_mask(probability, tissue, 1.5, params, band_rows=band_rows)
    disk_prob, disk_tissue = on_disk(probability, tmp_path), on_disk(tissue, tmp_path)
    got = tumour_mask(disk_prob, disk_tissue, 1.5, params, band_rows=band_rows)
    assert isinstance(got, DiskRaster) and got.directory == tmp_path
    np.testing.assert_array_equal(in_memory, expected)
    np.testing.assert_array_equal(np.asarray(got), expected)
    out = WholeReadRefused(probability.shape, bool, tmp_path)
    tumour_mask(disk_prob, disk_tissue, 1.5, params, out=out, band_rows=band_rows)
    np.testing.assert_array_equal(out.contents(), expected)


def test_stitching_into_a_raster_equals_stitching_into_an_array(tmp_path: Path) -> None:
    grid = TileGrid((230, 410), 48, 12)
    rng = np.random.default_rng(5)
    tiles = [t for t in grid.all_tiles() if rng.random() > 0.25]  # some skipped, as glass is
    n = grid.input_size
    values = {(t.row, t.col): rng.random((n, n)).astype(np.float32) for t in tiles}
    array = np.zeros(grid.shape, np.uint8)
    raster = WholeReadRefused(grid.shape, np.uint8, tmp_path)
    for out in (array, raster):
        stitcher = BandStitcher(grid, out)
        for tile in tiles:
            stitcher.add(tile, values[(tile.row, tile.col)])
        stitcher.finish()
    np.testing.assert_array_equal(raster.contents(), array)
    assert array.any()


@pytest.fixture(scope="module")
def phantom(tmp_path_factory: pytest.TempPathFactory):
    spec = PhantomSpec(
        width=1024, height=768, tile_size=256, levels=3, mpp=0.5, seed=9, n_tumours=3,
        label=False, overview=False,
    )  # fmt: skip
    return write_phantom_slide(tmp_path_factory.mktemp("phantom"), spec)


def in_memory_reference(slide, model):  # type: ignore[no-untyped-def]
    """What segment_slide computed before its rasters went to disk, written out plainly:
    whole-array probability and tissue, every tile in turn, then whole-array
    post-processing."""
    card = model.card
    mpp = float(card.mpp)
    grid = TileGrid(slide.grid_shape(mpp), card.tile_size, card.overlap)
    tissue_low = slide.tissue_mask()
    tiles = grid.tissue_tiles(tissue_low, mpp)
    probability = np.zeros(grid.shape, np.uint8)
    tissue = np.zeros(grid.shape, bool)
    reader = slide.reader(slide.choose_level(mpp), mpp)
    runner = ModelRunner(model, mixed_precision=False)
    stitcher = BandStitcher(grid, probability)
    n = grid.input_size
    for tile in tiles:
        c_top, c_left, c_bottom, c_right = grid.core(tile)
        tissue[c_top:c_bottom, c_left:c_right] = (
            bilinear_sample(
                tissue_low.array,
                tissue_low.mpp,
                c_top,
                c_left,
                (c_bottom - c_top, c_right - c_left),
                mpp,
            )
            >= 0.5
        )
        pixels = reader.read(*grid.window(tile), n, n)
        stitcher.add(tile, runner.collect(runner.submit(pixels[None]))[0])
    stitcher.finish()
    params = PostprocessParams.from_card(card)
    return probability, tissue, whole_array_postprocessing(probability, tissue, mpp, params)


def test_segment_slide_on_disk_equals_the_in_memory_reference(phantom, tmp_path: Path) -> None:
    paths = painted_slide(phantom, tmp_path / "painted", "native")
    # small tiles (many rows of tiles, many band seams) and post-processing that matters
    model = oracle_model(
        mpp=0.8, tile_size=32, overlap=6, min_tumour_area_um2=2000.0, fill_holes_max_area_um2=900.0
    )
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    with open_slide(paths) as slide:
        result = segment_slide(slide, model, batch_size=5, read_threads=2, scratch_dir=scratch)
        probability, tissue, tumour = in_memory_reference(slide, model)
    assert list(scratch.iterdir()) == [], "scratch files are unlinked from the start"
    for mask in (result.probability, result.tissue, result.tumour):
        assert isinstance(mask.array, DiskRaster) and mask.array.directory == scratch
    np.testing.assert_array_equal(np.asarray(result.probability.array), probability)
    np.testing.assert_array_equal(np.asarray(result.tissue.array), tissue)
    np.testing.assert_array_equal(np.asarray(result.tumour.array), tumour)
    assert tumour.any() and tissue.any()
    pixel_mm2 = (0.8 / 1000) ** 2
    assert result.tumour_area_mm2 == np.count_nonzero(tumour) * pixel_mm2
    assert result.tissue_area_mm2 == np.count_nonzero(tissue) * pixel_mm2
    assert result.tumour.array.disk_bytes > 0
    with result:
        pass
    assert all(m.array.closed for m in (result.probability, result.tissue, result.tumour))
    assert result.tumour_area_mm2 > 0, "the figures outlive the rasters"

"""Opening real DICOM WSI series and reading them at physical pixel sizes."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from pydicom import dcmread

from unitumour_dicom.errors import SlideError
from unitumour_dicom.slide import MAX_RASTER_PIXELS, open_slide

from .wsi_files import downsample, write_wsi

pytestmark = pytest.mark.integration

GLASS, PINK = (245, 245, 245), (230, 150, 200)


def scene(rows: int = 400, cols: int = 600, mpp: float = 0.5) -> np.ndarray:
    """Glass with a pink rectangle exactly 100 x 60 µm whose top-left corner lies at
    (x, y) = (150, 50) µm."""
    image = np.full((rows, cols, 3), GLASS, np.uint8)
    r0, c0 = round(50 / mpp), round(150 / mpp)
    image[r0 : r0 + round(60 / mpp), c0 : c0 + round(100 / mpp)] = PINK
    return image


def pink_box_um(pixels: np.ndarray, mpp: float) -> tuple[float, float, float, float]:
    """(x, y, width, height) in µm of the pink rectangle, from the fraction of pink in each
    row and column (so partial edge pixels count for what they cover). White beyond the
    slide's edge counts as no pink."""
    pink = (pixels[..., 2].astype(float) - GLASS[2]) / (PINK[2] - GLASS[2])
    pink = np.clip(pink, 0, 1)
    cols, rows = pink.max(axis=0), pink.max(axis=1)
    first_col, first_row = np.argmax(cols > 0), np.argmax(rows > 0)
    x = (first_col + 1 - cols[first_col]) * mpp
    y = (first_row + 1 - rows[first_row]) * mpp
    return x, y, cols.sum() * mpp, rows.sum() * mpp


def test_levels_sizes_and_uids(tmp_path: Path):
    paths = write_wsi(tmp_path, scene(), mpp=0.5, factors=(1, 2, 4), tile=64)
    with open_slide(paths) as slide:
        assert [lv.mpp for lv in slide.levels] == [0.5, 1.0, 2.0]
        assert [lv.size for lv in slide.levels] == [(600, 400), (300, 200), (150, 100)]
        assert slide.base_mpp == 0.5 and slide.size == (600, 400)
        assert slide.extent_um == (300.0, 200.0)
        ds = dcmread(paths[0], stop_before_pixels=True)
        assert slide.frame_of_reference_uid == ds.FrameOfReferenceUID
        assert slide.series_instance_uid == ds.SeriesInstanceUID
        assert len(slide.instance_uids) == 3
        assert slide.grid_shape(0.92) == (218, 327)  # ceil(200 / 0.92), ceil(300 / 0.92)


def test_no_frame_stays_in_memory_once_the_reader_is_released(tmp_path: Path):
    """Frames are kept once, by the reader, and only until it is released: wsidicom's own
    caches (100 MB each by default) would hold a second copy for as long as the slide is
    open, through post-processing and SEG writing."""
    paths = write_wsi(tmp_path, scene(800, 1200), mpp=0.5, factors=(1,), tile=64)
    with open_slide(paths) as slide:
        level = slide.levels[0]
        level_bytes = level.size[0] * level.size[1] * 3
        tracemalloc.start()
        try:
            reader = slide.reader(level, level.mpp)
            pixels = reader.read(0, 0, level.size[1], level.size[0])
            del pixels
            held, _ = tracemalloc.get_traced_memory()
            reader.release()
            released, _ = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert held > 0.9 * level_bytes  # the reader's frames, for neighbouring tiles
    assert released < 0.05 * level_bytes


@pytest.mark.parametrize("target", [0.5, 0.92, 1.0, 1.3, 2.0, 3.7])
def test_reading_at_any_pixel_size_keeps_the_physical_scale(tmp_path: Path, target: float):
    paths = write_wsi(tmp_path, scene(), mpp=0.5, factors=(1, 2, 4), tile=64)
    with open_slide(paths) as slide:
        level = slide.choose_level(target)
        assert level.mpp <= target
        rows, cols = slide.grid_shape(target)
        pixels = slide.reader(level, target).read(0, 0, rows, cols)
    x, y, width, height = pink_box_um(pixels, target)
    tolerance = 0.02 * target  # the pink fraction is rounded to uint8
    assert x == pytest.approx(150, abs=tolerance) and y == pytest.approx(50, abs=tolerance)
    assert width == pytest.approx(100, abs=tolerance) and height == pytest.approx(60, abs=tolerance)


def test_a_lower_level_and_the_base_resampled_give_the_same_pixels(tmp_path: Path):
    image = np.random.default_rng(3).integers(0, 256, (256, 320, 3), dtype=np.uint8)
    paths = write_wsi(tmp_path, image, mpp=0.25, factors=(1, 2), tile=64)
    with open_slide(paths) as slide:
        from_base = slide.reader(slide.levels[0], 0.5).read(0, 0, 128, 160)
        from_level = slide.reader(slide.levels[1], 0.5).read(0, 0, 128, 160)
    np.testing.assert_array_equal(from_level, downsample(image, 2))
    assert np.abs(from_base.astype(int) - from_level).max() <= 1  # two roundings of one mean


def test_sparse_concatenated_and_full_series_read_the_same(tmp_path: Path):
    image = np.full((400, 600, 3), 255, np.uint8)  # blank frames: white, as scanners skip
    image[100:300, 200:500] = scene()[100:300, 200:500]
    full = write_wsi(tmp_path / "full", image, factors=(1, 2), tile=64)
    sparse = write_wsi(tmp_path / "sparse", image, factors=(1, 2), tile=64, drop_blank_frames=True)
    split = write_wsi(tmp_path / "concat", image, factors=(1, 2), tile=64, concatenation_frames=7)
    assert len(split) > 2 and len(dcmread(sparse[0]).PerFrameFunctionalGroupsSequence) < 60
    reads = []
    for paths in (full, sparse, split):
        with open_slide(paths) as slide:
            reads.append(slide.reader(slide.levels[0], 0.7).read(0, 0, 286, 429))
    np.testing.assert_array_equal(reads[0], reads[1])
    np.testing.assert_array_equal(reads[0], reads[2])


def test_jpeg_frames_decode_to_the_picture(tmp_path: Path):
    image = scene()
    paths = write_wsi(tmp_path, image, factors=(1, 2), tile=64, transfer="jpeg")
    with open_slide(paths) as slide:
        assert slide.base.transfer_syntax_uid == "1.2.840.10008.1.2.4.50"
        got = slide.reader(slide.levels[0], 0.5).read(0, 0, 400, 600)
    assert np.abs(got.astype(int) - image).mean() < 2


def test_several_focal_planes_read_the_middle_one(tmp_path: Path):
    base = scene()
    dark = np.full_like(base, 40)
    paths = write_wsi(
        tmp_path,
        base,
        factors=(1,),
        tile=64,
        focal_planes=(-1.0, 0.0, 1.0),
        plane_images={-1.0: base, 0.0: base, 1.0: dark},
    )
    with open_slide(paths) as slide:
        assert slide.focal_plane_um == 0.0
        got = slide.reader(slide.levels[0], 0.5).read(0, 0, 400, 600)
    np.testing.assert_array_equal(got, base)


def test_anisotropic_pixels_keep_each_axis_scale(tmp_path: Path):
    paths = write_wsi(tmp_path, scene(400, 600, 0.5), mpp=0.5, mpp_y=0.5, factors=(1,), tile=64)
    image = scene(400, 600, 0.5)[::2].copy()  # rows now 1 µm apart, columns 0.5 µm
    paths = write_wsi(tmp_path / "aniso", image, mpp=0.5, mpp_y=1.0, factors=(1,), tile=64)
    with open_slide(paths) as slide:
        assert (slide.base.mpp_x, slide.base.mpp_y) == (0.5, 1.0)
        assert slide.extent_um == (300.0, 200.0)
        pixels = slide.reader(slide.base, 1.0).read(0, 0, 200, 300)
    x, y, width, height = pink_box_um(pixels, 1.0)
    assert (x, y, width, height) == pytest.approx((150, 50, 100, 60), abs=0.02)


def test_base_only_series_serves_every_pixel_size(tmp_path: Path):
    image = scene()
    image[100:350, 100:500] = PINK  # 200 x 125 µm: above the dust limit of tissue detection
    paths = write_wsi(tmp_path, image, factors=(1,), tile=64)
    with open_slide(paths) as slide:
        assert len(slide.levels) == 1
        raster = slide.read_raster(4.0)
        assert raster.shape == (50, 75, 3)
        tissue = slide.tissue_mask(4.0).array
    assert tissue[15:42, 15:61].all() and not tissue[:10].any() and not tissue[:, 65:].any()


# -- what cannot be used -----------------------------------------------------------------


def test_no_files_or_missing_files(tmp_path: Path):
    with pytest.raises(SlideError, match="no files"):
        open_slide([])
    with pytest.raises(SlideError, match="missing"):
        open_slide([tmp_path / "absent.dcm"])


@pytest.mark.filterwarnings("ignore:End of file reached:UserWarning")
def test_files_that_are_not_dicom_or_are_truncated(tmp_path: Path):
    garbage = tmp_path / "garbage.dcm"
    garbage.write_bytes(b"\x00" * 128 + b"DICM" + b"\xff" * 300)
    with pytest.raises(SlideError):
        open_slide([garbage])
    paths = write_wsi(tmp_path / "ok", scene(), factors=(1,), tile=64, transfer="jpeg")
    data = paths[0].read_bytes()
    truncated = tmp_path / "truncated.dcm"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(SlideError):
        slide = open_slide([truncated])
        try:  # wsidicom may open lazily; then the missing frames fail on reading
            slide.reader(slide.base, 0.5).read(0, 0, 400, 600)
        finally:
            slide.close()


def test_a_series_without_wsi_images_is_refused(tmp_path: Path):
    paths = write_wsi(tmp_path, scene(), factors=(1,), tile=64)
    ds = dcmread(paths[0])
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"  # CT Image Storage
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.save_as(paths[0])
    with pytest.raises(
        SlideError, match=r"none of the 1 file\(s\) is a VL Whole Slide Microscopy Image"
    ):
        open_slide(paths)


def test_a_monochrome_slide_is_refused(tmp_path: Path):
    paths = write_wsi(tmp_path, scene(), factors=(1,), tile=64, samples_per_pixel=1)
    with pytest.raises(SlideError, match="colour"):
        open_slide(paths)


def test_absurd_dimensions_are_refused_before_any_allocation(tmp_path: Path):
    paths = write_wsi(tmp_path, scene(), factors=(1,), tile=64, drop_blank_frames=True)
    ds = dcmread(paths[0])
    ds.TotalPixelMatrixColumns = ds.TotalPixelMatrixRows = 4_000_000
    ds.ImagedVolumeWidth = ds.ImagedVolumeHeight = 4_000_000 * 0.5 / 1000
    ds.save_as(paths[0])
    with pytest.raises(SlideError, match=r"4000000 x 4000000 pixels in 64 x 64 frames"):
        open_slide(paths)


def test_huge_but_indexable_slides_refuse_huge_rasters(tmp_path: Path):
    paths = write_wsi(tmp_path, scene(), factors=(1,), tile=64, drop_blank_frames=True)
    ds = dcmread(paths[0])
    ds.TotalPixelMatrixColumns = ds.TotalPixelMatrixRows = 200_000
    ds.ImagedVolumeWidth = ds.ImagedVolumeHeight = 200_000 * 0.5 / 1000
    ds.save_as(paths[0])
    with open_slide(paths) as slide:
        assert slide.size == (200_000, 200_000)
        with pytest.raises(SlideError, match=f"more than the {MAX_RASTER_PIXELS}"):
            slide.grid_shape(0.5)
        assert slide.grid_shape(2.0) == (50_000, 50_000)

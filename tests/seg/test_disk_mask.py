"""A mask on disk (inference's DiskRaster) gives the very same SEG bytes as the same mask in
memory, and the writer and the overlay picture read it, or the SEG, a band at a time."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from unitumour_dicom.config import load_settings
from unitumour_dicom.seg import write_seg_pyramid
from unitumour_dicom.seg.overlay import (
    read_seg_mask,
    read_seg_picture,
    resample_nearest,
    seg_levels,
)
from unitumour_dicom.slide.mask import SlideMask
from unitumour_dicom.slide.raster import DiskRaster
from unitumour_dicom.store import FileStore

from .conftest import blob_mask
from .wsi_headers import make_wsi_headers

pytestmark = pytest.mark.unittest
WHEN = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


class WholeReadRefused(DiskRaster):
    def __array__(self, dtype=None, copy=None):  # type: ignore[no-untyped-def]
        raise AssertionError("the SEG writer read the whole mask")


def on_disk(array: np.ndarray, directory: Path) -> WholeReadRefused:
    raster = WholeReadRefused(array.shape, array.dtype, directory)
    raster[:] = array
    return raster


def write(root: Path, algorithm, src, mask, probability, **seg):  # type: ignore[no-untyped-def]
    store = FileStore(root / "store")
    pyramid = write_seg_pyramid(
        source_datasets=src,
        mask=mask,
        probability=probability,
        algorithm=algorithm,
        settings=load_settings(data_dir=root / "data", seg=seg).seg,
        uid_seed="job-disk",
        store=store,
        content_datetime=WHEN,
    )
    return store, pyramid


@pytest.mark.parametrize(
    ("segmentation_type", "compression"),
    [("BINARY", "none"), ("BINARY", "jpeg2000lossless"), ("FRACTIONAL", "rle")],
)
def test_a_mask_on_disk_writes_the_same_seg_bytes(
    algorithm, tmp_path: Path, segmentation_type: str, compression: str
) -> None:
    src = make_wsi_headers(700, 520, tile=128, levels=3, thumbnail=True, label=False)
    mask = blob_mask(260, 350, 1.0, seed=5)
    rng = np.random.default_rng(2)
    probability = (mask.array * rng.integers(128, 256, mask.shape)).astype(np.uint8)
    memory = (mask, SlideMask(probability, 1.0, max_value=255))
    disk = (
        SlideMask(on_disk(mask.array, tmp_path), 1.0),
        SlideMask(on_disk(probability, tmp_path), 1.0, max_value=255),
    )
    seg = {"segmentation_type": segmentation_type, "compression": compression}
    _, expected = write(tmp_path / "memory", algorithm, src, *memory, **seg)
    _, got = write(tmp_path / "disk", algorithm, src, *disk, **seg)
    assert [i.sha256 for i in got.instances] == [i.sha256 for i in expected.instances]
    assert len(got.instances) == 4


def test_the_picture_reads_the_seg_in_bands_and_equals_the_whole_level(
    algorithm, tmp_path: Path
) -> None:
    src = make_wsi_headers(700, 520, tile=128, levels=2, thumbnail=False, label=False)
    mask = blob_mask(260, 350, 1.0, seed=8)
    for seg_type in ("BINARY", "FRACTIONAL"):
        probability = SlideMask((mask.array * np.uint8(200)).astype(np.uint8), 1.0, max_value=255)
        store, pyramid = write(
            tmp_path / seg_type, algorithm, src, mask, probability, segmentation_type=seg_type
        )
        levels = seg_levels([store.abspath(i.path) for i in pyramid.instances])
        base = max(levels, key=lambda lv: lv.columns)
        whole = read_seg_mask(base)
        assert whole.any()
        for height, width in ((130, 175), (37, 64), (520, 700)):
            expected = resample_nearest(whole, height, width)
            # bands of one to a few rows: many reads, each only the rows the picture samples
            for band_pixels in (1, 3 * base.columns, 1 << 22):
                got = read_seg_picture(base, height, width, band_pixels=band_pixels)
                np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("max_pixels", [256, 600])
def test_the_slide_picture_read_in_bands_matches_the_thumbnail(phantom, max_pixels: int) -> None:
    from wsidicom import WsiDicom

    from unitumour_dicom.seg.overlay import read_slide_picture

    with WsiDicom.open(phantom.instance_paths) as wsi:
        thumbnail = np.asarray(wsi.read_thumbnail((max_pixels, max_pixels)).convert("RGB"))
        whole = read_slide_picture(wsi, max_pixels)  # a small level: wsidicom's own
        banded = read_slide_picture(wsi, max_pixels, band_pixels=5_000)  # a few rows a band
    np.testing.assert_array_equal(whole, thumbnail)
    assert banded.shape == thumbnail.shape and banded.dtype == np.uint8
    difference = np.abs(banded.astype(np.int16) - thumbnail)
    assert difference.mean() < 2.0 and np.percentile(difference, 99) < 40
    assert banded.std() > 10, "the picture shows the slide, not a flat colour"

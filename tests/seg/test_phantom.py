"""The SEG pyramid on a real phantom WSI (DICOM files written by unitumour_dicom.synthetic):
valid DICOM by dciodvfy, read back by highdicom equal to the mask at every level, aligned with
the ground truth to the pixel, and referencing the slide exactly as wsidicom opens it."""

from __future__ import annotations

from datetime import UTC, datetime

import highdicom as hd
import numpy as np
import pytest
from wsidicom import WsiDicom

from unitumour_dicom.config import load_settings
from unitumour_dicom.seg import source_levels, write_seg_pyramid
from unitumour_dicom.slide.mask import SlideMask
from unitumour_dicom.store import FileStore

from .conftest import read_headers
from .dciodvfy import dciodvfy_errors

pytestmark = [pytest.mark.integration, pytest.mark.slow]
WHEN = datetime(2026, 5, 6, 7, 8, 9, tzinfo=UTC)


def dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(bool), b.astype(bool)
    total = a.sum() + b.sum()
    return 1.0 if total == 0 else 2.0 * float((a & b).sum()) / float(total)


def _write(phantom, store, algorithm, tmp_path, mask, probability=None, **seg):  # type: ignore[no-untyped-def]
    settings = load_settings(data_dir=tmp_path / "data", seg=seg).seg
    return write_seg_pyramid(
        source_datasets=read_headers(phantom.instance_paths),
        mask=mask,
        probability=probability,
        algorithm=algorithm,
        settings=settings,
        uid_seed="phantom-job",
        store=store,
        content_datetime=WHEN,
    )


def test_pyramid_is_valid_dicom_and_equals_the_ground_truth(
    phantom, store, algorithm, tmp_path
) -> None:
    truth = phantom.tumour_mask(phantom.mpp)
    assert truth.array.any(), "the phantom has tumour"
    pyramid = _write(phantom, store, algorithm, tmp_path, truth)

    levels = source_levels(read_headers(phantom.instance_paths))
    assert len(pyramid.instances) == len(phantom.level_paths) == len(levels) == 3
    for level, info in zip(levels, pyramid.instances, strict=True):
        path = store.abspath(info.path)
        assert dciodvfy_errors(path) == [], f"level {level.index}"
        seg = hd.seg.segread(path)
        assert seg.SegmentationType == "BINARY"
        assert seg.StudyInstanceUID == phantom.study_uid
        assert seg.SeriesInstanceUID != phantom.series_uid
        assert seg.FrameOfReferenceUID == phantom.frame_of_reference_uid
        read_back = seg.get_total_pixel_matrix(combine_segments=True)
        assert read_back.shape == (level.rows, level.columns)
        spacing = level.column_spacing_um
        expected = truth.region(0, 0, level.rows, level.columns, spacing)
        assert np.array_equal(read_back.astype(bool), expected), f"level {level.index}"
        # Against the analytic ground truth rasterised at the level's own pixel size: exact at
        # the base level, decimation error only (edge pixels) below it.
        analytic = phantom.tumour_mask(spacing).array[: level.rows, : level.columns]
        score = dice(read_back, analytic)
        if level.index == 0:
            assert score == 1.0
        else:
            assert score > 0.97, f"level {level.index}: Dice {score:.4f}"


def test_mask_at_model_resolution_aligns_to_the_pixel(phantom, store, algorithm, tmp_path) -> None:
    """A mask at 1 um/px (the model's, no level's) lands where the tumour is: the SEG's base
    level agrees with the ground truth except along edges, and its centroid sits within a
    quarter pixel of the ground truth's, so there is no shift or scale error."""
    model_mask = phantom.tumour_mask(1.0)
    pyramid = _write(phantom, store, algorithm, tmp_path, model_mask)
    seg = hd.seg.segread(store.abspath(pyramid.instances[0].path))
    base = seg.get_total_pixel_matrix(combine_segments=True).astype(bool)
    truth = phantom.tumour_mask(phantom.mpp).array[: base.shape[0], : base.shape[1]]
    assert dice(base, truth) > 0.97
    centroid = np.array(np.nonzero(base)).mean(axis=1)
    truth_centroid = np.array(np.nonzero(truth)).mean(axis=1)
    assert np.abs(centroid - truth_centroid).max() < 0.25


def test_seg_references_the_slide_as_wsidicom_opens_it(phantom, store, algorithm, tmp_path) -> None:
    pyramid = _write(phantom, store, algorithm, tmp_path, phantom.tumour_mask(phantom.mpp))
    with WsiDicom.open(phantom.instance_paths) as wsi:
        assert pyramid.study_instance_uid == wsi.uids.study_instance
        assert pyramid.frame_of_reference_uid == wsi.uids.frame_of_reference
        assert len(wsi.levels) == len(pyramid.instances)
        for wsi_level, info in zip(wsi.levels, pyramid.instances, strict=True):
            seg = hd.seg.segread(store.abspath(info.path))
            level_uids = {str(ds.instance_uid) for ds in wsi_level.datasets}
            referenced = {str(i.ReferencedSOPInstanceUID) for i in seg.SourceImageSequence}
            assert referenced == level_uids
            assert info.source_sop_instance_uid in level_uids
            series = [str(s.SeriesInstanceUID) for s in seg.ReferencedSeriesSequence]
            assert series == [str(wsi.uids.series_instance)]
            assert (seg.TotalPixelMatrixColumns, seg.TotalPixelMatrixRows) == (
                wsi_level.size.width,
                wsi_level.size.height,
            )
            spacing = seg.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0].PixelSpacing
            assert float(spacing[1]) == pytest.approx(wsi_level.pixel_spacing.width)
            assert float(spacing[0]) == pytest.approx(wsi_level.pixel_spacing.height)

        # wsidicom's own datasets serve as the source headers just as well, byte for byte.
        other = FileStore(tmp_path / "other-store")
        settings = load_settings(data_dir=tmp_path / "data").seg
        again = write_seg_pyramid(
            source_datasets=[ds.as_dataset() for level in wsi.levels for ds in level.datasets],
            mask=phantom.tumour_mask(phantom.mpp),
            probability=None,
            algorithm=algorithm,
            settings=settings,
            uid_seed="phantom-job",
            store=other,
            content_datetime=WHEN,
        )
    assert [i.sha256 for i in again.instances] == [i.sha256 for i in pyramid.instances]


def test_fractional_probability_reads_back_quantised(phantom, store, algorithm, tmp_path) -> None:
    truth = phantom.tumour_mask(1.0)
    rng = np.random.default_rng(3)
    probability = SlideMask(
        np.clip(truth.array * 0.8 + rng.random(truth.shape) * 0.2, 0, 1).astype(np.float32), 1.0
    )
    pyramid = _write(
        phantom,
        store,
        algorithm,
        tmp_path,
        truth,
        probability,
        segmentation_type="FRACTIONAL",
        compression="rle",
    )
    levels = source_levels(read_headers(phantom.instance_paths))
    for level, info in zip(levels, pyramid.instances, strict=True):
        path = store.abspath(info.path)
        assert dciodvfy_errors(path) == []
        seg = hd.seg.segread(path)
        assert seg.SegmentationType == "FRACTIONAL"
        assert seg.SegmentationFractionalType == "PROBABILITY"
        stored = seg.get_total_pixel_matrix(combine_segments=False, rescale_fractional=False)
        stored = stored[..., 0]
        p = probability.region(0, 0, level.rows, level.columns, level.column_spacing_um)
        assert np.array_equal(stored, np.rint(p * 255).astype(np.uint8))


def test_fractional_from_uint8_probability_keeps_its_values(
    phantom, store, algorithm, tmp_path
) -> None:
    """The inference output (uint8 with max_value=255) is stored as probabilities, not 0/255."""
    truth = phantom.tumour_mask(1.0)
    rng = np.random.default_rng(4)
    raw = rng.integers(0, 256, truth.shape, dtype=np.uint8)
    probability = SlideMask(raw, 1.0, max_value=255)
    pyramid = _write(
        phantom,
        store,
        algorithm,
        tmp_path,
        truth,
        probability,
        segmentation_type="FRACTIONAL",
    )
    base = source_levels(read_headers(phantom.instance_paths))[0]
    seg = hd.seg.segread(store.abspath(pyramid.instances[0].path))
    stored = seg.get_total_pixel_matrix(combine_segments=False, rescale_fractional=False)[..., 0]
    expected = probability.region(0, 0, base.rows, base.columns, base.column_spacing_um)
    assert np.array_equal(stored, expected)
    assert len(np.unique(stored)) > 2

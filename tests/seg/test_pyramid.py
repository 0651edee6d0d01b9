"""write_seg_pyramid on in-memory source headers: every transfer syntax reads back equal at
every level, UIDs follow the job, retries are safe, and bad inputs are refused with reasons."""

from __future__ import annotations

import tracemalloc
from datetime import UTC, datetime
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest

from unitumour_dicom.config import load_settings
from unitumour_dicom.errors import ConfigError, SegmentationError
from unitumour_dicom.seg import (
    AlgorithmInfo,
    derived_frame_of_reference_uid,
    source_levels,
    write_seg_pyramid,
)
from unitumour_dicom.slide.mask import SlideMask
from unitumour_dicom.store import sha256_file

from .conftest import blob_mask
from .dciodvfy import dciodvfy_errors
from .wsi_headers import make_wsi_headers

pytestmark = pytest.mark.unittest
WHEN = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def write(store, algorithm, src, mask, tmp_path: Path, seed: str = "job-1", **seg):  # type: ignore[no-untyped-def]
    settings = load_settings(data_dir=tmp_path / "data", seg=seg).seg
    return write_seg_pyramid(
        source_datasets=src,
        mask=mask,
        probability=None,
        algorithm=algorithm,
        settings=settings,
        uid_seed=seed,
        store=store,
        content_datetime=WHEN,
    )


@pytest.mark.parametrize(
    ("segmentation_type", "compression"),
    [
        ("BINARY", "none"),
        ("BINARY", "explicit-vr-deflated"),
        ("BINARY", "jpeg2000lossless"),
        ("FRACTIONAL", "none"),
        ("FRACTIONAL", "rle"),
        ("FRACTIONAL", "jpegls-lossless"),
        ("FRACTIONAL", "explicit-vr-deflated"),
    ],
)
def test_every_transfer_syntax_reads_back_at_every_level(
    store, algorithm, tmp_path: Path, segmentation_type: str, compression: str
) -> None:
    src = make_wsi_headers(700, 520, tile=128, levels=3, thumbnail=True, label=True)
    mask = blob_mask(260, 350, 1.0, seed=11)  # the model's pixel size, not a level's
    pyramid = write(
        store,
        algorithm,
        src,
        mask,
        tmp_path,
        segmentation_type=segmentation_type,
        compression=compression,
    )
    levels = source_levels(src)
    assert len(pyramid.instances) == 4  # three levels and the thumbnail; no label
    for level, info in zip(levels, pyramid.instances, strict=True):
        path = store.abspath(info.path)
        assert info.path == (
            f"results/{src[0].StudyInstanceUID}/{pyramid.series_instance_uid}/"
            f"{info.sop_instance_uid}.dcm"
        )
        assert sha256_file(path) == info.sha256 and path.stat().st_size == info.size_bytes
        seg = hd.seg.segread(path)
        assert seg.file_meta.TransferSyntaxUID == info.transfer_syntax_uid
        assert int(seg.NumberOfFrames) == level.number_of_frames == info.number_of_frames
        got = seg.get_total_pixel_matrix(combine_segments=False, rescale_fractional=False)
        expected = mask.region(0, 0, level.rows, level.columns, level.column_spacing_um)
        scale = 1 if segmentation_type == "BINARY" else 255
        assert np.array_equal(got[..., 0], expected.astype(np.uint8) * scale)
    assert dciodvfy_errors(store.abspath(pyramid.instances[0].path)) == []


def test_uids_follow_the_seed_and_retries_are_safe(
    store, algorithm, tmp_path: Path, caplog
) -> None:
    src = make_wsi_headers(600, 400, tile=128, levels=2)
    mask = blob_mask(400, 600, 0.5)
    first = write(store, algorithm, src, mask, tmp_path)
    again = write(store, algorithm, src, mask, tmp_path)  # a retried job: same files
    assert again == first
    other = write(store, algorithm, src, mask, tmp_path, seed="job-2")
    assert other.series_instance_uid != first.series_instance_uid
    assert {i.sop_instance_uid for i in other.instances}.isdisjoint(
        {i.sop_instance_uid for i in first.instances}
    )
    # A retry whose mask differs (the earlier try was never recorded) replaces the files.
    changed = write(store, algorithm, src, SlideMask(~mask.array, 0.5), tmp_path)
    assert changed.series_instance_uid == first.series_instance_uid
    assert changed.instances[0].sha256 != first.instances[0].sha256
    assert sha256_file(store.abspath(changed.instances[0].path)) == changed.instances[0].sha256
    assert "differs: replacing it" in caplog.text
    assert store.spool_leftovers() == []


def test_missing_frame_of_reference_is_derived_and_recorded(
    store, algorithm, tmp_path: Path, caplog
) -> None:
    src = make_wsi_headers(600, 400, tile=128, levels=2, frame_of_reference=False)
    pyramid = write(store, algorithm, src, blob_mask(400, 600, 0.5), tmp_path)
    assert pyramid.frame_of_reference_derived
    expected = derived_frame_of_reference_uid(str(src[0].SeriesInstanceUID))
    assert pyramid.frame_of_reference_uid == expected
    for info in pyramid.instances:
        ds = pydicom.dcmread(store.abspath(info.path), stop_before_pixels=True)
        assert ds.FrameOfReferenceUID == expected
    assert dciodvfy_errors(store.abspath(pyramid.instances[0].path)) == []
    assert "has no Frame of Reference UID" in caplog.text
    # every SEG of that slide shares it, whatever the job
    again = write(store, algorithm, src, blob_mask(400, 600, 0.5), tmp_path, seed="job-9")
    assert again.frame_of_reference_uid == expected


def test_header_says_what_made_it(store, algorithm, tmp_path: Path) -> None:
    src = make_wsi_headers(600, 400, tile=128, levels=1)
    pyramid = write(store, algorithm, src, blob_mask(400, 600, 0.5), tmp_path)
    ds = pydicom.dcmread(store.abspath(pyramid.instances[0].path), stop_before_pixels=True)
    assert ds.Modality == "SEG" and ds.SegmentationType == "BINARY"
    assert ds.SeriesDescription == "Tumour segmentation, UniTumour-UNet 1.2.0 (AI)"
    assert ds.Manufacturer == "UniTumour DICOM"
    assert str(ds.ContentCreatorName) == "UniTumour^AI"
    assert ds.SoftwareVersions[0].startswith("unitumour-dicom ")
    assert (ds.PatientID, ds.AccessionNumber, ds.ContainerIdentifier) == (
        "SEG-TEST-1",
        "ACC-SEG-1",
        "SLIDE-0001",
    )
    assert ds.SpecimenDescriptionSequence[0].SpecimenIdentifier == "SPEC-1"
    segment = ds.SegmentSequence[0]
    assert segment.SegmentLabel == "Tumour"
    assert segment.SegmentedPropertyCategoryCodeSequence[0].CodeValue == "49755003"
    assert segment.SegmentedPropertyTypeCodeSequence[0].CodeValue == "108369006"
    assert segment.SegmentedPropertyTypeCodeSequence[0].CodingSchemeDesignator == "SCT"
    algo = segment.SegmentationAlgorithmIdentificationSequence[0]
    assert (algo.AlgorithmName, algo.AlgorithmVersion) == ("UniTumour-UNet", "1.2.0")
    assert algo.AlgorithmFamilyCodeSequence[0].CodeMeaning == "Artificial Intelligence"
    assert "weights_sha256" in algo.AlgorithmParameters
    assert ds.DimensionOrganizationType == "TILED_FULL"
    assert ds.ContentDate == "20260102"


def test_memory_stays_bounded_by_a_row_of_tiles(store, algorithm, tmp_path: Path) -> None:
    """An 8192 x 8192 base level (64 MB as bytes, 8 MB as bits) is written without ever
    holding the level: peak Python/numpy allocation stays near one row of tiles."""
    src = make_wsi_headers(8192, 8192, tile=256, levels=1, mpp=0.25)
    mask = blob_mask(2048, 2048, 1.0, seed=4)
    tracemalloc.start()
    try:
        pyramid = write(store, algorithm, src, mask, tmp_path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert pyramid.instances[0].size_bytes > 8192 * 8192 // 8
    assert peak < 12 * 2**20, f"peak {peak / 2**20:.1f} MiB"


def test_refusals(store, algorithm, tmp_path: Path) -> None:
    src = make_wsi_headers(600, 400, tile=128, levels=2)
    with pytest.raises(SegmentationError, match="wrong pixel size or wrong slide"):
        write(store, algorithm, src, SlideMask(np.zeros((400, 600), bool), 1.0), tmp_path)
    with pytest.raises(SegmentationError, match="dtype"):
        write(store, algorithm, src, SlideMask(np.zeros((400, 600), "U1"), 0.5), tmp_path)
    with pytest.raises(ConfigError, match="cannot carry BINARY"):
        write(store, algorithm, src, blob_mask(400, 600, 0.5), tmp_path, compression="rle")
    with pytest.raises(SegmentationError, match="uid_seed"):
        write(store, algorithm, src, blob_mask(400, 600, 0.5), tmp_path, seed=" ")
    with pytest.raises(SegmentationError, match="timezone-aware"):
        write_seg_pyramid(
            source_datasets=src,
            mask=blob_mask(400, 600, 0.5),
            probability=None,
            algorithm=algorithm,
            settings=load_settings(data_dir=tmp_path).seg,
            uid_seed="x",
            store=store,
            content_datetime=datetime(2026, 1, 1),
        )
    hostile = make_wsi_headers(600, 400, tile=128, levels=1)
    with pytest.warns(UserWarning, match="Invalid value for VR UI"):
        hostile[0].StudyInstanceUID = "1.2.3/../../../etc"
    with pytest.raises(SegmentationError, match="is not a valid DICOM UID"):
        write(store, algorithm, hostile, blob_mask(400, 600, 0.5), tmp_path)
    assert not list((store.root / "results").rglob("*"))
    assert store.spool_leftovers() == []


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "", "version": "1"}, "name must be a non-empty"),
        ({"name": "x" * 65, "version": "1"}, "at most 64"),
        ({"name": "a\\b", "version": "1"}, "backslash"),
        ({"name": "a", "version": "1", "family": "Magic"}, "is not one of"),
        ({"name": "a", "version": "1", "parameters": {"k": 1}}, "str to str"),
    ],
)
def test_algorithm_info_checks_its_values(kwargs, message: str) -> None:
    with pytest.raises(SegmentationError, match=message):
        AlgorithmInfo(**kwargs)

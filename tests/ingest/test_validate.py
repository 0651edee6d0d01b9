"""Header reading and validation on real phantom files and on broken copies of them."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydicom import Dataset, dcmread
from pydicom.uid import CTImageStorage, generate_uid

from unitumour_dicom.errors import InvalidInstanceError
from unitumour_dicom.ingest import InstanceLimits, StoreStatus, validate_instance
from unitumour_dicom.ingest.contexts import WSI_SOP_CLASS
from unitumour_dicom.ingest.header import read_instance_header
from unitumour_dicom.ingest.validate import pixel_spacing_mm

from .helpers import dataset_offset, native_instance, rewrite

pytestmark = [pytest.mark.unittest]

LIMITS = InstanceLimits(
    max_instance_bytes=1 << 30,
    max_total_pixels=200_000 * 200_000,
    max_frames=2_000_000,
    max_frame_pixels=8192 * 8192,
)
ALLOWED = {str(WSI_SOP_CLASS)}


def check(
    path: Path,
    *,
    limits: InstanceLimits = LIMITS,
    command_uid: str | None = None,
    command_class: str | None = None,
    allowed: set[str] = ALLOWED,
):
    header = read_instance_header(
        path, scratch_dir=path.parent, max_inflated_bytes=limits.max_instance_bytes
    )
    ds = header.dataset
    return validate_instance(
        header,
        command_sop_class_uid=command_class or str(ds.get("SOPClassUID", WSI_SOP_CLASS)),
        command_sop_instance_uid=command_uid or str(ds.get("SOPInstanceUID", "1.2.3")),
        allowed_sop_classes=allowed,
        limits=limits,
    )


def refused(path: Path, **kwargs) -> InvalidInstanceError:
    with pytest.raises(InvalidInstanceError) as info:
        check(path, **kwargs)
    return info.value


def test_every_phantom_instance_is_valid_and_summarised(phantom):
    flavors = []
    for path in phantom.instance_paths:
        summary = check(path)
        ds = dcmread(path, stop_before_pixels=True)
        assert summary.sop_instance_uid == ds.SOPInstanceUID
        assert summary.series_instance_uid == phantom.series_uid
        assert summary.total_pixel_matrix_columns == ds.TotalPixelMatrixColumns
        assert summary.number_of_frames == ds.NumberOfFrames
        assert summary.is_wsi
        flavors.append(summary.image_flavor)
    assert sorted(flavors) == ["LABEL", "OVERVIEW", "VOLUME", "VOLUME", "VOLUME"]


def test_header_measures_encapsulated_pixel_data_without_decoding(phantom):
    path = phantom.level_paths[0][0]
    header = read_instance_header(path, scratch_dir=path.parent, max_inflated_bytes=1 << 30)
    assert header.pixel_data is not None and header.pixel_data.encapsulated
    assert header.pixel_data.fragments == dcmread(path, stop_before_pixels=True).NumberOfFrames
    assert "PixelData" not in header.dataset


@pytest.mark.parametrize("keep", [0.5, 0.9, 0.999])
def test_truncated_in_pixel_data_cannot_be_understood(phantom, tmp_path, keep):
    source = phantom.level_paths[0][0].read_bytes()
    cut = tmp_path / "cut.dcm"
    cut.write_bytes(source[: int(len(source) * keep)])
    error = refused(cut)
    assert error.status == StoreStatus.CANNOT_UNDERSTAND
    assert "truncated" in str(error)


def test_truncated_in_the_header_is_refused(phantom, tmp_path):
    source = phantom.level_paths[0][0]
    cut = tmp_path / "cut.dcm"
    cut.write_bytes(source.read_bytes()[: dataset_offset(source) + 300])
    error = refused(cut)
    assert error.status in (
        StoreStatus.CANNOT_UNDERSTAND,
        StoreStatus.DATASET_DOES_NOT_MATCH_SOP_CLASS,
    )


def test_garbage_is_not_understood(tmp_path):
    junk = tmp_path / "junk.dcm"
    junk.write_bytes(b"\x00" * 128 + b"DICM" + b"\xff" * 64)
    assert refused(junk).status == StoreStatus.CANNOT_UNDERSTAND


@pytest.mark.parametrize(
    ("keyword", "words"),
    [
        ("TotalPixelMatrixColumns", "TotalPixelMatrixColumns is missing"),
        ("NumberOfFrames", "NumberOfFrames is missing"),
        ("ImageType", "ImageType is missing"),
        ("StudyInstanceUID", "StudyInstanceUID is missing"),
        ("PhotometricInterpretation", "PhotometricInterpretation is missing"),
    ],
)
def test_missing_required_attribute_does_not_match_the_sop_class(phantom, tmp_path, keyword, words):
    bad = rewrite(phantom.level_paths[0][0], tmp_path / "bad.dcm", lambda ds: delattr(ds, keyword))
    error = refused(bad)
    assert error.status == StoreStatus.DATASET_DOES_NOT_MATCH_SOP_CLASS
    assert words in str(error)


def test_no_pixel_spacing_anywhere_is_refused(phantom, tmp_path):
    def strip(ds):
        del ds.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence
        del ds.ImagedVolumeWidth

    bad = rewrite(phantom.level_paths[0][0], tmp_path / "bad.dcm", strip)
    error = refused(bad)
    assert error.status == StoreStatus.DATASET_DOES_NOT_MATCH_SOP_CLASS
    assert "pixel spacing" in str(error)


def test_pixel_spacing_falls_back_to_the_imaged_volume(phantom, tmp_path):
    def strip(ds):
        del ds.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence

    path = rewrite(phantom.level_paths[0][0], tmp_path / "ok.dcm", strip)
    check(path)
    ds = dcmread(path, stop_before_pixels=True)
    row, column = pixel_spacing_mm(ds)
    assert column == pytest.approx(ds.ImagedVolumeWidth / ds.TotalPixelMatrixColumns)
    assert row == pytest.approx(0.0005, rel=1e-3)


def test_optional_attributes_may_be_missing(phantoms):
    slide = phantoms(omit_optional=True, label=False, overview=False)
    for path in slide.instance_paths:
        summary = check(path)
        assert summary.frame_of_reference_uid is None


def test_tiled_sparse_and_concatenations_are_valid(phantoms):
    for slide in (
        phantoms(dimension_organization="TILED_SPARSE"),
        phantoms(concatenation_frames=4),
    ):
        for path in slide.instance_paths:
            check(path)


def test_sparse_frames_without_enough_positions_are_refused(phantoms, tmp_path):
    source = phantoms(dimension_organization="TILED_SPARSE").level_paths[0][0]
    bad = rewrite(
        source, tmp_path / "bad.dcm", lambda ds: ds.PerFrameFunctionalGroupsSequence.pop()
    )
    error = refused(bad)
    assert error.status == StoreStatus.DATASET_DOES_NOT_MATCH_SOP_CLASS
    assert "PerFrameFunctionalGroupsSequence" in str(error)


def test_more_frames_than_fragments_cannot_be_understood(phantom, tmp_path):
    def one_frame_more(ds):
        ds.NumberOfFrames += 1
        ds.TotalPixelMatrixFocalPlanes = 2  # so that the frame count itself is plausible

    bad = rewrite(phantom.level_paths[0][0], tmp_path / "bad.dcm", one_frame_more)
    error = refused(bad)
    assert error.status == StoreStatus.CANNOT_UNDERSTAND
    assert "fragments" in str(error)


def test_more_frames_than_a_tiled_full_matrix_holds_is_refused(phantom, tmp_path):
    bad = rewrite(
        phantom.level_paths[0][0],
        tmp_path / "bad.dcm",
        lambda ds: setattr(ds, "NumberOfFrames", ds.NumberOfFrames + 1),
    )
    error = refused(bad)
    assert error.status == StoreStatus.DATASET_DOES_NOT_MATCH_SOP_CLASS
    assert "cannot tile" in str(error)


def test_native_pixel_data_of_the_wrong_length_is_refused(phantom, tmp_path):
    good = native_instance(phantom.level_paths[0][0], tmp_path / "native.dcm", tiles=2, tile=64)
    check(good)
    bad = rewrite(
        good, tmp_path / "short.dcm", lambda ds: setattr(ds, "PixelData", ds.PixelData[:-6])
    )
    error = refused(bad)
    assert error.status == StoreStatus.CANNOT_UNDERSTAND
    assert "native Pixel Data" in str(error)


@pytest.mark.parametrize(
    ("value", "status"),
    [
        ("1.2.3.04", StoreStatus.CANNOT_UNDERSTAND),  # leading zero
        ("1.2." + "9" * 70, StoreStatus.CANNOT_UNDERSTAND),  # longer than 64
        ("1.2.3/../../../etc", StoreStatus.CANNOT_UNDERSTAND),  # a path
    ],
)
def test_hostile_uids_are_refused_before_any_path_is_built(phantom, tmp_path, value, status):
    bad = rewrite(
        phantom.level_paths[1][0],
        tmp_path / "bad.dcm",
        lambda ds: setattr(ds, "SeriesInstanceUID", value),
    )
    error = refused(bad)
    assert error.status == status
    assert "SeriesInstanceUID" in str(error)


def test_command_and_data_set_must_agree(phantom):
    path = phantom.level_paths[1][0]
    assert refused(path, command_uid="1.2.3.4").status == StoreStatus.CANNOT_UNDERSTAND
    error = refused(path, command_class=CTImageStorage, allowed={str(CTImageStorage), *ALLOWED})
    assert error.status == StoreStatus.DATASET_DOES_NOT_MATCH_SOP_CLASS


def test_a_data_set_of_another_class_is_refused(phantom, tmp_path):
    bad = rewrite(
        phantom.level_paths[1][0],
        tmp_path / "ct.dcm",
        lambda ds: setattr(ds, "SOPClassUID", CTImageStorage),
    )
    error = refused(bad, command_class=str(WSI_SOP_CLASS))
    assert error.status == StoreStatus.DATASET_DOES_NOT_MATCH_SOP_CLASS
    assert refused(bad, command_class=CTImageStorage).status == StoreStatus.SOP_CLASS_NOT_SUPPORTED


def _huge_columns_few_rows(ds: Dataset) -> None:
    ds.TotalPixelMatrixColumns = 4294967295  # the UL maximum
    ds.TotalPixelMatrixRows = 9


def _frame_columns_as_ul(ds: Dataset) -> None:
    # Columns is US; a hostile writer encodes it as UL to get past 65535
    del ds.Columns
    ds.add_new(0x00280011, "UL", 4294967295)


@pytest.mark.parametrize(
    ("change", "limit", "words"),
    [
        (
            lambda ds: setattr(ds, "TotalPixelMatrixColumns", 4_000_000_000),
            {},
            "TotalPixelMatrixColumns 4000000000 exceeds",
        ),
        # one absurd dimension whose product with the other stays under max_total_pixels
        (_huge_columns_few_rows, {}, "TotalPixelMatrixColumns 4294967295 exceeds"),
        (_frame_columns_as_ul, {}, "Columns 4294967295 exceeds"),
        (lambda ds: setattr(ds, "NumberOfOpticalPaths", 100_000), {}, "NumberOfOpticalPaths"),
        (
            lambda ds: setattr(ds, "TotalPixelMatrixFocalPlanes", 100_000),
            {},
            "TotalPixelMatrixFocalPlanes",
        ),
        (lambda ds: None, {"max_matrix_dimension": 512}, "TotalPixelMatrixColumns 1024"),
        (lambda ds: None, {"max_frame_dimension": 128}, "Rows 256 exceeds"),
        (lambda ds: None, {"max_total_pixels": 1024 * 700}, "total pixel matrix"),
        (lambda ds: None, {"max_frames": 4}, "NumberOfFrames 12 exceeds the limit of 4"),
        (lambda ds: None, {"max_frame_pixels": 128 * 128}, "frames of 256x256"),
    ],
)
def test_sizes_over_the_limits_are_out_of_resources(phantom, tmp_path, change, limit, words):
    bad = rewrite(phantom.level_paths[0][0], tmp_path / "big.dcm", change)
    limits = InstanceLimits(**{**LIMITS.__dict__, **limit})
    error = refused(bad, limits=limits)
    assert error.status == StoreStatus.OUT_OF_RESOURCES
    assert words in str(error)


def _deflated(tmp_path: Path, template: Path, payload_bytes: int) -> Path:
    """A deflated copy of ``template`` whose data set inflates to about ``payload_bytes``."""
    ds = dcmread(template, stop_before_pixels=True)
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.1.99"
    ds.add_new(0x00091010, "OB", b"\x00" * payload_bytes)  # private padding: compresses ~1000:1
    out = tmp_path / "deflated.dcm"
    ds.save_as(out, enforce_file_format=True)
    return out


def test_deflated_data_sets_are_read_by_streaming_inflate(phantom, tmp_path):
    path = _deflated(tmp_path, phantom.level_paths[1][0], 4096)
    header = read_instance_header(path, scratch_dir=tmp_path, max_inflated_bytes=1 << 20)
    assert header.dataset.SOPInstanceUID == dcmread(path).SOPInstanceUID
    assert header.transfer_syntax_uid == "1.2.840.10008.1.2.1.99"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["deflated.dcm"]  # scratch removed


def test_a_deflate_bomb_is_stopped_at_the_limit(phantom, tmp_path):
    path = _deflated(tmp_path, phantom.level_paths[1][0], 50_000_000)
    assert path.stat().st_size < 1_000_000
    with pytest.raises(InvalidInstanceError) as info:
        read_instance_header(path, scratch_dir=tmp_path, max_inflated_bytes=5_000_000)
    assert info.value.status == StoreStatus.OUT_OF_RESOURCES
    assert sorted(p.name for p in tmp_path.iterdir()) == ["deflated.dcm"]


def test_a_corrupt_deflate_stream_cannot_be_understood(phantom, tmp_path):
    path = _deflated(tmp_path, phantom.level_paths[1][0], 4096)
    data = bytearray(path.read_bytes())
    start = dataset_offset(path)
    data[start + 10 : start + 40] = b"\xff" * 30
    path.write_bytes(bytes(data))
    with pytest.raises(InvalidInstanceError) as info:
        read_instance_header(path, scratch_dir=tmp_path, max_inflated_bytes=1 << 20)
    assert info.value.status == StoreStatus.CANNOT_UNDERSTAND


def test_padding_after_the_deflate_stream_is_ignored(phantom, tmp_path):
    path = _deflated(tmp_path, phantom.level_paths[1][0], 4096)
    path.write_bytes(path.read_bytes() + b"\x00\x00")  # writers pad the stream to even length
    header = read_instance_header(path, scratch_dir=tmp_path, max_inflated_bytes=1 << 20)
    assert header.dataset.SOPInstanceUID == dcmread(path).SOPInstanceUID

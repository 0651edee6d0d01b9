"""Grouping the source headers into pyramid levels, and refusing what is not a slide."""

from __future__ import annotations

import copy

import pytest
from pydicom.uid import generate_uid

from unitumour_dicom.errors import SegmentationError
from unitumour_dicom.seg import source_levels

from .wsi_headers import make_wsi_headers

pytestmark = pytest.mark.unittest


def test_levels_base_first_with_thumbnail_and_without_label() -> None:
    src = make_wsi_headers(1000, 700, levels=3, thumbnail=True, label=True)
    levels = source_levels(list(reversed(src)))
    assert [(lv.rows, lv.columns) for lv in levels] == [
        (700, 1000),
        (350, 500),
        (175, 250),
        (88, 125),
    ]
    assert [lv.column_spacing_um for lv in levels] == [0.5, 1.0, 2.0, 4.0]
    assert levels[-1].number_of_frames == 1  # the thumbnail: one frame
    assert levels[0].number_of_frames == 3 * 4


def test_concatenation_parts_form_one_level_and_are_referenced() -> None:
    src = make_wsi_headers(600, 400, levels=2)
    part2 = copy.deepcopy(src[0])
    part2.SOPInstanceUID = generate_uid()
    src[0].InConcatenationNumber = 1
    part2.InConcatenationNumber = 2
    levels = source_levels([part2, *src])
    assert levels[0].dataset is src[0]
    assert [str(d.SOPInstanceUID) for d in levels[0].further] == [str(part2.SOPInstanceUID)]


def test_shifted_level_origin_is_placed_on_base_axes() -> None:
    src = make_wsi_headers(600, 400, levels=2, origin_shift_um=(3.0, -2.0))
    levels = source_levels(src)
    assert levels[1].column_offset_um == pytest.approx(3.0)
    assert levels[1].row_offset_um == pytest.approx(-2.0)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda ds: setattr(ds, "SOPClassUID", "1.2.840.10008.5.1.4.1.1.2"), "not VL Whole Slide"),
        (lambda ds: setattr(ds, "PixelData", b"\0\0"), "carries pixel data"),
        (lambda ds: delattr(ds, "TotalPixelMatrixRows"), "lacks TotalPixelMatrixRows"),
        (lambda ds: setattr(ds, "TotalPixelMatrixColumns", 0), "lacks TotalPixelMatrixColumns"),
        (lambda ds: delattr(ds, "StudyInstanceUID"), "lacks StudyInstanceUID"),
        (lambda ds: setattr(ds, "FrameOfReferenceUID", generate_uid()), "Frame of Reference"),
        (lambda ds: setattr(ds, "ImageOrientationSlide", [1, 0, 0, 0, 1, 0]), "not oriented"),
        (lambda ds: setattr(ds, "Rows", 128), "different tile sizes"),
    ],
)
def test_refuses_sources_no_seg_can_be_made_from(change, message: str) -> None:
    src = make_wsi_headers(600, 400, levels=2)
    if message == "different tile sizes":
        other = copy.deepcopy(src[1])
        other.SOPInstanceUID = generate_uid()
        change(other)
        src.append(other)
    else:
        change(src[1])
    with pytest.raises(SegmentationError, match=message):
        source_levels(src)


def test_refuses_empty_input_and_label_only() -> None:
    with pytest.raises(SegmentationError, match="no source datasets"):
        source_levels([])
    label = make_wsi_headers(600, 400, levels=1, label=True)[-1:]
    with pytest.raises(SegmentationError, match="no VOLUME or THUMBNAIL"):
        source_levels(label)


def test_spacing_from_imaged_volume_when_pixel_measures_are_missing() -> None:
    src = make_wsi_headers(600, 400, levels=1, mpp=0.25)
    del src[0].SharedFunctionalGroupsSequence
    assert source_levels(src)[0].column_spacing_um == pytest.approx(0.25)
    del src[0].ImagedVolumeWidth
    with pytest.raises(SegmentationError, match="no pixel spacing"):
        source_levels(src)

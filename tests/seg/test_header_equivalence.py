"""The streamed SEG equals what highdicom's own whole-matrix path writes for the same mask:
every element of the header (apart from creation times and one random UID) and the pixel data
byte for byte. This is what lets the writer build headers on a one-tile stand-in."""

from __future__ import annotations

from datetime import UTC, datetime
from io import BytesIO
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
from pydicom.encaps import generate_frames

from unitumour_dicom.config import load_settings
from unitumour_dicom.seg import source_levels, write_seg_pyramid
from unitumour_dicom.seg.header import segmentation_arguments
from unitumour_dicom.seg.pyramid import make_header_context
from unitumour_dicom.seg.sampling import to_binary
from unitumour_dicom.slide.mask import SlideMask

from .conftest import blob_mask
from .wsi_headers import make_wsi_headers

pytestmark = pytest.mark.unittest

#: Elements that legitimately differ: times of creation, the highdicom contribution time, the
#: Dimension Organization UID (highdicom draws a random one for TILED_FULL; ours derives from
#: the job), and the two we add (PatientOrientation, TimezoneOffsetFromUTC).
DIFFERENT = {
    "InstanceCreationDate",
    "InstanceCreationTime",
    "ContributingEquipmentSequence",
    "DimensionOrganizationSequence",
    "PatientOrientation",
    "TimezoneOffsetFromUTC",
    "PixelData",
}
WHEN = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)


def _roundtrip(ds: pydicom.Dataset) -> pydicom.Dataset:
    buf = BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return pydicom.dcmread(BytesIO(buf.getvalue()))


@pytest.mark.parametrize(
    ("segmentation_type", "compression"),
    [
        ("BINARY", "none"),
        ("FRACTIONAL", "none"),
        ("FRACTIONAL", "rle"),
        ("BINARY", "jpeg2000lossless"),
    ],
)
def test_streamed_seg_equals_highdicom_whole_matrix(
    tmp_path: Path, store, algorithm, segmentation_type: str, compression: str
) -> None:
    # Tiles of 100 x 120 pixels: frames are not whole bytes of bits, and edge tiles are padded.
    src = make_wsi_headers(610, 430, tile=(100, 120), levels=2, mpp=0.5)
    mask = blob_mask(430, 610, 0.5)
    fractional = segmentation_type == "FRACTIONAL"
    # A probability map at another pixel size than the mask and the slide.
    yy, xx = np.mgrid[0:215, 0:305]
    probability = SlideMask(((np.sin(yy / 9.0) * np.cos(xx / 13.0)) ** 2).astype(np.float32), 1.0)
    settings = load_settings(
        data_dir=tmp_path,
        seg={"segmentation_type": segmentation_type, "compression": compression},
    ).seg
    pyramid = write_seg_pyramid(
        source_datasets=src,
        mask=mask,
        probability=probability,
        algorithm=algorithm,
        settings=settings,
        uid_seed="job-equivalence",
        store=store,
        content_datetime=WHEN,
    )
    for level, info in zip(source_levels(src), pyramid.instances, strict=True):
        ctx = make_header_context(
            settings=settings,
            algorithm=algorithm,
            uid_seed="job-equivalence",
            frame_of_reference_uid=str(src[0].FrameOfReferenceUID),
            content_datetime=WHEN,
        )
        values = probability if fractional else mask
        expected = values.region(0, 0, level.rows, level.columns, level.column_spacing_um)
        reference = _roundtrip(
            hd.seg.Segmentation(
                source_images=[level.dataset],
                pixel_array=expected if fractional else to_binary(expected),
                **segmentation_arguments(level, ctx),
            )
        )
        ours = pydicom.dcmread(store.abspath(info.path))

        keywords = {e.keyword for e in reference} | {e.keyword for e in ours}
        for kw in sorted(keywords - DIFFERENT):
            assert kw in ours, f"level {level.index}: {kw} missing from the streamed SEG"
            assert kw in reference, f"level {level.index}: {kw} not in highdicom's SEG"
            assert ours[kw] == reference[kw], f"level {level.index}: {kw} differs"
        ours_eq = list(ours.ContributingEquipmentSequence)
        ref_eq = list(reference.ContributingEquipmentSequence)
        assert len(ours_eq) == len(ref_eq)
        for a, b in zip(ours_eq, ref_eq, strict=True):
            a, b = pydicom.Dataset(a), pydicom.Dataset(b)
            a.pop("ContributionDateTime", None)
            b.pop("ContributionDateTime", None)
            assert a == b

        assert ours.file_meta.TransferSyntaxUID == reference.file_meta.TransferSyntaxUID
        if ours.file_meta.TransferSyntaxUID.is_encapsulated:
            n = int(ours.NumberOfFrames)
            assert list(generate_frames(ours.PixelData, number_of_frames=n)) == list(
                generate_frames(reference.PixelData, number_of_frames=n)
            )
        else:
            assert ours.PixelData == reference.PixelData
        assert np.array_equal(ours.pixel_array, reference.pixel_array)

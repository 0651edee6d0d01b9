"""Headers of a VL Whole Slide Microscopy pyramid, made in memory: for the SEG tests that need
a source of a given shape (odd sizes, no frame of reference, shifted levels, concatenations)
that the phantom generator does not make. Headers only, as the SEG writer receives them."""

from __future__ import annotations

import math

from highdicom import SpecimenDescription
from pydicom import Dataset
from pydicom.uid import generate_uid

VL_WSI = "1.2.840.10008.5.1.4.1.1.77.1.6"


def make_wsi_headers(
    width: int,
    height: int,
    *,
    tile: int | tuple[int, int] = 256,
    levels: int = 3,
    mpp: float = 0.5,
    frame_of_reference: bool = True,
    thumbnail: bool = False,
    label: bool = False,
    origin_shift_um: tuple[float, float] = (0.0, 0.0),
    study_uid: str | None = None,
) -> list[Dataset]:
    """Base level ``width`` x ``height`` at ``mpp``, then levels 2x apart (ceil of the size).

    ``origin_shift_um`` shifts every level after the base by (across, down) micrometres on
    the slide, as some converters do.
    """
    tile_rows, tile_cols = (tile, tile) if isinstance(tile, int) else tile
    study = study_uid or generate_uid()
    series = generate_uid()
    frame = generate_uid()
    out = []
    for index in range(levels):
        factor = 2**index
        out.append(
            _level(
                math.ceil(width / factor),
                math.ceil(height / factor),
                tile_rows,
                tile_cols,
                mpp * factor,
                index,
                study,
                series,
                frame if frame_of_reference else None,
                (0.0, 0.0) if index == 0 else origin_shift_um,
            )
        )
    if thumbnail:
        factor = 2**levels
        thumb = _level(
            math.ceil(width / factor),
            math.ceil(height / factor),
            math.ceil(height / factor),
            math.ceil(width / factor),
            mpp * factor,
            levels,
            study,
            series,
            frame if frame_of_reference else None,
            (0.0, 0.0),
        )
        thumb.ImageType = ["DERIVED", "PRIMARY", "THUMBNAIL", "RESAMPLED"]
        out.append(thumb)
    if label:
        lab = _level(400, 300, 300, 400, 50.0, 99, study, series, None, (0.0, 0.0))
        lab.ImageType = ["ORIGINAL", "PRIMARY", "LABEL", "NONE"]
        out.append(lab)
    return out


def _level(
    columns: int,
    rows: int,
    tile_rows: int,
    tile_cols: int,
    mpp: float,
    index: int,
    study: str,
    series: str,
    frame: str | None,
    shift_um: tuple[float, float],
) -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = VL_WSI
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = study
    ds.SeriesInstanceUID = series
    if frame:
        ds.FrameOfReferenceUID = frame
        ds.PositionReferenceIndicator = "SLIDE_CORNER"
    ds.Modality = "SM"
    ds.ImageType = ["ORIGINAL" if index == 0 else "DERIVED", "PRIMARY", "VOLUME", "NONE"]
    ds.InstanceNumber = index + 1
    ds.PatientID = "SEG-TEST-1"
    ds.PatientName = "Test^Seg"
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "O"
    ds.AccessionNumber = "ACC-SEG-1"
    ds.StudyID = "S1"
    ds.StudyDate = "20260101"
    ds.StudyTime = "120000"
    ds.ReferringPhysicianName = ""
    ds.Manufacturer = "Test Scanner Inc"
    ds.ManufacturerModelName = "TS-1"
    ds.DeviceSerialNumber = "42"
    ds.SoftwareVersions = "1.0"
    ds.ContainerIdentifier = "SLIDE-0001"
    ds.IssuerOfTheContainerIdentifierSequence = []
    ds.ContainerTypeCodeSequence = []
    ds.SpecimenDescriptionSequence = [
        SpecimenDescription(specimen_id="SPEC-1", specimen_uid="1.2.826.0.1.3680043.8.498.1")
    ]
    ds.Rows = tile_rows
    ds.Columns = tile_cols
    ds.SamplesPerPixel = 3
    ds.PhotometricInterpretation = "RGB"
    ds.BitsAllocated = 8
    ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.TotalPixelMatrixRows = rows
    ds.TotalPixelMatrixColumns = columns
    ds.NumberOfFrames = math.ceil(rows / tile_rows) * math.ceil(columns / tile_cols)
    ds.TotalPixelMatrixFocalPlanes = 1
    ds.DimensionOrganizationType = "TILED_FULL"
    ds.ImageOrientationSlide = [0, -1, 0, -1, 0, 0]
    origin = Dataset()
    # With this orientation, columns run along -Y and rows along -X (PS3.3 C.8.12.4.1.4).
    origin.XOffsetInSlideCoordinateSystem = 20.0 - shift_um[1] / 1000.0
    origin.YOffsetInSlideCoordinateSystem = 40.0 - shift_um[0] / 1000.0
    ds.TotalPixelMatrixOriginSequence = [origin]
    measures = Dataset()
    measures.PixelSpacing = [mpp / 1000.0, mpp / 1000.0]
    measures.SliceThickness = 0.004
    shared = Dataset()
    shared.PixelMeasuresSequence = [measures]
    ds.SharedFunctionalGroupsSequence = [shared]
    ds.ImagedVolumeWidth = columns * mpp / 1000.0
    ds.ImagedVolumeHeight = rows * mpp / 1000.0
    ds.ImagedVolumeDepth = 0.004
    ds.LossyImageCompression = "00"
    return ds

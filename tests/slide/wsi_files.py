"""Write small DICOM VL Whole Slide Microscopy series from arrays whose every pixel we choose.

The phantom generator (unitumour_dicom.synthetic) makes realistic slides; geometry tests need
slides whose pixel values encode their own position (so a half-pixel shift or a swapped axis
shows), lossless frames, and the layouts scanners produce: TILED_FULL or TILED_SPARSE with
frames missing, concatenated instances, several focal planes, pyramids with missing levels.
Other areas' tests may import it: ``from tests.slide.wsi_files import write_wsi``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import imagecodecs
import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    ExplicitVRLittleEndian,
    JPEGBaseline8Bit,
    VLWholeSlideMicroscopyImageStorage,
    generate_uid,
)

BACKGROUND = 255


def downsample(image: np.ndarray, factor: int) -> np.ndarray:
    """Block mean by an integer factor, padding the right and bottom with background."""
    if factor == 1:
        return image
    h, w = image.shape[:2]
    hp, wp = math.ceil(h / factor) * factor, math.ceil(w / factor) * factor
    padded = np.full((hp, wp, 3), BACKGROUND, np.float64)
    padded[:h, :w] = image
    blocks = padded.reshape(hp // factor, factor, wp // factor, factor, 3).mean(axis=(1, 3))
    return np.clip(blocks + 0.5, 0, 255).astype(np.uint8)


def _frames(image: np.ndarray, tile: int) -> list[tuple[int, int, np.ndarray]]:
    h, w = image.shape[:2]
    out = []
    for r in range(0, h, tile):
        for c in range(0, w, tile):
            frame = np.full((tile, tile, 3), BACKGROUND, np.uint8)
            part = image[r : r + tile, c : c + tile]
            frame[: part.shape[0], : part.shape[1]] = part
            out.append((r, c, frame))
    return out


def write_wsi(
    out_dir: Path,
    base: np.ndarray,
    *,
    mpp: float = 0.5,
    mpp_y: float | None = None,
    factors: Sequence[int] = (1, 2, 4),
    tile: int = 64,
    transfer: str = "native",
    sparse: bool = False,
    drop_blank_frames: bool = False,
    concatenation_frames: int | None = None,
    focal_planes: Sequence[float] = (0.0,),
    plane_images: dict[float, np.ndarray] | None = None,
    frame_of_reference_uid: str | None = "generate",
    samples_per_pixel: int = 3,
) -> list[Path]:
    """Write a pyramid (one level per entry of ``factors``, downsampled from ``base``) and
    return the paths. ``plane_images`` gives other content for focal planes other than the
    first (base level only; lower levels keep ``base``)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    study, series = generate_uid(), generate_uid()
    frame_of_reference = generate_uid() if frame_of_reference_uid == "generate" else None
    mpp_x, mpp_y = mpp, mpp_y if mpp_y is not None else mpp
    width_mm = base.shape[1] * mpp_x / 1000
    height_mm = base.shape[0] * mpp_y / 1000
    paths: list[Path] = []
    for index, factor in enumerate(factors):
        planes = {z: downsample(base, factor) for z in focal_planes[:1]}
        for z in focal_planes[1:]:
            source = (plane_images or {}).get(z, base) if index == 0 else base
            planes[z] = downsample(source, factor)
        first = planes[focal_planes[0]]
        rows, cols = first.shape[:2]
        frames = []
        for z in focal_planes:
            for r, c, frame in _frames(planes[z], tile):
                blank = bool((frame == BACKGROUND).all())
                if drop_blank_frames and blank:
                    continue
                frames.append((r, c, z, frame))
        chunks = (
            [
                frames[i : i + concatenation_frames]
                for i in range(0, len(frames), concatenation_frames)
            ]
            if concatenation_frames
            else [frames]
        )
        concatenation_uid = generate_uid() if len(chunks) > 1 else None
        concatenation_source = generate_uid()
        offset = 0
        for part, chunk in enumerate(chunks):
            ds = _dataset(
                study=study,
                series=series,
                frame_of_reference=frame_of_reference,
                level=index,
                rows=rows,
                cols=cols,
                tile=tile,
                mpp=(mpp_x * factor, mpp_y * factor),
                size_mm=(width_mm, height_mm),
                transfer=transfer,
                sparse=sparse or drop_blank_frames or len(focal_planes) > 1,
                chunk=chunk,
                focal_planes=focal_planes,
                samples_per_pixel=samples_per_pixel,
            )
            if concatenation_uid is not None:
                ds.SOPInstanceUIDOfConcatenationSource = concatenation_source
                ds.ConcatenationUID = concatenation_uid
                ds.InConcatenationNumber = part + 1
                ds.InConcatenationTotalNumber = len(chunks)
                ds.ConcatenationFrameOffsetNumber = offset
            offset += len(chunk)
            path = out_dir / f"level{index}_{part}.dcm"
            ds.save_as(path, enforce_file_format=True)
            paths.append(path)
    return paths


def _dataset(
    *,
    study: str,
    series: str,
    frame_of_reference: str | None,
    level: int,
    rows: int,
    cols: int,
    tile: int,
    mpp: tuple[float, float],
    size_mm: tuple[float, float],
    transfer: str,
    sparse: bool,
    chunk: list[tuple[int, int, float, np.ndarray]],
    focal_planes: Sequence[float],
    samples_per_pixel: int,
) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.SOPClassUID = VLWholeSlideMicroscopyImageStorage
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = (
        JPEGBaseline8Bit if transfer == "jpeg" else ExplicitVRLittleEndian
    )
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
    if frame_of_reference is not None:
        ds.FrameOfReferenceUID = frame_of_reference
    ds.Modality = "SM"
    ds.PatientID, ds.PatientName = "TEST-0001", "Test^Slide"
    ds.ImageType = (
        ["ORIGINAL", "PRIMARY", "VOLUME", "NONE"]
        if level == 0
        else ["DERIVED", "PRIMARY", "VOLUME", "RESAMPLED"]
    )
    ds.InstanceNumber = level + 1
    ds.Rows = ds.Columns = tile
    ds.TotalPixelMatrixRows, ds.TotalPixelMatrixColumns = rows, cols
    ds.NumberOfFrames = len(chunk)
    ds.SamplesPerPixel = samples_per_pixel
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    if samples_per_pixel == 3:
        ds.PlanarConfiguration = 0
        ds.PhotometricInterpretation = "YBR_FULL_422" if transfer == "jpeg" else "RGB"
    else:
        ds.PhotometricInterpretation = "MONOCHROME2"
    ds.DimensionOrganizationType = "TILED_SPARSE" if sparse else "TILED_FULL"
    ds.ImagedVolumeWidth, ds.ImagedVolumeHeight = size_mm
    ds.ImagedVolumeDepth = 0.001
    ds.TotalPixelMatrixFocalPlanes = len(focal_planes)
    ds.NumberOfOpticalPaths = 1
    ds.ExtendedDepthOfField = "NO"
    ds.FocusMethod = "AUTO"
    ds.ImageOrientationSlide = [0, -1, 0, -1, 0, 0]
    origin = Dataset()
    origin.XOffsetInSlideCoordinateSystem = 20.0
    origin.YOffsetInSlideCoordinateSystem = 40.0
    ds.TotalPixelMatrixOriginSequence = [origin]
    measures = Dataset()
    measures.PixelSpacing = [mpp[1] / 1000, mpp[0] / 1000]  # row spacing, column spacing
    measures.SliceThickness = 0.001
    shared = Dataset()
    shared.PixelMeasuresSequence = [measures]
    path_id = Dataset()
    path_id.OpticalPathIdentifier = "1"
    shared.OpticalPathIdentificationSequence = [path_id]
    ds.SharedFunctionalGroupsSequence = [shared]
    optical = Dataset()
    optical.OpticalPathIdentifier = "1"
    colour = Dataset()
    colour.CodeValue, colour.CodingSchemeDesignator, colour.CodeMeaning = (
        "414298005",
        "SCT",
        "Full Spectrum",
    )
    optical.IlluminationColorCodeSequence = [colour]
    ds.OpticalPathSequence = [optical]
    ds.ContainerIdentifier = "SLIDE-1"
    if sparse:
        per_frame = []
        for r, c, z, _ in chunk:
            item = Dataset()
            position = Dataset()
            position.ColumnPositionInTotalImagePixelMatrix = c + 1
            position.RowPositionInTotalImagePixelMatrix = r + 1
            position.XOffsetInSlideCoordinateSystem = 20.0 - r * mpp[1] / 1000
            position.YOffsetInSlideCoordinateSystem = 40.0 - c * mpp[0] / 1000
            position.ZOffsetInSlideCoordinateSystem = z
            item.PlanePositionSlideSequence = [position]
            per_frame.append(item)
        ds.PerFrameFunctionalGroupsSequence = per_frame
    frames = [frame if samples_per_pixel == 3 else frame[..., 0] for *_, frame in chunk]
    if transfer == "jpeg":
        ds.PixelData = encapsulate(
            [bytes(imagecodecs.jpeg8_encode(f, level=95, subsampling="422")) for f in frames]
        )
        ds.LossyImageCompression = "01"
    else:
        ds.PixelData = b"".join(f.tobytes() for f in frames)
    return ds

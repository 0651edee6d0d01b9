"""The DICOM attributes of a phantom's instances: the VL Whole Slide Microscopy Image IOD.

What a scanner writes (PS3.3 A.32.8): Patient, General Study, General Series, Whole Slide
Microscopy Series, Frame of Reference, General Equipment, Enhanced General Equipment, General
Acquisition, General Image, Image Pixel, Acquisition Context, Multi-frame Functional Groups,
Multi-frame Dimension, Specimen, Whole Slide Microscopy Image, Optical Path, Slide Label (the
label image) and SOP Common. Pixel Data and the values known only after encoding (the lossy
compression ratio, offset tables) are the writer's business (:mod:`.instance_writer`).

Slide coordinates (PS3.3 C.8.12.2.1): the glass is 25 mm (X) by 75 mm (Y) with the label at
the high-Y end. Images are laid with rows along -Y and columns along -X (ImageOrientationSlide
0\\-1\\0\\-1\\0\\0), the orientation most scanners use, so an image's top-left corner is its
highest X and Y.
"""

from __future__ import annotations

import functools
import importlib.resources
import math
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, overload

import highdicom as hd
from pydicom import Dataset
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code
from pydicom.tag import Tag
from pydicom.uid import UID, VLWholeSlideMicroscopyImageStorage
from pydicom.valuerep import DSfloat

from .. import __version__
from .codecs import FrameCodec
from .spec import PhantomSpec

ImageFlavour = Literal["VOLUME", "LABEL", "OVERVIEW"]

SLIDE_WIDTH_MM = 25.0  # along X
SLIDE_LENGTH_MM = 75.0  # along Y
LABEL_LENGTH_MM = 20.0  # the label covers Y in [55, 75]
LABEL_SPACING_MM = 0.05
OVERVIEW_SPACING_MM = 0.04
IMAGE_ORIENTATION_SLIDE = (0.0, -1.0, 0.0, -1.0, 0.0, 0.0)
SECTION_THICKNESS_MM = 0.004  # a 4 µm paraffin section
MANUFACTURER = "UniTumour DICOM"
MODEL_NAME = "Phantom Slide Generator"
OPTICAL_PATH_ID = "1"
_COLUMN_POSITION = Tag("ColumnPositionInTotalImagePixelMatrix")
_ROW_POSITION = Tag("RowPositionInTotalImagePixelMatrix")
_PLANE_POSITION_SLIDE = Tag("PlanePositionSlideSequence")


@dataclass(frozen=True)
class PhantomUids:
    """Every UID of a phantom, derived from the spec's digest so that retries are stable."""

    study: str
    series: str
    frame_of_reference: str
    specimen: str
    dimension_organization: str
    digest: str

    @classmethod
    def from_spec(cls, spec: PhantomSpec) -> PhantomUids:
        digest = spec.digest()
        return cls(
            study=spec.study_uid or derive_uid(digest, "study"),
            series=spec.series_uid or derive_uid(digest, "series"),
            frame_of_reference=derive_uid(digest, "frame-of-reference"),
            specimen=derive_uid(digest, "specimen"),
            dimension_organization=derive_uid(digest, "dimension-organization"),
            digest=digest,
        )

    def instance(self, name: str) -> str:
        """The SOP Instance UID of the instance called ``name`` (e.g. ``level-0-part-2``)."""
        return derive_uid(self.digest, "instance", name)


#: Namespace of the name-based UUIDs behind every phantom UID.
_UID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://unitumour.invalid/phantom")


def derive_uid(*parts: str) -> UID:
    """A 2.25 UID (PS3.5 B.2) from a name-based UUID of ``parts``: the same parts give the
    same UID, on every machine and every run."""
    name = "\x1f".join(parts)
    return UID(f"2.25.{uuid.uuid5(_UID_NAMESPACE, name).int}")


@dataclass(frozen=True)
class SlidePlacement:
    """Where an image lies on the glass: its top-left corner (mm) and its pixel spacing."""

    x_mm: float
    y_mm: float
    spacing_mm: float
    columns: int
    rows: int

    def frame_corner_mm(self, row: int, column: int) -> tuple[float, float]:
        """Slide X, Y (mm) of the top-left corner of pixel (row, column), 0-based."""
        return self.x_mm - row * self.spacing_mm, self.y_mm - column * self.spacing_mm

    @property
    def width_mm(self) -> float:
        return self.columns * self.spacing_mm

    @property
    def height_mm(self) -> float:
        return self.rows * self.spacing_mm


def volume_placement(spec: PhantomSpec, level: int) -> SlidePlacement:
    """The pyramid is centred on the glass between its far end and the label."""
    width_mm = spec.width * spec.mpp / 1000
    height_mm = spec.height * spec.mpp / 1000
    x0 = max((SLIDE_WIDTH_MM + height_mm) / 2, height_mm)
    y0 = max((SLIDE_LENGTH_MM - LABEL_LENGTH_MM + width_mm) / 2, width_mm)
    columns, rows = spec.level_sizes[level]
    return SlidePlacement(x0, y0, spec.level_mpps[level] / 1000, columns, rows)


def label_placement() -> SlidePlacement:
    return SlidePlacement(
        SLIDE_WIDTH_MM,
        SLIDE_LENGTH_MM,
        LABEL_SPACING_MM,
        round(LABEL_LENGTH_MM / LABEL_SPACING_MM),
        round(SLIDE_WIDTH_MM / LABEL_SPACING_MM),
    )


def overview_placement() -> SlidePlacement:
    return SlidePlacement(
        SLIDE_WIDTH_MM,
        SLIDE_LENGTH_MM,
        OVERVIEW_SPACING_MM,
        round(SLIDE_LENGTH_MM / OVERVIEW_SPACING_MM),
        round(SLIDE_WIDTH_MM / OVERVIEW_SPACING_MM),
    )


@dataclass(frozen=True)
class FrameLayout:
    """The frames of one instance: the level's tile grid and which of its tiles they are.

    ``tiles`` are indices into the grid, row-major (index = row * tiles_across + column), in
    frame order: a ``range`` for TILED_FULL, any increasing sequence when frames that show
    only glass are left out. ``first_frame`` is the offset of this instance's first frame
    among all the level's frames (ConcatenationFrameOffsetNumber).
    """

    tile_size: tuple[int, int]  # (rows, columns) of each frame
    tiles_across: int
    tiles_down: int
    tiles: Sequence[int]
    first_frame: int = 0

    @property
    def n_frames(self) -> int:
        return len(self.tiles)

    def tile_origin(self, frame_index: int) -> tuple[int, int]:
        """0-based (row, column) pixel of the top-left corner of a frame in the level."""
        row, column = divmod(self.tiles[frame_index], self.tiles_across)
        return row * self.tile_size[0], column * self.tile_size[1]


@dataclass(frozen=True)
class Concatenation:
    uid: str
    source_instance_uid: str
    number: int  # 1-based
    total: int


def _ds(value: float) -> DSfloat:
    return DSfloat(value, auto_format=True)


def _code_item(code: Code) -> Dataset:
    item = Dataset()
    item.CodeValue = code.value
    item.CodingSchemeDesignator = code.scheme_designator
    item.CodeMeaning = code.meaning
    return item


@functools.cache
def srgb_icc_profile() -> bytes:
    """The sRGB ICC profile that highdicom ships (no download, identical bytes every run)."""
    path = importlib.resources.files("highdicom") / "_icc_profiles" / "sRGB_v4_ICC_preference.icc"
    return path.read_bytes()


def objective_lens_power(mpp: float) -> int:
    """Nominal objective magnification of a scanner with ~10 µm camera pixels."""
    return max(1, min(100, round(10.0 / mpp)))


def _is_ascii(*values: str) -> bool:
    return all(v.isascii() for v in values)


def common_dataset(spec: PhantomSpec, uids: PhantomUids) -> Dataset:
    """Attributes shared by every instance of the series."""
    ds = Dataset()
    acquired = spec.acquisition_datetime
    if not _is_ascii(spec.patient_name, spec.patient_id, spec.accession_number, spec.container):
        ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID = VLWholeSlideMicroscopyImageStorage
    # Patient
    ds.PatientName = spec.patient_name
    ds.PatientID = spec.patient_id
    ds.PatientBirthDate = ""
    ds.PatientSex = ""
    # General Study
    ds.StudyInstanceUID = uids.study
    ds.StudyDate = acquired.strftime("%Y%m%d")
    ds.StudyTime = acquired.strftime("%H%M%S")
    ds.ReferringPhysicianName = ""
    ds.StudyID = "1"
    ds.AccessionNumber = spec.accession_number
    ds.StudyDescription = "UniTumour phantom H&E slide"
    # General Series, Whole Slide Microscopy Series
    ds.Modality = "SM"
    ds.SeriesInstanceUID = uids.series
    ds.SeriesNumber = 1
    ds.SeriesDate = ds.StudyDate
    ds.SeriesTime = ds.StudyTime
    ds.SeriesDescription = f"Phantom H&E, seed {spec.seed}"[:64]
    # Frame of Reference (a converter of old did not write one)
    if not spec.omit_optional:
        ds.FrameOfReferenceUID = uids.frame_of_reference
        ds.PositionReferenceIndicator = "SLIDE_CORNER"
    # General and Enhanced General Equipment
    ds.Manufacturer = MANUFACTURER
    ds.ManufacturerModelName = MODEL_NAME
    ds.DeviceSerialNumber = f"PHANTOM-{spec.seed}"[:64]
    ds.SoftwareVersions = f"unitumour-dicom {__version__}"[:64]
    # Acquisition Context: nothing known, but the sequence is Type 2
    ds.AcquisitionContextSequence = []
    # Specimen
    ds.ContainerIdentifier = spec.container
    ds.IssuerOfTheContainerIdentifierSequence = []
    ds.ContainerTypeCodeSequence = [_code_item(codes.SCT.MicroscopeSlide)]
    ds.SpecimenDescriptionSequence = [_specimen_description(spec, uids)]
    # Optical Path
    ds.NumberOfOpticalPaths = 1
    ds.OpticalPathSequence = [_optical_path(spec)]
    return ds


def _specimen_description(spec: PhantomSpec, uids: PhantomUids) -> Dataset:
    specimen_id = f"{spec.container}-A"[:64]
    staining = hd.SpecimenPreparationStep(
        specimen_id=specimen_id,
        processing_procedure=hd.SpecimenStaining(
            substances=[codes.SCT.HematoxylinStain, codes.SCT.WaterSolubleEosinStain]
        ),
        fixative=codes.SCT.Formalin,
        embedding_medium=codes.SCT.ParaffinWax,
    )
    return hd.SpecimenDescription(
        specimen_id=specimen_id,
        specimen_uid=uids.specimen,
        specimen_preparation_steps=[staining],
        specimen_type=codes.SCT.TissueSection,
        specimen_short_description="Synthetic H&E phantom section",
    )


def _optical_path(spec: PhantomSpec) -> Dataset:
    item = Dataset()
    item.OpticalPathIdentifier = OPTICAL_PATH_ID
    item.OpticalPathDescription = "Brightfield, full spectrum (synthetic)"
    item.IlluminationTypeCodeSequence = [_code_item(codes.DCM.BrightfieldIllumination)]
    item.IlluminationColorCodeSequence = [_code_item(codes.SCT.FullSpectrum)]
    item.ICCProfile = srgb_icc_profile()
    item.ColorSpace = "SRGB"
    item.ObjectiveLensPower = _ds(objective_lens_power(spec.mpp))
    item.ObjectiveLensNumericalAperture = _ds(0.75)
    return item


def image_dataset(
    spec: PhantomSpec,
    common: Dataset,
    *,
    flavour: ImageFlavour,
    level: int,
    placement: SlidePlacement,
    layout: FrameLayout,
    codec: FrameCodec,
    sop_instance_uid: str,
    instance_number: int,
    uids: PhantomUids,
    concatenation: Concatenation | None = None,
    label_text: str | None = None,
) -> Dataset:
    """One instance's dataset, complete but for what the writer streams or fills in: Pixel
    Data, the lossy compression ratio and the per-frame items (:func:`per_frame_groups`)."""
    ds = Dataset()
    ds.update(common)
    acquired = spec.acquisition_datetime
    ds.SOPInstanceUID = sop_instance_uid
    ds.InstanceNumber = instance_number
    ds.ContentDate = acquired.strftime("%Y%m%d")
    ds.ContentTime = acquired.strftime("%H%M%S")
    ds.AcquisitionDateTime = acquired.strftime("%Y%m%d%H%M%S")

    if flavour == "VOLUME":
        image_type = (
            ["ORIGINAL", "PRIMARY", "VOLUME", "NONE"]
            if level == 0
            else ["DERIVED", "PRIMARY", "VOLUME", "RESAMPLED"]
        )
    else:
        image_type = ["ORIGINAL", "PRIMARY", flavour, "NONE"]
    ds.ImageType = image_type
    if level > 0:
        ds.DerivationDescription = f"Box-filtered 2x from level {level - 1}"
    ds.VolumetricProperties = "VOLUME"
    ds.SpecimenLabelInImage = "NO" if flavour == "VOLUME" else "YES"
    ds.BurnedInAnnotation = "NO" if flavour == "VOLUME" else "YES"
    ds.FocusMethod = "AUTO"
    ds.ExtendedDepthOfField = "NO"

    # Image Pixel
    ds.SamplesPerPixel = 3
    ds.PhotometricInterpretation = codec.photometric_interpretation
    ds.PlanarConfiguration = 0
    ds.Rows, ds.Columns = layout.tile_size
    ds.BitsAllocated = 8
    ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    if codec.lossy:
        ds.LossyImageCompression = "01"
        ds.LossyImageCompressionMethod = codec.lossy_method
        # LossyImageCompressionRatio is reserved and patched by the writer.
    else:
        ds.LossyImageCompression = "00"

    # Whole Slide Microscopy Image
    ds.TotalPixelMatrixColumns = placement.columns
    ds.TotalPixelMatrixRows = placement.rows
    ds.TotalPixelMatrixFocalPlanes = 1
    origin = Dataset()
    origin.XOffsetInSlideCoordinateSystem = _ds(placement.x_mm)
    origin.YOffsetInSlideCoordinateSystem = _ds(placement.y_mm)
    ds.TotalPixelMatrixOriginSequence = [origin]
    ds.ImageOrientationSlide = [_ds(v) for v in IMAGE_ORIENTATION_SLIDE]
    # The area imaged: the base level's for every level of the pyramid (a lower level's
    # rounded-up pixel grid may reach a fraction of a pixel past it), the image's own else.
    width_mm, height_mm = (
        _volume_mm(spec) if flavour == "VOLUME" else (placement.width_mm, placement.height_mm)
    )
    ds.ImagedVolumeWidth = _ds(width_mm)
    ds.ImagedVolumeHeight = _ds(height_mm)
    ds.ImagedVolumeDepth = _ds(SECTION_THICKNESS_MM * 1000)
    # Absent tiles (TILED_SPARSE) show as white glass: CIELab L=100, a=b=0.
    ds.RecommendedAbsentPixelCIELabValue = [0xFFFF, 0x8080, 0x8080]

    # Multi-frame Functional Groups and Dimensions
    ds.NumberOfFrames = layout.n_frames
    ds.SharedFunctionalGroupsSequence = [_shared_groups(placement, image_type)]
    if not spec.omit_optional:
        ds.DimensionOrganizationType = spec.dimension_organization
    organization = Dataset()
    organization.DimensionOrganizationUID = uids.dimension_organization
    ds.DimensionOrganizationSequence = [organization]
    ds.DimensionIndexSequence = [
        _dimension_index(uids, _COLUMN_POSITION, "Column Position"),
        _dimension_index(uids, _ROW_POSITION, "Row Position"),
    ]
    if concatenation is not None:
        ds.ConcatenationUID = concatenation.uid
        ds.SOPInstanceUIDOfConcatenationSource = concatenation.source_instance_uid
        ds.InConcatenationNumber = concatenation.number
        ds.InConcatenationTotalNumber = concatenation.total
        ds.ConcatenationFrameOffsetNumber = layout.first_frame

    if flavour == "LABEL":
        ds.LabelText = (label_text or "")[:64]
        ds.BarcodeValue = spec.accession_number
    return ds


def _volume_mm(spec: PhantomSpec) -> tuple[float, float]:
    return spec.width * spec.mpp / 1000, spec.height * spec.mpp / 1000


def _shared_groups(placement: SlidePlacement, image_type: list[str]) -> Dataset:
    measures = Dataset()
    measures.PixelSpacing = [_ds(placement.spacing_mm), _ds(placement.spacing_mm)]
    measures.SliceThickness = _ds(SECTION_THICKNESS_MM)
    frame_type = Dataset()
    frame_type.FrameType = image_type
    optical = Dataset()
    optical.OpticalPathIdentifier = OPTICAL_PATH_ID
    shared = Dataset()
    shared.PixelMeasuresSequence = [measures]
    shared.WholeSlideMicroscopyImageFrameTypeSequence = [frame_type]
    shared.OpticalPathIdentificationSequence = [optical]
    return shared


def _dimension_index(uids: PhantomUids, pointer: int, label: str) -> Dataset:
    item = Dataset()
    item.DimensionOrganizationUID = uids.dimension_organization
    item.DimensionIndexPointer = pointer
    item.FunctionalGroupPointer = _PLANE_POSITION_SLIDE
    item.DimensionDescriptionLabel = label
    return item


class PerFrameGroups(Sequence[Dataset]):
    """The PerFrameFunctionalGroupsSequence items of an instance, made when read: each
    frame's PlanePositionSlideSequence and its DimensionIndexValues (column, row)."""

    def __init__(self, placement: SlidePlacement, layout: FrameLayout) -> None:
        self._placement = placement
        self._layout = layout

    def __len__(self) -> int:
        return self._layout.n_frames

    @overload
    def __getitem__(self, index: int) -> Dataset: ...
    @overload
    def __getitem__(self, index: slice) -> list[Dataset]: ...
    def __getitem__(self, index: int | slice) -> Dataset | list[Dataset]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if not -len(self) <= index < len(self):
            raise IndexError(index)
        return _frame_groups(self._placement, self._layout, index % len(self))


def per_frame_groups(
    spec: PhantomSpec, placement: SlidePlacement, layout: FrameLayout
) -> PerFrameGroups | None:
    """The per-frame items an instance carries: with TILED_SPARSE or omit_optional, else None."""
    return PerFrameGroups(placement, layout) if spec.per_frame_positions else None


def _frame_groups(placement: SlidePlacement, layout: FrameLayout, frame_index: int) -> Dataset:
    row, column = layout.tile_origin(frame_index)
    x_mm, y_mm = placement.frame_corner_mm(row, column)
    position = Dataset()
    position.ColumnPositionInTotalImagePixelMatrix = column + 1
    position.RowPositionInTotalImagePixelMatrix = row + 1
    position.XOffsetInSlideCoordinateSystem = _ds(x_mm)
    position.YOffsetInSlideCoordinateSystem = _ds(y_mm)
    position.ZOffsetInSlideCoordinateSystem = _ds(0.0)
    content = Dataset()
    content.DimensionIndexValues = [
        column // layout.tile_size[1] + 1,
        row // layout.tile_size[0] + 1,
    ]
    item = Dataset()
    item.FrameContentSequence = [content]
    item.PlanePositionSlideSequence = [position]
    return item


def tile_grid(columns: int, rows: int, tile: int) -> tuple[int, int]:
    """(tiles across, tiles down) covering a total pixel matrix."""
    return math.ceil(columns / tile), math.ceil(rows / tile)

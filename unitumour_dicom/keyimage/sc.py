"""``write_key_image``: the slide thumbnail with the tumour outlined and the figures burned in,
as a DICOM Secondary Capture Image (highdicom ``SCImage``, RGB), in the slide's study, in a
series of its own.

Patient, study and specimen (container, specimen descriptions) are copied from the base
level; Coordinate System is SLIDE. The image holds a text panel below the thumbnail, so it
states no Pixel Spacing (it is a picture to look at, not to measure on) and says Burned In
Annotation YES. Source Image Sequence names the base level it derives from.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import highdicom as hd
import numpy as np
from pydicom import Dataset
from pydicom.valuerep import DA, TM

from ..config.sections import SegSettings
from ..errors import SegmentationError
from ..findings import MaskResult, ModelIdentity, SlideFigures, labelled
from ..findings.equipment import (
    all_software_versions,
    device_serial_number,
    fix_times,
    highdicom_refusal,
    processing_equipment,
)
from ..seg.levels import source_levels
from ..seg.uids import derived_uid
from .picture import compose, tumour_on_thumbnail

SECONDARY_CAPTURE_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.7"
DEFAULT_SERIES_NUMBER = 903
DEFAULT_SERIES_DESCRIPTION = "Tumour key image, {model_name} {model_version} (AI)"
#: A thumbnail larger than this (pixels a side) is refused: it is a key image, not a slide.
MAX_SIDE = 4096


def write_key_image(
    *,
    source_datasets: Sequence[Dataset],
    thumbnail: np.ndarray,
    result: MaskResult,
    figures: SlideFigures,
    identity: ModelIdentity,
    settings: SegSettings,
    uid_seed: str,
    content_datetime: datetime | None = None,
    series_number: int = DEFAULT_SERIES_NUMBER,
    series_description: str = DEFAULT_SERIES_DESCRIPTION,
) -> hd.sc.SCImage:
    """The key image of one slide (not stored).

    ``thumbnail`` is the whole slide as uint8 RGB (``picture.read_thumbnail``); the tumour
    mask of ``result`` is laid on it by extent (both span the slide). A card that says not
    for clinical use puts "RESEARCH USE ONLY" in the Series Description, the Image Comments
    and the burned-in text.
    """
    when = content_datetime or datetime.now(UTC)
    if when.tzinfo is None:
        raise SegmentationError("content_datetime must be timezone-aware")
    if thumbnail.ndim != 3 or thumbnail.shape[2] < 3 or thumbnail.dtype != np.uint8:
        raise SegmentationError(
            f"thumbnail must be uint8 RGB, not {thumbnail.dtype} {thumbnail.shape}"
        )
    if max(thumbnail.shape[:2]) > MAX_SIDE:
        raise SegmentationError(f"thumbnail {thumbnail.shape[:2]} exceeds {MAX_SIDE} pixels a side")
    base = source_levels(source_datasets)[0].dataset
    height, width = thumbnail.shape[:2]
    tumour = tumour_on_thumbnail(result.tumour, height, width)
    pixels = compose(thumbnail, tumour, figures, identity)

    with highdicom_refusal("key image"):
        specimens = [
            hd.SpecimenDescription.from_dataset(item)
            for item in base.get("SpecimenDescriptionSequence", [])
        ]
        description = series_description.format(
            model_name=identity.name, model_version=identity.version
        )
        sc = hd.sc.SCImage.from_ref_dataset(
            ref_dataset=base,
            pixel_array=pixels,
            photometric_interpretation=hd.PhotometricInterpretationValues.RGB,
            bits_allocated=8,
            coordinate_system=hd.CoordinateSystemNames.SLIDE,
            series_instance_uid=derived_uid("keyimage", uid_seed, "series"),
            series_number=series_number,
            sop_instance_uid=derived_uid("keyimage", uid_seed, "instance"),
            instance_number=1,
            manufacturer=settings.manufacturer,
            container_identifier=str(base.get("ContainerIdentifier", "")) or None,
            specimen_descriptions=specimens or None,
            transfer_syntax_uid=hd.UID("1.2.840.10008.1.2.1"),  # Explicit VR Little Endian
            contributing_equipment=[processing_equipment(settings, identity, when, "Key image")],
            series_description=labelled(description, identity, 64),
            manufacturer_model_name=settings.manufacturer_model_name,
            software_versions=all_software_versions(identity),
            device_serial_number=device_serial_number(settings),
            institution_name=settings.institution_name,
            content_date=when.date(),
            content_time=when.time(),
            series_date=when.date(),
            series_time=when.time(),
        )
    sc.ImageType = ["DERIVED", "SECONDARY"]
    sc.BurnedInAnnotation = "YES"
    sc.DerivationDescription = labelled(
        f"Slide thumbnail with the tumour outline of {identity.name} {identity.version} and "
        "its figures burned in",
        identity,
        1024,
    )
    sc.ImageComments = labelled(
        f"Tumour {figures.tumour_area_mm2:.2f} mm2, {figures.tumour_fraction_percent:.1f} % "
        f"of tissue; {identity.name} {identity.version}",
        identity,
        10240,
    )
    source = Dataset()
    source.ReferencedSOPClassUID = base.SOPClassUID
    source.ReferencedSOPInstanceUID = base.SOPInstanceUID
    sc.SourceImageSequence = [source]
    if "PatientOrientation" not in sc:
        sc.add_new("PatientOrientation", "CS", None)  # Type 2C: empty for a slide
    sc.DateOfSecondaryCapture = DA(when.strftime("%Y%m%d"))
    sc.TimeOfSecondaryCapture = TM(when.strftime("%H%M%S.%f"))
    fix_times(sc, when)
    return sc

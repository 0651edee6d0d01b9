"""``write_measurement_report``: the slide's tumour figures as a DICOM Comprehensive 3D SR
with a TID 1500 Measurement Report (built by highdicom), referencing the slide and the SEG.

Two measurement groups:

- TID 1410 Planar ROI Measurements, the tumour: its ROI is the SEG's tumour segment
  (Referenced Segmentation Frame, 121214 DCM: the SEG's base-level instance, segment 1, all
  frames, so without Referenced Frame Number as TID 1410 row 7 asks; with the base level of
  the slide as Source Image for Segmentation).
  Measurements: tumour area (mm2), tumour area fraction of tissue (%), number of tumour
  regions ({regions}), the largest region's area (mm2; Area with Derivation "Maximum").
- TID 1501 Measurements and Qualitative Evaluations, the tissue: tissue area (mm2), with the
  base level as source image.

Both carry the algorithm (TID 4019: name, version, parameters: weights and card sha256,
threshold, model pixel size, not-for-clinical-use) and a tracking identifier and UID derived
from the job, so that a retried job writes the same report.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import highdicom as hd
from highdicom.coding_schemes import CodingSchemeIdentificationItem
from pydicom import Dataset
from pydicom.sr.codedict import codes

from ..config.sections import SegSettings
from ..errors import SegmentationError
from ..findings import ModelIdentity, SlideFigures, labelled
from ..findings.equipment import (
    all_software_versions,
    device_serial_number,
    fix_times,
    highdicom_refusal,
    processing_equipment,
)
from ..seg.levels import source_levels
from ..seg.pyramid import SEGMENTATION_STORAGE, SegInstanceInfo, SegPyramid
from ..seg.uids import derived_uid
from . import concepts as c

COMPREHENSIVE_3D_SR_STORAGE = "1.2.840.10008.5.1.4.1.1.88.34"
DEFAULT_SERIES_NUMBER = 901
DEFAULT_SERIES_DESCRIPTION = "Tumour measurements, {model_name} {model_version} (AI)"
TUMOUR_TRACKING_ID = "Tumour"
TISSUE_TRACKING_ID = "Tissue"


def _referenced_level(seg: SegPyramid) -> SegInstanceInfo:
    """The SEG instance of the base level (the one made at the slide's full resolution)."""
    if not seg.instances:
        raise SegmentationError("the SEG pyramid has no instances to reference")
    return min(seg.instances, key=lambda i: i.level)


def _whole_segment(segment: hd.sr.ReferencedSegmentationFrame) -> None:
    """Drop Referenced Frame Number: TID 1410 row 7 says that for a tiled Segmentation whose
    frames are all selected and that has a single segment, Referenced Frame Number "will be
    absent" (and the Image SOP Instance Reference Macro forbids it beside Referenced Segment
    Number). highdicom always writes it, so it is removed here."""
    for item in segment[0].ReferencedSOPSequence:
        if "ReferencedFrameNumber" in item:
            del item.ReferencedFrameNumber


def _reference_dataset(study: str, series: str, sop_class: str, sop_instance: str) -> Dataset:
    """What the evidence (Current Requested Procedure Evidence Sequence) needs of an object."""
    ds = Dataset()
    ds.StudyInstanceUID = study
    ds.SeriesInstanceUID = series
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_instance
    return ds


def algorithm_identification(identity: ModelIdentity) -> hd.sr.AlgorithmIdentification:
    return hd.sr.AlgorithmIdentification(
        name=identity.name,
        version=identity.version,
        parameters=identity.parameter_strings(),
        family=codes.DCM.ArtificialIntelligence,
        manufacturer=identity.source,
    )


def write_measurement_report(
    *,
    source_datasets: Sequence[Dataset],
    seg: SegPyramid,
    figures: SlideFigures,
    identity: ModelIdentity,
    settings: SegSettings,
    uid_seed: str,
    content_datetime: datetime | None = None,
    series_number: int = DEFAULT_SERIES_NUMBER,
    series_description: str = DEFAULT_SERIES_DESCRIPTION,
) -> hd.sr.Comprehensive3DSR:
    """The measurement report of one slide, as a Comprehensive 3D SR dataset (not stored).

    Parameters
    ----------
    source_datasets:
        Headers of the slide's instances (as for ``write_seg_pyramid``).
    seg:
        The SEG pyramid written for the same job: the tumour ROI references its segment.
    figures:
        ``findings.slide_figures(result)``: the numbers reported.
    identity:
        The model (``ModelIdentity.from_card``); a card that says not for clinical use puts
        "RESEARCH USE ONLY" in front of the Series Description.
    settings:
        The SEG settings: manufacturer, model name, device serial number and institution
        are the same for every object this installation writes.
    uid_seed:
        The job's UUID; every UID derives from it.
    """
    when = content_datetime or datetime.now(UTC)
    if when.tzinfo is None:
        raise SegmentationError("content_datetime must be timezone-aware")
    levels = source_levels(source_datasets)
    base = levels[0].dataset
    referenced = _referenced_level(seg)
    by_uid = {lv.sop_instance_uid: lv for lv in levels}
    seg_source = by_uid.get(referenced.source_sop_instance_uid)
    if seg_source is None:
        raise SegmentationError(
            f"SEG level {referenced.level} derives from {referenced.source_sop_instance_uid}, "
            "which is not among the source datasets: SEG and slide do not belong together"
        )
    if seg.study_instance_uid != str(base.StudyInstanceUID):
        raise SegmentationError("the SEG belongs to another study than the slide")

    with highdicom_refusal("measurement report"):
        algorithm = algorithm_identification(identity)
        source_for_segmentation = hd.sr.SourceImageForSegmentation(
            referenced_sop_class_uid=str(seg_source.dataset.SOPClassUID),
            referenced_sop_instance_uid=seg_source.sop_instance_uid,
        )
        segment = hd.sr.ReferencedSegmentationFrame(
            sop_class_uid=SEGMENTATION_STORAGE,
            sop_instance_uid=referenced.sop_instance_uid,
            frame_number=1,
            segment_number=1,
            source_image=source_for_segmentation,
        )
        _whole_segment(segment)
        tumour = hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
            tracking_identifier=hd.sr.TrackingIdentifier(
                uid=derived_uid("sr", uid_seed, "tracking", "tumour"), identifier=TUMOUR_TRACKING_ID
            ),
            referenced_segment=segment,
            finding_category=c.TUMOUR_CATEGORY,
            finding_type=c.TUMOUR_TYPE,
            algorithm_id=algorithm,
            measurements=[
                hd.sr.Measurement(
                    name=c.AREA, value=figures.tumour_area_mm2, unit=c.SQUARE_MILLIMETRE
                ),
                hd.sr.Measurement(
                    name=c.TUMOUR_FRACTION, value=figures.tumour_fraction_percent, unit=c.PERCENT
                ),
                hd.sr.Measurement(
                    name=c.NUMBER_OF_REGIONS, value=figures.region_count, unit=c.REGIONS
                ),
                hd.sr.Measurement(
                    name=c.AREA,
                    value=figures.largest_region_mm2,
                    unit=c.SQUARE_MILLIMETRE,
                    derivation=c.MAXIMUM,
                ),
            ],
        )
        tissue = hd.sr.MeasurementsAndQualitativeEvaluations(
            tracking_identifier=hd.sr.TrackingIdentifier(
                uid=derived_uid("sr", uid_seed, "tracking", "tissue"), identifier=TISSUE_TRACKING_ID
            ),
            finding_category=c.TISSUE_CATEGORY,
            finding_type=c.TISSUE_TYPE,
            algorithm_id=algorithm,
            source_images=[
                hd.sr.SourceImageForMeasurementGroup(
                    referenced_sop_class_uid=str(base.SOPClassUID),
                    referenced_sop_instance_uid=str(base.SOPInstanceUID),
                )
            ],
            measurements=[
                hd.sr.Measurement(
                    name=c.AREA, value=figures.tissue_area_mm2, unit=c.SQUARE_MILLIMETRE
                )
            ],
        )
        observer = hd.sr.ObserverContext(
            observer_type=codes.DCM.Device,
            observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
                uid=derived_uid("device", identity.name, identity.version, identity.weights_sha256),
                name=identity.name,
                manufacturer_name=settings.manufacturer,
                model_name=f"{identity.name} {identity.version}"[:64],
            ),
        )
        subject = hd.sr.SubjectContext.from_image(base)
        report = hd.sr.MeasurementReport(
            observation_context=hd.sr.ObservationContext(
                observer_device_context=observer, subject_context=subject
            ),
            procedure_reported=c.PROCEDURE_REPORTED,
            imaging_measurements=[tumour, tissue],
        )
        evidence = [
            base,
            _reference_dataset(
                seg.study_instance_uid,
                seg.series_instance_uid,
                SEGMENTATION_STORAGE,
                referenced.sop_instance_uid,
            ),
        ]
        if seg_source.dataset is not base:
            evidence.insert(1, seg_source.dataset)
        description = series_description.format(
            model_name=identity.name, model_version=identity.version
        )
        sr = hd.sr.Comprehensive3DSR(
            evidence=evidence,
            content=report,
            series_instance_uid=derived_uid("sr", uid_seed, "series"),
            series_number=series_number,
            sop_instance_uid=derived_uid("sr", uid_seed, "instance"),
            instance_number=1,
            manufacturer=settings.manufacturer,
            is_complete=True,
            is_final=False,
            is_verified=False,
            institution_name=settings.institution_name,
            series_description=labelled(description, identity, 64),
            content_date=when.date(),
            content_time=when.time(),
            record_evidence=True,
            contributing_equipment=[
                processing_equipment(settings, identity, when, "Tumour measurements")
            ],
        )
    _finish(sr, identity, settings, when)
    return sr


def _finish(
    sr: hd.sr.Comprehensive3DSR, identity: ModelIdentity, settings: SegSettings, when: datetime
) -> None:
    """What highdicom leaves to the caller: the local coding scheme, our equipment, times."""
    sr.CodingSchemeIdentificationSequence = [
        CodingSchemeIdentificationItem(designator=c.LOCAL_SCHEME, name=c.LOCAL_SCHEME_NAME)
    ]
    sr.ManufacturerModelName = settings.manufacturer_model_name
    sr.add_new("SoftwareVersions", "LO", all_software_versions(identity))
    sr.DeviceSerialNumber = device_serial_number(settings)
    fix_times(sr, when)

"""The TID 1500 measurement report on a phantom slide: valid by dciodvfy (less the errors
listed with the reference that allows each), read back by highdicom with the result's
figures, referencing the slide and the SEG segment, labelled RESEARCH USE ONLY."""

from __future__ import annotations

from pathlib import Path

import highdicom as hd
import pydicom
import pytest
from pydicom.sr.codedict import codes

from tests.findings.resultkit import UID_SEED, WHEN, dciodvfy_errors
from unitumour_dicom.findings import ModelIdentity, slide_figures
from unitumour_dicom.sr import concepts as c
from unitumour_dicom.sr import write_measurement_report

pytestmark = [pytest.mark.integration, pytest.mark.slow]

#: dciodvfy (dicom3tools, 2022 tables) errors on this SR that the standard allows; none so far.
STANDARD_ALLOWS: dict[str, str] = {}


def _write(case, tmp_path: Path, identity: ModelIdentity | None = None):  # type: ignore[no-untyped-def]
    sr = write_measurement_report(
        source_datasets=case.headers,
        seg=case.seg,
        figures=slide_figures(case.result),
        identity=identity or case.identity,
        settings=case.seg_settings,
        uid_seed=UID_SEED,
        content_datetime=WHEN,
    )
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "sr.dcm"
    sr.save_as(path, enforce_file_format=True)
    return sr, path


def test_report_is_valid_dicom(case, tmp_path) -> None:
    _, path = _write(case, tmp_path)
    assert dciodvfy_errors(path, STANDARD_ALLOWS) == []


def test_report_reads_back_with_the_results_figures(case, tmp_path) -> None:
    _, path = _write(case, tmp_path)
    sr = hd.sr.srread(path)
    figures = slide_figures(case.result)
    assert figures.region_count >= 1
    assert sr.StudyInstanceUID == case.phantom.study_uid
    assert sr.SeriesInstanceUID not in (case.phantom.series_uid, case.seg.series_instance_uid)
    assert sr.PatientID == case.headers[0].PatientID

    report = sr.content
    (tumour,) = report.get_planar_roi_measurement_groups(tracking_uid=None)
    assert tumour.tracking_identifier == "Tumour"
    assert tumour.finding_type == c.TUMOUR_TYPE
    values = {
        (m.name.value, m.derivation.value if m.derivation else None): (m.value, m.unit.value)
        for m in tumour.get_measurements()
    }
    assert values[(c.AREA.value, None)] == (pytest.approx(case.result.tumour_area_mm2), "mm2")
    assert values[(c.AREA.value, c.MAXIMUM.value)] == (
        pytest.approx(figures.largest_region_mm2),
        "mm2",
    )
    assert values[(c.TUMOUR_FRACTION.value, None)] == (
        pytest.approx(100 * case.result.tumour_area_mm2 / case.result.tissue_area_mm2),
        "%",
    )
    assert values[(c.NUMBER_OF_REGIONS.value, None)] == (figures.region_count, "{regions}")

    (tissue,) = report.get_image_measurement_groups()
    (area,) = tissue.get_measurements(name=c.AREA)
    assert area.value == pytest.approx(case.result.tissue_area_mm2)
    assert area.unit == c.SQUARE_MILLIMETRE


def test_report_references_the_seg_segment_and_the_slide(case, tmp_path) -> None:
    _, path = _write(case, tmp_path)
    sr = hd.sr.srread(path)
    (tumour,) = sr.content.get_planar_roi_measurement_groups()
    ref = tumour.referenced_segmentation_frame
    assert ref is not None
    seg_item = ref[0]
    seg_uids = {i.sop_instance_uid: i for i in case.seg.instances}
    referenced = seg_uids[seg_item.referenced_sop_instance_uid]
    assert seg_item.referenced_sop_class_uid == "1.2.840.10008.5.1.4.1.1.66.4"
    assert referenced.level == 0
    # All frames of the only segment: no frame numbers (TID 1410 row 7).
    assert "ReferencedFrameNumber" not in seg_item.ReferencedSOPSequence[0]
    assert int(seg_item.ReferencedSOPSequence[0].ReferencedSegmentNumber) == 1
    source = ref.source_image_for_segmentation
    assert source.referenced_sop_instance_uid == referenced.source_sop_instance_uid
    # The evidence names the slide and the SEG: a PACS can fetch both.
    evidence = {
        str(i.ReferencedSOPInstanceUID)
        for study in sr.CurrentRequestedProcedureEvidenceSequence
        for series in study.ReferencedSeriesSequence
        for i in series.ReferencedSOPSequence
    }
    assert referenced.sop_instance_uid in evidence
    assert str(case.headers[0].SOPInstanceUID) in evidence


def test_report_names_the_algorithm_and_its_parameters(case, tmp_path) -> None:
    _, path = _write(case, tmp_path)
    sr = hd.sr.srread(path)
    (tumour,) = sr.content.get_planar_roi_measurement_groups()
    texts: dict[str, list[str]] = {}
    for item in tumour[0].ContentSequence:
        if item.ValueType == "TEXT":
            texts.setdefault(item.ConceptNameCodeSequence[0].CodeValue, []).append(item.TextValue)
    assert texts["111001"] == ["UniTumour-UNet"]  # Algorithm Name
    assert texts["111003"] == ["1.2.0"]  # Algorithm Version
    parameters = set(texts["111002"])  # Algorithm Parameters
    assert f"weights_sha256={'ab' * 32}" in parameters
    assert f"model_card_sha256={case.identity.card_sha256}" in parameters
    assert "threshold=0.5" in parameters
    assert "model_mpp_um=1" in parameters
    assert "not_for_clinical_use=true" in parameters
    assert "RESEARCH USE ONLY" in sr.SeriesDescription
    scheme = sr.CodingSchemeIdentificationSequence[0]
    assert scheme.CodingSchemeDesignator == c.LOCAL_SCHEME
    # A device made the observations.
    observer = [
        item
        for item in sr.ContentSequence
        if item.ConceptNameCodeSequence[0].CodeValue == codes.DCM.ObserverType.value
    ]
    assert observer and observer[0].ConceptCodeSequence[0].CodeValue == codes.DCM.Device.value


def test_a_clinical_model_is_not_labelled_research(case, tmp_path) -> None:
    from dataclasses import replace

    clinical = replace(case.identity, not_for_clinical_use=False)
    _, path = _write(case, tmp_path, clinical)
    ds = pydicom.dcmread(path)
    assert "RESEARCH" not in ds.SeriesDescription


def test_retry_gives_the_same_bytes(case, tmp_path) -> None:
    _, first = _write(case, tmp_path / "a")
    _, second = _write(case, tmp_path / "b")
    assert first.read_bytes() == second.read_bytes()


def test_highdicom_refusal_names_the_object(case) -> None:
    from unitumour_dicom.errors import SegmentationError

    with pytest.raises(SegmentationError, match="highdicom refused the measurement report"):
        write_measurement_report(
            source_datasets=case.headers,
            seg=case.seg,
            figures=slide_figures(case.result),
            identity=case.identity,
            settings=case.seg_settings,
            uid_seed=UID_SEED,
            content_datetime=WHEN,
            series_number=0,
        )


def test_seg_of_another_slide_is_refused(case) -> None:
    from dataclasses import replace

    from unitumour_dicom.errors import SegmentationError

    other = replace(
        case.seg,
        instances=[replace(i, source_sop_instance_uid="1.2.3.4") for i in case.seg.instances],
    )
    with pytest.raises(SegmentationError, match="not among the source datasets"):
        write_measurement_report(
            source_datasets=case.headers,
            seg=other,
            figures=slide_figures(case.result),
            identity=case.identity,
            settings=case.seg_settings,
            uid_seed=UID_SEED,
            content_datetime=WHEN,
        )

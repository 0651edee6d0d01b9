"""Bulk annotations of the tumour on a phantom slide: valid by dciodvfy, read back by
highdicom with polygons that rasterise to the mask (Dice >= 0.98 at the mask's resolution)
and areas that add up to the result's, labelled RESEARCH USE ONLY."""

from __future__ import annotations

from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest

from tests.findings.resultkit import UID_SEED, WHEN, dciodvfy_errors
from unitumour_dicom.ann import (
    HOLES_GROUP_LABEL,
    TUMOUR_GROUP_LABEL,
    analysis_raster,
    rasterise,
    trace_contours,
    write_bulk_annotations,
)
from unitumour_dicom.infer.result import InferenceResult
from unitumour_dicom.seg import source_levels
from unitumour_dicom.slide.mask import SlideMask

pytestmark = [pytest.mark.integration, pytest.mark.slow]

#: dciodvfy (dicom3tools, 2022 tables) errors on this ANN that the standard allows.
STANDARD_ALLOWS = {
    # Common Z Coordinate Value (0070,1204) is absent from our 2D annotations (highdicom writes
    # it only for 3D coordinates, and the test below checks that it is absent); dciodvfy's
    # condition "only valid for AnnotationCoordinateType of 3D" fires on the absent attribute
    # (it prints its value as empty). PS3.3 C.37.1.2, Table C.37.1-2: Type 1C, required only
    # if the coordinate type is 3D with one common Z.
    "Error - Only valid for AnnotationCoordinateType of 3D - attribute "
    "<CommonZCoordinateValue> = <>": "PS3.3 C.37.1.2 (attribute absent)",
}


def dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(bool), b.astype(bool)
    total = a.sum() + b.sum()
    return 1.0 if total == 0 else 2.0 * float((a & b).sum()) / float(total)


def _write(case, tmp_path: Path, result=None, **kwargs):  # type: ignore[no-untyped-def]
    ann = write_bulk_annotations(
        source_datasets=case.headers,
        result=result or case.result,
        identity=case.identity,
        settings=case.seg_settings,
        uid_seed=UID_SEED,
        content_datetime=WHEN,
        **kwargs,
    )
    assert ann is not None
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "ann.dcm"
    ann.save_as(path, enforce_file_format=True)
    return path


def _read_back(path: Path, mask: SlideMask, base) -> np.ndarray:  # type: ignore[no-untyped-def]
    """The annotation's tumour on the mask's raster: base-level coordinates (origin at the
    top-left corner of the top-left pixel) to mask pixel-centre coordinates."""
    ann = hd.ann.annread(path)
    polygons = {}
    for group in ann.get_annotation_groups():
        assert group.graphic_type == hd.ann.GraphicTypeValues.POLYGON
        scale = np.array([base.column_spacing_um, base.row_spacing_um]) / mask.mpp
        polygons[group.label] = [
            np.asarray(p, np.float64) * scale - 0.5 for p in group.get_graphic_data("2D")
        ]
    return rasterise(polygons[TUMOUR_GROUP_LABEL], polygons.get(HOLES_GROUP_LABEL, []), mask.shape)


def test_annotations_are_valid_dicom(case, tmp_path) -> None:
    path = _write(case, tmp_path)
    assert dciodvfy_errors(path, STANDARD_ALLOWS) == []
    ds = pydicom.dcmread(path)
    for group in ds.AnnotationGroupSequence:
        assert "CommonZCoordinateValue" not in group


def test_polygons_rasterise_to_the_mask(case, tmp_path) -> None:
    path = _write(case, tmp_path)
    base = source_levels(case.headers)[0]
    mask = case.result.tumour
    drawn = _read_back(path, mask, base)
    score = dice(drawn, mask.array)
    assert score >= 0.98, f"Dice {score:.4f}"


def test_reduced_analysis_raster_still_follows_the_mask(case, tmp_path) -> None:
    """A mask larger than max_side is traced at a coarser, bounded raster (here 4 mask
    pixels a side) and scaled back: the shape survives at the mask's resolution."""
    path = _write(case, tmp_path, max_side=256)
    ds = pydicom.dcmread(path)
    assert "4 mask pixel(s) per side" in ds.AnnotationGroupSequence[0].AnnotationGroupDescription
    base = source_levels(case.headers)[0]
    score = dice(_read_back(path, case.result.tumour, base), case.result.tumour.array)
    assert score >= 0.95, f"Dice {score:.4f}"


def test_holes_are_polygons_of_their_own(case, tmp_path) -> None:
    """A ring of tumour: one tumour polygon, one hole polygon, and the hole stays empty."""
    mask = case.result.tumour
    yy, xx = np.mgrid[0 : mask.shape[0], 0 : mask.shape[1]]
    r2 = (yy - mask.shape[0] / 2) ** 2 + (xx - mask.shape[1] / 2) ** 2
    ring = SlideMask((r2 <= 200**2) & (r2 > 80**2) | (r2 <= 20**2), mask.mpp)
    result = InferenceResult(
        tumour=ring,
        probability=ring,
        tissue=case.result.tissue,
        tumour_area_mm2=ring.area_mm2(),
        tissue_area_mm2=case.result.tissue_area_mm2,
        timings={},
        tiles=0,
        device="none",
    )
    path = _write(case, tmp_path, result=result)
    ann = hd.ann.annread(path)
    groups = {g.label: g for g in ann.get_annotation_groups()}
    assert len(groups[TUMOUR_GROUP_LABEL].get_graphic_data("2D")) == 2  # ring and island
    assert len(groups[HOLES_GROUP_LABEL].get_graphic_data("2D")) == 1
    base = source_levels(case.headers)[0]
    assert dice(_read_back(path, ring, base), ring.array) >= 0.98


def test_areas_per_polygon_add_up_to_the_result(case, tmp_path) -> None:
    path = _write(case, tmp_path)
    ann = hd.ann.annread(path)
    groups = {g.label: g for g in ann.get_annotation_groups()}
    totals = {}
    for label, group in groups.items():
        names, values, units = group.get_measurements()
        assert [n.value for n in names] == ["42798000"] and [u.value for u in units] == ["mm2"]
        assert values.shape == (len(group.get_graphic_data("2D")), 1)
        assert (values > 0).all()
        totals[label] = float(np.sum(values))
    area = totals[TUMOUR_GROUP_LABEL] - totals.get(HOLES_GROUP_LABEL, 0.0)
    # Polygons run through boundary pixel centres: half a pixel inside the mask's edge.
    assert area == pytest.approx(case.result.tumour_area_mm2, rel=0.03)


def test_labels_and_references(case, tmp_path) -> None:
    path = _write(case, tmp_path)
    ds = pydicom.dcmread(path)
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.91.1"
    assert ds.StudyInstanceUID == case.phantom.study_uid
    assert ds.AnnotationCoordinateType == "2D"
    assert ds.ReferencedImageSequence[0].ReferencedSOPInstanceUID == case.headers[0].SOPInstanceUID
    assert ds.SeriesDescription.startswith("RESEARCH USE ONLY ")
    assert ds.ContentDescription.startswith("RESEARCH USE ONLY ")
    assert ds.ContentLabel == "RUO_TUMOUR"
    group = ds.AnnotationGroupSequence[0]
    assert group.AnnotationGroupAlgorithmIdentificationSequence[0].AlgorithmName == (
        "UniTumour-UNet"
    )


def test_analysis_raster_is_bounded_and_majority() -> None:
    array = np.zeros((1000, 10), bool)
    array[:, :5] = True
    raster, factor = analysis_raster(SlideMask(array, 1.0), max_side=100)
    assert factor == 10 and raster.shape == (100, 1)
    assert raster.all()  # 5 of 10 pixels: half counts as tumour
    contours = trace_contours(SlideMask(array, 1.0), max_side=100)
    assert contours.mpp == 10.0 and len(contours.tumour) == 1


def test_retry_gives_the_same_bytes(case, tmp_path) -> None:
    assert _write(case, tmp_path / "a").read_bytes() == _write(case, tmp_path / "b").read_bytes()

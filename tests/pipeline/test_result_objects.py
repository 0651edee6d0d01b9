"""One result, many objects: a phantom through ``unitumour process`` yields the SEG pyramid,
the SR, the bulk annotations and the key image; each passes dciodvfy (less the known false
positives of its tables, listed in each writer's tests); highdicom reads the SR and the
annotations back with the job's recorded areas; the annotations' polygons rasterised cover the
SEG's tumour (Dice >= 0.98); every object names the model and says RESEARCH USE ONLY, as its
card does."""

from __future__ import annotations

import json
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
from sqlalchemy import select

from tests.ann.test_annotations import STANDARD_ALLOWS as ANN_ALLOWS
from tests.findings.resultkit import dciodvfy_errors
from tests.jobs.servicekit import phantom_folders
from tests.keyimage.test_key_image import STANDARD_ALLOWS as SC_ALLOWS
from tests.pipeline.test_process_cmd import all_tumour_config, run
from tests.seg.dciodvfy import dciodvfy_errors as seg_dciodvfy_errors
from tests.sr.test_report import STANDARD_ALLOWS as SR_ALLOWS
from unitumour_dicom.ann import HOLES_GROUP_LABEL, TUMOUR_GROUP_LABEL, rasterise
from unitumour_dicom.config import load_settings
from unitumour_dicom.db import Job, Result
from unitumour_dicom.model.card import ModelCard
from unitumour_dicom.runtime import Runtime
from unitumour_dicom.seg.overlay import read_seg_mask, seg_levels
from unitumour_dicom.sr import concepts as c

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SOP_CLASS_OF_KIND = {
    "seg": "1.2.840.10008.5.1.4.1.1.66.4",
    "sr": "1.2.840.10008.5.1.4.1.1.88.34",
    "ann": "1.2.840.10008.5.1.4.1.1.91.1",
    "key_image": "1.2.840.10008.5.1.4.1.1.7",
}


def dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(bool), b.astype(bool)
    return 2.0 * float((a & b).sum()) / float(a.sum() + b.sum())


@pytest.fixture(scope="module")
def processed(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One phantom processed once for the module's tests: the files written, the rows."""
    tmp_path = tmp_path_factory.mktemp("objects")
    config = all_tumour_config.__wrapped__(tmp_path)  # type: ignore[attr-defined]
    [slide] = phantom_folders(tmp_path / "in", 1)
    result = run(config, slide, "--out", tmp_path / "out", "--json")
    assert result.exit_code == 0, result.output
    written = [Path(p) for p in json.loads(result.stdout)["written"]]
    settings = load_settings(config)
    with Runtime(settings).session() as session:
        row = session.scalars(select(Result)).one()
        job = session.get(Job, row.job_id)
        rows = {
            "tumour_area_mm2": row.tumour_area_mm2,
            "tissue_area_mm2": row.tissue_area_mm2,
            "seg_series": row.series_instance_uid,
            "kinds": [(i.kind, i.sop_instance_uid, i.series_instance_uid) for i in row.instances],
            "card": ModelCard.from_dict(job.model.card),
            "weights_sha256": job.model.weights_sha256,
        }
    by_kind: dict[str, list[Path]] = {}
    for path in written:
        kind = "seg" if path.name.startswith("level") else path.name.split("-")[0]
        by_kind.setdefault(kind, []).append(path)
    return {"slide": slide, "by_kind": by_kind, **rows}


def test_every_kind_is_written_recorded_and_in_the_slides_study(processed) -> None:
    by_kind = processed["by_kind"]
    assert {k: len(v) for k, v in by_kind.items()} == {"seg": 3, "sr": 1, "ann": 1, "key_image": 1}
    assert [k for k, _, _ in processed["kinds"]] == ["seg"] * 3 + ["sr", "ann", "key_image"]
    source = pydicom.dcmread(processed["slide"] / "level-0.dcm", stop_before_pixels=True)
    series = set()
    for kind, paths in by_kind.items():
        for path in paths:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
            assert ds.SOPClassUID == SOP_CLASS_OF_KIND[kind]
            assert ds.StudyInstanceUID == source.StudyInstanceUID
            assert ds.PatientID == source.PatientID
            assert (kind, ds.SOPInstanceUID, ds.SeriesInstanceUID) in processed["kinds"]
            series.add((kind, ds.SeriesInstanceUID))
    assert len(series) == 4  # a series per kind
    assert ("seg", processed["seg_series"]) in series


@pytest.mark.parametrize("kind", ["seg", "sr", "ann", "key_image"])
def test_each_object_passes_dciodvfy(processed, kind: str) -> None:
    for path in processed["by_kind"][kind]:
        if kind == "seg":
            errors = seg_dciodvfy_errors(path)
        else:
            allowed = {"sr": SR_ALLOWS, "ann": ANN_ALLOWS, "key_image": SC_ALLOWS}[kind]
            errors = dciodvfy_errors(path, allowed)
        assert errors == [], f"{kind} {path.name}"


def test_sr_reads_back_with_the_recorded_areas(processed) -> None:
    [path] = processed["by_kind"]["sr"]
    sr = hd.sr.srread(path)
    (tumour,) = sr.content.get_planar_roi_measurement_groups()
    values = {
        (m.name.value, m.derivation.value if m.derivation else None): m.value
        for m in tumour.get_measurements()
    }
    assert values[(c.AREA.value, None)] == pytest.approx(processed["tumour_area_mm2"])
    fraction = 100 * processed["tumour_area_mm2"] / processed["tissue_area_mm2"]
    assert values[(c.TUMOUR_FRACTION.value, None)] == pytest.approx(fraction)
    (tissue,) = sr.content.get_image_measurement_groups()
    (area,) = tissue.get_measurements(name=c.AREA)
    assert area.value == pytest.approx(processed["tissue_area_mm2"])
    # its tumour is the segment of the SEG's base level that the same job wrote
    ref = tumour.referenced_segmentation_frame
    assert ref is not None
    seg_uids = {uid for kind, uid, _ in processed["kinds"] if kind == "seg"}
    assert ref[0].referenced_sop_instance_uid in seg_uids


def _ann_polygons(path: Path) -> tuple[dict[str, list[np.ndarray]], dict[str, np.ndarray]]:
    ann = hd.ann.annread(path)
    polygons, areas = {}, {}
    for group in ann.get_annotation_groups():
        polygons[group.label] = [np.asarray(p, np.float64) for p in group.get_graphic_data("2D")]
        names, values, units = group.get_measurements()
        assert [n.value for n in names] == [c.AREA.value] and units[0].value == "mm2"
        areas[group.label] = values[:, 0]
    return polygons, areas


def test_annotations_read_back_with_the_recorded_area_and_cover_the_seg(processed) -> None:
    [path] = processed["by_kind"]["ann"]
    polygons, areas = _ann_polygons(path)
    net_area = areas[TUMOUR_GROUP_LABEL].sum() - areas.get(HOLES_GROUP_LABEL, np.zeros(1)).sum()
    # polygons run through boundary pixel centres: a little less than the pixels' area
    assert net_area == pytest.approx(processed["tumour_area_mm2"], rel=0.02)
    # rasterised on the SEG's base level (coordinates are base-level pixels, origin at the
    # top-left corner of the top-left pixel), against the SEG's own tumour there
    levels = seg_levels(processed["by_kind"]["seg"])
    base = max(levels, key=lambda lv: lv.columns)
    seg = read_seg_mask(base) > 0
    centred = {k: [p - 0.5 for p in v] for k, v in polygons.items()}
    drawn = rasterise(
        centred[TUMOUR_GROUP_LABEL], centred.get(HOLES_GROUP_LABEL, []), (base.rows, base.columns)
    )
    assert seg.sum() > 0.1 * seg.size  # the model found tumour: there is something to cover
    score = dice(drawn, seg)
    assert score >= 0.98, f"Dice {score:.4f}"


def test_every_object_names_the_model_and_says_research_use_only(processed) -> None:
    card = processed["card"]
    assert card.not_for_clinical_use
    [seg_base] = [p for p in processed["by_kind"]["seg"] if p.name.startswith("level0")]
    seg = pydicom.dcmread(seg_base, stop_before_pixels=True)
    assert seg.SeriesDescription.startswith("RESEARCH USE ONLY ")
    assert seg.ContentLabel == "RUO_TUMOUR"
    assert seg.ContentDescription.startswith("RESEARCH USE ONLY ")
    algorithm = seg.SegmentSequence[0].SegmentationAlgorithmIdentificationSequence[0]
    assert algorithm.AlgorithmName == card.name and algorithm.AlgorithmVersion == card.version
    parameters = str(algorithm.AlgorithmParameters)
    assert f"weights_sha256={processed['weights_sha256']}" in parameters
    assert "not_for_clinical_use=true" in parameters and "model_card_sha256=" in parameters
    for kind in ("sr", "ann", "key_image"):
        [path] = processed["by_kind"][kind]
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        assert ds.SeriesDescription.startswith("RESEARCH USE ONLY "), kind
        assert card.name in ds.SeriesDescription, kind
    ann = pydicom.dcmread(processed["by_kind"]["ann"][0], stop_before_pixels=True)
    assert ann.ContentLabel.startswith("RUO_")

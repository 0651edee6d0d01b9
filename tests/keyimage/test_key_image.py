"""The key image of a phantom slide: valid by dciodvfy, readable, in the slide's patient and
study and a new series, with the outline where the tumour is and the figures burned in."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest

from tests.findings.resultkit import UID_SEED, WHEN, dciodvfy_errors
from unitumour_dicom.findings import slide_figures
from unitumour_dicom.keyimage import read_thumbnail, tumour_on_thumbnail, write_key_image
from unitumour_dicom.keyimage.picture import OUTLINE_RGB, RESEARCH_RGB

pytestmark = [pytest.mark.integration, pytest.mark.slow]

#: dciodvfy (dicom3tools, 2022 tables) errors on this SC that the standard allows; none so far.
STANDARD_ALLOWS: dict[str, str] = {}


@pytest.fixture(scope="module")
def thumbnail(case) -> np.ndarray:  # type: ignore[no-untyped-def]
    return read_thumbnail(case.phantom.instance_paths, max_side=512)


def _write(case, thumbnail, tmp_path: Path, identity=None) -> Path:  # type: ignore[no-untyped-def]
    sc = write_key_image(
        source_datasets=case.headers,
        thumbnail=thumbnail,
        result=case.result,
        figures=slide_figures(case.result),
        identity=identity or case.identity,
        settings=case.seg_settings,
        uid_seed=UID_SEED,
        content_datetime=WHEN,
    )
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "key.dcm"
    sc.save_as(path, enforce_file_format=True)
    return path


def test_key_image_is_valid_dicom(case, thumbnail, tmp_path) -> None:
    assert dciodvfy_errors(_write(case, thumbnail, tmp_path), STANDARD_ALLOWS) == []


def test_key_image_reads_back_in_the_slides_study(case, thumbnail, tmp_path) -> None:
    ds = pydicom.dcmread(_write(case, thumbnail, tmp_path))
    source = case.headers[0]
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.7"
    assert ds.StudyInstanceUID == source.StudyInstanceUID == case.phantom.study_uid
    assert ds.PatientID == source.PatientID
    assert ds.PatientName == source.PatientName
    assert ds.SeriesInstanceUID not in (source.SeriesInstanceUID, case.seg.series_instance_uid)
    assert ds.SourceImageSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID
    assert ds.ContainerIdentifier == source.ContainerIdentifier
    assert ds.BurnedInAnnotation == "YES"
    assert ds.SeriesDescription.startswith("RESEARCH USE ONLY ")
    pixels = ds.pixel_array
    assert ds.PhotometricInterpretation == "RGB" and pixels.shape[2] == 3
    # The thumbnail is on top, unchanged outside the outline; the panel is below it.
    h, w = thumbnail.shape[:2]
    assert pixels.shape[0] > h and pixels.shape[1] >= w
    outline = np.all(pixels[:h, :w] == OUTLINE_RGB, axis=2)
    assert outline.any()
    same = np.all(pixels[:h, :w] == thumbnail, axis=2)
    assert (same | outline).mean() > 0.99
    # Research use is burned in, in red, in the panel.
    assert np.all(pixels[h:] == RESEARCH_RGB, axis=2).any()


def test_outline_lies_on_the_tumour_edge(case, thumbnail, tmp_path) -> None:
    ds = pydicom.dcmread(_write(case, thumbnail, tmp_path))
    h, w = thumbnail.shape[:2]
    outline = np.all(ds.pixel_array[:h, :w] == OUTLINE_RGB, axis=2)
    tumour = tumour_on_thumbnail(case.result.tumour, h, w)
    from scipy import ndimage

    edge = tumour & ~ndimage.binary_erosion(tumour)
    near_edge = ndimage.binary_dilation(edge, iterations=3)
    assert outline[near_edge].sum() / outline.sum() > 0.95


def test_clinical_model_burns_in_no_research_banner(case, thumbnail, tmp_path) -> None:
    from dataclasses import replace

    clinical = replace(case.identity, not_for_clinical_use=False)
    ds = pydicom.dcmread(_write(case, thumbnail, tmp_path, clinical))
    h = thumbnail.shape[0]
    assert not np.all(ds.pixel_array[h:] == RESEARCH_RGB, axis=2).any()
    assert "RESEARCH" not in ds.SeriesDescription


def test_retry_gives_the_same_bytes(case, thumbnail, tmp_path) -> None:
    first = _write(case, thumbnail, tmp_path / "a").read_bytes()
    assert first == _write(case, thumbnail, tmp_path / "b").read_bytes()

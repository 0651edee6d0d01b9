"""Every GET of the app that shows patient data, with the Accept header a client sends."""

from __future__ import annotations

import pydicom

from .conftest import SeededCase

JSON = "application/dicom+json"
FRAMES = 'multipart/related; type="application/octet-stream"; transfer-syntax=*'
INSTANCES = 'multipart/related; type="application/dicom"'


def base_level(case: SeededCase) -> str:
    """The SOP Instance UID of the slide's base level (a multi-frame instance)."""
    for uid, path in case.instance_files.items():
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        if "ORIGINAL" in ds.ImageType and int(ds.get("NumberOfFrames", 1)) > 1:
            return uid
    raise AssertionError("no base level")


def every_get(case: SeededCase) -> list[tuple[str, str]]:
    sop = base_level(case)
    series = f"/dicomweb/studies/{case.study_uid}/series/{case.series_uid}"
    instance = f"{series}/instances/{sop}"
    return [
        ("/cases", "text/html"),
        (f"/cases/{case.slide_id}", "text/html"),
        (f"/cases/{case.slide_id}/viewer", "text/html"),
        (f"/cases/{case.slide_id}/overlay.png", "image/png"),
        ("/api/cases", "application/json"),
        (f"/api/cases/{case.slide_id}", "application/json"),
        (f"/api/cases/{case.slide_id}/overlay.png", "image/png"),
        ("/dicomweb/studies", JSON),
        ("/dicomweb/series", JSON),
        ("/dicomweb/instances", JSON),
        (f"/dicomweb/studies/{case.study_uid}/series", JSON),
        (f"/dicomweb/studies/{case.study_uid}/instances", JSON),
        (f"{series}/instances", JSON),
        (f"/dicomweb/studies/{case.study_uid}/metadata", JSON),
        (f"{series}/metadata", JSON),
        (f"{instance}/metadata", JSON),
        (f"/dicomweb/studies/{case.study_uid}", INSTANCES),
        (series, INSTANCES),
        (instance, INSTANCES),
        (f"{instance}/frames/1,2", FRAMES),
        (f"{instance}/frames/1", FRAMES),
        (f"{instance}/bulkdata/7FE00010", FRAMES),
        (f"{instance}/bulkdata/00480105/0/00282000", "application/octet-stream"),
    ]

"""The Host header is the client's to forge: it must never end up in what the app sends back
(DICOMweb RetrieveURL, BulkDataURI and Content-Location, pages, redirects). With
web.public_url unset the app writes root-relative URLs; with it set, absolute ones from it."""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from unitumour_services.web import create_app

from unitumour_dicom.runtime import Runtime

from .access_urls import every_get
from .conftest import Dispatches, SeededCase, login

pytestmark = [pytest.mark.integration]

FORGED = "evil.example"


def _responses(client: TestClient, case: SeededCase) -> list[tuple[str, str]]:
    """(url, everything sent back as text) for every GET, with a forged Host."""
    out = []
    for url, accept in every_get(case):
        r = client.get(url, headers={"Host": FORGED, "Accept": accept}, follow_redirects=False)
        assert r.status_code in (200, 303), (url, r.status_code, r.text[:300])
        text = r.content.decode("latin-1") + "\n".join(f"{k}: {v}" for k, v in r.headers.items())
        out.append((url, text))
    return out


def test_a_forged_host_never_appears_in_a_response(client: TestClient, case: SeededCase) -> None:
    login(client, "vic")
    responses = _responses(client, case)
    assert len(responses) > 15
    for url, text in responses:
        assert FORGED not in text, url
    metadata = client.get(
        f"/dicomweb/studies/{case.study_uid}/series/{case.series_uid}/metadata",
        headers={"Host": FORGED},
    ).json()
    uri = metadata[0]["7FE00010"]["BulkDataURI"]
    assert uri.startswith(f"/dicomweb/studies/{case.study_uid}/series/"), uri
    # the relative URI is one the app answers
    pixels = client.get(uri, headers={"Accept": "multipart/related; type=application/octet-stream"})
    assert pixels.status_code == 200


def test_public_url_makes_absolute_urls(
    web_runtime: Runtime, accounts: dict[str, str], dispatches: Dispatches, case: SeededCase
) -> None:
    settings = web_runtime.settings.model_copy(
        update={
            "web": web_runtime.settings.web.model_copy(
                update={"public_url": "https://slides.hospital.example/unitumour/"}
            )
        }
    )
    app: FastAPI = create_app(settings, runtime=web_runtime)
    with TestClient(app) as client:
        login(client, "vic")
        studies = client.get("/dicomweb/studies", headers={"Host": FORGED})
        assert FORGED not in studies.text
        assert studies.json()[0]["00081190"]["Value"] == [
            f"https://slides.hospital.example/unitumour/dicomweb/studies/{case.study_uid}"
        ]

"""Patient identifiers never reach the logs: the HTTP access log (uvicorn's, captured from a
real server) shows QIDO PatientID/PatientName and the case list's search values redacted,
log-in redirects included; our own log lines (audit messages) hold none either."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator

import pytest
import requests
import uvicorn
from fastapi import FastAPI

from unitumour_dicom.access import REDACTED, redact_query, redact_url

from .conftest import PASSWORD, SeededCase, free_port

pytestmark = [pytest.mark.integration]

SECRETS = ("phantom-web", "phantom^web", "phantom%5eweb", "phantom")


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture
def logged_server(app: FastAPI) -> Iterator[tuple[str, _Capture]]:
    """The app under uvicorn with its access log on (INFO), as `unitumour web` runs it."""
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="info", lifespan="off")
    server = uvicorn.Server(config)
    capture = _Capture()
    access = logging.getLogger("uvicorn.access")
    access.addHandler(capture)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}", capture
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        access.removeHandler(capture)
        logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
        logging.getLogger("uvicorn.error").setLevel(logging.WARNING)


def test_access_log_never_shows_patient_identifiers(
    logged_server: tuple[str, _Capture], case: SeededCase, caplog: pytest.LogCaptureFixture
) -> None:
    url, capture = logged_server
    caplog.set_level(logging.DEBUG)
    anonymous = requests.Session()
    # a page asked for before log-in: the redirect carries the query in next=
    r = anonymous.get(f"{url}/cases?patient_id=PHANTOM-WEB&q=Phantom", allow_redirects=True)
    assert r.status_code == 200 and "/login" in r.url
    s = requests.Session()
    assert s.post(f"{url}/api/login", json={"username": "vic", "password": PASSWORD}).ok
    for path, params in (
        ("/dicomweb/studies", {"PatientID": "PHANTOM-WEB", "PatientName": "Phantom^Web"}),
        ("/dicomweb/studies", {"00100020": "PHANTOM-WEB", "00100010": "Phantom*"}),
        ("/dicomweb/series", {"patientid": "PHANTOM*", "Modality": "SM"}),
        (f"/dicomweb/studies/{case.study_uid}/instances", {"PatientName": "Phantom^Web"}),
        ("/cases", {"patient_id": "PHANTOM-WEB", "q": "Phantom"}),
        ("/api/cases", {"q": "PHANTOM-WEB", "accession_number": "ACC-WEB-1"}),
    ):
        r = s.get(url + path, params=params)
        assert r.status_code == 200, (path, r.text[:200])
        assert "PHANTOM-WEB" in r.text  # the answer shows the patient...
    time.sleep(0.2)
    lines = capture.lines
    assert len(lines) >= 8, lines
    assert sum(REDACTED in line for line in lines) >= 7, lines
    assert any("Modality=SM" in line for line in lines)  # other parameters stay readable
    for line in lines:  # ...the access log does not
        low = line.lower()
        assert not any(secret in low for secret in SECRETS), line
        assert "acc-web-1" not in low, line
    # the server's own loggers (the client's, urllib3's, log what it asked for)
    ours = [r.getMessage() for r in caplog.records if r.name.startswith(("unitumour", "uvicorn"))]
    assert any("viewed" in m for m in ours)  # the audit messages are logged...
    for message in ours:  # ...without a patient identifier
        low = message.lower()
        assert not any(secret in low for secret in SECRETS), message


def test_redact_query() -> None:
    assert redact_query("PatientID=P1&limit=5") == f"PatientID={REDACTED}&limit=5"
    assert redact_query("00100020=P1&00100010=Doe%5EJane&00100030=19700101") == (
        f"00100020={REDACTED}&00100010={REDACTED}&00100030={REDACTED}"
    )
    assert redact_query("PATIENTNAME=x&OtherPatientIDs=y&IssuerOfPatientID=z") == (
        f"PATIENTNAME={REDACTED}&OtherPatientIDs={REDACTED}&IssuerOfPatientID={REDACTED}"
    )
    assert redact_query("includefield=PatientName&PatientID=") == (
        "includefield=PatientName&PatientID="
    )
    assert redact_query("AccessionNumber=A1&00080050=A2&StudyDate=20240101") == (
        f"AccessionNumber={REDACTED}&00080050={REDACTED}&StudyDate=20240101"
    )
    nested = "next=/cases%3Fpatient_id%3DP-1%26page%3D2"
    assert redact_url(f"/login?{nested}") == (
        f"/login?next=/cases%3Fpatient_id%3D{REDACTED}%26page%3D2"
    )
    assert redact_url("/cases/3") == "/cases/3"

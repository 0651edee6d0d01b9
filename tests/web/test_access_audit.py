"""The access audit, on SQLite and PostgreSQL: every view of patient data (case pages,
pictures, API records, the case list, every DICOMweb answer) is one audit row saying who,
what, when and from where; a viewer's tile requests are coalesced; the case page lists who
looked at it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from unitumour_services.web import create_app

from unitumour_dicom.access import AccessCoalescer
from unitumour_dicom.config import Settings
from unitumour_dicom.db import AuditEvent, AuditEventName
from unitumour_dicom.runtime import Runtime
from unitumour_dicom.synthetic import PhantomSlide

from .access_urls import FRAMES, JSON, base_level, every_get
from .conftest import SeededCase, login, plain_http, seed_case, with_viewer

pytestmark = [pytest.mark.integration]


@pytest.fixture
def web_settings(settings: Settings) -> Settings:
    """The audit rows are SQL (JSON details): both database backends."""
    return plain_http(with_viewer(settings))


def access_rows(runtime: Runtime) -> list[AuditEvent]:
    with runtime.session() as db:
        rows = list(
            db.scalars(
                select(AuditEvent)
                .where(AuditEvent.event == AuditEventName.ACCESS_VIEWED)
                .order_by(AuditEvent.id)
            )
        )
        db.expunge_all()
    return rows


def _view_of(url: str) -> str:
    if url.startswith("/dicomweb"):
        for part, view in (
            ("/frames/", "dicomweb.frames"),
            ("/bulkdata/", "dicomweb.bulkdata"),
            ("/metadata", "dicomweb.metadata"),
        ):
            if part in url:
                return view
        tail = url.rstrip("/").rsplit("/", 1)[-1]
        return (
            "dicomweb.search" if tail in ("studies", "series", "instances") else "dicomweb.retrieve"
        )
    if url == "/cases" or url == "/api/cases":
        return "cases.list"
    if url.endswith("overlay.png"):
        return "case.picture"
    if url.endswith("/viewer"):
        return "case.viewer"
    return "case.record" if url.startswith("/api/") else "case.page"


def test_every_view_of_patient_data_is_one_audit_row(
    client: TestClient, web_runtime: Runtime, case: SeededCase
) -> None:
    login(client, "vic")
    seen_instances: set[tuple[str, str]] = set()
    for url, accept in every_get(case):
        before = len(access_rows(web_runtime))
        r = client.get(url, headers={"Accept": accept})
        assert r.status_code == 200, (url, r.text[:300])
        rows = access_rows(web_runtime)
        view = _view_of(url)
        coalesced = view in ("dicomweb.frames", "dicomweb.bulkdata") and (
            (view, url.split("/instances/")[1].split("/")[0]) in seen_instances
        )
        assert len(rows) == before + (0 if coalesced else 1), url
        if coalesced:
            continue
        if view in ("dicomweb.frames", "dicomweb.bulkdata"):
            seen_instances.add((view, url.split("/instances/")[1].split("/")[0]))
        row = rows[-1]
        details = row.details or {}
        assert row.actor == "vic" and details["user_id"] >= 1, url
        assert details["view"] == view, url
        assert details["source"] == "testclient", url  # the client address
        assert row.at is not None
        assert row.slide_id == case.slide_id, url  # one case seen: the row is the case's
        assert details["slide_ids"] == [case.slide_id], url
        assert details["patient_ids"] == ["PHANTOM-WEB"], url
        if view != "cases.list":
            assert case.study_uid in details["study_uids"], url
        # the message is logged as well: no patient identifier in it
        assert "PHANTOM" not in row.message and "Phantom" not in row.message, url
    sop = base_level(case)
    frames = [r for r in access_rows(web_runtime) if r.details["view"] == "dicomweb.frames"]
    assert len(frames) == 1 and frames[0].details["sop_uids"] == [sop]
    assert frames[0].details["frames"] == "1,2"


def test_refused_requests_show_nothing_and_write_no_access_row(
    client: TestClient, web_runtime: Runtime, case: SeededCase
) -> None:
    login(client, "vic")
    base = f"/dicomweb/studies/{case.study_uid}/series/{case.series_uid}/instances"
    for url in (
        f"{base}/{base_level(case)}/frames/1,1",
        "/dicomweb/studies/1.2.3/metadata",
        f"/cases/{case.slide_id + 99}",
        f"/api/cases/{case.slide_id + 99}",
    ):
        assert client.get(url, headers={"Accept": FRAMES}).status_code in (400, 404, 406), url
    assert access_rows(web_runtime) == []


def test_frames_coalesce_per_user_and_instance_within_the_window(
    web_runtime: Runtime, accounts: dict[str, str], case: SeededCase
) -> None:
    sop = base_level(case)
    url = f"/dicomweb/studies/{case.study_uid}/series/{case.series_uid}/instances/{sop}/frames"
    app = create_app(web_runtime.settings, runtime=web_runtime)
    with TestClient(app) as vic, TestClient(app) as ada:
        login(vic, "vic")
        login(ada, "ada")
        for n in (1, 2, 3):
            assert vic.get(f"{url}/{n}", headers={"Accept": FRAMES}).status_code == 200
        assert ada.get(f"{url}/1", headers={"Accept": FRAMES}).status_code == 200
    rows = access_rows(web_runtime)
    assert [(r.actor, r.details["frames"]) for r in rows] == [("vic", "1"), ("ada", "1")]
    # with a window of 0, every request is a row
    settings = web_runtime.settings.model_copy(
        update={"web": web_runtime.settings.web.model_copy(update={"access_audit_window_s": 0})}
    )
    app2: FastAPI = create_app(settings, runtime=web_runtime)
    with TestClient(app2) as vic:
        login(vic, "vic")
        for n in (1, 2):
            assert vic.get(f"{url}/{n}", headers={"Accept": FRAMES}).status_code == 200
    assert len(access_rows(web_runtime)) == 4


def test_coalescer_window() -> None:
    c = AccessCoalescer(window_s=60, max_entries=2)
    assert c.due("vic", "a", now=0.0)
    assert not c.due("vic", "a", now=59.0)
    assert c.due("ada", "a", now=59.0)  # per user
    assert c.due("vic", "a", now=61.0)  # a new window
    assert c.due("vic", "b", now=61.0) and c.due("vic", "c", now=61.0)  # "a" of vic evicted
    assert c.due("ada", "a", now=62.0)  # evicted too: bounded memory
    c.forget("vic", "c")
    assert c.due("vic", "c", now=62.0)


def test_case_page_lists_who_looked_at_it(
    client: TestClient, web_runtime: Runtime, accounts: dict[str, str], case: SeededCase
) -> None:
    sop = base_level(case)
    app = client.app
    with TestClient(app) as vic:  # type: ignore[arg-type]
        login(vic, "vic")
        frames = (
            f"/dicomweb/studies/{case.study_uid}/series/{case.series_uid}/instances/{sop}/frames/1"
        )
        assert vic.get(frames, headers={"Accept": FRAMES}).status_code == 200
        assert vic.get(f"/api/cases/{case.slide_id}").status_code == 200
    login(client, "ada")
    page = client.get(f"/cases/{case.slide_id}")
    assert page.status_code == 200
    section = page.text.split('<section id="access">')[1].split("</section>")[0]
    assert "<td>vic</td>" in section and "<td>ada</td>" in section
    assert f"DICOMweb frames of an instance (case {case.slide_id})" in section
    assert f"the API record of case {case.slide_id}" in section
    assert f"the page of case {case.slide_id}" in section
    assert "<td>testclient</td>" in section
    record = client.get(f"/api/cases/{case.slide_id}").json()
    assert [(a["user"], a["view"]) for a in record["access"]] == [
        ("ada", "case.record"),
        ("ada", "case.page"),
        ("vic", "case.record"),
        ("vic", "dicomweb.frames"),
    ]
    assert all(a["source"] == "testclient" for a in record["access"])
    # the case's other audit events stay readable: accesses are listed apart
    assert AuditEventName.ACCESS_VIEWED not in {e["event"] for e in record["audit"]}


def test_a_search_records_every_case_it_showed(
    client: TestClient,
    web_runtime: Runtime,
    case: SeededCase,
    phantoms: Callable[[int], tuple[PhantomSlide, list[Path]]],
) -> None:
    slide, seg = phantoms(21)
    other = seed_case(web_runtime, slide, seg, patient_id="P-OTHER", patient_name="Other^Pat")
    login(client, "vic")
    assert len(client.get("/dicomweb/studies", headers={"Accept": JSON}).json()) == 2
    row = access_rows(web_runtime)[-1]
    assert row.slide_id is None  # two cases: the row names both in its details
    assert sorted(row.details["slide_ids"]) == sorted([case.slide_id, other.slide_id])
    assert sorted(row.details["patient_ids"]) == ["P-OTHER", "PHANTOM-WEB"]
    assert sorted(row.details["study_uids"]) == sorted([case.study_uid, other.study_uid])
    found = client.get("/dicomweb/series", params={"PatientID": "P-OTHER"}).json()
    assert {s["0020000D"]["Value"][0] for s in found} == {other.study_uid}
    row = access_rows(web_runtime)[-1]
    assert row.slide_id == other.slide_id and row.details["view"] == "dicomweb.search"
    assert row.details["query"] == [["PatientID", "P-OTHER"]]  # in the database, not logs
    assert row.details["series_uids"] and row.details["patient_ids"] == ["P-OTHER"]
    assert client.get("/dicomweb/studies", params={"PatientID": "NOBODY"}).json() == []
    row = access_rows(web_runtime)[-1]  # a search that found nothing is on record too
    assert row.slide_id is None and "slide_ids" not in row.details
    assert row.details["query"] == [["PatientID", "NOBODY"]]
    with web_runtime.session() as db:
        n = db.scalar(
            select(func.count()).where(
                AuditEvent.event == AuditEventName.ACCESS_VIEWED,
                AuditEvent.slide_id == other.slide_id,
            )
        )
    assert n == 1

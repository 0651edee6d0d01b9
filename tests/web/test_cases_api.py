"""The case list (search, filters, paging) and the case record, on SQLite and PostgreSQL;
the admin actions with their audit rows and worker hand-offs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from unitumour_dicom.config import Settings
from unitumour_dicom.db import AuditEvent, AuditEventName, Delivery, Job, Slide
from unitumour_dicom.runtime import Runtime
from unitumour_dicom.synthetic import PhantomSlide

from .conftest import (
    Dispatches,
    SeededCase,
    csrf_from,
    login,
    plain_http,
    seed_case,
    with_viewer,
)

pytestmark = [pytest.mark.integration]


@pytest.fixture
def web_settings(settings: Settings) -> Settings:
    """This module's subject is SQL: both database backends."""
    return plain_http(with_viewer(settings))


@pytest.fixture
def cases(
    web_runtime: Runtime, phantoms: Callable[[int], tuple[PhantomSlide, list[Path]]]
) -> list[SeededCase]:
    """Three cases of different patients, dates and senders."""
    rows = [
        ("P-001", "Doe^Jane", "ACC-1", "20240110", "SCANNER1"),
        ("P-002", "Roe^Rick", "ACC-2", "20240220", "SCANNER2"),
        ("P-003", "Doe^John_x", "ACC-3", "20240305", "PACS"),
    ]
    out = []
    for seed, (pid, name, acc, date, ae) in enumerate(rows, start=11):
        slide, seg = phantoms(seed)
        out.append(
            seed_case(web_runtime, slide, seg, patient_id=pid, patient_name=name,
                      accession=acc, study_date=date, source_ae=ae)
        )  # fmt: skip
    return out


def ids(client: TestClient, **params: object) -> list[int]:
    r = client.get("/api/cases", params=params)
    assert r.status_code == 200, r.text
    return [c["slide_id"] for c in r.json()["items"]]


def test_filters_search_and_paging(client: TestClient, cases: list[SeededCase]) -> None:
    login(client, "vic")
    a, b, c = (x.slide_id for x in cases)
    assert ids(client) == [c, b, a]  # newest first
    assert ids(client, patient_id="P-002") == [b]
    assert ids(client, accession_number="ACC-3") == [c]
    assert ids(client, q="doe") == [c, a]  # name, any case
    assert ids(client, q="john_") == [c]  # _ is a character, not a wildcard
    assert ids(client, q="%") == []  # % too
    assert ids(client, study_date_from="20240201") == [c, b]
    assert ids(client, study_date_from="2024-01-01", study_date_to="2024-02-20") == [b, a]
    assert ids(client, source_ae="SCANNER1") == [a]
    assert ids(client, state="succeeded") == [c, b, a]
    assert ids(client, state="queued") == []
    assert ids(client, model_id=cases[0].model_id) == [c, b, a]
    assert ids(client, model_id=cases[0].model_id + 1) == []
    page = client.get("/api/cases", params={"page_size": 2, "page": 2}).json()
    assert page["total"] == 3 and [i["slide_id"] for i in page["items"]] == [a]
    summary = client.get("/api/cases", params={"patient_id": "P-001"}).json()["items"][0]
    assert summary["model"] == "unet-test 1.2.0"
    assert summary["deliveries"] == {"delivered": 1, "failed": 1}
    assert summary["tumour_area_mm2"] == pytest.approx(0.0123)
    for bad in ({"state": "nonsense"}, {"study_date_from": "2024"}, {"page_size": 1000}):
        assert client.get("/api/cases", params=bad).status_code in (400, 422), bad


def test_case_list_page_shows_filters_and_results(
    client: TestClient, cases: list[SeededCase]
) -> None:
    login(client, "vic")
    html = client.get("/cases", params={"source_ae": "SCANNER2"}).text
    assert "Roe^Rick" in html and "Doe^Jane" not in html
    assert '<option value="SCANNER2" selected>' in html
    assert "1 case</p>" in html
    bad = client.get("/cases", params={"study_date_from": "soon"})
    assert bad.status_code == 400 and "YYYYMMDD" in bad.text


def test_case_record_has_everything_on_file(client: TestClient, case: SeededCase) -> None:
    login(client, "vic")
    body = client.get(f"/api/cases/{case.slide_id}").json()
    assert body["slide"]["series_instance_uid"] == case.series_uid
    assert body["case_state"] == "succeeded"
    assert {i["sop_instance_uid"] for i in body["instances"]} == set(case.instance_files)
    assert all(i["calling_ae"] == "SCANNER1" for i in body["instances"])
    assert [j["id"] for j in body["jobs"]] == list(reversed(case.job_ids))
    latest = body["jobs"][0]
    assert latest["timings"]["infer"] == 42.0 and latest["supersedes_job_id"] == case.job_ids[0]
    assert latest["model"]["name"] == "unet-test"
    assert body["model"]["card"]["intended_use"] == "tests <only>"
    assert body["result"]["series_instance_uid"] == case.seg_series_uid
    assert {i["sop_instance_uid"] for i in body["result"]["instances"]} == set(case.seg_files)
    assert {(i["kind"], i["series_instance_uid"]) for i in body["result"]["instances"]} == {
        ("seg", case.seg_series_uid)
    }
    deliveries = {d["destination"]: d for d in body["deliveries"]}
    assert [a["ok"] for a in deliveries["pacs"]["attempts_log"]] == [False, True]
    assert deliveries["archive"]["last_status"] == 0xA700
    assert {e["event"] for e in body["audit"]} >= {"slide.settled", "delivery.delivered"}
    assert client.get("/api/cases/999999").status_code == 404
    html = client.get(f"/cases/{case.slide_id}").text
    for text in (
        case.seg_series_uid,
        "42.00",
        "0xA700",
        "Out of resources",
        "residual U-Net",
        "Result objects",
        '<tr class="kind-seg"><td>SEG</td>',
    ):
        assert text in html, text


def test_models_endpoint(client: TestClient, case: SeededCase) -> None:
    login(client, "vic")
    models = client.get("/api/models").json()
    assert [(m["name"], m["version"]) for m in models] == [("unet-test", "1.2.0")]


def test_rerun_supersedes_audits_and_dispatches(
    client: TestClient, case: SeededCase, web_runtime: Runtime, dispatches: Dispatches
) -> None:
    csrf = login(client, "ada")
    old = case.job_ids[-1]
    r = client.post(f"/api/jobs/{old}/rerun", headers={"X-CSRF-Token": csrf})
    assert r.status_code == 200, r.text
    new = r.json()["job_id"]
    assert r.json()["dispatched"] is True and dispatches.jobs == [new]
    with web_runtime.session() as db:
        job = db.get(Job, new)
        assert job is not None
        assert (job.state, job.reason, job.supersedes_job_id) == ("queued", "re-run by ada", old)
        assert db.get(Job, old).state == "superseded"  # type: ignore[union-attr]
        event = db.scalars(
            select(AuditEvent).where(AuditEvent.event == AuditEventName.JOB_RERUN)
        ).one()
        assert event.actor == "ada" and event.job_id == new and event.slide_id == case.slide_id
        assert event.details["previous_state"] == "succeeded"  # type: ignore[index]
    again = client.post(f"/api/jobs/{new}/rerun", headers={"X-CSRF-Token": csrf})
    assert again.status_code == 409 and "still queued or running" in again.json()["detail"]
    assert client.post("/api/jobs/424242/rerun", headers={"X-CSRF-Token": csrf}).status_code == 404


def test_rerun_of_a_purged_slide_is_refused(
    client: TestClient, case: SeededCase, web_runtime: Runtime, dispatches: Dispatches
) -> None:
    """Retention removed the received files: a new job could only fail, so it is not made."""
    with web_runtime.session() as db:
        db.get(Slide, case.slide_id).state = "purged"  # type: ignore[union-attr]
    csrf = login(client, "ada")
    r = client.post(f"/api/jobs/{case.job_ids[-1]}/rerun", headers={"X-CSRF-Token": csrf})
    assert r.status_code == 409 and "purged by retention" in r.json()["detail"]
    assert dispatches.jobs == []
    with web_runtime.session() as db:
        assert db.get(Job, case.job_ids[-1]).state == "succeeded"  # type: ignore[union-attr]


def test_resend_makes_delivery_due_now_with_audit(
    client: TestClient, case: SeededCase, web_runtime: Runtime, dispatches: Dispatches
) -> None:
    csrf = login(client, "ada")
    failed = case.delivery_ids[1]
    r = client.post(f"/api/deliveries/{failed}/resend", headers={"X-CSRF-Token": csrf})
    assert r.status_code == 200, r.text
    assert dispatches.deliveries == [failed]
    with web_runtime.session() as db:
        d = db.get(Delivery, failed)
        assert d is not None and d.state == "pending"
        assert d.next_attempt_at is not None and d.give_up_at is not None
        assert d.give_up_at > d.next_attempt_at
        event = db.scalars(
            select(AuditEvent).where(AuditEvent.event == AuditEventName.DELIVERY_RETRY_REQUESTED)
        ).one()
        assert event.delivery_id == failed and "was failed" in event.message
    assert (
        client.post("/api/deliveries/999999/resend", headers={"X-CSRF-Token": csrf}).status_code
        == 404
    )


def test_admin_forms_on_the_case_page(
    client: TestClient, case: SeededCase, web_runtime: Runtime, dispatches: Dispatches
) -> None:
    login(client, "ada")
    page = client.get(f"/cases/{case.slide_id}")
    assert "Re-run" in page.text and "Re-send" in page.text
    token = csrf_from(page.text)
    r = client.post(
        f"/cases/{case.slide_id}/deliveries/{case.delivery_ids[0]}/resend",
        data={"csrf_token": token},
        follow_redirects=False,
    )
    assert r.status_code == 303 and r.headers["location"].endswith("done=resend#deliveries")
    r = client.post(
        f"/cases/{case.slide_id}/jobs/{case.job_ids[-1]}/rerun",
        data={"csrf_token": token},
    )
    assert r.status_code == 200 and "A new job was queued" in r.text
    assert len(dispatches.jobs) == 1 and dispatches.deliveries == [case.delivery_ids[0]]
    # an id of another case is refused, and nothing changes
    r = client.post(
        f"/cases/{case.slide_id + 1}/jobs/{case.job_ids[0]}/rerun", data={"csrf_token": token}
    )
    assert r.status_code == 404


def test_a_failing_dispatch_hook_still_records_the_job(
    web_runtime: Runtime, case: SeededCase, accounts: dict[str, str]
) -> None:
    from unitumour_services.web import create_app

    def broken(job_id: int) -> None:
        raise ConnectionError("broker down")

    app = create_app(web_runtime.settings, runtime=web_runtime, dispatch_job=broken)
    with TestClient(app) as c:
        csrf = login(c, "ada")
        r = c.post(f"/api/jobs/{case.job_ids[-1]}/rerun", headers={"X-CSRF-Token": csrf})
    assert r.status_code == 200 and r.json()["dispatched"] is False
    with web_runtime.session() as db:
        assert db.get(Job, r.json()["job_id"]).state == "queued"  # type: ignore[union-attr]

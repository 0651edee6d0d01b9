"""Who may see and do what: every page and API call behind the login, admin actions behind
the admin role and a CSRF token, sessions that end when they should."""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from unitumour_dicom import users
from unitumour_dicom.db import AuditEvent, Job
from unitumour_dicom.runtime import Runtime

from .conftest import PASSWORD, SeededCase, csrf_from, login

pytestmark = [pytest.mark.integration]

UID = "1.2.826.0.1.3680043.8.498.1"


def protected_gets(case: SeededCase) -> list[str]:
    base = f"/dicomweb/studies/{case.study_uid}/series/{case.series_uid}"
    sop = next(iter(case.instance_files))
    return [
        "/api/me",
        "/api/cases",
        f"/api/cases/{case.slide_id}",
        f"/api/cases/{case.slide_id}/overlay.png",
        "/api/models",
        "/dicomweb/studies",
        "/dicomweb/series",
        "/dicomweb/instances",
        f"/dicomweb/studies/{case.study_uid}",
        f"/dicomweb/studies/{case.study_uid}/metadata",
        f"/dicomweb/studies/{case.study_uid}/series",
        f"/dicomweb/studies/{case.study_uid}/instances",
        base,
        f"{base}/metadata",
        f"{base}/instances",
        f"{base}/instances/{sop}",
        f"{base}/instances/{sop}/metadata",
        f"{base}/instances/{sop}/frames/1",
        f"{base}/instances/{sop}/bulkdata/7FE00010",
    ]


def test_every_api_and_dicomweb_call_refuses_without_login(
    client: TestClient, case: SeededCase
) -> None:
    for url in protected_gets(case):
        r = client.get(url)
        assert r.status_code == 401, url
        assert r.json() == {"detail": "log in first"}, url
        assert "PHANTOM-WEB" not in r.text and "Phantom" not in r.text, url
    for url in ("/api/jobs/1/rerun", "/api/deliveries/1/resend", "/api/logout"):
        assert client.post(url).status_code == 401, url


def test_pages_redirect_to_login_and_back(client: TestClient, case: SeededCase) -> None:
    for url in (
        "/cases",
        f"/cases/{case.slide_id}",
        f"/cases/{case.slide_id}/viewer",
        f"/cases/{case.slide_id}/overlay.png",
        "/cases?patient_id=X&page=2",
    ):
        r = client.get(url, follow_redirects=False)
        assert r.status_code == 303, url
        assert r.headers["location"].startswith("/login?next=/cases"), url
    page = client.get(f"/login?next=/cases/{case.slide_id}")
    assert page.status_code == 200
    r = client.post(
        "/login",
        data={
            "username": "vic",
            "password": PASSWORD,
            "csrf_token": csrf_from(page.text),
            "next": f"/cases/{case.slide_id}",
        },
        follow_redirects=False,
    )
    assert r.status_code == 303
    assert r.headers["location"] == f"/cases/{case.slide_id}"
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Secure" not in cookie
    assert client.get(f"/cases/{case.slide_id}").status_code == 200


@pytest.mark.parametrize(
    "target", ["https://evil.example/", "//evil.example/x", "/\\evil", "javascript:alert(1)"]
)
def test_login_never_redirects_off_site(client: TestClient, target: str) -> None:
    page = client.get("/login")
    r = client.post(
        "/login",
        data={
            "username": "vic",
            "password": PASSWORD,
            "csrf_token": csrf_from(page.text),
            "next": target,
        },
        follow_redirects=False,
    )
    assert r.status_code == 303
    assert r.headers["location"] == "/cases"


def test_login_form_needs_its_csrf_token(client: TestClient, web_runtime: Runtime) -> None:
    client.get("/login")
    r = client.post(
        "/login", data={"username": "vic", "password": PASSWORD, "csrf_token": "forged"}
    )
    assert r.status_code == 403
    assert client.get("/api/me").status_code == 401


def test_wrong_password_disabled_user_and_unknown_user_are_refused_and_audited(
    client: TestClient, web_runtime: Runtime
) -> None:
    for username, password in (("vic", "wrong password"), ("gone", PASSWORD), ("nobody", "x")):
        r = client.post("/api/login", json={"username": username, "password": password})
        assert r.status_code == 401
        assert "Wrong user name or password" in r.json()["detail"]
    with web_runtime.session() as db:
        failed = db.scalars(
            select(AuditEvent.actor).where(AuditEvent.event == "user.login_failed")
        ).all()
    assert sorted(failed) == ["gone", "nobody", "vic"]


def test_repeated_failures_lock_the_user_name_out(client: TestClient, web_runtime: Runtime) -> None:
    limit = web_runtime.settings.web.max_failed_logins
    for _ in range(limit):
        client.post("/api/login", json={"username": "vic", "password": "wrong password"})
    r = client.post("/api/login", json={"username": "vic", "password": PASSWORD})
    assert r.status_code == 401
    assert "Too many failed log-ins" in r.json()["detail"]
    # another user is not affected
    assert client.post("/api/login", json={"username": "ada", "password": PASSWORD}).is_success


def test_viewer_may_look_but_not_rerun_or_resend(
    client: TestClient, case: SeededCase, web_runtime: Runtime
) -> None:
    csrf = login(client, "vic")
    assert client.get(f"/api/cases/{case.slide_id}").status_code == 200
    headers = {"X-CSRF-Token": csrf}
    r = client.post(f"/api/jobs/{case.job_ids[-1]}/rerun", headers=headers)
    assert r.status_code == 403
    assert r.json()["detail"] == "this needs the admin role"
    r = client.post(f"/api/deliveries/{case.delivery_ids[1]}/resend", headers=headers)
    assert r.status_code == 403
    page = client.get(f"/cases/{case.slide_id}")
    assert "Re-run" not in page.text and "Re-send" not in page.text
    r = client.post(
        f"/cases/{case.slide_id}/jobs/{case.job_ids[-1]}/rerun",
        data={"csrf_token": csrf_from(page.text)},
    )
    assert r.status_code == 403
    with web_runtime.session() as db:
        assert db.scalar(select(func.count()).select_from(Job)) == 2


def test_admin_actions_need_the_csrf_token(
    client: TestClient, case: SeededCase, web_runtime: Runtime
) -> None:
    csrf = login(client, "ada")
    job_id = case.job_ids[-1]
    assert client.post(f"/api/jobs/{job_id}/rerun").status_code == 403
    bad = client.post(f"/api/jobs/{job_id}/rerun", headers={"X-CSRF-Token": csrf + "x"})
    assert bad.status_code == 403
    form = client.post(f"/cases/{case.slide_id}/jobs/{job_id}/rerun", data={"csrf_token": "x"})
    assert form.status_code == 403
    with web_runtime.session() as db:
        assert db.scalar(select(func.count()).select_from(Job)) == 2


def test_logout_ends_the_session(client: TestClient) -> None:
    login(client, "vic")
    page = client.get("/cases")
    assert page.status_code == 200
    r = client.post("/logout", data={"csrf_token": csrf_from(page.text)}, follow_redirects=False)
    assert r.status_code == 303
    assert client.get("/api/me").status_code == 401


def test_stolen_cookie_dies_with_disable_password_change_and_role_change(
    app: FastAPI, web_runtime: Runtime
) -> None:
    for change in ("disable", "password", "role"):
        with TestClient(app) as c:
            login(c, "ada")
            assert c.get("/api/me").status_code == 200
            with web_runtime.session() as db:
                if change == "disable":
                    users.set_active(session=db, username="ada", active=False)
                elif change == "password":
                    users.set_password(session=db, username="ada", password="another password")
                else:
                    users.set_role(session=db, username="ada", role="viewer")
            assert c.get("/api/me").status_code == 401, change
            with web_runtime.session() as db:  # restore for the next change
                users.set_active(session=db, username="ada", active=True)
                users.set_password(session=db, username="ada", password=PASSWORD)
                users.set_role(session=db, username="ada", role="admin")


def test_tampered_or_foreign_cookies_are_not_sessions(client: TestClient, app: FastAPI) -> None:
    login(client, "ada")
    token = client.cookies["unitumour_session"]
    client.cookies.set(
        "unitumour_session", token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1]
    )
    assert client.get("/api/me").status_code == 401
    client.cookies.set("unitumour_session", "x" * 5000)
    assert client.get("/api/me").status_code == 401


def test_security_headers_and_no_caching_of_patient_data(
    client: TestClient, case: SeededCase
) -> None:
    login(client, "vic")
    r = client.get(f"/cases/{case.slide_id}")
    assert r.headers["cache-control"] == "no-store"
    assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["x-frame-options"] == "DENY"
    assert client.get("/static/app.css").headers["cache-control"].startswith("public")


def test_hostile_identifiers_are_escaped_in_html(
    client: TestClient, web_runtime: Runtime, phantom, seg_files
) -> None:  # type: ignore[no-untyped-def]
    from .conftest import seed_case

    hostile = seed_case(
        web_runtime,
        phantom,
        seg_files,
        patient_id="<img src=x onerror=alert(1)>",
        patient_name='"><script>alert(2)</script>',
        accession="A&B<1>",
        source_ae="<AE>",
    )
    login(client, "vic")
    for url in (f"/cases/{hostile.slide_id}", "/cases", f"/cases/{hostile.slide_id}/viewer"):
        html = client.get(url).text
        assert "<script>alert(2)" not in html, url
        assert "<img src=x" not in html, url
        assert "&lt;script&gt;alert(2)&lt;/script&gt;" in html or "alert(2)" not in html, url
    html = client.get(f"/cases/{hostile.slide_id}").text
    assert "A&amp;B&lt;1&gt;" in html
    assert "slide settled &lt;b&gt;bold&lt;/b&gt;" in html
    assert "ARCHIVE&lt;1&gt;" in html
    # and a search for hostile text is a bound parameter, not SQL
    r = client.get("/api/cases", params={"q": "'; DROP TABLE slides; --"})
    assert r.status_code == 200 and r.json()["total"] == 0
    assert client.get("/api/cases", params={"q": "<img"}).json()["total"] == 1

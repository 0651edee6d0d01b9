"""Error pages for people: a logged-in browser that hits a missing case, an admin-only form
or a conflicting action sees the error page with its status, never a server error."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from .conftest import SeededCase, csrf_from, login

pytestmark = [pytest.mark.integration]

HTML = {"Accept": "text/html,application/xhtml+xml"}


def _assert_error_page(r: object, status: int) -> None:
    assert r.status_code == status, r.text[:500]  # type: ignore[attr-defined]
    assert r.headers["content-type"].startswith("text/html")  # type: ignore[attr-defined]
    html = r.text  # type: ignore[attr-defined]
    assert f"<h1>{status}</h1>" in html
    # the page keeps the logged-in user's header: the log-out form with its CSRF token
    assert "Log out" in html and csrf_from(html)


def test_missing_case_is_a_404_page(client: TestClient, case: SeededCase) -> None:
    login(client, "vic")
    _assert_error_page(client.get(f"/cases/{case.slide_id + 1000}", headers=HTML), 404)
    _assert_error_page(client.get(f"/cases/{case.slide_id + 1000}/viewer", headers=HTML), 404)


def test_admin_form_as_a_viewer_is_a_403_page(client: TestClient, case: SeededCase) -> None:
    login(client, "vic")
    csrf = csrf_from(client.get(f"/cases/{case.slide_id}", headers=HTML).text)
    r = client.post(
        f"/cases/{case.slide_id}/jobs/{case.job_ids[-1]}/rerun",
        data={"csrf_token": csrf},
        headers=HTML,
        follow_redirects=False,
    )
    _assert_error_page(r, 403)


def test_conflicting_rerun_is_a_409_page(client: TestClient, case: SeededCase) -> None:
    login(client, "ada")
    csrf = csrf_from(client.get(f"/cases/{case.slide_id}", headers=HTML).text)
    url = f"/cases/{case.slide_id}/jobs/{case.job_ids[-1]}/rerun"
    first = client.post(url, data={"csrf_token": csrf}, headers=HTML, follow_redirects=False)
    assert first.status_code == 303
    # the re-run job is queued now: a second re-run conflicts with it
    _assert_error_page(
        client.post(url, data={"csrf_token": csrf}, headers=HTML, follow_redirects=False), 409
    )

"""Server-side sessions: what log-out, admins, password and role changes and disabling end
is ended for every copy of the cookie; what the database keeps of a session; the admin's
list and end (API, page, CLI), all on record."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select, update
from sqlalchemy.orm import joinedload
from typer.testing import CliRunner
from unitumour_services.cli import app as cli_app

from unitumour_dicom import users
from unitumour_dicom.config import Settings
from unitumour_dicom.db import AuditEvent
from unitumour_dicom.runtime import Runtime

from .conftest import PASSWORD, csrf_from, login

pytestmark = [pytest.mark.integration]

COOKIE = "unitumour_session"


def _sessions(runtime: Runtime) -> list[Any]:
    from unitumour_dicom.db import LoginSession

    with runtime.session() as db:
        query = select(LoginSession).options(joinedload(LoginSession.user))
        return list(db.scalars(query.order_by(LoginSession.id)))


def _events(runtime: Runtime, event: str) -> list[AuditEvent]:
    with runtime.session() as db:
        return list(db.scalars(select(AuditEvent).where(AuditEvent.event == event)))


def test_a_cookie_copied_before_api_logout_is_refused_after_it(app: FastAPI) -> None:
    with TestClient(app) as victim, TestClient(app) as thief:
        csrf = login(victim, "vic")
        thief.cookies.set(COOKIE, victim.cookies[COOKIE])  # the copy taken before log-out
        assert thief.get("/api/me").json()["username"] == "vic"
        r = victim.post("/api/logout", headers={"X-CSRF-Token": csrf})
        assert r.status_code == 200
        assert victim.get("/api/me").status_code == 401
        assert thief.get("/api/me").status_code == 401
        assert thief.get("/cases", follow_redirects=False).status_code == 303


def test_a_cookie_copied_before_the_logout_form_is_refused_after_it(
    app: FastAPI, web_runtime: Runtime
) -> None:
    with TestClient(app) as victim, TestClient(app) as thief:
        login(victim, "vic")
        thief.cookies.set(COOKIE, victim.cookies[COOKIE])
        page = victim.get("/cases")
        r = victim.post(
            "/logout", data={"csrf_token": csrf_from(page.text)}, follow_redirects=False
        )
        assert r.status_code == 303
        assert thief.get("/api/me").status_code == 401
    [row] = _sessions(web_runtime)
    assert row.ended_at is not None and row.end_reason == "logout"
    [event] = _events(web_runtime, "user.session_ended")
    assert event.actor == "vic" and event.details["reason"] == "logout"


def test_api_logout_needs_the_csrf_token(client: TestClient) -> None:
    csrf = login(client, "vic")
    assert client.post("/api/logout").status_code == 403
    assert client.post("/api/logout", headers={"X-CSRF-Token": csrf + "x"}).status_code == 403
    assert client.get("/api/me").status_code == 200  # still logged in
    assert client.post("/api/logout", headers={"X-CSRF-Token": csrf}).status_code == 200
    assert client.get("/api/me").status_code == 401


def test_the_database_keeps_only_a_hash_of_the_token_and_who_logged_in_from_where(
    app: FastAPI, web_runtime: Runtime
) -> None:
    agent = "Mozilla/5.0 " + "x" * 1000
    before = datetime.now(UTC)
    with TestClient(app, headers={"User-Agent": agent}) as c:
        login(c, "vic")
        cookie = c.cookies[COOKIE]
    token = app.state.ctx.sessions.loads(cookie).token
    [row] = _sessions(web_runtime)
    assert token and row.token_sha256 == hashlib.sha256(token.encode()).hexdigest()
    assert token not in row.token_sha256
    assert row.user_agent == agent[:256]
    assert row.remote_addr == "testclient"
    assert before <= row.created_at == row.last_seen_at <= datetime.now(UTC)
    hours = web_runtime.settings.web.session_hours
    assert row.expires_at - row.created_at == timedelta(hours=hours)
    assert row.ended_at is None and row.end_reason is None


def test_an_expired_session_is_refused_and_its_row_cleaned_up(
    client: TestClient, web_runtime: Runtime
) -> None:
    login(client, "vic")
    assert client.get("/api/me").status_code == 200
    from unitumour_dicom.db import LoginSession

    with web_runtime.session() as db:  # the cookie's own signature is still good for hours
        db.execute(update(LoginSession).values(expires_at=datetime.now(UTC) - timedelta(seconds=1)))
    assert client.get("/api/me").status_code == 401
    assert _sessions(web_runtime) == []
    # and expired rows of others go at the next log-in
    with TestClient(client.app) as other:
        login(other, "ada")
        with web_runtime.session() as db:
            db.execute(update(LoginSession).values(expires_at=datetime.now(UTC)))
        login(other, "ada")
    assert len(_sessions(web_runtime)) == 1


def test_last_seen_is_written_at_most_once_a_resolution(
    client: TestClient, web_runtime: Runtime
) -> None:
    from unitumour_dicom.login_sessions import SEEN_RESOLUTION, find_session

    login(client, "vic")
    [row] = _sessions(web_runtime)
    token = client.app.state.ctx.sessions.loads(client.cookies[COOKIE]).token
    soon = row.last_seen_at + SEEN_RESOLUTION / 2
    later = row.last_seen_at + SEEN_RESOLUTION * 2
    with web_runtime.session() as db:
        assert find_session(session=db, token=token, now=soon) is not None
    assert _sessions(web_runtime)[0].last_seen_at == row.last_seen_at
    with web_runtime.session() as db:
        assert find_session(session=db, token=token, now=later) is not None
    assert _sessions(web_runtime)[0].last_seen_at == later


@pytest.mark.parametrize(
    ("change", "reason"),
    [("disable", "user_disabled"), ("password", "password_set"), ("role", "role_set")],
)
def test_user_changes_end_every_session_with_its_reason(
    app: FastAPI, web_runtime: Runtime, change: str, reason: str
) -> None:
    with TestClient(app) as one, TestClient(app) as two, TestClient(app) as bystander:
        login(one, "ada")
        login(two, "ada")
        login(bystander, "vic")
        with web_runtime.session() as db:
            if change == "disable":
                users.set_active(session=db, username="ada", active=False, actor="boss")
            elif change == "password":
                users.set_password(session=db, username="ada", password="another pw!", actor="boss")
            else:
                users.set_role(session=db, username="ada", role="viewer", actor="boss")
        assert one.get("/api/me").status_code == 401
        assert two.get("/api/me").status_code == 401
        assert bystander.get("/api/me").status_code == 200
    ended = [s for s in _sessions(web_runtime) if s.ended_at is not None]
    assert len(ended) == 2 and {s.end_reason for s in ended} == {reason}
    [event] = _events(web_runtime, "user.sessions_ended")
    assert event.actor == "boss" and event.details["count"] == 2


def test_admin_lists_and_ends_sessions_through_the_api(app: FastAPI, web_runtime: Runtime) -> None:
    with TestClient(app) as admin, TestClient(app) as vic1, TestClient(app) as vic2:
        csrf = login(admin, "ada")
        vic_csrf = login(vic1, "vic")
        login(vic2, "vic")
        listing = admin.get("/api/sessions").json()
        assert [s["username"] for s in listing] == ["vic", "vic", "ada"]
        assert [s["current"] for s in listing] == [False, False, True]
        assert all("token" not in key for s in listing for key in s)
        assert [s["username"] for s in admin.get("/api/sessions?username=ada").json()] == ["ada"]
        # a viewer may neither look nor end
        assert vic1.get("/api/sessions").status_code == 403
        target = listing[0]["id"]
        r = vic1.post(f"/api/sessions/{target}/end", headers={"X-CSRF-Token": vic_csrf})
        assert r.status_code == 403
        # an admin ends one session: only that browser is logged out
        assert admin.post(f"/api/sessions/{target}/end").status_code == 403  # no CSRF
        r = admin.post(f"/api/sessions/{target}/end", headers={"X-CSRF-Token": csrf})
        assert r.status_code == 200 and r.json() == {"ended": 1}
        assert vic2.get("/api/me").status_code == 401
        assert vic1.get("/api/me").status_code == 200
        r = admin.post(f"/api/sessions/{target}/end", headers={"X-CSRF-Token": csrf})
        assert r.status_code == 404  # not open any more
        # and every session of a user
        r = admin.post("/api/users/vic/sessions/end", headers={"X-CSRF-Token": csrf})
        assert r.status_code == 200 and r.json() == {"ended": 1}
        assert vic1.get("/api/me").status_code == 401
        r = admin.post("/api/users/nobody/sessions/end", headers={"X-CSRF-Token": csrf})
        assert r.status_code == 404
        assert [s["username"] for s in admin.get("/api/sessions").json()] == ["ada"]
    [one] = _events(web_runtime, "user.session_ended")
    assert one.actor == "ada" and one.details == {
        "session_id": target,
        "username": "vic",
        "reason": "ended_by_admin",
    }
    [every] = _events(web_runtime, "user.sessions_ended")
    assert every.actor == "ada" and every.details["count"] == 1


def test_admin_sessions_page_lists_and_ends(app: FastAPI, web_runtime: Runtime) -> None:
    hostile = {"User-Agent": "<script>alert(3)</script>"}
    with TestClient(app) as admin, TestClient(app, headers=hostile) as viewer:
        login(admin, "ada")
        login(viewer, "vic")
        page = admin.get("/admin/sessions")
        assert page.status_code == 200
        assert "<script>alert(3)" not in page.text and "&lt;script&gt;alert(3)" in page.text
        assert 'href="/admin/sessions"' in page.text  # in the admin's navigation
        assert "vic" in page.text and "(this session)" in page.text
        vic_row = next(s for s in _sessions(web_runtime) if s.user.username == "vic")
        assert f'action="/admin/sessions/{vic_row.id}/end"' in page.text
        forged = admin.post(f"/admin/sessions/{vic_row.id}/end", data={"csrf_token": "x"})
        assert forged.status_code == 403
        assert viewer.get("/api/me").status_code == 200
        r = admin.post(
            f"/admin/sessions/{vic_row.id}/end",
            data={"csrf_token": csrf_from(page.text)},
            follow_redirects=False,
        )
        assert r.status_code == 303 and r.headers["location"] == "/admin/sessions?ended=1"
        assert viewer.get("/api/me").status_code == 401
        assert "1 session ended" in admin.get(r.headers["location"]).text
        login(viewer, "vic")
        assert viewer.get("/admin/sessions").status_code == 403
        assert 'href="/admin/sessions"' not in viewer.get("/cases").text


def test_cli_lists_and_ends_sessions_on_record(
    app: FastAPI, web_settings: Settings, web_runtime: Runtime, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    config = tmp_path / "unitumour.toml"
    config.write_text(
        f'data_dir = "{web_settings.data_dir}"\n[database]\nurl = "{web_settings.database_url}"\n'
    )
    runner = CliRunner()

    def run(*args: str):  # type: ignore[no-untyped-def]
        return runner.invoke(cli_app, ["-c", str(config), "users", *args])

    with TestClient(app) as vic, TestClient(app) as ada:
        login(vic, "vic")
        login(ada, "ada")
        listing = run("sessions")
        assert listing.exit_code == 0, listing.output
        assert "vic" in listing.output and "ada" in listing.output
        only = run("sessions", "vic", "--json")
        assert only.exit_code == 0, only.output
        assert only.output.count('"username": "vic"') == 1 and "ada" not in only.output
        assert run("sessions", "ghost").exit_code == 2
        ended = run("end-sessions", "vic")
        assert ended.exit_code == 0 and "ended 1 session(s) of vic" in ended.output
        assert vic.get("/api/me").status_code == 401
        assert ada.get("/api/me").status_code == 200
        assert run("end-sessions", "ghost").exit_code == 2
    from unitumour_dicom.login_sessions import list_sessions

    with web_runtime.session() as db:
        assert [s.user.username for s in list_sessions(session=db)] == ["ada"]
    [event] = _events(web_runtime, "user.sessions_ended")
    assert event.actor.startswith("cli:") and event.details["reason"] == "ended_by_admin"


def test_a_disabled_users_session_is_refused_even_if_its_row_is_open(
    client: TestClient, web_runtime: Runtime
) -> None:
    """Defence in depth: an account disabled behind the library's back (SQL) logs no one in."""
    login(client, "vic")
    from unitumour_dicom.db import User

    with web_runtime.session() as db:
        db.execute(update(User).where(User.username == "vic").values(active=False))
    assert client.get("/api/me").status_code == 401


def test_validation_errors_never_echo_what_was_sent(client: TestClient) -> None:
    secret = "S3cret-Pass-" + "z" * 1100  # longer than any password: a 422
    r = client.post("/api/login", json={"username": "vic", "password": secret})
    assert r.status_code == 422
    assert "S3cret-Pass" not in r.text and "zzzz" not in r.text
    assert r.json()["detail"][0]["loc"] == ["body", "password"]
    r = client.post("/api/login", json={"username": "x" * 65 + "-Hidden", "password": "p"})
    assert r.status_code == 422 and "Hidden" not in r.text
    page = client.get("/login")
    r = client.post(
        "/login", data={"username": "vic", "password": secret, "csrf_token": csrf_from(page.text)}
    )
    assert r.status_code == 422 and "S3cret-Pass" not in r.text
    login(client, "vic")
    r = client.get("/api/cases", params={"page": "Private-Note"})
    assert r.status_code == 422 and "Private-Note" not in r.text
    assert PASSWORD not in r.text

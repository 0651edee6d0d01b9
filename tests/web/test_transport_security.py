"""Secure by default in production: Secure cookies unless a setting turns them off, HSTS on
what came over HTTPS (directly, or from a trusted reverse proxy), and nothing believed of a
forwarding header from anyone else."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from unitumour_services.web import create_app

from unitumour_dicom.config import Settings
from unitumour_dicom.runtime import Runtime

from .conftest import PASSWORD, LiveServer, login, with_viewer

pytestmark = [pytest.mark.integration]

HSTS = "strict-transport-security"


def _app(runtime: Runtime, **web: object) -> FastAPI:
    settings = runtime.settings
    settings = settings.model_copy(update={"web": settings.web.model_copy(update=web)})
    return create_app(settings, runtime=runtime)


def test_production_settings_send_a_secure_cookie_that_https_clients_return(
    sqlite_settings: Settings, web_runtime: Runtime, accounts: dict[str, str]
) -> None:
    production = with_viewer(sqlite_settings)  # nothing turns secure_cookies off
    assert production.web.secure_cookies
    app = create_app(production, runtime=web_runtime)
    with TestClient(app, base_url="https://testserver") as c:
        r = c.post("/api/login", json={"username": "vic", "password": PASSWORD})
        assert r.status_code == 200
        cookie = r.headers["set-cookie"]
        assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=lax" in cookie
        assert c.get("/api/me").status_code == 200
    with TestClient(app) as plain:  # a plain-http client does not send it back
        plain.post("/api/login", json={"username": "vic", "password": PASSWORD})
        assert plain.get("/api/me").status_code == 401


def test_hsts_on_https_only(web_runtime: Runtime, accounts: dict[str, str]) -> None:
    app = _app(web_runtime, hsts_seconds=600)
    with TestClient(app, base_url="https://testserver") as c:
        assert c.get("/login").headers[HSTS] == "max-age=600"
        assert c.get("/healthz").headers[HSTS] == "max-age=600"
    with TestClient(app) as c:
        assert HSTS not in c.get("/login").headers
    with TestClient(_app(web_runtime, hsts_seconds=0), base_url="https://testserver") as c:
        assert HSTS not in c.get("/login").headers


def test_forwarded_https_and_client_are_believed_from_trusted_proxies_only(
    web_runtime: Runtime, accounts: dict[str, str]
) -> None:
    forwarded = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "10.1.2.3"}
    trusted = _app(web_runtime, trusted_proxies=["127.0.0.1/32"])
    with LiveServer(trusted) as server, httpx.Client(base_url=server.url) as c:
        r = c.get("/login", headers=forwarded)
        assert r.headers[HSTS] == f"max-age={web_runtime.settings.web.hsts_seconds}"
        r = c.post("/api/login", json={"username": "vic", "password": PASSWORD}, headers=forwarded)
        assert r.status_code == 200
        assert HSTS not in c.get("/login").headers  # the proxy said http this time
    untrusted = _app(web_runtime, trusted_proxies=[])
    with LiveServer(untrusted) as server, httpx.Client(base_url=server.url) as c:
        assert HSTS not in c.get("/login", headers=forwarded).headers
        r = c.post("/api/login", json={"username": "ada", "password": PASSWORD}, headers=forwarded)
        assert r.status_code == 200
    from unitumour_dicom.login_sessions import list_sessions

    with web_runtime.session() as db:
        by_user = {s.user.username: s.remote_addr for s in list_sessions(session=db)}
    assert by_user == {"vic": "10.1.2.3", "ada": "127.0.0.1"}


def test_the_login_cookie_of_the_plain_http_fixture_is_not_secure(client: TestClient) -> None:
    """The fixtures' explicit switch (as the demo's): without it, these tests could not log in."""
    r = client.post("/api/login", json={"username": "vic", "password": PASSWORD})
    assert "Secure" not in r.headers["set-cookie"]
    login(client, "vic")
    assert client.get("/api/me").status_code == 200

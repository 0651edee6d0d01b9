"""Local users: argon2id hashes, roles, disabling, and the 'unitumour users' commands."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner
from unitumour_services.cli import app

from unitumour_dicom import users
from unitumour_dicom.config import Settings
from unitumour_dicom.db import AuditEvent, User
from unitumour_dicom.runtime import Runtime

pytestmark = [pytest.mark.integration]


def test_hashes_are_argon2id_salted_and_verify(web_runtime: Runtime) -> None:
    h1, h2 = users.hash_password("a long password"), users.hash_password("a long password")
    assert h1.startswith("$argon2id$") and h1 != h2
    assert users.verify_password(h1, "a long password")
    assert not users.verify_password(h1, "a long passwore")
    assert not users.verify_password("not a hash", "x")


def test_deployments_hash_with_argon2id_at_full_cost(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.undo()  # the web tests' cheap hasher
    from argon2 import Type

    assert users._hasher.type is Type.ID
    assert users._hasher.memory_cost >= 65536 and users._hasher.time_cost >= 3
    assert users.hash_password("a long password").startswith("$argon2id$v=19$m=65536")


@pytest.mark.parametrize(
    ("name", "password", "role", "message"),
    [
        ("bad name", "long enough pw", "viewer", "is not allowed"),
        ("-dash", "long enough pw", "viewer", "is not allowed"),
        ("x" * 65, "long enough pw", "viewer", "is not allowed"),
        ("ok", "short", "viewer", "at least 10 characters"),
        ("ok", "long enough pw", "superuser", "is not one of"),
    ],
)
def test_invalid_users_are_refused_with_reasons(
    web_runtime: Runtime, name: str, password: str, role: str, message: str
) -> None:
    with pytest.raises(users.UserError, match=message), web_runtime.session() as db:
        users.add_user(session=db, username=name, password=password, role=role)


def test_authenticate_and_duplicate(web_runtime: Runtime) -> None:
    with web_runtime.session() as db:
        users.add_user(session=db, username="eve.r@lab", password="long enough pw")
    with pytest.raises(users.UserError, match="already exists"), web_runtime.session() as db:
        users.add_user(session=db, username="eve.r@lab", password="long enough pw")
    with web_runtime.session() as db:
        user = users.authenticate(session=db, username="eve.r@lab", password="long enough pw")
        assert user is not None and user.last_login_at is not None
        assert users.authenticate(session=db, username="eve.r@lab", password="nope") is None
        assert users.authenticate(session=db, username="' OR 1=1 --", password="x") is None


def test_cli_add_list_disable_enable_passwd_role(
    web_settings: Settings, web_runtime: Runtime, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    config = tmp_path / "unitumour.toml"
    config.write_text(
        f'data_dir = "{web_settings.data_dir}"\n[database]\nurl = "{web_settings.database_url}"\n'
    )
    runner = CliRunner()

    def run(*args: str, stdin: str | None = None):  # type: ignore[no-untyped-def]
        return runner.invoke(app, ["-c", str(config), "users", *args], input=stdin)

    r = run("add", "nurse", "--role", "admin", "--password-stdin", stdin="long enough pw\n")
    assert r.exit_code == 0, r.output
    assert "added user nurse (admin)" in r.output
    r = run("add", "nurse", "--password-stdin", stdin="long enough pw\n")
    assert r.exit_code == 2 and "already exists" in r.output
    r = run("add", "other", stdin="long enough pw\nlong enough pw\n")  # prompt, twice
    assert r.exit_code == 0, r.output
    r = run("add", "weak", "--password-stdin", stdin="short\n")
    assert r.exit_code == 2 and "at least 10" in r.output
    assert run("disable", "nurse").exit_code == 0
    listing = run("list").output
    assert "nurse" in listing and " no " in listing
    assert run("enable", "nurse").exit_code == 0
    assert run("role", "nurse", "viewer").exit_code == 0
    assert run("passwd", "nurse", "--password-stdin", stdin="another long pw\n").exit_code == 0
    assert run("disable", "ghost").exit_code == 2
    with web_runtime.session() as db:
        nurse = db.query(User).filter_by(username="nurse").one()
        assert (nurse.active, nurse.role) == (True, "viewer")
        assert users.verify_password(nurse.password_hash, "another long pw")
        events = [e.event for e in db.query(AuditEvent)]
    assert {"user.added", "user.disabled", "user.enabled", "user.role_set"} <= set(events)

"""Sender tokens for STOW-RS: made, used, revoked and expired, every change audited."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from unitumour_dicom import sender_tokens
from unitumour_dicom.cli.app import app
from unitumour_dicom.config import Settings
from unitumour_dicom.db import AuditEvent, SenderToken
from unitumour_dicom.runtime import Runtime


def test_a_token_speaks_for_its_sender_until_revoked(runtime: Runtime) -> None:
    with runtime.session() as db:
        issued = sender_tokens.create_token(session=db, sender="SCANNER1", actor="cli:test")
    assert issued.secret.startswith("utk_") and len(issued.secret) == 47
    with runtime.session() as db:
        row = db.scalar(select(SenderToken))
        assert row is not None and issued.secret not in (row.token_sha256, row.prefix)
        found = sender_tokens.authenticate(session=db, secret=issued.secret, client="10.0.0.9")
        assert found is not None and found.sender == "SCANNER1"
    with runtime.session() as db:
        row = db.get(SenderToken, issued.id)
        assert row is not None and row.last_used_from == "10.0.0.9"
        # one character off, another token's shape, SQL: none is a token
        for wrong in (
            issued.secret[:-1] + ("A" if issued.secret[-1] != "A" else "B"),
            issued.secret[:-1],
            "' OR 1=1 --",
            "",
        ):
            assert sender_tokens.authenticate(session=db, secret=wrong, client=None) is None
        sender_tokens.revoke_token(session=db, token_id=issued.id, actor="cli:test")
    with runtime.session() as db:
        assert sender_tokens.authenticate(session=db, secret=issued.secret, client=None) is None
        with pytest.raises(sender_tokens.TokenError, match="already revoked"):
            sender_tokens.revoke_token(session=db, token_id=issued.id, actor="cli:test")
        events = [e.event for e in db.scalars(select(AuditEvent).order_by(AuditEvent.id))]
        assert events == ["sender_token.created", "sender_token.revoked"]


def test_expiry_and_refusals(runtime: Runtime) -> None:
    then = datetime(2026, 1, 1, tzinfo=UTC)
    with runtime.session() as db:
        issued = sender_tokens.create_token(
            session=db, sender="SCANNER1", actor="t", valid_days=2, now=then
        )
        for bad in ("", "A\\B", "x" * 17):
            with pytest.raises(sender_tokens.TokenError, match="AE title"):
                sender_tokens.create_token(session=db, sender=bad, actor="t")
        with pytest.raises(sender_tokens.TokenError, match="at least one day"):
            sender_tokens.create_token(session=db, sender="S", actor="t", valid_days=0)
        with pytest.raises(sender_tokens.TokenError, match="no token 999"):
            sender_tokens.revoke_token(session=db, token_id=999, actor="t")
    with runtime.session() as db:
        ok = then + timedelta(days=1)
        late = then + timedelta(days=2, seconds=1)
        assert sender_tokens.authenticate(session=db, secret=issued.secret, client=None, now=ok)
        assert not sender_tokens.authenticate(
            session=db, secret=issued.secret, client=None, now=late
        )


def test_cli_create_list_revoke(settings: Settings, runtime: Runtime, tmp_path: Path) -> None:
    config = tmp_path / "unitumour.toml"
    config.write_text(
        f'data_dir = "{settings.data_dir}"\n[database]\nurl = "{settings.database_url}"\n'
        '[listener]\ncallers = [{ae_title = "SCANNER1"}]\n'
    )
    runner = CliRunner()

    def run(*args: str):  # type: ignore[no-untyped-def]
        return runner.invoke(app, ["-c", str(config), "tokens", *args])

    made = run("create", "SCANNER1", "--note", "slide scanner 1")
    assert made.exit_code == 0, made.output
    secret = made.stdout.strip().splitlines()[0]
    assert secret.startswith("utk_")
    unknown = run("create", "NOBODY")
    assert unknown.exit_code == 0 and "no caller rule" in unknown.stderr
    listed = run("list", "--json")
    assert listed.exit_code == 0 and secret not in listed.output
    assert '"sender": "SCANNER1"' in listed.output and '"status": "active"' in listed.output
    assert run("revoke", "1").exit_code == 0
    again = run("revoke", "1")
    assert again.exit_code == 2 and "already revoked" in again.output
    assert '"status": "revoked"' in run("list", "--json").output


def test_presented_secret_reads_bearer_and_basic_over_tls_only() -> None:
    import base64

    read = sender_tokens.presented_secret
    assert read("Bearer utk_abc", secure=False) == ("utk_abc", None)
    basic = "Basic " + base64.b64encode(b"SCANNER1:utk_abc").decode()
    assert read(basic, secure=True) == ("utk_abc", "SCANNER1")
    with pytest.raises(sender_tokens.CredentialError, match="HTTPS only"):
        read(basic, secure=False)
    for bad in (
        None,
        "",
        "Bearer",
        "Digest x",
        "Basic !!!",
        "Basic " + "A" * 600,
        "Basic " + base64.b64encode(b"no-colon").decode(),
    ):
        with pytest.raises(sender_tokens.CredentialError):
            read(bad, secure=True)

"""Tokens of machine clients (scanners, archives) that send slides by STOW-RS.

A browser logs in with a password; a scanner cannot. Each token speaks for one sender, named
by a caller rule's AE title (``listener.callers``), so a slide that arrives by STOW-RS gets
exactly the rules of a C-STORE from that sender: the networks it may send from, its quiet
time and the destinations of its results. Tokens are made and revoked with ``unitumour
tokens``; each change is audited in the transaction that makes it. Only a token's sha256 is
stored: the token is 256 random bits, so a fast hash is as safe as a slow one, and it is
looked up by that hash (no comparison of secrets in Python).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from .db import AuditEventName, SenderToken, record_event
from .errors import UniTumourError

#: What every token starts with: lets secret scanners and operators recognise one.
TOKEN_PREFIX = "utk_"  # noqa: S105 (a marker, not a secret)
_TOKEN = re.compile(r"^utk_[A-Za-z0-9_-]{43}$")
_AE_TITLE = re.compile(r"^[\x20-\x5b\x5d-\x7e]{1,16}$")  # PS3.5 AE VR: no backslash
#: A token's last use is written at most this often (every request would write a row).
LAST_USED_EVERY = timedelta(minutes=1)


class TokenError(UniTumourError):
    """A token cannot be made, found or revoked as asked."""


@dataclass(frozen=True)
class IssuedToken:
    """A new token: ``secret`` is shown once and never stored."""

    id: int
    sender: str
    prefix: str
    secret: str
    expires_at: datetime | None


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("ascii")).hexdigest()


def validate_sender(sender: str) -> str:
    value = sender.strip()
    if not value or not _AE_TITLE.fullmatch(value):
        raise TokenError(f"sender {sender!r} is not an AE title (1 to 16 characters, no '\\')")
    return value


def create_token(
    *,
    session: Session,
    sender: str,
    actor: str,
    note: str | None = None,
    valid_days: int | None = None,
    now: datetime | None = None,
) -> IssuedToken:
    """A new token for ``sender``; its secret is in the returned value only."""
    sender = validate_sender(sender)
    if valid_days is not None and valid_days <= 0:
        raise TokenError("a token must be valid for at least one day")
    if note is not None and len(note) > 256:
        raise TokenError("a note may have at most 256 characters")
    now = now or datetime.now(UTC)
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    expires_at = now + timedelta(days=valid_days) if valid_days else None
    row = SenderToken(
        sender=sender,
        token_sha256=_digest(secret),
        prefix=secret[:12],
        note=note,
        created_at=now,
        created_by=actor,
        expires_at=expires_at,
    )
    session.add(row)
    session.flush()
    record_event(
        session=session,
        event=AuditEventName.SENDER_TOKEN_CREATED,
        message=f"token {row.id} ({row.prefix}...) for sender {sender} made by {actor}",
        actor=actor,
        details={
            "token_id": row.id,
            "sender": sender,
            "prefix": row.prefix,
            "expires_at": expires_at.isoformat() if expires_at else None,
        },
    )
    return IssuedToken(row.id, sender, row.prefix, secret, expires_at)


def revoke_token(*, session: Session, token_id: int, actor: str) -> SenderToken:
    """Revoke a token at once; a request already past authentication still finishes."""
    row = session.get(SenderToken, token_id)
    if row is None:
        raise TokenError(f"no token {token_id}")
    if row.revoked_at is not None:
        raise TokenError(f"token {token_id} was already revoked by {row.revoked_by}")
    row.revoked_at = datetime.now(UTC)
    row.revoked_by = actor
    record_event(
        session=session,
        event=AuditEventName.SENDER_TOKEN_REVOKED,
        message=f"token {row.id} ({row.prefix}...) of sender {row.sender} revoked by {actor}",
        actor=actor,
        details={"token_id": row.id, "sender": row.sender, "prefix": row.prefix},
    )
    return row


def list_tokens(session: Session) -> list[SenderToken]:
    return list(session.scalars(select(SenderToken).order_by(SenderToken.id)))


def authenticate(
    *, session: Session, secret: str, client: str | None, now: datetime | None = None
) -> SenderToken | None:
    """The live token ``secret`` is, or None (unknown, revoked, expired, malformed).

    Records the last use (at most once a minute per token) in the caller's transaction.
    """
    if not isinstance(secret, str) or not _TOKEN.fullmatch(secret):
        return None
    now = now or datetime.now(UTC)
    row = session.scalar(select(SenderToken).where(SenderToken.token_sha256 == _digest(secret)))
    if row is None or row.revoked_at is not None:
        return None
    if row.expires_at is not None and row.expires_at <= now:
        return None
    if row.last_used_at is None or now - row.last_used_at >= LAST_USED_EVERY:
        session.execute(
            update(SenderToken)
            .where(SenderToken.id == row.id)
            .values(last_used_at=now, last_used_from=(client or "")[:64] or None)
        )
    return row


class CredentialError(TokenError):
    """The Authorization header is missing, malformed, or not allowed on this connection."""


def presented_secret(authorization: str | None, *, secure: bool) -> tuple[str, str | None]:
    """The token a request presents, and the sender it claims (Basic's user name, else None).

    ``Authorization: Bearer <token>``, or ``Basic`` with the sender's AE title as user name
    and the token as password; Basic only over TLS (``secure``), because clients send it
    with every request and intermediaries log it more readily than a bearer header.
    """
    if not authorization:
        raise CredentialError("no credentials: send 'Authorization: Bearer <token>'")
    scheme, _, value = authorization.strip().partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer" and value:
        return value, None
    if scheme.lower() == "basic" and value:
        if not secure:
            raise CredentialError("HTTP Basic is accepted over HTTPS only")
        if len(value) > 512:
            raise CredentialError("malformed Basic credentials")
        try:
            decoded = base64.b64decode(value, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError) as exc:
            raise CredentialError("malformed Basic credentials") from exc
        user, sep, password = decoded.partition(":")
        if not sep:
            raise CredentialError("malformed Basic credentials")
        return password, user.strip() or None
    raise CredentialError("unsupported authorization scheme: use Bearer (or Basic over HTTPS)")

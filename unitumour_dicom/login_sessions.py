"""Server-side sessions of the web app: opened by a log-in, ended on the server.

A signed cookie alone cannot be taken back: a copy made before log-out stays valid until it
expires. So each log-in is a row (``LoginSession``) and the cookie carries only a random
token whose sha256 the row holds; a session counts only while its row says it is open,
unexpired and its user active. Log-out, an admin (web or CLI), a password or role change and
disabling the user end sessions here, each with a reason and an audit row.

The database never holds a token itself: a copy of the database (a backup, a replica) does
not let anyone in.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from sqlalchemy import ColumnElement, delete, select, update
from sqlalchemy.orm import Session, joinedload

from .db import AuditEventName, LoginSession, User, compare_and_set, record_event, rowcount

#: Random bytes in a session token (256 bits, url-safe base64 in the cookie).
TOKEN_BYTES = 32
#: last_seen_at is written at most this often per session: a write on every request would
#: make each page view a database write (and on SQLite, a lock every other writer waits for).
SEEN_RESOLUTION = timedelta(seconds=60)
MAX_USER_AGENT = 256
MAX_REMOTE_ADDR = 64


class EndReason(StrEnum):
    """Why a session ended before it expired (login_sessions.end_reason)."""

    LOGOUT = "logout"
    ADMIN = "ended_by_admin"
    PASSWORD_SET = "password_set"  # noqa: S105 (a reason, not a password)
    ROLE_SET = "role_set"
    USER_DISABLED = "user_disabled"


def token_digest(token: str) -> str:
    """What the database keeps of a token: its sha256 (a token has 256 random bits, so a
    plain digest cannot be reversed by guessing)."""
    return hashlib.sha256(token.encode()).hexdigest()


def _now(now: datetime | None) -> datetime:
    return now if now is not None else datetime.now(UTC)


def _clip(value: str | None, limit: int) -> str | None:
    return value[:limit] if value else None


def start_session(
    *,
    session: Session,
    user: User,
    hours: float,
    remote_addr: str | None = None,
    user_agent: str | None = None,
    now: datetime | None = None,
) -> tuple[str, LoginSession]:
    """Open a session for ``user`` lasting ``hours``; returns the token (for the cookie, and
    nowhere else) and the row. The caller's ``user.login`` audit row records the log-in."""
    now = _now(now)
    token = secrets.token_urlsafe(TOKEN_BYTES)
    row = LoginSession(
        token_sha256=token_digest(token),
        user_id=user.id,
        created_at=now,
        last_seen_at=now,
        expires_at=now + timedelta(hours=hours),
        remote_addr=_clip(remote_addr, MAX_REMOTE_ADDR),
        user_agent=_clip(user_agent, MAX_USER_AGENT),
    )
    session.add(row)
    session.flush()
    return token, row


def find_session(
    *, session: Session, token: str | None, now: datetime | None = None
) -> LoginSession | None:
    """The open session of this token, with its user loaded; None if there is none, or it
    ended, or it expired (then its row goes), or its user is disabled.

    Notes the time it was seen, at most once per SEEN_RESOLUTION.
    """
    if not token or len(token) > 128:
        return None
    now = _now(now)
    row = session.scalar(
        select(LoginSession)
        .options(joinedload(LoginSession.user))
        .where(LoginSession.token_sha256 == token_digest(token))
    )
    if row is None or row.ended_at is not None:
        return None
    if row.expires_at <= now:
        session.delete(row)  # expired: refused, and cleaned up
        return None
    if not row.user.active:
        return None
    if now - row.last_seen_at >= SEEN_RESOLUTION:
        # Conditional, so that parallel requests of one session write it once.
        session.execute(
            update(LoginSession)
            .where(LoginSession.id == row.id, LoginSession.last_seen_at <= now - SEEN_RESOLUTION)
            .values(last_seen_at=now)
        )
        row.last_seen_at = now
    return row


def _open(now: datetime) -> tuple[ColumnElement[bool], ...]:
    return (LoginSession.ended_at.is_(None), LoginSession.expires_at > now)


def list_sessions(
    *, session: Session, username: str | None = None, now: datetime | None = None
) -> list[LoginSession]:
    """Open sessions (of one user, or of all), newest first, with their users loaded."""
    now = _now(now)
    query = (
        select(LoginSession)
        .join(LoginSession.user)
        .options(joinedload(LoginSession.user))
        .where(*_open(now))
        .order_by(LoginSession.created_at.desc(), LoginSession.id.desc())
    )
    if username is not None:
        query = query.where(User.username == username)
    return list(session.scalars(query))


def end_session(
    *,
    session: Session,
    session_id: int,
    reason: EndReason,
    actor: str | None = None,
    now: datetime | None = None,
) -> LoginSession | None:
    """End one open session (log-out; an admin); None when it is not open (any more)."""
    now = _now(now)
    ended = compare_and_set(
        session,
        LoginSession,
        session_id,
        where=list(_open(now)),
        values={"ended_at": now, "end_reason": reason.value},
    )
    if not ended:
        return None
    row = session.get(LoginSession, session_id)
    assert row is not None
    session.refresh(row)
    username = row.user.username
    record_event(
        session=session,
        event=AuditEventName.USER_SESSION_ENDED,
        message=f"session {session_id} of user {username} ended ({reason.value})",
        actor=actor,
        details={"session_id": session_id, "username": username, "reason": reason.value},
    )
    return row


def end_user_sessions(
    *,
    session: Session,
    user: User,
    reason: EndReason,
    actor: str | None = None,
    now: datetime | None = None,
) -> int:
    """End every open session of ``user``; returns how many ended. Audited when any ended,
    and always when an admin asked (so the log shows the action was taken)."""
    now = _now(now)
    ended = session.execute(
        update(LoginSession)
        .where(LoginSession.user_id == user.id, *_open(now))
        .values(ended_at=now, end_reason=reason.value)
        .execution_options(synchronize_session=False)
    )
    count = rowcount(ended)
    if count == 0 and reason is not EndReason.ADMIN:
        return 0
    record_event(
        session=session,
        event=AuditEventName.USER_SESSIONS_ENDED,
        message=f"{count} session(s) of user {user.username} ended ({reason.value})",
        actor=actor,
        details={"user_id": user.id, "username": user.username, "count": count,
                 "reason": reason.value},
    )  # fmt: skip
    return count


def purge_sessions(*, session: Session, now: datetime | None = None) -> int:
    """Delete the rows of sessions past their expiry (ended ones are kept until then, so an
    admin sees why they ended); returns how many went. Run at each log-in."""
    result = session.execute(
        delete(LoginSession)
        .where(LoginSession.expires_at <= _now(now))
        .execution_options(synchronize_session=False)
    )
    return rowcount(result)


__all__ = [
    "EndReason",
    "end_session",
    "end_user_sessions",
    "find_session",
    "list_sessions",
    "purge_sessions",
    "start_session",
    "token_digest",
]

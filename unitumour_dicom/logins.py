"""Logging in to the web app: the lock-out of a user name, then the password, then a session.

The lock-out must hold against parallel requests. Counting failures and then checking the
password lets twenty requests sent at once all read "0 failures" before any of them adds
one. So an attempt is *reserved* before the password is checked, by one conditional UPDATE
(``failures = failures + 1 WHERE failures < limit``) that the database applies atomically
on SQLite (one writer at a time) and on PostgreSQL (the row lock; the WHERE is evaluated
again on the row a concurrent update left). A reserved attempt counts as a failure from the
moment it is reserved, and a correct password clears the count. At most
``web.max_failed_logins`` passwords are therefore checked per user name per window, however
many requests arrive at once.

Failures count while they follow one another within ``web.lockout_minutes``; the lock-out
lasts that long after the last counted attempt. User names that do not exist are counted
too, so that the lock-out does not tell which names exist.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from .config.sections import WebSettings
from .db import AuditEventName, LoginThrottle, User, record_event, rowcount
from .login_sessions import purge_sessions, start_session
from .runtime import Runtime
from .users import authenticate


@dataclass(frozen=True)
class LoginLimits:
    """How many failures one user name may have, and for how long they count."""

    max_failures: int
    window: timedelta

    @classmethod
    def from_settings(cls, web: WebSettings) -> LoginLimits:
        return cls(web.max_failed_logins, timedelta(minutes=web.lockout_minutes))


@dataclass(frozen=True)
class LoginOutcome:
    """What a log-in came to: a user and a session token, or a refusal (locked or not)."""

    user: User | None = None
    token: str | None = None
    session_id: int | None = None
    locked: bool = False


def _throttle_key(username: str) -> str:
    return username[:64]


def _insert_ignore(session: Session, key: str) -> None:
    dialect = session.get_bind().dialect.name
    # One branch per dialect: each insert() has its own on_conflict_do_nothing().
    if dialect == "sqlite":
        stmt = sqlite.insert(LoginThrottle).values(username=key, failures=0)
        session.execute(stmt.on_conflict_do_nothing())
    elif dialect == "postgresql":
        pg_stmt = postgresql.insert(LoginThrottle).values(username=key, failures=0)
        session.execute(pg_stmt.on_conflict_do_nothing())
    else:
        raise NotImplementedError(f"log-in throttling needs SQLite or PostgreSQL, not {dialect}")


def reserve_attempt(
    *, session: Session, username: str, limits: LoginLimits, now: datetime | None = None
) -> bool:
    """Count one attempt for ``username`` unless its failures have reached the limit;
    True when the attempt may check its password. Commit before checking the password, so
    that the reservation is seen by every other request (and holds no lock meanwhile)."""
    now = now or datetime.now(UTC)
    key = _throttle_key(username)
    _insert_ignore(session, key)
    # Failures older than the window are forgotten; the condition keeps two requests from
    # both resetting (the second sees the first's fresh last_failure_at).
    session.execute(
        update(LoginThrottle)
        .where(LoginThrottle.username == key, LoginThrottle.last_failure_at <= now - limits.window)
        .values(failures=0)
    )
    reserved = session.execute(
        update(LoginThrottle)
        .where(LoginThrottle.username == key, LoginThrottle.failures < limits.max_failures)
        .values(failures=LoginThrottle.failures + 1, last_failure_at=now)
    )
    return rowcount(reserved) == 1


def clear_failures(*, session: Session, username: str) -> None:
    """A correct password: the user name's count starts again from zero."""
    session.execute(
        update(LoginThrottle)
        .where(LoginThrottle.username == _throttle_key(username))
        .values(failures=0)
    )


def purge_throttles(*, session: Session, limits: LoginLimits, now: datetime | None = None) -> int:
    """Forget user names whose last failure is older than the window (they count nothing)."""
    cutoff = (now or datetime.now(UTC)) - limits.window
    result = session.execute(
        delete(LoginThrottle)
        .where(LoginThrottle.last_failure_at <= cutoff)
        .execution_options(synchronize_session=False)
    )
    return rowcount(result)


def log_in(
    runtime: Runtime,
    *,
    username: str,
    password: str,
    remote_addr: str | None = None,
    user_agent: str | None = None,
) -> LoginOutcome:
    """Reserve an attempt, check the password, open a session: each step its own unit of
    work on ``runtime``, every outcome audited (``user.login``, ``user.login_failed``,
    ``user.login_locked``)."""
    web = runtime.settings.web
    limits = LoginLimits.from_settings(web)
    with runtime.session() as db:
        reserved = reserve_attempt(session=db, username=username, limits=limits)
        if not reserved:
            record_event(
                session=db,
                event=AuditEventName.USER_LOGIN_LOCKED,
                message=f"log-in as {username[:64]!r} refused: too many failed attempts",
                actor=username[:64],
                details={"source": remote_addr},
            )
    if not reserved:
        return LoginOutcome(locked=True)
    with runtime.session() as db:
        user = authenticate(session=db, username=username, password=password, source=remote_addr)
        if user is None:
            return LoginOutcome()
        clear_failures(session=db, username=username)
        purge_sessions(session=db)
        purge_throttles(session=db, limits=limits)
        token, row = start_session(
            session=db,
            user=user,
            hours=web.session_hours,
            remote_addr=remote_addr,
            user_agent=user_agent,
        )
        return LoginOutcome(user=user, token=token, session_id=row.id)


__all__ = [
    "LoginLimits",
    "LoginOutcome",
    "clear_failures",
    "log_in",
    "purge_throttles",
    "reserve_attempt",
]

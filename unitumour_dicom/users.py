"""Local users of the audit web app: argon2id password hashes, roles, and who may log in.

The library holds this (not the web service) so that the ``unitumour users`` command and the
web app share one implementation. Every change to a user is written to the audit log by the
session the caller commits. A password change, a role change and disabling a user end the
user's open web sessions (login_sessions), whoever holds their cookies.
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import select
from sqlalchemy.orm import Session

from .db import AuditEventName, User, UserRole, record_event
from .errors import UniTumourError
from .login_sessions import EndReason, end_user_sessions

log = logging.getLogger(__name__)

#: Letters, digits and ``._@-``, starting with a letter or digit; fits User.username.
USERNAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
MIN_PASSWORD_LENGTH = 10
MAX_PASSWORD_LENGTH = 1024  # argon2 hashes anything, but a megabyte password is an attack

_hasher = PasswordHasher()  # argon2id with the library's (RFC 9106 low-memory) parameters
# Verified against when the user does not exist, so that a wrong user name costs as much time
# as a wrong password and log-in timing does not tell which user names exist.
_DUMMY_HASH = _hasher.hash("unitumour: no such user")


class UserError(UniTumourError):
    """A user cannot be added, found or changed as asked."""


def validate_username(username: str) -> str:
    if not isinstance(username, str) or USERNAME_RE.fullmatch(username) is None:
        raise UserError(
            f"user name {username!r} is not allowed: 1 to 64 letters, digits or '._@-', "
            "starting with a letter or digit"
        )
    return username


def validate_password(password: str) -> str:
    if not isinstance(password, str) or len(password) < MIN_PASSWORD_LENGTH:
        raise UserError(f"a password needs at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise UserError(f"a password may have at most {MAX_PASSWORD_LENGTH} characters")
    return password


def parse_role(role: str | UserRole) -> UserRole:
    try:
        return UserRole(role)
    except ValueError:
        allowed = ", ".join(r.value for r in UserRole)
        raise UserError(f"role {role!r} is not one of: {allowed}") from None


def hash_password(password: str) -> str:
    """An argon2id hash in PHC string form (algorithm, parameters and salt inside)."""
    return _hasher.hash(validate_password(password))


def verify_password(password_hash: str, password: str) -> bool:
    """True when ``password`` matches; False on mismatch or an unreadable hash, never raises."""
    try:
        return _hasher.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def get_user(*, session: Session, username: str) -> User | None:
    return session.scalar(select(User).where(User.username == username))


def list_users(*, session: Session) -> list[User]:
    return list(session.scalars(select(User).order_by(User.username)))


def add_user(
    *,
    session: Session,
    username: str,
    password: str,
    role: str | UserRole = UserRole.VIEWER,
    actor: str | None = None,
) -> User:
    """Create an active user; raise UserError if the name is taken or anything is invalid."""
    validate_username(username)
    role = parse_role(role)
    if get_user(session=session, username=username) is not None:
        raise UserError(f"user {username!r} already exists")
    user = User(username=username, password_hash=hash_password(password), role=role.value)
    session.add(user)
    session.flush()
    record_event(
        session=session,
        event=AuditEventName.USER_ADDED,
        message=f"user {username} added with role {role.value}",
        actor=actor,
        details={"user_id": user.id, "username": username, "role": role.value},
    )
    return user


def _require(session: Session, username: str) -> User:
    user = get_user(session=session, username=username)
    if user is None:
        raise UserError(f"no user named {username!r}")
    return user


def set_password(
    *, session: Session, username: str, password: str, actor: str | None = None
) -> User:
    user = _require(session, username)
    user.password_hash = hash_password(password)
    record_event(
        session=session,
        event=AuditEventName.USER_PASSWORD_SET,
        message=f"password of user {username} changed",
        actor=actor,
        details={"user_id": user.id, "username": username},
    )
    end_user_sessions(session=session, user=user, reason=EndReason.PASSWORD_SET, actor=actor)
    return user


def set_role(
    *, session: Session, username: str, role: str | UserRole, actor: str | None = None
) -> User:
    user = _require(session, username)
    new_role = parse_role(role)
    old_role = user.role
    user.role = new_role.value
    record_event(
        session=session,
        event=AuditEventName.USER_ROLE_SET,
        message=f"role of user {username} changed from {old_role} to {new_role.value}",
        actor=actor,
        details={"user_id": user.id, "username": username, "from": old_role, "to": new_role},
    )
    if new_role.value != old_role:
        end_user_sessions(session=session, user=user, reason=EndReason.ROLE_SET, actor=actor)
    return user


def set_active(*, session: Session, username: str, active: bool, actor: str | None = None) -> User:
    """Disable (or enable again) a user; disabling ends the user's sessions."""
    user = _require(session, username)
    user.active = active
    verb = "enabled" if active else "disabled"
    record_event(
        session=session,
        event=AuditEventName.USER_ENABLED if active else AuditEventName.USER_DISABLED,
        message=f"user {username} {verb}",
        actor=actor,
        details={"user_id": user.id, "username": username},
    )
    if not active:
        end_user_sessions(session=session, user=user, reason=EndReason.USER_DISABLED, actor=actor)
    return user


def end_sessions(*, session: Session, username: str, actor: str | None = None) -> int:
    """End every open web session of a user (an admin's action: web or CLI); audited as
    ``user.sessions_ended``. Returns how many ended."""
    user = _require(session, username)
    return end_user_sessions(session=session, user=user, reason=EndReason.ADMIN, actor=actor)


def authenticate(
    *, session: Session, username: str, password: str, source: str | None = None
) -> User | None:
    """The active user with this name and password, or None; both outcomes are audited.

    Takes the same time whether or not the user exists. Re-hashes the password when the
    hasher's parameters have grown stronger since it was set.
    """
    user = get_user(session=session, username=username) if USERNAME_RE.fullmatch(username) else None
    if user is None:
        verify_password(_DUMMY_HASH, password)
        ok = False
    else:
        ok = verify_password(user.password_hash, password) and user.active
    details = {"username": username[:64], "source": source}
    if not ok or user is None:
        record_event(
            session=session,
            event=AuditEventName.USER_LOGIN_FAILED,
            message=f"failed log-in as {username[:64]!r}",
            actor=username[:64],
            details=details,
        )
        return None
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = _hasher.hash(password)
    user.last_login_at = datetime.now(UTC)
    record_event(
        session=session,
        event=AuditEventName.USER_LOGIN,
        message=f"user {user.username} logged in",
        actor=user.username,
        details=details,
    )
    return user

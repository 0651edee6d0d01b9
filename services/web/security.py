"""Session cookies, the logged-in user, roles and CSRF tokens.

The cookie is signed and timestamped (itsdangerous) and holds the CSRF token that every form
and every state-changing API call must echo and, once logged in, the token of a server-side
session (unitumour_dicom.login_sessions): the database decides whether that session is still
open, so log-out, an admin, a password or role change or disabling the user end it for every
copy of the cookie. Anonymous visitors get a cookie too (no database row), so the log-in
form has its CSRF token. The cookie is HttpOnly, SameSite=Lax, and Secure unless
web.secure_cookies is off (the demo on plain http://127.0.0.1).
"""

from __future__ import annotations

import hmac
import logging
import os
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path

from fastapi import Request
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from unitumour_dicom.config import Settings
from unitumour_dicom.db import UserRole
from unitumour_dicom.permissions import private_dir

log = logging.getLogger(__name__)

COOKIE_NAME = "unitumour_session"
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"
SECRET_FILE = "web-secret.key"  # noqa: S105 (a file name, not a secret)


#: Pages and scripts come only from us; the viewer needs WebAssembly, workers and inline
#: styles (OpenLayers positions its layers with style attributes).
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; worker-src 'self' blob:; "
    "style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; connect-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
#: The viewer page and the viewer's own files (its decoder worker takes the CSP of its script's
#: response): dicom-microscopy-viewer's WebAssembly codecs are emscripten builds whose glue
#: code evaluates strings, so these, and only these, also allow 'unsafe-eval'.
VIEWER_CONTENT_SECURITY_POLICY = CONTENT_SECURITY_POLICY.replace(
    "script-src 'self' 'wasm-unsafe-eval'", "script-src 'self' 'unsafe-eval' 'wasm-unsafe-eval'"
)


def load_secret_key(settings: Settings) -> str:
    """The configured key, or one made once and kept (mode 0600) in the data directory, so
    sessions survive restarts and every web process on the host shares it."""
    if settings.web.secret_key is not None:
        key = settings.web.secret_key.get_secret_value()
        if len(key) < 32:
            raise ValueError("web.secret_key must have at least 32 characters")
        return key
    path = Path(settings.data_dir) / SECRET_FILE
    private_dir(path.parent)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as fh:
        fh.write(secrets.token_hex(32))
        fh.flush()
        os.fsync(fh.fileno())
    return path.read_text().strip()


@dataclass(frozen=True)
class WebSession:
    """What the session cookie holds."""

    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    #: The server-side session's token (None: anonymous); the database keeps its sha256.
    token: str | None = None
    issued_at: float = field(default_factory=time.time)

    def as_dict(self) -> dict[str, object]:
        return {"c": self.csrf, "s": self.token, "t": self.issued_at}


@dataclass(frozen=True)
class AuthUser:
    """The logged-in user, as the request handlers see it."""

    id: int
    username: str
    role: str
    #: The id of the login_sessions row this request came with.
    session_id: int | None = None

    @property
    def is_admin(self) -> bool:
        return self.role == UserRole.ADMIN


class SessionCodec:
    """Signs and checks session cookies."""

    def __init__(self, secret_key: str, max_age_s: float) -> None:
        self._serializer = URLSafeTimedSerializer(secret_key, salt="unitumour.web.session")
        self.max_age_s = max_age_s

    def dumps(self, session: WebSession) -> str:
        return self._serializer.dumps(session.as_dict())

    def loads(self, token: str | None) -> WebSession | None:
        if not token or len(token) > 4096:
            return None
        try:
            # itsdangerous takes whole seconds; its token ages are whole seconds, so for them
            # age > max_age_s exactly when age > int(max_age_s).
            data = self._serializer.loads(token, max_age=int(self.max_age_s))
        except (BadSignature, SignatureExpired):
            return None
        if not isinstance(data, dict) or not isinstance(data.get("c"), str):
            return None
        token = data.get("s")
        return WebSession(
            csrf=data["c"],
            token=token if isinstance(token, str) else None,
            issued_at=float(data.get("t") or 0.0),
        )


def request_session(request: Request) -> WebSession:
    """The request's session (read from the cookie by the middleware in app.py); an
    anonymous one is made, and sent back as a cookie, the first time a request needs it."""
    session: WebSession | None = getattr(request.state, "web_session", None)
    if session is None:
        session = WebSession()
        replace_session(request, session)
    return session


def replace_session(request: Request, session: WebSession) -> None:
    """Send a new session cookie with the response (log-in, log-out)."""
    request.state.web_session = session
    request.state.session_changed = True


def logged_in_session(token: str) -> WebSession:
    """A fresh cookie (new CSRF token: no fixation) for the session a log-in just opened."""
    return WebSession(token=token)


def csrf_ok(session: WebSession, token: str | None) -> bool:
    return bool(token) and hmac.compare_digest(session.csrf.encode(), str(token).encode())


def safe_next(target: str | None, default: str = "/cases") -> str:
    """Only a local path may follow log-in: no scheme, no host, no '//' or backslash tricks."""
    if (
        not target
        or not target.startswith("/")
        or target.startswith("//")
        or "\\" in target
        or any(ord(c) < 0x20 for c in target)
        or len(target) > 2000
    ):
        return default
    return target


__all__ = [
    "COOKIE_NAME",
    "CSRF_FIELD",
    "CSRF_HEADER",
    "AuthUser",
    "SessionCodec",
    "WebSession",
    "csrf_ok",
    "load_secret_key",
    "logged_in_session",
    "replace_session",
    "request_session",
    "safe_next",
]

"""The log-in lock-out holds against parallel requests, on SQLite and PostgreSQL: however many
wrong passwords arrive at once, at most web.max_failed_logins of them are checked."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import func, select

from unitumour_dicom import users
from unitumour_dicom.config import Settings
from unitumour_dicom.db import AuditEvent
from unitumour_dicom.runtime import Runtime

from .conftest import PASSWORD, LiveServer, plain_http, with_viewer

pytestmark = [pytest.mark.integration]

N_PARALLEL = 20
#: What the password check costs in production (argon2id at 64 MiB takes about this long);
#: the tests' cheap hasher alone is too quick for requests to overlap reliably.
CHECK_SECONDS = 0.3


@pytest.fixture
def web_settings(settings: Settings) -> Settings:
    """This module's subject is SQL concurrency: both database backends."""
    return plain_http(with_viewer(settings))


@pytest.fixture
def password_checks(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Counts every password check (the real one, at production's duration)."""
    checks: list[str] = []
    lock = threading.Lock()
    real = users.verify_password

    def counted(password_hash: str, password: str) -> bool:
        with lock:
            checks.append(password)
        time.sleep(CHECK_SECONDS)
        return real(password_hash, password)

    monkeypatch.setattr(users, "verify_password", counted)
    return checks


def _all_at_once(n: int, work: Callable[[int], object]) -> list[object]:
    """Run ``work(i)`` in n threads released together; the results in order."""
    barrier = threading.Barrier(n)
    results: list[object] = [None] * n

    def run(i: int) -> None:
        barrier.wait()
        results[i] = work(i)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    return results


def _count(runtime: Runtime, event: str, actor: str) -> int:
    with runtime.session() as db:
        return int(
            db.scalar(
                select(func.count())
                .select_from(AuditEvent)
                .where(AuditEvent.event == event, AuditEvent.actor == actor)
            )
            or 0
        )


def test_parallel_wrong_passwords_over_http_check_at_most_the_limit(
    live_server: LiveServer, web_runtime: Runtime, password_checks: list[str]
) -> None:
    limit = web_runtime.settings.web.max_failed_logins

    def attempt(i: int) -> int:
        with httpx.Client(base_url=live_server.url, timeout=60) as c:  # a client of its own
            r = c.post("/api/login", json={"username": "vic", "password": f"wrong {i}"})
            return r.status_code

    statuses = _all_at_once(N_PARALLEL, attempt)
    assert statuses == [401] * N_PARALLEL
    assert len(password_checks) <= limit, f"{len(password_checks)} checks, limit {limit}"
    assert len(password_checks) == limit  # and the limit is reached, not merely undercut
    assert _count(web_runtime, "user.login_failed", "vic") == limit
    assert _count(web_runtime, "user.login_locked", "vic") == N_PARALLEL - limit
    # the right password is refused too until the lock-out ends
    with httpx.Client(base_url=live_server.url, timeout=60) as c:
        r = c.post("/api/login", json={"username": "vic", "password": PASSWORD})
        assert r.status_code == 401 and "Too many failed log-ins" in r.json()["detail"]
    assert len(password_checks) == limit


def test_parallel_library_log_ins_with_their_own_sessions_check_at_most_the_limit(
    web_runtime: Runtime, accounts: dict[str, str], password_checks: list[str]
) -> None:
    from unitumour_dicom import logins

    limit = web_runtime.settings.web.max_failed_logins
    outcomes = _all_at_once(
        N_PARALLEL,
        lambda i: logins.log_in(web_runtime, username="nobody", password=f"guess {i}"),
    )
    assert len(password_checks) == limit
    locked = [o for o in outcomes if isinstance(o, logins.LoginOutcome) and o.locked]
    assert len(locked) == N_PARALLEL - limit
    assert all(isinstance(o, logins.LoginOutcome) and o.user is None for o in outcomes)


def test_failures_are_forgotten_after_the_window_and_cleared_by_a_success(
    web_runtime: Runtime, accounts: dict[str, str]
) -> None:
    from unitumour_dicom import logins
    from unitumour_dicom.logins import LoginLimits, reserve_attempt

    limits = LoginLimits(max_failures=2, window=timedelta(minutes=15))
    t0 = datetime.now(UTC)
    with web_runtime.session() as db:
        assert reserve_attempt(session=db, username="vic", limits=limits, now=t0)
        assert reserve_attempt(session=db, username="vic", limits=limits, now=t0)
        assert not reserve_attempt(session=db, username="vic", limits=limits, now=t0)
        almost = t0 + limits.window - timedelta(seconds=1)
        assert not reserve_attempt(session=db, username="vic", limits=limits, now=almost)
        after = t0 + limits.window
        assert reserve_attempt(session=db, username="vic", limits=limits, now=after)
        logins.clear_failures(session=db, username="vic")
        assert reserve_attempt(session=db, username="vic", limits=limits, now=after)
        assert reserve_attempt(session=db, username="vic", limits=limits, now=after)
        assert not reserve_attempt(session=db, username="vic", limits=limits, now=after)
        # another user name has a count of its own
        assert reserve_attempt(session=db, username="ada", limits=limits, now=after)


def test_a_correct_password_clears_the_count(
    web_runtime: Runtime, accounts: dict[str, str]
) -> None:
    from unitumour_dicom import logins

    limit = web_runtime.settings.web.max_failed_logins
    for i in range(limit - 1):
        assert logins.log_in(web_runtime, username="vic", password=f"wrong {i}").user is None
    ok = logins.log_in(web_runtime, username="vic", password=PASSWORD)
    assert ok.user is not None and ok.token
    for i in range(limit - 1):  # the earlier failures no longer count
        outcome = logins.log_in(web_runtime, username="vic", password=f"again {i}")
        assert not outcome.locked

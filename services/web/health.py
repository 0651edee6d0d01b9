"""Liveness and readiness: /healthz says the process answers; /readyz checks what a request
needs, each with a short time limit: the database (SELECT 1), the broker (a connection), and
the store (writable, free space above the watermark).

``/readyz?check=database`` runs only the database check: what an orchestrator's readiness
probe needs. The audit pages read the database; a broker outage or a full store is the
workers' and the listener's trouble, and taking every web replica out of its Service for it
would hide the very pages that show the trouble. The full /readyz stays for monitoring."""

from __future__ import annotations

import concurrent.futures
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

from kombu import Connection
from sqlalchemy import text

from unitumour_dicom.runtime import Runtime

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CheckResult:
    ok: bool
    detail: str
    seconds: float


def check_database(runtime: Runtime) -> str:
    with runtime.engine.connect() as conn:
        conn.execute(text("SELECT 1"))
    return "SELECT 1 answered"


def check_broker(url: str, timeout_s: float) -> str:
    with Connection(url, connect_timeout=timeout_s) as conn:
        conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=timeout_s)
    return f"connected ({url.split('://', 1)[0]})"


def check_store(runtime: Runtime) -> str:
    store = runtime.store
    store.check_space()
    probe = store.new_spool_path(".ready")
    fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, b"ready")
        os.fsync(fd)
    finally:
        os.close(fd)
        probe.unlink(missing_ok=True)
    return f"writable, {store.free_percent():.1f}% free (watermark {store.min_free_percent}%)"


def _timed(check: Callable[[], str]) -> CheckResult:
    start = time.monotonic()
    try:
        detail = check()
        ok = True
    except Exception as exc:  # every failure is a reason not to be ready, said in words
        detail = f"{type(exc).__name__}: {exc}"[:500]
        ok = False
    return CheckResult(ok, detail, round(time.monotonic() - start, 4))


# Checks run in threads of their own: one that hangs past its limit is reported as failed
# without holding up the answer (the thread finishes or dies on its own).
_pool = concurrent.futures.ThreadPoolExecutor(max_workers=6, thread_name_prefix="readyz")


CHECKS = ("database", "broker", "store")


def readiness(
    runtime: Runtime, timeout_s: float, only: tuple[str, ...] = CHECKS
) -> dict[str, CheckResult]:
    """Run the checks named in ``only`` (default: all) in parallel, each within its limit."""
    unknown = set(only) - set(CHECKS)
    if unknown:
        raise ValueError(f"unknown readiness checks: {', '.join(sorted(unknown))}")
    every: dict[str, Callable[[], str]] = {
        "database": lambda: check_database(runtime),
        "broker": lambda: check_broker(runtime.settings.broker_url, timeout_s),
        "store": lambda: check_store(runtime),
    }
    checks = {name: fn for name, fn in every.items() if name in only}
    futures = {name: _pool.submit(_timed, fn) for name, fn in checks.items()}
    out = {}
    for name, future in futures.items():
        try:
            out[name] = future.result(timeout=timeout_s + 1.0)
        except concurrent.futures.TimeoutError:
            out[name] = CheckResult(False, f"no answer within {timeout_s + 1.0:.1f} s", timeout_s)
    for name, result in out.items():
        if not result.ok:
            log.warning("readiness check %s failed: %s", name, result.detail)
    return out

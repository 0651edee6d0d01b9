"""Engines and sessions. One engine per process and URL; SQLite gets WAL and foreign keys."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import CursorResult, Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import NullPool

from ..permissions import private_sqlite_file

_engines: dict[str, Engine] = {}
_lock = threading.Lock()


def rowcount(result: object) -> int:
    """Rows that an UPDATE or DELETE matched: our compare-and-set test. ``Session.execute`` is
    typed to return a plain ``Result``, which has no row count; for these statements it returns
    a ``CursorResult``, which has."""
    if not isinstance(result, CursorResult):
        raise TypeError(f"no row count on a {type(result).__name__}")
    return result.rowcount


def _sqlite_pragmas(dbapi_connection: Any, connection_record: Any) -> None:
    """WAL lets the listener write while the web app reads; busy_timeout rides out short locks."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def make_engine(url: str, *, echo: bool = False, pool_size: int = 5, pooled: bool = True) -> Engine:
    """A new engine for ``url``, with the per-dialect settings that our rules need.

    ``pooled=False`` is for one-shot work (migrations, forked children) that must leave no
    connection behind.
    """
    if url.startswith("sqlite"):
        private_sqlite_file(url)  # owner-only, before SQLite makes it 0644 & umask
    if url.startswith("sqlite") or not pooled:
        extra: dict[str, Any] = {"poolclass": NullPool} if not pooled else {}
        if url.startswith("sqlite"):
            extra["connect_args"] = {"timeout": 30}
        engine = create_engine(url, echo=echo, **extra)
        if url.startswith("sqlite"):
            event.listen(engine, "connect", _sqlite_pragmas)
    else:
        engine = create_engine(
            url, echo=echo, pool_size=pool_size, pool_pre_ping=True, max_overflow=pool_size
        )
    return engine


def get_engine(url: str, **kwargs: Any) -> Engine:
    """The process-wide engine for ``url`` (engines are pools: make one, share it)."""
    with _lock:
        engine = _engines.get(url)
        if engine is None:
            engine = _engines[url] = make_engine(url, **kwargs)
        return engine


def dispose_engines() -> None:
    """Close every pooled connection, for forks (Celery prefork) and test teardown."""
    with _lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """One unit of work: commit on success, roll back on any error, always close."""
    session = Session(engine, expire_on_commit=False)
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()

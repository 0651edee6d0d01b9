"""Shared fixtures: throwaway settings, databases (SQLite and the real PostgreSQL) and stores.

Every test gets its own data directory. Tests that take ``db_url`` run twice, on SQLite and
on a PostgreSQL database created for this test session and dropped after it. PostgreSQL is
found at UNITUMOUR_TEST_POSTGRES (default: postgres@127.0.0.1:5432, trust auth); when it is
unreachable those runs fail rather than skip, unless UNITUMOUR_TEST_POSTGRES=off.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from unitumour_dicom.config import Settings, load_settings
from unitumour_dicom.db import dispose_engines, migrate
from unitumour_dicom.runtime import Runtime

PG_ADMIN_URL = os.environ.get(
    "UNITUMOUR_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test reads the developer's own UNITUMOUR_* variables or home data directory."""
    for key in list(os.environ):
        if key.startswith("UNITUMOUR_") and key != "UNITUMOUR_TEST_POSTGRES":
            monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session, dropped afterwards."""
    if PG_ADMIN_URL == "off":
        pytest.skip("UNITUMOUR_TEST_POSTGRES=off")
    name = f"unitumour_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        dispose_engines()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database URL, on SQLite and on PostgreSQL; each test starts with no tables."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'test.db'}"
        dispose_engines()
        return
    url = request.getfixturevalue("postgres_database")
    _drop_everything(url)
    yield url
    dispose_engines()
    _drop_everything(url)


def _drop_everything(url: str) -> None:
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()


@pytest.fixture
def settings(tmp_path: Path, db_url: str) -> Settings:
    """Settings for one test: its own data directory and database (SQLite or PostgreSQL)."""
    return load_settings(data_dir=tmp_path / "data", database={"url": db_url})


@pytest.fixture
def sqlite_settings(tmp_path: Path) -> Settings:
    """Settings on SQLite only, for tests whose subject is not the database."""
    return load_settings(data_dir=tmp_path / "data")


@pytest.fixture
def runtime(settings: Settings) -> Iterator[Runtime]:
    """A migrated database and an empty store, on both database backends."""
    migrate.upgrade(settings.database_url)
    yield Runtime(settings)
    dispose_engines()


@pytest.fixture
def sqlite_runtime(sqlite_settings: Settings) -> Iterator[Runtime]:
    sqlite_settings.data_dir.mkdir(parents=True, exist_ok=True)  # SQLite makes no directories
    migrate.upgrade(sqlite_settings.database_url)
    yield Runtime(sqlite_settings)
    dispose_engines()

"""The schema comes from Alembic alone, and it agrees with the models, on both databases."""

from datetime import UTC, datetime

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text
from sqlalchemy import exc as sa_exc
from typer.testing import CliRunner

from unitumour_dicom.cli import app
from unitumour_dicom.db import Base, migrate

pytestmark = pytest.mark.integration

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


def test_single_head() -> None:
    # ScriptDirectory.get_current_head raises when two revisions both claim to be the head.
    assert migrate.head_revision("sqlite://") is not None


def test_models_and_migrations_agree(db_url: str) -> None:
    migrate.upgrade(db_url)
    engine = create_engine(db_url)
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(ctx, Base.metadata)
    engine.dispose()
    assert diff == [], f"models and migrations differ; add a revision: {diff}"


def test_upgrade_then_downgrade_to_base(db_url: str) -> None:
    migrate.upgrade(db_url)
    assert migrate.is_current(db_url)
    engine = create_engine(db_url)
    tables = set(inspect(engine).get_table_names())
    assert set(Base.metadata.tables) <= tables
    migrate.downgrade(db_url, "base")
    assert migrate.current_revision(db_url) is None
    leftover = set(inspect(engine).get_table_names()) - {"alembic_version"}
    engine.dispose()
    assert leftover == set()
    migrate.upgrade(db_url)  # and back up again from nothing
    assert migrate.is_current(db_url)


def test_db_commands(db_url: str, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("UNITUMOUR_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("UNITUMOUR_DATABASE__URL", db_url)
    runner = CliRunner()
    before = runner.invoke(app, ["db", "current"])
    assert before.exit_code == 0, before.output
    assert "base" in before.output and "run 'unitumour db upgrade'" in before.output
    up = runner.invoke(app, ["db", "upgrade"])
    assert up.exit_code == 0, up.output
    head = migrate.head_revision(db_url)
    assert f"database at revision {head}" in up.output
    now = runner.invoke(app, ["db", "current"])
    assert f"{head} (head)" in now.output
    down = runner.invoke(app, ["db", "downgrade", "base"])
    assert down.exit_code == 0 and "revision base" in down.output


def test_0003_adds_login_sessions_and_keeps_every_row(db_url: str) -> None:
    """Upgrading a database in use to 0003 keeps its users and audit rows; the new tables
    start empty, take rows that point at an existing user, and go again on downgrade."""
    migrate.upgrade(db_url, "0002")
    engine = create_engine(db_url)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO users (username, password_hash, role, active, created_at) "
                "VALUES ('ada', 'h', 'admin', true, :t)"
            ),
            {"t": NOW},
        )
        conn.execute(
            text("INSERT INTO audit_events (at, event, message) VALUES (:t, 'user.added', 'm')"),
            {"t": NOW},
        )
    migrate.upgrade(db_url, "0003")
    with engine.begin() as conn:
        assert conn.execute(text("SELECT username, role FROM users")).all() == [("ada", "admin")]
        assert conn.execute(text("SELECT count(*) FROM audit_events")).scalar() == 1
        assert conn.execute(text("SELECT count(*) FROM login_sessions")).scalar() == 0
        user_id = conn.execute(text("SELECT id FROM users")).scalar()
        conn.execute(
            text(
                "INSERT INTO login_sessions (token_sha256, user_id, created_at, last_seen_at, "
                "expires_at) VALUES (:h, :u, :t, :t, :t)"
            ),
            {"h": "0" * 64, "u": user_id, "t": NOW},
        )
        conn.execute(text("INSERT INTO login_throttles (username, failures) VALUES ('x', 1)"))
    with pytest.raises(sa_exc.IntegrityError), engine.begin() as conn:  # one row per token
        conn.execute(
            text(
                "INSERT INTO login_sessions (token_sha256, user_id, created_at, last_seen_at, "
                "expires_at) VALUES (:h, :u, :t, :t, :t)"
            ),
            {"h": "0" * 64, "u": user_id, "t": NOW},
        )
    migrate.downgrade(db_url, "0002")
    tables = set(inspect(engine).get_table_names())
    with engine.connect() as conn:
        assert conn.execute(text("SELECT username FROM users")).scalars().all() == ["ada"]
    engine.dispose()
    assert "login_sessions" not in tables and "login_throttles" not in tables


def _seed_result(conn, series: str) -> None:  # type: ignore[no-untyped-def]
    """A slide, a job, its result (SEG series ``series``) and two SEG levels, as 0003 had."""
    conn.execute(
        text(
            "INSERT INTO slides (study_instance_uid, series_instance_uid, state, quiet_seconds, "
            "first_received_at, last_received_at, settle_at) "
            "VALUES ('1.2.3', :s, 'settled', 30, :t, :t, :t)"
        ),
        {"s": f"{series}.9", "t": NOW},
    )
    slide_id = conn.execute(text("SELECT max(id) FROM slides")).scalar()
    conn.execute(
        text(
            "INSERT INTO jobs (uuid, slide_id, state, attempts, max_attempts, created_at) "
            "VALUES (:u, :s, 'succeeded', 1, 3, :t)"
        ),
        {"u": f"uuid-{series}", "s": slide_id, "t": NOW},
    )
    job_id = conn.execute(text("SELECT max(id) FROM jobs")).scalar()
    conn.execute(
        text(
            "INSERT INTO results (job_id, study_instance_uid, series_instance_uid, "
            "segmentation_type, tumour_area_mm2, tissue_area_mm2, created_at) "
            "VALUES (:j, '1.2.3', :s, 'BINARY', 1.5, 20.0, :t)"
        ),
        {"j": job_id, "s": series, "t": NOW},
    )
    result_id = conn.execute(text("SELECT max(id) FROM results")).scalar()
    for level in (0, 1):
        conn.execute(
            text(
                "INSERT INTO result_instances (result_id, sop_instance_uid, sop_class_uid, "
                "level, path, sha256, size_bytes) "
                "VALUES (:r, :sop, '1.2.840.10008.5.1.4.1.1.66.4', :l, 'p', :h, 10)"
            ),
            {"r": result_id, "sop": f"{series}.{level}", "l": level, "h": "0" * 64},
        )


def test_0008_gives_every_result_instance_a_kind_and_series_and_keeps_every_row(
    db_url: str,
) -> None:
    """Results recorded before 0008 were SEG series: after the upgrade each of their
    instances is kind 'seg' in its result's series; new rows need both columns; rows of other
    kinds go on downgrade, the SEG rows stay."""
    migrate.upgrade(db_url, "0003")
    engine = create_engine(db_url)
    with engine.begin() as conn:
        _seed_result(conn, "1.2.3.100")
        _seed_result(conn, "1.2.3.200")
    migrate.upgrade(db_url, "0008")
    query = text(
        "SELECT sop_instance_uid, kind, series_instance_uid, level FROM result_instances "
        "ORDER BY sop_instance_uid"
    )
    with engine.begin() as conn:
        assert conn.execute(query).all() == [
            ("1.2.3.100.0", "seg", "1.2.3.100", 0),
            ("1.2.3.100.1", "seg", "1.2.3.100", 1),
            ("1.2.3.200.0", "seg", "1.2.3.200", 0),
            ("1.2.3.200.1", "seg", "1.2.3.200", 1),
        ]
        assert conn.execute(text("SELECT count(*) FROM results")).scalar() == 2
        result_id = conn.execute(text("SELECT min(id) FROM results")).scalar()
        conn.execute(
            text(
                "INSERT INTO result_instances (result_id, kind, series_instance_uid, "
                "sop_instance_uid, sop_class_uid, level, path, sha256, size_bytes) "
                "VALUES (:r, 'sr', '1.2.3.101', '1.2.3.101.1', "
                "'1.2.840.10008.5.1.4.1.1.88.34', 0, 'q', :h, 5)"
            ),
            {"r": result_id, "h": "1" * 64},
        )
    with pytest.raises(sa_exc.IntegrityError), engine.begin() as conn:  # kind is required
        conn.execute(
            text(
                "INSERT INTO result_instances (result_id, series_instance_uid, "
                "sop_instance_uid, sop_class_uid, level, path, sha256, size_bytes) "
                "VALUES (:r, '1.2.3.102', '1.2.3.102.1', '1.2', 0, 'q', :h, 5)"
            ),
            {"r": result_id, "h": "1" * 64},
        )
    migrate.downgrade(db_url, "0003")
    with engine.connect() as conn:
        kept = conn.execute(
            text("SELECT sop_instance_uid FROM result_instances ORDER BY sop_instance_uid")
        )
        assert kept.scalars().all() == ["1.2.3.100.0", "1.2.3.100.1", "1.2.3.200.0", "1.2.3.200.1"]
        columns = {c["name"] for c in inspect(conn).get_columns("result_instances")}
    engine.dispose()
    assert "kind" not in columns and "series_instance_uid" not in columns

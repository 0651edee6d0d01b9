"""0004 adds the intake path and sender to instances and keeps every existing row."""

from datetime import UTC, datetime

import pytest
from sqlalchemy import create_engine, inspect, text

from unitumour_dicom.db import migrate

pytestmark = pytest.mark.integration

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


def _instance(conn, uid: str, association_id: int | None) -> None:
    conn.execute(
        text(
            "INSERT INTO instances (sop_instance_uid, version, sop_class_uid, "
            "transfer_syntax_uid, study_instance_uid, series_instance_uid, sha256, size_bytes, "
            "path, state, received_at, association_id) "
            "VALUES (:uid, 1, '1.2', '1.2.840.10008.1.2.1', '1.3', '1.4', :sha, 10, :path, "
            "'stored', :t, :a)"
        ),
        {
            "uid": uid,
            "sha": uid.replace(".", "").ljust(64, "0"),
            "path": f"p/{uid}",
            "t": NOW,
            "a": association_id,
        },
    )


def test_0004_records_c_store_rows_as_such_and_keeps_every_row(db_url: str) -> None:
    migrate.upgrade(db_url, "0003")
    engine = create_engine(db_url)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO associations (calling_ae, called_ae, peer_host, tls, state, "
                "started_at, n_instances, n_bytes, n_failures) "
                "VALUES ('SCANNER1', 'UNITUMOUR', '10.0.0.9', false, 'released', :t, 1, 10, 0)"
            ),
            {"t": NOW},
        )
        association_id = conn.execute(text("SELECT id FROM associations")).scalar()
        _instance(conn, "1.5.1", association_id)
        _instance(conn, "1.5.2", None)  # admitted by `unitumour process` (or recovered)
    migrate.upgrade(db_url, "0004")
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT sop_instance_uid, intake, sender FROM instances ORDER BY id")
        ).all()
    assert [tuple(r) for r in rows] == [("1.5.1", "c-store", "SCANNER1"), ("1.5.2", None, None)]
    migrate.downgrade(db_url, "0003")
    columns = {c["name"] for c in inspect(engine).get_columns("instances")}
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM instances")).scalar() == 2
    engine.dispose()
    assert "intake" not in columns and "sender" not in columns

"""Model behaviour that the rest of the system relies on, checked on both databases."""

from datetime import UTC, datetime, timedelta, timezone

import pytest
import sqlalchemy.exc
from sqlalchemy import select

from unitumour_dicom.db import (
    AuditEvent,
    Instance,
    Job,
    JobState,
    Slide,
    record_event,
)
from unitumour_dicom.runtime import Runtime

pytestmark = pytest.mark.integration

STUDY = "1.2.826.0.1.3680043.8.498.1"
SERIES = "1.2.826.0.1.3680043.8.498.2"


def _slide() -> Slide:
    return Slide(study_instance_uid=STUDY, series_instance_uid=SERIES, patient_id="P1")


def _instance(slide: Slide, version: int = 1, sha: str = "a" * 64) -> Instance:
    return Instance(
        sop_instance_uid="1.2.826.0.1.3680043.8.498.3",
        version=version,
        sop_class_uid="1.2.840.10008.5.1.4.1.1.77.1.6",
        transfer_syntax_uid="1.2.840.10008.1.2.4.50",
        study_instance_uid=STUDY,
        series_instance_uid=SERIES,
        sha256=sha,
        size_bytes=10,
        path="instances/x",
        slide=slide,
    )


def test_times_come_back_timezone_aware_utc(runtime: Runtime) -> None:
    oslo = timezone(timedelta(hours=1))
    local = datetime(2026, 11, 29, 21, 0, tzinfo=oslo)
    with runtime.session() as session:
        slide = _slide()
        slide.settle_at = local
        session.add(slide)
    with runtime.session() as session:
        got = session.scalars(select(Slide)).one()
        assert got.settle_at.tzinfo is not None
        assert got.settle_at == local
        assert got.settle_at.utcoffset() == timedelta(0)
        assert got.first_received_at.tzinfo is not None


def test_naive_times_are_refused(runtime: Runtime) -> None:
    with pytest.raises(sqlalchemy.exc.StatementError, match="naive datetime"):
        with runtime.session() as session:
            slide = _slide()
            slide.settle_at = datetime(2026, 1, 1)
            session.add(slide)


def test_same_instance_version_twice_is_refused(runtime: Runtime) -> None:
    with runtime.session() as session:
        slide = _slide()
        session.add_all([slide, _instance(slide, 1), _instance(slide, 2, "b" * 64)])
    with pytest.raises(sqlalchemy.exc.IntegrityError), runtime.session() as session:
        slide = session.scalars(select(Slide)).one()
        session.add(_instance(slide, 2, "c" * 64))


def test_foreign_keys_are_enforced(runtime: Runtime) -> None:
    with pytest.raises(sqlalchemy.exc.IntegrityError), runtime.session() as session:
        session.add(Job(slide_id=424242))


def test_job_defaults_and_json(runtime: Runtime) -> None:
    with runtime.session() as session:
        slide = _slide()
        job = Job(slide=slide, settings={"model": {"batch_size": 4}}, timings={"forward": 1.5})
        session.add(job)
    with runtime.session() as session:
        job = session.scalars(select(Job)).one()
        assert job.state == JobState.QUEUED
        assert len(job.uuid) == 36
        assert job.settings == {"model": {"batch_size": 4}}
        assert job.timings["forward"] == 1.5
        assert job.created_at <= datetime.now(UTC)


def test_audit_log_is_append_only(runtime: Runtime) -> None:
    with runtime.session() as session:
        record_event(session=session, event="test.event", message="first", details={"k": 1})
    with pytest.raises(PermissionError, match="append-only"), runtime.session() as session:
        row = session.scalars(select(AuditEvent)).one()
        row.message = "rewritten"
    with pytest.raises(PermissionError, match="append-only"), runtime.session() as session:
        session.delete(session.scalars(select(AuditEvent)).one())
    with runtime.session() as session:
        row = session.scalars(select(AuditEvent)).one()
        assert row.message == "first" and row.details == {"k": 1}


def test_audit_log_refuses_raw_sql_changes(runtime: Runtime) -> None:
    """The database itself (trigger) refuses change, not only the ORM."""
    from sqlalchemy import text

    with runtime.session() as session:
        record_event(session=session, event="test.event", message="kept")
    for statement in ("UPDATE audit_events SET message = 'x'", "DELETE FROM audit_events"):
        with pytest.raises(sqlalchemy.exc.DatabaseError, match="append-only"):
            with runtime.engine.begin() as conn:
                conn.execute(text(statement))
    with runtime.session() as session:
        assert session.scalars(select(AuditEvent.message)).all() == ["kept"]


def test_result_kinds_of_the_settings_are_the_database_kinds() -> None:
    """The settings spell the kinds out (config imports no database code); they must stay
    the ResultKind values, and every kind but the SEG has a writer in the registry."""
    from typing import get_args

    from unitumour_dicom.config.sections import ALL_RESULT_KINDS, ResultKindName
    from unitumour_dicom.db import ResultKind
    from unitumour_dicom.results import WRITERS

    assert set(get_args(ResultKindName)) == set(ALL_RESULT_KINDS) == {k.value for k in ResultKind}
    assert set(WRITERS) == set(ResultKind) - {ResultKind.SEG}

"""rerun_job, the one re-run of the web app and the CLI: a new job supersedes a finished one,
audited once; refused while the slide has work in hand, or its files were purged."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sqlalchemy import select

from unitumour_dicom.db import AuditEvent, AuditEventName, Job, JobState, Slide
from unitumour_dicom.errors import ConflictError, NotFoundError
from unitumour_dicom.jobs import rerun_job
from unitumour_dicom.runtime import Runtime

from .conftest import race

pytestmark = pytest.mark.unittest


def rerun(runtime: Runtime, job_id: int, **kw: object) -> int:
    with runtime.session() as session:
        return rerun_job(session=session, job_id=job_id, actor="ada", **kw).id  # type: ignore[arg-type]


def test_a_rerun_supersedes_the_job_and_is_audited(
    runtime: Runtime, make_job: Callable[..., int]
) -> None:
    old = make_job(state=JobState.FAILED, max_attempts=5)
    new = rerun(runtime, old)
    with runtime.session() as session:
        job = session.get(Job, new)
        assert job is not None
        assert (job.state, job.supersedes_job_id, job.reason, job.max_attempts) == (
            JobState.QUEUED,
            old,
            "re-run by ada",
            5,
        )
        assert job.dispatched_at is None  # the caller's hook or the reconcile sends it
        assert session.get(Job, old).state == JobState.SUPERSEDED  # type: ignore[union-attr]
        (event,) = session.scalars(
            select(AuditEvent).where(AuditEvent.event == AuditEventName.JOB_RERUN)
        ).all()
        assert (event.actor, event.job_id, event.slide_id) == ("ada", new, job.slide_id)
        assert event.details == {"supersedes_job_id": old, "previous_state": "failed"}


def test_a_rerun_is_refused_while_work_is_in_hand_or_inputs_are_gone(
    runtime: Runtime, make_job: Callable[..., int]
) -> None:
    running = make_job(state=JobState.RUNNING)
    with pytest.raises(ConflictError, match="still queued or running"):
        rerun(runtime, running)
    with pytest.raises(NotFoundError):
        rerun(runtime, running + 1000)
    done = make_job(state=JobState.SUCCEEDED)
    with runtime.session() as session:
        slide_id = session.get(Job, done).slide_id  # type: ignore[union-attr]
    with pytest.raises(NotFoundError, match="in case"):
        rerun(runtime, done, slide_id=slide_id + 1)
    with runtime.session() as session:
        session.get(Slide, slide_id).state = "purged"  # type: ignore[union-attr]
    with pytest.raises(ConflictError, match="purged"):
        rerun(runtime, done)
    with runtime.session() as session:
        assert session.get(Job, done).state == JobState.SUCCEEDED  # type: ignore[union-attr]
        count = session.scalar(
            select(AuditEvent.id).where(AuditEvent.event == AuditEventName.JOB_RERUN).limit(1)
        )
        assert count is None


def test_two_people_rerunning_at_once_make_one_job(
    runtime: Runtime, make_job: Callable[..., int]
) -> None:
    old = make_job(state=JobState.SUCCEEDED)

    def attempt(i: int) -> str:
        try:
            rerun(runtime, old)
        except ConflictError:
            return "refused"
        return "made"

    outcomes = race(4, attempt)
    assert outcomes.count("made") == 1, outcomes
    with runtime.session() as session:
        slide_id = session.get(Job, old).slide_id  # type: ignore[union-attr]
        jobs = session.scalars(select(Job).where(Job.slide_id == slide_id)).all()
        assert sorted(j.state for j in jobs) == [JobState.QUEUED, JobState.SUPERSEDED]


def test_the_command_line_reruns_through_the_same_function(
    tmp_path, runtime: Runtime, make_job: Callable[..., int]
) -> None:
    from typer.testing import CliRunner

    from unitumour_dicom.cli import app

    old = make_job(state=JobState.SUCCEEDED)
    config = tmp_path / "unitumour.toml"
    config.write_text(
        f'data_dir = "{runtime.settings.data_dir}"\n'
        f'[database]\nurl = "{runtime.settings.database_url}"\n'
    )
    runner = CliRunner()
    done = runner.invoke(app, ["-c", str(config), "jobs", "rerun", str(old), "--as", "ops"])
    assert done.exit_code == 0, done.output
    with runtime.session() as session:
        (event,) = session.scalars(
            select(AuditEvent).where(AuditEvent.event == AuditEventName.JOB_RERUN)
        ).all()
        assert event.actor == "ops" and f"job {event.job_id} queued" in done.output
    refused = runner.invoke(app, ["-c", str(config), "jobs", "rerun", str(old)])
    assert refused.exit_code == 2 and "still queued or running" in refused.output

"""Series tracking: the quiet timer, settling into exactly one job, superseding, and the slide
variants scanners and converters produce, each grouped and judged with a clear reason."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydicom import dcmread
from sqlalchemy import select, update

from unitumour_dicom.db import AuditEvent, Job, Slide
from unitumour_dicom.ingest import IngestEvent, settle_due_slides

from .helpers import Listening, pynetdicom_send, rewrite, wait_until

pytestmark = [pytest.mark.integration]


def slide_row(listening: Listening) -> Slide:
    with listening.runtime.session() as session:
        return session.scalars(select(Slide)).one()


def jobs(listening: Listening) -> list[Job]:
    with listening.runtime.session() as session:
        return list(session.scalars(select(Job).order_by(Job.id)))


def events(listening: Listening, code: str) -> list[AuditEvent]:
    with listening.runtime.session() as session:
        return list(session.scalars(select(AuditEvent).where(AuditEvent.event == code)))


def settled(listening: Listening, state: str = "settled") -> Slide:
    return wait_until(lambda: (s := slide_row(listening)).state == state and s, timeout=20)


def send(listening: Listening, files: list[Path]) -> None:
    assert pynetdicom_send(listening.host, listening.port, files) == [0] * len(files)


def test_a_trickling_slide_stays_open_then_settles_into_one_job(
    sqlite_runtime, start_listener, phantom
):
    dispatched: list[list[int]] = []
    listening = start_listener(sqlite_runtime, on_jobs_created=dispatched.append, quiet_seconds=1.5)
    files = phantom.instance_paths
    for path in files:
        send(listening, [path])
        assert slide_row(listening).state == "receiving"
        time.sleep(0.6)  # less than the quiet time: each arrival resets the timer
    assert slide_row(listening).state == "receiving"
    assert jobs(listening) == []
    slide = settled(listening)
    (job,) = jobs(listening)
    assert job.state == "queued" and job.slide_id == slide.id and job.supersedes_job_id is None
    assert sorted(i["sop_instance_uid"] for i in job.inputs["instances"]) == sorted(
        str(dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in files
    )
    assert dispatched == [[job.id]]
    assert (slide.settled_at - slide.last_received_at).total_seconds() >= 1.5
    assert "pyramid of 3 level(s), base 1024x768 px at 0.5 µm/px" in slide.state_reason
    (audit,) = events(listening, IngestEvent.SLIDE_SETTLED)
    assert audit.details["labels"] == 1 and audit.details["overviews"] == 1
    assert len(audit.details["levels"]) == 3
    time.sleep(0.5)
    assert len(jobs(listening)) == 1


def test_new_instances_for_a_settled_slide_create_a_job_that_supersedes(
    sqlite_runtime, start_listener, phantom, tmp_path
):
    listening = start_listener(sqlite_runtime)
    send(listening, phantom.instance_paths)
    settled(listening)
    (first,) = jobs(listening)

    changed = rewrite(
        phantom.level_paths[2][0],
        tmp_path / "v2.dcm",
        lambda ds: setattr(ds, "ContentTime", "120000"),
        new_uid=False,
    )
    send(listening, [changed])
    assert slide_row(listening).state == "receiving"
    (reopened,) = events(listening, IngestEvent.SLIDE_REOPENED)
    assert reopened.details["previous_state"] == "settled"
    settled(listening)
    first_again, second = jobs(listening)
    assert first_again.state == "superseded"
    assert second.state == "queued" and second.supersedes_job_id == first.id
    assert f"supersedes job {first.id}" in second.reason
    versions = {i["sop_instance_uid"]: i["version"] for i in second.inputs["instances"]}
    assert versions[str(dcmread(changed, stop_before_pixels=True).SOPInstanceUID)] == 2
    (superseded,) = events(listening, IngestEvent.JOB_SUPERSEDED)
    assert superseded.job_id == first.id and superseded.details["superseded_by"] == second.id

    # a finished job keeps its state; the new one still records what it supersedes
    with listening.runtime.session() as session:
        session.execute(update(Job).where(Job.id == second.id).values(state="succeeded"))
    third_version = rewrite(
        phantom.level_paths[2][0],
        tmp_path / "v3.dcm",
        lambda ds: setattr(ds, "ContentTime", "130000"),
        new_uid=False,
    )
    send(listening, [third_version])
    wait_until(lambda: len(jobs(listening)) == 3)
    _, second_again, third = jobs(listening)
    assert second_again.state == "succeeded"
    assert third.supersedes_job_id == second.id and third.state == "queued"


def test_a_duplicate_does_not_reopen_a_settled_slide(sqlite_runtime, start_listener, phantom):
    listening = start_listener(sqlite_runtime)
    send(listening, phantom.instance_paths)
    settled(listening)
    send(listening, phantom.instance_paths)
    time.sleep(1.5)
    assert slide_row(listening).state == "settled"
    assert len(jobs(listening)) == 1


def test_settling_is_exactly_once_however_many_settle_at_once(runtime, start_listener, phantom):
    listening = start_listener(runtime, quiet_seconds=3600)
    send(listening, phantom.instance_paths)
    later = datetime.now(UTC) + timedelta(hours=2)
    created: list[int] = []
    barrier = threading.Barrier(4)

    def settle() -> None:
        barrier.wait()
        with listening.runtime.session() as session:
            created.extend(
                j.id
                for j in settle_due_slides(
                    session=session, store=listening.runtime.store, now=later
                )
            )

    threads = [threading.Thread(target=settle) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(created) == 1
    assert [j.id for j in jobs(listening)] == created
    assert len(events(listening, IngestEvent.SLIDE_SETTLED)) == 1


def test_a_series_without_volume_images_is_unprocessable_with_the_reason(
    sqlite_runtime, start_listener, phantom
):
    listening = start_listener(sqlite_runtime)
    send(listening, [phantom.label_path, phantom.overview_path])
    slide = settled(listening, "unprocessable")
    assert slide.state_reason == "the series holds no VOLUME image (1 LABEL, 1 OVERVIEW)"
    (audit,) = events(listening, IngestEvent.SLIDE_UNPROCESSABLE)
    assert "no VOLUME image" in audit.message
    assert jobs(listening) == []


@pytest.mark.slow
@pytest.mark.parametrize(
    "variant",
    [
        {"dimension_organization": "TILED_SPARSE"},
        {"concatenation_frames": 4},
        {"omit_optional": True},
    ],
    ids=["tiled-sparse", "concatenated", "no-optional-attributes"],
)
def test_slide_variants_are_grouped_and_settle(sqlite_runtime, start_listener, phantoms, variant):
    slide = phantoms(**variant)
    listening = start_listener(sqlite_runtime)
    send(listening, slide.instance_paths)
    row = settled(listening)
    assert row.series_instance_uid == slide.series_uid
    (job,) = jobs(listening)
    assert len(job.inputs["instances"]) == len(slide.instance_paths)
    (audit,) = events(listening, IngestEvent.SLIDE_SETTLED)
    assert [lv["size"] for lv in audit.details["levels"]] == [[1024, 768], [512, 384], [256, 192]]
    assert "not used" not in row.state_reason


@pytest.mark.slow
def test_a_concatenation_with_a_part_missing_is_unprocessable(
    sqlite_runtime, start_listener, phantoms
):
    slide = phantoms(concatenation_frames=4)
    base_parts = slide.level_paths[0]
    assert len(base_parts) == 3
    listening = start_listener(sqlite_runtime)
    send(listening, [p for p in slide.instance_paths if p != base_parts[1]])
    row = settled(listening, "unprocessable")
    assert "lacks part(s) 2 of 3" in row.state_reason
    assert jobs(listening) == []


def _second_optical_path(ds) -> None:
    ds.OpticalPathSequence[0].OpticalPathIdentifier = "2"
    shared = ds.SharedFunctionalGroupsSequence[0]
    shared.OpticalPathIdentificationSequence[0].OpticalPathIdentifier = "2"


def _second_focal_plane(ds) -> None:
    ds.TotalPixelMatrixOriginSequence[0].ZOffsetInSlideCoordinateSystem = 2.0  # µm


@pytest.mark.parametrize(
    ("change", "words", "key", "expected"),
    [
        (_second_optical_path, "2 optical path(s)", "optical_paths", ["1", "2"]),
        (_second_focal_plane, "2 focal plane(s)", "focal_planes", [0.0, 2.0]),
    ],
    ids=["optical-paths", "focal-planes"],
)
def test_several_optical_paths_or_focal_planes_are_one_slide_and_reported(
    sqlite_runtime, start_listener, phantom, tmp_path, change, words, key, expected
):
    copies = [
        rewrite(p, tmp_path / f"copy-{i}.dcm", change)
        for i, level in enumerate(phantom.level_paths)
        for p in level
    ]
    listening = start_listener(sqlite_runtime)
    send(listening, phantom.instance_paths + copies)
    row = settled(listening)
    assert words in row.state_reason and "the pipeline reads the first of each" in row.state_reason
    (audit,) = events(listening, IngestEvent.SLIDE_SETTLED)
    assert sorted(audit.details[key]) == expected
    assert len(audit.details["levels"]) == 3
    (job,) = jobs(listening)
    assert len(job.inputs["instances"]) == len(phantom.instance_paths) + len(copies)


def test_monochrome_levels_are_unprocessable_for_the_he_model(
    sqlite_runtime, start_listener, phantom, tmp_path
):
    def grey(ds):
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        del ds.PlanarConfiguration

    files = [
        rewrite(p, tmp_path / f"grey-{i}.dcm", grey)
        for i, level in enumerate(phantom.level_paths)
        for p in level
    ]
    listening = start_listener(sqlite_runtime)
    send(listening, files)
    row = settled(listening, "unprocessable")
    assert "needs colour" in row.state_reason and "MONOCHROME2" in row.state_reason

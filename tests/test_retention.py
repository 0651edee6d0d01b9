"""Retention: received slide files go after an age; results, UIDs, digests and provenance stay.

Runs on SQLite and PostgreSQL (the ``runtime`` fixture), with real DICOM files in the store.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from sqlalchemy import create_engine, func, select, text, update
from typer.testing import CliRunner

from unitumour_dicom import retention
from unitumour_dicom.cli import app
from unitumour_dicom.db import (
    AuditEvent,
    Delivery,
    Instance,
    Job,
    Result,
    ResultInstance,
    Slide,
)
from unitumour_dicom.retention import RetentionError, purge_slides
from unitumour_dicom.runtime import Runtime

pytestmark = pytest.mark.integration

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
WSI = "1.2.840.10008.5.1.4.1.1.77.1.6"
SEG = "1.2.840.10008.5.1.4.1.1.66.4"


def _dicom_bytes(sop_class: str, study: str, series: str, sop: str, rows: int = 16) -> bytes:
    """A small but real DICOM file (Part 10, with pixel data)."""
    ds = Dataset()
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop
    ds.StudyInstanceUID = study
    ds.SeriesInstanceUID = series
    ds.PatientID = "RET-0001"
    ds.Modality = "SM" if sop_class == WSI else "SEG"
    ds.Rows = ds.Columns = rows
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.PixelData = bytes(range(256)) * (rows * rows // 256)
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.file_meta.MediaStorageSOPInstanceUID = sop
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    buf = io.BytesIO()
    pydicom.dcmwrite(buf, ds, enforce_file_format=True)
    return buf.getvalue()


@dataclass
class Case:
    slide_id: int
    instance_paths: list[str]
    result_paths: list[str]
    sha256: dict[str, str]


def make_case(
    runtime: Runtime,
    *,
    days_ago: float,
    jobs: tuple[str, ...] = ("succeeded",),
    deliveries: tuple[str, ...] = ("delivered",),
    slide_state: str = "settled",
    n_instances: int = 2,
    now: datetime = NOW,
) -> Case:
    """A slide with stored instances, its jobs, a result (SEG file) and deliveries."""
    store = runtime.store
    study, series = generate_uid(), generate_uid()
    received = now - timedelta(days=days_ago)
    with runtime.session() as session:
        slide = Slide(
            study_instance_uid=study,
            series_instance_uid=series,
            patient_id="RET-0001",
            source_ae="SCANNER1",
            state=slide_state,
            first_received_at=received - timedelta(minutes=5),
            last_received_at=received,
            settle_at=received + timedelta(seconds=30),
        )
        session.add(slide)
        session.flush()
        paths, digests = [], {}
        for i in range(n_instances):
            sop = generate_uid()
            relpath = store.instance_relpath(study, series, sop, 1)
            stored = store.put_bytes(_dicom_bytes(WSI, study, series, sop, 16 * (i + 1)), relpath)
            session.add(
                Instance(
                    sop_instance_uid=sop,
                    sop_class_uid=WSI,
                    transfer_syntax_uid=ExplicitVRLittleEndian,
                    study_instance_uid=study,
                    series_instance_uid=series,
                    sha256=stored.sha256,
                    size_bytes=stored.size_bytes,
                    path=stored.path,
                    received_at=received,
                    slide_id=slide.id,
                )
            )
            paths.append(stored.path)
            digests[stored.path] = stored.sha256
        result_paths = []
        for n, job_state in enumerate(jobs):
            job = Job(slide_id=slide.id, state=job_state, created_at=received)
            session.add(job)
            session.flush()
            if job_state != "succeeded":
                continue
            seg_series, seg_sop = generate_uid(), generate_uid()
            relpath = store.result_relpath(study, seg_series, seg_sop)
            stored = store.put_bytes(_dicom_bytes(SEG, study, seg_series, seg_sop), relpath)
            result = Result(
                job_id=job.id,
                study_instance_uid=study,
                series_instance_uid=seg_series,
                segmentation_type="BINARY",
                tumour_area_mm2=1.5 + n,
                tissue_area_mm2=20.0,
            )
            session.add(result)
            session.flush()
            session.add(
                ResultInstance(
                    result_id=result.id,
                    kind="seg",
                    series_instance_uid=seg_series,
                    sop_instance_uid=seg_sop,
                    sop_class_uid=SEG,
                    path=stored.path,
                    sha256=stored.sha256,
                    size_bytes=stored.size_bytes,
                )
            )
            result_paths.append(stored.path)
            digests[stored.path] = stored.sha256
            for k, delivery_state in enumerate(deliveries):
                session.add(
                    Delivery(
                        result_id=result.id,
                        destination=f"DEST{k}",
                        ae_title=f"PACS{k}",
                        host="127.0.0.1",
                        port=104,
                        state=delivery_state,
                    )
                )
        return Case(slide.id, paths, result_paths, digests)


def _state(runtime: Runtime, case: Case) -> tuple[str, list[str]]:
    with runtime.session() as session:
        slide = session.get(Slide, case.slide_id)
        states = session.scalars(
            select(Instance.state).where(Instance.slide_id == case.slide_id).order_by(Instance.id)
        ).all()
        return slide.state, list(states)


def _events(runtime: Runtime, code: str = "slide.purged") -> list[AuditEvent]:
    with runtime.session() as session:
        return list(session.scalars(select(AuditEvent).where(AuditEvent.event == code)).all())


def test_purge_removes_received_files_and_keeps_results_and_provenance(runtime: Runtime) -> None:
    case = make_case(runtime, days_ago=40, jobs=("superseded", "succeeded"))
    fresh = make_case(runtime, days_ago=5)
    sizes = sum(runtime.store.abspath(p).stat().st_size for p in case.instance_paths)

    report = purge_slides(runtime, older_than_days=30, now=NOW, actor="cron")

    assert [p.slide_id for p in report.purged] == [case.slide_id]
    assert report.purged[0].instances == 2 and report.purged[0].size_bytes == sizes
    assert report.files_removed == 2 and report.bytes_freed == sizes
    assert report.errors == [] and report.kept == []
    for path in case.instance_paths:
        assert not runtime.store.exists(path)
    for path in case.result_paths + fresh.instance_paths + fresh.result_paths:
        assert runtime.store.exists(path)
    for path in case.result_paths:
        runtime.store.verify(path, case.sha256[path])  # the SEG is untouched, byte for byte
    assert _state(runtime, case) == ("purged", ["purged", "purged"])
    assert _state(runtime, fresh) == ("settled", ["stored", "stored"])
    with runtime.session() as session:
        rows = session.scalars(
            select(Instance).where(Instance.slide_id == case.slide_id).order_by(Instance.id)
        ).all()
        # provenance: UIDs, digests, sizes and paths of what was received stay on record
        assert [r.path for r in rows] == case.instance_paths
        assert [r.sha256 for r in rows] == [case.sha256[p] for p in case.instance_paths]
        assert session.scalar(select(func.count()).select_from(Result)) == 2
        assert session.scalar(select(func.count()).select_from(Job)) == 3
        assert "purged by retention" in session.get(Slide, case.slide_id).state_reason
    (event,) = _events(runtime)
    assert event.slide_id == case.slide_id and event.actor == "cron"
    assert event.details["size_bytes"] == sizes
    assert event.details["older_than_days"] == 30
    assert sorted(i["sop_instance_uid"] for i in event.details["instances"]) == sorted(
        r.sop_instance_uid for r in rows
    )


def test_second_run_finds_nothing_more(runtime: Runtime) -> None:
    make_case(runtime, days_ago=40)
    assert len(purge_slides(runtime, older_than_days=30, now=NOW).purged) == 1
    again = purge_slides(runtime, older_than_days=30, now=NOW)
    assert again.purged == [] and again.kept == [] and again.files_removed == 0
    assert len(_events(runtime)) == 1


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"jobs": ("succeeded", "queued")}, "is queued"),
        ({"jobs": ("running",)}, "is running"),
        ({"deliveries": ("delivered", "pending")}, "is pending"),
        ({"deliveries": ("sending",)}, "is sending"),
        ({"jobs": ("succeeded", "failed")}, "is failed, not succeeded"),
        ({"jobs": ()}, "no job has run on it"),
        ({"slide_state": "receiving"}, "still receiving"),
        ({"slide_state": "unprocessable", "jobs": ()}, "unprocessable"),
    ],
)
def test_slides_in_use_or_without_a_result_are_kept(
    runtime: Runtime, kwargs: dict, reason: str
) -> None:
    case = make_case(runtime, days_ago=400, **kwargs)
    report = purge_slides(runtime, older_than_days=30, now=NOW)
    assert report.purged == []
    assert [k.slide_id for k in report.kept] == [case.slide_id]
    assert reason in report.kept[0].reason
    for path in case.instance_paths:
        runtime.store.verify(path, case.sha256[path])
    assert _state(runtime, case)[1] == ["stored", "stored"]
    assert _events(runtime) == []


def test_failed_deliveries_are_final(runtime: Runtime) -> None:
    # a delivery that failed for good will not be retried: the slide's files are not needed
    case = make_case(runtime, days_ago=31, deliveries=("failed", "delivered"))
    report = purge_slides(runtime, older_than_days=30, now=NOW)
    assert [p.slide_id for p in report.purged] == [case.slide_id]


def test_age_is_measured_from_the_last_instance(runtime: Runtime) -> None:
    young = make_case(runtime, days_ago=29.9)
    report = purge_slides(runtime, older_than_days=30, now=NOW)
    assert report.purged == [] and report.kept == []  # not a candidate at all
    report = purge_slides(runtime, older_than_days=29, now=NOW)
    assert [p.slide_id for p in report.purged] == [young.slide_id]


def test_dry_run_changes_nothing(runtime: Runtime) -> None:
    case = make_case(runtime, days_ago=40)
    busy = make_case(runtime, days_ago=50, deliveries=("pending",))
    report = purge_slides(runtime, older_than_days=30, now=NOW, dry_run=True)
    assert report.dry_run
    assert [p.slide_id for p in report.purged] == [case.slide_id]
    assert [k.slide_id for k in report.kept] == [busy.slide_id]
    assert report.files_removed == 0
    for c in (case, busy):
        assert _state(runtime, c) == ("settled", ["stored", "stored"])
        for path in c.instance_paths:
            assert runtime.store.exists(path)
    assert _events(runtime) == []


def test_files_left_by_an_interrupted_run_are_removed_next_time(runtime: Runtime) -> None:
    case = make_case(runtime, days_ago=40)
    # as if a run had committed the rows and died before removing the files
    with runtime.session() as session:
        session.execute(
            update(Instance).where(Instance.slide_id == case.slide_id).values(state="purged")
        )
        session.execute(update(Slide).where(Slide.id == case.slide_id).values(state="purged"))
    report = purge_slides(runtime, older_than_days=30, now=NOW)
    assert report.leftovers_removed == 2 and report.files_removed == 2
    for path in case.instance_paths:
        assert not runtime.store.exists(path)
    for path in case.result_paths:
        assert runtime.store.exists(path)


def test_a_file_already_gone_is_not_an_error(runtime: Runtime) -> None:
    case = make_case(runtime, days_ago=40)
    runtime.store.remove(case.instance_paths[0])
    report = purge_slides(runtime, older_than_days=30, now=NOW)
    assert report.errors == [] and report.files_removed == 1
    assert _state(runtime, case) == ("purged", ["purged", "purged"])


def test_bad_ages_are_refused(runtime: Runtime) -> None:
    with pytest.raises(RetentionError, match="0 days or more"):
        purge_slides(runtime, older_than_days=-1, now=NOW)
    with pytest.raises(RetentionError, match="timezone-aware"):
        purge_slides(runtime, older_than_days=1, now=datetime(2026, 1, 1))


# -- races (SQLite: a second connection can commit while the purge holds no lock yet) ------


def _other_connection(runtime: Runtime):  # type: ignore[no-untyped-def]
    return create_engine(runtime.settings.database_url).begin()


def test_a_slide_that_changes_during_the_purge_is_kept(
    sqlite_runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime = sqlite_runtime
    case = make_case(runtime, days_ago=40)
    judged = retention._why_kept

    def new_instance_arrives_meanwhile(session, slide, cutoff):  # type: ignore[no-untyped-def]
        reason = judged(session, slide, cutoff)
        with _other_connection(runtime) as conn:
            conn.execute(
                text("UPDATE slides SET last_received_at = :t WHERE id = :id"),
                {"t": NOW.isoformat(), "id": case.slide_id},
            )
        return reason

    monkeypatch.setattr(retention, "_why_kept", new_instance_arrives_meanwhile)
    report = purge_slides(runtime, older_than_days=30, now=NOW)
    assert report.purged == []
    assert [k.reason for k in report.kept] == ["changed meanwhile"]
    assert _state(runtime, case)[1] == ["stored", "stored"]
    for path in case.instance_paths:
        assert runtime.store.exists(path)


def test_a_job_queued_during_the_purge_keeps_the_slide(
    sqlite_runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime = sqlite_runtime
    case = make_case(runtime, days_ago=40)
    judged = retention._why_kept

    def rerun_queued_meanwhile(session, slide, cutoff):  # type: ignore[no-untyped-def]
        reason = judged(session, slide, cutoff)
        with _other_connection(runtime) as conn:
            conn.execute(
                text(
                    "INSERT INTO jobs (uuid, slide_id, state, attempts, max_attempts, created_at)"
                    " VALUES ('re-run-0000', :id, 'queued', 0, 3, :t)"
                ),
                {"id": case.slide_id, "t": NOW.isoformat()},
            )
        return reason

    monkeypatch.setattr(retention, "_why_kept", rerun_queued_meanwhile)
    report = purge_slides(runtime, older_than_days=30, now=NOW)
    assert report.purged == []
    assert len(report.kept) == 1 and "is queued" in report.kept[0].reason
    assert _state(runtime, case) == ("settled", ["stored", "stored"])
    assert _events(runtime) == []


# -- the command ---------------------------------------------------------------------------


def _cli(runtime: Runtime, monkeypatch: pytest.MonkeyPatch, *args: str):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("UNITUMOUR_DATA_DIR", str(runtime.settings.data_dir))
    monkeypatch.setenv("UNITUMOUR_DATABASE__URL", runtime.settings.database_url)
    monkeypatch.setenv("UNITUMOUR_STORE__ROOT", str(runtime.settings.store_root))
    return CliRunner().invoke(app, ["retention", "purge", *args])


def test_command_purges_with_the_configured_age(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    now = datetime.now(UTC)  # the command reads the clock
    old = make_case(runtime, days_ago=3650, now=now)
    make_case(runtime, days_ago=1, now=now)  # far younger than any age below

    result = _cli(runtime, monkeypatch, "--dry-run")
    assert result.exit_code == 2
    assert "give --older-than DAYS or set retention.purge_after_days" in result.output

    result = _cli(runtime, monkeypatch, "--older-than", "30", "--dry-run")
    assert result.exit_code == 0, result.output
    assert f"would purge slide {old.slide_id}" in result.stdout
    assert "would purge 1 slides" in result.stdout
    assert runtime.store.exists(old.instance_paths[0])

    monkeypatch.setenv("UNITUMOUR_RETENTION__PURGE_AFTER_DAYS", "30")
    result = _cli(runtime, monkeypatch, "--json", "--actor", "operator")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert [p["slide_id"] for p in report["purged"]] == [old.slide_id]
    assert report["files_removed"] == 2 and report["dry_run"] is False
    assert not runtime.store.exists(old.instance_paths[0])
    (event,) = _events(runtime)
    assert event.actor == "operator"

    result = _cli(runtime, monkeypatch, "--older-than", "-3")
    assert result.exit_code == 2

"""The watched folder: a stable file is converted once, admitted as the listener admits, its
original moved to done/ or failed/ with the reason; a growing file waits; a crash midway
leaves nothing half-admitted and the file is taken again."""

from __future__ import annotations

import json
import shutil
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from tests.watch.conftest import VendorFiles
from unitumour_dicom.db import AuditEvent, ConvertedFile, Instance, Job, Slide
from unitumour_dicom.db.types import utcnow
from unitumour_dicom.errors import UniTumourError
from unitumour_dicom.ingest import settle_due_slides
from unitumour_dicom.runtime import Runtime
from unitumour_dicom.watch import WatchService
from unitumour_dicom.watch.service import FileOutcome

pytestmark = pytest.mark.integration

SIDECAR = {
    "PatientID": "PAT-W1",
    "PatientName": "Watch^Wendy",
    "AccessionNumber": "ACCW1",
    "StudyDate": "20261203",
    "ContainerIdentifier": "W1-A1",
}


def drop(src: Path, runtime: Runtime, name: str, sidecar: dict | None = None) -> Path:
    folder = runtime.settings.watch.folder
    folder.mkdir(parents=True, exist_ok=True)
    if sidecar is not None:  # the sidecar first, as the operator guide asks
        (folder / name).with_suffix(".json").write_text(json.dumps(sidecar))
    target = folder / name
    shutil.copyfile(src, target)
    return target


def take_all(service: WatchService, n: int = 1, timeout: float = 120) -> list[FileOutcome]:
    outcomes: list[FileOutcome] = []
    deadline = time.monotonic() + timeout
    while len(outcomes) < n:
        assert time.monotonic() < deadline, f"only {outcomes} after {timeout} s"
        outcomes += service.scan_once()
        time.sleep(0.1)
    return outcomes


def events(runtime: Runtime, code: str) -> list[AuditEvent]:
    with runtime.session() as session:
        return list(session.scalars(select(AuditEvent).where(AuditEvent.event == code)))


def test_a_dropped_svs_is_converted_admitted_and_its_job_queued(
    watch_runtime: Runtime, vendor_files: VendorFiles
):
    drop(vendor_files.svs, watch_runtime, "W1.svs", SIDECAR)
    service = WatchService(watch_runtime)
    [outcome] = take_all(service)
    folder = watch_runtime.settings.watch.folder
    assert outcome.state == "done" and outcome.moved_to == folder / "done" / "W1.svs"
    assert (folder / "done" / "W1.svs.json").is_file()  # the sidecar went with it
    assert not (folder / "W1.svs").exists() and not (folder / "W1.json").exists()
    assert not any((watch_runtime.settings.data_dir / "watch-scratch").iterdir())
    with watch_runtime.session() as session:
        [row] = session.scalars(select(ConvertedFile)).all()
        slide = session.get(Slide, outcome.slide_id)
        jobs = list(session.scalars(select(Job).where(Job.slide_id == slide.id)))
        instances = list(session.scalars(select(Instance).where(Instance.slide_id == slide.id)))
        assert row.state == "done" and row.attempts == 1 and row.source_name == "W1.svs"
        assert row.series_instance_uid == slide.series_instance_uid == outcome.series_instance_uid
        assert row.identity_source == "sidecar:W1.json" and row.slide_id == slide.id
        assert slide.source_ae == "WATCHFOLDER" and slide.state == "settled"
        assert (slide.patient_id, slide.patient_name, slide.accession_number) == (
            "PAT-W1",
            "Watch^Wendy",
            "ACCW1",
        )
        assert slide.container_identifier == "W1-A1"
        assert [j.id for j in jobs] == outcome.jobs and jobs[0].state == "queued"
        assert len(instances) == 6 and {i.version for i in instances} == {1}
    [converted] = events(watch_runtime, "watch.converted")
    assert converted.details["intake"] == "watched-folder"
    assert converted.details["source_file"] == "W1.svs"
    assert converted.details["converter"]["reader"] == "opentile:SvsTiler"
    assert converted.slide_id == outcome.slide_id
    stored = events(watch_runtime, "instance.stored")
    assert len(stored) == 6 and {e.actor for e in stored} == {"WATCHFOLDER"}
    assert events(watch_runtime, "watch.identity_generated") == []


def test_the_same_file_dropped_twice_is_converted_once(
    watch_runtime: Runtime, vendor_files: VendorFiles
):
    service = WatchService(watch_runtime)
    drop(vendor_files.ome_tiff, watch_runtime, "first.ome.tiff")
    [first] = take_all(service)
    drop(vendor_files.ome_tiff, watch_runtime, "again.ome.tiff")
    drop(vendor_files.ome_tiff, watch_runtime, "first.ome.tiff")  # same name too
    outcomes = take_all(service, 2)
    assert {o.state for o in outcomes} == {"duplicate"}
    assert {o.series_instance_uid for o in outcomes} == {first.series_instance_uid}
    done = watch_runtime.settings.watch.folder / "done"
    assert sorted(p.name for p in done.iterdir() if not p.name.endswith(".txt")) == [
        "again.ome.tiff",
        "first-" + first.sha256[:8] + ".ome.tiff",
        "first.ome.tiff",
    ]
    reason = (done / "again.ome.tiff.reason.txt").read_text()
    assert (
        f"already converted (same bytes as first.ome.tiff, series {first.series_instance_uid})"
        in reason
    )
    with watch_runtime.session() as session:
        assert len(session.scalars(select(ConvertedFile)).all()) == 1
        assert len(session.scalars(select(Instance)).all()) == 3
    assert len(events(watch_runtime, "watch.converted")) == 1
    assert len(events(watch_runtime, "watch.duplicate")) == 2
    # no sidecar: a generated, marked identity, and the audit says so
    [warning] = events(watch_runtime, "watch.identity_generated")
    assert "UNIDENTIFIED^first" in warning.message


def test_a_truncated_file_goes_to_failed_with_its_reason(
    watch_runtime: Runtime, vendor_files: VendorFiles, tmp_path: Path
):
    broken = tmp_path / "broken.svs"
    broken.write_bytes(vendor_files.svs.read_bytes()[:200_000])
    drop(broken, watch_runtime, "broken.svs")
    [outcome] = take_all(WatchService(watch_runtime))
    failed = watch_runtime.settings.watch.folder / "failed"
    assert outcome.state == "failed" and outcome.moved_to == failed / "broken.svs"
    reason = (failed / "broken.svs.reason.txt").read_text()
    assert "conversion failed" in reason and "converter exit status 2" in reason
    with watch_runtime.session() as session:
        [row] = session.scalars(select(ConvertedFile)).all()
        assert row.state == "failed" and "conversion failed" in row.reason
        assert session.scalars(select(Instance)).all() == []
    [event] = events(watch_runtime, "watch.failed")
    assert (
        event.details["source_file"] == "broken.svs" and event.details["intake"] == "watched-folder"
    )


def test_a_file_still_growing_is_not_taken(watch_runtime: Runtime, vendor_files: VendorFiles):
    data = vendor_files.svs.read_bytes()
    folder = watch_runtime.settings.watch.folder
    folder.mkdir(parents=True)
    target = folder / "growing.svs"
    service = WatchService(watch_runtime)
    chunk = len(data) // 12
    with open(target, "wb") as fh:  # a scanner writing for ~1.2 s, 4 quiet times
        for start in range(0, len(data), chunk):
            fh.write(data[start : start + chunk])
            fh.flush()
            assert service.scan_once() == []
            time.sleep(0.1)
    [outcome] = take_all(service)
    assert outcome.state == "done"  # taken once complete, and it converts
    with watch_runtime.session() as session:
        assert session.scalars(select(ConvertedFile.state)).all() == ["done"]


def test_a_crash_midway_leaves_nothing_half_admitted_and_the_file_is_retried(
    watch_runtime: Runtime, vendor_files: VendorFiles
):
    """What a crash after two of six admissions leaves (a row still converting, two instances
    stored, the file in place) is made with the watcher's own steps; a new watcher finishes."""
    from unitumour_dicom.convert import convert_file, resolve_identity
    from unitumour_dicom.watch.admission import ConvertedAdmission
    from unitumour_dicom.watch.service import file_sha256

    source = drop(vendor_files.svs, watch_runtime, "crash.svs", SIDECAR)
    crashed = WatchService(watch_runtime)
    sha = file_sha256(source)
    row = crashed._claim(source, sha)
    conversion = convert_file(
        source,
        watch_runtime.settings.data_dir / "watch-scratch" / sha / "out",
        identity=resolve_identity(source, sha, filename_pattern=None),
        uid_seed=sha,
        python=crashed.python,
        timeout_s=300,
        content_datetime=row.first_seen_at,
    )
    admission = ConvertedAdmission(watch_runtime)
    hold = watch_runtime.settings.watch.timeout_s
    for path in conversion.files[:2]:
        admission.admit(path, source_name="WATCHFOLDER", hold_seconds=hold)
    # the held slide does not settle half-admitted, long after the listener's quiet time
    later = utcnow() + timedelta(seconds=watch_runtime.settings.listener.quiet_seconds + 60)
    with watch_runtime.session() as session:
        assert settle_due_slides(session=session, store=watch_runtime.store, now=later) == []

    [outcome] = take_all(WatchService(watch_runtime))
    assert outcome.state == "done"
    with watch_runtime.session() as session:
        [row] = session.scalars(select(ConvertedFile)).all()
        slide = session.get(Slide, outcome.slide_id)
        instances = list(session.scalars(select(Instance).where(Instance.slide_id == slide.id)))
        assert row.state == "done" and row.attempts == 2
        assert slide.state == "settled" and len(instances) == 6
        assert {i.version for i in instances} == {1}  # the same bytes again: no new versions
    assert len(events(watch_runtime, "watch.retried")) == 1
    assert len(events(watch_runtime, "instance.duplicate")) == 2


def test_one_watcher_per_folder_and_the_service_runs_until_stopped(
    watch_runtime: Runtime, vendor_files: VendorFiles
):
    first = WatchService(watch_runtime)
    first.start()
    try:
        with pytest.raises(UniTumourError, match="another watcher holds"):
            WatchService(watch_runtime).lock()
        drop(vendor_files.generic_tiff, watch_runtime, "plain.tiff")
        done = watch_runtime.settings.watch.folder / "done" / "plain.tiff"
        deadline = time.monotonic() + 120
        while not done.exists():
            assert time.monotonic() < deadline
            time.sleep(0.2)
    finally:
        stopper = threading.Thread(target=first.stop)
        stopper.start()
        stopper.join(60)
    assert [e.event for e in events(watch_runtime, "watch.stopped")] == ["watch.stopped"]


def test_a_watcher_killed_during_conversion_leaves_nothing_and_the_file_is_taken_again(
    watch_runtime: Runtime, vendor_files: VendorFiles, tmp_path: Path
):
    """kill -9 of `unitumour watch` while its converter runs: the converter dies with it,
    nothing is admitted, the file stays; the next watcher converts it once, completely."""
    import subprocess
    import sys

    from tests.jobs.servicekit import toml_text

    settings = watch_runtime.settings
    config = tmp_path / "watch.toml"
    config.write_text(
        toml_text(
            {
                "data_dir": settings.data_dir,
                "database": {"url": settings.database_url},
                "watch": {"folder": settings.watch.folder, "quiet_seconds": 0.3},
            }
        )
    )
    drop(vendor_files.svs, watch_runtime, "killed.svs", SIDECAR)
    log = open(tmp_path / "watch.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "unitumour_services.cli", "-v", "-c", str(config), "watch"],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    scratch = settings.data_dir / "watch-scratch"

    def converter_pids() -> list[int]:
        found = []
        for status in Path("/proc").glob("[0-9]*/status"):
            try:
                if f"PPid:\t{proc.pid}\n" in status.read_text():
                    found.append(int(status.parent.name))
            except OSError:
                continue
        return found

    try:
        deadline = time.monotonic() + 120
        while not (converter_pids() and scratch.is_dir() and any(scratch.iterdir())):
            assert proc.poll() is None, (tmp_path / "watch.log").read_text()
            assert time.monotonic() < deadline, (tmp_path / "watch.log").read_text()
            time.sleep(0.05)
        children = converter_pids()
    finally:
        proc.kill()
        proc.wait(10)
        log.close()
    deadline = time.monotonic() + 3  # at once, not when its conversion is over (~5 s)
    while any(Path(f"/proc/{pid}").exists() for pid in children):  # died with its parent
        assert time.monotonic() < deadline, f"converter {children} outlived the watcher"
        time.sleep(0.05)
    assert (settings.watch.folder / "killed.svs").is_file()
    with watch_runtime.session() as session:
        assert session.scalars(select(ConvertedFile.state)).all() == ["converting"]
        assert session.scalars(select(Instance)).all() == []

    [outcome] = take_all(WatchService(watch_runtime))
    assert outcome.state == "done"
    with watch_runtime.session() as session:
        [row] = session.scalars(select(ConvertedFile)).all()
        assert row.state == "done" and row.attempts == 2
        assert len(session.scalars(select(Instance)).all()) == 6
    assert len(events(watch_runtime, "watch.retried")) == 1


def test_a_full_store_leaves_the_file_to_be_taken_again(
    watch_runtime: Runtime, vendor_files: VendorFiles
):
    settings = watch_runtime.settings
    full = Runtime(
        settings.model_copy(
            update={"store": settings.store.model_copy(update={"min_free_percent": 99.999})}
        )
    )
    drop(vendor_files.svs, full, "waits.svs")
    [outcome] = take_all(WatchService(full))
    assert outcome.state == "deferred" and "free" in outcome.reason
    assert (settings.watch.folder / "waits.svs").is_file()
    assert not (settings.watch.folder / "failed").exists()
    [outcome] = take_all(WatchService(watch_runtime))  # room again
    assert outcome.state == "done"
    with watch_runtime.session() as session:
        [row] = session.scalars(select(ConvertedFile)).all()
        assert row.state == "done" and row.attempts == 2

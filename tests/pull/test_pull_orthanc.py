"""Pulling from a real PACS: Orthanc (Debian's package and its DICOMweb plugin) holds a
phantom slide; the poller finds it and retrieves it by WADO-RS, by C-GET and by C-MOVE to a
running listener, and each time the instances are admitted exactly once (rows, store files,
digests), a second poll fetches nothing, the watermark survives a restart, and a source that
refuses or cannot be reached is audited without stopping anything.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from sqlalchemy import func, select

from unitumour_dicom.config.sections import PullSettings, PullSourceSettings
from unitumour_dicom.db import AuditEvent, Instance, PullWatermark, Slide
from unitumour_dicom.ingest import ListenerService
from unitumour_dicom.pull import Poller
from unitumour_dicom.runtime import Runtime
from unitumour_dicom.synthetic import PhantomSpec, write_phantom_slide

from .orthanc import AVAILABLE, WHY_NOT, Orthanc, free_port, wait_for

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.skipif(not AVAILABLE, reason=WHY_NOT),
]

OUR_AE = "UNITUMOUR"
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"


@pytest.fixture(scope="module")
def slide(tmp_path_factory: pytest.TempPathFactory) -> Any:
    spec = PhantomSpec(
        width=1024,
        height=768,
        tile_size=256,
        levels=2,
        acquisition_datetime=datetime.now().replace(microsecond=0),
    )
    return write_phantom_slide(tmp_path_factory.mktemp("phantom"), spec)


@pytest.fixture
def orthanc(tmp_path: Path, slide: Any) -> Iterator[Orthanc]:
    pacs = Orthanc(tmp_path / "orthanc", our_ae=OUR_AE)
    try:
        pacs.upload(slide.instance_paths)
        yield pacs
    finally:
        pacs.stop()


def _web(orthanc: Orthanc, **extra: Any) -> PullSourceSettings:
    fields: dict[str, Any] = {
        "name": "orthanc-web",
        "kind": "dicomweb",
        "url": orthanc.dicomweb_url,
        "auth": "basic",
        "username": orthanc.user,
        "password": orthanc.password,
        **extra,
    }
    return PullSourceSettings(**fields)


def _dimse(orthanc: Orthanc, **extra: Any) -> PullSourceSettings:
    fields: dict[str, Any] = {
        "name": "orthanc-dimse",
        "kind": "dimse",
        "ae_title": orthanc.aet,
        "host": "127.0.0.1",
        "port": orthanc.dicom_port,
        **extra,
    }
    return PullSourceSettings(**fields)


def _with_sources(runtime: Runtime, *sources: PullSourceSettings, **pull: Any) -> Runtime:
    settings = runtime.settings.model_copy(
        update={"pull": PullSettings(sources=list(sources), timeout_s=20, **pull)}
    )
    return Runtime(settings)


def _instances(runtime: Runtime, series_uid: str) -> list[Instance]:
    with runtime.session() as session:
        rows = session.scalars(
            select(Instance).where(Instance.series_instance_uid == series_uid)
        ).all()
        session.expunge_all()
        return list(rows)


def _events(runtime: Runtime, code: str) -> list[AuditEvent]:
    with runtime.session() as session:
        rows = session.scalars(select(AuditEvent).where(AuditEvent.event == code)).all()
        session.expunge_all()
        return list(rows)


def _dataset_bytes(data: bytes) -> bytes:
    """The data set after the File Meta Information (which each hop may write anew)."""
    assert data[128:132] == b"DICM"
    (group_length,) = struct.unpack("<I", data[140:144])
    return data[144 + group_length :]


def _assert_admitted(runtime: Runtime, slide: Any, *, byte_exact: bool) -> None:
    """Every instance of the slide is stored once, in the transfer syntax it was uploaded in
    (nothing transcoded), and its recorded digest is its stored file's. WADO-RS sends the
    file as the archive holds it (``byte_exact``); over DIMSE Orthanc (DCMTK) encodes the
    data set anew (sequence lengths), so there every element's value must be equal."""
    rows = _instances(runtime, slide.series_uid)
    assert len(rows) == len(slide.instance_paths)
    sent, paths = {}, {}
    for path in slide.instance_paths:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        paths[ds.SOPInstanceUID] = path
        sent[ds.SOPInstanceUID] = (
            _dataset_bytes(path.read_bytes()),
            ds.file_meta.TransferSyntaxUID,
        )
    assert {r.sop_instance_uid for r in rows} == set(sent)
    for row in rows:
        stored = runtime.store.abspath(row.path).read_bytes()
        assert hashlib.sha256(stored).hexdigest() == row.sha256
        assert row.transfer_syntax_uid == sent[row.sop_instance_uid][1]
        if byte_exact:
            assert _dataset_bytes(stored) == sent[row.sop_instance_uid][0]
        else:
            ours = pydicom.dcmread(runtime.store.abspath(row.path))
            theirs = pydicom.dcmread(paths[row.sop_instance_uid])
            assert ours == theirs  # every element, pixel data included
    with runtime.session() as session:
        slide_row = session.scalars(
            select(Slide).where(Slide.series_instance_uid == slide.series_uid)
        ).one()
        assert slide_row.state == "receiving"


def _poll_twice_and_restart(runtime: Runtime, slide: Any, source: PullSourceSettings) -> None:
    byte_exact = source.kind == "dicomweb"
    first = Poller(runtime).poll_source(source)
    assert first.ok, first.failed
    assert first.retrieved == [slide.series_uid]
    assert first.instances == len(slide.instance_paths)
    assert first.complete
    _assert_admitted(runtime, slide, byte_exact=byte_exact)
    (retrieved,) = _events(runtime, "pull.series_retrieved")
    assert retrieved.details["intake"] == "pull"
    assert retrieved.details["source"] == source.name
    assert retrieved.details["peer"] == source.remote

    second = Poller(runtime).poll_source(source)
    assert second.ok and second.found == 1 and second.skipped == 1 and not second.retrieved
    assert len(_instances(runtime, slide.series_uid)) == len(slide.instance_paths)
    assert len(_events(runtime, "pull.series_retrieved")) == 1
    assert len(_events(runtime, "instance.duplicate")) == 0  # nothing was fetched again

    with runtime.session() as session:
        mark = session.get(PullWatermark, source.name)
        assert mark is not None and mark.watermark is not None
        assert mark.watermark == second.started_at
        assert mark.series_retrieved == 1 and mark.instances_received == len(slide.instance_paths)
    # a restart: a new runtime (new engine, new poller) reads the same watermark
    restarted = Runtime(runtime.settings)
    with restarted.session() as session:
        assert session.get(PullWatermark, source.name).watermark == second.started_at
    third = Poller(restarted).poll_source(source)
    assert third.ok and third.skipped == 1 and not third.retrieved


def test_pull_by_dicomweb(runtime: Runtime, orthanc: Orthanc, slide: Any) -> None:
    source = _web(orthanc)
    _poll_twice_and_restart(_with_sources(runtime, source), slide, source)


def test_pull_by_c_get(runtime: Runtime, orthanc: Orthanc, slide: Any) -> None:
    source = _dimse(orthanc, retrieve="c-get")
    _poll_twice_and_restart(_with_sources(runtime, source), slide, source)


def test_filters_and_the_date_window_are_sent_to_the_source(
    sqlite_runtime: Runtime, orthanc: Orthanc, slide: Any
) -> None:
    for source in (
        _web(orthanc, study_description="Not*this*"),
        _dimse(orthanc, study_description="Not*this*"),
        _web(orthanc, date_to="20000101"),
        _dimse(orthanc, date_to="20000101"),
    ):
        report = Poller(_with_sources(sqlite_runtime, source)).poll_source(source)
        assert report.ok and report.found == 0, (source, report)
    matching = _web(orthanc, study_description="UniTumour?phantom*")
    report = Poller(_with_sources(sqlite_runtime, matching)).poll_source(matching)
    assert report.found == 1 and report.retrieved == [slide.series_uid]


def test_refused_and_unreachable_sources_are_audited(
    sqlite_runtime: Runtime, orthanc: Orthanc
) -> None:
    closed = free_port()
    sources = [
        _web(orthanc, name="wrong-password", password="not-it"),
        _dimse(orthanc, name="wrong-called-ae", ae_title="NOT-PACS"),
        _dimse(orthanc, name="unreachable-dimse", port=closed),
        PullSourceSettings(
            name="unreachable-web", kind="dicomweb", url=f"http://127.0.0.1:{closed}"
        ),
    ]
    runtime = _with_sources(sqlite_runtime, *sources)
    started = time.monotonic()
    reports = Poller(runtime).poll()
    assert time.monotonic() - started < 60
    assert [r.source for r in reports] == [s.name for s in sources]
    for report in reports:
        assert not report.ok and "" in report.failed, report
    by_source = {e.details["source"]: e for e in _events(runtime, "pull.query_failed")}
    assert set(by_source) == {s.name for s in sources}, by_source
    assert "401" in by_source["wrong-password"].message, by_source["wrong-password"].message
    called = by_source["wrong-called-ae"].message
    assert "association with NOT-PACS@127.0.0.1" in called and "rejected" in called, called
    with runtime.session() as session:
        for source in sources:
            mark = session.get(PullWatermark, source.name)
            assert mark.watermark is None and mark.last_error


def test_too_many_results_are_refused_not_truncated(
    sqlite_runtime: Runtime, orthanc: Orthanc, tmp_path: Path
) -> None:
    other = write_phantom_slide(
        tmp_path / "other",
        PhantomSpec(
            width=512,
            height=512,
            tile_size=256,
            levels=1,
            seed=7,
            acquisition_datetime=datetime.now().replace(microsecond=0),
        ),
    )
    orthanc.upload(other.instance_paths)
    for source in (_web(orthanc), _dimse(orthanc)):
        runtime = _with_sources(sqlite_runtime, source, max_results=1)
        report = Poller(runtime).poll_source(source)
        assert "more than 1 series" in report.failed[""]
        assert not report.retrieved


def test_c_move_to_the_running_listener_and_the_pull_loop(
    sqlite_runtime: Runtime, tmp_path: Path, slide: Any
) -> None:
    from unitumour_dicom.config.sections import CallerRule

    port = free_port()
    pacs = Orthanc(tmp_path / "orthanc", our_ae=OUR_AE, our_port=port)
    try:
        pacs.upload(slide.instance_paths)
        source = _dimse(pacs, retrieve="c-move")
        listener = sqlite_runtime.settings.listener.model_copy(
            update={
                "port": port,
                "ae_title": OUR_AE,
                "callers": [CallerRule(ae_title=pacs.aet)],
                "settle_interval_s": 0.2,
            }
        )
        settings = sqlite_runtime.settings.model_copy(
            update={
                "listener": listener,
                "pull": PullSettings(sources=[source], timeout_s=20, interval_s=0.5),
            }
        )
        runtime = Runtime(settings)
        service = ListenerService(runtime)
        service.start()
        try:
            # the loop polls at once: the PACS stores the series to the listener
            wait_for(lambda: _events(runtime, "pull.series_retrieved"), 60, "the pulled series")
            _assert_admitted(runtime, slide, byte_exact=False)
            rows = _instances(runtime, slide.series_uid)
            assert all(r.association_id is not None for r in rows)  # came by C-STORE
            # further polls of the loop find it received, and fetch nothing
            with runtime.session() as session:
                polled = session.get(PullWatermark, source.name).last_poll_at
            wait_for(
                lambda: _last_poll(runtime, source.name) > polled, 30, "another poll of the loop"
            )
            assert len(_events(runtime, "pull.series_retrieved")) == 1
            assert len(_instances(runtime, slide.series_uid)) == len(slide.instance_paths)
        finally:
            service.stop(grace_s=5)
    finally:
        pacs.stop()


def _last_poll(runtime: Runtime, name: str) -> datetime:
    with runtime.session() as session:
        mark = session.get(PullWatermark, name)
        return mark.last_poll_at if mark is not None else datetime.min.replace(tzinfo=UTC)


def test_the_loop_survives_a_failing_source(sqlite_runtime: Runtime) -> None:
    closed = free_port()
    source = PullSourceSettings(name="down", kind="dicomweb", url=f"http://127.0.0.1:{closed}")
    listener = sqlite_runtime.settings.listener.model_copy(update={"port": 0})
    settings = sqlite_runtime.settings.model_copy(
        update={"listener": listener, "pull": PullSettings(sources=[source], interval_s=0.2)}
    )
    runtime = Runtime(settings)
    service = ListenerService(runtime)
    service.start()
    try:
        wait_for(lambda: len(_events(runtime, "pull.query_failed")) >= 3, 30, "three polls")
        assert service._puller is not None and service._puller.is_alive()
    finally:
        service.stop(grace_s=1)
    with runtime.session() as session:
        assert session.scalar(select(func.count()).select_from(PullWatermark)) == 1


def test_pull_commands(tmp_path: Path, orthanc: Orthanc, slide: Any) -> None:
    """``unitumour pull run --once`` (as from cron) and ``pull status``, as processes."""
    config = tmp_path / "unitumour.toml"
    config.write_text(
        f'data_dir = "{tmp_path / "data"}"\n'
        "[[pull.sources]]\n"
        'name = "orthanc-web"\nkind = "dicomweb"\n'
        f'url = "{orthanc.dicomweb_url}"\nauth = "basic"\n'
        f'username = "{orthanc.user}"\npassword = "{orthanc.password}"\n'
        "[[pull.sources]]\n"
        'name = "orthanc-dimse"\nkind = "dimse"\nenabled = false\n'
        f'ae_title = "{orthanc.aet}"\nhost = "127.0.0.1"\nport = {orthanc.dicom_port}\n'
    )
    env = {**os.environ, "UNITUMOUR_CONFIG": str(config)}
    unitumour = [sys.executable, "-m", "unitumour_services.cli"]

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*unitumour, *args], env=env, capture_output=True, text=True, timeout=120
        )

    assert run("db", "upgrade").returncode == 0
    first = run("pull", "run", "--once")
    assert first.returncode == 0, first.stderr
    assert "orthanc-web: 1 series found, 0 already received, 1 retrieved" in first.stdout
    assert "orthanc-dimse" not in first.stdout  # disabled: polled only when named
    named = run("pull", "run", "--once", "--json", "orthanc-dimse")
    assert named.returncode == 0, named.stderr
    report = json.loads(named.stdout)
    assert report["source"] == "orthanc-dimse" and report["skipped"] == 1
    assert report["retrieved"] == []
    unknown = run("pull", "run", "--once", "nowhere")
    assert unknown.returncode == 2 and "no pull source named 'nowhere'" in unknown.stderr

    shown = run("pull", "status", "--json")
    assert shown.returncode == 0, shown.stderr
    web, dimse = json.loads(shown.stdout)
    assert web["source"] == "orthanc-web" and web["watermark"] is not None
    assert web["series_retrieved"] == 1
    assert web["instances_received"] == len(slide.instance_paths)
    assert dimse["enabled"] is False and dimse["series_retrieved"] == 0
    assert "password" not in shown.stdout and orthanc.password not in shown.stdout
    text = run("pull", "status")
    assert "orthanc-web: wado-rs from http://127.0.0.1:" in text.stdout


def _secondary_capture_in(slide: Any) -> bytes:
    """An instance of another SOP class in the slide's series (a PACS may hold one there)."""
    ds = Dataset()
    ds.SOPClassUID = SECONDARY_CAPTURE
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = slide.study_uid
    ds.SeriesInstanceUID = slide.series_uid
    ds.Modality = "SM"
    ds.PatientID = "PHANTOM-0001"
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = SECONDARY_CAPTURE
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, ds, enforce_file_format=True)
    return buffer.getvalue()


@pytest.mark.parametrize("kind", ["dicomweb", "c-get"])
def test_an_instance_we_do_not_take_does_not_make_the_series_churn(
    sqlite_runtime: Runtime, orthanc: Orthanc, slide: Any, tmp_path: Path, kind: str
) -> None:
    extra = tmp_path / "sc.dcm"
    extra.write_bytes(_secondary_capture_in(slide))
    orthanc.upload([extra])
    source = _web(orthanc) if kind == "dicomweb" else _dimse(orthanc, retrieve="c-get")
    runtime = _with_sources(sqlite_runtime, source)
    first = Poller(runtime).poll_source(source)
    # the slide is admitted; the other instance is refused by us (WADO-RS: it arrived and
    # validation refused it, audited) or never sent (C-GET: no context for its class)
    assert first.ok and first.complete and first.retrieved == [slide.series_uid], first
    assert first.instances == len(slide.instance_paths)
    assert first.refused == (1 if kind == "dicomweb" else 0)
    (event,) = _events(runtime, "pull.series_retrieved")
    if kind == "c-get":
        assert "1 instances of SOP classes we do not accept" in event.details["warning"]
    else:
        (refusal,) = _events(runtime, "instance.refused")
        assert "0x0122" in refusal.message
    # the source counts one more instance than we hold, yet the series is done
    second = Poller(runtime).poll_source(source)
    assert second.skipped == 1 and not second.retrieved


def test_a_series_that_keeps_failing_is_given_up(
    sqlite_runtime: Runtime, orthanc: Orthanc, slide: Any
) -> None:
    # the PACS does not know this move destination: every C-MOVE fails
    source = _dimse(orthanc, retrieve="c-move", move_destination="NOWHERE")
    runtime = _with_sources(sqlite_runtime, source, max_attempts=2)
    first = Poller(runtime).poll_source(source)
    assert slide.series_uid in first.failed and not first.complete
    with runtime.session() as session:
        assert session.get(PullWatermark, source.name).watermark is None  # held back
    second = Poller(runtime).poll_source(source)
    assert second.ok and second.complete  # given up: it no longer holds the watermark
    (given_up,) = _events(runtime, "pull.series_given_up")
    assert "given up after 2 attempts" in given_up.message
    assert len(_events(runtime, "pull.series_failed")) == 1
    third = Poller(runtime).poll_source(source)
    assert third.given_up == 1 and not third.retrieved and not third.failed
    with runtime.session() as session:
        assert session.get(PullWatermark, source.name).watermark == third.started_at

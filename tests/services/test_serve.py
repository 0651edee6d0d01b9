"""`unitumour serve` end to end: storescu sends phantom slides to the running service; the SEG
arrives at a storescp destination, and the database holds the whole provenance chain. A slide
with corrupt frames ends failed, with its reason, after the configured attempts, and the
service carries on. SIGTERM stops everything cleanly."""

from __future__ import annotations

import hashlib
import os
import re
import signal
import subprocess
import urllib.request
from pathlib import Path

import pydicom
import pytest
from sqlalchemy import select

from tests.jobs.servicekit import (
    StoreSCP,
    _accepts,
    phantom_folders,
    service_config,
    unitumour,
    wait_until,
)
from tests.pipeline.slides import corrupt_frames, model_level
from unitumour_dicom.db import (
    Association,
    AuditEvent,
    Delivery,
    DeliveryAttempt,
    Instance,
    Job,
    ModelVersion,
    Result,
    Slide,
)
from unitumour_dicom.model import load_model

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def storescu(port: int, files: list[Path], ae: str = "SCANNER") -> None:
    # DCMTK proposes no WSI context by default: -R takes them from the files, -xy for JPEG
    result = subprocess.run(
        ["storescu", "-aet", ae, "-aec", "UNITUMOUR", "-R", "-xy", "127.0.0.1", str(port)]
        + [str(f) for f in files],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def without_meta(path: Path) -> pydicom.Dataset:
    ds = pydicom.dcmread(path)
    ds.file_meta = pydicom.dataset.FileMetaDataset()
    return ds


def test_a_slide_sent_with_storescu_comes_back_as_a_seg_with_its_provenance(tmp_path: Path):
    pacs = StoreSCP(tmp_path)
    config = service_config(
        tmp_path,
        model_path=None,  # the shipped demo model
        pacs_port=pacs.port,
        worker={"max_attempts": 2},
    )
    runtime, settings = config.runtime, config.settings
    demo = load_model(None, device="cpu")
    bad_folder, good_folder = phantom_folders(tmp_path / "slides", 2)
    corrupt_frames(model_level(bad_folder, demo.card.mpp))
    serve = unitumour(config, ["serve"], tmp_path / "serve.log", "serve")
    try:
        wait_until(lambda: _accepts(settings.listener.port), 120, "the listener")
        wait_until(lambda: serve.text().count(" ready.") >= 2, 180, "the workers")
        web = f"http://127.0.0.1:{settings.web.port}/healthz"
        wait_until(lambda: _accepts(settings.web.port), 120, "the web app")
        with urllib.request.urlopen(web, timeout=10) as response:
            assert response.status == 200

        storescu(settings.listener.port, sorted(bad_folder.glob("*.dcm")))
        storescu(settings.listener.port, sorted(good_folder.glob("*.dcm")))

        def finished() -> bool:
            with runtime.session() as session:
                states = set(session.scalars(select(Job.state)))
                delivered = session.scalars(select(Delivery.state)).all()
            return states == {"failed", "succeeded"} and delivered == ["delivered"]

        wait_until(finished, 300, "one slide delivered and the corrupt one failed")
    finally:
        code = serve.stop(signal.SIGTERM, timeout=120)
        pacs.stop()
    assert code == 0, serve.text()[-3000:]
    children = [int(pid) for pid in re.findall(r"started \S+ \(pid (\d+)\)", serve.text())]
    assert len(children) >= 4  # listener, segmentation, delivery, web
    for pid in children:
        assert not os.path.exists(f"/proc/{pid}") or "Z" in Path(f"/proc/{pid}/stat").read_text()

    good_uid = str(
        pydicom.dcmread(good_folder / "level-0.dcm", stop_before_pixels=True).SeriesInstanceUID
    )
    with runtime.session() as session:
        slide = session.scalars(select(Slide).where(Slide.series_instance_uid == good_uid)).one()
        instances = session.scalars(select(Instance).where(Instance.slide_id == slide.id)).all()
        association = session.get(Association, instances[0].association_id)
        job = session.scalars(select(Job).where(Job.slide_id == slide.id)).one()
        model = session.get(ModelVersion, job.model_id)
        result = session.scalars(select(Result).where(Result.job_id == job.id)).one()
        objects = [(i.sop_instance_uid, i.path, i.sha256) for i in result.instances]
        delivery = session.scalars(select(Delivery).where(Delivery.result_id == result.id)).one()
        attempts = session.scalars(
            select(DeliveryAttempt).where(DeliveryAttempt.delivery_id == delivery.id)
        ).all()
        bad = session.scalars(select(Job).where(Job.state == "failed")).one()
        chain = [
            e.event
            for e in session.scalars(
                select(AuditEvent)
                .where((AuditEvent.slide_id == slide.id) | (AuditEvent.job_id == job.id))
                .order_by(AuditEvent.id)
            )
        ]
    # who sent it, and what arrived, byte for byte as stored
    assert association.calling_ae == "SCANNER" and slide.source_ae == "SCANNER"
    assert len(instances) == 3 and slide.state == "settled"
    for row in instances:
        assert sha256(runtime.store.abspath(row.path)) == row.sha256
    # the job read exactly those instances, with those digests
    assert sorted((i["sop_instance_uid"], i["sha256"]) for i in job.inputs["instances"]) == sorted(
        (r.sop_instance_uid, r.sha256) for r in instances
    )
    # the model that ran, the code, the device, settings and time per stage
    assert (model.name, model.weights_sha256) == (demo.card.name, demo.card.weights_sha256)
    assert job.code_version and job.device.startswith("cpu") and job.settings["inference"]
    assert {"receive", "settle_wait", "queue_wait", "inference", "seg", "total"} <= set(job.timings)
    # every object as stored (SEG levels, SR, key image...) is what the PACS received, once
    received = {
        str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID): p for p in pacs.files()
    }
    assert sorted(received) == sorted(uid for uid, _, _ in objects)
    for uid, path, digest in objects:
        stored = runtime.store.abspath(path)
        assert sha256(stored) == digest
        assert without_meta(received[uid]) == without_meta(stored)
    assert delivery.state == "delivered" and [a.ok for a in attempts] == [True]
    assert [e for e in chain if e.startswith(("slide.", "job.", "result.", "delivery."))] == [
        "slide.settled",
        "job.created",
        "job.claimed",
        "job.started",
        "job.succeeded",
        "result.recorded",
        "delivery.planned",
        "delivery.attempt",
        "delivery.delivered",
    ]
    # the corrupt slide: failed after the configured attempts, with its reason
    assert bad.attempts == 2 and "could not be decoded" in bad.error

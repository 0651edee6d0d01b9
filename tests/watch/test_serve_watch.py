"""`unitumour serve` with a watched folder: an SVS dropped with its sidecar comes back as a SEG
at the PACS, with provenance naming the watched folder and the file, and the phantom's known
tumour in it."""

from __future__ import annotations

import json
import re
import shutil
import signal
from pathlib import Path

import pytest
from sqlalchemy import select

from tests.e2e.flow import MIN_PHANTOM_DICE
from tests.jobs.servicekit import StoreSCP, service_config, unitumour, wait_until
from tests.watch.conftest import VendorFiles
from unitumour_dicom.db import AuditEvent, ConvertedFile, Delivery, Job, Result, Slide
from unitumour_dicom.demo import received_seg_files, score_seg
from unitumour_dicom.model import load_model

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_an_svs_dropped_in_the_watched_folder_is_delivered_as_a_seg(
    vendor_files: VendorFiles, converter: Path, tmp_path: Path
):
    pacs = StoreSCP(tmp_path)
    dropbox = tmp_path / "dropbox"
    config = service_config(
        tmp_path,
        model_path=None,  # the shipped demo model
        pacs_port=pacs.port,
        watch={"folder": str(dropbox), "quiet_seconds": 0.5, "scan_interval_s": 0.2},
    )
    runtime = config.runtime
    serve = unitumour(config, ["serve", "--no-web"], tmp_path / "serve.log", "serve")
    try:
        wait_until(lambda: (dropbox / ".unitumour-watch.lock").exists(), 120, "the watcher")
        (dropbox / "S-0042.json").write_text(
            json.dumps({"PatientID": "PAT-42", "PatientName": "Doe^Jane", "AccessionNumber": "A42"})
        )
        shutil.copyfile(vendor_files.svs, dropbox / "S-0042.svs")

        def delivered() -> bool:
            with runtime.session() as session:
                return session.scalars(select(Delivery.state)).all() == ["delivered"]

        wait_until(delivered, 600, "the converted slide's SEG at the PACS")
    finally:
        code = serve.stop(signal.SIGTERM, timeout=120)
        pacs.stop()
    assert code == 0, serve.text()[-3000:]
    assert re.search(r"started watch \(pid \d+\)", serve.text()), serve.text()[-3000:]
    assert (dropbox / "done" / "S-0042.svs").is_file()
    with runtime.session() as session:
        row = session.scalars(select(ConvertedFile)).one()
        slide = session.get(Slide, row.slide_id)
        job = session.scalars(select(Job).where(Job.slide_id == slide.id)).one()
        result = session.scalars(select(Result).where(Result.job_id == job.id)).one()
        seg_uids = [i.sop_instance_uid for i in result.seg_instances]
        converted = session.scalars(
            select(AuditEvent).where(AuditEvent.event == "watch.converted")
        ).one()
        frame_of_reference = slide.frame_of_reference_uid
        series_uid = slide.series_instance_uid
        assert slide.source_ae == "WATCHFOLDER" and slide.patient_id == "PAT-42"
        assert job.state == "succeeded"
    assert converted.slide_id == slide.id
    assert converted.details["intake"] == "watched-folder"
    assert converted.details["source_file"] == "S-0042.svs"
    received = received_seg_files(pacs.folder, seg_uids)
    assert len(received) == len(seg_uids)
    demo = load_model(None, device="cpu")
    score = score_seg(
        list(received.values()),
        vendor_files.phantom.tumour_mask(demo.card.mpp),
        series_uid=series_uid,
        frame_of_reference_uid=frame_of_reference,
        base_mpp=vendor_files.phantom.mpp,
    )
    print(f"Dice of the SEG delivered for the dropped SVS: {score.dice:.4f}")
    assert score.dice >= MIN_PHANTOM_DICE, score

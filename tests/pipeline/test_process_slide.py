"""process_slide: one run per job, its provenance on record, failures retried then failed."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import select

from tests.pipeline.slides import corrupt_frames, model_level
from unitumour_dicom import __version__
from unitumour_dicom.db import AuditEvent, Instance, Job, ModelVersion, Result
from unitumour_dicom.db.types import utcnow
from unitumour_dicom.jobs import claim_job
from unitumour_dicom.pipeline import ModelProvider, process_slide
from unitumour_dicom.pipeline import process as process_module
from unitumour_dicom.store import sha256_file

pytestmark = pytest.mark.integration

WORKER = "test@host:1"


def events(runtime, job_id):
    with runtime.session() as session:
        return [
            e.event
            for e in session.scalars(
                select(AuditEvent).where(AuditEvent.job_id == job_id).order_by(AuditEvent.id)
            )
        ]


def test_a_job_runs_once_and_records_its_whole_provenance(fast_runtime, models, queued):
    [job_id] = queued()
    outcome = process_slide(job_id, runtime=fast_runtime, worker=WORKER, models=models)
    assert outcome.ran and outcome.state == "succeeded", outcome.message
    card = models.get().card
    with fast_runtime.session() as session:
        job = session.get(Job, job_id)
        model = session.get(ModelVersion, job.model_id)
        result = session.scalars(select(Result).where(Result.job_id == job_id)).one()
        instances = session.scalars(select(Instance).where(Instance.slide_id == job.slide_id)).all()
        seg_files = [(i.path, i.sha256, i.sop_instance_uid) for i in result.seg_instances]
        kinds = [
            (i.kind, i.series_instance_uid == result.series_instance_uid) for i in result.instances
        ]
        stored = [(i.path, i.sha256) for i in result.instances]
    # the model, by name, version and weights digest
    assert (model.name, model.version, model.weights_sha256) == (
        card.name,
        card.version,
        card.weights_sha256,
    )
    # the code, the device, the settings that shaped the result
    assert job.code_version.startswith(__version__)
    assert job.device.startswith("cpu")
    assert job.settings["model"]["device"] == "cpu"
    assert job.settings["seg"]["segmentation_type"] == "BINARY"
    assert job.settings["inference"]["mpp"] == card.mpp
    assert job.settings["inference"]["tile_size"] == card.tile_size
    # the inputs: every instance read, with its digest, checked before reading
    assert job.inputs["sha256_verified"] is True
    assert sorted((i["sop_instance_uid"], i["sha256"]) for i in job.inputs["instances"]) == sorted(
        (i.sop_instance_uid, i.sha256) for i in instances
    )
    # seconds per stage, from the slide's arrival to the SEG
    for stage in ("receive", "settle_wait", "queue_wait", "inputs", "verify", "inference", "seg"):
        assert job.timings[stage] >= 0.0, stage
    assert job.timings["total"] >= job.timings["inference"] + job.timings["seg"]
    assert job.timings["inference.forward"] > 0
    # the SEG pyramid in the store, recorded with digests, one instance per source level
    assert len(seg_files) == 3
    # then the further kinds (results.kinds: all): the SR and the key image in series of their
    # own; this untrained model finds no tumour, so there are no contours to annotate
    assert kinds == [("seg", True)] * 3 + [("sr", False), ("key_image", False)]
    assert job.timings["objects.sr"] >= 0 and job.timings["objects.key_image"] > 0
    for path, digest in stored:
        assert sha256_file(fast_runtime.store.abspath(path)) == digest
    recorded = events(fast_runtime, job_id)
    assert [e for e in recorded if e.startswith(("job.", "result."))] == [
        "job.created",
        "job.claimed",
        "job.started",
        "job.succeeded",
        "result.recorded",
    ]
    # no destination is configured: the routing says so, nothing is sent
    assert recorded[-1] == "delivery.unrouted"
    # never run again
    again = process_slide(job_id, runtime=fast_runtime, worker="other@host:2", models=models)
    assert not again.ran and again.message == f"job {job_id} already has its result"


def test_a_rerun_after_a_crash_writes_the_same_seg_instances(
    fast_runtime, models, queued, monkeypatch
):
    """The worker dies after writing the SEG and before recording it; the next run writes
    the same UIDs (derived from the job's uuid) and the same bytes, and records them once."""
    [job_id] = queued()
    real_record = process_module._record

    def crash(**kwargs):
        raise SystemExit("killed between the SEG and its record")

    monkeypatch.setattr(process_module, "_record", crash)
    with pytest.raises(SystemExit):
        process_slide(job_id, runtime=fast_runtime, worker=WORKER, models=models)
    left = {p.name: sha256_file(p) for p in (fast_runtime.store.root / "results").rglob("*.dcm")}
    assert len(left) == 5  # three SEG levels, the SR and the key image: the same bytes again
    with fast_runtime.session() as session:
        job = session.get(Job, job_id)
        assert (job.state, job.attempts) == ("queued", 0)  # given back, attempt not counted
        assert session.scalars(select(Result)).all() == []
    monkeypatch.setattr(process_module, "_record", real_record)
    outcome = process_slide(job_id, runtime=fast_runtime, worker=WORKER, models=models)
    assert outcome.state == "succeeded"
    after = {p.name: sha256_file(p) for p in (fast_runtime.store.root / "results").rglob("*.dcm")}
    assert after == left
    with fast_runtime.session() as session:
        result = session.scalars(select(Result)).one()
        assert {f"{i.sop_instance_uid}.dcm" for i in result.instances} == set(left)
    assert "job.released" in events(fast_runtime, job_id)


def test_a_corrupt_frame_fails_after_the_configured_retries_and_the_next_slide_runs(
    fast_runtime, models, queued
):
    mpp = models.get().card.mpp

    def break_read_level(folder):
        corrupt_frames(model_level(folder, mpp))

    [bad] = queued(prepare=break_read_level)
    [good] = queued()
    first = process_slide(bad, runtime=fast_runtime, worker=WORKER, models=models)
    assert (first.state, first.retry_delay_s) == (
        "queued",
        fast_runtime.settings.worker.retry_delay_s,
    )
    second = process_slide(bad, runtime=fast_runtime, worker=WORKER, models=models)
    assert (second.state, second.retry_delay_s) == ("failed", None)
    third = process_slide(bad, runtime=fast_runtime, worker=WORKER, models=models)
    assert not third.ran and third.message == f"job {bad} is failed"
    with fast_runtime.session() as session:
        job = session.get(Job, bad)
    assert job.attempts == 2 and job.finished_at is not None
    assert job.error and job.error == second.message.split(": ", 1)[1]
    assert events(fast_runtime, bad)[-6:] == [
        "job.claimed",
        "job.started",
        "job.retried",
        "job.claimed",
        "job.started",
        "job.failed",
    ]
    assert process_slide(good, runtime=fast_runtime, worker=WORKER, models=models).state == (
        "succeeded"
    )


def test_a_stopping_worker_gives_the_job_back(fast_runtime, models, queued):
    [job_id] = queued()
    stop = threading.Event()
    stop.set()
    outcome = process_slide(
        job_id, runtime=fast_runtime, worker=WORKER, models=models, stop_requested=stop
    )
    assert outcome.released and outcome.state == "queued"
    with fast_runtime.session() as session:
        job = session.get(Job, job_id)
    assert (job.state, job.attempts, job.lease_owner) == ("queued", 0, None)
    assert events(fast_runtime, job_id)[-1] == "job.released"


class StealingProvider(ModelProvider):
    """Another worker takes the job over while this one loads its model (as after a stall
    longer than the lease): the first worker must record nothing."""

    def __init__(self, inner: ModelProvider, runtime, job_id: int) -> None:
        super().__init__(inner.settings)
        self.inner, self.runtime, self.job_id = inner, runtime, job_id

    def get(self):
        with self.runtime.session() as session:
            lease = claim_job(
                session=session,
                job_id=self.job_id,
                worker="thief@host:9",
                now=utcnow() + timedelta(seconds=60),
                lease_seconds=300,
                max_attempts=3,
            )
        assert lease is not None
        return self.inner.get()


def test_a_worker_that_lost_its_lease_records_nothing(fast_runtime, models, queued):
    [job_id] = queued()
    provider = StealingProvider(models, fast_runtime, job_id)
    outcome = process_slide(job_id, runtime=fast_runtime, worker=WORKER, models=provider)
    assert outcome.ran and outcome.state is None and "lost" in outcome.message
    with fast_runtime.session() as session:
        job = session.get(Job, job_id)
        assert session.scalars(select(Result)).all() == []
    assert job.state == "running" and job.lease_owner.startswith("thief@host:9/")
    assert "job.lease_lost" in events(fast_runtime, job_id)

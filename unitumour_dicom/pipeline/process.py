"""process_slide: one job, from its lease to its recorded SEG and queued deliveries.

The one path that the worker, ``unitumour process`` and the tests all use (DESIGN.md rule 6):

1. claim the job's lease (or do nothing: finished, leased elsewhere, out of attempts, or
   already has a result), and keep it alive with heartbeats while working;
2. resolve the inputs the job was created for and check them against their sha256;
3. open the slide, run the model over it (``segment_slide``), its slide-sized masks in
   scratch files in a folder of the job's own (owner-only) under ``worker.scratch_dir``
   (default: the store's spool/), removed when the job's compute ends, whatever its outcome;
4. build the SEG pyramid into the store, with UIDs derived from the job's uuid, so a rerun
   after a crash writes the same instances; then the further objects ``results.kinds`` asks
   for (SR, bulk annotations, key image), each by its writer in ``results.WRITERS``;
5. in one transaction: the job's success with its provenance (model row, code version,
   device, settings used, inputs with digests, seconds per stage), the result rows and the
   planned deliveries. The success is a compare-and-set on the lease, so a worker that lost
   its lease records nothing.

A failed attempt is recorded with its reason and the job is queued again while attempts
remain; the caller sends its message again after ``retry_delay_s``. A worker asked to stop
gives the job back without counting the attempt.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pydicom

from ..config import Settings
from ..db import Job, JobState, record_event
from ..db.types import utcnow
from ..jobs.events import JobEvent
from ..jobs.keeper import JobInterrupted, LeaseKeeper, LeaseLostError
from ..jobs.leases import (
    Lease,
    claim_job,
    complete_job,
    fail_attempt,
    release_job,
    why_not_claimable,
)
from ..progress import StageProgress
from ..runtime import Runtime
from .inputs import JobInputs, resolve_inputs, verify_inputs
from .models import ModelProvider
from .provenance import code_version, settings_used
from .timing import StageTimer

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class JobOutcome:
    """What one call of :func:`process_slide` did with its job."""

    job_id: int
    ran: bool  # False: the job was not this worker's to run; nothing changed
    state: str | None  # the job's state afterwards (None when the lease was lost)
    message: str
    result_id: int | None = None
    delivery_ids: tuple[int, ...] = ()
    retry_delay_s: float | None = None  # queued again: send its message after this delay
    released: bool = False  # given back to the queue by a stopping worker
    timings: dict[str, float] = field(default_factory=dict)


@dataclass
class _Work:
    """What the compute stages produced, for the recording transaction."""

    inputs: JobInputs
    verified: bool
    model: Any  # LoadedModel
    inference: Any  # InferenceResult
    pyramid: Any  # SegPyramid
    source_ae: str | None
    objects: list[Any] = field(default_factory=list)  # results.ResultObject: SR, ANN, ...


def _volume_headers(inputs: JobInputs, runtime: Runtime) -> list[pydicom.Dataset]:
    """Headers (no pixel data) of the pyramid's VOLUME instances: the SEG's sources."""
    headers: list[pydicom.Dataset] = []
    for path in inputs.paths(runtime.store):
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        image_type = [str(v).upper() for v in ds.get("ImageType", [])]
        if len(image_type) >= 3 and image_type[2] == "VOLUME":
            headers.append(ds)
    return headers


def _compute(
    *,
    job_id: int,
    lease: Lease,
    keeper: LeaseKeeper,
    runtime: Runtime,
    models: ModelProvider,
    timer: StageTimer,
    worker: str,
    on_progress: StageProgress | None = None,
) -> _Work:
    # Imported here: the SEG and inference stacks (highdicom, wsidicom, torch) are heavy,
    # and the job machinery must stay importable without them.
    from ..findings import ModelIdentity
    from ..infer import segment_slide
    from ..results import WriterInputs, write_result_objects
    from ..seg import write_seg_pyramid
    from ..slide import open_slide

    settings = runtime.settings
    with timer.stage("inputs"), runtime.session() as session:
        job = session.get(Job, job_id)
        assert job is not None
        inputs = resolve_inputs(session=session, job=job)
        uid_seed = job.uuid
        content_datetime = job.created_at
        source_ae = job.slide.source_ae
        record_event(
            session=session,
            event=JobEvent.JOB_STARTED,
            actor=worker,
            job_id=job_id,
            slide_id=job.slide_id,
            message=(
                f"job {job_id} attempt {lease.attempt}: reading {len(inputs.instances)} "
                f"instance(s), {inputs.total_bytes:,} bytes, of series "
                f"{inputs.series_instance_uid}"
            ),
        )
    verified = settings.worker.verify_inputs
    if verified:
        with timer.stage("verify"):
            verify_inputs(inputs, runtime.store)
    keeper.check()

    with timer.stage("model_load"):
        model = models.get()
    keeper.check()

    def progress(done: int, total: int) -> None:
        keeper.check()
        if on_progress is not None:
            on_progress("tiles", done, total)

    # The masks at the model's resolution live on disk (a resection is gigapixels), in a
    # folder of this job's that goes when the compute ends; the files in it are unlinked
    # from the start, so even a killed worker leaves at most an empty folder.
    scratch_root = settings.worker.scratch_dir or runtime.store.spool_dir
    scratch_root.mkdir(mode=0o700, parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f"job-{job_id}-", dir=scratch_root))
    inference = None
    try:
        with timer.stage("open"):
            slide = open_slide(inputs.paths(runtime.store))
        try:
            with timer.stage("inference"):
                inference = segment_slide(
                    slide,
                    model,
                    batch_size=settings.model.batch_size,
                    read_threads=settings.model.read_threads,
                    mixed_precision=settings.model.mixed_precision,
                    progress=progress,
                    scratch_dir=scratch,
                )
        finally:
            slide.close()
        timer.merge("inference", dict(inference.timings))
        keeper.check()

        with timer.stage("seg"):
            headers = _volume_headers(inputs, runtime)
            identity = ModelIdentity.from_card(model.card)
            pyramid = write_seg_pyramid(
                source_datasets=headers,
                mask=inference.tumour,
                probability=inference.probability,
                algorithm=identity.algorithm_info(),
                settings=settings.seg,
                uid_seed=uid_seed,
                store=runtime.store,
                content_datetime=content_datetime,
                research_use_only=identity.research_use_only,
            )
        timer.merge("seg", dict(getattr(pyramid, "timings_s", {}) or {}))
        keeper.check()

        # The further result kinds (SR, bulk annotations, key image) that results.kinds asks
        # for, each through its writer in the results registry; all from the same job UUID
        # and time, and all while the masks on disk are still open.
        with timer.stage("objects"):
            writer_inputs = WriterInputs(
                source_datasets=headers,
                slide_paths=inputs.paths(runtime.store),
                result=inference,
                seg=pyramid,
                identity=identity,
                seg_settings=settings.seg,
                results_settings=settings.results,
                uid_seed=uid_seed,
                content_datetime=content_datetime,
            )
            objects = write_result_objects(writer_inputs, settings.results.kinds, runtime.store)
        timer.merge("objects", writer_inputs.timings)
        keeper.check()
    finally:
        if inference is not None:
            inference.close()  # the areas and figures stay for the record
        shutil.rmtree(scratch, ignore_errors=True)
    return _Work(
        inputs=inputs,
        verified=verified,
        model=model,
        inference=inference,
        pyramid=pyramid,
        source_ae=source_ae,
        objects=objects,
    )


def _waits(job: Job) -> dict[str, float]:
    """Seconds the slide spent before this attempt: receiving, settling, queued."""
    waits: dict[str, float] = {}
    slide = job.slide
    if slide.first_received_at and slide.last_received_at:
        waits["receive"] = (slide.last_received_at - slide.first_received_at).total_seconds()
    if slide.settled_at and slide.last_received_at:
        waits["settle_wait"] = (slide.settled_at - slide.last_received_at).total_seconds()
    queued_since = job.created_at
    if job.started_at and queued_since:
        waits["queue_wait"] = max((job.started_at - queued_since).total_seconds(), 0.0)
    return {k: round(v, 4) for k, v in waits.items()}


def _record(
    *,
    job_id: int,
    lease: Lease,
    work: _Work,
    runtime: Runtime,
    worker: str,
    timer: StageTimer,
    clock: Callable[[], datetime],
) -> tuple[int, tuple[int, ...], dict[str, float]]:
    from ..deliver import plan_deliveries
    from ..model import register_model
    from ..seg import record_result

    settings: Settings = runtime.settings
    card = work.model.card
    with runtime.session() as session:
        job = session.get(Job, job_id)
        assert job is not None
        model_row = register_model(session=session, model=work.model)
        timings = {**_waits(job), **timer.as_record()}
        done = complete_job(
            session=session,
            lease=lease,
            now=clock(),
            worker=worker,
            model_id=model_row.id,
            code_version=code_version(),
            device=str(getattr(work.inference, "device", work.model.device))[:64],
            settings=settings_used(settings, model_card=card.to_dict()),
            inputs=work.inputs.as_record(verified=work.verified),
            timings=timings,
        )
        if not done:
            session.rollback()
            raise LeaseLostError(f"job {job_id}: lease {lease.owner} lost before recording")
        session.expire(job)
        result = record_result(
            session=session,
            job=job,
            pyramid=work.pyramid,
            tumour_area_mm2=work.inference.tumour_area_mm2,
            tissue_area_mm2=work.inference.tissue_area_mm2,
            objects=work.objects,
        )
        deliveries = plan_deliveries(
            session=session,
            result=result,
            source_ae=work.source_ae,
            settings=settings.delivery,
            caller_rules=settings.listener.callers,
        )
        session.flush()
        return result.id, tuple(d.id for d in deliveries), timings


def _error_text(exc: BaseException) -> str:
    text = str(exc).strip() or repr(exc)
    return f"{type(exc).__name__}: {text}"


def process_slide(
    job: Job | int,
    *,
    runtime: Runtime,
    worker: str,
    models: ModelProvider | None = None,
    stop_requested: threading.Event | None = None,
    clock: Callable[[], datetime] = utcnow,
    on_progress: StageProgress | None = None,
) -> JobOutcome:
    """Run one job if it is ours to run; record everything it did; never raise for its failure.

    Parameters
    ----------
    job:
        The job (row or id). Only its id is used: the row is read afresh under the lease.
    runtime:
        Database, store and settings of this process.
    worker:
        This worker's name (``role@host:pid``), written in leases and audit rows.
    models:
        The process's model provider (loaded once per process); default: load from settings.
    stop_requested:
        Set by the process when it must stop: the job goes back to the queue at the next
        stage boundary or inference progress report.
    on_progress:
        Told ``("tiles", done, total)`` as inference goes (for a progress bar).

    Returns
    -------
    JobOutcome
        ``ran=False`` when the job was not claimable (finished, leased, out of attempts,
        already has a result): its message names why. Otherwise the state the job ended in,
        with the result and delivery ids on success and the retry delay when queued again.
    """
    job_id = job if isinstance(job, int) else job.id
    settings = runtime.settings
    wcfg = settings.worker
    models = models or ModelProvider(settings.model)

    with runtime.session() as session:
        lease = claim_job(
            session=session,
            job_id=job_id,
            worker=worker,
            now=clock(),
            lease_seconds=wcfg.lease_seconds,
            max_attempts=wcfg.max_attempts,
        )
        if lease is None:
            why = why_not_claimable(
                session=session, job_id=job_id, now=clock(), max_attempts=wcfg.max_attempts
            )
            row = session.get(Job, job_id)
            state = row.state if row is not None else None
    if lease is None:
        log.info("job %s not run: %s", job_id, why)
        return JobOutcome(job_id=job_id, ran=False, state=state, message=why)

    log.info("job %s: attempt %d of %d", job_id, lease.attempt, lease.max_attempts)
    timer = StageTimer()
    keeper = LeaseKeeper(
        engine=runtime.engine,
        lease=lease,
        lease_seconds=wcfg.lease_seconds,
        heartbeat_seconds=wcfg.heartbeat_seconds,
        stop_requested=stop_requested,
        clock=clock,
    )
    try:
        with keeper:
            work = _compute(
                job_id=job_id,
                lease=lease,
                keeper=keeper,
                runtime=runtime,
                models=models,
                timer=timer,
                worker=worker,
                on_progress=on_progress,
            )
            # The work is done: no heartbeat may race the outcome's update of the lease, and
            # a stop request no longer gives the job back (recording takes a moment).
            keeper.stop()
            keeper.check_lease()
            result_id, delivery_ids, timings = _record(
                job_id=job_id,
                lease=keeper.lease,
                work=work,
                runtime=runtime,
                worker=worker,
                timer=timer,
                clock=clock,
            )
    except LeaseLostError as exc:
        return _lease_lost(job_id, lease, runtime, worker, exc, timer)
    except JobInterrupted as exc:
        return _release(job_id, keeper.lease, runtime, worker, str(exc), timer, clock)
    except Exception as exc:
        log.error("job %s attempt %d failed: %s", job_id, lease.attempt, exc, exc_info=True)
        return _failed(job_id, keeper.lease, runtime, worker, exc, timer, clock)
    except BaseException:
        # KeyboardInterrupt, SystemExit, Celery's termination: give the job back, then go.
        _release(job_id, keeper.lease, runtime, worker, "the worker was terminated", timer, clock)
        raise
    log.info(
        "job %s succeeded in %.1f s: result %s, %d delivery(ies)",
        job_id,
        timings.get("total", 0.0),
        result_id,
        len(delivery_ids),
    )
    return JobOutcome(
        job_id=job_id,
        ran=True,
        state=JobState.SUCCEEDED,
        message=f"job {job_id} succeeded on attempt {lease.attempt}",
        result_id=result_id,
        delivery_ids=delivery_ids,
        timings=timings,
    )


def _lease_lost(
    job_id: int,
    lease: Lease,
    runtime: Runtime,
    worker: str,
    exc: BaseException,
    timer: StageTimer,
) -> JobOutcome:
    log.warning("job %s: %s; its work is dropped", job_id, exc)
    try:
        with runtime.session() as session:
            record_event(
                session=session,
                event=JobEvent.JOB_LEASE_LOST,
                actor=worker,
                job_id=job_id,
                message=f"job {job_id}: {exc}; the attempt's work was not recorded",
                details={"owner": lease.owner, "attempt": lease.attempt},
            )
    except Exception:
        log.exception("job %s: could not record the lost lease", job_id)
    return JobOutcome(
        job_id=job_id, ran=True, state=None, message=str(exc), timings=timer.as_record()
    )


def _release(
    job_id: int,
    lease: Lease,
    runtime: Runtime,
    worker: str,
    reason: str,
    timer: StageTimer,
    clock: Callable[[], datetime],
) -> JobOutcome:
    try:
        with runtime.session() as session:
            released = release_job(
                session=session, lease=lease, now=clock(), worker=worker, reason=reason
            )
    except Exception:
        log.exception("job %s: could not give the job back; its lease will expire", job_id)
        released = False
    return JobOutcome(
        job_id=job_id,
        ran=True,
        state=JobState.QUEUED if released else None,
        message=f"job {job_id} given back: {reason}",
        released=released,
        timings=timer.as_record(),
    )


def _failed(
    job_id: int,
    lease: Lease,
    runtime: Runtime,
    worker: str,
    exc: Exception,
    timer: StageTimer,
    clock: Callable[[], datetime],
) -> JobOutcome:
    error = _error_text(exc)
    delay = runtime.settings.worker.retry_delay_s
    now = clock()
    timings = timer.as_record()
    try:
        with runtime.session() as session:
            state = fail_attempt(
                session=session,
                lease=lease,
                now=now,
                worker=worker,
                error=error,
                retry_at=now + timedelta(seconds=delay),
                timings=timings,
            )
    except Exception:
        log.exception("job %s: could not record the failure; its lease will expire", job_id)
        state = None
    return JobOutcome(
        job_id=job_id,
        ran=True,
        state=state,
        message=f"job {job_id} attempt {lease.attempt} failed: {error}",
        retry_delay_s=delay if state == JobState.QUEUED else None,
        timings=timings,
    )

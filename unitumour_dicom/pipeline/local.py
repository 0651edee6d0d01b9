"""Process a folder of DICOM instances without the network (``unitumour process``).

The files are admitted by the listener's own receive path (:mod:`..ingest.receive`: copied
into the store's spool, validated, made durable, recorded with the intake path ``process``,
grouped into slides; a refused file is audited as a refused C-STORE is); each slide is settled at
once (the same pyramid check, the same job creation); and each job runs through
:func:`process_slide`, the worker's own path. Provenance is therefore recorded as for any job,
and the result objects the store holds (SEG, SR, bulk annotations, key image) are copied to
the output folder.

A slide whose instances were all admitted before (same bytes) and whose last job succeeded is
not run again: its existing SEG is copied out, unless ``force`` asks for a new job (which
supersedes the old one, as a re-run from the web app does).
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select, update

from ..db import Job, JobState, Result, ResultKind, Slide, SlideState
from ..db.types import utcnow
from ..errors import JobError, UniTumourError
from ..progress import StageProgress
from ..runtime import Runtime
from .models import ModelProvider
from .process import JobOutcome, process_slide

log = logging.getLogger(__name__)

#: The calling AE title recorded for instances admitted from a local folder.
LOCAL_SOURCE = "LOCAL"


@dataclass
class FolderReport:
    """What :func:`process_folder` did, for the command's output."""

    admitted: list[str] = field(default_factory=list)  # store paths
    duplicates: list[str] = field(default_factory=list)
    refused: dict[str, str] = field(default_factory=dict)  # file -> reason
    unprocessable: dict[str, str] = field(default_factory=dict)  # series UID -> reason
    outcomes: list[JobOutcome] = field(default_factory=list)
    written: list[Path] = field(default_factory=list)
    reused: list[int] = field(default_factory=list)  # job ids whose earlier result was copied

    @property
    def ok(self) -> bool:
        return not self.unprocessable and all(o.state == JobState.SUCCEEDED for o in self.outcomes)


def _dicom_files(folder: Path) -> Iterator[Path]:
    """Every file under ``folder`` that carries the DICOM Part 10 preamble, in name order."""
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        with open(path, "rb") as fh:
            head = fh.read(132)
        if len(head) == 132 and head[128:132] == b"DICM":
            yield path


def admit_folder(
    folder: Path,
    runtime: Runtime,
    report: FolderReport,
    *,
    on_progress: StageProgress | None = None,
) -> set[int]:
    """Admit every DICOM file under ``folder``; return the ids of the slides they belong to.

    ``on_progress`` is told ``("files", done, total)`` after each file."""
    from ..db import IntakePath
    from ..ingest.receive import IntakeInfo, Receiver

    receiver = Receiver(runtime)
    intake = IntakeInfo(IntakePath.PROCESS, sender=LOCAL_SOURCE, peer=str(folder))
    slides: set[int] = set()
    files = list(_dicom_files(folder))
    if not files:
        raise JobError(f"{folder} holds no DICOM files (Part 10, with the DICM preamble)")
    for done, path in enumerate(files, 1):
        outcome = receiver.receive(path, intake)
        if on_progress is not None:
            on_progress("files", done, len(files))
        admission = outcome.admission
        if admission is None:
            report.refused[str(path)] = f"{outcome.reason} (status 0x{outcome.status:04X})"
            continue
        if outcome.duplicate:
            report.duplicates.append(admission.path)
        else:
            report.admitted.append(admission.path)
        if admission.slide_id is not None:
            slides.add(admission.slide_id)
    return slides


def jobs_for_slides(
    slide_ids: set[int], runtime: Runtime, report: FolderReport, *, force: bool
) -> tuple[list[int], list[int]]:
    """Settle the slides now; return (jobs to run, jobs whose earlier result stands)."""
    from ..ingest import create_job, current_instances, settle_due_slides

    now = utcnow()
    max_attempts = runtime.settings.worker.max_attempts
    to_run: list[int] = []
    reused: list[int] = []
    with runtime.session() as session:
        session.execute(
            update(Slide)
            .where(Slide.id.in_(slide_ids), Slide.state == SlideState.RECEIVING)
            .values(settle_at=now)
            .execution_options(synchronize_session=False)
        )
        created = settle_due_slides(
            session=session, store=runtime.store, now=now, max_attempts=max_attempts
        )
        to_run += [job.id for job in created if job.slide_id in slide_ids]
        for slide_id in sorted(slide_ids):
            slide = session.get(Slide, slide_id)
            assert slide is not None
            if slide.state == SlideState.UNPROCESSABLE:
                report.unprocessable[slide.series_instance_uid] = slide.state_reason or ""
                continue
            if any(job.slide_id == slide_id for job in created):
                continue
            last = session.scalars(
                select(Job).where(Job.slide_id == slide_id).order_by(Job.id.desc()).limit(1)
            ).first()
            if last is not None and not force and last.state == JobState.SUCCEEDED:
                reused.append(last.id)
            elif last is not None and not force and not JobState(last.state).finished:
                to_run.append(last.id)  # queued or running: run it (or find it leased)
            else:
                job = create_job(
                    session=session,
                    slide_id=slide_id,
                    series_uid=slide.series_instance_uid,
                    instances=current_instances(session, slide_id),
                    now=now,
                    max_attempts=max_attempts,
                )
                job.reason = f"{job.reason}; run again by 'unitumour process'"
                to_run.append(job.id)
    return to_run, reused


def copy_results(job_ids: list[int], runtime: Runtime, out_dir: Path) -> list[Path]:
    """Copy each job's result objects from the store to ``out_dir``/<series UID>/: the SEG
    levels as ``level<n>-<SOP UID>.dcm``, the others as ``<kind>-<SOP UID>.dcm``."""
    written: list[Path] = []
    with runtime.session() as session:
        for job_id in job_ids:
            result = session.scalars(select(Result).where(Result.job_id == job_id)).one_or_none()
            if result is None:
                continue
            for instance in result.instances:
                target = out_dir / instance.series_instance_uid
                target.mkdir(parents=True, exist_ok=True)
                runtime.store.verify(instance.path, instance.sha256)
                name = (
                    f"level{instance.level}"
                    if instance.kind == ResultKind.SEG
                    else str(instance.kind)
                )
                dest = target / f"{name}-{instance.sop_instance_uid}.dcm"
                shutil.copyfile(runtime.store.abspath(instance.path), dest)
                written.append(dest)
    return written


def write_overlays(
    job_ids: list[int], runtime: Runtime, target: Path, *, max_pixels: int = 1024
) -> list[Path]:
    """Draw each job's QA picture (slide thumbnail, its SEG's tumour outlined and tinted).

    ``target`` ending in ``.png`` names the one picture of a single slide; otherwise it is a
    folder (created) that receives ``<series UID>.png`` per slide. The slide is read from the
    job's own input instances and the tumour from the SEG the store holds, as the web app's
    case picture is.
    """
    from ..seg.overlay import PictureError, render_overlay_png
    from .inputs import resolve_inputs

    single = target.suffix.lower() == ".png"
    if single and len(job_ids) != 1:
        raise UniTumourError(
            f"--png {target} names one picture but {len(job_ids)} slides were processed: "
            "give a folder"
        )
    if not single:
        target.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for job_id in job_ids:
        with runtime.session() as session:
            job = session.get(Job, job_id)
            assert job is not None
            inputs = resolve_inputs(session=session, job=job)
            result = session.scalars(select(Result).where(Result.job_id == job_id)).one_or_none()
            if result is None:
                raise PictureError(f"job {job_id} has no result to draw")
            seg_paths = [runtime.store.abspath(i.path) for i in result.seg_instances]
        png = render_overlay_png(
            slide_paths=inputs.paths(runtime.store), seg_paths=seg_paths, max_pixels=max_pixels
        )
        dest = target if single else target / f"{inputs.series_instance_uid}.png"
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(png)
        written.append(dest)
    return written


def process_folder(
    folder: Path,
    out_dir: Path,
    *,
    runtime: Runtime,
    worker: str,
    models: ModelProvider | None = None,
    force: bool = False,
    on_outcome: Callable[[JobOutcome], None] | None = None,
    on_progress: StageProgress | None = None,
) -> FolderReport:
    """Admit, settle, process (with the configured attempts) and copy out; see the module.

    ``on_progress`` is told ``("files", done, total)`` while admitting, ``("slides", done,
    total)`` as jobs finish and ``("tiles", done, total)`` during each slide's inference."""
    if not folder.is_dir():
        raise UniTumourError(f"{folder} is not a folder")
    report = FolderReport()
    slide_ids = admit_folder(folder, runtime, report, on_progress=on_progress)
    to_run, report.reused = jobs_for_slides(slide_ids, runtime, report, force=force)
    models = models or ModelProvider(runtime.settings.model)
    if on_progress is not None and to_run:
        on_progress("slides", 0, len(to_run))
    for finished, job_id in enumerate(to_run, 1):
        while True:
            outcome = process_slide(
                job_id, runtime=runtime, worker=worker, models=models, on_progress=on_progress
            )
            if on_outcome is not None:
                on_outcome(outcome)
            if outcome.retry_delay_s is None:
                break
            log.info("job %s: trying again at once (no queue here)", job_id)
        report.outcomes.append(outcome)
        if on_progress is not None:
            on_progress("slides", finished, len(to_run))
    done = [o.job_id for o in report.outcomes if o.state == JobState.SUCCEEDED]
    report.written = copy_results(done + report.reused, runtime, out_dir)
    return report

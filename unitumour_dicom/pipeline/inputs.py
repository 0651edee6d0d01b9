"""The instances a job reads: exactly those it was created for, verified against their digests.

The listener records each job's inputs when it settles the slide (``Job.inputs``: UID,
version, sha256 and store path of every instance). The pipeline reads those, not whatever
the slide holds by the time the job runs, so the provenance names precisely what was read.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..db import Instance, InstanceState, Job
from ..errors import JobError, SlideError
from ..store import FileStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class InputInstance:
    """One stored instance a job reads."""

    sop_instance_uid: str
    version: int
    sop_class_uid: str
    transfer_syntax_uid: str
    image_type: str | None
    sha256: str
    size_bytes: int
    path: str  # relative to the store root

    def as_record(self) -> dict[str, Any]:
        return {
            "sop_instance_uid": self.sop_instance_uid,
            "version": self.version,
            "sop_class_uid": self.sop_class_uid,
            "transfer_syntax_uid": self.transfer_syntax_uid,
            "image_type": self.image_type,
            "sha256": self.sha256,
            "size_bytes": self.size_bytes,
            "path": self.path,
        }


@dataclass(frozen=True)
class JobInputs:
    study_instance_uid: str
    series_instance_uid: str
    instances: list[InputInstance]

    def paths(self, store: FileStore) -> list[Path]:
        return [store.abspath(i.path) for i in self.instances]

    @property
    def total_bytes(self) -> int:
        return sum(i.size_bytes for i in self.instances)

    def as_record(self, *, verified: bool) -> dict[str, Any]:
        """Job.inputs: what was read, with digests, and whether they were checked."""
        return {
            "study_instance_uid": self.study_instance_uid,
            "series_instance_uid": self.series_instance_uid,
            "sha256_verified": verified,
            "instances": [i.as_record() for i in self.instances],
        }


def _rows_named_by_job(session: Session, job: Job) -> list[Instance]:
    """The Instance rows the job was created for (by UID and version), in that order."""
    named = (job.inputs or {}).get("instances") or []
    rows: list[Instance] = []
    for entry in named:
        try:
            uid, version = str(entry["sop_instance_uid"]), int(entry["version"])
        except (KeyError, TypeError, ValueError) as exc:
            raise JobError(f"job {job.id}: malformed inputs entry {entry!r}") from exc
        row = session.scalars(
            select(Instance).where(
                Instance.sop_instance_uid == uid,
                Instance.version == version,
                Instance.slide_id == job.slide_id,
            )
        ).one_or_none()
        if row is None:
            raise JobError(f"job {job.id}: input instance {uid} v{version} is not on record")
        rows.append(row)
    return rows


def _current_rows(session: Session, slide_id: int) -> list[Instance]:
    """The newest stored version of each instance of the slide (jobs made without inputs)."""
    newest: dict[str, Instance] = {}
    for row in session.scalars(
        select(Instance)
        .where(Instance.slide_id == slide_id)
        .order_by(Instance.sop_instance_uid, Instance.version)
    ):
        newest[row.sop_instance_uid] = row
    return list(newest.values())


def resolve_inputs(*, session: Session, job: Job) -> JobInputs:
    """The job's input instances, each still stored; raise SlideError naming any that is not."""
    rows = _rows_named_by_job(session, job) or _current_rows(session, job.slide_id)
    if not rows:
        raise SlideError(f"job {job.id}: slide {job.slide_id} has no stored instances")
    gone = [r for r in rows if r.state != InstanceState.STORED]
    if gone:
        listed = ", ".join(f"{r.sop_instance_uid} ({r.state})" for r in gone[:5])
        raise SlideError(f"job {job.id}: {len(gone)} input instance(s) no longer stored: {listed}")
    slide = job.slide
    return JobInputs(
        study_instance_uid=slide.study_instance_uid,
        series_instance_uid=slide.series_instance_uid,
        instances=[
            InputInstance(
                sop_instance_uid=r.sop_instance_uid,
                version=r.version,
                sop_class_uid=r.sop_class_uid,
                transfer_syntax_uid=r.transfer_syntax_uid,
                image_type=r.image_type,
                sha256=r.sha256,
                size_bytes=r.size_bytes,
                path=r.path,
            )
            for r in rows
        ],
    )


def verify_inputs(inputs: JobInputs, store: FileStore) -> None:
    """Raise IntegrityError if any input's bytes differ from the digest recorded at receipt."""
    for instance in inputs.instances:
        store.verify(instance.path, instance.sha256)

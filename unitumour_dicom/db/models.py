"""SQLAlchemy models: the one source of truth for the state of every slide, job and delivery.

Conventions: integer surrogate keys; DICOM UIDs as String(64); times timezone-aware UTC;
states as short strings (see enums.py) so that adding a state needs no type migration.
The schema changes only through Alembic (migrations/); a test proves the two agree.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy import (
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    event,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship

from .enums import (
    AssociationState,
    DeliveryState,
    InstanceState,
    JobState,
    ResultKind,
    SlideState,
    UserRole,
)
from .types import JSONType, UTCDateTime, utcnow

UID = String(64)
AE = String(16)

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime(),
        dict[str, Any]: JSONType,
    }


class Association(Base):
    """One DICOM association, accepted or rejected: who called, from where, what came of it."""

    __tablename__ = "associations"

    id: Mapped[int] = mapped_column(primary_key=True)
    calling_ae: Mapped[str] = mapped_column(String(64))
    called_ae: Mapped[str] = mapped_column(String(64))
    peer_host: Mapped[str] = mapped_column(String(64))
    peer_port: Mapped[int | None] = mapped_column(Integer)
    tls: Mapped[bool] = mapped_column(Boolean, default=False)
    client_cert_subject: Mapped[str | None] = mapped_column(String(512))
    state: Mapped[str] = mapped_column(String(16), default=AssociationState.OPEN)
    reject_reason: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    ended_at: Mapped[datetime | None]
    n_instances: Mapped[int] = mapped_column(Integer, default=0)
    n_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    n_failures: Mapped[int] = mapped_column(Integer, default=0)

    instances: Mapped[list[Instance]] = relationship(back_populates="association")


class Slide(Base):
    """One received series: a whole-slide image and what the pipeline made of it."""

    __tablename__ = "slides"

    id: Mapped[int] = mapped_column(primary_key=True)
    study_instance_uid: Mapped[str] = mapped_column(UID, index=True)
    series_instance_uid: Mapped[str] = mapped_column(UID, unique=True)
    frame_of_reference_uid: Mapped[str | None] = mapped_column(UID)
    patient_id: Mapped[str | None] = mapped_column(String(64), index=True)
    patient_name: Mapped[str | None] = mapped_column(String(324))
    accession_number: Mapped[str | None] = mapped_column(String(64), index=True)
    study_date: Mapped[str | None] = mapped_column(String(8), index=True)
    container_identifier: Mapped[str | None] = mapped_column(String(64))
    source_ae: Mapped[str | None] = mapped_column(String(64), index=True)
    state: Mapped[str] = mapped_column(String(16), default=SlideState.RECEIVING, index=True)
    state_reason: Mapped[str | None] = mapped_column(Text)
    quiet_seconds: Mapped[float] = mapped_column(Float, default=30.0)
    first_received_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_received_at: Mapped[datetime] = mapped_column(default=utcnow)
    settle_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    settled_at: Mapped[datetime | None]

    instances: Mapped[list[Instance]] = relationship(back_populates="slide")
    jobs: Mapped[list[Job]] = relationship(back_populates="slide", order_by="Job.id")


class Instance(Base):
    """One received SOP instance as stored: its bytes' digest and where they lie in the store.

    The same SOP Instance UID with different bytes is kept as a new version, never overwritten.
    """

    __tablename__ = "instances"
    __table_args__ = (UniqueConstraint("sop_instance_uid", "version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    sop_instance_uid: Mapped[str] = mapped_column(UID, index=True)
    version: Mapped[int] = mapped_column(Integer, default=1)
    sop_class_uid: Mapped[str] = mapped_column(UID)
    transfer_syntax_uid: Mapped[str] = mapped_column(UID)
    study_instance_uid: Mapped[str] = mapped_column(UID)
    series_instance_uid: Mapped[str] = mapped_column(UID, index=True)
    image_type: Mapped[str | None] = mapped_column(String(128))
    total_pixel_matrix_columns: Mapped[int | None] = mapped_column(BigInteger)
    total_pixel_matrix_rows: Mapped[int | None] = mapped_column(BigInteger)
    number_of_frames: Mapped[int | None] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    path: Mapped[str] = mapped_column(String(512), doc="Relative to the store root.")
    state: Mapped[str] = mapped_column(String(16), default=InstanceState.STORED)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    association_id: Mapped[int | None] = mapped_column(ForeignKey("associations.id"), index=True)
    slide_id: Mapped[int | None] = mapped_column(ForeignKey("slides.id"), index=True)
    intake: Mapped[str | None] = mapped_column(
        String(16), doc="By which path it came (IntakePath); None: before 0004 and not C-STORE."
    )
    sender: Mapped[str | None] = mapped_column(
        String(128), doc="From whom: calling AE title, web user, source AE or folder."
    )

    association: Mapped[Association | None] = relationship(back_populates="instances")
    slide: Mapped[Slide | None] = relationship(back_populates="instances")


class ModelVersion(Base):
    """A deployed model, identified by the digest of its weights; its card is kept verbatim."""

    __tablename__ = "models"
    __table_args__ = (UniqueConstraint("name", "version", "weights_sha256"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    version: Mapped[str] = mapped_column(String(64))
    weights_sha256: Mapped[str] = mapped_column(String(64), index=True)
    architecture: Mapped[str] = mapped_column(String(128))
    card: Mapped[dict[str, Any]]
    registered_at: Mapped[datetime] = mapped_column(default=utcnow)


class Job(Base):
    """One run of the pipeline over one settled slide.

    ``uuid`` seeds the UIDs of the SEG it makes, so a retried job writes the same UIDs.
    """

    __tablename__ = "jobs"

    id: Mapped[int] = mapped_column(primary_key=True)
    uuid: Mapped[str] = mapped_column(String(36), unique=True, default=lambda: str(uuid.uuid4()))
    slide_id: Mapped[int] = mapped_column(ForeignKey("slides.id"), index=True)
    model_id: Mapped[int | None] = mapped_column(ForeignKey("models.id"))
    state: Mapped[str] = mapped_column(String(16), default=JobState.QUEUED, index=True)
    reason: Mapped[str | None] = mapped_column(Text, doc="Why it was created or superseded.")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=3)
    lease_owner: Mapped[str | None] = mapped_column(String(255))
    lease_expires_at: Mapped[datetime | None] = mapped_column(index=True)
    heartbeat_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    dispatched_at: Mapped[datetime | None]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    error: Mapped[str | None] = mapped_column(Text)
    supersedes_job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id"))
    code_version: Mapped[str | None] = mapped_column(String(64))
    device: Mapped[str | None] = mapped_column(String(64))
    settings: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    inputs: Mapped[dict[str, Any] | None] = mapped_column(
        JSONType, doc="Instance UIDs, versions and sha256 digests the job read."
    )
    timings: Mapped[dict[str, Any] | None] = mapped_column(JSONType, doc="Seconds per stage.")

    slide: Mapped[Slide] = relationship(back_populates="jobs")
    model: Mapped[ModelVersion | None] = relationship()
    result: Mapped[Result | None] = relationship(back_populates="job")


class Result(Base):
    """What a job made, with the areas it measured: its SEG series (always written; its
    uid is ``series_instance_uid``) and the further objects ``results.kinds`` asked for
    (SR, bulk annotations, key image), each a ResultInstance with its kind and series."""

    __tablename__ = "results"

    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"), unique=True)
    study_instance_uid: Mapped[str] = mapped_column(UID)
    series_instance_uid: Mapped[str] = mapped_column(UID, unique=True)
    segmentation_type: Mapped[str] = mapped_column(String(16))
    tumour_area_mm2: Mapped[float] = mapped_column(Float)
    tissue_area_mm2: Mapped[float] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    job: Mapped[Job] = relationship(back_populates="result")
    instances: Mapped[list[ResultInstance]] = relationship(
        back_populates="result", order_by="ResultInstance.id"
    )
    deliveries: Mapped[list[Delivery]] = relationship(back_populates="result")

    def instances_of(self, *kinds: str) -> list[ResultInstance]:
        """The instances of these kinds (all when none is named), in recorded order."""
        return [i for i in self.instances if not kinds or i.kind in kinds]

    @property
    def seg_instances(self) -> list[ResultInstance]:
        """The SEG pyramid's instances: what overlays and SEG readers take."""
        return self.instances_of(ResultKind.SEG)


class ResultInstance(Base):
    """One stored object of a result: a SEG level (``level``: its source level), or the SR,
    the bulk annotations or the key image (``level`` 0), in its own series."""

    __tablename__ = "result_instances"

    id: Mapped[int] = mapped_column(primary_key=True)
    result_id: Mapped[int] = mapped_column(ForeignKey("results.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16), default=ResultKind.SEG)
    series_instance_uid: Mapped[str] = mapped_column(UID)
    sop_instance_uid: Mapped[str] = mapped_column(UID, unique=True)
    sop_class_uid: Mapped[str] = mapped_column(UID)
    source_sop_instance_uid: Mapped[str | None] = mapped_column(UID)
    level: Mapped[int] = mapped_column(Integer, default=0)
    rows: Mapped[int | None] = mapped_column(BigInteger)
    columns: Mapped[int | None] = mapped_column(BigInteger)
    path: Mapped[str] = mapped_column(String(512))
    sha256: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(BigInteger)

    result: Mapped[Result] = relationship(back_populates="instances")


class Delivery(Base):
    """One result to one destination, retried with backoff until delivered or too old."""

    __tablename__ = "deliveries"
    __table_args__ = (UniqueConstraint("result_id", "destination"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    result_id: Mapped[int] = mapped_column(ForeignKey("results.id"), index=True)
    destination: Mapped[str] = mapped_column(String(64))
    ae_title: Mapped[str] = mapped_column(AE)
    host: Mapped[str] = mapped_column(String(255))
    port: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16), default=DeliveryState.PENDING, index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(index=True)
    give_up_at: Mapped[datetime | None]
    last_status: Mapped[int | None] = mapped_column(Integer, doc="Last DICOM status received.")
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    delivered_at: Mapped[datetime | None]
    dispatched_at: Mapped[datetime | None] = mapped_column(
        doc="When a queue message for the current attempt was sent (or, delayed, is due)."
    )

    result: Mapped[Result] = relationship(back_populates="deliveries")
    attempts_log: Mapped[list[DeliveryAttempt]] = relationship(
        back_populates="delivery", order_by="DeliveryAttempt.id"
    )


class DeliveryAttempt(Base):
    """One try of a delivery: when, and what the destination answered."""

    __tablename__ = "delivery_attempts"

    id: Mapped[int] = mapped_column(primary_key=True)
    delivery_id: Mapped[int] = mapped_column(ForeignKey("deliveries.id"), index=True)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]
    ok: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)

    delivery: Mapped[Delivery] = relationship(back_populates="attempts_log")


class AuditEvent(Base):
    """Append-only log of everything that happened: rows are inserted, never changed."""

    __tablename__ = "audit_events"
    __table_args__ = (Index("ix_audit_events_at", "at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    event: Mapped[str] = mapped_column(String(64), index=True, doc="Catalogued event code.")
    actor: Mapped[str | None] = mapped_column(String(128), doc="Process, AE title or user.")
    message: Mapped[str] = mapped_column(Text)
    association_id: Mapped[int | None] = mapped_column(ForeignKey("associations.id"), index=True)
    slide_id: Mapped[int | None] = mapped_column(ForeignKey("slides.id"), index=True)
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id"), index=True)
    delivery_id: Mapped[int | None] = mapped_column(ForeignKey("deliveries.id"), index=True)
    details: Mapped[dict[str, Any] | None] = mapped_column(JSONType)


class User(Base):
    """A local user of the audit web app."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16), default=UserRole.VIEWER)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_login_at: Mapped[datetime | None]


class LoginSession(Base):
    """One log-in to the web app, held on the server so that it can be ended (log-out, an
    admin, a password or role change, disabling the user) whoever holds a copy of the cookie.

    Only the sha256 of the session token is kept: a copy of the database is no key to the
    app. A row lives until its expires_at has passed; ended_at and end_reason say why a
    session ended early.
    """

    __tablename__ = "login_sessions"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(index=True)
    ended_at: Mapped[datetime | None]
    end_reason: Mapped[str | None] = mapped_column(String(32))
    remote_addr: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(256))

    user: Mapped[User] = relationship()


class LoginThrottle(Base):
    """Failed log-ins per user name (known or not), counted so that the count and the check
    are one conditional UPDATE: parallel requests cannot all pass a check that reads the
    count before any of them has added to it."""

    __tablename__ = "login_throttles"

    username: Mapped[str] = mapped_column(String(64), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    last_failure_at: Mapped[datetime | None]


class ConvertedFile(Base):
    """One vendor file taken from the watched folder, by the digest of its bytes: the same
    bytes are converted once, however often they are dropped; a row left "converting" by a
    crash is taken again (the conversion is deterministic: same UIDs)."""

    __tablename__ = "converted_files"

    id: Mapped[int] = mapped_column(primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    source_name: Mapped[str] = mapped_column(String(512))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    state: Mapped[str] = mapped_column(String(16), index=True)
    reason: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    identity_source: Mapped[str | None] = mapped_column(String(128))
    study_instance_uid: Mapped[str | None] = mapped_column(UID)
    series_instance_uid: Mapped[str | None] = mapped_column(UID, index=True)
    slide_id: Mapped[int | None] = mapped_column(ForeignKey("slides.id"), index=True)
    first_seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]


class SenderToken(Base):
    """A machine client's credential for STOW-RS: it speaks for one sender (a caller rule's AE
    title), so what it sends gets that sender's rules (networks, quiet time, destinations).

    Only the sha256 of the token is kept (a token is 256 random bits, so a fast hash is
    enough and a copy of the database lets no one send); ``prefix`` is the token's first
    characters, shown to tell tokens apart.
    """

    __tablename__ = "sender_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    sender: Mapped[str] = mapped_column(String(16), index=True)
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    note: Mapped[str | None] = mapped_column(String(256))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by: Mapped[str] = mapped_column(String(128))
    expires_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]
    revoked_by: Mapped[str | None] = mapped_column(String(128))
    last_used_at: Mapped[datetime | None]
    last_used_from: Mapped[str | None] = mapped_column(String(64))


class PullWatermark(Base):
    """Where polling one pull source stands: survives restarts, so a poll resumes from it.

    ``watermark`` is the start (our clock) of the last poll whose query and retrievals all
    succeeded; the next query reaches back from it by the overlap setting, and series
    already received are skipped, so neither a coarse DICOM date nor a PACS clock that
    differs from ours loses a series.
    """

    __tablename__ = "pull_watermarks"

    source: Mapped[str] = mapped_column(String(64), primary_key=True)
    watermark: Mapped[datetime | None]
    last_poll_at: Mapped[datetime | None]
    last_success_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    series_retrieved: Mapped[int] = mapped_column(Integer, default=0)
    instances_received: Mapped[int] = mapped_column(BigInteger, default=0)


class PullSeries(Base):
    """One series a pull source offered that we set out to retrieve, and how that went.

    ``state`` retrieved: done, never fetched again from this source; retrying: a retrieval
    failed (it holds its source's watermark back, so the next poll finds it again); failed:
    given up after ``pull.max_attempts`` (audited; it no longer holds the watermark).
    """

    __tablename__ = "pull_series"
    __table_args__ = (UniqueConstraint("source", "series_instance_uid"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    source: Mapped[str] = mapped_column(String(64))
    study_instance_uid: Mapped[str] = mapped_column(UID)
    series_instance_uid: Mapped[str] = mapped_column(UID, index=True)
    state: Mapped[str] = mapped_column(String(16), index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    instances: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    first_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    retrieved_at: Mapped[datetime | None]


@event.listens_for(Session, "before_flush")
def _audit_is_append_only(session: Session, flush_context: Any, instances: Any) -> None:
    for obj in list(session.dirty) + list(session.deleted):
        if isinstance(obj, AuditEvent):
            raise PermissionError("audit_events is append-only: rows cannot change or go")

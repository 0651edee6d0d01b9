"""States of the things the database tracks, and the audit event codes, stored as their
string values."""

from enum import StrEnum, unique


class AssociationState(StrEnum):
    OPEN = "open"
    RELEASED = "released"
    ABORTED = "aborted"
    REJECTED = "rejected"


class InstanceState(StrEnum):
    STORED = "stored"
    QUARANTINED = "quarantined"
    PURGED = "purged"


class IntakePath(StrEnum):
    """By which way an instance came in; every way ends in the one receive function."""

    C_STORE = "c-store"  # the listener (DICOM storage SCP)
    STOW_RS = "stow-rs"  # DICOMweb STOW-RS into the web app
    PULL = "pull"  # fetched from a PACS (C-MOVE/C-GET or WADO-RS)
    WATCHED_FOLDER = "watched-folder"  # a folder watched for vendor files (after conversion)
    PROCESS = "process"  # `unitumour process` over a local folder


class SlideState(StrEnum):
    RECEIVING = "receiving"  # instances arriving, quiet timer running
    SETTLED = "settled"  # quiet time passed, usable pyramid, job queued
    UNPROCESSABLE = "unprocessable"  # settled but not a usable WSI; reason recorded
    PURGED = "purged"  # instances removed by retention; results kept


class JobState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SUPERSEDED = "superseded"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in {
            JobState.SUCCEEDED,
            JobState.FAILED,
            JobState.SUPERSEDED,
            JobState.CANCELLED,
        }


class DeliveryState(StrEnum):
    PENDING = "pending"
    SENDING = "sending"
    DELIVERED = "delivered"
    FAILED = "failed"


class ResultKind(StrEnum):
    """The kinds of DICOM object a result is made of (``result_instances.kind``). The SEG is
    always written; the others as ``results.kinds`` says. A new kind is a value here, a
    writer in ``unitumour_dicom.results.registry`` and its name in the settings."""

    SEG = "seg"  # Segmentation pyramid, one instance per source level
    SR = "sr"  # Comprehensive 3D SR, TID 1500 measurement report
    ANN = "ann"  # Microscopy Bulk Simple Annotations, the tumour contours
    KEY_IMAGE = "key_image"  # Secondary Capture, thumbnail with outline and figures


class UserRole(StrEnum):
    VIEWER = "viewer"
    ADMIN = "admin"


_FINISHED_JOB_STATES = frozenset(
    {JobState.SUCCEEDED, JobState.FAILED, JobState.SUPERSEDED, JobState.CANCELLED}
)


class ConvertedFileState(StrEnum):
    CONVERTING = "converting"  # taken; converting or admitting (a crash leaves it here: retried)
    DONE = "done"  # converted and admitted; the original is in done/
    FAILED = "failed"  # not convertible; the original is in failed/ with the reason


@unique
class AuditEventName(StrEnum):
    """Every audit event code, ``<subject>.<what happened>``: the one place a code is spelled.

    ``audit_events.event`` stores the value, so a value never changes once written (rows
    keep it); a state change that people can ask for (re-run a job, re-send a delivery) has
    one function in the library and one code here, whoever calls it. The audit pages filter
    by the subject before the dot.
    """

    # -- associations and connections (the listener) -------------------------------------
    #: An association passed the admission policy and was accepted.
    ASSOCIATION_ACCEPTED = "association.accepted"
    #: An association was refused (unknown caller, wrong called AE, TLS, limit, database down).
    ASSOCIATION_REJECTED = "association.rejected"
    #: The peer aborted, or the connection dropped, before a release.
    ASSOCIATION_ABORTED = "association.aborted"
    #: We ended a connection: over a connection limit, past a read deadline, or a protocol
    #: violation (a PDU longer than allowed, a runaway command set). Rate-limited per address.
    CONNECTION_DROPPED = "connection.dropped"

    #: A STOW-RS request was refused before its body was read (no, a wrong or revoked
    #: token; a sender not allowed from the address; not DICOM). Rate-limited per address.
    STOW_REFUSED = "stow.refused"
    #: A sender token (STOW-RS) was made or revoked (`unitumour tokens`).
    SENDER_TOKEN_CREATED = "sender_token.created"  # noqa: S105 (an event code)
    SENDER_TOKEN_REVOKED = "sender_token.revoked"  # noqa: S105 (an event code)

    # -- instances ------------------------------------------------------------------------
    #: An instance was stored durably and recorded; success was answered.
    INSTANCE_STORED = "instance.stored"
    #: The same SOP Instance UID with the same bytes again: success, nothing new kept.
    INSTANCE_DUPLICATE = "instance.duplicate"
    #: The same SOP Instance UID with different bytes: kept as a new version.
    INSTANCE_VERSION = "instance.version"
    #: An instance was refused with a failure status; nothing of it was kept.
    INSTANCE_REFUSED = "instance.refused"
    #: A transfer ended before the instance was complete (abort, lost peer); nothing kept.
    INSTANCE_INCOMPLETE = "instance.incomplete"
    #: Reconcile found a complete stored file without its row and admitted it.
    INSTANCE_RECOVERED = "instance.recovered"
    #: Reconcile found a stored file it could not admit and moved it to quarantine.
    INSTANCE_QUARANTINED = "instance.quarantined"

    # -- slides ---------------------------------------------------------------------------
    #: A settled or processed slide received new instances and is receiving again.
    SLIDE_REOPENED = "slide.reopened"
    #: The quiet time passed and the series opens as a usable pyramid.
    SLIDE_SETTLED = "slide.settled"
    #: The quiet time passed but the series cannot be processed; the reason is recorded.
    SLIDE_UNPROCESSABLE = "slide.unprocessable"
    #: Retention removed a slide's received instance files; rows, results, provenance kept.
    SLIDE_PURGED = "slide.purged"

    # -- jobs -----------------------------------------------------------------------------
    #: A job was queued for a settled slide.
    JOB_CREATED = "job.created"
    #: A newer job replaces this one (new instances arrived for its slide).
    JOB_SUPERSEDED = "job.superseded"
    #: A person asked for a new job that supersedes this one (web app or CLI).
    JOB_RERUN = "job.rerun"
    #: A message for the job was sent to the segmentation queue (first time or again).
    JOB_DISPATCHED = "job.dispatched"
    #: A worker took the job's lease (attempt N of M).
    JOB_CLAIMED = "job.claimed"
    #: The pipeline started reading the slide.
    JOB_STARTED = "job.started"
    #: The SEG is stored and recorded with its provenance; deliveries are queued.
    JOB_SUCCEEDED = "job.succeeded"
    #: An attempt failed and attempts remain: the job is queued again after a delay.
    JOB_RETRIED = "job.retried"
    #: The last attempt failed (or the lease of the last attempt ran out): the job ended.
    JOB_FAILED = "job.failed"
    #: A worker stopped heartbeating; the reconcile took the job back.
    JOB_LEASE_EXPIRED = "job.lease_expired"
    #: A worker found its lease taken over (it had stalled) and dropped its work.
    JOB_LEASE_LOST = "job.lease_lost"
    #: A worker shutting down gave the job back to the queue without counting an attempt.
    JOB_RELEASED = "job.released"
    #: The job finished while it ran elsewhere (superseded); its work was not recorded.
    JOB_DISCARDED = "job.discarded"

    # -- results and their deliveries ------------------------------------------------------
    #: A result (the SEG pyramid) was stored and recorded with its provenance.
    RESULT_RECORDED = "result.recorded"
    #: A delivery of a result to a destination was planned (routing).
    DELIVERY_PLANNED = "delivery.planned"
    #: A result has no destination; the SEG stays in the store.
    DELIVERY_UNROUTED = "delivery.unrouted"
    #: One try of a delivery (sent or failed).
    DELIVERY_ATTEMPT = "delivery.attempt"
    #: The destination has the result.
    DELIVERY_DELIVERED = "delivery.delivered"
    #: The delivery ended failed (refused for good, or older than the maximum age).
    DELIVERY_FAILED = "delivery.failed"
    #: A person asked for the delivery to be sent again (web app or CLI). Rows written by
    #: the web app before the two shared one function carry ``delivery.resend``.
    DELIVERY_RETRY_REQUESTED = "delivery.retry_requested"
    #: A sender stopped while sending: the reconcile put the delivery back to pending.
    DELIVERY_RECOVERED = "delivery.recovered"

    # -- processes --------------------------------------------------------------------------
    #: The listener started (after its reconcile) or stopped.
    LISTENER_STARTED = "listener.started"
    LISTENER_STOPPED = "listener.stopped"
    #: What the listener's start-up reconcile found and did.
    LISTENER_RECONCILED = "listener.reconciled"
    #: One pass of the worker's reconcile changed something (its counts are in the details).
    WORKER_RECONCILED = "worker.reconciled"
    #: A worker process started or stopped.
    WORKER_STARTED = "worker.started"
    WORKER_STOPPED = "worker.stopped"

    # -- users, log-ins, sessions, access --------------------------------------------------
    USER_ADDED = "user.added"
    USER_PASSWORD_SET = "user.password_set"  # noqa: S105 (an event code, not a password)
    USER_ROLE_SET = "user.role_set"
    USER_ENABLED = "user.enabled"
    USER_DISABLED = "user.disabled"
    USER_LOGIN = "user.login"
    USER_LOGIN_FAILED = "user.login_failed"
    #: A user name reached the limit of failed log-ins and is locked for a while.
    USER_LOGIN_LOCKED = "user.login_locked"
    #: One session ended (log-out, or an admin ended it); details: session id, reason.
    USER_SESSION_ENDED = "user.session_ended"
    #: Every open session of a user ended (admin, password or role change, disabled).
    USER_SESSIONS_ENDED = "user.sessions_ended"
    #: A user saw patient data (a page, a picture, an API record, a DICOMweb answer).
    ACCESS_VIEWED = "access.viewed"

    # -- the watched folder (vendor files converted) ----------------------------------------
    #: A vendor file was converted and every instance of it admitted; its slide settles now.
    WATCH_CONVERTED = "watch.converted"
    #: The same bytes were dropped again: not converted twice, the copy moved to done/.
    WATCH_DUPLICATE = "watch.duplicate"
    #: The file could not be converted or admitted; it is in failed/ with the reason beside it.
    WATCH_FAILED = "watch.failed"
    #: A file left half-done by a crash (its row still "converting") is converted again.
    WATCH_RETRIED = "watch.retried"
    #: No sidecar and no file-name match: the slide carries a generated, marked identity.
    WATCH_IDENTITY_GENERATED = "watch.identity_generated"
    #: The watcher started or stopped.
    WATCH_STARTED = "watch.started"
    WATCH_STOPPED = "watch.stopped"

    # -- pulling from a PACS (query/retrieve) ----------------------------------------------
    #: A new series was retrieved from a source; its instances were offered to admission.
    PULL_SERIES_RETRIEVED = "pull.series_retrieved"
    #: Retrieving one series failed (refused, unreachable, cut off); tried again next poll.
    PULL_SERIES_FAILED = "pull.series_failed"
    #: A series failed pull.max_attempts times: no longer retried (nor holding the watermark).
    PULL_SERIES_GIVEN_UP = "pull.series_given_up"
    #: A source could not be queried (unreachable, refused, a reply beyond our bounds).
    PULL_QUERY_FAILED = "pull.query_failed"

    @property
    def subject(self) -> str:
        """What the event is about: the part before the dot (``job``, ``delivery``...)."""
        return self.value.split(".", 1)[0]

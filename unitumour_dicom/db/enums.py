"""States of the things the database tracks, stored as their string values."""

from enum import StrEnum


class AssociationState(StrEnum):
    OPEN = "open"
    RELEASED = "released"
    ABORTED = "aborted"
    REJECTED = "rejected"


class InstanceState(StrEnum):
    STORED = "stored"
    QUARANTINED = "quarantined"
    PURGED = "purged"


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

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


class UserRole(StrEnum):
    VIEWER = "viewer"
    ADMIN = "admin"


_FINISHED_JOB_STATES = frozenset(
    {JobState.SUCCEEDED, JobState.FAILED, JobState.SUPERSEDED, JobState.CANCELLED}
)

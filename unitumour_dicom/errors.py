"""The package's exceptions, rooted in one base class so callers can catch ours and only ours."""


class UniTumourError(Exception):
    """Base class of every error this package raises on purpose."""


class ConfigError(UniTumourError):
    """The settings are missing, malformed or contradict each other."""


class InvalidUIDError(UniTumourError, ValueError):
    """A string that should be a DICOM UID is not one (and must never become a path)."""


class StoreError(UniTumourError):
    """The file store could not write, read or verify an object."""


class StoreFullError(StoreError):
    """Free disk space is below the configured watermark; new data is refused."""


class IntegrityError(StoreError):
    """A stored object's bytes no longer match the digest recorded for them."""


class AdmissionError(UniTumourError):
    """An association or an instance is refused by the admission policy."""


class InvalidInstanceError(UniTumourError):
    """A received instance is not one the pipeline can accept; carries the DICOM status to send."""

    def __init__(self, message: str, status: int = 0xC000) -> None:
        super().__init__(message)
        self.status = status


class SlideError(UniTumourError):
    """A series cannot be opened or used as a whole-slide image."""


class ModelError(UniTumourError):
    """A checkpoint or its model card is missing, invalid or does not match its digest."""


class SegmentationError(UniTumourError):
    """A DICOM Segmentation could not be built from the inputs."""


class DeliveryError(UniTumourError):
    """A result could not be sent to a destination."""


class JobError(UniTumourError):
    """A job cannot run or cannot be recorded."""


class NotFoundError(UniTumourError, LookupError):
    """No row with the id asked for (or none in the case named with it)."""


class ConflictError(UniTumourError):
    """A state change that does not fit the row's current state (a job of the case is still
    running, a delivery is being sent right now); nothing was changed."""

"""Errors of the DICOMweb layer, each with the HTTP status that PS3.18 gives it."""

from __future__ import annotations

from ..errors import UniTumourError


class DicomWebError(UniTumourError):
    """A DICOMweb request that cannot be answered; ``status_code`` is the HTTP status."""

    status_code = 400


class BadQueryError(DicomWebError):
    """A malformed path or query parameter (PS3.18 8.6.3: 400 Bad Request)."""

    status_code = 400


class ResourceNotFoundError(DicomWebError):
    """No such study, series, instance or bulk data element here (404 Not Found)."""

    status_code = 404


class FrameNotFoundError(ResourceNotFoundError):
    """A frame number outside 1..NumberOfFrames, or an instance without Pixel Data."""


class ResponseTooLargeError(DicomWebError):
    """The answer would exceed the configured size limit (413): ask for less at a time."""

    status_code = 413


class NotAcceptableError(DicomWebError):
    """None of the media types the client accepts can be produced (406 Not Acceptable)."""

    status_code = 406

"""Read-only DICOMweb over the store and the database: QIDO-RS searches, WADO-RS metadata,
frames, instances and bulk data (PS3.18), enough for dicom-microscopy-viewer and any
DICOMweb client to show a slide with the very SEG that was sent.

Code structure:

- ``catalog``: which instances exist (SQL over received and produced instances), QIDO matching
- ``metadata``: headers as DICOM JSON with bulk data URIs, and finding bulk data by path
- ``pixels``: frames read from a file by offset, without loading its Pixel Data
- ``media``: Accept-header negotiation of media types and transfer syntaxes
- ``multipart``: multipart/related bodies, streamed
- ``service``: :class:`DicomWeb`, the calls an HTTP layer maps its routes onto
"""

from .errors import (
    BadQueryError,
    DicomWebError,
    FrameNotFoundError,
    NotAcceptableError,
    ResourceNotFoundError,
    ResponseTooLargeError,
)
from .service import DicomWeb, Seen, WebResponse

__all__ = [
    "BadQueryError",
    "DicomWeb",
    "DicomWebError",
    "FrameNotFoundError",
    "NotAcceptableError",
    "ResourceNotFoundError",
    "ResponseTooLargeError",
    "Seen",
    "WebResponse",
]

"""STOW-RS in (PS3.18 10.5): a multipart/related body of DICOM instances, each part streamed
to the store's spool as it arrives and handed to the one receive path as soon as its closing
boundary has been read, so an instance is durable and recorded before the next one is read,
and a two-gigabyte slide passes with flat memory.

The HTTP layer (services/web) authenticates the sender and feeds the body; this module owns
everything after, so that a test can drive a request without a server.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from pydicom import Dataset

from ..db import IntakePath
from ..ingest.receive import IntakeInfo, Receiver, SpoolWriter
from ..ingest.status import StoreStatus
from .multipart_reader import (
    MultipartError,
    MultipartLimits,
    MultipartReader,
    PartHeaders,
    request_boundary,
)
from .stow_response import StoredPart, http_status, response_dataset, warning_headers

log = logging.getLogger(__name__)

DICOM = "application/dicom"


class UnsupportedMediaError(ValueError):
    """The request is not multipart/related of application/dicom (HTTP 415)."""


class _Discard:
    """The sink of a part we refuse by its headers: read to its end, kept nowhere."""

    def __init__(self) -> None:
        self.received = 0

    def write(self, chunk: bytes | bytearray | memoryview) -> int:
        self.received += len(chunk)
        return len(chunk)


@dataclass
class StowResult:
    """The response: HTTP status, the PS3.18 response data set, Warning header values."""

    status: int
    parts: list[StoredPart]
    dataset: Dataset
    warnings: list[str] = field(default_factory=list)
    error: str | None = None


class StowRequest:
    """One STOW-RS request, fed its body chunk by chunk (call from a worker thread: each
    closing boundary runs an admission, with its fsync and commit)."""

    def __init__(
        self,
        receiver: Receiver,
        *,
        content_type: str,
        sender: str,
        peer: str | None,
        quiet_seconds: float | None,
        study_instance_uid: str | None,
        base_url: str,
        limits: MultipartLimits | None = None,
    ) -> None:
        try:
            boundary = request_boundary(content_type, expected_type=DICOM)
        except MultipartError as exc:
            raise UnsupportedMediaError(str(exc)) from exc
        self.receiver = receiver
        self.intake = IntakeInfo(
            path=IntakePath.STOW_RS,
            sender=sender,
            peer=peer,
            quiet_seconds=quiet_seconds,
            study_instance_uid=study_instance_uid,
        )
        self.base_url = base_url.rstrip("/")
        self.study_instance_uid = study_instance_uid
        self.parts: list[StoredPart] = []
        self._open: SpoolWriter | _Discard | None = None
        self._reader = MultipartReader(
            boundary, open_part=self._open_part, close_part=self._close_part, limits=limits
        )

    def _open_part(self, headers: PartHeaders) -> SpoolWriter | _Discard:
        if headers.media_type != DICOM:
            self.parts.append(
                StoredPart(
                    None,
                    None,
                    int(StoreStatus.CANNOT_UNDERSTAND),
                    f"a part of type {headers.media_type[:64]!r}, not {DICOM}",
                )
            )
            self._open = _Discard()
        else:
            self._open = SpoolWriter(
                self.receiver.store, max_bytes=self.receiver.limits.max_instance_bytes
            )
        return self._open

    def _close_part(self, sink: object) -> None:
        self._open = None
        if not isinstance(sink, SpoolWriter):
            return
        outcome = self.receiver.receive(sink.finish(), self.intake)
        url = None
        if outcome.ok and outcome.study_instance_uid and outcome.series_instance_uid:
            url = self._instance_url(
                outcome.study_instance_uid, outcome.series_instance_uid, outcome.sop_instance_uid
            )
        self.parts.append(
            StoredPart(
                outcome.sop_class_uid or None,
                outcome.sop_instance_uid or None,
                outcome.status,
                None if outcome.ok else outcome.reason,
                url,
            )
        )

    def _instance_url(self, study: str, series: str, instance: str) -> str:
        return f"{self.base_url}/studies/{study}/series/{series}/instances/{instance}"

    def feed(self, chunk: bytes) -> None:
        self._reader.feed(chunk)

    def abort(self, why: str) -> None:
        """The body ended early (the client went away, a read deadline passed): the part in
        transfer is thrown away and audited as incomplete; parts already closed stay stored."""
        sink, self._open = self._open, None
        if isinstance(sink, SpoolWriter):
            sink.abort()
            self.receiver.record_incomplete(self.intake, sink.received)
        log.warning("STOW-RS from %s ended early: %s", self.intake.sender, why)

    def finish(self, *, malformed: str | None = None) -> StowResult:
        """The response, once the body has ended (``malformed``: why it could not be read)."""
        error = malformed
        if error is None:
            try:
                self._reader.finish()
            except MultipartError as exc:
                error = str(exc)
        if error is not None:
            self.abort(error)
            if not self.parts:
                return StowResult(400, [], response_dataset([], study_url=None), error=error)
            self.parts.append(StoredPart(None, None, int(StoreStatus.CANNOT_UNDERSTAND), error))
        study_url = (
            f"{self.base_url}/studies/{self.study_instance_uid}"
            if self.study_instance_uid
            else None
        )
        return StowResult(
            http_status(self.parts),
            list(self.parts),
            response_dataset(self.parts, study_url=study_url),
            warning_headers(self.parts),
            error,
        )

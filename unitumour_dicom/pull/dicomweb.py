"""A DICOMweb source: QIDO-RS to find slide series, WADO-RS to retrieve them, streamed.

The search answer is read up to ``pull.max_response_bytes`` and ``pull.max_results`` series
(asked for with ``limit``; a longer answer is refused, not truncated silently). A series is
retrieved as one multipart/related response of application/dicom parts, in the transfer
syntax the archive holds (``transfer-syntax=*``, no transcoding); each part streams into its
own spool file as it arrives (:class:`~unitumour_dicom.dicomweb.multipart_reader.MultipartReader`)
and is admitted once complete, so memory stays flat whatever the slide's size. Every read
has the ``pull.timeout_s`` deadline; redirects are not followed.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, urlencode

import httpx

from ..config.sections import PullSettings, PullSourceSettings
from ..dicomweb.multipart_reader import (
    MultipartError,
    MultipartLimits,
    MultipartReader,
    PartHeaders,
    request_boundary,
)
from ..errors import InvalidUIDError
from ..ingest.spool import SpoolFile
from .query import PullError, SeriesHit, SeriesQuery

log = logging.getLogger(__name__)

_STUDY_UID, _SERIES_UID, _STUDY_DATE, _N_INSTANCES = "0020000D", "0020000E", "00080020", "00201209"
_ACCEPT_DICOM = 'multipart/related; type="application/dicom"; transfer-syntax=*'


def _client(source: PullSourceSettings, settings: PullSettings) -> httpx.Client:
    auth: httpx.Auth | None = None
    headers = {"User-Agent": "unitumour-pull"}
    if source.auth == "basic":
        assert source.username is not None and source.password is not None
        auth = httpx.BasicAuth(source.username, source.password.get_secret_value())
    elif source.auth == "bearer":
        assert source.token is not None
        headers["Authorization"] = f"Bearer {source.token.get_secret_value()}"
    verify: Any = str(source.ca_file) if source.ca_file is not None else source.verify_tls
    return httpx.Client(
        base_url=str(source.url).rstrip("/"),
        auth=auth,
        headers=headers,
        verify=verify,
        timeout=httpx.Timeout(settings.timeout_s),
        follow_redirects=False,
        trust_env=False,
    )


def _query_string(params: list[tuple[str, str]]) -> str:
    """The QIDO-RS query, with the wildcards * and ? left literal (RFC 3986 allows both in a
    query): Orthanc, for one, matches a percent-encoded %2A as a plain character."""
    return urlencode(params, quote_via=quote, safe="*?")


def _first(item: dict[str, Any], tag: str) -> object:
    element = item.get(tag)
    if not isinstance(element, dict):
        return None
    values = element.get("Value")
    if isinstance(values, list) and values:
        return values[0]
    return None


def _read_bounded(response: httpx.Response, limit: int, what: str) -> bytes:
    body = bytearray()
    for chunk in response.iter_bytes():
        body += chunk
        if len(body) > limit:
            raise PullError(f"{what} is longer than {limit} bytes (pull.max_response_bytes)")
    return bytes(body)


class DicomwebSource:
    """Query and retrieve over DICOMweb for one configured source."""

    def __init__(
        self,
        source: PullSourceSettings,
        settings: PullSettings,
        *,
        check: Callable[[], None] = lambda: None,
    ) -> None:
        self.source = source
        self.settings = settings
        self.check = check  # raises PullError to stop a retrieval (stopping, too long)

    def find_series(self, query: SeriesQuery) -> list[SeriesHit]:
        """QIDO-RS ``/series`` with the query's keys; at most ``pull.max_results`` series."""
        limit = self.settings.max_results
        params: list[tuple[str, str]] = list(query.keys().items())
        params += [
            ("includefield", "StudyDate"),
            ("includefield", "NumberOfSeriesRelatedInstances"),
            ("limit", str(limit + 1)),
        ]
        try:
            with (
                _client(self.source, self.settings) as client,
                client.stream(
                    "GET",
                    f"/series?{_query_string(params)}",
                    headers={"Accept": "application/dicom+json"},
                ) as response,
            ):
                if response.status_code == 204:
                    return []
                if response.status_code != 200:
                    raise PullError(f"QIDO-RS search answered HTTP {response.status_code}")
                body = _read_bounded(response, self.settings.max_response_bytes, "the search")
        except httpx.HTTPError as exc:
            raise PullError(f"QIDO-RS search failed: {type(exc).__name__}: {exc}") from exc
        try:
            items = json.loads(body) if body.strip() else []
        except ValueError as exc:
            raise PullError("the QIDO-RS answer is not JSON") from exc
        if not isinstance(items, list):
            raise PullError("the QIDO-RS answer is not a JSON array")
        if len(items) > limit:
            raise PullError(
                f"the search matched more than {limit} series (pull.max_results): narrow the "
                "source's filters or poll more often"
            )
        hits: list[SeriesHit] = []
        for item in items:
            if not isinstance(item, dict):
                raise PullError("a QIDO-RS result is not a JSON object")
            try:
                hits.append(
                    SeriesHit.checked(
                        _first(item, _STUDY_UID),
                        _first(item, _SERIES_UID),
                        _first(item, _N_INSTANCES),
                        _first(item, _STUDY_DATE),
                    )
                )
            except InvalidUIDError as exc:
                log.warning(
                    "source %s: a series without valid UIDs skipped: %s", self.source.name, exc
                )
        return hits

    def retrieve_series(
        self,
        hit: SeriesHit,
        *,
        new_spool: Callable[[], SpoolFile],
        on_instance: Callable[[SpoolFile], object],
    ) -> int:
        """WADO-RS retrieve of one series; each complete part goes to ``on_instance``.

        Returns the number of parts received. A response cut off, malformed or not
        multipart raises :class:`PullError`; the part it was writing is discarded."""
        path = f"/studies/{hit.study_instance_uid}/series/{hit.series_instance_uid}"
        current: list[SpoolFile] = []

        def open_part(headers: PartHeaders) -> SpoolFile:
            if headers.media_type != "application/dicom":
                raise MultipartError(
                    f"a part of type {headers.media_type!r}, not application/dicom"
                )
            spool = new_spool()
            current.append(spool)
            return spool

        def close_part(sink: object) -> None:
            spool = current.pop()
            assert spool is sink
            on_instance(spool)

        try:
            with (
                _client(self.source, self.settings) as client,
                client.stream("GET", path, headers={"Accept": _ACCEPT_DICOM}) as response,
            ):
                if response.status_code != 200:
                    raise PullError(f"WADO-RS retrieve answered HTTP {response.status_code}")
                boundary = request_boundary(
                    response.headers.get("content-type", ""), expected_type="application/dicom"
                )
                reader = MultipartReader(
                    boundary,
                    open_part=open_part,
                    close_part=close_part,
                    limits=MultipartLimits(),  # at most 10,000 instances a series
                )
                for chunk in response.iter_bytes():  # as it arrives (each read at most 64 KiB)
                    self.check()
                    reader.feed(chunk)
                reader.finish()
                return reader.parts
        except httpx.HTTPError as exc:
            raise PullError(f"WADO-RS retrieve failed: {type(exc).__name__}: {exc}") from exc
        except MultipartError as exc:
            raise PullError(f"WADO-RS retrieve: {exc}") from exc
        finally:
            for spool in current:  # a part cut off: nothing of it is kept
                spool.discard()

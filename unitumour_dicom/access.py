"""The access audit: every time a person sees patient data, one audit row says who, what,
when and from where (design rule 7: every access to patient data is on record).

One function, :func:`record_access`, and one event code, :attr:`AuditEventName.ACCESS_VIEWED`, for
every kind of view: a case page, its picture or viewer, its API record, the case list, and
every DICOMweb answer (QIDO-RS search results, WADO-RS metadata, instances, frames, bulk
data). One request is one row. A viewer asks for hundreds of tiles a minute, so frame and
bulk data requests of one instance by one user are coalesced: the first writes the row and
the others within ``window_s`` (``web.access_audit_window_s``) write nothing, per process.

What was seen goes into the row's ``details`` (slide ids, patient IDs, study, series and
instance UIDs; the row's ``slide_id`` when it was one slide); the message, which is also
logged, holds no patient identifier. :func:`redact_query` and :class:`RedactQueryFilter`
keep patient identifiers out of the HTTP access log's query strings.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote_plus

from sqlalchemy.orm import Session

from .db import AuditEvent, AuditEventName, record_event

log = logging.getLogger(__name__)

#: At most this many values of each kind (UIDs, ids) are kept in one row's details.
MAX_LISTED = 1000
#: The replacement of a patient identifier in a logged query string.
REDACTED = "REDACTED"


@dataclass(frozen=True)
class AccessTarget:
    """What a request showed: ``view`` names the kind (e.g. ``case.page``,
    ``dicomweb.frames``); ``what`` says it for people, without patient identifiers."""

    view: str
    what: str
    slide_ids: Sequence[int] = ()
    patient_ids: Sequence[str] = ()
    study_uids: Sequence[str] = ()
    series_uids: Sequence[str] = ()
    sop_uids: Sequence[str] = ()
    extra: dict[str, Any] | None = None
    #: Requests with the same key by the same user within the window are one row.
    coalesce_key: str | None = None


def _unique(values: Iterable[Any]) -> list[Any]:
    return list(dict.fromkeys(v for v in values if v is not None and v != ""))


class AccessCoalescer:
    """When each (user, key) last wrote a row, for the last ``max_entries`` pairs."""

    def __init__(self, window_s: float, max_entries: int = 10_000) -> None:
        self.window_s = window_s
        self.max_entries = max_entries
        self._last: OrderedDict[tuple[str, str], float] = OrderedDict()
        self._lock = threading.Lock()

    def due(self, actor: str, key: str, now: float | None = None) -> bool:
        """True (and the time noted) when no row for this pair was written in the window."""
        now = time.monotonic() if now is None else now
        with self._lock:
            last = self._last.get((actor, key))
            if last is not None and now - last < self.window_s:
                return False
            self._last[(actor, key)] = now
            self._last.move_to_end((actor, key))
            while len(self._last) > self.max_entries:
                self._last.popitem(last=False)
            return True

    def forget(self, actor: str, key: str) -> None:
        """The row was not written after all (its transaction failed): let the next one."""
        with self._lock:
            self._last.pop((actor, key), None)


def record_access(
    *,
    session: Session,
    actor: str,
    user_id: int | None,
    source: str | None,
    target: AccessTarget,
    coalescer: AccessCoalescer | None = None,
) -> AuditEvent | None:
    """Add the audit row of one access; None when coalesced into an earlier row.

    The caller commits it before it sends the data, so that nothing is shown off record.
    """
    key = target.coalesce_key
    if key is not None and coalescer is not None and not coalescer.due(actor, key):
        return None
    slide_ids = _unique(target.slide_ids)
    details: dict[str, Any] = {"view": target.view, "what": target.what, "source": source}
    if user_id is not None:
        details["user_id"] = user_id
    for name, values in (
        ("slide_ids", slide_ids),
        ("patient_ids", _unique(target.patient_ids)),
        ("study_uids", _unique(target.study_uids)),
        ("series_uids", _unique(target.series_uids)),
        ("sop_uids", _unique(target.sop_uids)),
    ):
        if values:
            details[name] = values[:MAX_LISTED]
            if len(values) > MAX_LISTED:
                details[f"{name}_truncated"] = len(values)
    if target.extra:
        details.update(target.extra)
    return record_event(
        session=session,
        event=AuditEventName.ACCESS_VIEWED,
        message=f"{actor} viewed {target.what} from {source or 'an unknown address'}",
        actor=actor,
        slide_id=slide_ids[0] if len(slide_ids) == 1 else None,
        details=details,
    )


# -- keeping patient identifiers out of logged query strings --------------------------------
#: Query keys whose values are patient identifiers or search for them: the case list's,
#: and QIDO-RS's by keyword or tag (any Patient... keyword, group 0010, accession number).
_SENSITIVE_KEYS = frozenset(
    {"q", "patient_id", "patient_name", "accession_number", "accessionnumber", "00080050"}
)
_SENSITIVE_PREFIXES = ("patient", "otherpatient", "issuerofpatient")
#: Keys whose value is itself a URL whose query is redacted in turn (log-in's next=).
_NESTED_KEYS = frozenset({"next"})


def _sensitive(key: str) -> bool:
    k = key.strip().lower()
    if k in _SENSITIVE_KEYS or k.startswith(_SENSITIVE_PREFIXES):
        return True
    return len(k) == 8 and k.startswith("0010") and all(c in "0123456789abcdef" for c in k)


def redact_query(query: str, depth: int = 0) -> str:
    """``query`` with the values of patient-identifying keys replaced by REDACTED; the rest
    as it was (a key's value that is a URL, as in ``next=``, is redacted in turn)."""
    pieces = []
    for piece in query.split("&"):
        key, eq, value = piece.partition("=")
        name = unquote_plus(key)
        if eq and value and _sensitive(name):
            value = REDACTED
        elif eq and value and name in _NESTED_KEYS and depth < 3:
            value = quote(redact_url(unquote_plus(value), depth + 1), safe="/")
        pieces.append(f"{key}{eq}{value}")
    return "&".join(pieces)


def redact_url(url: str, depth: int = 0) -> str:
    """A path with its query string redacted by :func:`redact_query`."""
    path, mark, query = url.partition("?")
    return f"{path}{mark}{redact_query(query, depth)}" if mark else url


class RedactQueryFilter(logging.Filter):
    """Redacts the request line of HTTP access log records (uvicorn's ``uvicorn.access``
    logs ``client, method, path?query, http version, status`` as its arguments)."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str):
            record.args = (*args[:2], redact_url(args[2]), *args[3:])
        return True


def install_access_log_redaction(logger_name: str = "uvicorn.access") -> None:
    """Add :class:`RedactQueryFilter` to the HTTP server's access logger (once)."""
    logger = logging.getLogger(logger_name)
    if not any(isinstance(f, RedactQueryFilter) for f in logger.filters):
        logger.addFilter(RedactQueryFilter())


__all__ = [
    "AccessCoalescer",
    "AccessTarget",
    "RedactQueryFilter",
    "install_access_log_redaction",
    "record_access",
    "redact_query",
    "redact_url",
]

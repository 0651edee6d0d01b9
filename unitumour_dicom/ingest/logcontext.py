"""The association id on every log line of the listener, pynetdicom's own lines included.

pynetdicom serves each association in two threads of its own (the association and its DUL
reader); the listener sets :data:`association_id` in both as soon as the id is known, and the
:class:`AssociationLogFilter` that the listener process installs on its log handler copies it
into each record as ``%(association)s``.
"""

from __future__ import annotations

import logging
from contextvars import ContextVar

#: The database id of the association this thread serves, if any.
association_id: ContextVar[int | None] = ContextVar("association_id", default=None)


class AssociationLogFilter(logging.Filter):
    """Adds ``record.association`` ("assoc=12" or "-") to every record it sees."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "association"):
            value = association_id.get()
            record.association = f"assoc={value}" if value is not None else "-"
        return True

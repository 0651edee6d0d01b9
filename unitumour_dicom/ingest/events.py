"""The audit event codes that ingest writes: members of the one catalogue.

``IngestEvent`` is :class:`unitumour_dicom.db.AuditEventName` under the name ingest used
before the catalogues became one (a code is spelled only there); new code names
``AuditEventName``.
"""

from __future__ import annotations

from ..db.enums import AuditEventName

IngestEvent = AuditEventName

__all__ = ["IngestEvent"]

"""The audit event codes that jobs and their workers write: members of the one catalogue.

``JobEvent`` is :class:`unitumour_dicom.db.AuditEventName` under the name the jobs layer
used before the catalogues became one; new code names ``AuditEventName``.
"""

from __future__ import annotations

from ..db.enums import AuditEventName

JobEvent = AuditEventName

__all__ = ["JobEvent"]

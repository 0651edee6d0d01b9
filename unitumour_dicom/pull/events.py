"""The audit event codes that pulling from a PACS writes: members of the one catalogue.

``PullEvent`` is :class:`unitumour_dicom.db.AuditEventName` under the name the poller uses
(a code is spelled only there).
"""

from __future__ import annotations

from ..db.enums import AuditEventName

PullEvent = AuditEventName

__all__ = ["PullEvent"]

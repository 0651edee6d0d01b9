"""The audit event codes the watched folder writes: members of the one catalogue.

``WatchEvent`` is :class:`unitumour_dicom.db.AuditEventName` under the name the watcher's
code uses (a code is spelled only there).
"""

from __future__ import annotations

from ..db.enums import AuditEventName

WatchEvent = AuditEventName

__all__ = ["WatchEvent"]

"""The watched folder: vendor files dropped by scanners, converted and admitted once each.

``folder`` (which files are candidates, where originals go), ``stability`` (a file is taken
once unchanged for the quiet time), ``admission`` (the one call into the intake path that
C-STORE and ``unitumour process`` use), ``service`` (take, convert, admit, record, settle)
and ``events`` (the audit codes).
"""

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

if TYPE_CHECKING:
    from .events import WatchEvent
    from .service import FileOutcome, WatchService

__all__ = ["FileOutcome", "WatchEvent", "WatchService"]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {"FileOutcome": ".service", "WatchService": ".service", "WatchEvent": ".events"},
)

"""Handing an admin's action to the worker. The actions themselves (re-run a job, re-send a
delivery) are library functions, the same the CLI calls: :func:`unitumour_dicom.jobs.rerun_job`
and :func:`unitumour_dicom.deliver.resend_delivery`, each audited in the transaction of its
change. The web app hands the id to the worker through a hook (it never imports the broker);
a lost hand-off is picked up by the worker's reconcile."""

from __future__ import annotations

import logging
from collections.abc import Callable

from unitumour_dicom.errors import ConflictError

log = logging.getLogger(__name__)

Dispatch = Callable[[int], None]

__all__ = ["ConflictError", "Dispatch", "dispatch"]


def dispatch(hook: Dispatch | None, ident: int, what: str) -> bool:
    """Call a hand-off hook after the commit; a failure is logged, never lost (reconcile)."""
    if hook is None:
        return False
    try:
        hook(ident)
    except Exception:
        log.exception("could not hand %s %s to the worker; reconcile will pick it up", what, ident)
        return False
    return True

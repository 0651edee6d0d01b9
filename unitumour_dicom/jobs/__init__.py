"""Jobs: leases with heartbeats, the reconcile, and dispatch of ids to the queues.

Library logic that any engine can drive and that tests call without Celery; the Celery app
that drives it lives in ``unitumour_services.worker``. The embedded broker (a kombu
transport on SQLite that survives a worker's crash) is in :mod:`.sqla_transport`, imported
only where Celery is.
"""

from .events import JobEvent
from .identity import lease_owner, worker_name
from .keeper import JobInterrupted, LeaseKeeper, LeaseLostError
from .leases import (
    Lease,
    claim_job,
    complete_job,
    fail_attempt,
    release_job,
    renew_lease,
    why_not_claimable,
)
from .reconcile import ReconcileReport, claim_dispatches, reconcile_jobs
from .rerun import rerun_job

__all__ = [
    "JobEvent",
    "JobInterrupted",
    "Lease",
    "LeaseKeeper",
    "LeaseLostError",
    "ReconcileReport",
    "claim_dispatches",
    "claim_job",
    "complete_job",
    "fail_attempt",
    "lease_owner",
    "reconcile_jobs",
    "release_job",
    "renew_lease",
    "rerun_job",
    "why_not_claimable",
    "worker_name",
]

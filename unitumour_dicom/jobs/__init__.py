"""Jobs: leases with heartbeats, the reconcile, and dispatch of ids to the queues.

Library logic that any engine can drive and that tests call without Celery: the whole
reconcile pass and the loop that runs it (:mod:`.reconcile`), a person's re-run
(:mod:`.rerun`), a worker's start and stop on record (:mod:`.lifecycle`). The Celery app
that drives it lives in ``unitumour_services.worker`` and only wires it to the broker.
The embedded broker (a kombu transport on SQLite that survives a worker's crash) is in
:mod:`.sqla_transport`, imported only where Celery is.
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
from .reconcile import (
    ReconcileLoop,
    ReconcileReport,
    claim_dispatches,
    reconcile_jobs,
    reconcile_pass,
)
from .rerun import rerun_job

__all__ = [
    "JobEvent",
    "JobInterrupted",
    "Lease",
    "LeaseKeeper",
    "LeaseLostError",
    "ReconcileLoop",
    "ReconcileReport",
    "claim_dispatches",
    "claim_job",
    "complete_job",
    "fail_attempt",
    "lease_owner",
    "reconcile_jobs",
    "reconcile_pass",
    "release_job",
    "renew_lease",
    "rerun_job",
    "why_not_claimable",
    "worker_name",
]

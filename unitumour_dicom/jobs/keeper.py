"""Heartbeats: a thread that keeps a running job's lease alive and notices when it is lost.

The pipeline checks :meth:`LeaseKeeper.check` between stages (and from inference's progress
callback), so a worker that stalled past its lease, whose job another worker has since taken
over, stops instead of racing it; and a worker asked to stop gives its job back.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime
from types import TracebackType

from sqlalchemy import Engine

from ..db import session_scope
from ..db.types import utcnow
from ..errors import JobError
from .leases import Lease, renew_lease

log = logging.getLogger(__name__)


class LeaseLostError(JobError):
    """The job's lease is no longer ours: another worker runs it, or it finished elsewhere."""


class JobInterrupted(JobError):  # noqa: N818 (an interruption, not an error of the job)
    """The worker was asked to stop; the job goes back to the queue."""


class LeaseKeeper:
    """Renew ``lease`` every ``heartbeat_seconds`` in a background thread while in a ``with``.

    ``stop_requested`` is an event the process sets on shutdown; :meth:`check` then raises
    :class:`JobInterrupted` so the job is released rather than half-done.
    """

    def __init__(
        self,
        *,
        engine: Engine,
        lease: Lease,
        lease_seconds: float,
        heartbeat_seconds: float,
        stop_requested: threading.Event | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        if heartbeat_seconds >= lease_seconds:
            raise JobError(
                f"heartbeat every {heartbeat_seconds}s cannot keep a {lease_seconds}s lease"
            )
        self.engine = engine
        self.lease = lease
        self.lease_seconds = lease_seconds
        self.heartbeat_seconds = heartbeat_seconds
        self.stop_requested = stop_requested or threading.Event()
        self.clock = clock
        self.lost = threading.Event()
        self.beats = 0
        self._done = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"heartbeat-job-{lease.job_id}", daemon=True
        )

    def __enter__(self) -> LeaseKeeper:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop heartbeating (idempotent). Called before the job's outcome is recorded, so
        that a beat cannot race the outcome's own update of the lease."""
        self._done.set()
        if self._thread.is_alive():
            self._thread.join(timeout=self.heartbeat_seconds + 5)

    def _run(self) -> None:
        while not self._done.wait(self.heartbeat_seconds):
            try:
                with session_scope(self.engine) as session:
                    renewed = renew_lease(
                        session=session,
                        lease=self.lease,
                        now=self.clock(),
                        lease_seconds=self.lease_seconds,
                    )
            except Exception:  # a database hiccup: try again at the next beat
                log.warning("job %s: heartbeat failed", self.lease.job_id, exc_info=True)
                continue
            if renewed is None:
                if self._done.is_set():
                    return  # the outcome was recorded meanwhile: the lease is gone, not lost
                log.error(
                    "job %s: lease %s lost (taken over or finished elsewhere)",
                    self.lease.job_id,
                    self.lease.owner,
                )
                self.lost.set()
                return
            self.lease = renewed
            self.beats += 1

    def check_lease(self) -> None:
        """Raise LeaseLostError if a heartbeat found the lease taken over."""
        if self.lost.is_set():
            raise LeaseLostError(f"job {self.lease.job_id}: lease {self.lease.owner} was lost")

    def check(self) -> None:
        """Raise if the job must stop now: lease lost, or the worker is shutting down."""
        self.check_lease()
        if self.stop_requested.is_set():
            raise JobInterrupted(f"job {self.lease.job_id}: the worker is stopping")

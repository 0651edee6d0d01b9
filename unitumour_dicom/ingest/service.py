"""The listener as a whole: reconcile, the storage SCP, the periodic settle of slides, and
the pull loop that polls the configured PACS sources (``pull.sources``, every
``pull.interval_s``) when there are any.

A process (``unitumour listener``, ``unitumour serve``) or a test builds one
:class:`ListenerService`, starts it, and stops it; ``on_jobs_created`` receives the ids of the
jobs each settle created, after their commit (the worker wires its dispatch there; a job whose
dispatch is lost stays queued in the database for the worker's reconcile).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime

from ..db import record_event
from ..db.types import utcnow
from ..runtime import Runtime
from .events import IngestEvent
from .reconcile import ReconcileReport, reconcile
from .scp import StorageSCP
from .series import settle_due_slides

log = logging.getLogger(__name__)

JobsCreatedHook = Callable[[list[int]], None]


class ListenerService:
    """Reconcile once, then receive and settle until stopped."""

    def __init__(
        self,
        runtime: Runtime,
        *,
        on_jobs_created: JobsCreatedHook | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.runtime = runtime
        self.settings = runtime.settings.listener
        self.on_jobs_created = on_jobs_created
        self.clock = clock
        self.scp = StorageSCP(runtime, clock=clock)
        self._stop = threading.Event()
        self._settler: threading.Thread | None = None
        self._puller: threading.Thread | None = None
        self.reconcile_report: ReconcileReport | None = None

    @property
    def address(self) -> tuple[str, int]:
        return self.scp.address

    def start(self) -> tuple[str, int]:
        """Reconcile, start listening and settling; returns the bound (host, port)."""
        self.scp.spool.lock()
        try:
            report = reconcile(
                runtime=self.runtime,
                spool=self.scp.spool,
                admitter=self.scp.admitter,
                allowed_sop_classes=self.scp.allowed_sop_classes,
                limits=self.scp.limits,
                now=self.clock(),
            )
            self.reconcile_report = report
            self._audit(IngestEvent.LISTENER_RECONCILED, f"start-up reconcile: {report.summary()}")
            self._dispatch(report.jobs_created)
            host, port = self.scp.start()
        except BaseException:
            self.scp.spool.unlock()
            raise
        self._audit(
            IngestEvent.LISTENER_STARTED,
            f"listening as {self.settings.ae_title} on {host}:{port}"
            + (" with TLS" if self.settings.tls.enabled else ""),
        )
        self._stop.clear()
        self._settler = threading.Thread(target=self._settle_loop, name="listener-settle")
        self._settler.start()
        if any(source.enabled for source in self.runtime.settings.pull.sources):
            self._puller = threading.Thread(target=self._pull_loop, name="listener-pull")
            self._puller.start()
        return host, port

    def stop(self, grace_s: float | None = None) -> None:
        """Finish associations in flight (up to the grace time), then stop settling."""
        if self._settler is None:
            return
        self.scp.stop(grace_s)
        self._stop.set()
        if self._settler is not None:
            self._settler.join()
            self._settler = None
        if self._puller is not None:
            self._puller.join()  # a retrieval in flight stops at its next chunk or response
            self._puller = None
        self._audit(IngestEvent.LISTENER_STOPPED, "listener stopped")

    def settle_once(self) -> list[int]:
        """Settle the slides whose quiet time has passed; dispatch and return the new job ids."""
        with self.runtime.session() as session:
            jobs = settle_due_slides(
                session=session,
                store=self.runtime.store,
                now=self.clock(),
                max_attempts=self.runtime.settings.worker.max_attempts,
            )
            ids = [job.id for job in jobs]
        self._dispatch(ids)
        return ids

    def _settle_loop(self) -> None:
        while not self._stop.wait(self.settings.settle_interval_s):
            try:
                self.scp.sweep()
                self.settle_once()
            except Exception:
                log.exception(
                    "settling failed; trying again in %.1f s", self.settings.settle_interval_s
                )

    def _pull_loop(self) -> None:
        """Poll every enabled source now, then every ``pull.interval_s``; a failing source is
        audited by the poller and never stops the loop."""
        from ..pull import Poller, PullReceiver

        interval = self.runtime.settings.pull.interval_s
        try:
            poller = Poller(
                self.runtime,
                receiver=PullReceiver(self.runtime, admitter=self.scp.admitter),
                clock=self.clock,
                cancelled=self._stop.is_set,
            )
        except Exception:
            log.exception("the pull loop cannot start")
            return
        while not self._stop.is_set():
            try:
                poller.poll()
            except Exception:
                log.exception("pulling failed; trying again in %.0f s", interval)
            if self._stop.wait(interval):
                break

    def _dispatch(self, job_ids: list[int]) -> None:
        if not job_ids or self.on_jobs_created is None:
            return
        try:
            self.on_jobs_created(job_ids)
        except Exception:
            log.exception("dispatch of jobs %s failed; they stay queued for the reconcile", job_ids)

    def _audit(self, event: IngestEvent, message: str) -> None:
        try:
            with self.runtime.session() as session:
                record_event(session=session, event=event, message=message, actor="listener")
        except Exception:
            log.exception("cannot audit %s", event)

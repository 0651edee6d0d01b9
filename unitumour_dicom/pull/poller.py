"""One poll of one source: query from the watermark, retrieve what is new, admit it, record.

Idempotence is by series: a series whose instances the store already holds (as many as the
source reports, or any when it reports no count) is not fetched again, whichever way it came
in; so the generous overlap of each query costs a search, never a transfer. The watermark
moves to the poll's start only when the search and every retrieval succeeded (and no series
was left for the next poll); otherwise the next poll reaches back as far again. Instances
that admission refuses are audited there and do not hold the watermark back.

A failing source (unreachable, refusing, answering beyond our bounds) is audited and
recorded in its row; it never raises out of :func:`poll_source`, so a loop over sources
goes on.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from ..config import Settings
from ..config.sections import PullSourceSettings
from ..db import PullSeries, record_event
from ..db.types import utcnow
from ..errors import UniTumourError
from ..ingest.spool import SpoolFile
from ..runtime import Runtime
from .dicomweb import DicomwebSource
from .dimse import DimseSource
from .events import PullEvent
from .query import PullError, SeriesHit, series_query
from .receive import PullIntake, PullReceiver, remove_leftovers
from .watermark import (
    PollRecord,
    SeriesState,
    read_watermark,
    record_attempt,
    record_poll,
    series_row,
    stored_instances,
)

log = logging.getLogger(__name__)

ACTOR = "pull"


@dataclass
class SourceReport:
    """What one poll of one source found and did."""

    source: str
    started_at: datetime
    found: int = 0
    skipped: int = 0
    retrieved: list[str] = field(default_factory=list)  # series UIDs
    instances: int = 0
    refused: int = 0
    failed: dict[str, str] = field(default_factory=dict)  # series UID ("" for the query) -> why
    deferred: int = 0  # new series left for the next poll (pull.max_series_per_poll)
    given_up: int = 0  # series found that earlier polls gave up on (pull.max_attempts)
    complete: bool = False

    @property
    def ok(self) -> bool:
        return not self.failed


def _sender(source: PullSourceSettings) -> str:
    return source.ae_title if source.kind == "dimse" and source.ae_title else source.name


def _audit(runtime: Runtime, event: PullEvent, message: str, details: dict[str, object]) -> None:
    try:
        with runtime.session() as session:
            record_event(
                session=session, event=event, message=message, actor=ACTOR, details=details
            )
    except Exception:
        log.exception("cannot audit %s: %s", event, message)


class Poller:
    """Polls the configured sources of one runtime; shares admission with a listener when
    given its receiver."""

    def __init__(
        self,
        runtime: Runtime,
        *,
        receiver: PullReceiver | None = None,
        clock: Callable[[], datetime] = utcnow,
        cancelled: Callable[[], bool] = lambda: False,
    ) -> None:
        self.runtime = runtime
        self.cancelled = cancelled
        self._series_deadline = float("inf")
        self.settings: Settings = runtime.settings
        self.receiver = receiver or PullReceiver(runtime)
        self.clock = clock
        remove_leftovers(self.receiver.spool_dir)

    def sources(self, names: list[str] | None = None) -> list[PullSourceSettings]:
        configured = {s.name: s for s in self.settings.pull.sources}
        if names:
            unknown = [n for n in names if n not in configured]
            if unknown:
                raise UniTumourError(f"no pull source named {', '.join(map(repr, unknown))}")
            return [configured[n] for n in names]
        return [s for s in configured.values() if s.enabled]

    def poll(self, names: list[str] | None = None) -> list[SourceReport]:
        reports = []
        for source in self.sources(names):
            if self.cancelled():
                break
            reports.append(self.poll_source(source))
        return reports

    def poll_source(self, source: PullSourceSettings) -> SourceReport:
        started = self.clock()
        report = SourceReport(source.name, started)
        base = {"intake": "pull", "source": source.name, "peer": source.remote}
        try:
            with self.runtime.session() as session:
                watermark = read_watermark(session, source.name)
            query = series_query(source, self.settings.pull, watermark=watermark, now=started)
            client = self._client(source)
            hits = client.find_series(query)
        except Exception as exc:  # unreachable, refused, hostile answer, database down
            why = str(exc) if isinstance(exc, PullError) else f"{type(exc).__name__}: {exc}"
            report.failed[""] = why
            log.warning("pull source %s: query failed: %s", source.name, why)
            _audit(
                self.runtime,
                PullEvent.PULL_QUERY_FAILED,
                f"source {source.name} ({source.remote}): {why}",
                {**base, "error": why[:1000]},
            )
            self._record(source, report)
            return report
        report.found = len(hits)
        new: list[SeriesHit] = []
        with self.runtime.session() as session:
            for hit in hits:
                row = series_row(session, source.name, hit.series_instance_uid)
                have = stored_instances(session, hit.series_instance_uid)
                if row is not None and row.state == SeriesState.FAILED:
                    report.given_up += 1
                elif row is not None and row.state == SeriesState.RETRIEVED:
                    report.skipped += 1
                elif have and (hit.instances is None or have >= hit.instances):
                    report.skipped += 1  # received by another path (or another source)
                else:
                    new.append(hit)
        limit = self.settings.pull.max_series_per_poll
        report.deferred = max(0, len(new) - limit)
        for hit in new[:limit]:
            if self.cancelled():
                report.failed[hit.series_instance_uid] = "not retrieved: stopping"
                break
            self._retrieve(source, client, hit, report, base)
        report.complete = not report.failed and not report.deferred
        self._record(source, report)
        return report

    def _client(self, source: PullSourceSettings) -> DicomwebSource | DimseSource:
        if source.kind == "dicomweb":
            return DicomwebSource(source, self.settings.pull, check=self._check)
        listener = self.settings.listener
        return DimseSource(
            source,
            self.settings.pull,
            calling_ae_title=listener.ae_title,
            move_destination=listener.ae_title,
            extra_sop_classes=list(listener.extra_sop_classes),
            max_pdu_bytes=listener.max_pdu_bytes,
            check=self._check,
        )

    def _check(self) -> None:
        """Called by a retrieval at each chunk or DIMSE response: a stopping process, or a
        series past pull.retrieve_timeout_s (a peer that dribbles), ends it."""
        if self.cancelled():
            raise PullError("stopped (the process is shutting down)")
        if time.monotonic() > self._series_deadline:
            raise PullError(
                f"the retrieval took longer than {self.settings.pull.retrieve_timeout_s:.0f} s "
                "(pull.retrieve_timeout_s)"
            )

    def _retrieve(
        self,
        source: PullSourceSettings,
        client: DicomwebSource | DimseSource,
        hit: SeriesHit,
        report: SourceReport,
        base: Mapping[str, object],
    ) -> None:
        intake = PullIntake(source.name, _sender(source), source.remote, source.quiet_seconds)
        counts = {"stored": 0, "refused": 0}
        slide_ids: set[int] = set()

        def on_instance(spool: SpoolFile) -> int:
            outcome = self.receiver.receive(spool, intake)
            if outcome.ok:
                counts["stored"] += 1
                if outcome.admission is not None and outcome.admission.slide_id is not None:
                    slide_ids.add(outcome.admission.slide_id)
            else:
                counts["refused"] += 1
            return outcome.status

        uid = hit.series_instance_uid
        how = "WADO-RS" if source.kind == "dicomweb" else source.retrieve.upper()
        began = time.monotonic()
        self._series_deadline = began + self.settings.pull.retrieve_timeout_s
        warning: str | None = None
        try:
            if isinstance(client, DicomwebSource):
                client.retrieve_series(
                    hit, new_spool=self.receiver.new_spool, on_instance=on_instance
                )
            elif source.retrieve == "c-get":
                _, warning = client.get_series(
                    hit, new_spool=self.receiver.new_spool, on_instance=on_instance
                )
            else:
                moved, warning = client.move_series(hit)
                counts["stored"] = self._wait_moved(uid, moved)
        except Exception as exc:
            why = str(exc) if isinstance(exc, PullError) else f"{type(exc).__name__}: {exc}"
            report.instances += counts["stored"]
            report.refused += counts["refused"]
            row = self._attempt(source, hit, counts["stored"], why)
            gave_up = row is not None and row.state == SeriesState.FAILED
            if not gave_up:
                report.failed[uid] = why
            log.warning("pull source %s: series %s failed: %s", source.name, uid, why)
            _audit(
                self.runtime,
                PullEvent.PULL_SERIES_GIVEN_UP if gave_up else PullEvent.PULL_SERIES_FAILED,
                f"series {uid} from {source.name} by {how}: {why} "
                f"({counts['stored']} instances admitted before; "
                + (
                    f"given up after {row.attempts} attempts)"
                    if gave_up and row is not None
                    else "tried again next poll)"
                ),
                {**base, "series_instance_uid": uid, "retrieve": how, "error": why[:1000]},
            )
            return
        self._attempt(source, hit, counts["stored"], None)
        report.retrieved.append(uid)
        report.instances += counts["stored"]
        report.refused += counts["refused"]
        seconds = time.monotonic() - began
        _audit(
            self.runtime,
            PullEvent.PULL_SERIES_RETRIEVED,
            f"series {uid} from {source.name} ({source.remote}) by {how}: "
            f"{counts['stored']} instances admitted, {counts['refused']} refused, "
            f"{seconds:.1f} s" + (f"; {warning}" if warning else ""),
            {
                **base,
                "series_instance_uid": uid,
                "study_instance_uid": hit.study_instance_uid,
                "retrieve": how,
                "instances": counts["stored"],
                "refused": counts["refused"],
                "slide_ids": sorted(slide_ids),
                "warning": warning,
            },
        )

    def _attempt(
        self, source: PullSourceSettings, hit: SeriesHit, instances: int, error: str | None
    ) -> PullSeries | None:
        try:
            with self.runtime.session() as session:
                row = record_attempt(
                    session,
                    source=source.name,
                    study_instance_uid=hit.study_instance_uid,
                    series_instance_uid=hit.series_instance_uid,
                    now=self.clock(),
                    instances=instances,
                    error=error,
                    max_attempts=self.settings.pull.max_attempts,
                )
                session.flush()
                session.expunge(row)
                return row
        except Exception:
            log.exception("cannot record the retrieval of %s", hit.series_instance_uid)
            return None

    def _wait_moved(self, series_uid: str, moved: int) -> int:
        """C-MOVE: the listener answers each store once admitted, so the moved instances are
        normally recorded already; wait (bounded) for any still being committed."""
        deadline = time.monotonic() + self.settings.pull.move_wait_s
        while True:
            with self.runtime.session() as session:
                have = stored_instances(session, series_uid)
            if have >= moved or time.monotonic() >= deadline:
                break
            time.sleep(0.5)
        if have < moved:
            raise PullError(
                f"C-MOVE reported {moved} instances sent, but only {have} reached the listener "
                f"within {self.settings.pull.move_wait_s:.0f} s"
            )
        return moved

    def _record(self, source: PullSourceSettings, report: SourceReport) -> None:
        error = "; ".join(
            f"{uid or 'query'}: {why}" for uid, why in list(report.failed.items())[:5]
        )
        if report.deferred and not error:
            error = f"{report.deferred} series left for the next poll"
        record = PollRecord(
            started_at=report.started_at,
            complete=report.complete,
            series_retrieved=len(report.retrieved),
            instances_received=report.instances,
            error=error or None,
        )
        try:
            with self.runtime.session() as session:
                record_poll(session, source.name, record)
        except Exception:
            log.exception("cannot record the poll of %s", source.name)

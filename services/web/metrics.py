"""Prometheus metrics, read from the database at scrape time (the one source of truth), so
every web process reports the whole service, not its own share of it.

Stage durations come from each finished job's recorded timings. They are counted once per
job: the collector keeps a high-water mark of job ids it has passed and the few ids that
were still running when it passed them, so a scrape reads only what is new.
"""

from __future__ import annotations

import logging
import math
import threading
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from unitumour_dicom.db import (
    Association,
    Delivery,
    DeliveryAttempt,
    Instance,
    Job,
    JobState,
)
from unitumour_dicom.runtime import Runtime

log = logging.getLogger(__name__)

STAGE_BUCKETS = (0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, math.inf)
_FINISHED = [s.value for s in JobState if s.finished]
_BATCH = 5000


class StageDurations:
    """Histogram counts of seconds per stage over every finished job, built incrementally."""

    def __init__(self) -> None:
        self.buckets: dict[str, list[int]] = defaultdict(lambda: [0] * len(STAGE_BUCKETS))
        self.sums: dict[str, float] = defaultdict(float)
        self.high_water = 0
        self.open_ids: set[int] = set()
        self.lock = threading.Lock()

    def _count(self, timings: dict[str, Any] | None) -> None:
        for stage, seconds in (timings or {}).items():
            if isinstance(seconds, bool) or not isinstance(seconds, int | float):
                continue
            if not math.isfinite(seconds) or seconds < 0:
                continue
            counts = self.buckets[str(stage)[:64]]
            for i, bound in enumerate(STAGE_BUCKETS):
                if seconds <= bound:
                    counts[i] += 1
            self.sums[str(stage)[:64]] += float(seconds)

    def update(self, runtime: Runtime) -> None:
        with self.lock, runtime.session() as session:
            while True:
                rows = session.execute(
                    select(Job.id, Job.state, Job.timings)
                    .where(Job.id > self.high_water)
                    .order_by(Job.id)
                    .limit(_BATCH)
                ).all()
                for job_id, state, timings in rows:
                    if state in _FINISHED:
                        self._count(timings)
                    else:
                        self.open_ids.add(job_id)
                if rows:
                    self.high_water = rows[-1][0]
                if len(rows) < _BATCH:
                    break
            if self.open_ids:
                for job_id, state, timings in session.execute(
                    select(Job.id, Job.state, Job.timings).where(Job.id.in_(self.open_ids))
                ):
                    if state in _FINISHED:
                        self._count(timings)
                        self.open_ids.discard(job_id)

    def family(self) -> HistogramMetricFamily:
        h = HistogramMetricFamily(
            "unitumour_job_stage_duration_seconds",
            "Seconds each pipeline stage took, over finished jobs.",
            labels=["stage"],
        )
        with self.lock:
            for stage in sorted(self.buckets):
                counts = self.buckets[stage]
                h.add_metric(
                    [stage],
                    [(_le(b), c) for b, c in zip(STAGE_BUCKETS, counts, strict=True)],
                    self.sums[stage],
                )
        return h


def _le(bound: float) -> str:
    return "+Inf" if math.isinf(bound) else str(float(bound))


class ServiceCollector(Collector):
    """Counts of what the service received, ran and delivered."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.stages = StageDurations()

    def collect(self) -> Iterator[Metric]:
        try:
            yield from self._collect()
        except Exception:
            log.exception("metrics: database unavailable")
            up = GaugeMetricFamily(
                "unitumour_metrics_database_up", "1 when the metrics could read the database."
            )
            up.add_metric([], 0)
            yield up

    def _collect(self) -> Iterator[Metric]:
        with self.runtime.session() as session:
            n_instances, n_bytes = session.execute(
                select(func.count(Instance.id), func.coalesce(func.sum(Instance.size_bytes), 0))
            ).one()
            jobs = dict(session.execute(select(Job.state, func.count()).group_by(Job.state)).all())
            deliveries = dict(
                session.execute(select(Delivery.state, func.count()).group_by(Delivery.state)).all()
            )
            failed_attempts = session.scalar(
                select(func.count())
                .select_from(DeliveryAttempt)
                .where(DeliveryAttempt.ok.is_(False))
            )
            associations = dict(
                session.execute(
                    select(Association.state, func.count()).group_by(Association.state)
                ).all()
            )
        self.stages.update(self.runtime)
        up = GaugeMetricFamily(
            "unitumour_metrics_database_up", "1 when the metrics could read the database."
        )
        up.add_metric([], 1)
        yield up
        yield CounterMetricFamily(
            "unitumour_instances_received",
            "DICOM instances received and stored (all versions).",
            value=n_instances,
        )
        yield CounterMetricFamily(
            "unitumour_received_bytes", "Bytes of the instances received.", value=n_bytes
        )
        g = GaugeMetricFamily("unitumour_jobs", "Jobs by state.", labels=["state"])
        for state in JobState:
            g.add_metric([state.value], jobs.get(state.value, 0))
        yield g
        yield self.stages.family()
        d = GaugeMetricFamily("unitumour_deliveries", "Deliveries by state.", labels=["state"])
        for name in sorted(set(deliveries) | {"pending", "sending", "delivered", "failed"}):
            d.add_metric([name], deliveries.get(name, 0))
        yield d
        yield CounterMetricFamily(
            "unitumour_delivery_attempts_failed",
            "Delivery attempts that did not deliver (refused, unreachable, timed out).",
            value=failed_attempts or 0,
        )
        a = GaugeMetricFamily(
            "unitumour_associations", "DICOM associations by outcome.", labels=["state"]
        )
        for name, n in sorted(associations.items()):
            a.add_metric([name], n)
        yield a
        store = GaugeMetricFamily(
            "unitumour_store_free_ratio", "Free fraction of the store's file system."
        )
        store.add_metric([], self.runtime.store.free_percent() / 100.0)
        yield store

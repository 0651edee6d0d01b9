"""Routing: which destinations a result goes to, as one Delivery row per destination.

Rules, in order: the destinations mapped to the calling AE title that sent the slide
(``listener.callers[].destinations``: "back to the PACS that asked"), then the fixed
destinations every result goes to (``delivery.always_to``: archives). A destination named
twice gets one delivery.

What of a result goes there: the instances of the kinds the destination lists
(``delivery.destinations[].kinds``, default all), SEG levels first (base level first), then
the other kinds in the order of the results registry (:func:`instances_for`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from ..config.sections import CallerRule, DeliverySettings, DestinationSettings
from ..db import AuditEventName, Delivery, DeliveryState, Result, record_event
from ..db.enums import ResultKind
from ..db.models import ResultInstance
from ..db.types import utcnow
from ..errors import DeliveryError

log = logging.getLogger(__name__)


def route(
    *, source_ae: str | None, settings: DeliverySettings, caller_rules: Sequence[CallerRule]
) -> list[DestinationSettings]:
    """The destinations for a result from ``source_ae``, without duplicates, in rule order."""
    by_name = {d.name: d for d in settings.destinations}
    names: list[str] = []
    calling = (source_ae or "").strip()
    for rule in caller_rules:
        if calling and rule.ae_title == calling:
            names.extend(rule.destinations)
    names.extend(settings.always_to)
    out: list[DestinationSettings] = []
    for name in dict.fromkeys(names):
        if name not in by_name:
            raise DeliveryError(f"routing names destination {name!r}, which is not configured")
        out.append(by_name[name])
    return out


def kinds_for(destination: str, settings: DeliverySettings) -> tuple[str, ...]:
    """The kinds a destination takes; every kind for one no longer configured (it was
    planned when it took them, and it is tried at its recorded address)."""
    configured = {d.name: d for d in settings.destinations}.get(destination)
    if configured is None:
        return tuple(str(kind) for kind in ResultKind)
    return tuple(configured.kinds)


def instances_for(result: Result, kinds: Sequence[str]) -> list[ResultInstance]:
    """The instances of ``result`` of these kinds, in sending order: the SEG levels base
    first, then the other kinds in the registry's order."""
    order = {str(kind): i for i, kind in enumerate(ResultKind)}  # seg, sr, ann, key_image
    chosen = [i for i in result.instances if i.kind in kinds]
    return sorted(chosen, key=lambda i: (order.get(i.kind, len(order)), i.level, i.id))


def plan_deliveries(
    *,
    session: Session,
    result: Result,
    source_ae: str | None,
    settings: DeliverySettings,
    caller_rules: Sequence[CallerRule],
    now: datetime | None = None,
) -> list[Delivery]:
    """One pending Delivery per routed destination of ``result`` (flushed, not committed).

    Idempotent per (result, destination): a delivery that exists is returned as it is. The
    result must already be recorded with its instances: nothing is sent that is not on record.
    """
    if result.id is None or not result.instances:
        raise DeliveryError("a result is delivered only once it is recorded with its instances")
    now = now or utcnow()
    existing = {d.destination: d for d in result.deliveries}
    deliveries: list[Delivery] = []
    destinations = route(source_ae=source_ae, settings=settings, caller_rules=caller_rules)
    for dest in destinations:
        if dest.name in existing:
            deliveries.append(existing[dest.name])
            continue
        if not instances_for(result, dest.kinds):
            # e.g. a destination of bulk annotations only, and a slide without tumour
            record_event(
                session=session,
                event=AuditEventName.DELIVERY_UNROUTED,
                message=(
                    f"result {result.id}: nothing for {dest.name}, which takes "
                    f"{', '.join(dest.kinds)} only"
                ),
                job_id=result.job_id,
                details={"source_ae": source_ae, "destination": dest.name, "kinds": dest.kinds},
            )
            continue
        delivery = Delivery(
            result=result,
            destination=dest.name,
            ae_title=dest.ae_title,
            host=dest.host,
            port=dest.port,
            state=DeliveryState.PENDING,
            attempts=0,
            next_attempt_at=now,
            give_up_at=now + timedelta(seconds=settings.max_age_s),
            created_at=now,
        )
        session.add(delivery)
        session.flush()
        record_event(
            session=session,
            event=AuditEventName.DELIVERY_PLANNED,
            message=(
                f"result {result.id} (series {result.series_instance_uid}) to {dest.name} "
                f"({dest.ae_title}@{dest.host}:{dest.port})"
            ),
            job_id=result.job_id,
            delivery_id=delivery.id,
            details={"destination": dest.name, "source_ae": source_ae},
        )
        deliveries.append(delivery)
    if not destinations and not existing:
        record_event(
            session=session,
            event=AuditEventName.DELIVERY_UNROUTED,
            message=(
                f"result {result.id}: no destination for calling AE {source_ae!r} and no "
                "fixed destination; the SEG stays in the store"
            ),
            job_id=result.job_id,
            details={"source_ae": source_ae},
        )
        log.warning("result %s has no destination (calling AE %r)", result.id, source_ae)
    return deliveries

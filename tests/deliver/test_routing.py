"""Routing rules, planning idempotence, backoff with jitter, and a person's retry."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest
from sqlalchemy import select

from unitumour_dicom.config.sections import CallerRule
from unitumour_dicom.db import AuditEvent, Delivery, DeliveryState, Result
from unitumour_dicom.db.types import utcnow
from unitumour_dicom.deliver import backoff_delay_s, plan_deliveries, resend_delivery, route
from unitumour_dicom.errors import ConflictError, DeliveryError

from .conftest import delivery_settings, destination, make_result

pytestmark = pytest.mark.unittest

PACS = destination(11112, name="pacs", ae_title="PACS")
ARCHIVE = destination(11113, name="archive", ae_title="VNA")
RESEARCH = destination(11114, name="research", ae_title="RESEARCH")
RULES = [
    CallerRule(ae_title="SCANNER", destinations=["pacs", "archive"]),
    CallerRule(ae_title="OTHER", destinations=["research"]),
]


def test_route_back_to_caller_then_fixed_archives_without_duplicates() -> None:
    settings = delivery_settings(PACS, ARCHIVE, RESEARCH, always_to=["archive"])
    assert [d.name for d in route(source_ae="SCANNER", settings=settings, caller_rules=RULES)] == [
        "pacs",
        "archive",
    ]
    assert [d.name for d in route(source_ae="OTHER ", settings=settings, caller_rules=RULES)] == [
        "research",
        "archive",
    ]
    assert [d.name for d in route(source_ae=None, settings=settings, caller_rules=RULES)] == [
        "archive"
    ]
    with pytest.raises(DeliveryError, match="'gone', which is not configured"):
        route(
            source_ae="X",
            settings=settings,
            caller_rules=[CallerRule(ae_title="X", destinations=["gone"])],
        )


def test_planning_is_idempotent_and_audited(runtime) -> None:
    result_id = make_result(runtime)
    settings = delivery_settings(PACS, ARCHIVE, RESEARCH, always_to=["archive"])
    now = utcnow()
    with runtime.session() as session:
        result = session.get(Result, result_id)
        first = plan_deliveries(
            session=session,
            result=result,
            source_ae="SCANNER",
            settings=settings,
            caller_rules=RULES,
            now=now,
        )
        assert [(d.destination, d.ae_title, d.port) for d in first] == [
            ("pacs", "PACS", 11112),
            ("archive", "VNA", 11113),
        ]
        assert all(d.state == DeliveryState.PENDING and d.next_attempt_at == now for d in first)
        assert all(d.give_up_at == now + timedelta(seconds=settings.max_age_s) for d in first)
    with runtime.session() as session:
        result = session.get(Result, result_id)
        again = plan_deliveries(
            session=session,
            result=result,
            source_ae="SCANNER",
            settings=settings,
            caller_rules=RULES,
        )
        assert [d.id for d in again] == [d.id for d in first]
        assert session.query(Delivery).count() == 2
        planned = session.scalars(select(AuditEvent).where(AuditEvent.event == "delivery.planned"))
        assert len(list(planned)) == 2


def test_unrouted_result_is_audited(sqlite_runtime) -> None:
    result_id = make_result(sqlite_runtime)
    with sqlite_runtime.session() as session:
        result = session.get(Result, result_id)
        assert (
            plan_deliveries(
                session=session,
                result=result,
                source_ae="NOBODY",
                settings=delivery_settings(),
                caller_rules=RULES,
            )
            == []
        )
        events = [e.event for e in session.scalars(select(AuditEvent))]
        assert "delivery.unrouted" in events


def test_backoff_grows_is_capped_and_jittered() -> None:
    settings = delivery_settings(initial_delay_s=10.0, max_delay_s=100.0, jitter=0.2)
    rng = random.Random(1)
    for attempts, base in [(1, 10), (2, 20), (3, 40), (4, 80), (5, 100), (30, 100)]:
        delays = [backoff_delay_s(attempts, settings, rng) for _ in range(200)]
        assert min(delays) >= base * 0.8 and max(delays) <= base * 1.2
        assert max(delays) - min(delays) > base * 0.2  # jitter spreads them
    flat = delivery_settings(initial_delay_s=10.0, jitter=0.0)
    assert backoff_delay_s(3, flat, rng) == 40.0


def test_retry_makes_a_failed_delivery_due_again(sqlite_runtime) -> None:
    result_id = make_result(sqlite_runtime)
    settings = delivery_settings(PACS)
    now = utcnow()
    with sqlite_runtime.session() as session:
        result = session.get(Result, result_id)
        (delivery,) = plan_deliveries(
            session=session, result=result, source_ae=None, settings=settings, caller_rules=[]
        )
        delivery.state = DeliveryState.FAILED
        delivery.next_attempt_at = None
        later = now + timedelta(days=3)
        again = {"session": session, "delivery_id": delivery.id, "settings": settings}
        resend_delivery(**again, now=later, actor="ops")
        assert delivery.state == DeliveryState.PENDING and delivery.next_attempt_at == later
        assert delivery.give_up_at == later + timedelta(seconds=settings.max_age_s)
        delivery.state = DeliveryState.DELIVERED
        with pytest.raises(ConflictError, match="use --force"):
            resend_delivery(**again, now=later, actor="ops")
        resend_delivery(**again, now=later, actor="ops", force=True)
        assert delivery.state == DeliveryState.PENDING


def test_unrecorded_result_is_not_planned(sqlite_runtime) -> None:
    with sqlite_runtime.session() as session:
        with pytest.raises(DeliveryError, match="only once it is recorded"):
            plan_deliveries(
                session=session,
                result=Result(),
                source_ae=None,
                settings=delivery_settings(PACS),
                caller_rules=[],
            )

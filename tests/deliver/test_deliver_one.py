"""deliver_one, the one path of every sender, and resend_delivery, the one re-send of the
web app and the CLI: against DCMTK storescp, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import select

from unitumour_dicom.db import AuditEvent, AuditEventName, Delivery, DeliveryState, Result
from unitumour_dicom.db.types import utcnow
from unitumour_dicom.deliver import deliver_one, plan_deliveries, resend_delivery
from unitumour_dicom.errors import ConflictError, NotFoundError
from unitumour_dicom.runtime import Runtime

from .conftest import delivery_settings, destination, free_port, make_result

pytestmark = pytest.mark.integration

WORKER = "delivery0@test:1"


def sender_runtime(runtime: Runtime, port: int, **kw) -> Runtime:  # type: ignore[no-untyped-def]
    """The test's database and store, with one destination at ``port``."""
    settings = runtime.settings.model_copy(
        update={"delivery": delivery_settings(destination(port), **kw)}
    )
    return Runtime(settings)


def plan(runtime: Runtime) -> int:
    """A recorded result and its one planned (pending, due) delivery; the delivery's id."""
    result_id = make_result(runtime)
    with runtime.session() as session:
        result = session.get(Result, result_id)
        (delivery,) = plan_deliveries(
            session=session,
            result=result,
            source_ae=None,
            settings=runtime.settings.delivery,
            caller_rules=[],
        )
        return delivery.id


def row(runtime: Runtime, delivery_id: int) -> Delivery:
    with runtime.session() as session:
        delivery = session.get(Delivery, delivery_id)
        assert delivery is not None
        return delivery


def events(runtime: Runtime, delivery_id: int) -> list[str]:
    with runtime.session() as session:
        rows = session.scalars(
            select(AuditEvent.event)
            .where(AuditEvent.delivery_id == delivery_id)
            .order_by(AuditEvent.id)
        )
        return list(rows)


def test_a_due_delivery_is_sent_once_and_recorded(runtime: Runtime, storescp) -> None:
    scp = storescp()
    sender = sender_runtime(runtime, scp.port)
    delivery_id = plan(sender)

    outcome = deliver_one(delivery_id, runtime=sender, worker=WORKER, send_again_within_s=60)
    assert outcome.ran and outcome.state == DeliveryState.DELIVERED
    assert outcome.send_again_in_s is None
    assert len(scp.received()) == 2
    delivered = row(sender, delivery_id)
    assert delivered.state == DeliveryState.DELIVERED and delivered.attempts == 1
    assert events(sender, delivery_id) == [
        AuditEventName.DELIVERY_PLANNED,
        AuditEventName.DELIVERY_ATTEMPT,
        AuditEventName.DELIVERY_DELIVERED,
    ]

    again = deliver_one(delivery_id, runtime=sender, worker=WORKER)  # a duplicate message
    assert not again.ran and again.state is None and "not due" in again.message
    assert len(scp.received()) == 2 and row(sender, delivery_id).attempts == 1


def test_racing_senders_try_a_delivery_once(runtime: Runtime, storescp) -> None:
    scp = storescp()
    sender = sender_runtime(runtime, scp.port)
    delivery_id = plan(sender)
    n = 4
    barrier = threading.Barrier(n)
    outcomes = []

    def send(i: int) -> None:
        barrier.wait()
        outcomes.append(deliver_one(delivery_id, runtime=sender, worker=f"delivery{i}@t:1"))

    threads = [threading.Thread(target=send, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(o.ran for o in outcomes) == [False] * (n - 1) + [True]
    assert len(scp.received()) == 2 and row(sender, delivery_id).attempts == 1


def test_a_failed_try_schedules_the_next_and_marks_its_message(runtime: Runtime) -> None:
    sender = sender_runtime(runtime, free_port(), timeout_s=3.0)  # nothing listens there
    delivery_id = plan(sender)

    outcome = deliver_one(delivery_id, runtime=sender, worker=WORKER, send_again_within_s=60)
    assert outcome.ran and outcome.state == DeliveryState.PENDING
    assert outcome.send_again_in_s is not None and 5.0 <= outcome.send_again_in_s <= 12.0
    pending = row(sender, delivery_id)
    assert pending.attempts == 1 and "did not answer" in (pending.last_error or "")
    assert pending.dispatched_at == pending.next_attempt_at  # the delayed message is on record
    # not due yet: a message arriving early finds nothing to do
    early = deliver_one(delivery_id, runtime=sender, worker=WORKER)
    assert not early.ran and row(sender, delivery_id).attempts == 1

    # a caller without a queue leaves the next try to the reconcile
    later = pending.next_attempt_at + timedelta(seconds=1)
    outcome = deliver_one(delivery_id, runtime=sender, worker=WORKER, clock=lambda: later)
    assert outcome.ran and outcome.state == DeliveryState.PENDING
    assert outcome.send_again_in_s is None
    assert row(sender, delivery_id).dispatched_at == pending.dispatched_at


def test_a_delivery_held_by_a_sender_is_left_alone(runtime: Runtime) -> None:
    sender = sender_runtime(runtime, free_port())
    delivery_id = plan(sender)
    with sender.session() as session:
        session.get(Delivery, delivery_id).state = DeliveryState.SENDING  # type: ignore[union-attr]
    outcome = deliver_one(delivery_id, runtime=sender, worker=WORKER)
    assert not outcome.ran and row(sender, delivery_id).attempts == 0


def test_resend_is_one_state_change_with_one_audit_code(runtime: Runtime) -> None:
    sender = sender_runtime(runtime, free_port())
    delivery_id = plan(sender)
    settings = sender.settings.delivery
    now = utcnow()
    with sender.session() as session:
        delivery = session.get(Delivery, delivery_id)
        assert delivery is not None
        delivery.state = DeliveryState.FAILED
        delivery.next_attempt_at = None
        slide_id = delivery.result.job.slide_id

    with sender.session() as session:
        resent = resend_delivery(
            session=session, delivery_id=delivery_id, settings=settings, now=now, actor="ada"
        )
        assert resent.state == DeliveryState.PENDING
    pending = row(sender, delivery_id)
    assert pending.next_attempt_at == now
    assert pending.give_up_at == now + timedelta(seconds=settings.max_age_s)
    with sender.session() as session:
        audit = session.scalars(
            select(AuditEvent).where(
                AuditEvent.event == AuditEventName.DELIVERY_RETRY_REQUESTED,
                AuditEvent.delivery_id == delivery_id,
            )
        ).one()
        assert audit.actor == "ada" and audit.slide_id == slide_id
        assert audit.details["previous_state"] == "failed"  # type: ignore[index]
        assert "was failed" in audit.message

    def resend(**kw):  # type: ignore[no-untyped-def]
        with sender.session() as session:
            return resend_delivery(session=session, settings=settings, now=now, actor="cli", **kw)

    with pytest.raises(NotFoundError):
        resend(delivery_id=delivery_id + 1000)
    with pytest.raises(NotFoundError):
        resend(delivery_id=delivery_id, slide_id=slide_id + 1)
    with sender.session() as session:
        session.get(Delivery, delivery_id).state = DeliveryState.SENDING  # type: ignore[union-attr]
    with pytest.raises(ConflictError, match="being sent"):
        resend(delivery_id=delivery_id)
    with sender.session() as session:
        session.get(Delivery, delivery_id).state = DeliveryState.DELIVERED  # type: ignore[union-attr]
    with pytest.raises(ConflictError, match="--force"):
        resend(delivery_id=delivery_id)
    assert row(sender, delivery_id).state == DeliveryState.DELIVERED
    assert resend(delivery_id=delivery_id, force=True).state == DeliveryState.PENDING
    assert events(sender, delivery_id).count(AuditEventName.DELIVERY_RETRY_REQUESTED) == 2

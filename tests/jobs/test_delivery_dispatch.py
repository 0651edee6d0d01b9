"""Delivery messages: one per attempt, however many reconciles run and however long the
delivery consumers are away; a lost one is sent again only when the queue is empty."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import timedelta

import pytest

from unitumour_dicom.db import Delivery, DeliveryState, Job, JobState, Result
from unitumour_dicom.jobs.deliveries import (
    claim_delivery,
    claim_delivery_dispatches,
    mark_delivery_dispatched,
    recover_deliveries,
)
from unitumour_dicom.runtime import Runtime

from .conftest import T0, race

pytestmark = pytest.mark.unittest


@pytest.fixture
def make_delivery(runtime: Runtime, make_job: Callable[..., int]) -> Callable[..., int]:
    """A pending delivery of a fresh result; returns its id."""

    def make(**values: object) -> int:
        job_id = make_job(state=JobState.SUCCEEDED)
        with runtime.session() as session:
            job = session.get(Job, job_id)
            assert job is not None
            n = uuid.uuid4().int % 10**12
            result = Result(
                job_id=job_id,
                study_instance_uid=f"1.2.826.0.1.3680043.10.3.{n}",
                series_instance_uid=f"1.2.826.0.1.3680043.10.4.{n}",
                segmentation_type="BINARY",
                tumour_area_mm2=1.0,
                tissue_area_mm2=2.0,
            )
            session.add(result)
            session.flush()
            delivery = Delivery(
                result_id=result.id,
                destination="PACS",
                ae_title="PACS",
                host="127.0.0.1",
                port=104,
                state=values.pop("state", DeliveryState.PENDING),
                **values,
            )
            session.add(delivery)
            session.flush()
            return delivery.id

    return make


def to_send(runtime: Runtime, now, queue_depth=None, redispatch_s=300.0) -> list[int]:
    """What one reconcile pass sends."""
    with runtime.session() as session:
        return recover_deliveries(
            session=session,
            now=now,
            worker="reconciler@h:9",
            redispatch_s=redispatch_s,
            queue_depth=queue_depth,
        )[1]


def row(runtime: Runtime, delivery_id: int) -> Delivery:
    with runtime.session() as session:
        delivery = session.get(Delivery, delivery_id)
        assert delivery is not None
        return delivery


def test_a_due_delivery_is_sent_once_however_many_reconciles_pass(runtime, make_delivery):
    new = make_delivery()
    assert to_send(runtime, T0) == [new]
    assert row(runtime, new).dispatched_at == T0
    # consumers away: later passes (queue depth unknown or non-empty) send nothing more
    for seconds in (2, 60, 120, 299):
        assert to_send(runtime, T0 + timedelta(seconds=seconds), queue_depth=4) == []
        assert to_send(runtime, T0 + timedelta(seconds=seconds), queue_depth=None) == []
    # a message that long ago, with the queue empty, was lost: sent again
    later = T0 + timedelta(seconds=301)
    assert to_send(runtime, later, queue_depth=3) == []
    assert to_send(runtime, later, queue_depth=0) == [new]
    assert to_send(runtime, later, queue_depth=0) == []


def test_each_retry_gets_its_own_message_when_it_falls_due(runtime, make_delivery):
    delivery_id = make_delivery()
    assert to_send(runtime, T0) == [delivery_id]
    with runtime.session() as session:  # the attempt: claimed, failed, retry in 10 minutes
        assert claim_delivery(
            session=session, delivery_id=delivery_id, now=T0, lease_seconds=60, worker="w"
        )
        delivery = session.get(Delivery, delivery_id)
        delivery.state = DeliveryState.PENDING
        delivery.attempts = 1
        delivery.next_attempt_at = T0 + timedelta(seconds=600)
    assert to_send(runtime, T0 + timedelta(seconds=599), queue_depth=0) == []
    assert to_send(runtime, T0 + timedelta(seconds=600), queue_depth=4) == [delivery_id]
    assert to_send(runtime, T0 + timedelta(seconds=602), queue_depth=4) == []


def test_a_delayed_message_marks_its_retry_as_sent(runtime, make_delivery):
    retry_at = T0 + timedelta(seconds=5)
    delivery_id = make_delivery(next_attempt_at=retry_at, attempts=1)
    with runtime.session() as session:
        mark_delivery_dispatched(session=session, delivery_id=delivery_id, due_at=retry_at)
    assert to_send(runtime, retry_at, queue_depth=None) == []
    assert to_send(runtime, retry_at + timedelta(seconds=301), queue_depth=0) == [delivery_id]


def test_a_resent_delivery_is_due_again(runtime, make_delivery):
    """What the web app's re-send does: pending, due now, after an earlier message."""
    delivery_id = make_delivery(state=DeliveryState.FAILED, dispatched_at=T0)
    assert to_send(runtime, T0 + timedelta(seconds=30), queue_depth=0) == []
    with runtime.session() as session:
        delivery = session.get(Delivery, delivery_id)
        delivery.state = DeliveryState.PENDING
        delivery.next_attempt_at = T0 + timedelta(seconds=60)
    assert to_send(runtime, T0 + timedelta(seconds=60), queue_depth=2) == [delivery_id]


def test_a_sender_that_died_is_recovered_and_its_delivery_sent_again(runtime, make_delivery):
    delivery_id = make_delivery()
    assert to_send(runtime, T0) == [delivery_id]
    with runtime.session() as session:
        assert claim_delivery(
            session=session, delivery_id=delivery_id, now=T0, lease_seconds=60, worker="w"
        )
    assert to_send(runtime, T0 + timedelta(seconds=30)) == []  # still sending, within lease
    with runtime.session() as session:
        recovered, sent = recover_deliveries(
            session=session, now=T0 + timedelta(seconds=61), worker="r", queue_depth=5
        )
    assert (recovered, sent) == ([delivery_id], [delivery_id])


def test_a_hook_and_reconciles_racing_send_a_delivery_once(runtime, make_delivery):
    delivery_id = make_delivery()

    def claim_it(_: int) -> list[int]:
        with runtime.session() as session:
            return claim_delivery_dispatches(session=session, now=T0, delivery_ids=[delivery_id])

    won = [i for ids in race(6, claim_it) for i in ids]
    assert won == [delivery_id]


def test_deliveries_not_pending_are_never_sent(runtime, make_delivery):
    ids = [
        make_delivery(state=state)
        for state in (DeliveryState.DELIVERED, DeliveryState.FAILED, DeliveryState.SENDING)
    ]
    with runtime.session() as session:
        assert claim_delivery_dispatches(session=session, now=T0, delivery_ids=ids) == []
    assert to_send(runtime, T0, queue_depth=0) == []

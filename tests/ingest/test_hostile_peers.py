"""The listener against peers that attack it below DICOM: raw sockets, byte by byte.

Each test is one finding of the security review (issue 13) and fails on the listener as it
was: lengths trusted before allocation, reads without deadlines, idle connections counted as
associations, one host taking every slot, clean releases recorded as aborts.
"""

from __future__ import annotations

import socket
import time

import pytest
from pynetdicom import evt
from sqlalchemy import select

from unitumour_dicom.db import Association, AuditEvent
from unitumour_dicom.ingest import IngestEvent

from .helpers import echo, wait_until
from .rawpeer import (
    abort_reason,
    associate_rq,
    associated,
    c_echo_rq,
    closed_within,
    connect,
    p_data,
    pdu_header,
    read_pdu,
    resident_mib,
)

pytestmark = pytest.mark.integration

HUGE = 256 * 1024 * 1024


def dropped_events(listening) -> list[AuditEvent]:
    with listening.runtime.session() as session:
        return list(
            session.scalars(
                select(AuditEvent).where(AuditEvent.event == IngestEvent.CONNECTION_DROPPED)
            )
        )


def guard(listening):
    return listening.service.scp.guard


def all_closed(listening) -> bool:
    return guard(listening).open_connections == 0


@pytest.mark.parametrize("when", ["before association", "after association"])
def test_a_pdu_announcing_256_mib_is_aborted_before_anything_is_allocated(
    sqlite_runtime, start_listener, when
):
    listening = start_listener(sqlite_runtime, max_associations=4)
    before = resident_mib()
    socks = []
    for _ in range(2):
        if when == "before association":
            sock = connect(listening.host, listening.port)
            sock.sendall(pdu_header(0x01, HUGE))
        else:
            sock = associated(listening.host, listening.port)
            sock.sendall(pdu_header(0x04, HUGE) + b"\0" * 100)
        socks.append(sock)
    answers = [read_pdu(sock) for sock in socks]
    grown = resident_mib() - before
    # A-ABORT, service provider, invalid PDU parameter value; then the connection closes
    assert [abort_reason(a) for a in answers] == [(2, 6), (2, 6)]
    assert all(closed_within(sock, 5) is not None for sock in socks)
    assert grown < 64, f"resident memory grew {grown:.0f} MiB"
    wait_until(lambda: all_closed(listening))
    events = wait_until(lambda: dropped_events(listening))
    assert events[0].details["peer_host"] == "127.0.0.1"
    assert f"announces {HUGE} bytes" in events[0].details["reason"]
    if when == "after association":
        with listening.runtime.session() as session:
            rows = wait_until(
                lambda: [
                    r for r in session.scalars(select(Association)).all() if r.state == "aborted"
                ]
            )
        assert events[0].association_id in {r.id for r in rows}
    assert echo(listening.host, listening.port) == 0


@pytest.mark.parametrize(
    "payload",
    [b"", b"\x01\x00\x00", associate_rq()[:40]],
    ids=["nothing", "3 bytes of a PDU header", "half an association request"],
)
def test_a_peer_that_stalls_before_associating_is_dropped_at_the_acse_timeout(
    sqlite_runtime, start_listener, payload
):
    listening = start_listener(
        sqlite_runtime, acse_timeout_s=2.0, network_timeout_s=30.0, max_associations=1
    )
    sock = connect(listening.host, listening.port)
    sock.sendall(payload)
    elapsed = closed_within(sock, 15)
    assert elapsed is not None, "still open after 15 s"
    assert 1.5 <= elapsed < 8
    wait_until(lambda: all_closed(listening))
    (event,) = wait_until(lambda: dropped_events(listening))
    assert event.details["peer_host"] == "127.0.0.1"
    assert "ACSE timeout" in event.details["reason"]
    assert echo(listening.host, listening.port) == 0


def test_a_p_data_that_stalls_mid_pdu_is_dropped_and_frees_its_slot(sqlite_runtime, start_listener):
    listening = start_listener(
        sqlite_runtime, max_associations=1, network_timeout_s=2.0, acse_timeout_s=2.0
    )
    sock = associated(listening.host, listening.port)
    sock.sendall(pdu_header(0x04, 1000) + b"\0" * 10)
    elapsed = closed_within(sock, 15)
    assert elapsed is not None, "the stalled association is still open after 15 s"
    assert elapsed < 8
    wait_until(lambda: all_closed(listening))
    assert echo(listening.host, listening.port) == 0  # the one slot is free again
    with listening.runtime.session() as session:
        aborted = wait_until(
            lambda: session.scalars(
                select(AuditEvent).where(AuditEvent.event == IngestEvent.ASSOCIATION_ABORTED)
            ).all()
        )
    assert "stalled mid-PDU" in aborted[0].details["dropped_for"]


def test_idle_connections_never_lock_a_sender_out(sqlite_runtime, start_listener):
    listening = start_listener(
        sqlite_runtime, max_associations=4, max_pending_connections=6, acse_timeout_s=30.0
    )
    idle = []
    for i in range(12):  # twelve addresses, so the per-host limit plays no part
        sock = connect(listening.host, listening.port, source=f"127.0.1.{i + 1}")
        sock.sendall([b"", b"\x01\x00\x00", associate_rq()[:40]][i % 3])
        idle.append(sock)
    wait_until(lambda: guard(listening).pending_connections <= 6)
    for _ in range(3):
        assert echo(listening.host, listening.port) == 0
    assert guard(listening).pending_connections <= 6
    assert guard(listening).open_connections <= 6
    evicted = wait_until(lambda: dropped_events(listening))
    assert any("longest waiting was dropped" in e.details["reason"] for e in evicted)
    for sock in idle:
        sock.close()


def test_one_host_cannot_take_every_slot(sqlite_runtime, start_listener):
    listening = start_listener(sqlite_runtime, max_connections_per_host=3, max_associations=8)
    held = [associated(listening.host, listening.port, source="127.0.2.9") for _ in range(3)]
    extra = connect(listening.host, listening.port, source="127.0.2.9")
    assert closed_within(extra, 3) is not None, "a fourth connection from one host stayed open"
    assert echo(listening.host, listening.port) == 0  # another host still gets in
    (event,) = wait_until(lambda: dropped_events(listening))
    assert event.details["peer_host"] == "127.0.2.9"
    assert "max_connections_per_host" in event.details["reason"]
    for sock in held:
        sock.close()
    wait_until(lambda: all_closed(listening))


def test_clean_releases_are_always_recorded_as_released(runtime, start_listener, monkeypatch):
    """The peer may close the moment it has the A-RELEASE-RP; the connection-closed event then
    races the released event. The race is made certain by holding the released event back."""
    original = evt.trigger

    def late_released(assoc, event, attrs):
        if event is evt.EVT_RELEASED:
            time.sleep(0.3)
        return original(assoc, event, attrs)

    monkeypatch.setattr(evt, "trigger", late_released)
    listening = start_listener(runtime)
    for i in range(10):
        if i % 2:
            assert echo(listening.host, listening.port) == 0
            continue
        sock = associated(listening.host, listening.port)
        sock.sendall(pdu_header(0x05, 4) + bytes(4))  # A-RELEASE-RQ
        assert read_pdu(sock).pdu_type == 0x06  # A-RELEASE-RP, then gone at once
        sock.close()
    wait_until(lambda: all_closed(listening))
    with listening.runtime.session() as session:
        rows = wait_until(
            lambda: (
                rows
                if len(rows := [r for r in session.scalars(select(Association)) if r.ended_at])
                == 10
                else None
            )
        )
        aborted = session.scalars(
            select(AuditEvent).where(AuditEvent.event == IngestEvent.ASSOCIATION_ABORTED)
        ).all()
    assert [r.state for r in rows] == ["released"] * 10
    assert aborted == []


@pytest.mark.parametrize(
    ("stream", "expected"),
    [
        ([pdu_header(0x09, 4) + b"\0" * 4], (2, 1)),
        ([p_data(1, 0x01, b"\0" * 16000)] * 6, (2, 6)),
        (
            [p_data(1, 0x03, c_echo_rq(with_data_set=True))]
            + [p_data(1, 0x00, b"\0" * 16000)] * 80,
            (2, 6),
        ),
        ([pdu_header(0x05, 4096) + b"\0" * 4096], (2, 6)),
    ],
    ids=[
        "unknown PDU type",
        "runaway command set",
        "runaway data set of a C-ECHO",
        "release request of 4 KiB",
    ],
)
def test_protocol_violations_are_aborted_and_audited(
    sqlite_runtime, start_listener, stream, expected
):
    listening = start_listener(sqlite_runtime)
    sock = associated(listening.host, listening.port)
    for pdu in stream:
        try:
            sock.sendall(pdu)
        except OSError:
            break  # aborted already
    answer = read_pdu(sock)
    assert abort_reason(answer) == expected
    assert closed_within(sock, 5) is not None
    (event,) = wait_until(lambda: dropped_events(listening))
    assert event.details["reason"].startswith("protocol violation")
    assert event.association_id is not None
    wait_until(lambda: all_closed(listening))
    assert echo(listening.host, listening.port) == 0


def test_a_peer_that_never_reads_its_answers_is_dropped(sqlite_runtime, start_listener):
    """Sends stop too: a peer that fills its receive window cannot hold a slot for ever."""
    listening = start_listener(
        sqlite_runtime, max_associations=1, network_timeout_s=2.0, acse_timeout_s=2.0
    )
    sock = associated(listening.host, listening.port)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    echo_rq = p_data(1, 0x03, c_echo_rq())
    started = time.monotonic()
    sock.settimeout(0.5)
    try:  # echo requests whose answers we never read, until our sends block (or 5 s)
        while time.monotonic() - started < 5:
            sock.sendall(echo_rq * 50)
    except OSError:
        pass
    # Whatever the listener still has to answer from its receive buffer (much, on a loaded
    # machine), it must end the connection: its sends block on our full window and time out.
    wait_until(lambda: all_closed(listening), timeout=120)
    assert echo(listening.host, listening.port) == 0
    sock.close()

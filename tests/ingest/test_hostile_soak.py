"""A bounded soak: hostile connections of every kind while a scanner sends a slide.

Several attacker threads, each from its own loopback address, open 200 connections over the
soak (UNITUMOUR_SOAK_SECONDS, default 40 s): silent ones, stalled headers and requests,
absurd lengths, unknown PDU types, garbage, associations that stall mid-PDU, and C-STOREs cut
off mid-instance. Meanwhile DCMTK's storescu sends a phantom slide from 127.0.0.1. Afterwards
the phantom must be stored complete, and the attackers must have left nothing behind: no
stored file, no spool part, no instance row, no association still open, no connection held.
"""

from __future__ import annotations

import os
import random
import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable

import pytest
from pydicom.uid import generate_uid
from sqlalchemy import select

from unitumour_dicom.db import Association, AuditEvent, Instance
from unitumour_dicom.ingest import IngestEvent
from unitumour_dicom.ingest.contexts import WSI_SOP_CLASS

from .helpers import STORESCU, storescu, wait_until
from .rawpeer import (
    associate_rq,
    associated,
    c_store_rq,
    connect,
    p_data,
    pdu_header,
    resident_mib,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SOAK_SECONDS = float(os.environ.get("UNITUMOUR_SOAK_SECONDS", "40"))
CONNECTIONS = 200
ATTACKERS = 8


def _wait_for_close(sock: socket.socket, limit: float = 6.0) -> None:
    """Read (and drop) whatever comes until the listener closes, at most ``limit`` seconds."""
    sock.settimeout(0.5)
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            if not sock.recv(65536):
                return
        except TimeoutError:
            continue
        except OSError:
            return


def _reset(sock: socket.socket) -> None:
    """Vanish: close with a TCP reset, as a crashed or unplugged peer does."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def _silent(host: str, port: int, source: str, rng: random.Random) -> None:
    with connect(host, port, source) as sock:
        _wait_for_close(sock)


def _partial_header(host: str, port: int, source: str, rng: random.Random) -> None:
    with connect(host, port, source) as sock:
        sock.sendall(b"\x01\x00\x00")
        _wait_for_close(sock)


def _half_request(host: str, port: int, source: str, rng: random.Random) -> None:
    with connect(host, port, source) as sock:
        sock.sendall(associate_rq()[: rng.randint(7, 60)])
        _wait_for_close(sock)


def _huge_length(host: str, port: int, source: str, rng: random.Random) -> None:
    with connect(host, port, source) as sock:
        sock.sendall(pdu_header(rng.choice([0x01, 0x04, 0x05]), rng.randint(1 << 24, 1 << 32 - 1)))
        _wait_for_close(sock)


def _unknown_type(host: str, port: int, source: str, rng: random.Random) -> None:
    with connect(host, port, source) as sock:
        sock.sendall(pdu_header(rng.randint(0x08, 0xFF), 16) + bytes(16))
        _wait_for_close(sock)


def _garbage(host: str, port: int, source: str, rng: random.Random) -> None:
    with connect(host, port, source) as sock:
        sock.sendall(rng.randbytes(rng.randint(1, 4096)))
        _reset(sock)


def _connect_and_leave(host: str, port: int, source: str, rng: random.Random) -> None:
    _reset(connect(host, port, source))


def _stall_mid_p_data(host: str, port: int, source: str, rng: random.Random) -> None:
    with associated(host, port, source=source) as sock:
        sock.sendall(pdu_header(0x04, 1000) + bytes(10))
        _wait_for_close(sock)


def _store_cut_off(host: str, port: int, source: str, rng: random.Random) -> None:
    sock = associated(host, port, source=source, abstract=str(WSI_SOP_CLASS))
    sock.sendall(p_data(1, 0x03, c_store_rq(str(WSI_SOP_CLASS), str(generate_uid()))))
    for _ in range(rng.randint(1, 8)):
        sock.sendall(p_data(1, 0x00, rng.randbytes(16000)))
    _reset(sock)


KINDS: list[Callable[[str, int, str, random.Random], None]] = [
    _silent,
    _partial_header,
    _half_request,
    _huge_length,
    _unknown_type,
    _garbage,
    _connect_and_leave,
    _stall_mid_p_data,
    _store_cut_off,
]


@pytest.mark.skipif(STORESCU is None, reason="DCMTK storescu is not installed")
def test_hostile_soak_leaves_the_slide_complete_and_nothing_else(
    sqlite_runtime, start_listener, phantom
):
    listening = start_listener(
        sqlite_runtime,
        acse_timeout_s=3.0,
        network_timeout_s=3.0,
        max_associations=8,
        max_pending_connections=32,
        max_connections_per_host=4,
    )
    host, port = listening.host, listening.port
    before = resident_mib()
    done: Counter[str] = Counter()
    errors: list[str] = []
    lock = threading.Lock()
    per_attacker = CONNECTIONS // ATTACKERS
    pause = SOAK_SECONDS / per_attacker

    def attacker(index: int) -> None:
        rng = random.Random(index)
        source = f"127.0.4.{index + 1}"
        for _ in range(per_attacker):
            started = time.monotonic()
            kind = rng.choice(KINDS)
            try:
                kind(host, port, source, rng)
            except OSError as exc:  # refused at once by a limit, or reset by an abort
                with lock:
                    errors.append(f"{kind.__name__}: {type(exc).__name__}")
            with lock:
                done[kind.__name__] += 1
            time.sleep(max(0.0, pause - (time.monotonic() - started)))

    threads = [threading.Thread(target=attacker, args=(i,)) for i in range(ATTACKERS)]
    for thread in threads:
        thread.start()
    time.sleep(SOAK_SECONDS / 3)
    files = phantom.instance_paths
    sent = storescu(host, port, files, extra=["-to", "30", "-ta", "30", "-td", "30"])
    for thread in threads:
        thread.join(SOAK_SECONDS * 4)
    assert not any(t.is_alive() for t in threads)
    assert sum(done.values()) == CONNECTIONS
    assert len(done) == len(KINDS)  # every kind was tried

    assert sent.returncode == 0, sent.stderr
    wait_until(lambda: listening.service.scp.guard.open_connections == 0, timeout=30)
    expected = {uid_of(p) for p in files}
    with listening.runtime.session() as session:
        stored = {i.sop_instance_uid for i in session.scalars(select(Instance))}
        open_rows = session.scalars(select(Association).where(Association.ended_at.is_(None))).all()
        dropped = session.scalars(
            select(AuditEvent).where(AuditEvent.event == IngestEvent.CONNECTION_DROPPED)
        ).all()
    assert stored == expected  # the slide complete, and no instance of the attackers
    assert open_rows == []
    assert dropped, "the attackers' connections were not audited"
    store = listening.runtime.store
    kept = [p for p in (store.root / "instances").rglob("*") if p.is_file()]
    assert len(kept) == len(expected)
    assert [p for p in (store.root / "quarantine").rglob("*") if p.is_file()] == []
    assert [p for p in store.spool_dir.rglob("*") if p.is_file() and p.name != ".lock"] == []
    grown = resident_mib() - before
    assert grown < 200, f"resident memory grew {grown:.0f} MiB over the soak"


def uid_of(path) -> str:
    from pydicom import dcmread

    return str(dcmread(path, stop_before_pixels=True).SOPInstanceUID)

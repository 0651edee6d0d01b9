"""The embedded broker: kombu's SQLAlchemy transport made durable against a consumer's crash."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from celery import Celery
from kombu import Connection, Exchange, Queue

from unitumour_dicom.config.sections import BrokerSettings
from unitumour_dicom.jobs.broker import broker_kind, transport_options
from unitumour_dicom.jobs.sqla_transport import ALIAS, durable_broker_url

HERE = Path(__file__).parent


def rows(db: Path) -> list[tuple[int, int]]:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT id, visible FROM kombu_message ORDER BY id").fetchall()


def connection(db: Path, vt: float = 3600.0) -> Connection:
    return Connection(
        durable_broker_url(f"sqla+sqlite:///{db}"),
        transport_options={"visibility_timeout": vt, "polling_interval": 0.05},
    )


QUEUE = Queue("q", Exchange("q", type="direct"), routing_key="q")


def publish(conn: Connection, body: dict) -> None:
    with conn.Producer() as producer:
        producer.publish(body, exchange=QUEUE.exchange, routing_key="q", declare=[QUEUE])


@pytest.mark.unittest
def test_urls_and_options():
    assert durable_broker_url("sqla+sqlite:////x/b.sqlite") == f"{ALIAS}+sqlite:////x/b.sqlite"
    assert durable_broker_url("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"
    assert broker_kind("sqla+sqlite:////x") == "embedded"
    assert broker_kind("redis://h") == "redis"
    assert broker_kind("amqp://guest@h//") == "rabbitmq"
    opts = transport_options(BrokerSettings(url="sqla+sqlite:////x", visibility_timeout_s=7))
    assert opts == {"visibility_timeout": 7.0, "polling_interval": 1.0}
    assert transport_options(BrokerSettings(url="amqp://h//")) == {}
    assert transport_options(BrokerSettings(url="redis://h"))["visibility_timeout"] == 3600.0


@pytest.mark.unittest
def test_ack_deletes_the_row_and_reject_requeue_unhides_it(tmp_path):
    db = tmp_path / "broker.sqlite"
    with connection(db) as conn:
        publish(conn, {"job": 1})
        publish(conn, {"job": 2})
        assert [v for _, v in rows(db)] == [1, 1]
        queue = QUEUE(conn.default_channel)
        first = queue.get(no_ack=False)
        assert first.payload == {"job": 1}
        assert [v for _, v in rows(db)] == [0, 1]  # taken, hidden, not gone
        first.ack()
        assert [v for _, v in rows(db)] == [1]  # acknowledged: deleted
        second = queue.get(no_ack=False)
        second.reject(requeue=True)
        assert [v for _, v in rows(db)] == [1]  # same row, visible again, no copy
        again = queue.get(no_ack=False)
        assert again.payload == {"job": 2}
        again.reject(requeue=False)
        assert rows(db) == []
        assert queue.get(no_ack=False) is None


@pytest.mark.unittest
def test_unacknowledged_messages_are_unhidden_when_the_channel_closes(tmp_path):
    db = tmp_path / "broker.sqlite"
    with connection(db) as conn:
        publish(conn, {"job": 3})
        message = QUEUE(conn.default_channel).get(no_ack=False)
        assert message is not None and [v for _, v in rows(db)] == [0]
    # the connection closed without an ack: the message is waiting again, once
    assert [v for _, v in rows(db)] == [1]
    with connection(db) as conn:
        assert QUEUE(conn.default_channel).get(no_ack=True).payload == {"job": 3}
    assert rows(db) == []  # no_ack consumption removes the row at once


@pytest.mark.unittest
def test_a_hidden_message_comes_back_after_the_visibility_timeout(tmp_path):
    db = tmp_path / "broker.sqlite"
    with connection(db) as conn:
        publish(conn, {"job": 4})
    # a consumer takes it and "dies": hide the row as the transport does, without closing
    taker = connection(db, vt=0.5)
    assert QUEUE(taker.default_channel).get(no_ack=False) is not None
    with connection(db, vt=0.5) as other:
        queue = QUEUE(other.default_channel)
        assert queue.get(no_ack=False) is None  # still within its visibility timeout
        time.sleep(1.2)
        message = queue.get(no_ack=False)
        assert message is not None and message.payload == {"job": 4}
        message.ack()
    assert rows(db) == []


@pytest.mark.unittest
def test_a_plain_kombu_client_can_publish_to_the_same_tables(tmp_path):
    db = tmp_path / "broker.sqlite"
    with Connection(f"sqla+sqlite:///{db}") as plain:
        publish(plain, {"job": 5})
    with connection(db) as conn:
        message = QUEUE(conn.default_channel).get(no_ack=False)
        assert message.payload == {"job": 5}
        message.ack()
    assert rows(db) == []


def start_worker(tmp_path: Path, db: Path, log: Path, vt: float) -> subprocess.Popen:
    env = {
        **os.environ,
        "PROBE_BROKER": f"sqla+sqlite:///{db}",
        "PROBE_LOG": str(log),
        "PROBE_VT": str(vt),
    }
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "celery_probe",
            "worker",
            "-P",
            "solo",
            "-l",
            "warning",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ],
        cwd=HERE,
        env=env,
        stdout=open(tmp_path / "worker.out", "ab"),
        stderr=subprocess.STDOUT,
    )


def wait_for_line(log: Path, text: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if log.exists() and text in log.read_text():
            return
        time.sleep(0.1)
    raise AssertionError(
        f"{text!r} not in {log} after {timeout}s: {log.read_text() if log.exists() else ''}"
    )


@pytest.mark.integration
@pytest.mark.slow
def test_a_task_taken_by_a_killed_celery_worker_runs_again(tmp_path):
    """Celery 5.7, acks_late, solo pool: kill -9 mid-task; the next worker runs it to the end.

    With kombu's own sqla transport the task would never run again (its row stays hidden).
    """
    db, log = tmp_path / "broker.sqlite", tmp_path / "probe.log"
    sender = Celery(
        "sender", broker=durable_broker_url(f"sqla+sqlite:///{db}"), set_as_current=False
    )
    sender.send_task("probe.work", args=(1, 30.0))
    sender.send_task("probe.work", args=(2, 0.1))
    first = start_worker(tmp_path, db, log, vt=3.0)
    try:
        wait_for_line(log, "start 1 ")
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
    finally:
        if first.poll() is None:
            first.kill()
    assert "done 1" not in log.read_text()
    second = start_worker(tmp_path, db, log, vt=3.0)
    try:
        # the second message is free at once; the first comes back after its timeout
        wait_for_line(log, "done 2 ")
        text = log.read_text()
        assert text.count("start 1 ") == 1
        # the killed worker's task, started again by the second worker (30 s: just check start)
        wait_for_line(log, f"start 1 {second.pid}", timeout=30)
    finally:
        second.send_signal(signal.SIGTERM)
        try:
            second.wait(timeout=5)
        except subprocess.TimeoutExpired:
            second.kill()
            second.wait()

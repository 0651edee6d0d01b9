"""The embedded broker: kombu's SQLAlchemy transport, made to survive a worker's crash.

kombu's ``sqla`` transport (kombu 5.7) keeps messages in two tables of any SQL database, so
one machine needs no broker server: a SQLite file is enough. As shipped it is not durable
against a crashed consumer: taking a message only hides its row (``visible = false``) and
the acknowledgement lives in the worker's memory, so a worker killed while running a task
(``acks_late``) leaves the row hidden for ever and the message is lost; and acknowledged
rows are never deleted. Measured here with Celery 5.7: after ``kill -9`` mid-task, the task
never ran again.

This subclass keeps the same tables and URL (``sqla+sqlite:///...``; a plain kombu client
such as a health check can still publish to them) and changes what consuming means, the way
kombu's Redis transport does it:

- acknowledging a message deletes its row; rejecting it without requeue deletes it too;
- a hidden row whose consumer never acknowledged it becomes visible again after
  ``visibility_timeout`` seconds (a worker that died), checked each time a queue is read;
- unacknowledged messages restored at shutdown are un-hidden in place, not copied;
- ``polling_interval`` is taken from the transport options instead of being handed to
  ``create_engine`` (which refuses it), and SQLite gets WAL, ``synchronous=FULL`` and a busy
  timeout so the listener, the web app and the workers can share the file.

A message that comes back after its job was already run elsewhere does no harm: the job's
lease (``unitumour_dicom.jobs.leases``) makes its task a no-op.
"""

from __future__ import annotations

import datetime
import logging
import threading
from json import loads
from queue import Empty
from typing import Any

from kombu.transport import TRANSPORT_ALIASES, virtual
from kombu.transport import sqlalchemy as kombu_sqla
from kombu.utils.encoding import bytes_to_str
from sqlalchemy import create_engine, delete, event, text, update

log = logging.getLogger(__name__)

#: The transport alias; :func:`durable_broker_url` rewrites ``sqla+`` URLs to it.
ALIAS = "unitumour-sqla"

#: Transport options this transport reads itself; the rest go to ``create_engine``.
_OWN_OPTIONS = frozenset({"visibility_timeout", "polling_interval"})
#: Options kombu and Celery add for every transport that ``create_engine`` does not take.
_KOMBU_OPTIONS = frozenset(
    {
        "queue_tablename",
        "message_tablename",
        "callback",
        "errback",
        "max_retries",
        "interval_start",
        "interval_step",
        "interval_max",
        "retry_errors",
        "confirm_publish",
    }
)


def _sqlite_pragmas(dbapi_connection: Any, connection_record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


class QoS(virtual.QoS):
    """Acknowledgements that reach the database, so a crash cannot lose a taken message."""

    def ack(self, delivery_tag: str) -> None:
        super().ack(delivery_tag)
        self.channel._delete_row(delivery_tag)

    def reject(self, delivery_tag: str, requeue: bool = False) -> None:
        if requeue:
            self.channel._unhide_row(delivery_tag)
        else:
            self.channel._delete_row(delivery_tag)
        self._quick_ack(delivery_tag)

    def restore_unacked(self) -> list[tuple[BaseException, Any]]:
        """Un-hide the rows of unacknowledged messages (shutdown, recover)."""
        self._flush()
        errors: list[tuple[BaseException, Any]] = []
        while self._delivered:
            try:
                tag, message = self._delivered.popitem()
            except KeyError:  # pragma: no cover (another thread emptied it)
                break
            try:
                self.channel._unhide_row(tag)
            except Exception as exc:  # the visibility timeout will bring it back
                errors.append((exc, message))
        self._delivered.clear()
        return errors


class Channel(kombu_sqla.Channel):
    QoS = QoS
    _engines: dict[str, Any] = {}  # noqa: RUF012 (kombu's per-class engine cache, kept apart)

    def __init__(self, connection: Any, **kwargs: Any) -> None:
        options = connection.client.transport_options
        self.visibility_timeout = float(options.get("visibility_timeout", 3600.0))
        self._rows: dict[str, int] = {}  # delivery tag -> message row id
        self._no_ack_queues: set[str] = set()
        self._rows_lock = threading.Lock()
        super().__init__(connection, **kwargs)

    # -- engine --------------------------------------------------------------------------
    def _engine_from_config(self) -> Any:
        conninfo = self.connection.client
        options = {
            key: value
            for key, value in conninfo.transport_options.items()
            if key not in _OWN_OPTIONS and key not in _KOMBU_OPTIONS
        }
        url = conninfo.hostname
        if url.startswith("sqlite"):
            options.setdefault("connect_args", {"timeout": 30})
        engine = create_engine(url, **options)
        if url.startswith("sqlite"):
            event.listen(engine, "connect", _sqlite_pragmas)
        return engine

    @property
    def _engine(self) -> Any:
        return self._open()[0]

    # -- consuming -----------------------------------------------------------------------
    def basic_consume(self, queue: str, no_ack: bool, *args: Any, **kwargs: Any) -> Any:
        if no_ack:
            self._no_ack_queues.add(queue)
        return super().basic_consume(queue, no_ack, *args, **kwargs)

    def basic_get(self, queue: str, no_ack: bool = False, **kwargs: Any) -> Any:
        message = super().basic_get(queue, no_ack=no_ack, **kwargs)
        if message is not None and no_ack:
            self._delete_row(message.delivery_tag)  # nobody will acknowledge it
        return message

    def _get(self, queue: str, timeout: float | None = None) -> dict[str, Any]:
        obj = self._get_or_create(queue)
        session = self.session
        message_cls = self.message_cls
        if session.bind.name == "sqlite":
            session.execute(text("BEGIN IMMEDIATE TRANSACTION"))
        try:
            cutoff = datetime.datetime.now() - datetime.timedelta(seconds=self.visibility_timeout)
            restored = session.execute(
                update(message_cls)
                .where(
                    message_cls.queue_id == obj.id,
                    message_cls.visible.is_(False),
                    message_cls.sent_at < cutoff,
                )
                .values(visible=True)
                .execution_options(synchronize_session=False)
            ).rowcount
            if restored:
                log.warning(
                    "queue %s: %d unacknowledged message(s) older than %.0fs made visible again",
                    queue,
                    restored,
                    self.visibility_timeout,
                )
            msg = (
                session.query(message_cls)
                .with_for_update()
                .filter(message_cls.queue_id == obj.id)
                .filter(message_cls.visible.is_not(False))
                .order_by(message_cls.sent_at)
                .order_by(message_cls.id)
                .limit(1)
                .first()
            )
            if msg is None:
                raise Empty()
            payload = loads(bytes_to_str(msg.payload))
            if queue in self._no_ack_queues:
                session.delete(msg)
            else:
                msg.visible = False
                tag = payload["properties"]["delivery_tag"]
                with self._rows_lock:
                    self._rows[tag] = msg.id
            return payload
        finally:
            session.commit()

    # -- acknowledgement (any thread: a short connection of its own, not the session) ----
    def _take_row(self, delivery_tag: str) -> int | None:
        with self._rows_lock:
            return self._rows.pop(delivery_tag, None)

    def _delete_row(self, delivery_tag: str) -> None:
        row_id = self._take_row(delivery_tag)
        if row_id is None:
            return
        with self._engine.begin() as conn:
            conn.execute(delete(self.message_cls.__table__).where(self.message_cls.id == row_id))

    def _unhide_row(self, delivery_tag: str) -> None:
        row_id = self._take_row(delivery_tag)
        if row_id is None:
            return
        table = self.message_cls.__table__
        with self._engine.begin() as conn:
            conn.execute(update(table).where(table.c.id == row_id).values(visible=True))


class Transport(kombu_sqla.Transport):
    Channel = Channel

    def __init__(self, client: Any, **kwargs: Any) -> None:
        super().__init__(client, **kwargs)
        interval = client.transport_options.get("polling_interval")
        if interval is not None:
            self.polling_interval = float(interval)


def register() -> None:
    """Make ``unitumour-sqla+<sqlalchemy url>`` resolve to this transport in kombu."""
    TRANSPORT_ALIASES.setdefault(ALIAS, f"{__name__}:Transport")


def durable_broker_url(url: str) -> str:
    """The URL that selects this transport for an embedded (``sqla+``) broker URL.

    Other URLs (redis://, amqp://, ...) are returned unchanged.
    """
    for prefix in ("sqla+", "sqlalchemy+"):
        if url.startswith(prefix):
            register()
            return f"{ALIAS}+{url[len(prefix) :]}"
    return url

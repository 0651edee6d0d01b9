"""Which broker a URL names, and the transport options each needs. Pure data, no Celery.

One setting chooses the broker (``broker.url``):

- ``redis://`` / ``rediss://``: Redis. Unacknowledged messages come back after the
  visibility timeout; set it above the longest job (leases recover a dead worker's job
  sooner anyway).
- ``amqp://`` / ``amqps://`` / ``pyamqp://``: RabbitMQ. Messages come back as soon as a dead
  worker's connection closes. RabbitMQ's own ``consumer_timeout`` (30 min by default) must
  exceed the longest job, or the server closes the channel of a worker still running it.
- ``sqla+sqlite:///...`` (the default, in the data directory): the embedded broker, a
  SQLite file, no server; see :mod:`unitumour_dicom.jobs.sqla_transport`.
"""

from __future__ import annotations

from typing import Any, Literal

from ..config.sections import BrokerSettings

BrokerKind = Literal["embedded", "redis", "rabbitmq", "other"]


def broker_kind(url: str) -> BrokerKind:
    scheme = url.split("://", 1)[0].lower()
    if scheme.startswith(("sqla+", "sqlalchemy+", "unitumour-sqla+")):
        return "embedded"
    if scheme in {"redis", "rediss", "redis+socket", "sentinel"}:
        return "redis"
    if scheme in {"amqp", "amqps", "pyamqp", "librabbitmq"}:
        return "rabbitmq"
    return "other"


def transport_options(settings: BrokerSettings) -> dict[str, Any]:
    """kombu transport options for the configured broker."""
    assert settings.url is not None
    kind = broker_kind(settings.url)
    if kind == "embedded":
        return {
            "visibility_timeout": settings.visibility_timeout_s,
            "polling_interval": settings.polling_interval_s,
        }
    if kind == "redis":
        return {
            "visibility_timeout": settings.visibility_timeout_s,
            "socket_timeout": settings.connect_timeout_s,
            "socket_connect_timeout": settings.connect_timeout_s,
            "retry_on_timeout": True,
        }
    return {}
